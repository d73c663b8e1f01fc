from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tajo_braze.connector import _idle_since_last_run
from tajo_braze.state import StateStore


def store(path: Path, moment: datetime) -> StateStore:
    return StateStore(path / "state.db", clock=lambda: moment)


def test_only_a_run_that_finished_cleanly_says_how_long_the_buckets_were_idle(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with store(tmp_path, now - timedelta(minutes=5)) as state:
        assert _idle_since_last_run(state) is None  # no run recorded: an install may have just called
        killed = state.start_run("sync", {})
        assert _idle_since_last_run(state) is None  # killed or still running: its last call is unknown
        state.finish_run(killed, "ok", {})
        idle = _idle_since_last_run(state)
        assert idle is not None and 299 < idle < 301
    with store(tmp_path, now + timedelta(seconds=5)) as state:
        state.finish_run(state.start_run("sync", {}), "ok", {})
        assert _idle_since_last_run(state) is None  # "finished" later than now: the margin never goes negative
