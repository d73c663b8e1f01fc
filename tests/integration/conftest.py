"""Integration fixtures: a real sandbox on loopback and connectors configured against it.

`clock`, `sandboxes`, `connectors` and `track_log` put a sandbox and its connectors on one fake
clock; a test module that needs another clock defines its own `clock` fixture, which wins.
"""

from __future__ import annotations

import functools
import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

import tajo_braze.connector as connector_module
from tajo_braze.clients.braze import BrazeClient
from tajo_braze.connector import BrazeConnector
from tajo_braze.ratelimit import RateLimiter
from tajo_braze.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MAPPING = ROOT / "mappings" / "default.yaml"
# POSTs that read (exports) are not writes.
READING_POSTS = {"braze POST /users/export/segment", "braze POST /users/export/ids"}

TrackLog = list[list[dict[str, Any]]]


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
    contacts: list[dict[str, Any]] = []
    while True:  # the admin endpoint answers at most 10,000 contacts a call
        page = admin_get(sandbox, "brevo/contacts", offset=len(contacts), limit=10_000)
        contacts += page["contacts"]
        if not page["contacts"] or len(contacts) >= page["count"]:
            return contacts


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


def braze_end_state(sandbox: Sandbox) -> dict[str, Any]:
    """What Braze holds, without ids and timestamps, so two runs can be compared."""
    state: dict[str, Any] = {}
    for user in all_braze_users(sandbox):
        aliases = sorted(f"{a['alias_label']}:{a['alias_name']}" for a in user.get("user_aliases") or [])
        key = user.get("external_id") or ",".join(aliases) or user.get("email")
        state[str(key)] = {
            name: user.get(name) for name in ("email", "phone", "first_name", "last_name", "email_subscribe")
        } | {"custom": user.get("custom_attributes"), "events": user["events"], "purchases": user["purchases"]}
    return state


def rows_imported(sandbox: Sandbox) -> int:
    """Rows Brevo received in the imports that fill the users list (a row sent twice counts twice)."""
    imports = admin_get(sandbox, "brevo/imports")["imports"]
    return sum(int(i.get("rows_received", 0)) for i in imports if i.get("list_ids"))


# ------------------------------------------------------------------ on a fake clock
class FakeClock:
    """Time that moves only when someone sleeps: the sandbox, the connector and its limiters share it,
    so waiting for a rate-limit window to pass costs no real time."""

    def __init__(self) -> None:
        self._now = time.time()
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)


def worlds_on(clock: FakeClock, make_world: Callable[..., Sandbox]) -> Callable[..., Sandbox]:
    def make(**options: Any) -> Sandbox:
        return make_world(clock=clock.time, sleep=clock.sleep, **options)

    return make


def connectors_on(
    clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, made: list[BrazeConnector]
) -> Callable[..., BrazeConnector]:
    # The connector builds its limiters on the monotonic clock; here they run on the shared fake one.
    monkeypatch.setattr(connector_module, "RateLimiter", functools.partial(RateLimiter, clock=clock.time))

    def make(
        sandbox: Sandbox, state_dir: Path | None = None, *, mapping: Any = None, **sync: Any
    ) -> BrazeConnector:
        config = config_for(sandbox, state_dir or tmp_path, **sync)
        if mapping is not None:
            config["connectors"]["braze"]["field_mapping"] = mapping
        connector = BrazeConnector(
            config, env=env_for(sandbox), log_stream=io.StringIO(), sleep=clock.sleep, clock=clock.time
        )
        made.append(connector)
        return connector

    return make


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandboxes(clock: FakeClock, make_world: Callable[..., Sandbox]) -> Callable[..., Sandbox]:
    return worlds_on(clock, make_world)


@pytest.fixture
def connectors(
    clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., BrazeConnector]]:
    made: list[BrazeConnector] = []
    yield connectors_on(clock, tmp_path, monkeypatch, made)
    for connector in made:
        connector.close()


@pytest.fixture
def track_log(monkeypatch: pytest.MonkeyPatch) -> TrackLog:
    return spy_on_track(monkeypatch)


def spy_on_track(monkeypatch: pytest.MonkeyPatch) -> TrackLog:
    """Every /users/track attributes array the connector sends (the real call still goes out)."""
    calls: TrackLog = []
    original = BrazeClient.track

    def spy(self: BrazeClient, **arrays: Any) -> Any:
        calls.append([dict(item) for item in arrays.get("attributes", ())])
        return original(self, **arrays)

    monkeypatch.setattr(BrazeClient, "track", spy)
    return calls


def write_counts(sandbox: Sandbox) -> dict[str, int]:
    """Calls to vendor endpoints that change data, on either side."""
    return {
        name: count
        for name, count in sandbox.request_counts().items()
        if name.split(" ")[1] in ("POST", "PUT", "PATCH", "DELETE") and name not in READING_POSTS
    }


def writes_during(sandbox: Sandbox, action: Callable[[], Any]) -> dict[str, int]:
    before = write_counts(sandbox)
    action()
    after = write_counts(sandbox)
    return {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}


def settled_world(
    make_world: Callable[..., Sandbox],
    make_connector: Callable[..., BrazeConnector],
    state_dir: Path | None = None,
    *,
    world: dict[str, Any] | None = None,
    **sync: Any,
) -> tuple[Sandbox, BrazeConnector]:
    """A sandbox and a connector after a full `both` run and the run that settles it."""
    sandbox = make_world(**(world or {"users": 300, "contacts": 200}))
    connector = make_connector(sandbox, state_dir, direction="both", **sync)
    connector.install()
    connector.sync(type="full", resources=["users"])
    connector.sync(resources=["users"])
    return sandbox, connector


def contacts_with_braze_users(sandbox: Sandbox) -> list[dict[str, Any]]:
    """Brevo contacts linked to a Braze user by ext_id, oldest first."""
    known = {u["external_id"] for u in all_braze_users(sandbox) if u.get("external_id")}
    return [c for c in all_brevo_contacts(sandbox) if c["attributes"].get("EXT_ID") in known]


def change_contact(sandbox: Sandbox, contact_id: int, body: dict[str, Any]) -> None:
    admin_post(sandbox, f"brevo/contacts/{contact_id}", body)


def braze_user(sandbox: Sandbox, external_id: str) -> dict[str, Any]:
    return dict(admin_get(sandbox, f"braze/users/{external_id}"))


def braze_user_by_alias(sandbox: Sandbox, contact_id: int) -> dict[str, Any] | None:
    for user in all_braze_users(sandbox):
        for alias in user.get("user_aliases") or []:
            if alias.get("alias_name") == str(contact_id) and alias.get("alias_label") == "brevo_contact_id":
                return user
    return None
