"""Integration fixtures: a real sandbox on loopback and connectors configured against it."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tajo_braze.connector import BrazeConnector
from tajo_braze.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MAPPING = ROOT / "mappings" / "default.yaml"


def config_for(sandbox: Sandbox, state_dir: Path, **sync: Any) -> dict[str, Any]:
    return {
        "connectors": {
            "braze": {
                "instance_url": sandbox.braze_url,
                "api_key": "${BRAZE_API_KEY}",
                "brevo": {"api_key": "${BREVO_API_KEY}", "base_url": sandbox.brevo_url},
                "sync": {"users_segment": "All Users", "direction": "braze_to_brevo", **sync},
                "field_mapping": str(DEFAULT_MAPPING),
                "state_path": str(state_dir / "state.db"),
                "log_level": "warning",
            }
        }
    }


def env_for(sandbox: Sandbox) -> dict[str, str]:
    return {"BRAZE_API_KEY": sandbox.keys.braze, "BREVO_API_KEY": sandbox.keys.brevo}


def write_config(sandbox: Sandbox, state_dir: Path, **sync: Any) -> Path:
    path = state_dir / "tajo.yaml"
    path.write_text(yaml.safe_dump(config_for(sandbox, state_dir, **sync)), encoding="utf-8")
    return path


@pytest.fixture
def make_world() -> Iterator[Callable[..., Sandbox]]:
    started: list[Sandbox] = []

    def make(**options: Any) -> Sandbox:
        options.setdefault("users", 600)
        options.setdefault("contacts", 200)
        options.setdefault("seed", 11)
        sandbox = Sandbox(**options).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def make_connector(tmp_path: Path) -> Iterator[Callable[..., BrazeConnector]]:
    made: list[BrazeConnector] = []

    def make(sandbox: Sandbox, state_dir: Path | None = None, **sync: Any) -> BrazeConnector:
        directory = state_dir or tmp_path
        connector = BrazeConnector(
            config_for(sandbox, directory, **sync), env=env_for(sandbox), log_stream=io.StringIO()
        )
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


def admin_get(sandbox: Sandbox, path: str, **params: Any) -> Any:
    response = requests.get(f"{sandbox.admin_url}/{path}", params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def admin_post(sandbox: Sandbox, path: str, body: Any) -> Any:
    response = requests.post(f"{sandbox.admin_url}/{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def all_braze_users(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(admin_get(sandbox, "braze/users", offset=0, limit=1_000_000)["users"])


def all_brevo_contacts(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(admin_get(sandbox, "brevo/contacts", offset=0, limit=10_000)["contacts"])


def brevo_end_state(sandbox: Sandbox) -> dict[str, Any]:
    """What Brevo holds, without ids and timestamps, so two runs can be compared."""
    state = {}
    for c in all_brevo_contacts(sandbox):
        key = c["attributes"].get("EXT_ID") or c.get("email") or c["attributes"].get("SMS")
        state[str(key)] = {
            "email": c.get("email"),
            "emailBlacklisted": c.get("emailBlacklisted"),
            "attributes": c.get("attributes"),
            "listIds": sorted(c.get("listIds") or []),
        }
    return state
