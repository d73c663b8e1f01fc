"""Killing a users sync at any point and running it again gives the end state of an uninterrupted run."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tajo_braze.connector import BrazeConnector
from tajo_braze.sandbox import Sandbox

from .conftest import brevo_end_state, rows_imported, write_config
from .processes import children_of, gone, sync_process, wait_for

IMPORT = "brevo POST /contacts/import"
EXPORT = "braze POST /users/export/segment"


BATCH_SIZE = 40


@pytest.mark.parametrize("map_workers", [None, 2], ids=["as-configured", "two-mapping-workers"])
def test_sigkill_at_several_points_then_resume_gives_the_clean_end_state(
    make_world: Callable[..., Sandbox],
    make_connector: Callable[..., BrazeConnector],
    tmp_path: Path,
    map_workers: int | None,
) -> None:
    clean = make_world(users=900, seed=3)
    reference = make_connector(clean, tmp_path / "clean")
    reference.install()
    reference.sync(type="full", resources=["users"], batch_size=BATCH_SIZE)
    written = rows_imported(clean)

    world = make_world(users=900, seed=3)
    state_dir = tmp_path / "killed"
    state_dir.mkdir()
    config = write_config(world, state_dir, map_workers=map_workers)
    make_connector(world, state_dir, map_workers=map_workers).install()

    kill_points: list[tuple[str, int]] = [(EXPORT, 1), (IMPORT, 2), (IMPORT, 7), (IMPORT, 13)]
    orphans: list[int] = []
    for endpoint, count in kill_points:
        process = sync_process(config, world, batch_size=BATCH_SIZE)
        wait_for(lambda endpoint=endpoint, count=count: world.request_counts().get(endpoint, 0) >= count)
        orphans += children_of(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
    if map_workers:
        assert orphans  # the runs killed after the export had their workers running
    wait_for(lambda: all(gone(pid) for pid in orphans), deadline_s=20)  # workers leave with their run

    final = sync_process(config, world, batch_size=BATCH_SIZE)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 1, err  # finished; the seeded world always has users Brevo cannot hold
    summary = json.loads(out)
    assert summary["status"] == "partial"
    assert brevo_end_state(world) == brevo_end_state(clean)
    # Only batches in flight at a kill may be written twice (idempotent upserts), never the whole set again.
    assert rows_imported(world) <= written + BATCH_SIZE * len(kill_points)
    assert world.violations() == []


def test_sigint_stops_at_a_safe_point_with_exit_4_and_resumes(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector], tmp_path: Path
) -> None:
    world = make_world(users=900, seed=3, faults="latency=15+5")
    config = write_config(world, tmp_path)
    make_connector(world, tmp_path).install()
    process = sync_process(config, world, batch_size=BATCH_SIZE)
    wait_for(lambda: world.request_counts().get(IMPORT, 0) >= 2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 4, err
    assert "interrupted" in json.loads(out)["error"]
    before = world.request_counts().get(IMPORT, 0)
    world.set_faults(None)

    resumed = sync_process(config, world, batch_size=BATCH_SIZE)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 1, err
    assert "resumed export" in " ".join(json.loads(out)["resources"][0]["notes"])
    assert world.request_counts().get(IMPORT, 0) > before
    assert world.violations() == []
