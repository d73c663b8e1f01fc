"""Braze users -> Brevo contacts.

read the export (resuming at the checkpoint) -> map -> validate -> diff against what we last wrote
-> import changed contacts in bodies filled up to a safe size -> store fingerprints and the checkpoint
once Brevo accepted each import -> reconcile the import processes with what was sent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from tajo_braze import jsonbytes

from ..batching import InOrderSender, chunked
from ..errors import RateLimited, TransientApiError, UsageError
from ..exports import (
    EXPORT_REUSE_MAX_AGE_S,
    ExportLine,
    download_export,
    export_size,
    iter_export_lines,
    wait_until_ready,
)
from ..mapping import equal_values
from ..memory import map_large_blocks_apart
from ..models import BrazeUser, BrevoEdit, ContactPayload, ImportProcess, ResourceResult
from ..state import StateStore
from .context import SyncContext
from .line_workers import MappingWorkerFailed, WorkerPool, usable_cpus
from .user_lines import (
    MAPPED,
    REJECTED,
    SKIPPED,
    LineReader,
    LineRules,
    Outcome,
    import_row,
    local_reader,
    payload_digest,
    user_from_line,
)

__all__ = ["import_row", "payload_digest", "user_from_line"]  # users.* callers keep working

RESOURCE = "users"
FINGERPRINTS = "users:braze_to_brevo"
EMAIL_CLAIMS = "claims:email"
SMS_CLAIMS = "claims:sms"
CHECKPOINT = "users:export_checkpoint"
LAST_EXPORT = "users:last_export"
PENDING_IMPORTS = "users:pending_imports"
USERS_LIST = "brevo:users_list_id"
# Per key, the Braze fields whose Brevo edit a two-way run kept: its Brevo -> Braze half carries
# them to Braze. Kept in state so that a run stopped between the halves still does.
KEPT_BREVO_FIELDS = "users:kept_brevo_fields"
SEGMENT_IDS = "braze:segment_ids"

CHUNK_LINES = 500
# Worker processes pay for themselves from about this much export text (~50k users); below it,
# starting them costs more than they save.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024
MAX_AUTO_WORKERS = 4
IMPORT_SAFE_BYTES = 8 * 1024 * 1024
PLAN_SAMPLE = 5
# Dead letters ride with the next import's commit (in the sender thread); only this many wait.
DEAD_LETTERS_HELD = 10_000


# ------------------------------------------------------------------ what we remember per contact
@dataclass(frozen=True, slots=True)
class SentRecord:
    """What was last written to Brevo for one identity, packed into the fingerprint column."""

    digest: str
    email: str | None
    sms: str | None
    blacklisted: bool | None
    # Digest of the export line (and the mapping) that produced the write: an identical line next
    # time is unchanged without being parsed into a contact again.
    source: str = ""

    def encode(self) -> str:
        flag = "-" if self.blacklisted is None else ("1" if self.blacklisted else "0")
        return f"{self.digest}\t{flag}\t{self.email or ''}\t{self.sms or ''}\t{self.source}"

    @classmethod
    def decode(cls, text: str) -> SentRecord:
        digest, flag, email, sms, source = (text.split("\t") + ["", "", "", ""])[:5]
        return cls(digest, email or None, sms or None, None if flag == "-" else flag == "1", source)


def line_key(line: ExportLine) -> str:
    return f"line:{line.member}:{line.line}"


# ------------------------------------------------------------------ the import writer
class RowBuffer:
    """JSON rows joined as they arrive, inside the import body's own opening: one contiguous
    buffer instead of a million small objects, closed into the body with a single copy."""

    OPENING = b'{"jsonBody":['

    def __init__(self) -> None:
        self._data = bytearray(self.OPENING)
        self.count = 0
        self.size = 0  # bytes of the rows and their separators

    def append(self, row: bytes) -> None:
        if self.count:
            self._data += b","
            self.size += 1
        self._data += row
        self.size += len(row)
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def close_into_body(self, options: bytes) -> bytes:
        """The whole import body (`options` is the JSON object of the other keys); the buffer is spent."""
        data = self._data
        data += b"],"
        data += options[1:]
        body = bytes(data)
        self._data = bytearray()
        return body


@dataclass(slots=True)
class PendingRow:
    key: str
    owner: str  # the Braze profile that claims this contact's email and phone
    record: SentRecord
    previous: SentRecord | None
    created: bool


@dataclass
class ImportBatch:
    """Rows waiting for one kind of import: contacts, or contacts to blocklist (all rows of such an
    import are blocklisted, which is why unsubscribes travel apart)."""

    suffix: bytes
    unsubscribe: bool = False
    rows: RowBuffer = field(default_factory=RowBuffer)
    meta: list[PendingRow] = field(default_factory=list)
    first_position: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.rows)


DeadLetterRow = tuple[str, str, str, dict[str, Any]]


@dataclass(slots=True)
class SealedBatch:
    body: bytes
    unsubscribe: bool
    meta: list[PendingRow]
    dead: list[DeadLetterRow]
    position: tuple[int, int] | None


def _import_options(list_id: int, *, unsubscribe: bool) -> bytes:
    options: dict[str, Any] = {
        "listIds": [list_id],
        "updateExistingContacts": True,
        "emptyContactsAttributes": False,
        "disableNotification": True,
    }
    if unsubscribe:
        options["emailBlacklist"] = True
    return orjson.dumps(options)


class ImportWriter:
    """Fills /contacts/import bodies up to the safe size and commits state only after Brevo accepts.

    Two buffers, each sealed when it is full: contacts, and newly unsubscribed contacts (whose
    whole row goes in an import that blocklists every row). A sealed batch's checkpoint never
    passes a row still waiting in the other buffer, so a resume re-reads it.
    """

    def __init__(self, ctx: SyncContext, result: ResourceResult, list_id: int) -> None:
        self.ctx = ctx
        self.result = result
        self.list_id = list_id
        # Bodies are filled up to the safe size; --batch-size caps the rows per import instead.
        self.max_rows = ctx.batch_size or 10**9
        self.batch = ImportBatch(_import_options(list_id, unsubscribe=False))
        self.blacklist = ImportBatch(_import_options(list_id, unsubscribe=True), unsubscribe=True)
        self.imports_sent = 0
        self.blacklist_imports_sent = 0
        self.rows_sent = 0
        # Dead letters read before a batch's checkpoint are committed with that batch, never lost.
        self.take_dead_letters: Callable[[], list[DeadLetterRow]] = list
        self._sender = InOrderSender(self._send_and_commit, name="brevo-import-sender", after=self._sent)
        self._sending = threading.Semaphore(1)
        # With defer_release, the claims of committed batches stay held until release_committed():
        # released by the sender at once, a claim could vanish between the reader's read of state
        # and its check of the held claims, and two contacts would get one phone number.
        self.defer_release = False
        self._committed: list[Sequence[PendingRow]] = []
        self._lock = threading.Lock()
        self._inflight: dict[int, list[PendingRow]] = {}
        self._uncommitted: dict[str, dict[str, str]] = {"email": {}, "sms": {}}

    @property
    def suffix(self) -> bytes:
        return self.batch.suffix

    @suffix.setter
    def suffix(self, value: bytes) -> None:
        self.batch.suffix = value

    @property
    def blacklist_suffix(self) -> bytes:
        return self.blacklist.suffix

    @blacklist_suffix.setter
    def blacklist_suffix(self, value: bytes) -> None:
        self.blacklist.suffix = value

    def _full(self, target: ImportBatch, extra: int) -> bool:
        rows = target.rows  # called once a row: plain attributes, no len() chains
        return rows.count > 0 and (
            rows.size + extra + len(target.suffix) + 17 > IMPORT_SAFE_BYTES or rows.count >= self.max_rows
        )

    def add(self, row: bytes, meta: PendingRow, position: tuple[int, int], *, unsubscribe: bool = False) -> None:
        if self._full(self.blacklist if unsubscribe else self.batch, len(row)):
            self._seal(self.blacklist if unsubscribe else self.batch, position)
        target = self.blacklist if unsubscribe else self.batch  # a fresh buffer after a seal
        target.rows.append(row)
        target.meta.append(meta)
        if target.first_position is None:
            target.first_position = position
        self._hold_claims(meta)

    def flush(self, position: tuple[int, int] | None) -> None:
        """Seal both buffers and hand them to the sender; the reader goes on with the next batch.

        The sender posts each import, then commits fingerprints, claims, dead letters and the
        checkpoint in one transaction. Batches commit in the order they were sealed, so the
        checkpoint only moves forward; at most one sealed batch waits while another is sent.
        """
        for target in (self.batch, self.blacklist):
            if len(target):
                self._seal(target, position)

    def _seal(self, target: ImportBatch, position: tuple[int, int] | None) -> None:
        ctx = self.ctx
        other = self.blacklist if target is self.batch else self.batch
        if len(other) and other.first_position is not None:
            position = other.first_position if position is None else min(position, other.first_position)
        meta = target.meta
        fresh = ImportBatch(target.suffix, target.unsubscribe)
        if target is self.batch:
            self.batch = fresh
        else:
            self.blacklist = fresh
        if ctx.dry_run:
            self._count(meta)
            self._release_claims(meta)  # a dry run keeps no claims: memory stays flat
            if target.unsubscribe:
                self.blacklist_imports_sent += 1
            else:
                self.imports_sent += 1
            return
        # One batch on its way at a time: the next body is built only once the previous one is
        # committed, so a run holds two batches (one filling, one sending), never three.
        self._sending.acquire()
        sealed = SealedBatch(
            body=target.rows.close_into_body(target.suffix),
            unsubscribe=target.unsubscribe,
            meta=meta,
            dead=self.take_dead_letters(),
            position=position,
        )
        self._submit(sealed)
        ctx.check_stop()

    # -- the sender
    def _submit(self, sealed: SealedBatch) -> None:
        self._sender.raise_if_failed()
        with self._lock:
            self._inflight[id(sealed)] = sealed.meta
        self._sender.submit(sealed)

    def _sent(self, sealed: SealedBatch) -> None:
        with self._lock:
            self._inflight.pop(id(sealed), None)
        self._sending.release()

    def close(self) -> None:
        """Wait for every sealed batch to be sent and committed; raise the sender's error if any."""
        self._sender.close()

    def settle(self) -> None:
        """Wait until the sealed batch on its way (if any) is committed; raise the sender's error if any.

        Rows still filling a batch stay where they are: when they are sealed depends on the rows
        alone, not on timing.
        """
        with self._sending:  # free once the batch on its way was committed
            pass
        self._sender.raise_if_failed()

    def inflight_meta(self) -> list[PendingRow]:
        """Rows sealed but not yet committed."""
        with self._lock:
            return [m for meta in self._inflight.values() for m in meta]

    def claim_owner(self, kind: str, value: str) -> str | None:
        """Who claims an email or phone among rows not yet committed (their claims are not in state)."""
        # A single dict read needs no lock; the lock keeps a release's read-then-delete whole.
        return self._uncommitted[kind].get(value)

    def _hold_claims(self, meta: PendingRow) -> None:
        record = meta.record
        if self.defer_release:  # only this thread changes the held claims then
            self._hold(record, meta.owner)
            return
        with self._lock:
            self._hold(record, meta.owner)

    def _hold(self, record: SentRecord, owner: str) -> None:
        if record.email:
            self._uncommitted["email"][record.email] = owner
        if record.sms:
            self._uncommitted["sms"][record.sms] = owner

    def _release_claims(self, meta: Sequence[PendingRow]) -> None:
        with self._lock:
            emails, phones = self._uncommitted["email"], self._uncommitted["sms"]
            for m in meta:
                if m.record.email and emails.get(m.record.email) == m.owner:
                    del emails[m.record.email]
                if m.record.sms and phones.get(m.record.sms) == m.owner:
                    del phones[m.record.sms]

    def _send_and_commit(self, sealed: SealedBatch) -> None:
        ctx = self.ctx
        process = ctx.brevo.import_contacts(sealed.body)
        if sealed.unsubscribe:
            self.blacklist_imports_sent += 1
        else:
            self.imports_sent += 1
        self.rows_sent += len(sealed.meta)
        meta = sealed.meta
        with ctx.state.transaction():
            if sealed.dead:
                ctx.state.add_dead_letters(sealed.dead, run_id=ctx.run_id)
            ctx.state.put_fingerprints(FINGERPRINTS, ((m.key, m.record.encode()) for m in meta))
            self._update_claims(meta)
            self._commit_also(meta)
            pending = ctx.state.get_value(PENDING_IMPORTS) or []
            pending.append({"process_id": process, "keys_record": import_keys_record(process)})
            ctx.state.set_value(PENDING_IMPORTS, pending)
            # One record for the whole import: a row per key would dirty a b-tree page per contact.
            ctx.state.set_value(import_keys_record(process), [m.key for m in meta])
            position = sealed.position
            if position is not None and position[0] >= 0:
                checkpoint = ctx.state.get_value(CHECKPOINT)
                if checkpoint is not None:
                    checkpoint["member"], checkpoint["line"] = position
                    ctx.state.set_value(CHECKPOINT, checkpoint)
        if self.defer_release:
            with self._lock:
                self._committed.append(meta)
        else:
            self._release_claims(meta)
        self._count(meta)

    def release_committed(self) -> None:
        """Forget the in-flight claims of the batches committed so far: state holds them now.

        A reader that calls this before reading claims from state, and checks `claim_owner`
        after, never misses a claim: one released here was committed before its read.
        """
        with self._lock:
            committed, self._committed = self._committed, []
        for meta in committed:
            self._release_claims(meta)

    def _count(self, meta: Sequence[PendingRow]) -> None:
        for m in meta:
            if m.created:
                self.result.created += 1
            else:
                self.result.updated += 1

    def _update_claims(self, meta: Sequence[PendingRow]) -> None:
        update_claims(self.ctx.state, meta)

    def _commit_also(self, meta: Sequence[PendingRow]) -> None:
        """What a subclass commits with an accepted import's fingerprints (inside the transaction)."""


def update_claims(state: StateStore, meta: Sequence[PendingRow]) -> None:
    """Move each row's email and phone claims to what it now holds (stale ones released)."""
    stale_emails = [
        m.previous.email for m in meta if m.previous and m.previous.email and m.previous.email != m.record.email
    ]
    stale_sms = [m.previous.sms for m in meta if m.previous and m.previous.sms and m.previous.sms != m.record.sms]
    if stale_emails:
        state.delete_fingerprints(EMAIL_CLAIMS, stale_emails)
    if stale_sms:
        state.delete_fingerprints(SMS_CLAIMS, stale_sms)
    state.put_fingerprints(EMAIL_CLAIMS, ((m.record.email, m.owner) for m in meta if m.record.email))
    state.put_fingerprints(SMS_CLAIMS, ((m.record.sms, m.owner) for m in meta if m.record.sms))


def rows_to_take_over(state: StateStore, records: Sequence[tuple[str, SentRecord]]) -> list[PendingRow]:
    """The records the Brevo -> Braze half may set as this half's fingerprints, with what they replace.

    An identifier another profile claims is not taken over. A key without an external_id keeps
    what it had once this half wrote it (its claims belong to a Braze profile id we do not know
    here); one this half never wrote (a profile the other half just created) is taken, without
    claims, which this half sets when it first writes the profile itself.
    """
    if not records:
        return []
    keys = [key for key, _ in records]
    previous = {k: SentRecord.decode(v) for k, v in state.get_fingerprints(FINGERPRINTS, keys).items()}
    emails = sorted({r.email for _, r in records if r.email})
    phones = sorted({r.sms for _, r in records if r.sms})
    email_owner = state.get_fingerprints(EMAIL_CLAIMS, emails) if emails else {}
    sms_owner = state.get_fingerprints(SMS_CLAIMS, phones) if phones else {}
    rows: list[PendingRow] = []
    for key, record in records:
        before = previous.get(key)
        moved = before is not None and (before.email != record.email or before.sms != record.sms)
        if moved and not key.startswith("ext:"):
            continue
        if record.email and email_owner.get(record.email, key) != key:
            continue
        if record.sms and sms_owner.get(record.sms, key) != key:
            continue
        rows.append(PendingRow(key, key, record, before, before is None))
    return rows


def claims_of(rows: Sequence[PendingRow]) -> list[PendingRow]:
    """The rows whose claims can be set here: those of profiles with an external_id."""
    return [m for m in rows if m.key.startswith("ext:")]


def remember_sent(state: StateStore, records: Sequence[tuple[str, SentRecord]]) -> list[str]:
    """Record that Brevo already holds these contents for these keys (the Brevo -> Braze half
    wrote them to Braze), so the next export does not echo them back; claims follow."""
    with state.transaction():
        rows = rows_to_take_over(state, records)
        state.put_fingerprints(FINGERPRINTS, ((m.key, m.record.encode()) for m in rows))
        update_claims(state, claims_of(rows))
    return [m.key for m in rows]


# ------------------------------------------------------------------ the run
@dataclass(slots=True)
class MappedUser:
    """A mapped export line, as the writer needs it (the row already serialised)."""

    line: ExportLine
    source: str  # digest of the line and the mapping
    external_id: str | None
    braze_id: str | None
    raw_email: str | None
    raw_phone: str | None
    key: str
    email: str | None
    ext_id: str | None
    sms: str | None
    blacklisted: bool | None
    digest: str
    row: bytes

    def identity(self) -> dict[str, Any]:
        return {"external_id": self.external_id, "braze_id": self.braze_id, "email": self.raw_email,
                "phone": self.raw_phone}


@dataclass
class Plan:
    """What a dry run would do; filled as the export is read."""

    rejections: dict[str, int] = field(default_factory=dict)
    rejection_samples: list[dict[str, Any]] = field(default_factory=list)
    diffs: list[dict[str, Any]] = field(default_factory=list)
    blacklist: int = 0

    def reject(self, key: str, reason: str) -> None:
        kind = reason.split(":")[0].split("'")[0].strip()
        self.rejections[kind] = self.rejections.get(kind, 0) + 1
        if len(self.rejection_samples) < PLAN_SAMPLE * 2:
            self.rejection_samples.append({"key": key, "reason": reason})


class UsersSync:
    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.result = ResourceResult(RESOURCE, direction="braze_to_brevo")
        self.plan = Plan()
        self.dead: list[DeadLetterRow] = []
        self.shared_phones = 0
        self.kept_edits = 0
        self.accepted: list[str] | None = None  # filled only when retrying dead letters
        self._reader: LineReader | None = None
        # run() reads fingerprints and claims through its own connection while the import sender
        # commits through the main one.
        self._lookups: StateStore | None = None
        rules = repr(ctx.mapping.rules).encode() + repr(self.export_fields()).encode()
        self.mapping_tag = hashlib.blake2b(rules, digest_size=8).digest()

    # -- setup
    def resolve_segment(self) -> str:
        wanted = self.ctx.config.sync.users_segment
        if not wanted:
            raise UsageError(
                "No Braze segment is configured for the users sync.",
                fix="Set connectors.braze.sync.users_segment to the id or name of the segment whose users "
                "are synced (for everyone, a segment such as 'All Users').",
            )
        return resolve_segment_id(self.ctx, wanted)

    def users_list_id(self) -> int:
        state = self.ctx.state
        known = state.get_value(USERS_LIST)
        if isinstance(known, int):
            return known
        prefix = self.ctx.config.sync.list_prefix
        name = f"{prefix}all_users"
        folder_id = ensure_folder(self.ctx, self.ctx.config.sync.list_folder)
        for lst in self.ctx.brevo.iter_lists():
            if lst.name == name:
                if not self.ctx.dry_run:
                    state.set_value(USERS_LIST, lst.id)
                return lst.id
        if self.ctx.dry_run:
            return 0
        list_id = self.ctx.brevo.create_list(name, folder_id=folder_id)
        state.set_value(USERS_LIST, list_id)
        return list_id

    def export_fields(self) -> list[str]:
        fields = list(self.ctx.mapping.fields_to_export())
        if self.ctx.since is not None:
            for extra in ("created_at", "apps", "custom_events", "purchases"):
                if extra not in fields:
                    fields.append(extra)
        return fields

    def open_export(self, segment_id: str) -> tuple[Path, int, int]:
        """The local archive to read and the position to start at (a checkpoint resumes its export)."""
        ctx = self.ctx
        fields = self.export_fields()
        checkpoint = None if ctx.dry_run else ctx.state.get_value(CHECKPOINT)
        now = ctx.clock()
        if (
            isinstance(checkpoint, dict)
            and checkpoint.get("segment_id") == segment_id
            and checkpoint.get("fields") == fields
            and now - float(checkpoint.get("requested_at", 0)) < EXPORT_REUSE_MAX_AGE_S
        ):
            path = Path(checkpoint["path"])
            self.result.notes.append(
                f"resumed export {checkpoint.get('object_prefix') or ''} at member {checkpoint['member']}, "
                f"line {checkpoint['line']}"
            )
            if not path.exists():
                self._download(checkpoint["url"], path)
            return path, int(checkpoint["member"]), int(checkpoint["line"])
        job = ctx.braze.export_segment(segment_id, fields_to_export=fields)
        if not job.url:
            raise UsageError(
                "Braze wrote the export to the workspace's own cloud bucket instead of returning a URL.",
                fix="Remove the S3/Azure/GCS export credentials from the Braze workspace, or export from a "
                "workspace without them; the connector reads the Braze-hosted export URL.",
            )
        token = hashlib.blake2b(job.url.encode(), digest_size=8).hexdigest()
        path = ctx.work_dir / f"export-{token}.zip"
        if not ctx.dry_run:
            ctx.state.set_value(
                CHECKPOINT,
                {
                    "segment_id": segment_id,
                    "fields": fields,
                    "url": job.url,
                    "object_prefix": job.object_prefix,
                    "requested_at": now,
                    "path": str(path),
                    "member": 0,
                    "line": 0,
                },
            )
        self._download(job.url, path)
        return path, 0, 0

    def _download(self, url: str, path: Path) -> None:
        ctx = self.ctx
        wait_until_ready(
            ctx.braze_session, url, timeout_s=ctx.config.sync.export_timeout_s, sleep=ctx.sleep
        )
        download_export(ctx.braze_session, url, path)

    # -- the loop
    def run(self) -> ResourceResult:
        ctx = self.ctx
        started = time.monotonic()
        if not ctx.dry_run:
            reconcile_imports(ctx, self.result, wait=False)
        segment_id = self.resolve_segment()
        list_id = self.users_list_id()
        path, member, line = self.open_export(segment_id)
        writer = ImportWriter(ctx, self.result, list_id)
        writer.take_dead_letters = self._take_dead_letters
        writer.defer_release = True
        self._lookups = ctx.state.reader()
        try:
            for chunk, outcomes in self._read_export(path, member, line):
                self._apply(chunk, outcomes, writer)
                ctx.progress.update(
                    RESOURCE,
                    read=self.result.read,
                    written=self.result.created + self.result.updated,
                    unchanged=self.result.unchanged,
                    rejected=self.result.failed,
                )
            writer.flush(None)
        except BaseException:
            close_quietly(writer)
            raise
        finally:
            self._lookups.close()
            self._lookups, self._reader = None, None
        writer.close()
        self._flush_dead_letters()
        if self.kept_edits:
            self.result.notes.append(
                f"{self.kept_edits} contact(s) keep fields edited in Brevo since the last run: the Brevo -> Braze "
                "half carries those edits to Braze"
            )
        if self.shared_phones:
            self.result.notes.append(
                f"{self.shared_phones} contact(s) written without SMS: their phone number belongs to another "
                "contact, and Brevo needs unique numbers"
            )
        if not ctx.dry_run:
            finished = ctx.state.get_value(CHECKPOINT)
            with ctx.state.transaction():
                ctx.state.delete_value(CHECKPOINT)
                if isinstance(finished, dict):
                    # A segments sync in the same run may reuse this export instead of asking again.
                    ctx.state.set_value(LAST_EXPORT, finished)
            with suppress(OSError):
                os.unlink(path)
            reconcile_imports(ctx, self.result, wait=True)
        else:
            with suppress(OSError):
                os.unlink(path)
        self.result.api_calls["POST /contacts/import"] = writer.imports_sent + writer.blacklist_imports_sent
        if ctx.dry_run:
            self.result.plan = {
                "create": self.result.created,
                "update": self.result.updated,
                "unchanged": self.result.unchanged,
                "reject": self.result.failed,
                "rejections_by_reason": self.plan.rejections,
                "rejection_samples": self.plan.rejection_samples,
                "blacklist": self.plan.blacklist,
                "brevo_calls": {"POST /contacts/import": writer.imports_sent + writer.blacklist_imports_sent},
                "diffs": self.plan.diffs,
            }
        self.result.duration_s = time.monotonic() - started
        return self.result

    def _reject(self, key: str, reason: str, record: dict[str, Any], field_name: str | None = None) -> None:
        self.result.failed += 1
        if self.ctx.dry_run:
            self.plan.reject(key, reason)
            return
        detail = dict(record)
        if field_name:
            detail["_field"] = field_name
        self.dead.append((RESOURCE, key, reason, detail))
        if len(self.dead) >= DEAD_LETTERS_HELD:
            self._flush_dead_letters()

    def _take_dead_letters(self) -> list[DeadLetterRow]:
        taken, self.dead = self.dead, []
        return taken

    def _flush_dead_letters(self) -> None:
        if self.dead and not self.ctx.dry_run:
            self.ctx.state.add_dead_letters(self.dead, run_id=self.ctx.run_id)
        self.dead = []

    # -- reading and mapping (in worker processes for large exports)
    def line_rules(self) -> LineRules:
        ctx = self.ctx
        return LineRules(
            rules=ctx.mapping.rules,
            mapping_tag=self.mapping_tag,
            fingerprint_namespace=FINGERPRINTS,
            since=ctx.since,
            check_unchanged=not ctx.full and self.accepted is None,
            state_path=str(ctx.state.path),
            connector_id=ctx.state.connector_id,
        )

    def _local_reader(self) -> LineReader:
        if self._reader is None:
            self._reader = local_reader(self.line_rules(), self.ctx.mapping, self._lookups or self.ctx.state)
        return self._reader

    def map_workers(self, export_bytes: int) -> int:
        """Worker processes for an export of this size: as configured, else `auto_map_workers`."""
        configured = self.ctx.config.sync.map_workers
        if configured is not None:
            return configured
        return auto_map_workers(export_bytes, usable_cpus())

    def _read_export(
        self, path: Path, member: int, line: int
    ) -> Iterator[tuple[list[ExportLine], list[Outcome]]]:
        chunks = chunked(iter_export_lines(path, start_member=member, start_line=line), CHUNK_LINES)
        size = export_size(path)
        if size >= PARALLEL_MIN_BYTES:
            map_large_blocks_apart()  # 8 MB import bodies come and go for the whole run
        workers = self.map_workers(size)
        pool = None
        if workers:
            try:
                pool = WorkerPool(self.line_rules(), workers)
            except MappingWorkerFailed as exc:
                self.result.notes.append(f"export lines mapped in this process: {exc.user_message}")
        if pool is None:
            for chunk in chunks:
                yield chunk, self._local_reader().read([x.raw for x in chunk])
            return
        self.result.notes.append(f"export lines mapped in {workers} worker process{'es' if workers > 1 else ''}")
        sent: deque[list[ExportLine]] = deque()

        def raw_chunks() -> Iterator[list[bytes]]:
            for chunk in chunks:
                sent.append(chunk)
                yield [x.raw for x in chunk]

        with pool:
            for outcomes in pool.read(raw_chunks()):
                yield sent.popleft(), outcomes

    def _process_chunk(self, lines: Sequence[ExportLine], writer: ImportWriter) -> None:
        self._apply(lines, self._local_reader().read([x.raw for x in lines]), writer)

    def _apply(self, lines: Sequence[ExportLine], outcomes: Sequence[Outcome], writer: ImportWriter) -> None:
        """Count what was read, dead-letter what was refused, write what was mapped."""
        result = self.result
        mapped: list[MappedUser] = []
        for outcome in outcomes:
            kind, index = outcome[0], outcome[1]
            line = lines[index]
            result.read += 1
            if kind == MAPPED:
                mapped.append(MappedUser(line, *outcome[2:]))
            elif kind == REJECTED:
                _, _, key, reason, field_name, record = outcome
                self._reject(key or line_key(line), reason, record, field_name)
            elif kind == SKIPPED:
                result.skipped += 1
            else:
                result.unchanged += 1
        self._write_changed(mapped, writer)

    def _payload_of(self, user: MappedUser) -> ContactPayload:
        """The mapped contact again, whole (outcomes carry only its serialised row)."""
        payload = self.ctx.mapping.to_brevo(user_from_line(user.line.raw))
        assert isinstance(payload, ContactPayload), "mapping is deterministic"
        return payload

    def _write_changed(self, mapped: list[MappedUser], writer: ImportWriter) -> None:
        ctx = self.ctx
        if not mapped:
            return
        # Claims made by rows not yet in state: the unflushed import buffer, then this chunk's rows.
        state = self._lookups or ctx.state
        writer.release_committed()  # before the reads below: see release_committed
        keys = [m.key for m in mapped]
        previous = {k: SentRecord.decode(v) for k, v in state.get_fingerprints(FINGERPRINTS, keys).items()}
        emails = sorted({m.email for m in mapped if m.email})
        sms_values = sorted({m.sms for m in mapped if m.sms is not None})
        email_owner = state.get_fingerprints(EMAIL_CLAIMS, emails) if emails else {}
        sms_owner = state.get_fingerprints(SMS_CLAIMS, sms_values) if sms_values else {}
        for m in mapped:
            key = m.key
            # Several Braze profiles without an external_id can share one email (one Brevo contact):
            # the first to claim it keeps it, so runs converge instead of flapping between profiles.
            me = key if m.external_id or not m.braze_id else f"braze:{m.braze_id}"
            if m.email:
                owner = writer.claim_owner("email", m.email) or email_owner.get(m.email)
                if owner and owner != me:
                    self._reject(
                        me,
                        f"email '{m.email}' is already synced for Braze user {owner}; "
                        "Brevo needs a unique email per contact",
                        m.identity(),
                        "email",
                    )
                    continue
            payload: ContactPayload | None = None  # rebuilt only when it must change
            sms = m.sms
            if sms is not None:
                owner = writer.claim_owner("sms", sms) or sms_owner.get(sms)
                if owner and owner != me:
                    # Brevo refuses a phone number shared by two contacts: keep the contact, drop the number.
                    payload = self._payload_of(m)
                    attributes = {k: v for k, v in payload.attributes.items() if k != "SMS"}
                    payload = dataclasses.replace(payload, attributes=attributes)
                    self.shared_phones += 1
                    sms = None
            if not m.email and not m.ext_id and sms is None:
                self._reject(key, "no usable identifier left for Brevo (shared phone, no email, no ext_id)",
                             m.identity(), "phone")
                continue
            before = previous.get(key)
            edits = ctx.brevo_edits.get(key) if ctx.brevo_edits else None
            if edits:
                digest = m.digest if payload is None else payload_digest(payload)
                if before is not None and not ctx.full and before.digest == digest:
                    self.result.unchanged += 1  # Braze did not change: Brevo's edits are the other half's
                    continue
                payload = self._keep_brevo_edits(payload or self._payload_of(m), edits)
            digest, row = m.digest, m.row
            if payload is not None:
                digest, row = payload_digest(payload), jsonbytes.dumps(import_row(payload))
            record = SentRecord(digest, m.email, sms, m.blacklisted, m.source)
            if self.accepted is not None:
                self.accepted.extend((key, me))
            if before is not None and before.digest == record.digest and not ctx.full:
                self.result.unchanged += 1
                continue
            line = m.line
            position = (line.member, line.line)
            if ctx.dry_run and len(self.plan.diffs) < PLAN_SAMPLE:
                self.plan.diffs.append(self._diff(payload or self._payload_of(m), before))
            newly_unsubscribed = m.blacklisted is True and (before is None or before.blacklisted is not True)
            unsubscribe = bool(newly_unsubscribed and m.email)
            if unsubscribe:
                self.plan.blacklist += 1
            writer.add(row, PendingRow(key, me, record, before, before is None), position, unsubscribe=unsubscribe)

    def _keep_brevo_edits(self, payload: ContactPayload, edits: Mapping[str, BrevoEdit]) -> ContactPayload:
        """Leave Brevo's edits in place: where Braze did not change the field since both sides agreed,
        or the field's policy is `brevo_wins`. Otherwise (`latest`, `braze_wins`) Braze's value goes."""
        attributes = dict(payload.attributes)
        kept: set[str] = set()
        for name, edit in edits.items():
            braze_changed = not equal_values(attributes.get(name), edit.synced)
            if braze_changed and edit.policy != "brevo_wins":
                continue
            if edit.value is None:
                attributes.pop(name, None)
            else:
                attributes[name] = edit.value
            kept.add(edit.braze_field)
        if not kept:
            return payload
        self.kept_edits += 1
        fields = self.ctx.kept_brevo_fields.setdefault(payload.key, set())
        fields.update(kept)
        if not self.ctx.dry_run:
            self.ctx.state.put_fingerprints(KEPT_BREVO_FIELDS, [(payload.key, "\t".join(sorted(fields)))])
        return dataclasses.replace(payload, attributes=attributes)

    def _diff(self, payload: ContactPayload, before: SentRecord | None) -> dict[str, Any]:
        """A field-level diff against what Brevo holds now (a read; dry runs write nothing)."""
        current = None
        if before is not None or payload.ext_id or payload.email:
            identifier, kind = (payload.ext_id, "ext_id") if payload.ext_id else (payload.email, "email_id")
            if identifier:
                current = self.ctx.brevo.get_contact(identifier, identifier_type=kind)
        old = dict(current.attributes) if current is not None else {}
        changes = {
            name: {"from": old.get(name), "to": value}
            for name, value in sorted(payload.attributes.items())
            if old.get(name) != value
        }
        return {"key": payload.key, "action": "update" if current is not None else "create", "changes": changes}


class _Closable(Protocol):
    def close(self) -> None: ...


def close_quietly(writer: _Closable) -> None:
    """On the way out of a failing run, still commit what was sent (so a resume skips it); the
    run's own error is the one to report, so a second error from the sender is not raised here."""
    try:
        writer.close()
    except BaseException:  # noqa: BLE001 - the original error is being raised already
        return


# ------------------------------------------------------------------ shared helpers
def resolve_segment_id(ctx: SyncContext, wanted: str) -> str:
    """A Braze segment id from an id or a name; names are resolved once and remembered."""
    cache = ctx.state.get_value(SEGMENT_IDS) or {}
    if wanted in cache:
        return str(cache[wanted])
    by_name: dict[str, str] = {}
    folded: dict[str, str] = {}
    for segment in ctx.braze.iter_segments():
        if segment.id == wanted:
            return segment.id
        by_name.setdefault(segment.name, segment.id)
        folded.setdefault(segment.name.casefold(), segment.id)
    found = by_name.get(wanted) or folded.get(wanted.casefold())
    if found is None:
        raise UsageError(
            f"Braze has no segment with the id or name '{wanted}'.",
            fix="Check sync.users_segment / lists: in the config; `tajo connectors test braze` lists the "
            "segment check, and segments are under Audience → Segments in Braze.",
        )
    if not ctx.dry_run:
        cache[wanted] = found
        ctx.state.set_value(SEGMENT_IDS, cache)
    return found


def ensure_folder(ctx: SyncContext, name: str) -> int:
    key = f"brevo:folder:{name}"
    known = ctx.state.get_value(key)
    if isinstance(known, int):
        return known
    for folder in ctx.brevo.iter_folders():
        if folder.name == name:
            if not ctx.dry_run:
                ctx.state.set_value(key, folder.id)
            return folder.id
    if ctx.dry_run:
        return 0
    folder_id = ctx.brevo.create_folder(name)
    ctx.state.set_value(key, folder_id)
    return folder_id


MISMATCH_COUNTERS = (
    "invalid_emails",
    "duplicate_contact_id",
    "duplicate_ext_id",
    "duplicate_phone_id",
    "duplicate_whatsapp_id",
    "duplicate_landline_number_id",
)


def auto_map_workers(export_bytes: int, cpus: int) -> int:
    """Mapping workers for a large export: one per CPU the run's own process leaves free, at most
    MAX_AUTO_WORKERS. The run's process reads, looks up and sends on a core of its own, so more
    workers than the other cores only add memory."""
    if cpus < 2 or export_bytes < PARALLEL_MIN_BYTES:
        return 0
    return min(cpus - 1, MAX_AUTO_WORKERS)


def import_keys_record(process_id: int) -> str:
    return f"users:import:{process_id}:keys"


def imported_keys(state: StateStore, entry: Mapping[str, Any]) -> list[str]:
    """The fingerprint keys a pending import wrote, as recorded when it was committed."""
    if "keys_record" in entry:
        return list(state.get_value(entry["keys_record"]) or [])
    return list(state.iter_members(entry["keys_namespace"]))  # a state written before records


def forget_imported_keys(state: StateStore, entry: Mapping[str, Any]) -> None:
    if "keys_record" in entry:
        state.delete_value(entry["keys_record"])
    else:
        namespace = entry["keys_namespace"]
        state.remove_members(namespace, list(state.iter_members(namespace)))


def _processes_covering(ctx: SyncContext, wanted: set[int], page: int = 50) -> dict[int, ImportProcess]:
    """Page /processes (newest first) until every wanted id was seen or older ones begin."""
    found: dict[int, ImportProcess] = {}
    oldest_wanted = min(wanted)
    offset = 0
    while True:
        processes = ctx.brevo.list_processes(limit=page, offset=offset)
        found.update((p.id, p) for p in processes)
        if len(processes) < page or wanted <= found.keys() or min(p.id for p in processes) < oldest_wanted:
            return found
        offset += page


def reconcile_imports(ctx: SyncContext, result: ResourceResult, *, wait: bool, max_polls: int = 8) -> None:
    """Confirm the import processes this connector started, with one /processes listing per poll.

    /processes sits in Brevo's 100-requests-per-hour bucket, so one listing covers many imports and
    polls back off. A failed import rolls its fingerprints back so the next run writes it again.
    """
    delay = 1.0
    polls = 0
    while True:
        pending: list[dict[str, Any]] = ctx.state.get_value(PENDING_IMPORTS) or []
        if not pending:
            return
        polls += 1
        try:
            by_id = _processes_covering(ctx, {int(entry["process_id"]) for entry in pending})
        except (RateLimited, TransientApiError) as exc:
            # Confirmation can wait: the imports were accepted, and the next run confirms them.
            result.notes.append(f"{len(pending)} Brevo import(s) not yet confirmed: {exc.user_message}")
            return
        still: list[dict[str, Any]] = []
        for entry in pending:
            pid = int(entry["process_id"])
            process = by_id.get(pid)
            if process is None or not process.finished:
                still.append(entry)
                continue
            if process.status != "completed":
                keys = imported_keys(ctx.state, entry)
                ctx.state.delete_fingerprints(FINGERPRINTS, keys)
                result.notes.append(
                    f"Brevo import {pid} ended '{process.status}'"
                    f"{': ' + process.error if process.error else ''}; its {len(keys)} contacts will be "
                    "written again next run"
                )
            else:
                mismatched = {
                    name: process.counters.get(name)
                    for name in MISMATCH_COUNTERS
                    if isinstance(process.counters.get(name), int) and process.counters.get(name)
                }
                if mismatched:
                    result.notes.append(
                        f"Brevo import {pid} dropped rows the connector had validated: {mismatched}"
                    )
            forget_imported_keys(ctx.state, entry)
        ctx.state.set_value(PENDING_IMPORTS, still)
        if not still or not wait or polls >= max_polls:
            if still and wait:
                result.notes.append(
                    f"{len(still)} Brevo import(s) still processing; the next run confirms them"
                )
            return
        ctx.sleep(delay)
        delay = min(delay * 2, 60.0)


def parse_since(value: str | date | datetime | None) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value[:10])
    except ValueError as exc:
        raise UsageError(f"--since '{value}' is not a date.", fix="Use YYYY-MM-DD, e.g. --since 2024-01-01.") from exc


def run(ctx: SyncContext) -> ResourceResult:
    return UsersSync(ctx).run()


def retry_dead_letters(ctx: SyncContext) -> dict[str, Any]:
    """Fetch dead-lettered users again from Braze (by id, 50 per call), map and write those now valid.

    A user still refused keeps its dead letter with the current reason and one more attempt.
    """
    sync = UsersSync(ctx)
    sync.accepted = []
    list_id = sync.users_list_id()
    writer = ImportWriter(ctx, sync.result, list_id)
    writer.take_dead_letters = sync._take_dead_letters
    fields = sync.export_fields()
    letters = list(ctx.state.iter_dead_letters(RESOURCE))
    external_ids = sorted({str(d.record["external_id"]) for d in letters if d.record.get("external_id")})
    emails = sorted({str(d.record["email"]) for d in letters if not d.record.get("external_id") and d.record.get("email")})
    unreadable = [d.key for d in letters if not d.record.get("external_id") and not d.record.get("email")]
    found: list[BrazeUser] = []
    for start in range(0, len(external_ids), 50):
        found.extend(ctx.braze.export_ids(external_ids=external_ids[start : start + 50], fields_to_export=fields).users)
    for email in emails:
        found.extend(ctx.braze.export_ids(email=email, fields_to_export=fields).users)
    lines = [ExportLine(-1, i, jsonbytes.dumps(dict(user.data))) for i, user in enumerate(found)]
    try:
        for chunk in chunked(lines, CHUNK_LINES):
            sync._process_chunk(chunk, writer)
        writer.flush(None)
    except BaseException:
        close_quietly(writer)
        raise
    writer.close()
    sync._flush_dead_letters()
    seen = {f"ext:{u.external_id}" for u in found if u.external_id} | {
        f"braze:{u.braze_id}" for u in found if u.braze_id
    }
    gone = [d.key for d in letters if d.key.startswith(("ext:", "braze:")) and d.key not in seen]
    resolved = ctx.state.resolve_dead_letters(RESOURCE, sync.accepted)
    reconcile_imports(ctx, sync.result, wait=True)
    return {
        "retried": len(letters),
        "written": sync.result.created + sync.result.updated,
        "resolved": resolved,
        "still_failing": ctx.state.count_dead_letters(RESOURCE),
        "not_in_braze_anymore": len(gone),
        "not_retryable": len(unreadable),
    }
