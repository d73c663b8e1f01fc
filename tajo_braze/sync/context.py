"""What every resource sync receives: configured clients, the mapping, the state store and run options."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import Interrupted
from ..models import BrevoEdit

if TYPE_CHECKING:
    from ..clients.braze import BrazeClient
    from ..clients.brevo import BrevoClient
    from ..config import Config
    from ..http import ApiSession
    from ..mapping import CompiledMapping
    from ..state import StateStore


class Progress(Protocol):
    def update(self, resource: str, **counters: int) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    def update(self, resource: str, **counters: int) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class SyncContext:
    config: Config
    mapping: CompiledMapping
    state: StateStore
    braze: BrazeClient
    brevo: BrevoClient
    braze_session: ApiSession
    logger: Any
    work_dir: Path
    run_id: int | None = None
    full: bool = False
    dry_run: bool = False
    since: date | None = None
    batch_size: int | None = None
    direction: str = "both"
    progress: Progress = field(default_factory=NoProgress)
    stop: threading.Event = field(default_factory=threading.Event)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    # Two-way runs: Brevo edits read before the Braze -> Brevo half (users half key -> Brevo
    # attribute -> edit), so it does not overwrite them; the Braze fields it kept Brevo's value
    # for, so the Brevo -> Braze half carries them instead of taking them for echoes.
    brevo_edits: dict[str, dict[str, BrevoEdit]] = field(default_factory=dict)
    kept_brevo_fields: dict[str, set[str]] = field(default_factory=dict)

    def check_stop(self) -> None:
        """Raise Interrupted at a safe point when a stop was requested (SIGINT/SIGTERM)."""
        if self.stop.is_set():
            raise Interrupted(
                "The run was interrupted; its progress is saved.",
                fix="Run the same command again to resume where it stopped.",
            )
