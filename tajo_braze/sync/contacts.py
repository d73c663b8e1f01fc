"""Brevo contacts -> Braze users: the second half of `users` (direction `brevo_to_braze` and `both`).

read the contacts changed since the cursor (or all) -> map the fields that flow to Braze -> diff each
field against what we last read from Brevo and what Braze holds as far as we know -> conflicts,
consent (an unsubscribe wins) and list membership -> pack /users/track attribute objects -> once
Braze acknowledged a call, store the per-field memory, the consent records and the Braze -> Brevo
half's fingerprints (so it does not echo our writes back) -> move the cursor after a whole read.

Echoes are designed out both ways. A Brevo value equal to what Braze holds (because we wrote it,
or because the Braze -> Brevo half just imported it from Braze) is never sent back; after a write,
the Braze -> Brevo half's fingerprint is set to what Brevo holds, so the next export of the same
values finds nothing to import.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from array import array
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as day_start
from typing import Any

from ..batching import GatedCommits, chunked, prefetched, with_last
from ..clients.braze import EXPORT_IDS_MAX
from ..consent import CONSENT_NAMESPACE, ConsentRecord, decide
from ..errors import PermanentApiError
from ..mapping import CONSENT_FIELDS, IDENTITY_FIELDS, equal_values
from ..models import BrazeUser, BrevoContact, BrevoEdit, ResourceResult, TrackResult
from . import users as users_half
from .brevo_view import (
    NEW_PROFILE_DEFAULTS,
    Expectation,
    expect,
    identity_key,
    is_braze_echo,
)
from .context import SyncContext
from .settle import BrevoCatchUp

RESOURCE = "users"
DIRECTION = "brevo_to_braze"
PROGRESS_LABEL = "users from Brevo"
DEAD_LETTERS = "users:brevo_to_braze"  # apart from the users half's, which retries by re-exporting Braze
FIELDS = "fields:brevo_to_braze"  # per Brevo contact: the ContactMemory below
KNOWN_CONTACTS = "contacts:brevo_ids"  # Brevo contact ids written to Braze, for deletion detection
# Brevo stamps modifiedAt on its own clock and a write may land just as we read: read a little
# before the previous read began. Re-reading costs a diff, never a write.
CURSOR_OVERLAP = timedelta(minutes=5)
CHUNK_CONTACTS = 500
# Contacts read ahead of the one being mapped: two seconds of Brevo's 10 pages a second. A pause
# here (a commit, a slow answer) then costs no page slot; with a fifth of a second, the 100k read
# took 13.4-13.7 s against a 11.6 s bound, with two seconds 12.4 s.
READ_AHEAD_CONTACTS = 20_000
RETRY_DEAD_LETTERS_MAX = 200
# Set once the Braze -> Brevo half of a two-way run is done, until its Brevo -> Braze half is: a
# two-way run stopped in between resumes with that half (see the connector).
REVERSE_DUE = "users:brevo_to_braze_due"
# Track batches waiting for a sender: enough to ride out a slow answer. (How far the reader runs
# ahead of the commits is fixed by TrackWriter's gate, not by this depth.)
SEND_QUEUE_DEPTH = 4
# /users/track calls in flight at once. Braze answers over the internet in tens to hundreds of
# milliseconds: one call at a time caps the writes at a few thousand objects a second, while a
# first read feeds up to 7,500. With Braze answering after 80 ms, the 100k first read took 53.5 s
# with 1 call in flight, 23.1 s with 3 and 15.1 s with 8 (read bound 11.6 s; bench/track_latency.py).
# More gains little: the commit gate keeps the reader within two chunks of the commits. Braze
# allows 1,000 calls a second.
TRACK_CALLS_IN_FLIGHT = 8
PLAN_SAMPLE = 5
EMAIL_SUBSCRIBE = "email_subscribe"
TRACK_MAX_OBJECTS = 75
_MISSING = object()


# ------------------------------------------------------------------ what we remember per contact
@dataclass(frozen=True, slots=True)
class ContactMemory:
    """What the last acknowledged sync of one Brevo contact left behind.

    `read` is what Brevo held (as Braze values), `known` what Braze holds as far as we know (we
    wrote it, or Braze sent it to Brevo itself), `lists` the list names last written to Braze.
    """

    identity_key: str  # the users half's key for the same person: "ext:<id>" / "email:<email>" / …
    who: tuple[str, ...]  # ("external_id", id) | ("user_alias", name, label) | ("braze_id", id)
    read: Mapping[str, Any]
    known: Mapping[str, Any]
    lists: tuple[str, ...]
    blacklisted: bool | None

    def as_value(self) -> dict[str, Any]:
        return {
            "key": self.identity_key,
            "who": list(self.who),
            "read": dict(self.read),
            "known": dict(self.known),
            "lists": list(self.lists),
            "blacklisted": self.blacklisted,
        }

    @classmethod
    def from_value(cls, value: Any) -> ContactMemory | None:
        if not isinstance(value, Mapping) or not isinstance(value.get("who"), list):
            return None
        read, known, lists = value.get("read"), value.get("known"), value.get("lists")
        blacklisted = value.get("blacklisted")
        return cls(
            identity_key=str(value.get("key") or ""),
            who=tuple(str(part) for part in value["who"]),
            read=dict(read) if isinstance(read, Mapping) else {},
            known=dict(known) if isinstance(known, Mapping) else {},
            lists=tuple(str(name) for name in lists) if isinstance(lists, list) else (),
            blacklisted=blacklisted if isinstance(blacklisted, bool) else None,
        )


def state_key(contact_id: int) -> str:
    """Zero-padded, so keys sort like the ids and two sorted streams can be merged."""
    return f"{contact_id:012d}"


def choose_who(
    contact: BrevoContact, previous: ContactMemory | None, claim_owner: str | None, alias_label: str
) -> tuple[str, ...]:
    """How the Braze profile of this contact is addressed.

    The contact's ext_id is Braze's external_id. Without one we stay on the profile we already
    write to (an ext_id cleared in Brevo does not make a second profile); a new contact whose
    email the users half synced from a Braze profile goes to that profile; anything else gets a
    user alias named after the Brevo contact id.
    """
    if contact.ext_id:
        return ("external_id", contact.ext_id)
    if previous is not None and previous.who:
        return previous.who
    if claim_owner and claim_owner.startswith("ext:"):
        return ("external_id", claim_owner[4:])
    if claim_owner and claim_owner.startswith("braze:"):
        return ("braze_id", claim_owner[6:])
    return ("user_alias", str(contact.id), alias_label)


def braze_identifier(who: Sequence[str]) -> dict[str, Any]:
    """The "who" part of a /users/track attributes object."""
    kind = who[0]
    if kind == "external_id":
        return {"external_id": who[1]}
    if kind == "braze_id":
        return {"braze_id": who[1]}
    # Alias writes are update-only unless told otherwise: a Brevo-only contact must create its profile.
    return {"user_alias": {"alias_name": who[1], "alias_label": who[2]}, "_update_existing_only": False}


# ------------------------------------------------------------------ pure diffing
def same_value(a: Any, b: Any) -> bool:
    """`equal_values`, where a missing value equals only a missing value."""
    if a is _MISSING or b is _MISSING:
        return a is b
    return equal_values(a, b)


def changed_fields(
    current: Mapping[str, Any], read: Mapping[str, Any], known: Mapping[str, Any]
) -> dict[str, Any]:
    """Fields whose Brevo value is news for Braze.

    Not what we read last time (Brevo bumps modifiedAt for list changes and imports, so content is
    compared, never timestamps), and not what Braze already holds (an echo of our own write, or of
    a value Braze sent to Brevo itself).
    """
    # Every contact of every read comes through here: `same_value` is written out inline.
    changed: dict[str, Any] = {}
    for name, value in current.items():
        before = read.get(name, _MISSING)
        if before is not _MISSING and equal_values(value, before):
            continue
        held = known.get(name, _MISSING)
        if held is not _MISSING and equal_values(value, held):
            continue
        changed[name] = value
    return changed


def brevo_change_wins(policy: str, *, braze_changed: bool) -> bool:
    """Whether a field changed in Brevo goes to Braze, under the field's `conflict` policy.

    Braze keeps no per-attribute modification times, so `latest` cannot compare clocks: in a
    `both` run the Braze -> Brevo half has already carried Braze's changes to Brevo, so a Brevo
    value that still differs was made after them. `braze_wins` holds a Brevo change back when
    Braze's value moved since we last synced the field.
    """
    if policy == "braze_wins":
        return not braze_changed
    return True


def list_operations(current: Sequence[str], last: Sequence[str]) -> dict[str, list[str]] | None:
    """The simple-array update taking Braze's list attribute from `last` to `current`, or None."""
    if current == last:  # both sorted: the usual case, no sets to build
        return None
    now, before = set(current), set(last)
    add = sorted(now - before)
    remove = sorted(before - now)
    if not add and not remove:
        return None
    operations: dict[str, list[str]] = {}
    if add:
        operations["add"] = add
    if remove:
        operations["remove"] = remove
    return operations


@dataclass(frozen=True, slots=True)
class ConsentStep:
    write: str | None  # the email_subscribe value to send to Braze, if any
    record: ConsentRecord | None  # what to store as the last known state (None: keep what is stored)
    reason: str


_NO_CONSENT_CHANGE = ConsentStep(None, None, "no subscription change in Brevo")


def consent_step(
    *,
    blacklisted: bool,
    previously_blacklisted: bool | None,
    braze_unsubscribed_by: str | None,
    known: ConsentRecord | None,
    at: datetime,
    allow_resubscribe: bool,
) -> ConsentStep:
    """What Brevo's `emailBlacklisted` means for Braze's global email state. An unsubscribe wins.

    `braze_unsubscribed_by` names the side that made Braze unsubscribed as far as we know
    ("braze" when the users half blacklisted the contact for Braze, "brevo" when we wrote it).
    A re-subscribe needs evidence of a transition (blacklisted at our last read, not any more),
    permission from the configuration, and to be newer than the recorded unsubscribe.
    """
    if blacklisted:
        if braze_unsubscribed_by is not None:
            if known is not None and known.state == "unsubscribed":
                return ConsentStep(None, None, "already unsubscribed on both sides")
            return ConsentStep(
                None, ConsentRecord("unsubscribed", at, braze_unsubscribed_by), "echo of Braze"
            )
        decision = decide(
            known, ConsentRecord("unsubscribed", at, "brevo"), allow_resubscribe=allow_resubscribe
        )
        return ConsentStep("unsubscribed" if decision.propagate else None, decision.record, decision.reason)
    if previously_blacklisted is not True:
        return _NO_CONSENT_CHANGE
    decision = decide(known, ConsentRecord("subscribed", at, "brevo"), allow_resubscribe=allow_resubscribe)
    if decision.propagate:
        return ConsentStep("subscribed", decision.record, decision.reason)
    # A refused re-subscribe keeps the stored unsubscribe; only a fresh "nothing to undo" is stored.
    keep = decision.record if known is None else None
    return ConsentStep(None, keep, decision.reason)


# ------------------------------------------------------------------ one contact's plan
@dataclass(frozen=True, slots=True)
class ContactInputs:
    contact: BrevoContact
    fields: Mapping[str, Any]  # mapping.to_braze(contact): Braze field -> value
    lists: tuple[str, ...]  # names of the Brevo lists it belongs to (the connector's own left out)
    memory: ContactMemory | None
    who: tuple[str, ...]
    identity_key: str
    braze_echo: bool  # Brevo holds exactly what the users half imported from Braze
    braze_unsubscribed_by: str | None
    consent: ConsentRecord | None
    braze_now: Mapping[str, Any] | None = None  # Braze's current values, when looked up
    # Braze fields the users half kept Brevo's edit for: Brevo's value is news, not an echo.
    not_echoed: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ContactPlan:
    attributes: Mapping[str, Any]  # flat Braze attributes to send (identity apart); empty: nothing
    memory: ContactMemory
    consent: ConsentRecord | None
    consent_write: str | None
    held_back: tuple[str, ...]
    needs_lookup: tuple[str, ...]  # braze_wins fields changed in Brevo: Braze's values are needed first
    first_sight: bool
    changes: Mapping[str, Mapping[str, Any]]  # field -> {"from", "to"} for dry-run plans


@dataclass(frozen=True, slots=True)
class PlanRules:
    conflicts: Mapping[str, str]  # Braze field -> conflict policy
    sent_by_braze: frozenset[str]  # Braze fields the users half writes to Brevo
    lists_attribute: str
    allow_resubscribe: bool
    describe_changes: bool = True  # ContactPlan.changes, which only a dry run shows
    braze_wins: frozenset[str] = field(init=False)  # the fields whose policy is braze_wins

    def __post_init__(self) -> None:
        wins = frozenset(name for name, policy in self.conflicts.items() if policy == "braze_wins")
        object.__setattr__(self, "braze_wins", wins)


def plan_contact(inputs: ContactInputs, rules: PlanRules, *, now: datetime) -> ContactPlan:
    """Everything one contact needs from Braze, and the memory to keep once Braze acknowledged it."""
    # Runs for every contact of every read (a million in a first read): kept lean on purpose.
    contact = inputs.contact
    previous = inputs.memory if inputs.memory is not None and inputs.memory.who == inputs.who else None
    read: Mapping[str, Any] = previous.read if previous is not None else {}
    known: dict[str, Any] = dict(previous.known) if previous is not None else {}
    if inputs.braze_echo:
        # Braze sent these very values to Brevo: it holds them.
        sent_by_braze, not_echoed = rules.sent_by_braze, inputs.not_echoed
        for name, value in inputs.fields.items():
            if name in sent_by_braze and name not in not_echoed:
                known[name] = value
    changed = changed_fields(inputs.fields, read, known)

    wins = rules.braze_wins
    needs = tuple(sorted(name for name in changed if name in wins)) if wins else ()
    if needs and inputs.braze_now is None:
        return ContactPlan(
            {}, _memory(inputs, read, known, previous), None, None, (), needs, previous is None, {}
        )

    held: list[str] = []
    braze_now = inputs.braze_now
    if not braze_now:
        write = changed  # Braze's values are not known here, so none of them moved: every change goes
    else:
        write = {}
        for name, value in changed.items():
            current = braze_now.get(name, _MISSING)
            if current is not _MISSING and same_value(current, value):
                known[name] = value  # Braze already holds it
                continue
            braze_changed = (
                current is not _MISSING
                and current is not None
                and not same_value(current, known.get(name, _MISSING))
            )
            if brevo_change_wins(rules.conflicts.get(name, "latest"), braze_changed=braze_changed):
                write[name] = value
            else:
                held.append(name)
                known[name] = current
    changes = (
        {name: {"from": known.get(name, read.get(name)), "to": value} for name, value in sorted(write.items())}
        if rules.describe_changes
        else {}
    )
    known.update(write)

    braze_unsubscribed_by = inputs.braze_unsubscribed_by
    if braze_unsubscribed_by is None and known.get(EMAIL_SUBSCRIBE) == "unsubscribed":
        braze_unsubscribed_by = "brevo"
    step = consent_step(
        blacklisted=contact.email_blacklisted,
        previously_blacklisted=previous.blacklisted if previous is not None else None,
        braze_unsubscribed_by=braze_unsubscribed_by,
        known=inputs.consent,
        at=contact.modified_at or now,
        allow_resubscribe=rules.allow_resubscribe,
    )
    attributes: dict[str, Any] = dict(write)
    if step.write is not None:
        attributes[EMAIL_SUBSCRIBE] = step.write
        known[EMAIL_SUBSCRIBE] = step.write
    operations = list_operations(inputs.lists, previous.lists if previous is not None else ())
    if operations is not None:
        attributes[rules.lists_attribute] = operations
    memory = ContactMemory(
        identity_key=inputs.identity_key,
        who=inputs.who,
        read=dict(inputs.fields),
        known=known,
        lists=inputs.lists if len(inputs.lists) < 2 else tuple(sorted(set(inputs.lists))),
        blacklisted=contact.email_blacklisted,
    )
    return ContactPlan(
        attributes=attributes,
        memory=memory,
        consent=step.record,
        consent_write=step.write,
        held_back=tuple(held),
        needs_lookup=(),
        first_sight=previous is None,
        changes=changes,
    )


def _memory(
    inputs: ContactInputs, read: Mapping[str, Any], known: Mapping[str, Any], previous: ContactMemory | None
) -> ContactMemory:
    return ContactMemory(
        inputs.identity_key,
        inputs.who,
        dict(read),
        dict(known),
        previous.lists if previous is not None else (),
        previous.blacklisted if previous is not None else None,
    )


def braze_value(data: Mapping[str, Any], name: str, *, custom: bool) -> Any:
    """A field of a Braze export object, nested custom attributes addressed with dots; None if absent."""
    if not custom:
        return data.get(name)
    node: Any = data.get("custom_attributes")
    if not isinstance(node, Mapping):
        return None
    if name in node:
        return node.get(name)
    for part in name.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def subscription_groups(group_ids: Sequence[str], state: str) -> list[dict[str, str]]:
    """The /users/track `subscription_groups` array moving a user's email groups with the global state."""
    return [{"subscription_group_id": gid, "subscription_state": state} for gid in group_ids]


def track_batch_size(configured: int, objects_cap: int | None, override: int | None) -> int:
    """Objects per /users/track call: the setting, under a contract's combined cap and 75."""
    size = min(TRACK_MAX_OBJECTS, max(1, configured))
    if objects_cap is not None:
        size = min(size, max(1, objects_cap))
    if override is not None:
        size = min(size, max(1, override))
    return size


def merge_missing(known_sorted: Iterable[str], present_sorted: Iterable[str]) -> Iterator[str]:
    """Keys of the first sorted stream that the second sorted stream lacks (a merge; memory stays flat)."""
    present = iter(present_sorted)
    current = next(present, None)
    for key in known_sorted:
        while current is not None and current < key:
            current = next(present, None)
        if current != key:
            yield key


# ------------------------------------------------------------------ the writer
@dataclass(slots=True)
class PendingUpdate:
    contact: BrevoContact
    plan: ContactPlan
    body: dict[str, Any]  # the attributes object sent to Braze
    expected: Expectation | None  # what the users half will read for this person afterwards


@dataclass
class Counters:
    track_calls: int = 0
    attributes_written: int = 0
    unsubscribed: int = 0
    resubscribed: int = 0
    held_back: int = 0
    echoes: int = 0


class TrackWriter:
    """Packs attribute objects densely and commits each batch's state only after Braze acknowledged it.

    Batches are sent by sender threads (several calls in flight, two writes to one profile never at
    once) and committed one at a time, in order, while the next contacts are read and planned: the
    read is paced by Brevo's limit, and waiting for Braze's answers on the same thread would add
    to it. The counts the commits keep are their own (created, updated, failed, attributes,
    consent writes); the reader's thread never writes them.

    The reader plans a chunk from state (email claims, the users half's fingerprints) that the
    commits of earlier chunks move. So that what it reads does not depend on timing, chunk n is
    planned on the commits of chunks up to n-2, all of them and nothing later: `begin_chunk`
    waits for those, and a batch flushed in chunk n-1 is committed only once chunk n is planned.
    """

    def __init__(
        self, ctx: SyncContext, result: ResourceResult, counters: Counters, catch_up: BrevoCatchUp
    ) -> None:
        self.ctx = ctx
        self.result = result
        self.counters = counters
        self.catch_up = catch_up
        sync = ctx.config.sync
        self.size = track_batch_size(sync.track_batch_size, sync.track_objects_cap, ctx.batch_size)
        self.pending: list[PendingUpdate] = []
        self.chunk = 0
        # Whether a write may settle a dead letter of an earlier run (set by the run once it knows).
        self.letters_waiting = True
        # A stop request holds back the batches not sent yet: the next run reads them again.
        self._sender: GatedCommits[list[PendingUpdate], dict[int, str]] = GatedCommits(
            self._post,
            self._commit,
            name="braze-track-sender",
            depth=SEND_QUEUE_DEPTH,
            senders=TRACK_CALLS_IN_FLIGHT,
            touches=_profiles_written,
            hold=ctx.stop.is_set,
        )

    def begin_chunk(self, number: int) -> None:
        """Wait until state holds the commits chunk `number` is planned on (see the class)."""
        self.chunk = number
        if not self.ctx.dry_run:
            self._sender.wait_committed(number - 2)
            self.catch_up.settle()

    def planned(self, number: int, *, last: bool) -> None:
        """Chunk `number` has read what it needs: the batches of the chunk before may commit, and
        its own too when no chunk follows (nothing reads after it)."""
        self._sender.allow(number if last else number - 1)

    def wait_for_writes_to(self, profiles: Iterable[tuple[str, ...]]) -> None:
        """Before Braze is read for these profiles: wait for the answers of queued writes to them."""
        self._sender.wait_sent_touching(list(profiles))

    def add(self, update: PendingUpdate) -> None:
        self.pending.append(update)
        if len(self.pending) >= self.size:
            self.flush()

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        ctx = self.ctx
        self.counters.track_calls += 1
        if ctx.dry_run:
            for update in batch:
                self._count(update)
            self.catch_up.write(
                self.catch_up.take([u.expected for u in batch if u.expected and not u.expected.brevo_holds_it])
            )
            return
        self._sender.submit(batch, self.chunk)
        ctx.check_stop()

    def close(self) -> None:
        """Wait until every queued batch is sent and committed; raise the sender's error if any."""
        self._sender.close()
        if self._sender.held:
            self.ctx.check_stop()  # batches were held back by a stop request: the run is interrupted

    def _post(self, batch: list[PendingUpdate]) -> dict[int, str]:
        """Send one batch; the index -> reason of the objects Braze did not apply."""
        failed: dict[int, str] = {}
        try:
            answer = self.ctx.braze.track(attributes=[u.body for u in batch])
        except PermanentApiError as exc:
            # Braze refused the whole request (nothing of it was applied): every record keeps its reason.
            answer = TrackResult(0, 0, 0)
            failed = {i: f"Braze refused the request: {exc.user_message}" for i in range(len(batch))}
        failed.update(unattributed_failures(answer, len(batch)))
        return failed

    def _commit(self, answered: Sequence[tuple[list[PendingUpdate], dict[int, str]]]) -> None:
        """Store what Braze acknowledged of these batches, in one transaction."""
        ctx = self.ctx
        done = [u for batch, failed in answered for i, u in enumerate(batch) if i not in failed]
        refused = [(batch[i], reason) for batch, failed in answered for i, reason in sorted(failed.items())]
        # The catch-up import sealed by an earlier commit lands first: it moves what this one reads.
        self.catch_up.settle()
        with ctx.state.transaction():
            commit_updates(ctx, done)
            unheld = self.catch_up.remember([u.expected for u in done if u.expected is not None])
            if refused:
                ctx.state.add_dead_letters(
                    (
                        (DEAD_LETTERS, dead_letter_key(update.contact), reason, _dead_letter_record(update))
                        for update, reason in refused
                    ),
                    run_id=ctx.run_id,
                )
            if self.letters_waiting:
                ctx.state.resolve_dead_letters(DEAD_LETTERS, (dead_letter_key(u.contact) for u in done))
        # Only after the transaction: the import sender commits on its own thread.
        self.catch_up.write(unheld)
        for update in done:
            self._count(update)
        self.result.failed += len(refused)

    def _count(self, update: PendingUpdate) -> None:
        plan = update.plan
        if plan.first_sight:
            self.result.created += 1
        else:
            self.result.updated += 1
        self.counters.attributes_written += len(plan.attributes)
        if plan.consent_write == "unsubscribed":
            self.counters.unsubscribed += 1
        elif plan.consent_write == "subscribed":
            self.counters.resubscribed += 1


def _profiles_written(batch: Sequence[PendingUpdate]) -> list[tuple[str, ...]]:
    """The Braze profiles a batch writes: a later batch writing one of them waits for its answer."""
    return [update.plan.memory.who for update in batch]


def unattributed_failures(answer: TrackResult, count: int) -> dict[int, str]:
    """Index -> reason of the objects a 2xx answer says failed.

    An error that names no index cannot be tied to one object: every object of the call is then
    held as failed (attributes replay safely), so none is wrongly remembered as written.
    """
    failed: dict[int, str] = {}
    for error in answer.errors:
        if error.input_array not in (None, "attributes"):
            continue
        if error.index is not None and 0 <= error.index < count:
            failed[error.index] = f"Braze refused the attributes: {error.message}"
        elif error.index is None:
            for i in range(count):
                failed.setdefault(i, f"Braze reported an error it did not tie to an object: {error.message}")
    return failed


def commit_updates(ctx: SyncContext, updates: Sequence[PendingUpdate]) -> None:
    """Memory, consent records and known ids of acknowledged updates."""
    if not updates:
        return
    state = ctx.state
    state.put_field_values(FIELDS, ((state_key(u.contact.id), u.plan.memory.as_value()) for u in updates))
    state.add_members(KNOWN_CONTACTS, (state_key(u.contact.id) for u in updates))
    consents = [
        (u.contact.email.lower(), u.plan.consent.as_value())
        for u in updates
        if u.plan.consent and u.contact.email
    ]
    if consents:
        state.put_field_values(CONSENT_NAMESPACE, consents)


def dead_letter_key(contact: BrevoContact) -> str:
    return f"brevo:{contact.id}"


def _dead_letter_record(update: PendingUpdate) -> dict[str, Any]:
    contact = update.contact
    return {
        "id": contact.id,
        "email": contact.email,
        "ext_id": contact.ext_id,
        "attributes": sorted(update.plan.attributes),
    }


# ------------------------------------------------------------------ the run
@dataclass
class ListNames:
    """Brevo list id -> name, without the lists the connector itself fills from Braze segments."""

    names: dict[int, str] = field(default_factory=dict)

    def of(self, list_ids: Collection[int]) -> tuple[str, ...]:
        if not list_ids:  # most contacts
            return ()
        return tuple(sorted({self.names[i] for i in list_ids if i in self.names}))


class ContactsSync:
    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.result = ResourceResult(RESOURCE, direction=DIRECTION)
        self.counters = Counters()
        self.plan: dict[str, Any] = {"diffs": []}
        mapping = ctx.mapping
        sync = ctx.config.sync
        self.rules = PlanRules(
            conflicts={rule.braze: rule.conflict for rule in mapping.rules if rule.to_braze},
            sent_by_braze=frozenset(
                {"email"}
                | {"phone" for rule in mapping.rules if rule.braze == "phone"}
                | {
                    rule.braze
                    for rule in mapping.rules
                    if rule.to_brevo and rule.braze not in IDENTITY_FIELDS
                }
            ),
            lists_attribute=sync.brevo_lists_attribute,
            allow_resubscribe=sync.allow_resubscribe,
            describe_changes=ctx.dry_run,
        )
        self.custom_fields = {rule.braze: rule.is_custom for rule in mapping.rules}
        self.carried = self.rules.sent_by_braze | {EMAIL_SUBSCRIBE}  # see _carries
        self.email_groups = sync.email_subscription_groups
        self.catch_up = BrevoCatchUp(ctx, writes=ctx.direction == "both")
        self.writer = TrackWriter(ctx, self.result, self.counters, self.catch_up)
        self.lists = ListNames()
        self.seen_ids: array[int] | None = None
        self.retried: set[int] = set()

    # -- setup
    def load_list_names(self) -> None:
        ctx = self.ctx
        folder_name = ctx.config.sync.list_folder
        folder_id = ctx.state.get_value(f"brevo:folder:{folder_name}")
        if not isinstance(folder_id, int):
            folder_id = next((f.id for f in ctx.brevo.iter_folders() if f.name == folder_name), None)
        # Lists the connector fills from Braze segments mirror Braze data: writing them back is an echo.
        own = {int(i) for i in ctx.config.lists.values()}
        users_list = ctx.state.get_value(users_half.USERS_LIST)
        if isinstance(users_list, int):
            own.add(users_list)
        for lst in ctx.brevo.iter_lists():
            if lst.id in own or (folder_id is not None and lst.folder_id == folder_id):
                continue
            self.lists.names[lst.id] = lst.name

    def read_window(self) -> tuple[datetime | None, bool]:
        """(modifiedSince for this read, whether a complete read moves the cursor afterwards)."""
        ctx = self.ctx
        previous = previous_read_start(ctx)
        if ctx.since is not None:
            since = datetime.combine(ctx.since, day_start(), tzinfo=UTC)
            return since, previous is not None and since <= previous
        if ctx.full or previous is None:
            return None, True
        return previous, True

    def load_kept_fields(self) -> None:
        """The fields whose Brevo edits the users half kept, in this run or in one stopped before this half."""
        for key, text in self.ctx.state.iter_fingerprints(users_half.KEPT_BREVO_FIELDS):
            self.ctx.kept_brevo_fields.setdefault(key, set()).update(name for name in text.split("\t") if name)

    def forget_kept_fields(self) -> None:
        state = self.ctx.state
        state.delete_fingerprints(users_half.KEPT_BREVO_FIELDS, list(state.iter_fingerprint_keys(users_half.KEPT_BREVO_FIELDS)))

    # -- the loop
    def run(self) -> ResourceResult:
        ctx = self.ctx
        started = time.monotonic()
        read_started = datetime.fromtimestamp(ctx.clock(), UTC)
        self.load_list_names()
        self.load_kept_fields()
        self.catch_up.resume()
        modified_since, moves_cursor = self.read_window()
        # A read meets each contact once: without letters from earlier runs, none is left to settle
        # (a million deletes of nothing, otherwise).
        self.writer.letters_waiting = ctx.state.count_dead_letters(DEAD_LETTERS) > 0
        if modified_since is None:
            self.seen_ids = array("q")
        # Pages are read ahead while a chunk is mapped and written, so the waits of Brevo's 10 calls
        # a second overlap with that work (at 1M contacts the work itself is the longer of the two).
        read_ahead = READ_AHEAD_CONTACTS // CHUNK_CONTACTS
        try:
            chunks = prefetched(chunked(self._contacts(modified_since), CHUNK_CONTACTS), depth=read_ahead)
            for number, (chunk, last) in enumerate(with_last(chunks)):
                self.writer.begin_chunk(number)
                self._process_chunk(chunk, number, last=last)
            self.writer.flush()
        except BaseException:
            users_half.close_quietly(self.writer)
            raise
        self.writer.close()
        self.catch_up.finish(self.result)

        if ctx.config.sync.deletes:
            from . import deletions

            if self.seen_ids is not None:
                deletions.propagate_brevo_deletions(ctx, self.result, self.seen_ids)
            if ctx.direction == "both":
                deletions.propagate_braze_deletions(ctx, self.result)
        if not ctx.dry_run:
            with ctx.state.transaction():
                if moves_cursor:
                    ctx.state.set_cursor(RESOURCE, DIRECTION, {"read_started_at": read_started.isoformat()})
                self.forget_kept_fields()
                ctx.state.delete_value(REVERSE_DUE)
        self._summarize()
        self.result.duration_s = time.monotonic() - started
        return self.result

    def _contacts(self, modified_since: datetime | None) -> Iterator[BrevoContact]:
        """Dead-lettered contacts first (fetched again by id), then every contact changed since the cursor."""
        ctx = self.ctx
        letters = list(itertools.islice(ctx.state.iter_dead_letters(DEAD_LETTERS), RETRY_DEAD_LETTERS_MAX))
        for letter in letters:
            contact_id = letter.record.get("id")
            if not isinstance(contact_id, int):
                continue
            contact = ctx.brevo.get_contact(str(contact_id), identifier_type="contact_id")
            if contact is None:
                if not ctx.dry_run:
                    ctx.state.resolve_dead_letters(DEAD_LETTERS, [letter.key])
                continue
            self.retried.add(contact.id)
            yield contact
        for contact in ctx.brevo.iter_contacts(modified_since=modified_since):
            if self.seen_ids is not None:
                self.seen_ids.append(contact.id)
            if contact.id in self.retried:
                continue
            yield contact

    def _process_chunk(self, contacts: Sequence[BrevoContact], number: int, *, last: bool) -> None:
        ctx = self.ctx
        state = ctx.state
        mapping = ctx.mapping
        self.result.read += len(contacts)
        memories = {
            key: memory
            for key, value in state.get_field_values(FIELDS, [state_key(c.id) for c in contacts]).items()
            if (memory := ContactMemory.from_value(value)) is not None
        }
        identities = {c.id: identity_key(c, mapping.phone_attribute) for c in contacts}
        sent = {
            key: users_half.SentRecord.decode(text)
            for key, text in state.get_fingerprints(
                users_half.FINGERPRINTS, sorted(set(identities.values()))
            ).items()
        }
        emails = sorted({c.email.lower() for c in contacts if c.email})
        consents = {
            email: consent
            for email, value in (state.get_field_values(CONSENT_NAMESPACE, emails).items() if emails else ())
            if (consent := ConsentRecord.from_value(value)) is not None
        }
        unclaimed = sorted(
            {c.email for c in contacts if c.email and not c.ext_id and state_key(c.id) not in memories}
        )
        claims = state.get_fingerprints(users_half.EMAIL_CLAIMS, unclaimed) if unclaimed else {}
        now = datetime.fromtimestamp(ctx.clock(), UTC)

        inputs: list[ContactInputs] = []
        for contact in contacts:
            memory = memories.get(state_key(contact.id))
            key = identities[contact.id]
            sent_record = sent.get(key)
            inputs.append(
                ContactInputs(
                    contact=contact,
                    fields=mapping.to_braze(contact),
                    lists=self.lists.of(contact.list_ids),
                    memory=memory,
                    who=choose_who(
                        contact, memory, claims.get(contact.email or ""), ctx.config.sync.alias_label
                    ),
                    identity_key=key,
                    braze_echo=is_braze_echo(contact, mapping, sent_record),
                    braze_unsubscribed_by="braze"
                    if sent_record is not None and sent_record.blacklisted
                    else None,
                    consent=consents.get(contact.email.lower()) if contact.email else None,
                )
            )
        if ctx.kept_brevo_fields:
            inputs = [
                dataclasses.replace(item, not_echoed=frozenset(kept))
                if (kept := ctx.kept_brevo_fields.get(self._users_half_key(item)))
                else item
                for item in inputs
            ]
        # A contact without ext_id may write to a profile the users half keys by its external_id.
        owners = sorted({self._users_half_key(item) for item in inputs} - sent.keys())
        if owners:
            sent.update(
                (key, users_half.SentRecord.decode(text))
                for key, text in state.get_fingerprints(users_half.FINGERPRINTS, owners).items()
            )
        plans = [plan_contact(item, self.rules, now=now) for item in inputs]
        lookups = [i for i, plan in enumerate(plans) if plan.needs_lookup]
        if lookups:
            found = self._braze_values(
                [inputs[i] for i in lookups], sorted({f for i in lookups for f in plans[i].needs_lookup})
            )
            for i in lookups:
                looked = dataclasses.replace(inputs[i], braze_now=found.get(inputs[i].who, {}))
                plans[i] = plan_contact(looked, self.rules, now=now)

        quiet: list[PendingUpdate] = []
        outgoing: list[tuple[ContactInputs, ContactPlan, dict[str, Any]]] = []
        for item, plan in zip(inputs, plans, strict=True):
            if item.braze_echo:
                self.counters.echoes += 1
            self.counters.held_back += len(plan.held_back)
            if not plan.attributes:
                self.result.unchanged += 1
                if plan.memory != item.memory or plan.consent is not None or item.contact.id in self.retried:
                    quiet.append(PendingUpdate(item.contact, plan, {}, None))
                continue
            if ctx.dry_run and len(self.plan["diffs"]) < PLAN_SAMPLE:
                self.plan["diffs"].append(
                    {
                        "contact_id": item.contact.id,
                        "braze": list(item.who[:2]),
                        "changes": dict(plan.changes),
                        "attributes": sorted(plan.attributes),
                    }
                )
            body = {**braze_identifier(item.who), **mapping.nest(plan.attributes, merge_objects=True)}
            if plan.consent_write is not None and self.email_groups:
                body["subscription_groups"] = subscription_groups(self.email_groups, plan.consent_write)
            outgoing.append((item, plan, body))
        profiles = self._profiles_to_predict(outgoing, sent)
        self.writer.planned(number, last=last)
        for item, plan, body in outgoing:
            expected = self._expectation(item, plan, sent, profiles)
            self.writer.add(PendingUpdate(item.contact, plan, body, expected))
        if quiet and not ctx.dry_run:
            # Nothing to send for these: their memory (a new baseline, an echo) is stored at once.
            with state.transaction():
                commit_updates(ctx, quiet)
                if self.writer.letters_waiting:
                    state.resolve_dead_letters(DEAD_LETTERS, (dead_letter_key(u.contact) for u in quiet))
        ctx.progress.update(
            PROGRESS_LABEL,
            read=self.result.read,
            written=self.result.created + self.result.updated,
            unchanged=self.result.unchanged,
            rejected=self.result.failed,
        )

    def _users_half_key(self, item: ContactInputs) -> str:
        return f"ext:{item.who[1]}" if item.who[0] == "external_id" else item.identity_key

    def _needs_profile(self, item: ContactInputs, sent: Mapping[str, users_half.SentRecord]) -> bool:
        """Braze's profile is needed to predict the users half's view: it never wrote this person,
        or it keys them by an external_id the Brevo contact does not carry."""
        if item.who[0] != "external_id":
            return False
        return self._users_half_key(item) not in sent or item.contact.ext_id != item.who[1]

    def _profiles_to_predict(
        self,
        outgoing: Sequence[tuple[ContactInputs, ContactPlan, dict[str, Any]]],
        sent: Mapping[str, users_half.SentRecord],
    ) -> dict[tuple[str, ...], Mapping[str, Any]]:
        """Braze's profiles (as exported, before our write) of the people `_needs_profile` names.

        Looked up only when this run catches Brevo up; a profile Braze does not have yet is one
        our write creates, so it starts from Braze's defaults.
        """
        if self.catch_up.list_id is None:
            return {}
        wanted = sorted(
            {item.who[1] for item, plan, _ in outgoing if self._carries(plan) and self._needs_profile(item, sent)}
        )
        found: dict[tuple[str, ...], Mapping[str, Any]] = {}
        fields = self.ctx.mapping.fields_to_export()
        self.writer.wait_for_writes_to(("external_id", external_id) for external_id in wanted)
        for start in range(0, len(wanted), EXPORT_IDS_MAX):
            batch = wanted[start : start + EXPORT_IDS_MAX]
            answer = self.ctx.braze.export_ids(external_ids=batch, fields_to_export=fields)
            self.result.api_calls["POST /users/export/ids"] = (
                self.result.api_calls.get("POST /users/export/ids", 0) + 1
            )
            for user in answer.users:
                if user.external_id:
                    found[("external_id", user.external_id)] = user.data
            for external_id in batch:
                found.setdefault(("external_id", external_id), NEW_PROFILE_DEFAULTS)
        return found

    def _carries(self, plan: ContactPlan) -> bool:
        """The write changes something the users half reads (not only the list attribute)."""
        return not self.carried.isdisjoint(plan.attributes)

    def _expectation(
        self,
        item: ContactInputs,
        plan: ContactPlan,
        sent: Mapping[str, users_half.SentRecord],
        profiles: Mapping[tuple[str, ...], Mapping[str, Any]],
    ) -> Expectation | None:
        """What the users half will map from Braze for this person once the write landed, if knowable."""
        if not self._carries(plan):
            return None
        record = sent.get(self._users_half_key(item))
        base = profiles.get(item.who)
        if base is None and item.who[0] == "user_alias" and item.memory is None:
            base = NEW_PROFILE_DEFAULTS  # the alias write creates the profile
        if base is None and (record is None or self._needs_profile(item, sent)):
            return None  # Braze's other values are unknown here: the users half reads them next run
        blacklisted = record.blacklisted if record is not None else None
        if plan.consent_write == "unsubscribed":
            blacklisted = True
        elif plan.consent_write == "subscribed":
            blacklisted = False
        external_id = item.who[1] if item.who[0] == "external_id" else None
        return expect(
            item.contact,
            self.ctx.mapping,
            plan.attributes,
            sent=record,
            base=base,
            external_id=external_id,
            blacklisted=blacklisted,
        )

    def _braze_values(
        self, items: Sequence[ContactInputs], names: Sequence[str]
    ) -> dict[tuple[str, ...], dict[str, Any]]:
        """Braze's current values of `names` for these profiles, 50 identifiers per /users/export/ids call."""
        ctx = self.ctx
        fields = sorted(
            {"custom_attributes" if self.custom_fields.get(n, True) else n for n in names} | {"external_id"}
        )
        found: dict[tuple[str, ...], dict[str, Any]] = {}
        addressable = [i for i in items if i.who[0] in ("external_id", "user_alias")]
        self.writer.wait_for_writes_to(i.who for i in addressable)
        for start in range(0, len(addressable), EXPORT_IDS_MAX):
            batch = addressable[start : start + EXPORT_IDS_MAX]
            external_ids = [i.who[1] for i in batch if i.who[0] == "external_id"]
            aliases = [
                {"alias_name": i.who[1], "alias_label": i.who[2]} for i in batch if i.who[0] == "user_alias"
            ]
            answer = ctx.braze.export_ids(
                external_ids=external_ids, user_aliases=aliases, fields_to_export=fields
            )
            self.result.api_calls["POST /users/export/ids"] = (
                self.result.api_calls.get("POST /users/export/ids", 0) + 1
            )
            by_external: dict[str, BrazeUser] = {u.external_id: u for u in answer.users if u.external_id}
            by_alias: dict[tuple[str, str], BrazeUser] = {}
            for exported in answer.users:
                for alias in exported.data.get("user_aliases") or []:
                    if isinstance(alias, Mapping):
                        by_alias[(str(alias.get("alias_name")), str(alias.get("alias_label")))] = exported
            for item in batch:
                user = (
                    by_external.get(item.who[1])
                    if item.who[0] == "external_id"
                    else by_alias.get((item.who[1], item.who[2]))
                )
                if user is None:
                    found[item.who] = {}  # no such profile yet: Braze holds nothing to defend
                    continue
                found[item.who] = {
                    n: braze_value(user.data, n, custom=self.custom_fields.get(n, True)) for n in names
                }
        return found

    def _summarize(self) -> None:
        counters = self.counters
        result = self.result
        result.api_calls["POST /users/track"] = (
            result.api_calls.get("POST /users/track", 0) + counters.track_calls
        )
        if counters.echoes:
            result.notes.append(f"{counters.echoes} contact(s) held what Braze itself sent: not written back")
        if counters.attributes_written:
            result.notes.append(f"{counters.attributes_written} attribute value(s) written to Braze")
        if counters.unsubscribed:
            result.notes.append(f"{counters.unsubscribed} contact(s) unsubscribed in Braze (Brevo blocklist)")
        if counters.resubscribed:
            result.notes.append(
                f"{counters.resubscribed} contact(s) re-subscribed in Braze (allowed by sync.allow_resubscribe)"
            )
        if counters.held_back:
            result.notes.append(
                f"{counters.held_back} Brevo change(s) held back: Braze changed the same field and the mapping says braze_wins"
            )
        if self.ctx.dry_run:
            self.plan.update(
                {
                    "create": result.created,
                    "update": result.updated,
                    "unchanged": result.unchanged,
                    "braze_calls": {"POST /users/track": counters.track_calls},
                    "attributes": counters.attributes_written,
                    "unsubscribe": counters.unsubscribed,
                    "resubscribe": counters.resubscribed,
                }
            )
            result.plan = {**self.plan, **result.plan}


def previous_read_start(ctx: SyncContext) -> datetime | None:
    """Where an incremental read starts: a little before the previous read began (None: no read yet)."""
    cursor = ctx.state.get_cursor(RESOURCE, DIRECTION)
    started = cursor.get("read_started_at") if cursor else None
    if not isinstance(started, str):
        return None
    try:
        return datetime.fromisoformat(started) - CURSOR_OVERLAP
    except ValueError:
        return None


def read_brevo_edits(ctx: SyncContext) -> dict[str, dict[str, BrevoEdit]]:
    """Fields going both ways that Brevo changed since the last read, by the users half's key.

    Read before the Braze -> Brevo half of a two-way run: it imports whole contacts, and without
    this it would write Braze's unchanged value over a Brevo edit made since (the reverse half,
    reading afterwards, would then take the edit for an echo and lose it). Only people this half
    has synced before can have edits; the cursor does not move here.
    """
    rules = [
        rule
        for rule in ctx.mapping.rules
        if rule.to_braze and rule.to_brevo and rule.braze not in IDENTITY_FIELDS | CONSENT_FIELDS
    ]
    since = previous_read_start(ctx) if rules else None
    if since is None:
        return {}
    mapping = ctx.mapping
    edits: dict[str, dict[str, BrevoEdit]] = {}
    for chunk in chunked(ctx.brevo.iter_contacts(modified_since=since), CHUNK_CONTACTS):
        stored = ctx.state.get_field_values(FIELDS, [state_key(c.id) for c in chunk])
        for contact in chunk:
            memory = ContactMemory.from_value(stored.get(state_key(contact.id)))
            if memory is None:
                continue
            fields = mapping.to_braze(contact)
            changed: dict[str, BrevoEdit] = {}
            for rule in rules:
                now = fields.get(rule.braze, _MISSING)
                if same_value(now, memory.read.get(rule.braze, _MISSING)):
                    continue
                synced = memory.known.get(rule.braze, memory.read.get(rule.braze))
                changed[rule.brevo] = BrevoEdit(
                    value=None if now is _MISSING else contact.attributes.get(rule.brevo),
                    synced=mapping.brevo_value(rule.braze, synced),
                    policy=rule.conflict,
                    braze_field=rule.braze,
                )
            if changed:
                who = memory.who
                edits[f"ext:{who[1]}" if who and who[0] == "external_id" else memory.identity_key] = changed
    return edits


def run(ctx: SyncContext) -> ResourceResult:
    return ContactsSync(ctx).run()
