"""Braze segments -> Brevo lists: mirrored membership (adds and removes), one-shot exports, segment sizes.

Mirroring, per segment, one after another (at most `sync.export_concurrency` exports requested ahead):

    export the segment (or resume its checkpoint) -> read it into a staging set, creating the members
    Brevo does not hold yet through the users path (their import also puts them in the list)
    -> merge the staging set with the last mirrored membership (both sorted, memory stays flat)
    -> list adds and removes, at most 150 contacts per call -> membership state after each answer.

State per segment: the last mirrored membership in the members namespace `segment:<segment id>`
(contact identities as the users sync keys them: `ext:<external_id>`, `email:<email>`,
`sms:<E.164>`), the export checkpoint, the staging set, which list the membership mirrors and the
list created for it. Segment sizes (`/segments/data_series`) are stored as metrics, incremental by
day behind one cursor.

Counters of the `segments` result: `read` export lines, `created` list additions, `updated` list
removals, `unchanged` members already mirrored (or already in the list), `skipped` members Brevo
cannot take into a list this run, `failed` members dead-lettered by the users path (Brevo cannot
hold them at all).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson

from tajo_braze import jsonbytes

from ..batching import chunked
from ..errors import (
    PermanentApiError,
    PermissionDenied,
    RateLimited,
    RecordRejected,
    TransientApiError,
    UsageError,
)
from ..exports import EXPORT_REUSE_MAX_AGE_S, ExportLine, download_export, iter_export_lines, wait_until_ready
from ..mapping import CompiledMapping, FieldRule
from ..models import BrevoList, ContactPayload, ImportProcess, ListMembershipResult, ResourceResult, Segment
from ..state import MetricRow
from . import users
from .context import SyncContext

RESOURCE = "segments"
MEMBERS_PREFIX = "segment:"  # last mirrored membership of a segment
STAGING_PREFIX = "segments:staging:"  # membership read from the segment's current export
DRY_RUN_STAGING_PREFIX = "segments:dry_run_staging:"
CHECKPOINT_PREFIX = "segments:checkpoint:"
CREATED_LIST_PREFIX = "segments:created_list:"  # {"list_id", "name"}: the list made for a segment, once
MIRRORED_LIST_PREFIX = "segments:mirrored_list:"  # {"list_id"}: the list the membership namespace mirrors
LIST_SNAPSHOT_PREFIX = "segments:list_snapshot:"
# Members the users path refused whose ext_id Brevo did not know either: {key: day seen}.
ABSENT_PREFIX = "segments:absent:"
ABSENT_RETRY_DAYS = 7
# Written by the users sync when its export is complete (see the report of this capability): an
# export of the users segment that fresh is reused instead of asking Braze for a second one.
USERS_LAST_EXPORT = "users:last_export"
USERS_EXPORT_REUSE_S = 15 * 60
SIZE_CURSOR = ("segments", "size_series")

LIST_CALL_MAX = 150  # Brevo: contacts per list add/remove call
CHUNK_LINES = 2000
SERIES_WINDOW_DAYS = 100  # Braze: /segments/data_series length 1..100
FIRST_BACKFILL_DAYS = 100
DIRECT_CHECKS_MAX = 10  # failed adds checked one by one before reading the whole list once (500 a page)
PLAN_SAMPLE = 5
IMPORT_ROWS_MAX = 5000
IMPORT_BODY_BUDGET = users.IMPORT_SAFE_BYTES - 64 * 1024  # room for the request's own keys around the rows
EXPORT_CONCURRENCY_MAX = 100  # Braze: concurrent segment exports per company
PROCESS_POLLS = 8
CREATED_SINCE_MARGIN_S = 60  # clock difference tolerated between this machine and Brevo

Change = Literal["add", "remove", "keep"]
ListField = Literal["extIds", "emails", "ids"]


# ------------------------------------------------------------------ pure pieces
@dataclass(frozen=True, slots=True)
class MemberRef:
    """How Brevo's list endpoints address one member: by ext_id, by email, or by contact id (phone only)."""

    key: str
    field: ListField
    value: str  # for `ids`, the phone number still to be turned into a contact id


def member_ref(key: str) -> MemberRef | None:
    """The list-call identity of a membership key; None for keys Brevo cannot address."""
    prefix, _, value = key.partition(":")
    if not value:
        return None
    if prefix == "ext":
        return MemberRef(key, "extIds", value)
    if prefix == "email":
        return MemberRef(key, "emails", value)
    if prefix == "sms":
        return MemberRef(key, "ids", value)
    return None


def answered_value(ref_field: ListField, value: str) -> str:
    """A value as it is matched against Brevo's success/failure answer (emails compare case-blind)."""
    return value.lower() if ref_field == "emails" else value


def diff_sorted(current: Iterable[str], mirrored: Iterable[str]) -> Iterator[tuple[Change, str]]:
    """Merge two ascending, duplicate-free key streams: what to add, to remove, and what stays.

    Both sides are read once, in step, so a million members need no set in memory.
    """
    sentinel = object()
    left, right = iter(current), iter(mirrored)
    a: Any = next(left, sentinel)
    b: Any = next(right, sentinel)
    while a is not sentinel or b is not sentinel:
        if b is sentinel or (a is not sentinel and a < b):
            yield "add", a
            a = next(left, sentinel)
        elif a is sentinel or b < a:
            yield "remove", b
            b = next(right, sentinel)
        else:
            yield "keep", a
            a, b = next(left, sentinel), next(right, sentinel)


def list_name_for(prefix: str, segment_name: str) -> str:
    return f"{prefix}{segment_name}"


def series_windows(start: date, end: date, max_days: int = SERIES_WINDOW_DAYS) -> list[tuple[date, date]]:
    """Inclusive day windows of at most `max_days` covering start..end, oldest first."""
    if max_days < 1:
        raise ValueError("max_days must be at least 1")
    windows: list[tuple[date, date]] = []
    first = start
    while first <= end:
        last = min(first + timedelta(days=max_days - 1), end)
        windows.append((first, last))
        first = last + timedelta(days=1)
    return windows


def first_day_to_fetch(
    last_stored: date | None,
    today: date,
    *,
    since: date | None,
    full: bool,
    backfill_days: int = FIRST_BACKFILL_DAYS,
) -> date:
    """Where a segment's size series resumes: the last stored day again (it may have been partial)."""
    if last_stored is not None and not full:
        return min(last_stored, today)
    if since is not None:
        return min(since, today)
    return today - timedelta(days=backfill_days - 1)


def size_rows(segment_id: str, points: Iterable[Mapping[str, Any]], *, not_after: date) -> list[MetricRow]:
    """`{"time": "YYYY-MM-DD", "size": n}` points as metric rows; unreadable or future points are left out."""
    rows: dict[str, MetricRow] = {}
    for point in points:
        raw_day, size = point.get("time"), point.get("size")
        if not isinstance(raw_day, str) or isinstance(size, bool) or not isinstance(size, int | float):
            continue
        try:
            day = date.fromisoformat(raw_day[:10])
        except ValueError:
            continue
        if day > not_after:
            continue
        rows[day.isoformat()] = MetricRow(
            "segment", segment_id, day.isoformat(), "", "", "", "size", float(size)
        )
    return [rows[day] for day in sorted(rows)]


@dataclass(frozen=True, slots=True)
class MirrorTarget:
    segment_id: str
    segment_name: str
    list_id: int | None  # None: a list is created for it (a dry run only says so)
    list_name: str | None  # the name of a list to create, or of a list created before
    configured: bool  # from `lists:` (True) or from `mirror_segments` (False)


@dataclass(frozen=True, slots=True)
class TargetPlan:
    targets: tuple[MirrorTarget, ...]
    notes: tuple[str, ...]


def plan_targets(
    segments: Sequence[Segment],
    configured: Sequence[tuple[str, str, int]],
    mirrored: Sequence[str],
    created_lists: Mapping[str, int],
    prefix: str,
) -> TargetPlan:
    """Which segment goes to which list.

    `configured` holds `(as written, segment id, list id)` from `lists:`; `mirrored` the segment ids
    `mirror_segments` selects; `created_lists` the lists made for segments before (by segment id, so
    a renamed segment keeps its list). A configured list wins over a created one; a segment goes to
    one list, and a list takes one segment (two segments removing each other's members would flap).
    """
    names = {s.id: s.name for s in segments}
    targets: list[MirrorTarget] = []
    notes: list[str] = []
    by_segment: dict[str, MirrorTarget] = {}
    by_list: dict[int, MirrorTarget] = {}

    def accept(target: MirrorTarget, shown: str) -> None:
        taken = by_segment.get(target.segment_id)
        if taken is not None:
            if taken.list_id != target.list_id:
                notes.append(
                    f"segment '{shown}' is mapped to list {taken.list_id} already; "
                    f"list {target.list_id} is left alone (a segment mirrors into one list)"
                )
            return
        if target.list_id is not None:
            owner = by_list.get(target.list_id)
            if owner is not None:
                notes.append(
                    f"list {target.list_id} already mirrors segment '{owner.segment_name}'; "
                    f"segment '{shown}' is skipped (a list mirrors one segment)"
                )
                return
            by_list[target.list_id] = target
        by_segment[target.segment_id] = target
        targets.append(target)

    for shown, segment_id, list_id in configured:
        accept(MirrorTarget(segment_id, names.get(segment_id, shown), int(list_id), None, True), shown)
    for segment_id in mirrored:
        if segment_id in by_segment:
            continue
        name = names.get(segment_id, segment_id)
        known = created_lists.get(segment_id)
        accept(
            MirrorTarget(segment_id, name, known, None if known else list_name_for(prefix, name), False), name
        )
    return TargetPlan(tuple(targets), tuple(notes))


def select_rules(rules: Sequence[FieldRule], include: Sequence[str]) -> tuple[list[FieldRule], list[str]]:
    """The mapping rules of the included Braze fields, and the included names no rule maps."""
    wanted = [name.strip() for name in include if name.strip()]
    mapped = {rule.braze for rule in rules}
    selected = [rule for rule in rules if rule.braze in wanted]
    unknown = [
        name for name in dict.fromkeys(wanted) if name not in mapped and name not in ("external_id", "email")
    ]
    return selected, unknown


# ------------------------------------------------------------------ the export checkpoint
@dataclass(frozen=True, slots=True)
class ExportCheckpoint:
    """Where a segment's mirror stands: its export, and how far it was read into the staging set."""

    segment_id: str
    list_id: int | None
    fields: tuple[str, ...]
    url: str
    object_prefix: str | None
    requested_at: float
    path: str
    phase: Literal["reading", "applying"] = "reading"
    member: int = 0
    line: int = 0

    def as_value(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["fields"] = list(self.fields)
        return value

    @classmethod
    def from_value(cls, value: Any) -> ExportCheckpoint | None:
        if not isinstance(value, dict):
            return None
        try:
            phase = value.get("phase", "reading")
            if phase not in ("reading", "applying"):
                return None
            list_id = value.get("list_id")
            return cls(
                segment_id=str(value["segment_id"]),
                list_id=None if list_id is None else int(list_id),
                fields=tuple(str(f) for f in value["fields"]),
                url=str(value["url"]),
                object_prefix=value.get("object_prefix"),
                requested_at=float(value["requested_at"]),
                path=str(value["path"]),
                phase=phase,
                member=int(value.get("member", 0)),
                line=int(value.get("line", 0)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def resumable(self, *, list_id: int | None, fields: Sequence[str], now: float) -> bool:
        """Same list and fields, and young enough that its URL (and the membership it read) still hold."""
        return (
            self.list_id == list_id
            and list(self.fields) == list(fields)
            and (now - self.requested_at < EXPORT_REUSE_MAX_AGE_S)
        )


def reusable_users_export(
    record: Any, *, segment_id: str, fields: Sequence[str], now: float
) -> tuple[str, str | None, float, str] | None:
    """(url, object_prefix, requested_at, path) of the users sync's finished export, when it can serve."""
    if not isinstance(record, dict) or record.get("segment_id") != segment_id:
        return None
    url, requested_at, path = record.get("url"), record.get("requested_at"), record.get("path")
    exported = record.get("fields")
    if (
        not isinstance(url, str)
        or not isinstance(requested_at, int | float)
        or not isinstance(exported, list)
    ):
        return None
    if not set(fields) <= set(exported) or not 0 <= now - float(requested_at) <= USERS_EXPORT_REUSE_S:
        return None
    prefix = record.get("object_prefix")
    return url, prefix if isinstance(prefix, str) else None, float(requested_at), str(path or "")


# ------------------------------------------------------------------ small state utilities
def _clear_members(ctx: SyncContext, namespace: str) -> None:
    while True:
        keys = list(itertools.islice(ctx.state.iter_members(namespace), 5000))
        if not keys:
            return
        ctx.state.remove_members(namespace, keys)


def _clear_fingerprints(ctx: SyncContext, namespace: str) -> None:
    while True:
        keys = list(itertools.islice(ctx.state.iter_fingerprint_keys(namespace), 5000))
        if not keys:
            return
        ctx.state.delete_fingerprints(namespace, keys)


def _bump(counts: dict[str, int], name: str, by: int = 1) -> None:
    counts[name] = counts.get(name, 0) + by


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        return


def _member_key(mapping: CompiledMapping, raw: bytes) -> str | None:
    """The identity the users sync gives this export line (also for users it cannot write)."""
    if not raw:
        return None
    try:
        user = users.user_from_line(raw)
    except RecordRejected:
        return None
    return mapping.to_brevo(user).key


# ------------------------------------------------------------------ the users path, list-aware
class MemberImportWriter(users.ImportWriter):
    """The users sync's import writer, with the segment's list added to every import it sends.

    Members Brevo does not hold yet are created with the mapping and join the list in the same
    import. `accepted` names every member handed to an import.
    """

    def __init__(
        self, ctx: SyncContext, result: ResourceResult, users_list_id: int, segment_list_id: int
    ) -> None:
        super().__init__(ctx, result, users_list_id)
        lists = list(dict.fromkeys([users_list_id, segment_list_id]))
        for name in ("suffix", "blacklist_suffix"):
            options = orjson.loads(getattr(self, name))
            options["listIds"] = lists
            setattr(self, name, orjson.dumps(options))
        self.accepted: list[str] = []

    def add(
        self, row: bytes, meta: users.PendingRow, position: tuple[int, int], *, unsubscribe: bool = False
    ) -> None:
        super().add(row, meta, position, unsubscribe=unsubscribe)
        self.accepted.append(meta.key)

    def has_rows(self) -> bool:
        return bool(len(self.batch.rows) or len(self.blacklist))


# ------------------------------------------------------------------ list calls
class ListProbe:
    """Tells "already in the list" from "no such contact" after a failed add.

    A few failures are checked one contact at a time; past that the list is read once (500 per
    page) into a scratch namespace, which is cheaper than thousands of single reads.
    """

    def __init__(self, ctx: SyncContext, list_id: int) -> None:
        self.ctx = ctx
        self.list_id = list_id
        self.checked = 0
        self.snapshot: str | None = None

    def in_list(self, refs: Sequence[MemberRef]) -> set[str]:
        if self.snapshot is None and self.checked + len(refs) <= DIRECT_CHECKS_MAX:
            self.checked += len(refs)
            found: set[str] = set()
            for ref in refs:
                kind = {"extIds": "ext_id", "emails": "email_id", "ids": "contact_id"}[ref.field]
                contact = self.ctx.brevo.get_contact(ref.value, identifier_type=kind)
                if contact is not None and self.list_id in contact.list_ids:
                    found.add(ref.key)
            return found
        if self.snapshot is None:
            self.snapshot = self._read_list()
        return set(self.ctx.state.get_fingerprints(self.snapshot, [ref.key for ref in refs]))

    def _read_list(self) -> str:
        namespace = f"{LIST_SNAPSHOT_PREFIX}{self.list_id}"
        _clear_fingerprints(self.ctx, namespace)
        batch: list[tuple[str, str]] = []
        for contact in self.ctx.brevo.iter_list_members(self.list_id):
            if contact.ext_id:
                batch.append((f"ext:{contact.ext_id}", "1"))
            if contact.email:
                batch.append((f"email:{contact.email.lower()}", "1"))
            sms = contact.attributes.get("SMS")
            if isinstance(sms, str) and sms:
                batch.append((f"sms:{sms}", "1"))
            if len(batch) >= 5000:
                self.ctx.state.put_fingerprints(namespace, batch)
                batch = []
        if batch:
            self.ctx.state.put_fingerprints(namespace, batch)
        return namespace

    def close(self) -> None:
        if self.snapshot is not None:
            _clear_fingerprints(self.ctx, self.snapshot)
            self.snapshot = None


@dataclass
class ListPlan:
    """What one segment's mirror did, or would do in a dry run."""

    segment_id: str
    segment: str
    list_id: int | None
    list_name: str | None
    create_list: bool = False
    add: int = 0
    remove: int = 0
    unchanged: int = 0
    created_through_users_path: int = 0
    not_holdable: int = 0
    add_if_in_brevo: int = 0  # adds of members the users path refused: they join only if Brevo holds them
    add_calls: int = 0
    remove_calls: int = 0
    add_sample: list[str] = field(default_factory=list)
    remove_sample: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "segment_id": self.segment_id,
            "segment": self.segment,
            "list_id": self.list_id,
            "list_name": self.list_name,
            "create_list": self.create_list,
            "add": self.add,
            "remove": self.remove,
            "unchanged": self.unchanged,
            "create_contacts_first": self.created_through_users_path,
            "cannot_be_held": self.not_holdable,
            "add_if_in_brevo": self.add_if_in_brevo,
            "brevo_calls": {"add": self.add_calls, "remove": self.remove_calls},
            "add_sample": self.add_sample,
            "remove_sample": self.remove_sample,
        }


class ListApplier:
    """Buffers adds and removes per addressing kind and sends them 150 (or --batch-size) at a time.

    Membership state changes only for what Brevo answered: an added or already-present contact is
    recorded, a removed or absent one forgotten; contacts Brevo does not hold yet stay unrecorded
    and are tried again next run.
    """

    def __init__(
        self,
        ctx: SyncContext,
        result: ResourceResult,
        plan: ListPlan,
        list_id: int,
        namespaces: tuple[str, str, str],
        today: str,
    ) -> None:
        self.ctx = ctx
        self.result = result
        self.plan = plan
        self.list_id = list_id
        # mirrored membership; staged members the users path refused; those of them Brevo lacked
        self.namespace, self.unsure, self.absent = namespaces
        self.today = today
        self.batch = max(1, min(LIST_CALL_MAX, ctx.batch_size or LIST_CALL_MAX))
        self.pending: dict[tuple[Change, ListField], list[MemberRef]] = {}
        self.probe = ListProbe(ctx, list_id)
        self.missing = 0
        self.unaddressable = 0

    def queue(self, action: Change, key: str) -> None:
        ref = member_ref(key)
        if ref is None:
            self.unaddressable += 1
            self.result.skipped += 1
            return
        bucket = self.pending.setdefault((action, ref.field), [])
        bucket.append(ref)
        if len(bucket) >= self.batch:
            self._send(action, ref.field)

    def flush(self) -> None:
        for action, ref_field in list(self.pending):
            self._send(action, ref_field)
        self.probe.close()

    def _unsure(self, refs: Sequence[MemberRef]) -> set[str]:
        return set(self.ctx.state.get_fingerprints(self.unsure, [ref.key for ref in refs])) if refs else set()

    def _send(self, action: Change, ref_field: ListField) -> None:
        refs = self.pending.pop((action, ref_field), [])
        if not refs:
            return
        plan = self.plan
        if action == "add":
            plan.add_calls += 1
        else:
            plan.remove_calls += 1
        if self.ctx.dry_run:
            self._plan(action, refs)
            return
        absent: list[MemberRef] = []
        if ref_field == "ids":
            refs, absent = self._contact_ids(refs)
        answer = self._call(action, ref_field, refs) if refs else ListMembershipResult((), ())
        by_value = {answered_value(ref_field, ref.value): ref for ref in refs}
        succeeded = [
            by_value[v] for v in (answered_value(ref_field, x) for x in answer.success) if v in by_value
        ]
        failed = [
            by_value[v] for v in (answered_value(ref_field, x) for x in answer.failure) if v in by_value
        ]
        if action == "add":
            confirmed = self.probe.in_list(failed) if failed else set()
            already = [ref.key for ref in failed if ref.key in confirmed]
            unsure = self._unsure([ref for ref in failed if ref.key not in confirmed])
            missing = len(failed) - len(already) - len(unsure) + len(absent)
            with self.ctx.state.transaction():
                self.ctx.state.add_members(self.namespace, [ref.key for ref in succeeded] + already)
                if unsure:  # refused by the users path and not in Brevo either: not tried again for a while
                    self.ctx.state.put_fingerprints(self.absent, ((key, self.today) for key in unsure))
            plan.add += len(succeeded) + len(already)
            self.result.created += len(succeeded)
            self.result.unchanged += len(already)
            self.result.skipped += missing
            self.missing += missing
        else:
            # "Already removed" and "does not exist" both leave the contact out of the list: done either way.
            gone = [ref.key for ref in succeeded + failed + absent]
            self.ctx.state.remove_members(self.namespace, gone)
            plan.remove += len(gone)
            self.result.updated += len(succeeded)
            self.result.unchanged += len(failed) + len(absent)
        self.ctx.check_stop()

    def _plan(self, action: Change, refs: Sequence[MemberRef]) -> None:
        """A dry run counts what it would send; members the users path refused join only if Brevo has them."""
        plan = self.plan
        if action == "remove":
            plan.remove += len(refs)
            self.result.updated += len(refs)
            plan.remove_sample.extend(ref.key for ref in refs[: PLAN_SAMPLE - len(plan.remove_sample)])
            return
        unsure = self._unsure(refs)
        sure = [ref for ref in refs if ref.key not in unsure]
        plan.add += len(sure)
        plan.add_if_in_brevo += len(unsure)
        self.result.created += len(sure)
        plan.add_sample.extend(ref.key for ref in sure[: PLAN_SAMPLE - len(plan.add_sample)])

    def _call(self, action: Change, ref_field: ListField, refs: Sequence[MemberRef]) -> ListMembershipResult:
        values = [ref.value for ref in refs]
        brevo = self.ctx.brevo
        change = brevo.add_to_list if action == "add" else brevo.remove_from_list
        _bump(self.result.api_calls, f"POST /contacts/lists/{{id}}/contacts/{action}")
        if ref_field == "extIds":
            return change(self.list_id, ext_ids=values)
        if ref_field == "emails":
            return change(self.list_id, emails=values)
        return change(self.list_id, ids=[int(v) for v in values])

    def _contact_ids(self, refs: Sequence[MemberRef]) -> tuple[list[MemberRef], list[MemberRef]]:
        """Members known by phone only: Brevo's list calls take their contact id instead."""
        found: list[MemberRef] = []
        absent: list[MemberRef] = []
        for ref in refs:
            contact = self.ctx.brevo.get_contact(ref.value, identifier_type="phone_id")
            if contact is None:
                absent.append(ref)
            else:
                found.append(MemberRef(ref.key, "ids", str(contact.id)))
        return found, absent


# ------------------------------------------------------------------ the mirror run
class SegmentsSync:
    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.result = ResourceResult(RESOURCE, direction="braze_to_brevo")
        # The users path never skips members for --since or rewrites them for --full: membership is
        # all or nothing, and refreshing contacts is the users sync's job.
        self.users_ctx = dataclasses.replace(ctx, since=None, full=False)
        self.users_sync = users.UsersSync(self.users_ctx)
        self.fields = self.users_sync.export_fields()
        self.users_list: int | None = None
        self.plans: list[ListPlan] = []
        self.imports_sent = 0
        self.analytics_plan: dict[str, int] = {}
        self._brevo_lists: list[BrevoList] | None = None

    # -- which segments, which lists
    def resolve(self, wanted: str, by_id: Mapping[str, Segment]) -> str:
        if wanted in by_id:
            return wanted
        return users.resolve_segment_id(self.ctx, wanted)

    def targets(self, segments: Sequence[Segment]) -> list[MirrorTarget]:
        ctx = self.ctx
        config = ctx.config
        by_id = {s.id: s for s in segments}
        configured: list[tuple[str, str, int]] = []
        for wanted, list_id in config.lists.items():
            try:
                configured.append((wanted, self.resolve(str(wanted), by_id), int(list_id)))
            except UsageError as exc:
                self.result.notes.append(f"lists: '{wanted}' skipped: {exc.user_message}")
        mirror = config.mirror_segments
        selected: list[str] = []
        if mirror == "all":
            selected = [s.id for s in segments]
        else:
            for name in mirror:
                try:
                    selected.append(self.resolve(name, by_id))
                except UsageError as exc:
                    self.result.notes.append(f"mirror_segments: '{name}' skipped: {exc.user_message}")
        created: dict[str, int] = {}
        for segment_id in selected:
            record = ctx.state.get_value(f"{CREATED_LIST_PREFIX}{segment_id}")
            if isinstance(record, dict) and isinstance(record.get("list_id"), int):
                created[segment_id] = record["list_id"]
        plan = plan_targets(segments, configured, selected, created, config.sync.list_prefix)
        self.result.notes.extend(plan.notes)
        return list(plan.targets)

    def brevo_lists(self) -> list[BrevoList]:
        if self._brevo_lists is None:
            self._brevo_lists = list(self.ctx.brevo.iter_lists())
        return self._brevo_lists

    def ensure_list(self, target: MirrorTarget) -> MirrorTarget:
        """Create the list of a `mirror_segments` segment once (a dry run only plans it)."""
        if target.configured:
            return target
        ctx = self.ctx
        if target.list_id is not None:
            if any(lst.id == target.list_id for lst in self.brevo_lists()):
                return target
            # The list made for this segment was deleted in Brevo: make a new one, membership from scratch.
            self.result.notes.append(
                f"list {target.list_id} of segment '{target.segment_name}' no longer exists in Brevo; a new one is made"
            )
            if not ctx.dry_run:
                ctx.state.delete_value(f"{CREATED_LIST_PREFIX}{target.segment_id}")
            target = dataclasses.replace(
                target,
                list_id=None,
                list_name=list_name_for(ctx.config.sync.list_prefix, target.segment_name),
            )
        name = target.list_name or list_name_for(ctx.config.sync.list_prefix, target.segment_name)
        folder_id = users.ensure_folder(ctx, ctx.config.sync.list_folder)
        # A list of that name in the folder is adopted: a run stopped between creating it and
        # recording it must not create a second one.
        existing = next(
            (lst.id for lst in self.brevo_lists() if lst.name == name and lst.folder_id == folder_id), None
        )
        if existing is None and ctx.dry_run:
            return target
        if existing is None:
            existing = ctx.brevo.create_list(name, folder_id=folder_id)
            _bump(self.result.api_calls, "POST /contacts/lists")
            self.result.notes.append(
                f"created Brevo list {existing} '{name}' for segment '{target.segment_name}'"
            )
        if not ctx.dry_run:
            ctx.state.set_value(
                f"{CREATED_LIST_PREFIX}{target.segment_id}", {"list_id": existing, "name": name}
            )
        return dataclasses.replace(target, list_id=existing)

    def users_list_id(self) -> int:
        if self.users_list is None:
            self.users_list = self.users_sync.users_list_id()
        return self.users_list

    # -- exports
    def prepare_export(self, target: MirrorTarget) -> ExportCheckpoint:
        """The export this segment's mirror reads: its checkpoint, the users sync's, or a new one."""
        ctx = self.ctx
        now = ctx.clock()
        key = f"{CHECKPOINT_PREFIX}{target.segment_id}"
        if not ctx.dry_run:
            found = ExportCheckpoint.from_value(ctx.state.get_value(key))
            if found is not None and found.resumable(list_id=target.list_id, fields=self.fields, now=now):
                self.result.notes.append(
                    f"segment '{target.segment_name}': resumed its export at member {found.member}, line "
                    f"{found.line}" + (" (applying)" if found.phase == "applying" else "")
                )
                return found
            if found is not None:
                _unlink(Path(found.path))
        self.clear_staging(target)
        reuse = reusable_users_export(
            ctx.state.get_value(USERS_LAST_EXPORT), segment_id=target.segment_id, fields=self.fields, now=now
        )
        if reuse is not None:
            url, prefix, requested_at, path = reuse
            self.result.notes.append(f"segment '{target.segment_name}': reused the users sync's export")
        else:
            job = ctx.braze.export_segment(target.segment_id, fields_to_export=self.fields)
            _bump(self.result.api_calls, "POST /users/export/segment")
            if not job.url:
                raise UsageError(
                    "Braze wrote the export to the workspace's own cloud bucket instead of returning a URL.",
                    fix="Remove the S3/Azure/GCS export credentials from the Braze workspace; the connector "
                    "reads the Braze-hosted export URL.",
                )
            url, prefix, requested_at, path = job.url, job.object_prefix, now, ""
        token = hashlib.blake2b(url.encode(), digest_size=8).hexdigest()
        checkpoint = ExportCheckpoint(
            segment_id=target.segment_id,
            list_id=target.list_id,
            fields=tuple(self.fields),
            url=url,
            object_prefix=prefix,
            requested_at=requested_at,
            path=path if path and Path(path).exists() else str(ctx.work_dir / f"segment-{token}.zip"),
        )
        if not ctx.dry_run:
            ctx.state.set_value(key, checkpoint.as_value())
        return checkpoint

    def staging(self, target: MirrorTarget) -> str:
        prefix = DRY_RUN_STAGING_PREFIX if self.ctx.dry_run else STAGING_PREFIX
        return f"{prefix}{target.segment_id}"

    def unsure(self, target: MirrorTarget) -> str:
        """Staged members Brevo may not hold: a failed add of one of them is not checked further."""
        prefix = DRY_RUN_STAGING_PREFIX if self.ctx.dry_run else STAGING_PREFIX
        return f"{prefix}unsure:{target.segment_id}"

    def today(self) -> date:
        return datetime.fromtimestamp(self.ctx.clock(), UTC).date()

    def not_known_absent(self, target: MirrorTarget, keys: Sequence[str]) -> list[str]:
        """Drop members found missing from Brevo in the last days (they are tried again after that)."""
        if not keys:
            return []
        cutoff = (self.today() - timedelta(days=ABSENT_RETRY_DAYS)).isoformat()
        seen = self.ctx.state.get_fingerprints(f"{ABSENT_PREFIX}{target.segment_id}", list(keys))
        return [k for k in keys if seen.get(k, "") < cutoff]

    def clear_staging(self, target: MirrorTarget) -> None:
        _clear_members(self.ctx, self.staging(target))
        _clear_fingerprints(self.ctx, self.unsure(target))

    # -- one segment
    def mirror(self, target: MirrorTarget, checkpoint: ExportCheckpoint) -> None:
        ctx = self.ctx
        plan = ListPlan(target.segment_id, target.segment_name, target.list_id, target.list_name)
        plan.create_list = target.list_id is None
        self.plans.append(plan)
        members = f"{MEMBERS_PREFIX}{target.segment_id}"
        if not ctx.dry_run:
            self.forget_other_list(target, members)
        delivered = 0
        if checkpoint.phase == "reading":
            delivered = self.read(target, checkpoint, plan, members)
        self.apply(target, plan, members, delivered)
        if not ctx.dry_run:
            ctx.state.delete_value(f"{CHECKPOINT_PREFIX}{target.segment_id}")
        self.clear_staging(target)
        where = f"list {target.list_id}" if target.list_id is not None else f"new list '{target.list_name}'"
        verb = "would mirror" if ctx.dry_run else "mirrored"
        self.result.notes.append(
            f"segment '{target.segment_name}' {verb} into {where}: +{plan.add} -{plan.remove}, "
            f"{plan.unchanged} unchanged"
        )

    def forget_other_list(self, target: MirrorTarget, members: str) -> None:
        """The membership state mirrors one list: when the segment moves to another list, start over."""
        key = f"{MIRRORED_LIST_PREFIX}{target.segment_id}"
        record = self.ctx.state.get_value(key)
        before = record.get("list_id") if isinstance(record, dict) else None
        if before == target.list_id:
            return
        if before is not None:
            _clear_members(self.ctx, members)
            self.result.notes.append(
                f"segment '{target.segment_name}' now mirrors into list {target.list_id} instead of {before}; "
                f"list {before} is left as it is"
            )
        self.ctx.state.set_value(key, {"list_id": target.list_id})

    def read(self, target: MirrorTarget, checkpoint: ExportCheckpoint, plan: ListPlan, members: str) -> int:
        """Read the export into the staging set, creating members Brevo lacks through the users path.

        Returns how many members joined the list through those imports (recorded already).
        """
        ctx = self.ctx
        path = Path(checkpoint.path)
        if not path.exists():
            wait_until_ready(
                ctx.braze_session, checkpoint.url, timeout_s=ctx.config.sync.export_timeout_s, sleep=ctx.sleep
            )
            download_export(ctx.braze_session, checkpoint.url, path)
        staging = self.staging(target)
        key = f"{CHECKPOINT_PREFIX}{target.segment_id}"
        delivered = 0
        rejected_before = self.users_sync.result.failed
        lines = iter_export_lines(path, start_member=checkpoint.member, start_line=checkpoint.line)
        for chunk in chunked(lines, CHUNK_LINES):
            self.result.read += len(chunk)
            keys = [_member_key(ctx.mapping, line.raw) for line in chunk]
            unsure: list[str] = []
            known = ctx.state.get_fingerprints(users.FINGERPRINTS, sorted({k for k in keys if k}))
            staged = [k for k in keys if k is not None and k in known]
            # Position -1: the users path must not move the users sync's own export checkpoint.
            fresh = [
                ExportLine(-1, line.line, line.raw)
                for line, k in zip(chunk, keys, strict=True)
                if k not in known
            ]
            if fresh:
                created = self.create_missing(target, fresh)
                staged.extend(created)
                plan.created_through_users_path += len(created)
                if not ctx.dry_run:
                    # Brevo accepted their import, which carries the list: they are members now. (A run
                    # stopped before this line finds them in the list next time, "already in list".)
                    delivered += ctx.state.add_members(members, created)
                # A member the users path refuses may still exist in Brevo under its ext_id (written by
                # someone else): it is tried once, and only an ext_id names that user alone.
                accepted = set(created)
                refused = sorted(
                    {k for k in keys if k and k not in known and k not in accepted and k[:4] == "ext:"}
                )
                unsure = self.not_known_absent(target, refused)
                staged.extend(unsure)
            last = chunk[-1]
            checkpoint = dataclasses.replace(checkpoint, member=last.member, line=last.line + 1)
            with ctx.state.transaction():
                if not ctx.dry_run:
                    self.users_sync._flush_dead_letters()
                ctx.state.add_members(staging, staged)
                if unsure:
                    ctx.state.put_fingerprints(self.unsure(target), ((k, "1") for k in unsure))
                if not ctx.dry_run:
                    ctx.state.set_value(key, checkpoint.as_value())
            ctx.progress.update(
                RESOURCE, read=self.result.read, added=self.result.created, removed=self.result.updated
            )
            ctx.check_stop()
        self.result.created += delivered
        plan.add += delivered
        rejected = self.users_sync.result.failed - rejected_before
        plan.not_holdable += rejected
        self.result.failed += rejected
        checkpoint = dataclasses.replace(checkpoint, phase="applying")
        if not ctx.dry_run:
            ctx.state.set_value(key, checkpoint.as_value())
        _unlink(path)
        return delivered

    def create_missing(self, target: MirrorTarget, lines: Sequence[ExportLine]) -> list[str]:
        """Write members Brevo lacks through the users path (their import joins the list too).

        Returns the members whose import Brevo accepted (or, in a dry run, would be sent).
        """
        writer = MemberImportWriter(
            self.users_ctx, self.users_sync.result, self.users_list_id(), target.list_id or 0
        )
        try:
            self.users_sync._process_chunk(lines, writer)
            if writer.has_rows():
                writer.flush(None)
        except BaseException:
            users.close_quietly(writer)
            raise
        writer.close()  # every import sent and committed (fingerprints, claims) before going on
        self.imports_sent += writer.imports_sent + writer.blacklist_imports_sent
        return writer.accepted

    def apply(self, target: MirrorTarget, plan: ListPlan, members: str, delivered: int) -> None:
        """Merge the staging set with the mirrored membership; send the differences to the list.

        `delivered` members joined through this run's imports: they are in both sets, and counted as
        additions already rather than as unchanged.
        """
        ctx = self.ctx
        applier = ListApplier(
            ctx,
            self.result,
            plan,
            target.list_id or 0,
            (members, self.unsure(target), f"{ABSENT_PREFIX}{target.segment_id}"),
            self.today().isoformat(),
        )
        # Keys added to `members` while it is read sort before the reader's position, so they are never
        # read back as "left the segment" (the reader moves forward by key).
        for change, key in diff_sorted(
            ctx.state.iter_members(self.staging(target)), ctx.state.iter_members(members)
        ):
            if change == "keep":
                plan.unchanged += 1
                self.result.unchanged += 1
            else:
                applier.queue(change, key)
        applier.flush()
        plan.unchanged -= delivered
        self.result.unchanged -= delivered
        if applier.missing:
            self.result.notes.append(
                f"segment '{target.segment_name}': {applier.missing} member(s) are not in Brevo yet (an import "
                "still processing, or the contact was deleted in Brevo); they are tried again next run"
            )
        if applier.unaddressable:
            self.result.notes.append(
                f"segment '{target.segment_name}': {applier.unaddressable} member(s) have no email, ext_id or "
                "phone Brevo's list calls can address"
            )

    # -- segment sizes
    def record_sizes(self, segments: Sequence[Segment]) -> None:
        ctx = self.ctx
        today = self.today()
        cursor = ctx.state.get_cursor(*SIZE_CURSOR) or {}
        stored = cursor.get("last_day")
        last_days: dict[str, str] = dict(stored) if isinstance(stored, dict) else {}
        for segment in segments:
            last = last_days.get(segment.id)
            try:
                last_day = date.fromisoformat(last) if isinstance(last, str) else None
            except ValueError:
                last_day = None
            start = first_day_to_fetch(last_day, today, since=ctx.since, full=ctx.full)
            windows = series_windows(start, today)
            if ctx.dry_run:
                self.analytics_plan[segment.id] = (today - start).days + 1
                continue
            for first, end in windows:
                length = (end - first).days + 1
                ending = None if end == today else f"{end.isoformat()}T23:59:59Z"
                try:
                    points = ctx.braze.segment_data_series(segment.id, length=length, ending_at=ending)
                except PermissionDenied as exc:
                    # Mirroring is done by now; a key without segments.data_series only loses the sizes.
                    self.result.notes.append(f"segment sizes not read: {exc.user_message}")
                    return
                except (PermanentApiError, TransientApiError, RateLimited) as exc:
                    self.result.notes.append(f"segment '{segment.name}': sizes not read: {exc.user_message}")
                    break
                _bump(self.result.api_calls, "GET /segments/data_series")
                rows = size_rows(segment.id, points, not_after=today)
                with ctx.state.transaction():
                    ctx.state.upsert_metrics(rows)
                    newest = max((r.day for r in rows), default=None)
                    if newest is not None:
                        last_days[segment.id] = max(newest, last_days.get(segment.id, newest))
                        ctx.state.set_cursor(*SIZE_CURSOR, {"last_day": last_days})

    def remember_segments(self, segments: Sequence[Segment], targets: Sequence[MirrorTarget]) -> None:
        lists = {t.segment_id: t.list_id for t in targets}
        for segment in segments:
            self.ctx.state.upsert_object(
                "segment",
                segment.id,
                segment.name,
                {
                    "tags": list(segment.tags),
                    "analytics_tracking_enabled": segment.analytics_tracking_enabled,
                    "list_id": lists.get(segment.id),
                },
            )

    # -- the run
    def run(self) -> ResourceResult:
        ctx = self.ctx
        started = time.monotonic()
        if not ctx.dry_run:
            users.reconcile_imports(ctx, self.result, wait=False)
        segments = list(ctx.braze.iter_segments())
        targets = [self.ensure_list(t) for t in self.targets(segments)]
        concurrency = max(1, min(ctx.config.sync.export_concurrency, EXPORT_CONCURRENCY_MAX))
        prepared: dict[str, ExportCheckpoint] = {}
        for index, target in enumerate(targets):
            ctx.check_stop()
            try:
                # Up to `concurrency` exports are requested ahead; each segment is read and applied in turn.
                for ahead in targets[index : index + concurrency]:
                    if ahead.segment_id not in prepared:
                        prepared[ahead.segment_id] = self.prepare_export(ahead)
                self.mirror(target, prepared.pop(target.segment_id))
            except (PermanentApiError, TransientApiError, RateLimited) as exc:
                prepared.pop(target.segment_id, None)
                self.result.notes.append(
                    f"segment '{target.segment_name}' not mirrored this run: {exc.user_message}"
                    + (f" — {exc.fix}" if exc.fix else "")
                )
        if self.imports_sent and not ctx.dry_run:
            users.reconcile_imports(ctx, self.result, wait=True)
        self.record_sizes(segments)
        if not ctx.dry_run:
            self.remember_segments(segments, targets)
        if self.imports_sent:
            if not ctx.dry_run:
                self.result.api_calls["POST /contacts/import"] = self.imports_sent
            self.result.notes.append(
                f"{self.users_sync.result.created + self.users_sync.result.updated} member(s) Brevo did not hold "
                "were written through the users path first"
            )
        if ctx.dry_run:
            self.result.plan = {
                "lists": [p.as_dict() for p in self.plans],
                "brevo_calls": {
                    "POST /contacts/import": self.imports_sent,
                    "POST /contacts/lists/{id}/contacts/add": sum(p.add_calls for p in self.plans),
                    "POST /contacts/lists/{id}/contacts/remove": sum(p.remove_calls for p in self.plans),
                },
                "rejections_by_reason": self.users_sync.plan.rejections,
                "size_days_to_read": self.analytics_plan,
            }
        self.result.duration_s = time.monotonic() - started
        return self.result


def run(ctx: SyncContext) -> ResourceResult:
    return SegmentsSync(ctx).run()


# ------------------------------------------------------------------ one-shot export
@dataclass
class _ImportBatcher:
    """Rows for /contacts/import, sent in bodies of a safe size; unsubscribed rows go in their own import."""

    ctx: SyncContext
    list_id: int
    max_rows: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    blacklisted: list[dict[str, Any]] = field(default_factory=list)
    blacklisted_size: int = 0
    process_ids: list[int] = field(default_factory=list)

    def add(self, payload: ContactPayload) -> None:
        row = users.import_row(payload)
        size = len(jsonbytes.dumps(row)) + 1
        if payload.email_blacklisted is True and payload.email:
            if self.blacklisted and (
                self.blacklisted_size + size > IMPORT_BODY_BUDGET or len(self.blacklisted) >= self.max_rows
            ):
                self._send(blacklist=True)
            self.blacklisted.append(row)
            self.blacklisted_size += size
            return
        if self.rows and (self.size + size > IMPORT_BODY_BUDGET or len(self.rows) >= self.max_rows):
            self._send(blacklist=False)
        self.rows.append(row)
        self.size += size

    def flush(self) -> None:
        self._send(blacklist=False)
        self._send(blacklist=True)

    def _send(self, *, blacklist: bool) -> None:
        rows = self.blacklisted if blacklist else self.rows
        if not rows:
            return
        self.process_ids.append(
            self.ctx.brevo.import_contacts(rows, list_ids=[self.list_id], email_blacklist=blacklist)
        )
        if blacklist:
            self.blacklisted, self.blacklisted_size = [], 0
        else:
            self.rows, self.size = [], 0
        self.ctx.check_stop()


def wait_for_processes(
    ctx: SyncContext, process_ids: Sequence[int], *, max_polls: int = PROCESS_POLLS
) -> tuple[dict[int, ImportProcess], list[int]]:
    """Poll /processes (one listing per poll, backing off: it is a 100-calls-per-hour bucket)."""
    wanted = set(process_ids)
    finished: dict[int, ImportProcess] = {}
    delay = 1.0
    for poll in range(max_polls):
        offset = 0
        while wanted - finished.keys():
            page = ctx.brevo.list_processes(limit=50, offset=offset)
            for process in page:
                if process.id in wanted and process.finished:
                    finished[process.id] = process
            if len(page) < 50 or min(p.id for p in page) < min(wanted):
                break
            offset += 50
        if not wanted - finished.keys() or poll == max_polls - 1:
            break
        ctx.sleep(delay)
        delay = min(delay * 2, 60.0)
    return finished, sorted(wanted - finished.keys())


def export_segment(
    ctx: SyncContext,
    segment_id: str,
    *,
    target_list: int | None = None,
    include_attributes: list[str] | None = None,
) -> dict[str, Any]:
    """Export one Braze segment into a Brevo list, once: contacts upserted, then counted.

    Only the included Braze fields (mapped to their Brevo names) are written, besides the
    identifiers (email, ext_id); an unsubscribed user reaches Brevo blocklisted. Without a
    `target_list` a list named after the segment and the moment is created in the connector's folder.
    Returns `{count, list_id, created, updated, rejected, ...}`; `created`/`updated` are counted once
    Brevo finished the imports (`pending_imports` lists those still running).
    """
    started_at = ctx.clock()
    config = ctx.config
    segments = list(ctx.braze.iter_segments())
    by_id = {s.id: s for s in segments}
    resolved = segment_id if segment_id in by_id else users.resolve_segment_id(ctx, segment_id)
    segment_name = by_id[resolved].name if resolved in by_id else resolved

    mapping = ctx.mapping
    if include_attributes is not None:
        selected, unknown = select_rules(mapping.rules, include_attributes)
        if unknown:
            raise UsageError(
                f"--include-attributes names Braze fields the field mapping does not map: {', '.join(unknown)}.",
                fix="Use Braze field names from the mapping: "
                + ", ".join(sorted({"external_id", "email", *(r.braze for r in mapping.rules)})),
            )
        mapping = CompiledMapping(selected)

    list_created = False
    if target_list is None:
        stamp = datetime.fromtimestamp(started_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        name = f"{list_name_for(config.sync.list_prefix, segment_name)} export {stamp}"
        folder_id = users.ensure_folder(ctx, config.sync.list_folder)
        list_id = ctx.brevo.create_list(name, folder_id=folder_id)
        list_created = True
    else:
        list_id = int(target_list)
        if not any(lst.id == list_id for lst in ctx.brevo.iter_lists()):
            raise UsageError(
                f"Brevo has no list with id {list_id}.",
                fix="Pick an existing list id (Contacts → Lists in Brevo), or omit --target-list to create one.",
            )

    fields = mapping.fields_to_export()
    job = ctx.braze.export_segment(resolved, fields_to_export=fields)
    if not job.url:
        raise UsageError(
            "Braze wrote the export to the workspace's own cloud bucket instead of returning a URL.",
            fix="Remove the S3/Azure/GCS export credentials from the Braze workspace; the connector "
            "reads the Braze-hosted export URL.",
        )
    token = hashlib.blake2b(job.url.encode(), digest_size=8).hexdigest()
    path = ctx.work_dir / f"segment-export-{token}.zip"
    wait_until_ready(ctx.braze_session, job.url, timeout_s=config.sync.export_timeout_s, sleep=ctx.sleep)
    download_export(ctx.braze_session, job.url, path)

    batcher = _ImportBatcher(ctx, list_id, max_rows=min(ctx.batch_size or IMPORT_ROWS_MAX, IMPORT_ROWS_MAX))
    count = rejected = 0
    dead: list[tuple[str, str, str, Mapping[str, Any]]] = []
    try:
        for line in iter_export_lines(path):
            count += 1
            if not line.raw:
                rejected += 1
                dead.append(
                    (
                        RESOURCE,
                        f"{resolved}:{users.line_key(line)}",
                        "export line is longer than the line limit",
                        {},
                    )
                )
                continue
            try:
                user = users.user_from_line(line.raw)
            except RecordRejected as exc:
                rejected += 1
                dead.append((RESOURCE, f"{resolved}:{users.line_key(line)}", exc.reason, {}))
                continue
            out = mapping.to_brevo(user)
            if isinstance(out, ContactPayload):
                batcher.add(out)
            else:
                rejected += 1
                identity = {"external_id": user.external_id, "braze_id": user.braze_id, "email": user.email}
                dead.append(
                    (RESOURCE, f"{resolved}:{out.key}", out.reason, {**identity, "_field": out.field})
                )
            if len(dead) >= 1000:
                ctx.state.add_dead_letters(dead, run_id=ctx.run_id)
                dead = []
        batcher.flush()
    finally:
        if dead:
            ctx.state.add_dead_letters(dead, run_id=ctx.run_id)
        _unlink(path)

    finished, pending = wait_for_processes(ctx, batcher.process_ids) if batcher.process_ids else ({}, [])
    dropped = sum(
        value
        for process in finished.values()
        for name, value in process.counters.items()
        if name in users.MISMATCH_COUNTERS and isinstance(value, int) and not isinstance(value, bool)
    )
    rejected += dropped
    failed_imports = [p.id for p in finished.values() if p.status != "completed"]
    created: int | None = None
    updated: int | None = None
    if not pending and not failed_imports:
        since = datetime.fromtimestamp(started_at - CREATED_SINCE_MARGIN_S, UTC)
        created = ctx.brevo.count_contacts(list_ids=[list_id], created_since=since)
        updated = max(0, count - rejected - created)
    return {
        "segment_id": resolved,
        "segment": segment_name,
        "count": count,
        "list_id": list_id,
        "list_created": list_created,
        "created": created,
        "updated": updated,
        "rejected": rejected,
        "imports": len(batcher.process_ids),
        "pending_imports": pending,
        "failed_imports": failed_imports,
        "attributes": sorted({r.brevo for r in mapping.rules if r.to_brevo and r.braze != "email"}),
    }
