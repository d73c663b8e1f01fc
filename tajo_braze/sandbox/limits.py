"""Fixed-window rate limits for the sandbox, and the log of everything a vendor would refuse.

Windows are aligned to multiples of the bucket's `window_s` since the epoch, counted per
(vendor, API key, bucket), like the vendors' documented "N requests per window" limits.
The mode can change at runtime:

- `enforce`: a request over the limit gets the vendor's 429 and its handler does not run;
- `count`: the handler runs anyway, and the excess is recorded as a violation;
- `off`: nothing is counted or recorded (benchmarks).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .core import BucketSpec

Mode = Literal["enforce", "count", "off"]
MODES: tuple[Mode, ...] = ("enforce", "count", "off")

# The violation log is for people and tests; a long run in `count` mode must not grow it forever.
MAX_VIOLATIONS = 10_000


def parse_mode(mode: str) -> Mode:
    """Validate a limits mode given by a user (CLI flag, admin call)."""
    if mode not in MODES:
        raise ValueError(f"unknown limits mode {mode!r}: expected one of {', '.join(MODES)}")
    return mode


def key_label(credential: str) -> str:
    """A short, stable name for an API key that cannot be turned back into the key."""
    if not credential:
        return "anonymous"
    return "key-" + hashlib.sha256(credential.encode()).hexdigest()[:10]


def window_bounds(now: float, window_s: float) -> tuple[float, float]:
    """The fixed window holding `now`: (start, reset), aligned to multiples of window_s."""
    start = math.floor(now / window_s) * window_s
    return start, start + window_s


@dataclass(frozen=True, slots=True)
class Decision:
    """What the limiter says about one request, with the numbers for the rate-limit headers.

    `limit`, `remaining` and `reset_epoch` describe the endpoint's first bucket (the one
    whose headers the vendor sends); `bucket` is None when the endpoint draws on none.
    """

    allowed: bool
    bucket: BucketSpec | None = None
    limit: int = 0
    remaining: int = 0
    reset_epoch: float = 0.0


ALLOW_UNCOUNTED = Decision(allowed=True)


class RateLimiter:
    """Thread-safe fixed-window counters plus the violation log shared with the vendor apps."""

    def __init__(self, mode: str = "enforce", *, clock: Callable[[], float] = time.time) -> None:
        self._mode: Mode = parse_mode(mode)
        self._clock = clock
        self._lock = threading.Lock()
        # (vendor, key label, bucket name) -> [window start, count]
        self._windows: dict[tuple[str, str, str], list[float]] = {}
        self._violations: deque[dict[str, Any]] = deque(maxlen=MAX_VIOLATIONS)
        # Rate-limit violations are kept as one entry per exceeded window, updated in place.
        self._open_violations: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
        self._violations_total = 0
        self._throttled = 0

    # ------------------------------------------------------------------ mode
    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: str) -> None:
        self._mode = parse_mode(mode)

    # ------------------------------------------------------------------ counting
    def check(
        self,
        vendor: str,
        key_id: str,
        endpoint_name: str,
        buckets: Sequence[BucketSpec],
        *,
        key_name: str | None = None,
    ) -> Decision:
        """Count one request against every bucket of its endpoint and decide whether it may run.

        `key_id` identifies the API key's counters (see `key_label`); `key_name` is what the
        violation log shows (a readable, secret-free name; `key_id` when not given).

        In `enforce` mode a refused request is not counted (the vendor did not process it),
        so a client that waits for the reset gets a full window.
        """
        mode = self._mode
        if mode == "off" or not buckets:
            return ALLOW_UNCOUNTED
        now = self._clock()
        with self._lock:
            slots: list[tuple[BucketSpec, list[float], float]] = []
            over: list[BucketSpec] = []
            for spec in buckets:
                start, reset = window_bounds(now, spec.window_s)
                slot = self._windows.get((vendor, key_id, spec.name))
                if slot is None:
                    slot = [start, 0.0]
                    self._windows[(vendor, key_id, spec.name)] = slot
                elif slot[0] != start:
                    slot[0], slot[1] = start, 0.0
                slots.append((spec, slot, reset))
                if slot[1] >= spec.limit:
                    over.append(spec)
            refused = mode == "enforce" and bool(over)
            if not refused:
                for _spec, slot, _reset in slots:
                    slot[1] += 1
            for spec in over:
                count = int(self._windows[(vendor, key_id, spec.name)][1]) + (1 if refused else 0)
                self._record_rate_violation(
                    now, vendor, key_id, key_name or key_id, endpoint_name, spec, count, mode
                )
            if refused:
                self._throttled += 1
            first, first_slot, first_reset = slots[0]
            return Decision(
                allowed=not refused,
                bucket=first,
                limit=first.limit,
                remaining=max(0, first.limit - int(first_slot[1])),
                reset_epoch=first_reset,
            )

    def _record_rate_violation(
        self,
        now: float,
        vendor: str,
        key_id: str,
        key_name: str,
        endpoint_name: str,
        spec: BucketSpec,
        count: int,
        mode: Mode,
    ) -> None:
        start, _ = window_bounds(now, spec.window_s)
        ident = (vendor, key_id, spec.name)
        opened = self._open_violations.get(ident)
        if opened is not None and opened[0] == start:
            # Same window: one entry tells the story; keep its count current.
            entry = opened[1]
            entry["count"] = max(int(entry["count"]), count)
            entry["mode"] = mode
            return
        entry = {
            "time": now,
            "vendor": vendor,
            "endpoint": endpoint_name,
            "bucket": spec.name,
            "limit": spec.limit,
            "window_s": spec.window_s,
            "count": count,
            "mode": mode,
            "key_name": key_name,
        }
        self._open_violations[ident] = (start, entry)
        self._append(entry)

    def record(self, vendor: str, endpoint_name: str, detail: str) -> None:
        """Log a refusal decided by a vendor app (batch too big, deprecated endpoint …)."""
        entry = {"time": self._clock(), "vendor": vendor, "endpoint": endpoint_name, "detail": detail}
        with self._lock:
            self._append(entry)

    def _append(self, entry: dict[str, Any]) -> None:
        self._violations.append(entry)
        self._violations_total += 1

    # ------------------------------------------------------------------ inspection
    def violations(self) -> list[dict[str, Any]]:
        """Copies of the logged violations, oldest first (at most MAX_VIOLATIONS)."""
        with self._lock:
            return [dict(v) for v in self._violations]

    @property
    def violations_total(self) -> int:
        """Violations logged since the last reset, including any that fell off the log."""
        return self._violations_total

    @property
    def throttled(self) -> int:
        """How many 429s the limiter made the server send since the last reset."""
        return self._throttled

    def reset_violations(self) -> None:
        with self._lock:
            self._violations.clear()
            self._open_violations.clear()
            self._violations_total = 0
            self._throttled = 0

    def reset_windows(self) -> None:
        """Forget every counter, as if all windows had just rolled over."""
        with self._lock:
            self._windows.clear()
            self._open_violations.clear()
