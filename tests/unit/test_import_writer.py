"""The import writer: every row lands in exactly one import, unsubscribes apart, checkpoints never skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tajo_braze.models import ImportProcess, ResourceResult
from tajo_braze.state import StateStore
from tajo_braze.sync.context import SyncContext
from tajo_braze.sync.settle import CatchUpWriter
from tajo_braze.sync.users import (
    CHECKPOINT,
    FINGERPRINTS,
    PENDING_IMPORTS,
    ImportWriter,
    PendingRow,
    SentRecord,
    import_keys_record,
    reconcile_imports,
)


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


# ------------------------------------------------------------------ confirming imports afterwards
class ProcessesBrevo(RecordingBrevo):
    """Imports are recorded; /processes answers with the status each import is given."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[int, str] = {}

    def list_processes(self, *, limit: int, offset: int) -> list[ImportProcess]:
        newest_first = sorted(self.statuses.items(), reverse=True)[offset : offset + limit]
        return [ImportProcess(pid, "IMPORTUSER", status) for pid, status in newest_first]


def write_rows(state: StateStore, brevo: ProcessesBrevo, keys: list[str]) -> None:
    writer = ImportWriter(make_ctx(state, brevo, 2), ResourceResult("users"), list_id=9)
    for i, key in enumerate(keys):
        record = SentRecord(f"d{i}", f"{key}@x.io", None, None)
        writer.add(orjson.dumps({"email": f"{key}@x.io"}), PendingRow(key, key, record, None, True), None)
    writer.flush(None)
    writer.close()


def test_a_failed_import_forgets_its_rows_so_the_next_run_writes_them_again(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.db")
    brevo = ProcessesBrevo()
    keys = ["ext:a", "ext:two\nlines", "ext:c"]  # an external_id may hold any character
    write_rows(state, brevo, keys)  # imports 1 (the first two) and 2 (the last)
    assert sorted(state.get_fingerprints(FINGERPRINTS, keys)) == sorted(keys)
    brevo.statuses = {1: "failed", 2: "completed"}
    result = ResourceResult("users")
    reconcile_imports(make_ctx(state, brevo, 2), result, wait=False)
    assert sorted(state.get_fingerprints(FINGERPRINTS, keys)) == ["ext:c"]
    assert result.notes == ["Brevo import 1 ended 'failed'; its 2 contacts will be written again next run"]
    assert state.get_value(PENDING_IMPORTS) == []
    assert state.get_value(import_keys_record(1)) is None and state.get_value(import_keys_record(2)) is None


def test_an_unfinished_import_stays_pending_with_its_keys(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.db")
    brevo = ProcessesBrevo()
    write_rows(state, brevo, ["ext:a"])
    brevo.statuses = {1: "in_process"}
    reconcile_imports(make_ctx(state, brevo, 2), ResourceResult("users"), wait=False)
    assert [entry["process_id"] for entry in state.get_value(PENDING_IMPORTS)] == [1]
    brevo.statuses = {1: "cancelled"}
    reconcile_imports(make_ctx(state, brevo, 2), ResourceResult("users"), wait=False)
    assert state.get_fingerprints(FINGERPRINTS, ["ext:a"]) == {}


def test_imports_pending_in_a_state_that_kept_their_keys_as_a_member_set_are_confirmed(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.db")
    state.put_fingerprints(FINGERPRINTS, [("ext:a", "x"), ("ext:b", "y")])
    state.add_members("users:import:7", ["ext:a"])
    state.add_members("users:import:8", ["ext:b"])
    state.set_value(PENDING_IMPORTS, [{"process_id": 7, "keys_namespace": "users:import:7"},
                                      {"process_id": 8, "keys_namespace": "users:import:8"}])
    brevo = ProcessesBrevo()
    brevo.statuses = {7: "failed", 8: "completed"}
    reconcile_imports(make_ctx(state, brevo, 2), ResourceResult("users"), wait=False)
    assert state.get_fingerprints(FINGERPRINTS, ["ext:a", "ext:b"]) == {"ext:b": "y"}
    assert state.count_members("users:import:7") == state.count_members("users:import:8") == 0
    assert state.get_value(PENDING_IMPORTS) == []


def test_catch_up_rows_repeating_an_identifier_of_a_filling_import_go_in_the_next_one(tmp_path: Path) -> None:
    # Brevo keeps the first row naming an identifier in a file and drops the others.
    state = StateStore(tmp_path / "state.db")
    brevo = RecordingBrevo()
    writer = CatchUpWriter(make_ctx(state, brevo, 100), ResourceResult("users"), list_id=9)

    def add(key: str, email: str | None, sms: str | None, name: str) -> None:
        record = SentRecord(f"d-{name}", email, sms, False)
        row = orjson.dumps({"ext_id": key[4:], "email": email, "attributes": {"FIRSTNAME": name}})
        writer.add(row, PendingRow(key, key, record, None, True), (-1, 0))

    add("ext:a", "a@x.io", None, "a, first")
    add("ext:a", "a@x.io", None, "a, second")  # the same contact again
    add("ext:b", "b@x.io", "+33600000001", "b")
    add("ext:c", "c@x.io", "+33600000001", "c")  # b's phone number: the next import
    add("ext:a", "a@x.io", None, "a, third")  # "a, second" was sealed: this one joins c
    add("ext:d", "c@x.io", None, "d")  # c's email
    writer.flush(None)
    writer.close()
    names = [[row["attributes"]["FIRSTNAME"] for row in body["jsonBody"]] for body in brevo.bodies]
    assert names == [["a, first"], ["a, second", "b"], ["c", "a, third"], ["d"]]
    for body in brevo.bodies:
        for field in ("ext_id", "email"):
            values = [row[field] for row in body["jsonBody"] if row[field]]
            assert len(values) == len(set(values))
