"""A one-line progress display for terminals; silent when output is piped."""

from __future__ import annotations

import time
from typing import IO


class TerminalProgress:
    def __init__(self, stream: IO[str], *, enabled: bool, min_interval_s: float = 0.2) -> None:
        self.stream = stream
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.drawn = False

    def update(self, resource: str, **counters: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last_draw < self.min_interval_s:
            return
        self.last_draw = now
        read = counters.get("read", 0)
        rate = read / max(now - self.started, 1e-6)
        parts = "  ".join(f"{name} {value:,}" for name, value in counters.items())
        self.stream.write(f"\r{resource}: {parts}  {rate:,.0f}/s\033[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
