"""Fuzzing webhook payloads: every delivery is recorded, rejected per item with a reason, or refused as a
whole with a usage error; nothing else escapes, from the pure transforms up to the HTTP receiver.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tajo_braze.cli import main
from tajo_braze.connector import BrazeConnector
from tajo_braze.errors import RecordRejected, UsageError
from tajo_braze.event_mapping import Effects, effects_for, event_id_for, rules_from, split_payload
from tajo_braze.mapping import load_mapping
from tajo_braze.models import BrevoContact
from tajo_braze.sandbox import Sandbox
from tajo_braze.webhooks import WebhookReceiver
from tests.integration.conftest import config_for, env_for

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fuzz-webhook-token-0123456789"
RECEIVED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FUZZ_SETTINGS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
# Some generated payloads are large on purpose (Brevo's 50 KB property limit); their repr is not read.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

# ---------------------------------------------------------------------------- payloads
ODD = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "a@b.co", "not-an-email", "2024-05-01T10:00:00Z", "1714557600", "{}", '{"a": 1}',
                      "[1]", "x" * 60_000]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
BREVO_EVENTS = st.sampled_from(
    ["opened", "click", "unsubscribed", "unsubscribe", "spam", "hard_bounce", "delivered", "contact_updated",
     "contact_deleted", "list_addition", "order_completed", "order_refunded", "Opened Email", "", " "]
)
CURRENTS_TYPES = st.sampled_from(
    ["users.messages.email.Open", "users.behaviors.CustomEvent", "users.behaviors.subscription.GlobalStateChange",
     "users.behaviors.subscriptiongroup.StateChange", "users.behaviors.Purchase", "weird.type", ""]
)


def maybe(draw: st.DrawFn, value: Any) -> Any:
    """The value as a well-formed event would carry it, or something odd in its place."""
    return value if draw(st.integers(0, 2)) else draw(ODD)


@st.composite
def brevo_item(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {"event": maybe(draw, draw(BREVO_EVENTS))}
    for name, value in (
        ("email", "fuzz@example.com"),
        ("id", 12),
        ("camp_id", 5),
        ("ts_event", 1714557600),
        ("ts", 1714557601),
        ("date", "2024-05-01 10:00:00"),
        ("api_key_name", "marketing-team"),
        ("list_id", [3]),
        ("tag", "t"),
    ):
        if draw(st.booleans()):
            item[name] = maybe(draw, value)
    if draw(st.integers(0, 3)) == 0:
        item["content"] = maybe(draw, [{"email": "fuzz@example.com", "attributes": {"FIRSTNAME": "A", "EXT_ID": "u1"},
                                        "emailBlacklist": True}])
    if draw(st.integers(0, 3)) == 0:
        item.update(id=maybe(draw, "order-1"), status=maybe(draw, "completed"), currency=maybe(draw, "EUR"),
                    identifiers=maybe(draw, {"ext_id": "u1"}),
                    products=maybe(draw, [{"productId": "sku", "price": 2.5, "quantity": 2}]))
    return item


@st.composite
def braze_item(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 3)) == 0:  # the simple form
        return {"type": maybe(draw, draw(st.sampled_from(["user.event", "purchase", "refund", "x"]))),
                "payload": maybe(draw, {"external_id": "u1", "name": "ev", "time": "2024-05-01T10:00:00Z",
                                        "product_id": "p", "price": 1, "currency": "USD", "properties": {}})}
    item: dict[str, Any] = {"event_type": maybe(draw, draw(CURRENTS_TYPES)), "id": maybe(draw, "evt-1")}
    for name, value in (
        ("time", 1714557600),
        ("user", {"external_user_id": "u1", "user_id": "b1"}),
        ("properties", {"email_address": "fuzz@example.com", "name": "custom", "subscription_status": "Unsubscribed",
                        "custom_properties": {"k": "v"}, "state_change_source": "Dashboard"}),
        ("external_user_id", "u1"),
    ):
        if draw(st.booleans()):
            item[name] = maybe(draw, value)
    return item


def delivery(item: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One item, a batch of items, a Currents envelope, or anything at all."""
    return st.one_of(
        item,
        st.lists(item | ODD, max_size=4),
        st.builds(lambda events: {"events": events}, st.lists(item, max_size=4) | ODD),
        ODD,
    )


SOURCES_AND_PAYLOADS = st.one_of(
    st.tuples(st.just("brevo"), delivery(brevo_item())), st.tuples(st.just("braze"), delivery(braze_item()))
)


# ---------------------------------------------------------------------------- the pure transforms
def contact_attributes(contact: BrevoContact) -> dict[str, Any]:
    mapping = load_mapping(ROOT / "mappings" / "default.yaml", base_dir=ROOT)
    return mapping.nest(mapping.to_braze(contact), merge_objects=True)


RULES = [
    rules_from({"opened": "email_opened", "click": "email_clicked"}, ["weird.type"], deletes=True,
               contact_attributes=contact_attributes),
    rules_from({}, [], deletes=False, contact_attributes=None),
]


@settings(max_examples=400, deadline=None)
@given(source_and_payload=SOURCES_AND_PAYLOADS)
def test_every_item_gives_effects_or_a_rejection_with_a_reason(source_and_payload: tuple[str, Any]) -> None:
    source, payload = source_and_payload
    try:
        items = split_payload(source, payload)
    except UsageError as exc:
        assert exc.user_message and exc.fix
        assert not isinstance(payload, list | dict)
        return
    for item in items:
        for rules in RULES:
            try:
                event_id = event_id_for(source, item)
                effects = effects_for(source, item, rules, event_id=event_id, received_at=RECEIVED_AT)
            except RecordRejected as exc:
                assert exc.reason
                continue
            assert isinstance(effects, Effects)
            assert effects.ignored is None or effects.ignored.strip()
            # Deterministic: the same item is the same event (replays are recognised) with the same effects.
            assert event_id_for(source, item) == event_id
            assert effects_for(source, item, rules, event_id=event_id, received_at=RECEIVED_AT) == effects


# ---------------------------------------------------------------------------- through the hook and the receiver
def receiver_config(sandbox: Sandbox, state_dir: Path) -> dict[str, Any]:
    config = config_for(sandbox, state_dir)
    config["connectors"]["braze"]["webhooks"] = {"token": "${TAJO_WEBHOOK_TOKEN}"}
    config["connectors"]["braze"]["sync"]["deletes"] = True
    return config


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, BrazeConnector, Path]]:
    sandbox = Sandbox(users=30, contacts=10, seed=17).start()
    state_dir = tmp_path_factory.mktemp("hooks")
    env = {**env_for(sandbox), "TAJO_WEBHOOK_TOKEN": TOKEN}
    connector = BrazeConnector(receiver_config(sandbox, state_dir), env=env, log_stream=io.StringIO())
    yield sandbox, connector, state_dir
    connector.close()
    sandbox.stop()


@settings(max_examples=30, deadline=None, suppress_health_check=FUZZ_SETTINGS)
@given(source_and_payload=SOURCES_AND_PAYLOADS)
def test_handle_event_records_reports_or_refuses_and_never_crashes(
    world: tuple[Sandbox, BrazeConnector, Path], source_and_payload: tuple[str, Any]
) -> None:
    sandbox, connector, _ = world
    source, payload = source_and_payload
    try:
        result = connector.handle_event(source, payload)
    except UsageError as exc:
        assert exc.user_message and not isinstance(payload, list | dict)
        return
    counted = result["recorded"] + result["duplicates"] + result["ignored"] + result["invalid"]
    assert counted == result["received"]
    assert len(result["errors"]) == result["invalid"]
    assert all(isinstance(e["error"], str) and e["error"] for e in result["errors"])
    assert result["backlog"] >= 0 and "forwarding" in result
    assert sandbox.violations() == []


@pytest.fixture(scope="module")
def receiver(world: tuple[Sandbox, BrazeConnector, Path]) -> Iterator[WebhookReceiver]:
    sandbox, _, state_dir = world
    env = {**env_for(sandbox), "TAJO_WEBHOOK_TOKEN": TOKEN}
    # Its own connector and state: the receiver's worker forwards in the background.
    connector = BrazeConnector(receiver_config(sandbox, state_dir / "receiver"), env=env, log_stream=io.StringIO())
    hooks = WebhookReceiver(connector, max_body_bytes=200_000).start()
    yield hooks
    hooks.stop(timeout=30)
    connector.close()


BODIES = st.one_of(
    st.binary(max_size=300),
    SOURCES_AND_PAYLOADS.map(lambda pair: json.dumps(pair[1]).encode()),
    st.sampled_from([b"", b" ", b"null", b"[]", b"{}", b"\xff\xfe", b'{"events": 3}', b"[" * 50, b"x" * 250_000]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=FUZZ_SETTINGS)
@given(body=BODIES, route=st.sampled_from(["/webhooks/brevo", "/webhooks/braze"]))
def test_the_receiver_answers_every_body_with_a_deliberate_status(
    world: tuple[Sandbox, BrazeConnector, Path], receiver: WebhookReceiver, body: bytes, route: str
) -> None:
    sandbox, _, _ = world
    url = receiver.url + route
    stranger = requests.post(url, data=body, timeout=30)
    assert stranger.status_code == 401
    answer = requests.post(url, data=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert answer.status_code in (200, 400, 413), answer.text
    reply = answer.json()
    if answer.status_code == 200:
        assert reply["received"] == reply["recorded"] + reply.get("duplicates", 0) + reply.get("ignored", 0) + reply.get(
            "invalid", 0
        )
    else:
        assert reply["error"]
    assert TOKEN not in answer.text
    assert sandbox.violations() == []


@settings(max_examples=25, deadline=None, suppress_health_check=FUZZ_SETTINGS)
@given(text=st.one_of(st.text(max_size=80), st.sampled_from(["", "\n\n", "[1, 2]", '"x"', "{\n", "3\n4", "null"])))
def test_the_cli_refuses_unusable_stdin_with_exit_2_and_no_traceback(
    world: tuple[Sandbox, BrazeConnector, Path], text: str
) -> None:
    sandbox, _, state_dir = world
    config = state_dir / "cli.yaml"
    if not config.exists():
        cli_config = receiver_config(sandbox, state_dir / "cli-state")
        config.write_text(yaml.safe_dump(cli_config), encoding="utf-8")
    env = {**env_for(sandbox), "TAJO_WEBHOOK_TOKEN": TOKEN}
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env), mock.patch("sys.stdin", io.StringIO(text)), \
            contextlib.redirect_stderr(err):
        code = main(["connectors", "handle-event", "braze", "--source", "brevo", "--config", str(config)], stdout=out)
    output = out.getvalue() + err.getvalue()
    assert "Traceback" not in output
    parsed: list[Any] = []
    try:
        parsed = [json.loads(text)] if text.strip() else []
    except ValueError:
        with contextlib.suppress(ValueError):
            parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
    usable = bool(parsed) and all(isinstance(p, list | dict) for p in parsed)
    assert code == (0 if usable else 2), output
    if not usable:
        assert "error:" in output
    assert sandbox.violations() == []


def test_deeply_nested_json_is_a_clear_rejection_for_the_receiver_and_the_cli(
    world: tuple[Sandbox, BrazeConnector, Path], receiver: WebhookReceiver
) -> None:
    """Nesting deeper than the JSON parser's recursion limit is malformed input like any other."""
    sandbox, _, state_dir = world
    body = b"[" * 100_000 + b"]" * 100_000
    answer = requests.post(
        receiver.url + "/webhooks/brevo", data=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    assert answer.status_code == 400 and answer.json()["error"]

    config = state_dir / "nested.yaml"
    config.write_text(yaml.safe_dump(receiver_config(sandbox, state_dir / "nested")), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, {**env_for(sandbox), "TAJO_WEBHOOK_TOKEN": TOKEN}), \
            mock.patch("sys.stdin", io.StringIO(body.decode())), contextlib.redirect_stderr(err):
        code = main(["connectors", "handle-event", "braze", "--source", "brevo", "--config", str(config)], stdout=out)
    assert code == 2 and "error:" in err.getvalue()
