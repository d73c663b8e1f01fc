"""Export lines mapped in worker processes give exactly what mapping them in the run's process gives."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from tajo_braze.connector import BrazeConnector
from tajo_braze.sandbox import Sandbox

from .conftest import admin_post, all_braze_users, brevo_end_state

COUNTS = ("read", "created", "updated", "unchanged", "failed", "skipped")


def counts(resource: dict[str, Any]) -> dict[str, Any]:
    return {name: resource.get(name) for name in COUNTS}


def letters(connector: BrazeConnector) -> list[tuple[str, str]]:
    return sorted((d["key"], d["reason"]) for d in connector.dead_letters(limit=10_000))


def test_worker_processes_write_the_same_contacts_dead_letters_and_counts_as_one_process(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector], tmp_path: Any
) -> None:
    worlds = {workers: make_world(users=2500, contacts=0, seed=23) for workers in (0, 2)}
    runs: dict[int, list[dict[str, Any]]] = {}
    connectors: dict[int, BrazeConnector] = {}
    for workers, sandbox in worlds.items():
        state_dir = tmp_path / f"workers-{workers}"
        state_dir.mkdir()
        connector = make_connector(sandbox, state_dir, map_workers=workers)
        connector.install()
        connectors[workers] = connector
        runs[workers] = [connector.sync(type="full", resources=["users"])["resources"][0]]

    # Change a few users on both sides the same way, then an incremental run each.
    for sandbox in worlds.values():
        known = [u for u in all_braze_users(sandbox) if u.get("external_id")][:40:4]
        admin_post(
            sandbox,
            "braze/users",
            {"users": [{"external_id": u["external_id"], "last_name": f"Changed {i}"} for i, u in enumerate(known)]},
        )
    for workers, connector in connectors.items():
        runs[workers].append(connector.sync(resources=["users"])["resources"][0])

    serial, parallel = runs[0], runs[2]
    assert [counts(r) for r in parallel] == [counts(r) for r in serial]
    assert any("2 worker processes" in note for note in parallel[0]["notes"])
    assert not any("worker processes" in note for note in serial[0]["notes"])
    # The incremental run skipped unchanged lines in the workers too: only the 10 changes were written.
    assert parallel[1]["updated"] == 10 and parallel[1]["created"] == 0
    assert parallel[1]["unchanged"] > 2000
    assert brevo_end_state(worlds[2]) == brevo_end_state(worlds[0])
    assert letters(connectors[2]) == letters(connectors[0])
    assert len(letters(connectors[0])) > 50  # the seeded world holds bad emails and phones


def test_when_workers_cannot_start_the_run_maps_in_its_own_process_and_says_so(
    make_world: Callable[..., Sandbox],
    make_connector: Callable[..., BrazeConnector],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = make_world(users=300, contacts=0)
    connector = make_connector(sandbox, map_workers=2)
    connector.install()
    monkeypatch.setattr(sys, "executable", "/bin/false")  # an embedding host whose executable is not Python
    result = connector.sync(type="full", resources=["users"])["resources"][0]
    assert result["created"] > 200
    assert any(note.startswith("export lines mapped in this process: A worker process") for note in result["notes"])
