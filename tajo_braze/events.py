"""Webhook events both ways, each taking effect exactly once.

    accept(ctx, source, payload)   parse -> validate -> record durably; a replayed event is a no-op
    forward_pending(ctx)           recorded events -> effects (pure, `event_mapping`) -> batched
                                   writes -> outcome of every event saved once the vendor answered
    handle_event(ctx, source, …)   both, for the `handle_event` hook and the CLI

Exactly once, step by step:
- An event's id is recorded (state `events` table) before anything is sent. Brevo sends no ids,
  so theirs is a stable digest of the fields that tell two events apart.
- Writes that are safe to repeat (attributes, subscription states, deletions) are retried until
  they are acknowledged.
- Writes that are not (Braze custom events and purchases, Brevo events: neither vendor can
  deduplicate them) go through the send ledger (the state's purchase ledger): each object is
  claimed before its request, confirmed once the vendor acknowledged it, and released when the
  request certainly did not land (refused, throttled, never connected). A claim never confirmed
  (an ambiguous 5xx or dropped connection, or a crash mid-request) is never sent again: its event
  is marked `unknown` and dead-lettered for a person to check in Braze. Missing one duplicate-prone
  write in that rare case is the lesser harm: a purchase sent twice doubles revenue for good.
- Purchases are claimed by purchase (order, line, piece), not by event, so the same order arriving
  in two differently shaped deliveries is still sent once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from .clients.braze import DELETE_MAX, EMAIL_STATUS_MAX, TRACK_MAX_PER_ARRAY
from .consent import CONSENT_NAMESPACE, ConsentRecord, decide
from .errors import (
    ApiError,
    AuthError,
    ConnectionFailed,
    ConnectorError,
    PermanentApiError,
    PermissionDenied,
    RateLimited,
    RecordRejected,
    TransientApiError,
    UsageError,
)
from .event_mapping import (
    BrazeDeletion,
    ConsentChange,
    EventRules,
    PayloadError,
    digest,
    effects_for,
    event_id_for,
    rules_from,
    split_payload,
)
from .models import BrevoContact
from .state import PendingEvent
from .sync.context import SyncContext

__all__ = [
    "ForwardReport",
    "Intake",
    "PayloadError",
    "accept",
    "forward_pending",
    "handle_event",
    "rules_for",
]

T = TypeVar("T")

SOURCES = ("brevo", "braze")
DEAD_LETTERS = "events"
# handle_event forwards right away, but only this much: a long backlog (after an outage) is left
# to `sync --resources events` or the next calls rather than holding the caller for minutes.
HANDLE_EVENT_MAX_BATCHES = 10
HANDLE_EVENT_BUDGET_S = 30.0
TRACK_BODY_BUDGET_BYTES = 3_500_000  # under Braze's 4 MB per request, with room for the envelope
NOTES_MAX = 20

# Outcome of one event after a forward pass; the worst of its writes wins.
DONE, REJECTED, UNKNOWN, FAILED, IGNORED = "done", "rejected", "unknown", "failed", "ignored"
_RANK = {DONE: 0, IGNORED: 0, REJECTED: 1, UNKNOWN: 2, FAILED: 3}
_STATUS = {DONE: "forwarded", IGNORED: "ignored", REJECTED: "rejected", UNKNOWN: "unknown", FAILED: "failed"}


# ---------------------------------------------------------------- intake
@dataclass(frozen=True, slots=True)
class ItemProblem:
    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class Intake:
    """What one delivery held and what became of each item at the door."""

    source: str
    received: int
    recorded: tuple[str, ...]
    duplicates: tuple[str, ...]
    ignored: Mapping[str, int]  # reason -> how many
    problems: tuple[ItemProblem, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "received": self.received,
            "recorded": len(self.recorded),
            "duplicates": len(self.duplicates),
            "ignored": sum(self.ignored.values()),
            "ignored_reasons": dict(self.ignored),
            "invalid": len(self.problems),
            "errors": [{"index": p.index, "error": p.reason} for p in self.problems],
        }


def rules_for(ctx: SyncContext) -> EventRules:
    mapping = ctx.mapping

    def contact_attributes(contact: BrevoContact) -> Mapping[str, Any]:
        return mapping.nest(mapping.to_braze(contact), merge_objects=True)

    return rules_from(
        ctx.config.events.names,
        ctx.config.events.deny,
        deletes=ctx.config.sync.deletes,
        contact_attributes=contact_attributes,
        own_key_names=ctx.config.events.own_key_names,
    )


def _now(ctx: SyncContext) -> datetime:
    return datetime.fromtimestamp(ctx.clock(), UTC)


def accept(ctx: SyncContext, source: str, payload: Any, *, rules: EventRules | None = None) -> Intake:
    """Validate every item and record the usable ones in one transaction; nothing is sent here.

    Raises PayloadError (a UsageError) only when the payload is not a JSON object or array at
    all. A malformed item is dead-lettered with its reason while the others are recorded.
    """
    if source not in SOURCES:
        raise UsageError(f"Unknown event source '{source}'.", fix="Use braze or brevo.")
    items = split_payload(source, payload)
    rules = rules or rules_for(ctx)
    received_at = _now(ctx)
    stamp = received_at.isoformat()
    problems: list[ItemProblem] = []
    ignored: Counter[str] = Counter()
    to_record: list[tuple[str, dict[str, Any]]] = []
    letters: list[tuple[str, str, str, Mapping[str, Any]]] = []
    for index, item in enumerate(items):
        try:
            event_id = event_id_for(source, item)
            effects = effects_for(source, item, rules, event_id=event_id, received_at=received_at)
        except RecordRejected as exc:
            problems.append(ItemProblem(index, exc.reason))
            letters.append(
                (
                    DEAD_LETTERS,
                    f"{source}:invalid:{digest(item)}",
                    exc.reason,
                    {"source": source, "item": item},
                )
            )
            continue
        if effects.ignored is not None:
            ignored[effects.ignored] += 1
            continue
        to_record.append((event_id, {"item": item, "received_at": stamp}))
    recorded: list[str] = []
    duplicates: list[str] = []
    if ctx.dry_run:
        recorded = [event_id for event_id, _ in to_record]
    elif to_record or letters:
        state = ctx.state
        with state.transaction():  # one commit: the delivery is recorded whole or not at all
            for event_id, body in to_record:
                (recorded if state.record_event(source, event_id, body) else duplicates).append(event_id)
            if letters:
                state.add_dead_letters(letters, run_id=ctx.run_id)
    return Intake(source, len(items), tuple(recorded), tuple(duplicates), dict(ignored), tuple(problems))


# ---------------------------------------------------------------- forwarding
@dataclass
class ForwardReport:
    examined: int = 0
    forwarded: int = 0
    ignored: int = 0
    failed: int = 0
    unknown: int = 0
    rejected: int = 0
    batches: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    plan: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    error: ConnectorError | None = None

    def note(self, text: str) -> None:
        if text not in self.notes and len(self.notes) < NOTES_MAX:
            self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "examined": self.examined,
            "forwarded": self.forwarded,
            "ignored": self.ignored,
            "failed": self.failed,
            "unknown": self.unknown,
            "rejected": self.rejected,
            "api_calls": dict(self.calls),
            "notes": list(self.notes),
        }
        if self.plan:
            out["plan"] = dict(self.plan)
        if self.error is not None:
            out["error"] = self.error.user_message
            out["fix"] = self.error.fix
        return out


@dataclass
class _Row:
    """One recorded event during a forward pass."""

    event: PendingEvent
    outcome: str = DONE
    reasons: list[str] = field(default_factory=list)

    def settle(self, outcome: str, reason: str | None = None) -> None:
        if _RANK[outcome] > _RANK[self.outcome]:
            self.outcome = outcome
        if reason and reason not in self.reasons:
            self.reasons.append(reason)

    @property
    def key(self) -> str:
        return f"{self.event.source}:{self.event.event_id}"


@dataclass
class _Write:
    """One object to write, with the event(s) it belongs to."""

    row: _Row
    body: Any
    ledger_id: str | None = None
    kind: str = ""
    followers: list[_Row] = field(default_factory=list)  # same ledger id in the same pass

    def settle(self, outcome: str, reason: str | None = None) -> None:
        for row in (self.row, *self.followers):
            row.settle(outcome, reason)


def classify(exc: ApiError, *, idempotent: bool) -> str:
    """What a failed call means for its objects: failed (not applied: retry), unknown (may have been
    applied: never resend), rejected (refused: retrying cannot help) or fatal (stop the pass)."""
    if isinstance(exc, AuthError | PermissionDenied):
        return "fatal"
    if exc.maybe_applied and not idempotent:
        return UNKNOWN
    if isinstance(exc, RateLimited | ConnectionFailed):
        return FAILED  # throttled or never connected: certainly not applied
    if isinstance(exc, TransientApiError):
        # A 5xx or a dropped connection after the request left: for a write Braze or Brevo cannot
        # deduplicate we cannot know, so the object is never sent again.
        return FAILED if idempotent else UNKNOWN
    if isinstance(exc, PermanentApiError):
        return REJECTED
    return FAILED


def _chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), max(size, 1)):
        yield list(items[start : start + size])


def _received_at(event: PendingEvent) -> datetime:
    stamp = event.payload.get("received_at")
    try:
        moment = datetime.fromisoformat(str(stamp))
    except ValueError:
        return datetime.now(UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Forwarder:
    """Forwards batches of recorded events; keeps one report across batches."""

    def __init__(self, ctx: SyncContext, rules: EventRules | None = None) -> None:
        self.ctx = ctx
        self.rules = rules or rules_for(ctx)
        self.report = ForwardReport()
        self.fatal: ApiError | None = None
        sync = ctx.config.sync
        self.track_per_array = max(1, min(sync.track_batch_size, TRACK_MAX_PER_ARRAY))
        self.track_cap = sync.track_objects_cap
        self.brevo_batch = max(1, ctx.config.events.batch_size)

    # ------------------------------------------------------------ one batch
    def forward(self, events: Sequence[PendingEvent]) -> list[_Row]:
        """Forward one batch; returns the rows with their outcomes (already saved unless dry run)."""
        rows = [_Row(event) for event in events]
        self.report.examined += len(rows)
        self.report.batches += 1
        consent: list[tuple[_Row, ConsentChange]] = []
        attributes: list[_Write] = []
        deletions: list[tuple[_Row, BrazeDeletion]] = []
        track: list[_Write] = []
        brevo_events: list[_Write] = []
        for row in rows:
            event = row.event
            try:
                effects = effects_for(
                    event.source,
                    event.payload.get("item"),
                    self.rules,
                    event_id=event.event_id,
                    received_at=_received_at(event),
                )
            except RecordRejected as exc:
                row.settle(REJECTED, exc.reason)
                continue
            if effects.ignored is not None:
                row.outcome = IGNORED
                continue
            consent.extend((row, change) for change in effects.consent)
            attributes.extend(
                _Write(row, a.track_object(), kind="attributes") for a in effects.braze_attributes
            )
            deletions.extend((row, d) for d in effects.braze_deletions)
            for index, braze_event in enumerate(effects.braze_events):
                ledger_id = f"braze-event:{event.source}:{event.event_id}:{index}"
                track.append(_Write(row, braze_event.track_object(), ledger_id, "events"))
            track.extend(
                _Write(row, p.track_object(), p.ledger_id, "purchases") for p in effects.braze_purchases
            )
            for index, brevo_event in enumerate(effects.brevo_events):
                ledger_id = f"brevo-event:{event.source}:{event.event_id}:{index}"
                brevo_events.append(_Write(row, brevo_event.item(), ledger_id, "brevo_events"))

        if self.ctx.dry_run:
            self._plan(consent, attributes, deletions, track, brevo_events)
        else:
            # Unsubscribes first: they matter most and are safe to repeat.
            self._apply_consent(consent)
            self._send_attributes(attributes)
            self._apply_deletions(deletions)
            self._send_track(self._claim(track))
            self._send_brevo_events(self._claim(brevo_events))
        self._finish(rows)
        return rows

    def _plan(
        self,
        consent: Sequence[tuple[_Row, ConsentChange]],
        attributes: Sequence[_Write],
        deletions: Sequence[tuple[_Row, BrazeDeletion]],
        track: Sequence[_Write],
        brevo_events: Sequence[_Write],
    ) -> None:
        plan = self.report.plan
        plan["consent changes to weigh"] += len(consent)
        plan["braze /users/track attributes"] += len(attributes)
        plan["braze /users/delete users"] += len(deletions)
        plan["braze /users/track events"] += sum(1 for w in track if w.kind == "events")
        plan["braze /users/track purchases"] += sum(1 for w in track if w.kind == "purchases")
        plan["brevo /events/batch events"] += len(brevo_events)
        for key in [k for k, v in plan.items() if not v]:
            del plan[key]

    # ------------------------------------------------------------ the send ledger
    def _claim(self, writes: Sequence[_Write]) -> list[_Write]:
        """Claim every duplicate-prone object before its request; only claimed ones are sent."""
        if not writes:
            return []
        state = self.ctx.state
        claimed: dict[str, _Write] = {}
        in_doubt: set[str] | None = None
        with state.transaction():
            for write in writes:
                assert write.ledger_id is not None
                leader = claimed.get(write.ledger_id)
                if leader is not None:
                    leader.followers.append(write.row)  # the same purchase twice in one pass
                    continue
                if state.claim_purchase(write.ledger_id):
                    claimed[write.ledger_id] = write
                    continue
                if in_doubt is None:
                    in_doubt = set(state.unsent_purchases())
                if write.ledger_id in in_doubt:
                    write.settle(
                        UNKNOWN,
                        "outcome unknown: an earlier send of this object was cut off and may have "
                        "landed, so it is not sent again (check it in the vendor's dashboard)",
                    )
                # else: confirmed sent before (a replay under another id, or a crash before the
                # event itself was marked): its effect is already there.
        return list(claimed.values())

    def _confirm(self, writes: Iterable[_Write]) -> None:
        ids = [w.ledger_id for w in writes if w.ledger_id]
        if ids:
            self.ctx.state.mark_purchases_sent(ids)

    def _release(self, writes: Iterable[_Write]) -> None:
        ids = [w.ledger_id for w in writes if w.ledger_id]
        if ids:
            self.ctx.state.release_purchases(ids)

    # ------------------------------------------------------------ calls
    def _call(self, name: str, call: Callable[[], T]) -> T:
        if self.fatal is not None:
            raise self.fatal
        self.report.calls[name] += 1
        return call()

    def _failed(self, writes: Sequence[_Write], exc: ApiError, *, idempotent: bool) -> str:
        outcome = classify(exc, idempotent=idempotent)
        if outcome == "fatal":
            self.fatal = self.fatal or exc
            outcome = FAILED
        reason = _reason(exc)
        for write in writes:
            write.settle(outcome, reason)
        if outcome != UNKNOWN:
            self._release(writes)
        return outcome

    def _send_bisecting(
        self,
        writes: list[_Write],
        send: Callable[[list[_Write]], None],
        *,
        idempotent: bool,
    ) -> None:
        """Send a chunk; when the whole request is refused (nothing applied), halve it to find the
        object at fault so one bad object never sinks the others."""
        if not writes:
            return
        if self.fatal is not None:
            self._failed(writes, self.fatal, idempotent=True)
            return
        try:
            send(writes)
        except ApiError as exc:
            if classify(exc, idempotent=idempotent) == REJECTED and len(writes) > 1:
                middle = len(writes) // 2
                self._send_bisecting(writes[:middle], send, idempotent=idempotent)
                self._send_bisecting(writes[middle:], send, idempotent=idempotent)
                return
            self._failed(writes, exc, idempotent=idempotent)

    # ------------------------------------------------------------ Braze /users/track
    def _track_chunks(self, writes: Sequence[_Write]) -> Iterator[list[_Write]]:
        chunk: list[_Write] = []
        counts: Counter[str] = Counter()
        size = 0
        for write in writes:
            body_size = len(repr(write.body)) + 16
            full = (
                counts[write.kind] >= self.track_per_array
                or (self.track_cap is not None and len(chunk) >= self.track_cap)
                or size + body_size > TRACK_BODY_BUDGET_BYTES
            )
            if chunk and full:
                yield chunk
                chunk, counts, size = [], Counter(), 0
            chunk.append(write)
            counts[write.kind] += 1
            size += body_size
        if chunk:
            yield chunk

    def _track(self, writes: list[_Write]) -> None:
        arrays: dict[str, list[_Write]] = {"attributes": [], "events": [], "purchases": []}
        for write in writes:
            arrays[write.kind].append(write)
        result = self._call(
            "braze POST /users/track",
            lambda: self.ctx.braze.track(
                attributes=[w.body for w in arrays["attributes"]],
                events=[w.body for w in arrays["events"]],
                purchases=[w.body for w in arrays["purchases"]],
            ),
        )
        refused: dict[int, str] = {}
        for error in result.errors:
            group = arrays.get(error.input_array or "")
            if group is None or error.index is None or not 0 <= error.index < len(group):
                self.report.note(
                    f"Braze reported an error it did not tie to an object: {error.message[:200]}"
                )
                continue
            refused[id(group[error.index])] = error.message
        accepted = [w for w in writes if id(w) not in refused]
        self._confirm(accepted)
        for write in writes:
            if id(write) in refused:
                write.settle(REJECTED, f"Braze refused it: {refused[id(write)][:300]}")
        self._release(w for w in writes if id(w) in refused)

    def _send_track(self, writes: Sequence[_Write]) -> None:
        for chunk in self._track_chunks(writes):
            self._send_bisecting(chunk, self._track, idempotent=False)

    def _send_attributes(self, writes: Sequence[_Write]) -> None:
        for chunk in self._track_chunks(writes):
            self._send_bisecting(chunk, self._track, idempotent=True)

    # ------------------------------------------------------------ Brevo /events/batch
    def _brevo_batch(self, writes: list[_Write]) -> None:
        answer = self._call(
            "brevo POST /events/batch", lambda: self.ctx.brevo.create_events_batch([w.body for w in writes])
        )
        refused: dict[int, str] = {}
        errors = answer.get("errors")
        for error in errors if isinstance(errors, list) else []:
            if not isinstance(error, Mapping):
                continue
            indexes = error.get("eventIndex")
            for index in indexes if isinstance(indexes, list) else [indexes]:
                if isinstance(index, int) and 0 <= index < len(writes):
                    refused[index] = str(error.get("message") or "refused")
        self._confirm(w for i, w in enumerate(writes) if i not in refused)
        for index, message in refused.items():
            writes[index].settle(REJECTED, f"Brevo refused it: {message[:300]}")
        self._release(writes[i] for i in refused)

    def _send_brevo_events(self, writes: Sequence[_Write]) -> None:
        for chunk in _chunks(writes, self.brevo_batch):
            self._send_bisecting(chunk, self._brevo_batch, idempotent=False)

    # ------------------------------------------------------------ consent
    def _apply_consent(self, changes: Sequence[tuple[_Row, ConsentChange]]) -> None:
        """Weigh each change with the unsubscribe-wins rules (oldest first), write the ones that
        must cross, and remember the new known state only once the other side acknowledged."""
        if not changes:
            return
        ctx = self.ctx
        allow = ctx.config.sync.allow_resubscribe
        stored = ctx.state.get_field_values(CONSENT_NAMESPACE, sorted({c.key for _, c in changes}))
        known = {key: ConsentRecord.from_value(value) for key, value in stored.items()}
        to_store: dict[str, ConsentRecord] = {}
        to_braze: dict[str, list[tuple[_Write, ConsentChange, ConsentRecord]]] = {}
        to_brevo: list[tuple[_Write, ConsentChange, ConsentRecord]] = []
        for row, change in changes:
            incoming = ConsentRecord(change.state, change.at, change.source)
            decision = decide(known.get(change.key), incoming, allow_resubscribe=allow)
            if decision.record is not None:
                known[change.key] = decision.record
            if not decision.propagate:
                if decision.record is not None:
                    to_store[change.key] = decision.record
                continue
            assert decision.record is not None
            entry = (_Write(row, change.email, kind="consent"), change, decision.record)
            if change.source == "brevo":
                to_braze.setdefault(change.state, []).append(entry)
            else:
                to_brevo.append(entry)

        for state_name, entries in to_braze.items():
            braze_state = "unsubscribed" if state_name == "unsubscribed" else "subscribed"
            for chunk in _chunks(entries, EMAIL_STATUS_MAX):
                writes = [w for w, _, _ in chunk]
                emails = list(dict.fromkeys(c.email for _, c, _ in chunk))
                if self.fatal is not None:
                    self._failed(writes, self.fatal, idempotent=True)
                    continue
                try:
                    self._call(
                        "braze POST /email/status", partial(self.ctx.braze.email_status, emails, braze_state)
                    )
                    # Email subscription groups configured to follow the global state move with it.
                    for group_id in self.ctx.config.sync.email_subscription_groups:
                        self._call(
                            "braze POST /subscription/status/set",
                            partial(self.ctx.braze.subscription_status_set, group_id, braze_state, emails=emails),
                        )
                except ApiError as exc:
                    self._failed(writes, exc, idempotent=True)
                    continue
                to_store.update((c.key, record) for _, c, record in chunk)

        for write, change, record in to_brevo:
            if self.fatal is not None:
                self._failed([write], self.fatal, idempotent=True)
                continue
            try:
                self._call(
                    "brevo PUT /contacts/{identifier}",
                    partial(
                        self.ctx.brevo.update_contact,
                        change.email,
                        identifier_type="email_id",
                        email_blacklisted=change.state == "unsubscribed",
                    ),
                )
            except PermanentApiError as exc:
                if exc.status != 404:
                    self._failed([write], exc, idempotent=True)
                    continue
                # No such contact in Brevo: nothing to block there. The state is remembered, so a
                # contact created later cannot be re-subscribed by a stale change.
                self.report.note(
                    "a Braze subscription change named an email Brevo does not hold; recorded only"
                )
            except ApiError as exc:
                self._failed([write], exc, idempotent=True)
                continue
            to_store[change.key] = record
        if to_store:
            ctx.state.put_field_values(CONSENT_NAMESPACE, [(k, r.as_value()) for k, r in to_store.items()])

    # ------------------------------------------------------------ deletions
    def _apply_deletions(self, deletions: Sequence[tuple[_Row, BrazeDeletion]]) -> None:
        """Brevo contact deleted -> Braze user deleted (only with sync.deletes). By email only when
        exactly one Braze profile with an external id holds it: a shared address is never guessed."""
        targets: list[tuple[_Write, str]] = []
        for row, deletion in deletions:
            write = _Write(row, deletion, kind="deletion")
            identity = deletion.identity
            if identity.external_id:
                targets.append((write, identity.external_id))
                continue
            if self.fatal is not None:
                self._failed([write], self.fatal, idempotent=True)
                continue
            email = identity.email or ""
            try:
                found = self._call(
                    "braze POST /users/export/ids",
                    partial(
                        self.ctx.braze.export_ids, email=email, fields_to_export=["external_id", "email"]
                    ),
                )
            except ApiError as exc:
                self._failed([write], exc, idempotent=True)
                continue
            owners = sorted({u.external_id for u in found.users if u.external_id})
            if len(owners) > 1:
                write.settle(REJECTED, f"{len(owners)} Braze users share this email; none was deleted")
            elif owners:
                targets.append((write, owners[0]))
            # No owner: nothing in Braze to delete.
        for chunk in _chunks(targets, DELETE_MAX):
            writes = [w for w, _ in chunk]
            ids = list(dict.fromkeys(external_id for _, external_id in chunk))
            if self.fatal is not None:
                self._failed(writes, self.fatal, idempotent=True)
                continue
            try:
                self._call("braze POST /users/delete", partial(self.ctx.braze.delete_users, ids))
            except ApiError as exc:
                self._failed(writes, exc, idempotent=True)

    # ------------------------------------------------------------ outcomes
    def _finish(self, rows: Sequence[_Row]) -> None:
        report = self.report
        by_status: dict[str, list[int]] = {}
        letters: list[tuple[str, str, str, Mapping[str, Any]]] = []
        for row in rows:
            status = _STATUS[row.outcome]
            by_status.setdefault(status, []).append(row.event.id)
            setattr(report, status, getattr(report, status) + 1)
            if row.outcome in (REJECTED, UNKNOWN):
                reason = "; ".join(row.reasons) or row.outcome
                record = {
                    "source": row.event.source,
                    "event_id": row.event.event_id,
                    "item": row.event.payload.get("item"),
                }
                letters.append((DEAD_LETTERS, row.key, reason[:1000], record))
            if row.outcome == FAILED and row.reasons:
                report.note(f"will retry: {row.reasons[0][:300]}")
        if self.ctx.dry_run:
            return
        state = self.ctx.state
        with state.transaction():
            for status, ids in by_status.items():
                state.mark_events(ids, status)
            if letters:
                state.add_dead_letters(letters, run_id=self.ctx.run_id)


def _reason(exc: ApiError) -> str:
    return exc.user_message[:500]


def forward_pending(
    ctx: SyncContext,
    *,
    rules: EventRules | None = None,
    max_batches: int | None = None,
    budget_s: float | None = None,
) -> ForwardReport:
    """Forward recorded events oldest first, batch by batch, until none is left (or a bound is hit).

    Events that failed in this pass are not fetched again in it; they wait for the next pass.
    A pass stops early when a key is refused (fatal) or when a whole batch failed (the vendor
    is down: hammering it helps nobody).
    """
    forwarder = Forwarder(ctx, rules)
    report = forwarder.report
    batch_size = forwarder.brevo_batch
    started = time.monotonic()
    seen: set[int] = set()  # rows still pending after this pass looked at them
    while True:
        if max_batches is not None and report.batches >= max_batches:
            break
        if budget_s is not None and time.monotonic() - started > budget_s:
            report.note("time budget used up; the rest is forwarded by the next call or sync")
            break
        ctx.check_stop()
        fetched = ctx.state.pending_events(limit=batch_size + len(seen))
        batch = [event for event in fetched if event.id not in seen][:batch_size]
        if not batch:
            break
        rows = forwarder.forward(batch)
        for row in rows:
            if ctx.dry_run or row.outcome == FAILED:
                seen.add(row.event.id)
        if forwarder.fatal is not None:
            report.error = forwarder.fatal
            break
        if rows and all(row.outcome == FAILED for row in rows):
            break
    return report


def backlog(ctx: SyncContext) -> int:
    return ctx.state.count_events("pending") + ctx.state.count_events("failed")


def handle_event(ctx: SyncContext, source: str, payload: Any) -> dict[str, Any]:
    """Record one delivery (single or batched) and forward what is waiting, now.

    Once `accept` returned, every usable event is durable: a forward that fails is retried by the
    next call or by `sync(resources=["events"])`, so a forwarding error is reported in the result
    rather than raised (the caller must not redeliver what is already recorded).
    """
    rules = rules_for(ctx)
    intake = accept(ctx, source, payload, rules=rules)
    result = intake.as_dict()
    waiting = backlog(ctx)
    report = ForwardReport()
    if waiting:
        report = forward_pending(
            ctx, rules=rules, max_batches=HANDLE_EVENT_MAX_BATCHES, budget_s=HANDLE_EVENT_BUDGET_S
        )
        waiting = backlog(ctx)
    result["forwarding"] = report.as_dict()
    result["backlog"] = waiting
    if ctx.logger is not None and (report.failed or report.unknown or report.rejected or intake.problems):
        ctx.logger.warning(
            "events_handled",
            source=source,
            invalid=len(intake.problems),
            failed=report.failed,
            unknown=report.unknown,
            rejected=report.rejected,
            backlog=waiting,
        )
    return result
