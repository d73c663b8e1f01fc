from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tajo_braze.connector import (
    RECENT_REQUESTS,
    _idle_since_last_run,
    _record_recent_requests,
    _resume_limiters,
)
from tajo_braze.ratelimit import Bucket, RateLimiter
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


def limiter_at(now: list[float]) -> RateLimiter:
    return RateLimiter(
        [Bucket("per_second", 2, 1.0)], clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s),
        cautious_start_s=1.0,
    )  # fmt: skip


def busy_previous_run(state: StateStore) -> int:
    """A run whose two last requests on the short bucket were sent just before it finished."""
    before = [10.0]
    previous = limiter_at(before)
    previous.acquire(["per_second"])
    previous.acquire(["per_second"])
    run_id = state.start_run("sync", {})
    state.finish_run(run_id, "ok", {})
    _record_recent_requests(state, run_id, {"brevo": previous})
    return run_id


def test_the_next_run_starts_from_the_requests_the_last_one_recorded(tmp_path: Path) -> None:
    with store(tmp_path, datetime.now(UTC) - timedelta(minutes=5)) as state:  # it "ended" 5 minutes ago
        busy_previous_run(state)
        now = [100.0]
        limiter = limiter_at(now)
        _resume_limiters(state, {"brevo": limiter})
        # The record is what counts (both requests are still in the window), not the run's end time.
        assert limiter.acquire(["per_second"]) > 0.9


def test_without_a_record_of_the_last_run_the_time_since_it_ended_decides(tmp_path: Path) -> None:
    with store(tmp_path, datetime.now(UTC) - timedelta(minutes=5)) as state:
        busy_previous_run(state)
        state.finish_run(state.start_run("export_segment", {}), "ok", {})  # a later run, which recorded nothing
        now = [100.0]
        limiter = limiter_at(now)
        _resume_limiters(state, {"brevo": limiter})
        assert limiter.acquire(["per_second"]) == 0.0  # idle for 5 minutes


def test_after_a_killed_run_the_limiters_start_cautiously(tmp_path: Path) -> None:
    with store(tmp_path, datetime.now(UTC) - timedelta(minutes=5)) as state:
        state.set_value(RECENT_REQUESTS, {"run_id": 99, "at": 0.0, "requests": {"brevo": {"per_second": []}}})
        state.start_run("sync", {})  # never finished
        now = [100.0]
        limiter = limiter_at(now)
        _resume_limiters(state, {"brevo": limiter})
        assert limiter.acquire(["per_second"]) > 0.9
