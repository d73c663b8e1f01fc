"""RateLimiter: sliding-window guarantees, learning from headers, 429 blocks — on a fake clock."""

from __future__ import annotations

import random
import threading

import pytest

from tajo_braze.ratelimit import Bucket, RateLimiter

TOLERANCE = 1e-6


class FakeClock:
    """Time that moves only when someone sleeps; safe to share between threads."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        self.sleep(seconds)


def padded(bucket: Bucket, safety: float = 0.02) -> float:
    return bucket.window_s * (1 + safety)


def assert_at_most_limit_per_window(stamps: list[float], limit: int, window: float) -> None:
    """No `limit + 1` consecutive sends fit inside one window (so no window holds more than limit)."""
    for i in range(len(stamps) - limit):
        assert stamps[i + limit] - stamps[i] >= window - TOLERANCE, (i, stamps[i], stamps[i + limit])


def acquire_stamped(limiter: RateLimiter, clock: FakeClock, names: list[str]) -> float:
    limiter.acquire(names)
    return clock()


def test_never_more_than_limit_in_any_window_over_thousands_of_acquisitions() -> None:
    clock = FakeClock()
    bucket = Bucket("b", 10, 1.0)
    limiter = RateLimiter([bucket], clock=clock, sleep=clock.sleep)

    stamps = [acquire_stamped(limiter, clock, ["b"]) for _ in range(5000)]

    assert_at_most_limit_per_window(stamps, 10, padded(bucket))
    # ...and it is not needlessly slow: 5000 requests take about 500 windows.
    assert stamps[-1] - stamps[0] <= (5000 / 10) * padded(bucket) + 1e-3


def test_requests_drawing_on_several_buckets_respect_each_bucket() -> None:
    clock = FakeClock()
    per_second, per_ten = Bucket("s", 5, 1.0), Bucket("t", 12, 10.0)
    other = Bucket("o", 3, 1.0)
    limiter = RateLimiter([per_second, per_ten, other], clock=clock, sleep=clock.sleep)
    rng = random.Random(7)
    sent: dict[str, list[float]] = {"s": [], "t": [], "o": []}

    for _ in range(2000):
        names = rng.choice([["s", "t"], ["s"], ["o"], ["o", "t"]])
        if rng.random() < 0.3:
            clock.advance(rng.random() * 0.5)
        stamp = acquire_stamped(limiter, clock, names)
        for name in names:
            sent[name].append(stamp)

    assert_at_most_limit_per_window(sent["s"], 5, padded(per_second))
    assert_at_most_limit_per_window(sent["t"], 12, padded(per_ten))
    assert_at_most_limit_per_window(sent["o"], 3, padded(other))


def test_acquire_returns_the_seconds_it_waited() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Bucket("b", 2, 1.0)], clock=clock, sleep=clock.sleep)

    assert limiter.acquire(["b"]) == 0.0
    assert limiter.acquire(["b"]) == 0.0
    waited = limiter.acquire(["b"])

    assert waited == pytest.approx(padded(Bucket("b", 2, 1.0)))
    assert sum(clock.sleeps) == pytest.approx(waited)


def test_threads_contending_for_one_bucket_are_still_paced() -> None:
    clock = FakeClock()
    bucket = Bucket("b", 5, 1.0)
    limiter = RateLimiter([bucket], clock=clock, sleep=clock.sleep)
    done: list[int] = []

    def worker() -> None:
        for _ in range(50):
            limiter.acquire(["b"])
        done.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(done) == 8
    # 400 requests at 5 per window need at least 79 full windows of (fake) time, whatever the
    # interleaving; over-admission under contention would finish sooner.
    assert clock() - 1000.0 >= (400 / 5 - 1) * padded(bucket) - TOLERANCE


def test_a_request_holds_its_slot_from_its_answer_not_its_send() -> None:
    # The server counts a request when it arrives, anywhere between our send and its answer.
    clock = FakeClock()
    limiter = RateLimiter([Bucket("b", 1, 1.0)], clock=clock, sleep=clock.sleep, safety=0.0)
    _, sent_at = limiter.take(["b"])
    clock.advance(0.4)  # a slow answer
    limiter.answered(["b"], sent_at)

    assert limiter.acquire(["b"]) == pytest.approx(1.0)  # one window after the answer, not 0.6
    assert clock() == pytest.approx(1001.4)


def test_a_request_still_unanswered_keeps_its_slot_past_the_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Bucket("b", 1, 1.0)], clock=clock, sleep=clock.sleep, safety=0.0)
    _, slow = limiter.take(["b"])
    clock.advance(3.0)

    assert limiter.wait_estimate(["b"]) > 0
    assert limiter.snapshot()["b"]["remaining"] == 0.0
    limiter.answered(["b"], slow)
    assert limiter.wait_estimate(["b"]) == pytest.approx(1.0)  # its window starts at its answer


def test_answers_of_requests_sent_at_the_same_instant_free_one_slot_each() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Bucket("b", 3, 1.0)], clock=clock, sleep=clock.sleep, safety=0.0)
    sends = [limiter.take(["b"])[1] for _ in range(3)]
    assert len(set(sends)) == 1
    clock.advance(2.0)
    limiter.answered(["b"], sends[0])
    limiter.answered(["b"], sends[1])

    assert limiter.snapshot()["b"]["used_in_window"] == 3.0  # two answered just now, one waiting
    clock.advance(1.0)
    assert limiter.snapshot()["b"]["used_in_window"] == 1.0
    limiter.answered(["b"], sends[2])
    limiter.answered(["b"], sends[2])  # a second report of one answer changes nothing
    assert limiter.snapshot()["b"]["used_in_window"] == 1.0


def test_observe_with_low_remaining_slows_us_down_until_the_server_reset() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Bucket("b", 100, 60.0)], clock=clock, sleep=clock.sleep)
    limiter.acquire(["b"])

    # Other tenants used the shared bucket: the server says 2 remain for the next 30 s.
    limiter.observe("b", limit=100, remaining=2, reset_in_s=30.0)

    assert limiter.acquire(["b"]) == 0.0
    assert limiter.acquire(["b"]) == 0.0
    assert limiter.acquire(["b"]) == pytest.approx(30.0)
    # After the reset our own window governs again: plenty of room.
    assert limiter.acquire(["b"]) == 0.0


def test_observe_believes_a_reset_longer_than_the_bucket_window() -> None:
    # An hourly quota reported on a per-second bucket: 1 call left for 30 minutes.
    clock = FakeClock()
    limiter = RateLimiter([Bucket("s", 10, 1.0)], clock=clock, sleep=clock.sleep)
    limiter.acquire(["s"])
    limiter.observe("s", limit=36000, remaining=1, reset_in_s=1800.0)

    assert limiter.acquire(["s"]) == 0.0
    assert limiter.acquire(["s"]) == pytest.approx(1800.0)


def test_observe_caps_an_implausible_reset() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Bucket("s", 10, 1.0)], clock=clock, sleep=clock.sleep)
    limiter.observe("s", limit=None, remaining=0, reset_in_s=86_400.0)  # skewed clock, say

    assert limiter.wait_estimate(["s"]) == pytest.approx(3660.0)


def test_observe_with_zero_remaining_and_no_reset_waits_one_window() -> None:
    clock = FakeClock()
    bucket = Bucket("b", 100, 10.0)
    limiter = RateLimiter([bucket], clock=clock, sleep=clock.sleep)
    limiter.acquire(["b"])

    limiter.observe("b", limit=None, remaining=0, reset_in_s=None)

    assert limiter.acquire(["b"]) == pytest.approx(padded(bucket))


def test_observe_never_lets_the_server_raise_our_limit() -> None:
    clock = FakeClock()
    bucket = Bucket("b", 3, 1.0)
    limiter = RateLimiter([bucket], clock=clock, sleep=clock.sleep)
    limiter.observe("b", limit=1000, remaining=999, reset_in_s=1.0)

    stamps = [acquire_stamped(limiter, clock, ["b"]) for _ in range(30)]

    assert_at_most_limit_per_window(stamps, 3, padded(bucket))
    assert limiter.snapshot()["b"]["limit"] == 3


def test_observe_adopts_a_lower_server_limit() -> None:
    clock = FakeClock()
    bucket = Bucket("b", 10, 1.0)
    limiter = RateLimiter([bucket], clock=clock, sleep=clock.sleep)
    limiter.observe("b", limit=4, remaining=None, reset_in_s=None)

    stamps = [acquire_stamped(limiter, clock, ["b"]) for _ in range(40)]

    assert_at_most_limit_per_window(stamps, 4, padded(bucket))
    assert limiter.snapshot()["b"]["limit"] == 4


def test_a_newer_roomier_server_answer_lifts_an_older_strict_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Bucket("b", 100, 60.0)], clock=clock, sleep=clock.sleep)
    limiter.observe("b", limit=None, remaining=0, reset_in_s=50.0)
    limiter.observe("b", limit=None, remaining=99, reset_in_s=50.0)

    assert limiter.acquire(["b"]) == 0.0


def test_block_until_holds_back_only_that_bucket() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Bucket("a", 100, 1.0), Bucket("b", 100, 1.0)], clock=clock, sleep=clock.sleep)

    limiter.block_until("a", 12.0)

    assert limiter.acquire(["b"]) == 0.0
    assert limiter.acquire(["a", "b"]) == pytest.approx(12.0)
    assert limiter.acquire(["a"]) == 0.0


def test_block_until_keeps_the_later_of_two_blocks() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Bucket("a", 100, 1.0)], clock=clock, sleep=clock.sleep)

    limiter.block_until("a", 20.0)
    limiter.block_until("a", 5.0)

    assert limiter.acquire(["a"]) == pytest.approx(20.0)


def test_snapshot_reports_usage_remaining_and_reset() -> None:
    clock = FakeClock()
    bucket = Bucket("b", 10, 1.0)
    limiter = RateLimiter([bucket, Bucket("idle", 5, 60.0)], clock=clock, sleep=clock.sleep)
    for _ in range(4):
        limiter.acquire(["b"])

    snap = limiter.snapshot()

    assert snap["b"] == {
        "limit": 10.0,
        "used_in_window": 4.0,
        "remaining": 6.0,
        "reset_in_s": round(padded(bucket), 3),
    }
    assert snap["idle"] == {"limit": 5.0, "used_in_window": 0.0, "remaining": 5.0, "reset_in_s": 0.0}

    clock.advance(padded(bucket))
    assert limiter.snapshot()["b"]["used_in_window"] == 0.0


def test_snapshot_shows_a_blocked_bucket_as_empty() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Bucket("b", 10, 1.0)], clock=clock, sleep=clock.sleep)

    limiter.block_until("b", 7.5)

    assert limiter.snapshot()["b"]["remaining"] == 0.0
    assert limiter.snapshot()["b"]["reset_in_s"] == 7.5


def test_memory_stays_bounded_by_the_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter([Bucket("b", 3, 1.0)], clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        limiter.acquire(["b"])

    assert limiter.snapshot()["b"]["used_in_window"] <= 3


def test_unknown_and_duplicate_buckets_are_refused() -> None:
    limiter = RateLimiter([Bucket("b", 1, 1.0)])
    with pytest.raises(ValueError, match="unknown rate-limit bucket 'nope'"):
        limiter.acquire(["nope"])
    with pytest.raises(ValueError, match="duplicate"):
        RateLimiter([Bucket("b", 1, 1.0), Bucket("b", 2, 1.0)])
    with pytest.raises(ValueError, match="limit must be >= 1"):
        Bucket("z", 0, 1.0)


def test_a_cautious_start_waits_one_short_window_and_leaves_long_buckets_alone() -> None:
    now = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(
        [Bucket("per_second", 10, 1.0), Bucket("per_hour", 100, 3600.0)],
        clock=lambda: now[0], sleep=sleep, cautious_start_s=1.0,
    )
    assert limiter.acquire(["per_hour"]) == 0.0
    waited = limiter.acquire(["per_second"])
    assert 1.0 <= waited <= 1.2
    assert limiter.acquire(["per_second"]) == 0.0


def fake_time_limiter(now: list[float], *buckets: Bucket) -> RateLimiter:
    return RateLimiter(
        buckets, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s), cautious_start_s=1.0
    )


def test_after_a_short_idle_the_cautious_start_waits_only_for_the_rest_of_the_window() -> None:
    now = [100.0]
    limiter = fake_time_limiter(now, Bucket("per_second", 2, 1.0))
    limiter.trust_idle_start(0.4)
    waited = limiter.acquire(["per_second"])
    assert 0.55 <= waited <= 0.75  # the window (1 s and its safety margins) less the 0.4 s idle


def test_an_idle_start_is_trusted_when_the_caller_knows_the_buckets_are_unused() -> None:
    now = [100.0]
    limiter = fake_time_limiter(now, Bucket("per_second", 2, 1.0))
    limiter.trust_idle_start()
    assert limiter.acquire(["per_second"]) == 0.0
    assert limiter.acquire(["per_second"]) == 0.0
    assert limiter.acquire(["per_second"]) > 0.9  # the bucket itself still holds


def test_the_previous_runs_requests_replace_the_cautious_start() -> None:
    before = [50.0]
    previous = fake_time_limiter(before, Bucket("per_second", 2, 1.0), Bucket("per_hour", 100, 3600.0))
    previous.acquire(["per_second"])
    before[0] += 0.5
    previous.acquire(["per_second", "per_hour"])
    before[0] += 0.1
    recent = previous.recent_requests()
    assert recent == {"per_second": [0.6, 0.1]}  # only the buckets that start cautiously

    now = [100.0]
    limiter = fake_time_limiter(now, Bucket("per_second", 2, 1.0), Bucket("per_hour", 100, 3600.0))
    limiter.resume_after(recent, elapsed_s=0.2)
    # The older request (0.8 s ago) leaves the window 0.2 s from now; not a whole window's wait.
    waited = limiter.acquire(["per_second"])
    assert 0.2 <= waited <= 0.3
    assert limiter.acquire(["per_second"]) > 0.4  # the other request still holds its place


def test_a_quiet_previous_run_means_no_wait_and_an_unnamed_bucket_stays_cautious() -> None:
    now = [100.0]
    limiter = fake_time_limiter(now, Bucket("quiet", 2, 1.0), Bucket("unknown_before", 2, 1.0))
    limiter.resume_after({"quiet": [0.99, 0.98]}, elapsed_s=0.15)  # both left the window by now
    assert limiter.acquire(["quiet"]) == 0.0
    assert limiter.acquire(["quiet"]) == 0.0
    assert limiter.acquire(["unknown_before"]) > 0.9
