from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tajo_braze.connector import _idle_since_last_run
from tajo_braze.state import StateStore


def store(path: Path, moment: datetime) -> StateStore:
    return StateStore(path / "state.db", clock=lambda: moment)


def test_only_a_run_that_finished_cleanly_a_while_ago_lets_the_limiters_start_at_once(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with store(tmp_path, now - timedelta(minutes=5)) as state:
        assert not _idle_since_last_run(state)  # no run recorded: an install may have just called
        killed = state.start_run("sync", {})
        assert not _idle_since_last_run(state)  # killed or still running: its last call is unknown
        state.finish_run(killed, "ok", {})
        assert _idle_since_last_run(state)
    with store(tmp_path, now) as state:
        state.finish_run(state.start_run("sync", {}), "ok", {})
        assert not _idle_since_last_run(state)  # finished a moment ago: its calls are in the window
