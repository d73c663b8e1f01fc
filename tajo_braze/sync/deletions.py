"""Deletions, both ways, only when `sync.deletes: true`. A dry run counts them and deletes nothing.

Brevo -> Braze: contacts this connector synced (their ids are remembered) that a complete read no
longer returns, and that Brevo confirms gone when looked up, are deleted in Braze (/users/delete,
50 per call, by the identifier they were written with; an unknown user counts as done).

Braze -> Brevo: users the Braze -> Brevo half wrote to Brevo that are absent from a fresh export
of the users segment, and that /users/export/ids confirms gone, lose their Brevo contact. A user
who merely left the segment still exists in Braze and is kept.

Every deletion is confirmed one by one against the vendor, so a truncated read or a wrong segment
can never delete what still exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..clients.braze import DELETE_MAX, EXPORT_IDS_MAX
from ..errors import PermanentApiError, RecordRejected, UsageError
from ..exports import download_export, iter_export_lines, wait_until_ready
from ..models import ResourceResult
from . import users as users_half
from .contacts import FIELDS, KNOWN_CONTACTS, ContactMemory, merge_missing, state_key
from .context import SyncContext

SEEN_IN_EXPORT = "deletions:braze_seen"  # scratch set, rebuilt for every Braze-side pass
EXPORT_FIELDS = ("external_id", "braze_id", "email", "phone")
CHUNK = 5000


@dataclass
class DeletionReport:
    candidates: int = 0
    confirmed: int = 0
    deleted: int = 0
    calls: dict[str, int] = field(default_factory=dict)

    def call(self, name: str, count: int = 1) -> None:
        self.calls[name] = self.calls.get(name, 0) + count


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _merge_calls(result: ResourceResult, report: DeletionReport) -> None:
    for name, count in report.calls.items():
        result.api_calls[name] = result.api_calls.get(name, 0) + count


def sorted_keys(ids: array[int]) -> Iterator[str]:
    """State keys of the ids read, in key order, each once.

    Brevo pages contacts by creation date, which is id order, so the array is usually sorted
    already and is then walked as it is (8 bytes per contact, no copy).
    """
    ordered = ids if all(a <= b for a, b in itertools.pairwise(ids)) else array("q", sorted(ids))
    previous = None
    for contact_id in ordered:
        if contact_id != previous:
            yield state_key(contact_id)
        previous = contact_id


# ------------------------------------------------------------------ Brevo -> Braze
def braze_delete_batches(whos: Sequence[tuple[str, ...]]) -> list[tuple[str, list[Any]]]:
    """(/users/delete identifier type, up to 50 identifiers) per call; one identifier type per request."""
    grouped: dict[str, list[Any]] = {"external_ids": [], "user_aliases": [], "braze_ids": []}
    for who in whos:
        if who[0] == "external_id":
            grouped["external_ids"].append(who[1])
        elif who[0] == "user_alias" and len(who) >= 3:
            grouped["user_aliases"].append({"alias_name": who[1], "alias_label": who[2]})
        elif who[0] == "braze_id":
            grouped["braze_ids"].append(who[1])
    batches: list[tuple[str, list[Any]]] = []
    for kind, items in grouped.items():
        for start in range(0, len(items), DELETE_MAX):
            batches.append((kind, items[start : start + DELETE_MAX]))
    return batches


def propagate_brevo_deletions(
    ctx: SyncContext, result: ResourceResult, seen_ids: array[int]
) -> DeletionReport:
    """Contacts gone from a complete Brevo read (and confirmed gone) -> deleted in Braze."""
    report = DeletionReport()
    state = ctx.state
    gone: list[str] = []
    for chunk in _chunks(
        merge_missing(state.iter_members(KNOWN_CONTACTS), sorted_keys(seen_ids)), EXPORT_IDS_MAX
    ):
        report.candidates += len(chunk)
        for key in chunk:
            report.call("GET /contacts/{identifier}")
            if ctx.brevo.get_contact(str(int(key)), identifier_type="contact_id") is None:
                gone.append(key)
    report.confirmed = len(gone)
    memories = {
        key: memory
        for key, value in (state.get_field_values(FIELDS, gone).items() if gone else ())
        if (memory := ContactMemory.from_value(value)) is not None
    }
    if ctx.dry_run:
        result.plan["delete_in_braze"] = report.confirmed
        _merge_calls(result, report)
        return report
    for kind, items in braze_delete_batches([m.who for m in memories.values()]):
        report.call("POST /users/delete")
        try:
            if kind == "external_ids":
                ctx.braze.delete_users(items)
            elif kind == "user_aliases":
                ctx.braze.delete_users_by(user_aliases=items)
            else:
                ctx.braze.delete_users_by(braze_ids=items)
        except PermanentApiError as exc:
            if exc.status != 404:
                raise
            # 404: nobody left to delete, which is the outcome wanted.
        report.deleted += len(items)
    # Forget them only now that Braze acknowledged every call.
    state.remove_members(KNOWN_CONTACTS, gone)
    if report.confirmed:
        result.notes.append(f"{report.confirmed} contact(s) deleted in Brevo were deleted in Braze")
    _merge_calls(result, report)
    return report


# ------------------------------------------------------------------ Braze -> Brevo
def _export_path(ctx: SyncContext, url: str) -> Any:
    token = hashlib.blake2b(url.encode(), digest_size=8).hexdigest()
    return ctx.work_dir / f"deletions-{token}.zip"


def _clear_seen(ctx: SyncContext) -> None:
    state = ctx.state
    while keys := list(itertools.islice(state.iter_members(SEEN_IN_EXPORT), CHUNK)):
        state.remove_members(SEEN_IN_EXPORT, keys)


def record_export_keys(ctx: SyncContext, report: DeletionReport) -> None:
    """Export the users segment (identifiers only) and remember every user's key in the scratch set."""
    wanted = ctx.config.sync.users_segment
    if not wanted:
        raise UsageError(
            "Deletions from Braze need the users segment.",
            fix="Set connectors.braze.sync.users_segment, or turn sync.deletes off.",
        )
    segment_id = users_half.resolve_segment_id(ctx, wanted)
    job = ctx.braze.export_segment(segment_id, fields_to_export=list(EXPORT_FIELDS))
    report.call("POST /users/export/segment")
    if not job.url:
        raise UsageError(
            "Braze wrote the export to the workspace's own cloud bucket instead of returning a URL.",
            fix="Turn sync.deletes off, or export from a workspace without S3/Azure/GCS export credentials.",
        )
    path = _export_path(ctx, job.url)
    wait_until_ready(ctx.braze_session, job.url, timeout_s=ctx.config.sync.export_timeout_s, sleep=ctx.sleep)
    download_export(ctx.braze_session, job.url, path)
    _clear_seen(ctx)
    try:
        keys: list[str] = []
        for line in iter_export_lines(path):
            try:
                user = users_half.user_from_line(line.raw)
            except RecordRejected:
                continue
            keys.append(ctx.mapping.to_brevo(user).key)
            if len(keys) >= CHUNK:
                ctx.state.add_members(SEEN_IN_EXPORT, keys)
                keys = []
        if keys:
            ctx.state.add_members(SEEN_IN_EXPORT, keys)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def confirm_gone_from_braze(ctx: SyncContext, keys: Sequence[str], report: DeletionReport) -> list[str]:
    """The keys /users/export/ids cannot find any more (external ids 50 per call, emails one by one)."""
    gone: list[str] = []
    external = [key for key in keys if key.startswith("ext:")]
    for start in range(0, len(external), EXPORT_IDS_MAX):
        batch = external[start : start + EXPORT_IDS_MAX]
        answer = ctx.braze.export_ids(external_ids=[k[4:] for k in batch], fields_to_export=["external_id"])
        report.call("POST /users/export/ids")
        present = {u.external_id for u in answer.users}
        gone.extend(k for k in batch if k[4:] not in present)
    for key in keys:
        if key.startswith("email:"):
            answer = ctx.braze.export_ids(email=key[6:], fields_to_export=["email"])
            report.call("POST /users/export/ids")
            if not answer.users:
                gone.append(key)
    return gone


def _delete_in_brevo(ctx: SyncContext, key: str, report: DeletionReport) -> None:
    identifier, kind = (key[4:], "ext_id") if key.startswith("ext:") else (key[6:], "email_id")
    report.call("GET /contacts/{identifier}")
    contact = ctx.brevo.get_contact(identifier, identifier_type=kind)
    if contact is not None:
        report.call("DELETE /contacts/{identifier}")
        ctx.brevo.delete_contact(str(contact.id), identifier_type="contact_id")
        ctx.state.remove_members(KNOWN_CONTACTS, [state_key(contact.id)])
    report.deleted += 1


def _forget_user(ctx: SyncContext, key: str) -> None:
    """The users half's fingerprint and the identifier claims the deleted user held."""
    state = ctx.state
    text = state.get_fingerprints(users_half.FINGERPRINTS, [key]).get(key)
    if text is not None:
        record = users_half.SentRecord.decode(text)
        for namespace, value in (
            (users_half.EMAIL_CLAIMS, record.email),
            (users_half.SMS_CLAIMS, record.sms),
        ):
            if value and state.get_fingerprints(namespace, [value]).get(value) == key:
                state.delete_fingerprints(namespace, [value])
    state.delete_fingerprints(users_half.FINGERPRINTS, [key])


def propagate_braze_deletions(ctx: SyncContext, result: ResourceResult) -> DeletionReport:
    """Users gone from Braze (absent from the users segment export, confirmed by id) -> Brevo contact deleted."""
    report = DeletionReport()
    state = ctx.state
    record_export_keys(ctx, report)
    try:
        candidates = (
            key
            for key in merge_missing(
                state.iter_fingerprint_keys(users_half.FINGERPRINTS), state.iter_members(SEEN_IN_EXPORT)
            )
            if key.startswith(("ext:", "email:"))
        )
        gone: list[str] = []
        for chunk in _chunks(candidates, EXPORT_IDS_MAX):
            report.candidates += len(chunk)
            gone.extend(confirm_gone_from_braze(ctx, chunk, report))
        report.confirmed = len(gone)
        if ctx.dry_run:
            result.plan["delete_in_brevo"] = report.confirmed
            return report
        for key in gone:
            _delete_in_brevo(ctx, key, report)
            _forget_user(ctx, key)
            ctx.check_stop()
        if report.confirmed:
            result.notes.append(f"{report.confirmed} user(s) deleted in Braze were deleted in Brevo")
        return report
    finally:
        _clear_seen(ctx)
        _merge_calls(result, report)
