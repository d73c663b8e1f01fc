"""A client-side rate limiter: sliding-window logs per bucket, corrected by the server's headers.

One `RateLimiter` per API key. A request names every bucket it draws on (a Brevo contacts call
draws on a per-second and a per-hour bucket) and goes out only when it fits in all of them.

Why a sliding log and not a token bucket: vendors count fixed or sliding windows and some share
a bucket across tenants; a log of send times lets us promise "never more than `limit` in any
window" exactly, with memory bounded by `limit` timestamps per bucket.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

# How often a full bucket looks again when what holds it is a request still waiting for its answer.
UNANSWERED_POLL_S = 0.005
CLOCK_EPSILON_S = 1e-6
# The longest reset a server's header is believed for. Headers may describe a longer window than
# the bucket they are filed under (an hourly quota seen on a per-second bucket), but no vendor
# window we use is longer than an hour; beyond that a reset is more likely clock skew.
MAX_SERVER_RESET_S = 3600.0 + 60.0


@dataclass(frozen=True, slots=True)
class Bucket:
    """A documented rate limit: at most `limit` requests per `window_s` seconds."""

    name: str
    limit: int
    window_s: float

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"bucket {self.name!r}: limit must be >= 1, got {self.limit}")
        if self.window_s <= 0:
            raise ValueError(f"bucket {self.name!r}: window_s must be > 0, got {self.window_s}")


class _BucketState:
    """Mutable bookkeeping of one bucket; only touched with the limiter's lock held."""

    __slots__ = (
        "bucket", "window", "limit", "sent", "unanswered", "blocked_until", "server_budget", "server_reset_at"
    )

    def __init__(self, bucket: Bucket, safety: float) -> None:
        self.bucket = bucket
        self.window = bucket.window_s * (1.0 + safety)
        self.limit = bucket.limit  # lowered (never raised) by what the server says
        self.sent: deque[float] = deque(maxlen=bucket.limit)
        # Sends still waiting for their answer, by time sent: each holds a slot until it comes,
        # then enters `sent` at the answer's time.
        self.unanswered: dict[float, int] = {}
        self.blocked_until = float("-inf")
        # What the server last said is left in its window, when that was less than we believed.
        self.server_budget: int | None = None
        self.server_reset_at = float("-inf")

    def used(self, now: float) -> int:
        """Requests sent within the window ending at `now` (forgets older ones: O(1) amortised)."""
        cutoff = now - self.window
        sent = self.sent
        while sent and sent[0] <= cutoff:
            sent.popleft()
        return len(sent) + sum(self.unanswered.values())

    def wait_needed(self, now: float) -> float:
        """Seconds from `now` until one more request fits in this bucket (0 if it fits now)."""
        waits = [self.blocked_until - now]
        used = self.used(now)
        if used >= self.limit:
            # Enough of the logged sends must leave the window; when the ones still waiting for
            # an answer fill it on their own, look again shortly.
            leaving = used - self.limit
            if leaving < len(self.sent):
                waits.append(self.sent[leaving] + self.window - now)
            else:
                waits.append(UNANSWERED_POLL_S)
        if self.server_budget is not None:
            if now >= self.server_reset_at:
                self.server_budget = None
            elif self.server_budget <= 0:
                waits.append(self.server_reset_at - now)
        return max(0.0, *waits)

    def record(self, now: float) -> None:
        self.sent.append(now)
        if self.server_budget is not None:
            self.server_budget -= 1

    def sent_unanswered(self, now: float) -> None:
        self.unanswered[now] = self.unanswered.get(now, 0) + 1
        if self.server_budget is not None:
            self.server_budget -= 1

    def answered(self, sent_at: float, now: float) -> None:
        """The request sent at `sent_at` was answered at `now`: its slot counts from `now`.

        The server counted it somewhere between the two; counting from the answer is the one
        time that is never earlier, however long the request took to get there.
        """
        waiting = self.unanswered.get(sent_at, 0)
        if waiting == 0:
            return
        if waiting == 1:
            del self.unanswered[sent_at]
        else:
            self.unanswered[sent_at] = waiting - 1
        self.sent.append(now)  # later than every other entry: the log stays in time order


class RateLimiter:
    """Thread-safe limiter over named buckets, with injectable clock and sleep for tests."""

    def __init__(
        self,
        buckets: Iterable[Bucket],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        safety: float = 0.02,
        cautious_start_s: float = 0.0,
    ) -> None:
        """`cautious_start_s`: buckets whose window is at most this long start as if full.

        A new process cannot know what the one before it (killed or just finished) sent in the
        current second; waiting one short window on the first call is cheaper than a 429.
        """
        if safety < 0:
            raise ValueError("safety must be >= 0")
        buckets = tuple(buckets)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._states: dict[str, _BucketState] = {}
        self._cautious: set[str] = set()
        self._short: frozenset[str] = frozenset(b.name for b in buckets if b.window_s <= cautious_start_s)
        started = clock()
        for bucket in buckets:
            if bucket.name in self._states:
                raise ValueError(f"duplicate rate-limit bucket {bucket.name!r}")
            state = _BucketState(bucket, safety)
            if bucket.window_s <= cautious_start_s:
                state.blocked_until = started + state.window
                self._cautious.add(bucket.name)
            self._states[bucket.name] = state

    def trust_idle_start(self, idle_s: float = math.inf) -> None:
        """Shorten the cautious start: the caller knows nothing used these buckets for `idle_s`
        seconds (the previous run finished cleanly that long ago), so each waits only for what is
        left of its window, and not at all once a whole window has passed."""
        with self._lock:
            now = self._clock()
            for name in self._cautious:
                state = self._states[name]
                if not state.sent:
                    left = state.window - idle_s
                    state.blocked_until = now + left if left > 0 else float("-inf")
            self._cautious.clear()

    def recent_requests(self) -> dict[str, list[float]]:
        """Per bucket that starts cautiously: how many seconds ago each request still inside its
        window was sent. Saved at the end of a run, it lets the next one start exactly."""
        with self._lock:
            now = self._clock()
            return {
                name: [round(now - sent, 4) for sent in state.sent if now - sent < state.window]
                for name, state in self._states.items()
                if name in self._short
            }

    def resume_after(self, recent: Mapping[str, Sequence[float]], elapsed_s: float) -> None:
        """Start from what the previous user of these buckets sent instead of the cautious start.

        `recent` is its `recent_requests()`, taken `elapsed_s` seconds ago. A bucket it does not
        name keeps the cautious start.
        """
        with self._lock:
            now = self._clock()
            for name in [n for n in self._cautious if n in recent]:
                state = self._states[name]
                if not state.sent:
                    ages = sorted((elapsed_s + age for age in recent[name] if elapsed_s + age < state.window), reverse=True)
                    state.sent.extend(now - age for age in ages)
                    state.blocked_until = float("-inf")
                self._cautious.discard(name)

    def _state(self, name: str) -> _BucketState:
        try:
            return self._states[name]
        except KeyError:
            raise ValueError(f"unknown rate-limit bucket {name!r}") from None

    def bucket(self, name: str) -> Bucket:
        """The documented limit of a bucket."""
        return self._state(name).bucket

    @property
    def bucket_names(self) -> tuple[str, ...]:
        return tuple(self._states)

    def acquire(self, names: Sequence[str]) -> float:
        """Block until one request fits in every named bucket, record it, return seconds waited."""
        return self._acquire(names, answer_expected=False)[0]

    def take(self, names: Sequence[str]) -> tuple[float, float]:
        """`acquire` for a request whose answer will be reported to `answered`: returns the
        seconds waited and the time it was recorded at. Until `answered`, it keeps its slots."""
        return self._acquire(names, answer_expected=True)

    def _acquire(self, names: Sequence[str], *, answer_expected: bool) -> tuple[float, float]:
        states = [self._state(name) for name in dict.fromkeys(names)]
        started = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                wait = max((state.wait_needed(now) for state in states), default=0.0)
                # A wait below the clock's float resolution would never elapse.
                if wait <= CLOCK_EPSILON_S:
                    for state in states:
                        if answer_expected:
                            state.sent_unanswered(now)
                        else:
                            state.record(now)
                    return max(0.0, now - started), now
            # Sleep outside the lock so other threads can check buckets that are free.
            self._sleep(wait)

    def answered(self, names: Sequence[str], sent_at: float) -> None:
        """The request `take` recorded at `sent_at` has its answer (or failed): from now on it
        holds its slots as if sent now.

        Vendors count a request when it reaches them, which may be well after we sent it (a busy
        server, a thread of ours waiting its turn). Counting it from its answer keeps any of our
        windows from holding more than the limit as the server sees them, with no guessed margin.
        """
        with self._lock:
            now = self._clock()
            for name in dict.fromkeys(names):
                self._state(name).answered(sent_at, now)

    def wait_estimate(self, names: Sequence[str]) -> float:
        """Seconds an `acquire(names)` made now would wait (nothing is recorded)."""
        states = [self._state(name) for name in dict.fromkeys(names)]
        with self._lock:
            now = self._clock()
            return max((state.wait_needed(now) for state in states), default=0.0)

    def observe(
        self, name: str, *, limit: int | None, remaining: int | None, reset_in_s: float | None
    ) -> None:
        """Learn from rate-limit response headers.

        Other tenants may share the server's bucket, so when the server says fewer requests
        remain than we believe, the server wins until its window resets. A server limit below
        the documented one lowers ours; one above it is ignored.
        """
        with self._lock:
            state = self._state(name)
            now = self._clock()
            if limit is not None and 0 < limit < state.limit:
                state.limit = limit
            if remaining is None:
                return
            remaining = max(0, remaining)
            ours = max(0, state.limit - state.used(now))
            if remaining >= ours:
                # The server sees more room than we do: our own log already governs; drop any
                # older, stricter server view since this answer is newer.
                state.server_budget = None
                return
            longest = max(state.window, MAX_SERVER_RESET_S)
            horizon = state.window if reset_in_s is None else min(max(reset_in_s, 0.0), longest)
            state.server_budget = remaining
            state.server_reset_at = now + horizon

    def block_until(self, name: str, seconds_from_now: float) -> None:
        """After a 429: nothing goes out on this bucket for `seconds_from_now` seconds."""
        with self._lock:
            state = self._state(name)
            state.blocked_until = max(state.blocked_until, self._clock() + max(0.0, seconds_from_now))

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Per bucket: effective limit, requests in the current window, remaining, seconds to reset."""
        with self._lock:
            now = self._clock()
            result: dict[str, dict[str, float]] = {}
            for name, state in self._states.items():
                used = state.used(now)
                remaining = max(0, state.limit - used)
                reset_at = state.sent[-1] + state.window if state.sent else now
                if state.unanswered:
                    reset_at = max(reset_at, now + state.window)  # its window starts at its answer
                if state.server_budget is not None and now < state.server_reset_at:
                    remaining = min(remaining, max(0, state.server_budget))
                    reset_at = max(reset_at, state.server_reset_at)
                reset_at = max(reset_at, state.blocked_until)
                if state.blocked_until > now:
                    remaining = 0
                result[name] = {
                    "limit": float(state.limit),
                    "used_in_window": float(used),
                    "remaining": float(remaining),
                    "reset_in_s": round(max(0.0, reset_at - now), 3),
                }
            return result
