"""Brevo catches up, in the same two-way run, with what the Brevo -> Braze half leaves in Braze.

After Braze acknowledged a write, the Brevo -> Braze half knows what the users half will read for
that person next time (`brevo_view.expect`). Where Brevo already holds it, the users half's
fingerprint is set and nothing moves. Where it does not (a profile we created comes back with
Braze's default states, a consent write changes the state the mapping carries), a `both` run
imports it to Brevo right away, the way the users half would on the next run: the same import
body, the users list, fingerprints and claims committed once Brevo accepted the import. So two
consecutive runs without outside changes write nothing the second time.

The rows an acknowledged Braze write leaves to import are kept in state with that write's commit,
until their import commits: a run stopped in between imports them when it resumes.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .. import jsonbytes
from ..models import ResourceResult
from . import users as users_half
from .brevo_view import Expectation
from .context import SyncContext

# Rows of this import carry no place in an export: the checkpoint of the users half never moves.
NO_POSITION = (-1, 0)
PENDING = "users:catch_up_pending"  # users half key -> CatchUpRow.encode(), until its import commits


@dataclass(frozen=True, slots=True)
class CatchUpRow:
    """One contact to import so that Brevo holds what Braze shows after our write."""

    key: str
    row: bytes  # the import row, as the users half builds it
    record: users_half.SentRecord
    blocklists: bool
    previous: users_half.SentRecord | None  # the users half's fingerprint it replaces

    @property
    def pending(self) -> users_half.PendingRow:
        return users_half.PendingRow(self.key, self.key, self.record, self.previous, self.previous is None)

    def encode(self) -> str:
        return json.dumps(
            {
                "row": self.row.decode("utf-8"),
                "record": self.record.encode(),
                "blocklists": self.blocklists,
                "previous": self.previous.encode() if self.previous is not None else None,
            }
        )

    @classmethod
    def decode(cls, key: str, text: str) -> CatchUpRow | None:
        try:
            value = json.loads(text)
            previous = value["previous"]
            return cls(
                key,
                str(value["row"]).encode("utf-8"),
                users_half.SentRecord.decode(str(value["record"])),
                bool(value["blocklists"]),
                users_half.SentRecord.decode(str(previous)) if previous is not None else None,
            )
        except (ValueError, KeyError, TypeError):
            return None


class CatchUpWriter(users_half.ImportWriter):
    """The users half's import writer, setting claims only where this side knows their owner.

    Two writes to one person in a run give two rows for one contact. Brevo keeps the first row
    that names an identifier in a file and drops the rest, so a row that repeats an identifier of
    a row still filling an import goes in the next import instead: the later one lands last.
    """

    def __init__(self, ctx: SyncContext, result: ResourceResult, list_id: int) -> None:
        super().__init__(ctx, result, list_id)
        self._buffers: tuple[int, int] = (0, 0)
        self._identifiers: set[str] = set()

    def add(
        self, row: bytes, meta: users_half.PendingRow, position: tuple[int, int], *, unsubscribe: bool = False
    ) -> None:
        identifiers = _identifiers(meta)
        if not self._filling().isdisjoint(identifiers):
            self.flush(None)
        super().add(row, meta, position, unsubscribe=unsubscribe)
        self._filling().update(identifiers)

    def _filling(self) -> set[str]:
        """The identifiers of the rows in the buffers still filling (rebuilt when one was sealed)."""
        buffers = (id(self.batch), id(self.blacklist))
        if buffers != self._buffers:
            self._buffers = buffers
            self._identifiers = {i for m in (*self.batch.meta, *self.blacklist.meta) for i in _identifiers(m)}
        return self._identifiers

    def _update_claims(self, meta: Sequence[users_half.PendingRow]) -> None:
        users_half.update_claims(self.ctx.state, users_half.claims_of(meta))

    def _commit_also(self, meta: Sequence[users_half.PendingRow]) -> None:
        # A later write to the same person may have replaced the pending row since: that one stays.
        state = self.ctx.state
        stored = state.get_fingerprints(PENDING, [m.key for m in meta])
        imported = {m.key: m.record.encode() for m in meta}
        done = [
            key
            for key, text in stored.items()
            if (row := CatchUpRow.decode(key, text)) is None or row.record.encode() == imported.get(key)
        ]
        state.delete_fingerprints(PENDING, done)


def _identifiers(meta: users_half.PendingRow) -> set[str]:
    found = {meta.key}
    if meta.record.email:
        found.add(f"email:{meta.record.email}")
    if meta.record.sms:
        found.add(f"sms:{meta.record.sms}")
    return found


class BrevoCatchUp:
    def __init__(self, ctx: SyncContext, *, writes: bool) -> None:
        self.ctx = ctx
        list_id = ctx.state.get_value(users_half.USERS_LIST)
        # Only a two-way run writes to Brevo from this side, and only once the users half made its list.
        self.list_id = list_id if writes and isinstance(list_id, int) else None
        self.counts = ResourceResult(users_half.RESOURCE, direction="braze_to_brevo")
        self.writer: CatchUpWriter | None = None
        self.left = 0

    def remember(self, expectations: Sequence[Expectation]) -> list[CatchUpRow]:
        """Set the fingerprints Brevo already holds (inside the caller's transaction); return the rows
        to import for the rest, kept in state (same transaction) until their import commits.

        When this run writes, a person the users half never wrote is left to `write` even if Brevo
        holds the contents: its first import also puts the contact in the users list.
        """
        state = self.ctx.state
        known: Collection[str] = ()
        if self.list_id is not None:
            known = state.get_fingerprints(users_half.FINGERPRINTS, [e.payload.key for e in expectations]).keys()
        held = [e for e in expectations if e.brevo_holds_it and (self.list_id is None or e.payload.key in known)]
        users_half.remember_sent(state, [(e.payload.key, e.record) for e in held])
        kept = {id(e) for e in held}
        rows = self.take([e for e in expectations if id(e) not in kept])
        if rows:
            state.put_fingerprints(PENDING, ((row.key, row.encode()) for row in rows))
        return rows

    def take(self, expectations: Sequence[Expectation]) -> list[CatchUpRow]:
        """The import rows of the people this run catches Brevo up with, decided on state as it is now.

        A person whose email or phone another profile claims is left to the users half's next run.
        """
        if not expectations:
            return []
        if self.list_id is None:
            self.left += len(expectations)
            return []
        state = self.ctx.state
        taken = {
            m.key: m
            for m in users_half.rows_to_take_over(state, [(e.payload.key, e.record) for e in expectations])
        }
        rows: list[CatchUpRow] = []
        for e in expectations:
            meta = taken.get(e.payload.key)
            if meta is None:
                self.left += 1
                continue
            row = jsonbytes.dumps(users_half.import_row(e.payload))
            rows.append(CatchUpRow(meta.key, row, meta.record, e.blocklists, meta.previous))
        return rows

    def resume(self) -> None:
        """Queue the imports a stopped run left to do (see `remember`)."""
        if self.list_id is None or self.ctx.dry_run:
            return
        stored = self.ctx.state.iter_fingerprints(PENDING)  # in key order
        self.write([row for key, text in stored if (row := CatchUpRow.decode(key, text))])

    def write(self, rows: Sequence[CatchUpRow]) -> None:
        """Queue the imports that give Brevo what Braze will show (after the Braze write committed)."""
        if not rows or self.list_id is None:
            return
        writer = self._writer(self.list_id)
        for row in rows:
            writer.add(row.row, row.pending, NO_POSITION, unsubscribe=row.blocklists)

    def settle(self) -> None:
        """Let the import on its way land before state is read again (see `ImportWriter.settle`)."""
        if self.writer is not None:
            self.writer.settle()

    def finish(self, result: ResourceResult) -> None:
        writer = self.writer
        if writer is not None:
            try:
                writer.flush(None)
            except BaseException:
                users_half.close_quietly(writer)
                raise
            writer.close()
            calls = writer.imports_sent + writer.blacklist_imports_sent
            result.api_calls["POST /contacts/import"] = result.api_calls.get("POST /contacts/import", 0) + calls
            written = self.counts.created + self.counts.updated
            if written:
                verb = "would get" if self.ctx.dry_run else "got"
                result.notes.append(
                    f"{written} Brevo contact(s) {verb} what Braze now holds for them (Braze's defaults for "
                    f"the profiles created, consent states) in {calls} import(s): the next run finds nothing to write"
                )
        if self.left:
            result.notes.append(
                f"{self.left} profile(s) changed in Braze by this run are left to the next Braze -> Brevo run"
            )

    def _writer(self, list_id: int) -> CatchUpWriter:
        if self.writer is None:
            self.writer = CatchUpWriter(self.ctx, self.counts, list_id)
        return self.writer
