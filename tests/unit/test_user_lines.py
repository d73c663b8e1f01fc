"""The per-line work of the users sync: outcomes in order, the unchanged check, worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import orjson
import pytest

from tajo_braze.mapping import load_mapping
from tajo_braze.sync.line_workers import MappingWorkerFailed, WorkerPool
from tajo_braze.sync.user_lines import (
    MAPPED,
    REJECTED,
    SKIPPED,
    UNCHANGED,
    LineReader,
    LineRules,
)
from tajo_braze.sync.users import PARALLEL_MIN_BYTES, auto_map_workers

ROOT = Path(__file__).resolve().parents[2]
MAPPING = load_mapping(ROOT / "mappings" / "default.yaml", base_dir=ROOT)


def rules(**options: object) -> LineRules:
    return LineRules(rules=MAPPING.rules, mapping_tag=b"tag", fingerprint_namespace="fp", **options)  # type: ignore[arg-type]


def line(**data: object) -> bytes:
    return orjson.dumps(data) + b"\n"


GOOD = line(external_id="u1", braze_id="b1", email="Ann@Example.com", first_name="Ann", created_at="2026-01-02")


def test_every_line_gets_one_outcome_in_order_with_its_reason() -> None:
    reader = LineReader(rules(), MAPPING, None)
    raws = [GOOD, b"{not json\n", b"[1, 2]\n", b"", line(external_id="u2", email="not an email")]
    outcomes = reader.read(raws)
    assert [(o[0], o[1]) for o in outcomes] == [(MAPPED, 0), (REJECTED, 1), (REJECTED, 2), (REJECTED, 3), (REJECTED, 4)]
    assert "not valid JSON" in outcomes[1][3]
    assert outcomes[1][5]["raw"].startswith("{not json")
    assert "not an object" in outcomes[2][3]
    assert outcomes[3][3] == "export line is longer than the line limit"
    assert outcomes[1][2] is None  # the caller names such lines by their position
    assert outcomes[4][2] == "ext:u2" and "invalid email" in outcomes[4][3] and outcomes[4][4] == "email"


def test_a_mapped_line_carries_the_serialised_row_and_the_identity() -> None:
    (outcome,) = LineReader(rules(), MAPPING, None).read([GOOD])
    _, _, source, external_id, braze_id, raw_email, _, key, email, ext_id, _, _, digest, row = outcome
    assert (external_id, braze_id, raw_email, key, email, ext_id) == ("u1", "b1", "Ann@Example.com", "ext:u1",
                                                                       "Ann@example.com", "u1")
    assert json.loads(row)["attributes"]["FIRSTNAME"] == "Ann"
    assert len(source) == 20 and len(digest) == 20


def test_a_line_identical_to_the_one_last_written_is_unchanged_without_mapping() -> None:
    (first,) = LineReader(rules(), MAPPING, None).read([GOOD])
    source = first[2]
    asked: list[list[str]] = []

    def fingerprints(keys: list[str]) -> dict[str, str]:
        asked.append(keys)
        return {"ext:u1": f"digest\t0\tann@example.com\t\t{source}"}

    changed = line(external_id="u1", braze_id="b1", email="ann@example.com", first_name="Anne")
    outcomes = LineReader(rules(), MAPPING, fingerprints).read([GOOD, changed])
    assert [o[0] for o in outcomes] == [UNCHANGED, MAPPED]
    assert asked == [["ext:u1", "ext:u1"]]
    # A full run (check_unchanged off) maps everything and asks nothing.
    outcomes = LineReader(rules(check_unchanged=False), MAPPING, fingerprints).read([GOOD])
    assert [o[0] for o in outcomes] == [MAPPED] and len(asked) == 1


def test_users_not_active_since_the_date_are_skipped() -> None:
    old = line(external_id="u3", email="old@example.com", created_at="2020-05-05")
    outcomes = LineReader(rules(since=date(2026, 1, 1)), MAPPING, None).read([GOOD, old])
    assert [o[0] for o in outcomes] == [MAPPED, SKIPPED]


def test_worker_processes_answer_chunks_in_order_like_the_local_reader() -> None:
    chunks = [[line(external_id=f"u{c}-{i}", email=f"p{c}.{i}@example.com") for i in range(50)] for c in range(7)]
    local = LineReader(rules(check_unchanged=False), MAPPING, None)
    with WorkerPool(rules(check_unchanged=False), 2) as pool:
        answered = list(pool.read(iter(chunks), ahead=3))
    assert answered == [local.read(chunk) for chunk in chunks]


CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from tajo_braze.mapping import load_mapping
    from tajo_braze.sync.line_workers import WorkerPool
    from tajo_braze.sync.user_lines import LineRules
    root = Path(sys.argv[1])
    mapping = load_mapping(root / "mappings" / "default.yaml", base_dir=root)
    pool = WorkerPool(LineRules(rules=mapping.rules, mapping_tag=b"t", fingerprint_namespace="fp",
                                check_unchanged=False), 2)
    list(pool.read(iter([[b'{"external_id": "a"}'], [b'{"external_id": "b"}']])))
    print(json.dumps(pool.pids), flush=True)
    sys.stdin.read()
    """
)


def test_workers_leave_when_the_run_s_process_is_killed() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ROOT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    workers = json.loads(child.stdout.readline())
    assert len(workers) == 2
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A zombie is gone for our purpose (it is waiting for its new parent to reap it).
        status = Path(f"/proc/{pid}/stat")
        return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")

    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling for an exit, bounded by the deadline
    assert not any(alive(pid) for pid in workers)


def test_a_worker_that_cannot_start_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(MappingWorkerFailed, match="could not start") as caught:
        WorkerPool(rules(check_unchanged=False), 2)
    assert "map_workers: 0" in caught.value.fix


@pytest.mark.parametrize("executable", ["", "/nonexistent/python3"])
def test_a_missing_python_executable_is_the_same_clear_error(
    monkeypatch: pytest.MonkeyPatch, executable: str
) -> None:
    monkeypatch.setattr(sys, "executable", executable)
    with pytest.raises(MappingWorkerFailed, match="could not start"):
        WorkerPool(rules(check_unchanged=False), 1)


def test_a_worker_killed_mid_run_stops_the_read_with_the_cause() -> None:
    chunks = [[line(external_id=f"k{c}-{i}") for i in range(20)] for c in range(6)]
    with WorkerPool(rules(check_unchanged=False), 2) as pool:
        answers = pool.read(iter(chunks), ahead=1)
        assert len(next(answers)) == 20
        os.kill(pool.pids[1], signal.SIGKILL)
        with pytest.raises(MappingWorkerFailed, match="stopped unexpectedly"):
            list(answers)


def test_large_exports_get_a_mapping_worker_per_core_the_run_leaves_free() -> None:
    large, small = PARALLEL_MIN_BYTES, PARALLEL_MIN_BYTES - 1
    assert [auto_map_workers(large, cpus) for cpus in (1, 2, 3, 4, 8, 64)] == [0, 1, 2, 3, 4, 4]
    assert auto_map_workers(small, 8) == 0  # starting processes costs more than a small export
