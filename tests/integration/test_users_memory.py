"""Memory stays flat while the number of users grows (peak RSS of the connector process at two sizes)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tajo_braze.sandbox import Sandbox

from .conftest import env_for, write_config

PROBE = """
import resource, sys
from tajo_braze.connector import BrazeConnector
with BrazeConnector(sys.argv[1]) as connector:
    summary = connector.sync(type="full", resources=["users"], batch_size=1000)
print(summary["resources"][0]["read"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kib(sandbox: Sandbox, state_dir: Path) -> tuple[int, int]:
    state_dir.mkdir()
    config = write_config(sandbox, state_dir)
    env = {**os.environ, **env_for(sandbox)}
    done = subprocess.run([sys.executable, "-c", PROBE, str(config)], env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    read, rss = done.stdout.split()
    return int(read), int(rss)


def test_peak_rss_does_not_grow_with_the_number_of_users(
    make_world: Callable[..., Sandbox], tmp_path: Path
) -> None:
    # Both sizes fill several import bodies (capped at 1,000 rows here, at 8 MB by default), so what
    # is measured is what grows with the number of users: it must not.
    small_read, small_rss = peak_rss_kib(make_world(users=4_000, contacts=100), tmp_path / "small")
    large_read, large_rss = peak_rss_kib(make_world(users=40_000, contacts=100), tmp_path / "large")
    assert (small_read, large_read) == (4_000, 40_000)
    assert large_rss <= small_rss * 1.3, (small_rss, large_rss)  # the product target: 1.3x for 10x users
