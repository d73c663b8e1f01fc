"""The webhook receiver over loopback: authentication, answers, background forwarding, `serve`."""

from __future__ import annotations

import io
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tajo_braze.connector import BrazeConnector
from tajo_braze.errors import ConfigError
from tajo_braze.sandbox import Sandbox
from tajo_braze.webhooks import WebhookReceiver, serve

from .conftest import admin_get, config_for, env_for

TOKEN = "hook-token-for-tests-0123456789"
PASSWORD = "basic-password-for-tests"
ROOT = Path(__file__).resolve().parents[2]


def receiver_config(sandbox: Sandbox, state_dir: Path, *, batch_size: int = 100) -> dict[str, Any]:
    config = config_for(sandbox, state_dir)
    braze = config["connectors"]["braze"]
    braze["webhooks"] = {
        "token": "${TAJO_WEBHOOK_TOKEN}",
        "basic_user": "brevo",
        "basic_password": "${TAJO_WEBHOOK_PASSWORD}",
    }
    braze["events"] = {"batch_size": batch_size}
    return config


def receiver_env(sandbox: Sandbox) -> dict[str, str]:
    return {**env_for(sandbox), "TAJO_WEBHOOK_TOKEN": TOKEN, "TAJO_WEBHOOK_PASSWORD": PASSWORD}


@pytest.fixture
def world(make_world: Callable[..., Sandbox]) -> Sandbox:
    return make_world(users=40, contacts=20)


@pytest.fixture
def make_receiver(world: Sandbox, tmp_path: Path) -> Iterator[Callable[..., WebhookReceiver]]:
    started: list[tuple[BrazeConnector, WebhookReceiver]] = []

    def make(**options: Any) -> WebhookReceiver:
        batch_size = options.pop("batch_size", 100)
        connector = BrazeConnector(
            receiver_config(world, tmp_path, batch_size=batch_size),
            env=receiver_env(world),
            log_stream=io.StringIO(),
        )
        receiver = WebhookReceiver(connector, **options).start()
        started.append((connector, receiver))
        return receiver

    yield make
    for connector, receiver in started:
        receiver.stop()
        connector.close()


def a_user(sandbox: Sandbox) -> dict[str, Any]:
    users = admin_get(sandbox, "braze/users", offset=0, limit=1000)["users"]
    emails = [u.get("email", "").lower() for u in users]
    return next(
        u
        for u in users
        if u.get("external_id")
        and u.get("email")
        and u["email"].isascii()
        and emails.count(u["email"].lower()) == 1
    )


def opened(email: str, ts: int) -> dict[str, Any]:
    return {"event": "opened", "email": email, "camp_id": 5, "ts_event": ts, "ts": ts}


def currents_open(index: int, user: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_type": "users.messages.email.Open",
        "id": f"c-{index}",
        "time": 1714557600 + index,
        "user": {"external_user_id": user["external_id"]},
        "properties": {"email_address": user["email"]},
    }


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(
    receiver: WebhookReceiver,
    path: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return requests.post(f"{receiver.url}{path}", json=body, data=data, headers=headers, timeout=30)


def braze_events_of(sandbox: Sandbox, external_id: str) -> list[dict[str, Any]]:
    return list(admin_get(sandbox, "braze/events", external_id=external_id)["events"])


# ---------------------------------------------------------------- authentication
def test_an_unauthenticated_call_gets_401_and_nothing_is_recorded(
    world: Sandbox, make_receiver: Callable[..., WebhookReceiver]
) -> None:
    receiver = make_receiver()
    user = a_user(world)
    for headers in (
        None,
        bearer("wrong"),
        bearer(TOKEN + "x"),
        {"Authorization": TOKEN},
        {"Authorization": "Basic YnJldm86d3Jvbmc="},
    ):  # brevo:wrong
        answer = post(receiver, "/webhooks/brevo", opened(user["email"], 1714557600), headers=headers)
        assert answer.status_code == 401, headers
        assert "Bearer" in answer.headers["WWW-Authenticate"]
    assert post(receiver, "/webhooks/braze", {"events": [currents_open(0, user)]}).status_code == 401
    assert receiver.ctx.state.count_events() == 0
    assert receiver.ctx.state.count_dead_letters() == 0
    assert world.request_counts() == {}
    assert world.violations() == []


def test_bearer_and_basic_auth_record_then_forward_in_the_background(
    world: Sandbox, make_receiver: Callable[..., WebhookReceiver]
) -> None:
    receiver = make_receiver(flush_after_s=0.05)
    user = a_user(world)
    first = post(receiver, "/webhooks/brevo", opened(user["email"], 1714557600), headers=bearer())
    second = requests.post(
        f"{receiver.url}/webhooks/brevo",
        json=[opened(user["email"], 1714557660)],
        auth=("brevo", PASSWORD),
        timeout=30,
    )
    replay = post(receiver, "/webhooks/brevo", opened(user["email"], 1714557600), headers=bearer())
    assert first.status_code == second.status_code == replay.status_code == 200
    assert first.json()["recorded"] == 1 and second.json()["recorded"] == 1
    assert replay.json()["duplicates"] == 1

    assert receiver.wait_until_idle(timeout=30)
    assert [e["name"] for e in braze_events_of(world, user["external_id"])] == ["brevo_email_opened"] * 2
    assert receiver.ctx.state.count_events("forwarded") == 2
    assert world.violations() == []


# ---------------------------------------------------------------- answers
def test_only_truly_malformed_bodies_get_400(
    world: Sandbox, make_receiver: Callable[..., WebhookReceiver]
) -> None:
    receiver = make_receiver(flush_after_s=0.05, max_body_bytes=50_000)
    user = a_user(world)
    assert post(receiver, "/webhooks/braze", data=b"{not json", headers=bearer()).status_code == 400
    assert post(receiver, "/webhooks/braze", data=b'"a string"', headers=bearer()).status_code == 400
    assert receiver.ctx.state.count_events() == 0

    empty = post(receiver, "/webhooks/braze", data=b"", headers=bearer())
    assert empty.status_code == 200 and empty.json()["recorded"] == 0  # Braze's empty batches are no-ops
    assert post(receiver, "/webhooks/braze", {"events": []}, headers=bearer()).status_code == 200

    mixed = post(
        receiver,
        "/webhooks/braze",
        {"events": [currents_open(1, user), {"no": "id"}, currents_open(2, user)]},
        headers=bearer(),
    )
    assert mixed.status_code == 200
    assert mixed.json()["recorded"] == 2 and [e["index"] for e in mixed.json()["errors"]] == [1]

    too_big = post(receiver, "/webhooks/braze", data=b"[" + b" " * 60_000 + b"]", headers=bearer())
    assert too_big.status_code == 413
    assert post(receiver, "/webhooks/unknown", {}, headers=bearer()).status_code == 404
    assert requests.get(f"{receiver.url}/health", timeout=30).json() == {"ok": True}

    assert receiver.wait_until_idle(timeout=30)
    assert len(admin_get(world, "brevo/events", offset=0, limit=1000)["events"]) == 2
    assert world.violations() == []


def test_forwarding_waits_for_a_full_batch_or_the_time_bound(
    world: Sandbox, make_receiver: Callable[..., WebhookReceiver]
) -> None:
    user = a_user(world)
    # A lone event would wait an hour: only a full batch (5) makes the worker forward now.
    receiver = make_receiver(batch_size=5, flush_after_s=3600)
    assert (
        post(
            receiver,
            "/webhooks/braze",
            {"events": [currents_open(i, user) for i in range(2)]},
            headers=bearer(),
        ).status_code
        == 200
    )
    assert not receiver.wait_until_idle(timeout=0.2)  # still holding the partial batch
    assert (
        post(
            receiver,
            "/webhooks/braze",
            {"events": [currents_open(i, user) for i in range(2, 5)]},
            headers=bearer(),
        ).status_code
        == 200
    )
    assert receiver.wait_until_idle(timeout=30)
    assert len(admin_get(world, "brevo/events", offset=0, limit=1000)["events"]) == 5
    assert world.request_counts()["brevo POST /events/batch"] == 1
    assert world.violations() == []


def test_stopping_forwards_what_is_waiting(
    world: Sandbox, make_receiver: Callable[..., WebhookReceiver]
) -> None:
    user = a_user(world)
    receiver = make_receiver(flush_after_s=3600)
    post(receiver, "/webhooks/braze", {"events": [currents_open(9, user)]}, headers=bearer())
    receiver.stop()
    assert len(admin_get(world, "brevo/events", offset=0, limit=1000)["events"]) == 1
    assert receiver.ctx.state.count_events("forwarded") == 1


# ---------------------------------------------------------------- serve
def test_serve_refuses_to_start_without_a_token(world: Sandbox, tmp_path: Path) -> None:
    connector = BrazeConnector(config_for(world, tmp_path), env=env_for(world), log_stream=io.StringIO())
    out = io.StringIO()
    with pytest.raises(ConfigError, match="webhook token"):
        serve(connector, port=0, stream=out)
    assert out.getvalue() == ""
    connector.close()


def test_tajo_connectors_serve_runs_until_sigterm(world: Sandbox, tmp_path: Path) -> None:
    config_path = tmp_path / "tajo.yaml"
    config_path.write_text(yaml.safe_dump(receiver_config(world, tmp_path)), encoding="utf-8")
    env = {**os.environ, **receiver_env(world), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tajo_braze.cli",
            "connectors",
            "serve",
            "braze",
            "--port",
            "0",
            "--config",
            str(config_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        line = read_line(process, timeout=60)
        assert "/webhooks/brevo" in line, line
        url = line.split(" on ", 1)[1].split("/webhooks/", 1)[0]
        user = a_user(world)
        answer = requests.post(
            f"{url}/webhooks/brevo", json=opened(user["email"], 1714557600), headers=bearer(), timeout=30
        )
        assert answer.status_code == 200 and answer.json()["recorded"] == 1
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0, process.stderr.read() if process.stderr else ""
    assert process.stdout is not None and "Stopped" in process.stdout.read()
    # Stopping drains the worker: the event reached Braze before the process exited.
    assert [e["name"] for e in braze_events_of(world, user["external_id"])] == ["brevo_email_opened"]
    assert world.violations() == []


def read_line(process: subprocess.Popen[str], *, timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError("the receiver printed nothing")
    return process.stdout.readline()
