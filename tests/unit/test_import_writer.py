"""The import writer: every row lands in exactly one import, unsubscribes apart, checkpoints never skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tajo_braze.models import ResourceResult
from tajo_braze.state import StateStore
from tajo_braze.sync.context import SyncContext
from tajo_braze.sync.users import CHECKPOINT, FINGERPRINTS, ImportWriter, PendingRow, SentRecord


class RecordingBrevo:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def import_contacts(self, body: bytes) -> int:
        self.bodies.append(orjson.loads(body))
        return len(self.bodies)


def make_ctx(state: StateStore, brevo: RecordingBrevo, batch_size: int) -> SyncContext:
    return SyncContext(
        config=None, mapping=None, state=state, braze=None, brevo=brevo,  # type: ignore[arg-type]
        braze_session=None, logger=None, work_dir=Path("."), batch_size=batch_size,  # type: ignore[arg-type]
    )


@settings(max_examples=30, deadline=None)
@given(flags=st.lists(st.booleans(), min_size=1, max_size=60), batch=st.integers(1, 7))
def test_every_row_lands_once_and_unsubscribes_travel_apart(
    tmp_path_factory: Any, flags: list[bool], batch: int
) -> None:
    state = StateStore(tmp_path_factory.mktemp("w") / "state.db")
    state.set_value(CHECKPOINT, {"member": 0, "line": 0})
    brevo = RecordingBrevo()
    writer = ImportWriter(make_ctx(state, brevo, batch), ResourceResult("users"), list_id=9)
    checkpoints: list[int] = []
    for line, unsubscribe in enumerate(flags):
        key = f"ext:u{line}"
        record = SentRecord(f"d{line}", f"u{line}@x.io", None, unsubscribe)
        writer.add(orjson.dumps({"email": f"u{line}@x.io"}), PendingRow(key, key, record, None, True), (0, line),
                   unsubscribe=unsubscribe)
        writer.close()  # wait for the sender so the checkpoint can be read
        checkpoint = state.get_value(CHECKPOINT)["line"]
        checkpoints.append(checkpoint)
        sent_lines = {int(row["email"][1:].split("@")[0]) for body in brevo.bodies for row in body["jsonBody"]}
        # Every row before the checkpoint was sent: a resume from it loses nothing.
        assert set(range(checkpoint)) <= sent_lines
    writer.flush(None)
    writer.close()
    sent = [(row["email"], bool(body.get("emailBlacklist"))) for body in brevo.bodies for row in body["jsonBody"]]
    assert sorted(sent) == sorted((f"u{i}@x.io", flag) for i, flag in enumerate(flags))
    assert all(len(body["jsonBody"]) <= batch for body in brevo.bodies)
    assert checkpoints == sorted(checkpoints)  # only forward
    assert state.count_fingerprints(FINGERPRINTS) == len(flags)
    state.close()
