"""Fixed-window rate limits and the violation log (no HTTP)."""

from __future__ import annotations

import threading

import pytest

from tajo_braze.sandbox.core import BucketSpec
from tajo_braze.sandbox.limits import MAX_VIOLATIONS, RateLimiter, key_label, parse_mode, window_bounds

MINUTE = BucketSpec("per_minute", 3, 60.0)
BURST = BucketSpec("burst", 2, 3.0)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _limiter(mode: str = "enforce", now: float = 6_000.0) -> tuple[RateLimiter, Clock]:
    clock = Clock(now)
    return RateLimiter(mode, clock=clock), clock


@pytest.mark.parametrize(
    ("now", "window", "expected"),
    [
        (125.0, 60.0, (120.0, 180.0)),
        (120.0, 60.0, (120.0, 180.0)),
        (7.5, 3.0, (6.0, 9.0)),
        (0.0, 3600.0, (0.0, 3600.0)),
    ],
)
def test_windows_are_aligned_to_multiples_of_their_length(now, window, expected):
    assert window_bounds(now, window) == expected


def test_enforce_allows_the_limit_then_refuses_without_counting_refusals():
    limiter, clock = _limiter()
    decisions = [limiter.check("braze", "k", "POST /x", [MINUTE]) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    assert {d.limit for d in decisions} == {3}
    assert {d.reset_epoch for d in decisions} == {6_060.0}
    assert limiter.throttled == 2
    clock.now = 6_060.0
    assert limiter.check("braze", "k", "POST /x", [MINUTE]).remaining == 2  # a full fresh window


def test_one_violation_entry_per_exceeded_window_with_a_current_count():
    limiter, clock = _limiter("count")
    for _ in range(7):
        assert limiter.check("brevo", "key-1", "GET /contacts", [MINUTE]).allowed
    [entry] = limiter.violations()
    assert entry == {
        "time": 6_000.0,
        "vendor": "brevo",
        "endpoint": "GET /contacts",
        "bucket": "per_minute",
        "limit": 3,
        "window_s": 60.0,
        "count": 7,
        "mode": "count",
        "key_name": "key-1",
    }
    clock.now += 60
    for _ in range(4):
        limiter.check("brevo", "key-1", "GET /contacts", [MINUTE])
    assert [v["count"] for v in limiter.violations()] == [7, 4]
    assert limiter.violations_total == 2
    assert limiter.throttled == 0


def test_off_mode_neither_counts_nor_records():
    limiter, _ = _limiter("off")
    decisions = [limiter.check("braze", "k", "POST /x", [MINUTE]) for _ in range(10)]
    assert all(d.allowed and d.bucket is None for d in decisions)
    assert limiter.violations() == []
    limiter.set_mode("enforce")
    assert limiter.check("braze", "k", "POST /x", [MINUTE]).remaining == 2  # nothing was counted while off


def test_every_bucket_of_an_endpoint_must_have_room_and_headers_follow_the_first():
    limiter, clock = _limiter()
    first = limiter.check("braze", "k", "POST /users/track", [MINUTE, BURST])
    second = limiter.check("braze", "k", "POST /users/track", [MINUTE, BURST])
    third = limiter.check("braze", "k", "POST /users/track", [MINUTE, BURST])
    assert (first.allowed, second.allowed, third.allowed) == (True, True, False)  # the burst bucket is full
    assert third.bucket == MINUTE and third.remaining == 1
    [entry] = limiter.violations()
    assert entry["bucket"] == "burst"
    clock.now += 3  # next burst window, same minute
    assert limiter.check("braze", "k", "POST /users/track", [MINUTE, BURST]).remaining == 0


def test_counters_are_separate_per_vendor_key_and_bucket():
    limiter, _ = _limiter()
    for _ in range(3):
        limiter.check("braze", "a", "GET /x", [MINUTE])
    assert not limiter.check("braze", "a", "GET /x", [MINUTE]).allowed
    assert limiter.check("braze", "b", "GET /x", [MINUTE]).allowed
    assert limiter.check("brevo", "a", "GET /x", [MINUTE]).allowed
    assert limiter.check("braze", "a", "GET /x", [BucketSpec("other", 3, 60.0)]).allowed


def test_endpoints_without_buckets_are_not_counted():
    limiter, _ = _limiter()
    decision = limiter.check("braze", "k", "GET /free", [])
    assert decision.allowed and decision.bucket is None


def test_app_violations_are_recorded_in_every_mode():
    limiter, _ = _limiter("off")
    limiter.record("braze", "POST /users/track", "76 attributes (max 75)")
    assert limiter.violations() == [
        {
            "time": 6_000.0,
            "vendor": "braze",
            "endpoint": "POST /users/track",
            "detail": "76 attributes (max 75)",
        }
    ]


def test_the_log_is_bounded_but_the_total_keeps_counting():
    limiter, _ = _limiter()
    for i in range(MAX_VIOLATIONS + 5):
        limiter.record("brevo", "POST /contacts/import", f"#{i}")
    kept = limiter.violations()
    assert len(kept) == MAX_VIOLATIONS
    assert kept[-1]["detail"] == f"#{MAX_VIOLATIONS + 4}"
    assert limiter.violations_total == MAX_VIOLATIONS + 5


def test_violations_returned_are_copies():
    limiter, _ = _limiter()
    limiter.record("brevo", "GET /x", "d")
    limiter.violations()[0]["detail"] = "changed"
    assert limiter.violations()[0]["detail"] == "d"


def test_resets():
    limiter, _ = _limiter()
    for _ in range(4):
        limiter.check("braze", "k", "GET /x", [MINUTE])
    limiter.reset_violations()
    assert limiter.violations() == [] and limiter.throttled == 0
    assert not limiter.check("braze", "k", "GET /x", [MINUTE]).allowed  # windows survive
    limiter.reset_windows()
    assert limiter.check("braze", "k", "GET /x", [MINUTE]).allowed


def test_modes_are_validated():
    assert parse_mode("count") == "count"
    with pytest.raises(ValueError, match="enforce, count, off"):
        RateLimiter("strict")
    limiter, _ = _limiter()
    with pytest.raises(ValueError):
        limiter.set_mode("")
    assert limiter.mode == "enforce"


def test_key_labels_are_short_stable_and_do_not_contain_the_key():
    key = "xkeysib-" + "a" * 64
    assert key_label(key) == key_label(key)
    assert key_label(key) != key_label(key + "b")
    assert "aaaa" not in key_label(key) and len(key_label(key)) == 14
    assert key_label("") == "anonymous"


def test_concurrent_checks_never_allow_more_than_the_limit():
    limiter, _ = _limiter()
    bucket = BucketSpec("big", 500, 60.0)
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [limiter.check("braze", "k", "GET /x", [bucket]).allowed for _ in range(200)]
        with lock:
            allowed.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 500
    assert limiter.throttled == 8 * 200 - 500


def test_counters_follow_the_key_id_and_the_log_shows_the_key_name():
    limiter, _ = _limiter()
    for _ in range(4):
        limiter.check("brevo", "key-abc", "GET /contacts", [MINUTE], key_name="tajo-connector")
    assert limiter.check("brevo", "key-def", "GET /contacts", [MINUTE], key_name="tajo-connector").allowed
    [entry] = limiter.violations()
    assert entry["key_name"] == "tajo-connector"
