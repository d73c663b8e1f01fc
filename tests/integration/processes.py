"""The `tajo` command line as a separate process, for the tests that kill it and start it again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tajo_braze.sandbox import Sandbox

from .conftest import env_for


def sync_process(
    config: Path,
    sandbox: Sandbox,
    *,
    resources: str = "users",
    batch_size: int | None = None,
    direction: str | None = None,
) -> subprocess.Popen[str]:
    """`tajo connectors sync braze --json` against the sandbox, its output piped."""
    command = [sys.executable, "-m", "tajo_braze.cli", "connectors", "sync", "braze", "--config", str(config),
               "--resources", resources, "--json"]  # fmt: skip
    if batch_size is not None:
        command += ["--batch-size", str(batch_size)]
    if direction is not None:
        command += ["--direction", direction]
    return subprocess.Popen(
        command,
        env={**os.environ, **env_for(sandbox)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(
    condition: Callable[[], bool], deadline_s: float = 60.0, what: str = "the sync never reached the kill point"
) -> None:
    """Wait for the other process to reach a point: polling with a deadline, not a fixed sleep."""
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, what
        time.sleep(0.001)


def children_of(pid: int) -> list[int]:
    """The process's children now (its mapping workers): read them before a kill, which orphans them."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(x) for x in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return found


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"  # a zombie waits only to be reaped
