"""Brevo catches up, in the same two-way run, with what the Brevo -> Braze half leaves in Braze.

After Braze acknowledged a write, the Brevo -> Braze half knows what the users half will read for
that person next time (`brevo_view.expect`). Where Brevo already holds it, the users half's
fingerprint is set and nothing moves. Where it does not (a profile we created comes back with
Braze's default states, a consent write changes the state the mapping carries), a `both` run
imports it to Brevo right away, the way the users half would on the next run: the same import
body, the users list, fingerprints and claims committed once Brevo accepted the import. So two
consecutive runs without outside changes write nothing the second time.

A run killed between the Braze write and this import loses nothing: the next export shows the
users half the difference, and it writes it then.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from .. import jsonbytes
from ..models import ResourceResult
from . import users as users_half
from .brevo_view import Expectation
from .context import SyncContext

# Rows of this import carry no place in an export: the checkpoint of the users half never moves.
NO_POSITION = (-1, 0)


class CatchUpWriter(users_half.ImportWriter):
    """The users half's import writer, setting claims only where this side knows their owner."""

    def _update_claims(self, meta: Sequence[users_half.PendingRow]) -> None:
        users_half.update_claims(self.ctx.state, users_half.claims_of(meta))


class BrevoCatchUp:
    def __init__(self, ctx: SyncContext, *, writes: bool) -> None:
        self.ctx = ctx
        list_id = ctx.state.get_value(users_half.USERS_LIST)
        # Only a two-way run writes to Brevo from this side, and only once the users half made its list.
        self.list_id = list_id if writes and isinstance(list_id, int) else None
        self.counts = ResourceResult(users_half.RESOURCE, direction="braze_to_brevo")
        self.writer: CatchUpWriter | None = None
        self.left = 0

    def remember(self, expectations: Sequence[Expectation]) -> list[Expectation]:
        """Set the fingerprints Brevo already holds (inside the caller's transaction); return the rest.

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
        return [e for e in expectations if id(e) not in kept]

    def write(self, expectations: Sequence[Expectation]) -> None:
        """Queue the imports that give Brevo what Braze will show (after the Braze write committed)."""
        if not expectations:
            return
        if self.list_id is None:
            self.left += len(expectations)
            return
        rows = {
            m.key: m
            for m in users_half.rows_to_take_over(
                self.ctx.state, [(e.payload.key, e.record) for e in expectations]
            )
        }
        writer = self._writer(self.list_id)
        for expectation in expectations:
            row = rows.get(expectation.payload.key)
            if row is None:
                self.left += 1  # another profile claims its email or phone: the users half decides
                continue
            writer.add(
                jsonbytes.dumps(users_half.import_row(expectation.payload)),
                row,
                NO_POSITION,
                unsubscribe=expectation.blocklists,
            )

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
