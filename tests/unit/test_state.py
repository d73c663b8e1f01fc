"""The state store: file safety, migrations, the run lock, and the semantics of every table."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tajo_braze import state as state_module
from tajo_braze.errors import RunLocked, StateError, UsageError
from tajo_braze.state import (
    MIGRATIONS,
    SCHEMA_VERSION,
    MetricRow,
    StateStore,
    migrate,
    schema_version,
    split_statements,
)


class SteppingClock:
    """A clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tajo" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[StateStore]:
    with StateStore(db_path, clock=SteppingClock()) as opened:
        yield opened


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def metric(
    day: str, value: float, *, metric_name: str = "sent", object_id: str = "c1", kind: str = "campaign"
) -> MetricRow:
    return MetricRow(kind, object_id, day, "email", "", "", metric_name, value)


# ---------------------------------------------------------------- the file
def test_new_state_file_and_its_directory_are_private_and_in_wal_mode(db_path: Path) -> None:
    with StateStore(db_path) as store:
        store.set_value("probe", 1)
        wal = Path(f"{db_path}-wal")
        assert wal.exists()
        assert mode_of(wal) == 0o600
    assert mode_of(db_path.parent) == 0o700
    assert mode_of(db_path) == 0o600
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_existing_loose_state_file_is_tightened_to_0600(db_path: Path) -> None:
    StateStore(db_path).close()
    os.chmod(db_path, 0o644)
    StateStore(db_path).close()
    assert mode_of(db_path) == 0o600


def test_lock_file_is_private(store: StateStore, db_path: Path) -> None:
    with store.run_lock("sync"):
        assert mode_of(Path(f"{db_path}.lock")) == 0o600


def test_repr_names_the_path_only(store: StateStore, db_path: Path) -> None:
    store.put_credential("braze_api_key", b"\x01ciphertext")
    assert repr(store) == f"StateStore({str(db_path)!r}, connector_id='braze', readwrite)"


def test_closed_store_raises_state_error(db_path: Path) -> None:
    store = StateStore(db_path)
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(StateError, match="closed"):
        store.get_value("anything")


# ---------------------------------------------------------------- migrations
def test_fresh_file_is_migrated_once_and_reopening_keeps_data(db_path: Path) -> None:
    with StateStore(db_path) as store:
        store.set_cursor("users", "braze_to_brevo", {"since": "2024-01-01"})
    with StateStore(db_path) as store:
        assert store.get_cursor("users", "braze_to_brevo") == {"since": "2024-01-01"}
    with sqlite3.connect(db_path) as raw:
        versions = [row[0] for row in raw.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        assert schema_version(raw) == SCHEMA_VERSION == len(MIGRATIONS)


def test_migrate_applies_pending_scripts_in_order(tmp_path: Path) -> None:
    first = "CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1);"
    second = "CREATE TABLE b (y TEXT); INSERT INTO b SELECT 'from a: ' || x FROM a;"
    raw = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    try:
        assert migrate(raw, [first], path="m.db", now="t1") == 1
        assert migrate(raw, [first, second], path="m.db", now="t2") == 2
        assert migrate(raw, [first, second], path="m.db", now="t3") == 2  # nothing left to do
        assert raw.execute("SELECT y FROM b").fetchall() == [("from a: 1",)]
        assert raw.execute("SELECT version, applied_at FROM schema_version ORDER BY version").fetchall() == [
            (1, "t1"),
            (2, "t2"),
        ]
    finally:
        raw.close()


def test_a_failing_migration_rolls_back_every_step_of_it(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            migrate(
                raw, ["CREATE TABLE a (x INTEGER);", "INSERT INTO missing VALUES (1);"], path="m.db", now="t"
            )
        assert raw.execute("SELECT name FROM sqlite_master").fetchall() == []
        assert schema_version(raw) == 0
    finally:
        raw.close()


def test_split_statements_keeps_trigger_bodies_and_quoted_semicolons_whole() -> None:
    script = """
    CREATE TABLE t (v TEXT);
    CREATE TRIGGER t_log AFTER INSERT ON t BEGIN INSERT INTO t VALUES ('a;b'); END;
    INSERT INTO t VALUES ('c;d');
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    assert "'c;d'" in statements[2]


def test_state_file_from_a_newer_version_is_refused(db_path: Path) -> None:
    StateStore(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, 'later')", (SCHEMA_VERSION + 1,)
        )
    with pytest.raises(StateError) as caught:
        StateStore(db_path)
    message = str(caught.value)
    assert "newer tajo-braze" in message
    assert str(db_path) in message
    assert f"schema version {SCHEMA_VERSION + 1}" in message


def test_sqlite_file_of_another_application_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StateError, match="not a tajo-braze state file"):
        StateStore(db_path)
    with sqlite3.connect(db_path) as raw:  # and it was left as it was
        assert raw.execute("SELECT name FROM sqlite_master").fetchall() == [("invoices",)]


def test_state_file_of_another_connector_instance_is_refused(db_path: Path) -> None:
    StateStore(db_path, connector_id="braze").close()
    with pytest.raises(StateError, match="belongs to connector 'braze'"):
        StateStore(db_path, connector_id="braze-eu")


def test_file_that_is_not_sqlite_raises_state_error_with_a_fix(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a database, just some text " * 200)
    with pytest.raises(StateError) as caught:
        StateStore(db_path)
    assert str(db_path) in caught.value.user_message
    assert "delete it to start over" in caught.value.fix
    assert not isinstance(caught.value, sqlite3.Error)


def test_damaged_pages_inside_a_real_state_file_raise_state_error(db_path: Path) -> None:
    with StateStore(db_path) as store:
        store.put_fingerprints("users:braze_to_brevo", ((f"ext:{i:06d}", f"{i:032x}") for i in range(20_000)))
    size = db_path.stat().st_size
    with db_path.open("r+b") as handle:  # the schema pages survive; half of the fingerprint pages do not
        handle.seek(size // 2)
        handle.write(b"\xa5" * (size - size // 2))
    with StateStore(db_path) as store, pytest.raises(StateError) as caught:
        store.count_fingerprints("users:braze_to_brevo")
    assert (
        caught.value.user_message == f"The state file {db_path} is damaged or is not a tajo-braze state file"
    )
    assert "delete it to start over" in caught.value.fix
    assert "counting fingerprints" in caught.value.detail


def test_readonly_store_reads_but_refuses_writes(db_path: Path) -> None:
    with pytest.raises(StateError, match="does not exist yet"):
        StateStore(db_path, readonly=True)
    with StateStore(db_path) as store:
        store.set_value("list_id", 7)
    with StateStore(db_path, readonly=True) as readonly:
        assert readonly.get_value("list_id") == 7
        with pytest.raises(StateError, match="read-only"):
            readonly.set_value("list_id", 8)
    with StateStore(db_path) as store:
        assert store.get_value("list_id") == 7


def test_backup_to_writes_an_independent_private_copy(store: StateStore, tmp_path: Path) -> None:
    store.put_fingerprints("ns", [("k1", "f1")])
    copy_path = tmp_path / "dry" / "copy.db"
    store.backup_to(copy_path)
    assert mode_of(copy_path) == 0o600
    with StateStore(copy_path) as copy:
        assert copy.get_fingerprints("ns", ["k1"]) == {"k1": "f1"}
        copy.put_fingerprints("ns", [("k1", "changed"), ("k2", "f2")])
    assert store.get_fingerprints("ns", ["k1", "k2"]) == {"k1": "f1"}


# ---------------------------------------------------------------- the run lock
LOCK_HOLDER = """
import sys
from tajo_braze.state import StateStore
store = StateStore(sys.argv[1])
with store.run_lock("sync"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_second_run_lock_in_the_same_process_is_refused(store: StateStore) -> None:
    with store.run_lock("sync"):
        with pytest.raises(RunLocked) as caught, store.run_lock("sync"):
            pass
        assert f"pid {os.getpid()}, sync" in caught.value.user_message
    with store.run_lock("sync"):  # released on exit
        pass


def test_run_lock_held_by_another_process_is_refused_then_released_when_it_is_killed(
    store: StateStore, db_path: Path
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked) as caught, store.run_lock("sync"):
            pass
        message = str(caught.value)
        assert f"Another tajo-braze run is already using {db_path}" in message
        assert f"pid {holder.pid}" in message
        assert "started 20" in message
        assert "released automatically" in message
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
    with store.run_lock("sync"):
        assert store.list_runs() == []


def test_taking_the_lock_closes_runs_abandoned_by_dead_processes(store: StateStore, db_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(finished.stdout)
    abandoned = store.start_run("sync", {})
    alive = store.start_run("sync", {})
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE runs SET pid = ? WHERE id = ?", (dead_pid, abandoned))
    with store.run_lock("sync"):
        runs = {run.id: run for run in store.list_runs()}
    assert runs[abandoned].status == "interrupted"
    assert runs[abandoned].finished_at is not None
    assert runs[alive].status == "running"


# ---------------------------------------------------------------- cursors
def test_cursors_are_kept_per_resource_and_direction(store: StateStore) -> None:
    assert store.get_cursor("users", "braze_to_brevo") is None
    store.set_cursor("users", "braze_to_brevo", {"since": "2024-01-01", "page": None})
    store.set_cursor("users", "brevo_to_braze", {"modifiedSince": "2024-02-01"})
    store.set_cursor("users", "braze_to_brevo", {"since": "2024-03-01"})
    assert store.get_cursor("users", "braze_to_brevo") == {"since": "2024-03-01"}
    assert store.cursors() == {
        "users/braze_to_brevo": {"since": "2024-03-01"},
        "users/brevo_to_braze": {"modifiedSince": "2024-02-01"},
    }
    store.delete_cursor("users", "braze_to_brevo")
    assert list(store.cursors()) == ["users/brevo_to_braze"]


# ---------------------------------------------------------------- fingerprints
def test_fingerprints_upsert_replaces_and_namespaces_are_separate(store: StateStore) -> None:
    assert store.put_fingerprints("users:braze_to_brevo", [("ext:1", "aa"), ("ext:2", "bb")]) == 2
    assert store.put_fingerprints("users:braze_to_brevo", [("ext:2", "cc"), ("ext:3", "dd")]) == 2
    store.put_fingerprints("users:brevo_to_braze", [("ext:1", "zz")])
    found = store.get_fingerprints("users:braze_to_brevo", ["ext:1", "ext:2", "ext:3", "ext:missing"])
    assert found == {"ext:1": "aa", "ext:2": "cc", "ext:3": "dd"}
    assert store.get_fingerprints("users:brevo_to_braze", ["ext:1", "ext:2"]) == {"ext:1": "zz"}
    assert store.get_fingerprints("never:used", ["ext:1"]) == {}
    assert store.count_fingerprints("users:braze_to_brevo") == 3
    assert store.count_fingerprints("never:used") == 0


def test_fingerprint_lookups_span_many_in_list_chunks(store: StateStore) -> None:
    items = [(f"ext:{i:05d}", f"{i * 7:032x}") for i in range(2_345)]
    store.put_fingerprints("ns", iter(items))
    wanted = [key for key, _ in items[::2]] + ["absent-1", "absent-2"]
    found = store.get_fingerprints("ns", wanted)
    assert found == dict(items[::2])


def test_delete_fingerprints_counts_rows_removed(store: StateStore) -> None:
    store.put_fingerprints("ns", [("a", "1"), ("b", "2"), ("c", "3")])
    assert store.delete_fingerprints("ns", ["a", "c", "not-there"]) == 2
    assert store.delete_fingerprints("other", ["b"]) == 0
    assert store.get_fingerprints("ns", ["a", "b", "c"]) == {"b": "2"}


def test_iter_fingerprint_keys_streams_every_page_in_key_order(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "PAGE_SIZE", 4)
    keys = [f"k{i:02d}" for i in range(11)] + [""]  # the empty key is a key too
    store.put_fingerprints("ns", [(key, "f") for key in reversed(keys)])
    store.put_fingerprints("other", [("k00", "f")])
    assert list(store.iter_fingerprint_keys("ns")) == sorted(keys)
    assert list(store.iter_fingerprint_keys("never:used")) == []


def test_iter_fingerprints_streams_keys_with_their_fingerprints(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "PAGE_SIZE", 4)
    items = [(f"k{i:02d}", f"f{i}") for i in range(9)]
    store.put_fingerprints("ns", reversed(items))
    store.put_fingerprints("other", [("k00", "elsewhere")])
    assert list(store.iter_fingerprints("ns")) == items
    assert list(store.iter_fingerprints("never:used")) == []


def test_deleting_while_iterating_sees_every_key_once(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "PAGE_SIZE", 3)
    store.put_fingerprints("ns", [(f"k{i:02d}", "f") for i in range(10)])
    seen = []
    for key in store.iter_fingerprint_keys("ns"):
        seen.append(key)
        store.delete_fingerprints("ns", [key])
    assert seen == [f"k{i:02d}" for i in range(10)]
    assert store.count_fingerprints("ns") == 0


# ---------------------------------------------------------------- field values and members
def test_field_values_replace_the_whole_dict_per_key(store: StateStore) -> None:
    store.put_field_values("fields:brevo_to_braze", [("ext:1", {"first_name": "Ada", "city": "Paris"})])
    store.put_field_values("fields:brevo_to_braze", [("ext:1", {"first_name": "Ada L."}), ("ext:2", {})])
    assert store.get_field_values("fields:brevo_to_braze", ["ext:1", "ext:2", "ext:3"]) == {
        "ext:1": {"first_name": "Ada L."},
        "ext:2": {},
    }


def test_members_add_and_remove_count_real_changes(store: StateStore) -> None:
    assert store.add_members("segment:s1", ["b", "a", "b"]) == 2
    assert store.add_members("segment:s1", ["a", "c"]) == 1
    assert store.add_members("segment:s2", ["a"]) == 1
    assert list(store.iter_members("segment:s1")) == ["a", "b", "c"]
    assert store.remove_members("segment:s1", ["a", "zzz"]) == 1
    assert store.count_members("segment:s1") == 2
    assert store.count_members("segment:s2") == 1


# ---------------------------------------------------------------- setup records
def test_values_round_trip_as_json_and_can_be_deleted(store: StateStore) -> None:
    assert store.get_value("brevo:folder_id") is None
    store.set_value("brevo:folder_id", 12)
    store.set_value("export_job", {"segment": "s1", "url": None, "parts": [1, 2]})
    store.set_value("brevo:folder_id", 13)
    assert store.get_value("brevo:folder_id") == 13
    assert store.get_value("export_job") == {"segment": "s1", "url": None, "parts": [1, 2]}
    store.delete_value("export_job")
    assert store.get_value("export_job") is None


def test_values_keep_what_json_can_say_exactly(store: StateStore) -> None:
    value = {
        "huge": 10**30,  # beyond 64 bits
        "nan": math.nan,
        "inf": -math.inf,
        "none": None,
        "text": "Zoë +news@x",
        "nested": {"b": [1, 2.5, True], "a": {}},
    }
    store.set_value("odd", value)
    back = store.get_value("odd")
    assert back["huge"] == 10**30 and isinstance(back["huge"], int)
    assert math.isnan(back["nan"]) and back["inf"] == -math.inf
    assert {k: v for k, v in back.items() if k not in ("nan", "inf")} == {
        k: v for k, v in value.items() if k not in ("nan", "inf")
    }


def test_values_that_are_not_json_are_a_usage_error(store: StateStore) -> None:
    with pytest.raises(UsageError, match="cannot be saved as JSON"):
        store.set_value("when", datetime.now(UTC))


# ---------------------------------------------------------------- runs
def test_runs_are_started_finished_and_queried(store: StateStore) -> None:
    first = store.start_run("sync", {"type": "full"})
    second = store.start_run("export_segment", {"segment_id": "s1"})
    assert store.last_run(kind="sync") is not None
    running = store.last_run(kind="sync")
    assert running is not None and running.status == "running" and running.finished_at is None
    store.finish_run(first, "partial", {"users": {"failed": 2}})
    store.finish_run(second, "ok", {"count": 10})
    third = store.start_run("sync", {"type": "incremental"})
    store.finish_run(third, "ok", {})

    last_sync = store.last_run(kind="sync")
    assert last_sync is not None and last_sync.id == third and last_sync.params == {"type": "incremental"}
    partial = store.last_run(status="partial")
    assert partial is not None and partial.id == first and partial.summary == {"users": {"failed": 2}}
    assert partial.finished_at is not None and partial.finished_at > partial.started_at
    assert store.last_run(kind="sync", status="failed") is None
    assert [run.id for run in store.list_runs()] == [third, second, first]
    assert [run.id for run in store.list_runs(limit=2)] == [third, second]


def test_finish_run_checks_status_and_run_id(store: StateStore) -> None:
    run_id = store.start_run("sync", {})
    with pytest.raises(UsageError, match="Unknown run status"):
        store.finish_run(run_id, "done", {})
    with pytest.raises(StateError, match="not recorded"):
        store.finish_run(run_id + 100, "ok", {})


# ---------------------------------------------------------------- dead letters
def test_dead_letter_for_the_same_key_bumps_attempts_and_replaces_reason(store: StateStore) -> None:
    run_id = store.start_run("sync", {})
    store.add_dead_letter("users", "ext:1", "invalid email", {"email": "nope"}, run_id=run_id)
    store.add_dead_letter("users", "ext:1", "invalid phone", {"phone": "123"})
    [letter] = store.list_dead_letters()
    assert letter.attempts == 2
    assert letter.reason == "invalid phone"
    assert letter.record == {"phone": "123"}
    assert letter.last_seen > letter.first_seen
    assert letter.run_id == run_id  # a retry outside a run keeps the run it came from


def test_dead_letters_bulk_list_iterate_resolve_and_count(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "PAGE_SIZE", 2)
    items = [("users", f"ext:{i}", "rejected", {"i": i}) for i in range(5)] + [
        ("events", "e1", "too big", {})
    ]
    assert store.add_dead_letters(items) == 6
    assert store.count_dead_letters() == 6
    assert store.count_dead_letters("users") == 5
    assert [d.key for d in store.list_dead_letters("users", limit=2, offset=1)] == ["ext:1", "ext:2"]
    assert [d.key for d in store.iter_dead_letters("users")] == [f"ext:{i}" for i in range(5)]
    assert [d.key for d in store.iter_dead_letters()][-1] == "e1"
    assert store.resolve_dead_letters("users", ["ext:0", "ext:4", "ext:99"]) == 2
    assert store.count_dead_letters("users") == 3
    assert store.count_dead_letters("events") == 1


# ---------------------------------------------------------------- events
def test_record_event_dedupes_by_source_and_event_id(store: StateStore) -> None:
    assert store.record_event("brevo", "evt-1", {"event": "unsubscribed", "email": "a@x.io"}) is True
    assert store.record_event("brevo", "evt-1", {"event": "something else"}) is False
    assert store.record_event("braze", "evt-1", {"event": "click"}) is True
    pending = store.pending_events("brevo")
    assert [(event.event_id, event.payload) for event in pending] == [
        ("evt-1", {"event": "unsubscribed", "email": "a@x.io"})
    ]
    assert store.count_events() == 2


def test_marking_events_moves_them_out_of_pending_and_failures_are_retried(store: StateStore) -> None:
    for event_id in ("a", "b", "c"):
        store.record_event("brevo", event_id, {})
    a, b, c = (event.id for event in store.pending_events())
    store.mark_events([a], "forwarded")
    store.mark_events([b], "failed")
    store.mark_events([b], "failed")
    store.mark_events([c], "ignored")
    [retry] = store.pending_events()
    assert (retry.id, retry.status, retry.attempts) == (b, "failed", 2)
    assert store.count_events("forwarded") == 1
    assert store.count_events("ignored") == 1
    assert store.count_events("pending") == 0
    assert len(store.pending_events(limit=0)) == 0
    with pytest.raises(UsageError, match="Unknown event status"):
        store.mark_events([a], "done")


# ---------------------------------------------------------------- purchases
def test_a_purchase_is_claimed_once_and_unsent_claims_are_reported(store: StateStore) -> None:
    assert store.claim_purchase("p1") is True
    assert store.claim_purchase("p2") is True
    assert store.claim_purchase("p1") is False
    assert store.unsent_purchases() == ["p1", "p2"]
    store.mark_purchases_sent(["p1"])
    assert store.unsent_purchases() == ["p2"]
    assert store.claim_purchase("p1") is False
    store.mark_purchases_sent(["p3"])  # sent without a claim is still never sent again
    assert store.claim_purchase("p3") is False


# ---------------------------------------------------------------- analytics
def test_reupserting_a_day_replaces_the_value_instead_of_adding(store: StateStore) -> None:
    assert store.upsert_metrics([metric("2024-05-01", 10), metric("2024-05-02", 4)]) == 2
    store.upsert_metrics([metric("2024-05-01", 12)])
    rows = store.query_metrics(kind="campaign", object_id="c1")
    assert [(row.day, row.value) for row in rows] == [("2024-05-01", 12.0), ("2024-05-02", 4.0)]


def test_query_metrics_filters_by_kind_object_and_day(store: StateStore) -> None:
    store.upsert_metrics(
        [
            metric("2024-05-01", 1),
            metric("2024-05-03", 2),
            metric("2024-05-03", 3, object_id="c2"),
            metric("2024-05-03", 4, kind="canvas", object_id="cv1"),
            MetricRow("canvas", "cv1", "2024-05-03", "email", "v1", "step-2", "entries", 5),
        ]
    )
    assert [row.value for row in store.query_metrics(kind="campaign", since="2024-05-02")] == [2.0, 3.0]
    assert [row.value for row in store.query_metrics(object_id="cv1")] == [4.0, 5.0]
    assert len(store.query_metrics()) == 5


def test_metrics_with_an_unknown_kind_or_a_bad_day_are_refused(store: StateStore) -> None:
    with pytest.raises(UsageError, match="metric kind"):
        store.upsert_metrics([metric("2024-05-01", 1, kind="newsletter")])
    with pytest.raises(UsageError, match="YYYY-MM-DD"):
        store.upsert_metrics([metric("01/05/2024", 1)])
    assert store.query_metrics() == []


def test_objects_are_replaced_and_listed_per_kind(store: StateStore) -> None:
    store.upsert_object("campaign", "c1", "Spring sale", {"tags": ["promo"]})
    store.upsert_object("campaign", "c1", "Spring sale (final)", {"tags": []})
    store.upsert_object("canvas", "cv1", "Onboarding", {})
    assert store.objects("campaign") == {"c1": ("Spring sale (final)", {"tags": []})}
    assert store.objects("segment") == {}


# ---------------------------------------------------------------- credentials
def test_credentials_hold_ciphertext_bytes(store: StateStore) -> None:
    assert store.get_credential("braze_api_key") is None
    store.put_credential("braze_api_key", b"\x01\x00first")
    store.put_credential("braze_api_key", b"\x01\x00second")
    store.put_credential("brevo_api_key", b"\x01\x00other")
    assert store.get_credential("braze_api_key") == b"\x01\x00second"
    assert store.credential_names() == ["braze_api_key", "brevo_api_key"]


# ---------------------------------------------------------------- transactions and threads
class Boom(Exception):
    pass


def test_a_transaction_commits_fingerprints_and_cursor_together_or_not_at_all(store: StateStore) -> None:
    with pytest.raises(Boom), store.transaction():
        store.put_fingerprints("users:braze_to_brevo", [("ext:1", "aa")])
        store.set_cursor("users", "braze_to_brevo", {"since": "2024-05-01"})
        raise Boom
    assert store.get_fingerprints("users:braze_to_brevo", ["ext:1"]) == {}
    assert store.get_cursor("users", "braze_to_brevo") is None
    with store.transaction():
        store.put_fingerprints("users:braze_to_brevo", [("ext:1", "aa")])
        store.set_cursor("users", "braze_to_brevo", {"since": "2024-05-01"})
    assert store.get_cursor("users", "braze_to_brevo") == {"since": "2024-05-01"}


def test_nested_transactions_roll_back_only_the_inner_block(store: StateStore) -> None:
    with store.transaction():
        store.set_value("outer", 1)
        with pytest.raises(Boom), store.transaction():
            store.set_value("inner", 2)
            with store.transaction():
                store.set_value("innermost", 3)
            raise Boom
        store.set_value("after", 4)
    assert [store.get_value(k) for k in ("outer", "inner", "innermost", "after")] == [1, None, None, 4]


def test_a_write_that_fails_inside_a_transaction_fails_all_of_it(store: StateStore) -> None:
    store.set_value("kept", "before")

    def rows() -> Iterator[tuple[str, str]]:
        yield ("ext:1", "aa")
        raise Boom

    with pytest.raises(StateError, match="none of its writes were saved"), store.transaction():
        store.set_value("kept", "changed")
        with pytest.raises(Boom):
            store.put_fingerprints("users:braze_to_brevo", rows())
        store.set_value("later", 1)  # the caught failure must not let this be committed
    assert store.get_value("kept") == "before"
    assert store.get_value("later") is None
    assert store.get_fingerprints("users:braze_to_brevo", ["ext:1"]) == {}
    with store.transaction():  # the store is usable again
        store.put_fingerprints("users:braze_to_brevo", [("ext:1", "bb")])
    assert store.get_fingerprints("users:braze_to_brevo", ["ext:1"]) == {"ext:1": "bb"}


def test_a_failing_write_that_ends_its_transaction_rolls_it_back_with_its_own_error(store: StateStore) -> None:
    with pytest.raises(StateError, match="saving fingerprints|fingerprint") as caught, store.transaction():
        store.set_value("kept", "changed")
        store.put_fingerprints("users:braze_to_brevo", [("ext:1", None)])  # type: ignore[list-item]
    assert "none of its writes were saved" not in caught.value.user_message
    assert store.get_value("kept") is None


def test_writes_inside_a_transaction_open_no_savepoint_of_their_own(store: StateStore) -> None:
    # A savepoint makes SQLite keep the original of each page written under it in memory: tens of
    # megabytes for one import's fingerprints and claims. Only explicit nesting may open one.
    statements: list[str] = []
    store._require_open().set_trace_callback(statements.append)
    with store.transaction():
        store.put_fingerprints("users:braze_to_brevo", [(f"ext:{i}", "aa") for i in range(100)])
        store.put_field_values("fields:brevo_to_braze", [("contact:1", {"a": 1})])
        store.set_value("checkpoint", 1)
        with store.transaction():
            store.set_value("inner", 2)
    store._require_open().set_trace_callback(None)
    assert [s for s in statements if "SAVEPOINT" in s.upper()] == ["SAVEPOINT nested_1"]
    assert store.get_value("inner") == 2


def test_namespace_created_in_a_rolled_back_transaction_is_forgotten(store: StateStore) -> None:
    with pytest.raises(Boom), store.transaction():
        store.put_fingerprints("ns-a", [("k", "from-a")])
        raise Boom
    store.put_fingerprints("ns-b", [("k", "from-b")])
    store.put_fingerprints("ns-a", [("k", "from-a")])
    assert store.get_fingerprints("ns-a", ["k"]) == {"k": "from-a"}
    assert store.get_fingerprints("ns-b", ["k"]) == {"k": "from-b"}


def test_a_worker_thread_and_the_main_thread_share_one_store(store: StateStore) -> None:
    recorded: list[bool] = []
    errors: list[BaseException] = []

    def receive() -> None:
        try:
            recorded.extend(store.record_event("brevo", f"evt-{i}", {"i": i}) for i in range(200))
        except BaseException as exc:  # surfaced below: a failure in the thread must fail the test
            errors.append(exc)

    worker = threading.Thread(target=receive)
    worker.start()
    for batch in range(20):
        with store.transaction():
            store.put_fingerprints("ns", [(f"k{batch}-{i}", "f") for i in range(50)])
            store.set_cursor("users", "braze_to_brevo", {"batch": batch})
    worker.join(timeout=30)
    assert errors == []
    assert recorded == [True] * 200
    assert store.count_events() == 200
    assert store.count_fingerprints("ns") == 1_000


def test_two_stores_on_one_file_see_each_others_writes(db_path: Path) -> None:
    with StateStore(db_path) as sync_side, StateStore(db_path) as webhook_side:
        assert webhook_side.record_event("braze", "e1", {}) is True
        assert sync_side.record_event("braze", "e1", {}) is False
        sync_side.put_fingerprints("ns", [("k", "f")])
        assert webhook_side.get_fingerprints("ns", ["k"]) == {"k": "f"}


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [1, 2.5, None, True]},
        {"é": "ü 🙂", "nested": {"z": 1e16, "y": float("nan"), "x": float("-inf")}},
        {3: "integer keys", 1: "become text"},
        10**30,
        "plain text",
        [],
    ],
)
def test_values_are_stored_as_the_standard_json_module_writes_them(value: object) -> None:
    # States written before the shared encoder hold this text: it must not change.
    import json

    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert state_module._dumps(value) == expected
