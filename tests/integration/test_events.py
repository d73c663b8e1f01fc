"""Webhook events both ways through the `handle_event` and `sync` hooks, against the sandbox."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import tajo_braze.events as events_module
from tajo_braze.cli import main
from tajo_braze.clients.braze import BrazeClient
from tajo_braze.connector import BrazeConnector
from tajo_braze.errors import UsageError
from tajo_braze.sandbox import Sandbox

from .conftest import admin_get, config_for, env_for, write_config
from .event_payloads import (
    braze_activity,
    braze_users,
    brevo_events,
    calls,
    closed_port,
    currents_open,
    opened,
    order,
    subscribed_users,
)

TRACK = "braze POST /users/track"
EVENTS_BATCH = "brevo POST /events/batch"


class Crash(BaseException):
    """Stands for the process dying (kill -9, power cut): nothing after it runs."""


def small_world(make_world: Callable[..., Sandbox], **options: Any) -> Sandbox:
    return make_world(users=60, contacts=30, **options)


def connector_for(
    sandbox: Sandbox, state_dir: Path, *, brevo_url: str | None = None, **sync: Any
) -> BrazeConnector:
    config = config_for(sandbox, state_dir, **sync)
    if brevo_url is not None:
        config["connectors"]["braze"]["brevo"]["base_url"] = brevo_url
    # Retries back off through `sleep`: skipping the waits keeps the test fast, the attempts stay real.
    return BrazeConnector(config, env=env_for(sandbox), log_stream=io.StringIO(), sleep=lambda _: None)


# ---------------------------------------------------------------- exactly once
def test_the_same_brevo_event_twice_writes_once(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = small_world(make_world)
    connector = make_connector(sandbox)
    user = subscribed_users(sandbox)[0]

    first = connector.handle_event("brevo", opened(user["email"]))
    second = connector.handle_event("brevo", opened(user["email"], id=78))  # a redelivery, by another webhook
    batch = connector.handle_event("brevo", [opened(user["email"]), opened(user["email"], ts=1714558000)])

    assert (first["recorded"], first["forwarding"]["forwarded"]) == (1, 1)
    assert (second["recorded"], second["duplicates"]) == (0, 1)
    assert (batch["recorded"], batch["duplicates"]) == (1, 1)
    events = braze_activity(sandbox, user["external_id"])["events"]
    assert [(e["name"], e["time"]) for e in events] == [
        ("brevo_email_opened", "2024-05-01T10:00:00.000Z"),
        ("brevo_email_opened", "2024-05-01T10:06:40.000Z"),
    ]
    assert events[0]["properties"]["campaign_id"] == 56
    assert calls(sandbox, TRACK) == 2
    status = connector.status()
    assert status["events_processed"] == 2 and status["events_backlog"] == 0
    assert sandbox.violations() == []


def test_a_currents_batch_of_100_takes_at_most_two_brevo_calls(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = small_world(make_world)
    connector = make_connector(sandbox)
    users = subscribed_users(sandbox)
    batch = {
        "events": [
            currents_open(i, users[i % len(users)]["external_id"], users[i % len(users)]["email"])
            for i in range(100)
        ]
    }

    result = connector.handle_event("braze", batch)
    assert result["recorded"] == 100 and result["forwarding"]["forwarded"] == 100
    assert 1 <= calls(sandbox, EVENTS_BATCH) <= 2
    stored = brevo_events(sandbox)
    assert len(stored) == 100
    assert {e["event_name"] for e in stored} == {"braze_email_open"}
    assert stored[0]["event_properties"]["device_os"] == "iOS"  # nested properties flattened
    assert stored[0]["identifiers"]["ext_id"] == users[0]["external_id"]

    replay = connector.handle_event("braze", batch)
    assert replay["duplicates"] == 100 and replay["recorded"] == 0
    assert len(brevo_events(sandbox)) == 100 and calls(sandbox, EVENTS_BATCH) <= 2
    assert sandbox.violations() == []


def test_malformed_items_are_reported_while_the_valid_ones_apply(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = small_world(make_world)
    connector = make_connector(sandbox)
    user = subscribed_users(sandbox)[0]
    good = [currents_open(i, user["external_id"], user["email"]) for i in range(3)]
    bad = [
        {"event_type": "users.messages.email.Open", "user": {}},  # no id
        "not an event",
        {
            "id": "x-1",
            "event_type": "users.behaviors.CustomEvent",
            "user": {"external_user_id": "u"},
            "properties": {"name": "..."},
        },  # a name with nothing Brevo can keep
    ]
    result = connector.handle_event("braze", {"events": [good[0], bad[0], good[1], bad[1], bad[2], good[2]]})

    assert result["recorded"] == 3 and result["forwarding"]["forwarded"] == 3
    assert [e["index"] for e in result["errors"]] == [1, 3, 4]
    reasons = [e["error"] for e in result["errors"]]
    assert "'id'" in reasons[0] and "JSON str" in reasons[1] and "no letter or digit" in reasons[2]
    assert len(brevo_events(sandbox)) == 3
    letters = connector.dead_letters("events")
    assert sorted(d["reason"] for d in letters) == sorted(reasons)

    for unusable in ("just text", 42):
        with pytest.raises(UsageError, match="JSON object or an array"):
            connector.handle_event("brevo", unusable)  # type: ignore[arg-type]
    assert sandbox.violations() == []


def test_a_crash_after_recording_and_before_forwarding_forwards_once_after_restart(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = small_world(make_world)
    user = subscribed_users(sandbox)[0]

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise Crash

    first = connector_for(sandbox, tmp_path)
    monkeypatch.setattr(events_module, "forward_pending", crash)
    with pytest.raises(Crash):
        first.handle_event("brevo", [opened(user["email"]), order("completed", user["external_id"])])
    first.close()
    monkeypatch.undo()
    assert calls(sandbox, TRACK) == 0

    restarted = connector_for(sandbox, tmp_path)
    assert restarted.status()["events_backlog"] == 2
    summary = restarted.sync(resources=["events"])
    [result] = summary["resources"]
    assert (result["read"], result["created"], result["failed"]) == (2, 2, 0)
    again = restarted.sync(resources=["events"])
    assert again["resources"][0]["read"] == 0

    activity = braze_activity(sandbox, user["external_id"])
    assert [e["name"] for e in activity["events"]] == ["brevo_email_opened"]
    assert sorted((p["product_id"], p["quantity"]) for p in activity["purchases"]) == [
        ("sku-1", 2),
        ("sku-2", 1),
    ]
    assert calls(sandbox, TRACK) == 1  # both objects in one request, sent once
    assert restarted.status()["events_processed"] == 2
    restarted.close()
    assert sandbox.violations() == []


# ---------------------------------------------------------------- purchases
def test_a_refund_arrives_as_a_negative_purchase_and_no_purchase_is_duplicated(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = small_world(make_world)
    connector = make_connector(sandbox)
    buyer = subscribed_users(sandbox)[0]["external_id"]
    simple_form = {
        "type": "purchase",
        "id": "shop-1",
        "payload": {
            "external_id": buyer,
            "order_id": "order-1001",
            "currency": "EUR",
            "time": "2024-05-01T10:00:00Z",
            "products": [
                {"product_id": "sku-1", "price": 19.5, "quantity": 2},
                {"product_id": "sku-2", "price": 5},
            ],
        },
    }

    connector.handle_event("brevo", order("completed", buyer))
    connector.handle_event(
        "brevo", order("completed", buyer, updatedAt="2024-05-01T11:00:00Z")
    )  # re-sent later
    connector.handle_event("braze", simple_form)  # the same order told by the shop itself
    connector.handle_event("brevo", order("refunded", buyer, updatedAt="2024-05-03T09:00:00Z"))
    connector.handle_event("brevo", order("refunded", buyer, updatedAt="2024-05-04T09:00:00Z"))

    purchases = braze_activity(sandbox, buyer)["purchases"]
    assert sorted((p["product_id"], p["price"], p["quantity"]) for p in purchases) == [
        ("sku-1", -19.5, 2),
        ("sku-1", 19.5, 2),
        ("sku-2", -5.0, 1),
        ("sku-2", 5.0, 1),
    ]
    assert all(p["currency"] == "EUR" for p in purchases)
    assert connector.state.unsent_purchases() == []
    assert sandbox.violations() == []


def test_a_crash_while_a_purchase_is_in_flight_never_sends_it_twice(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = small_world(make_world)
    buyer = subscribed_users(sandbox)[0]["external_id"]
    real_track = BrazeClient.track

    def track_then_die(self: BrazeClient, **arrays: Any) -> Any:
        real_track(self, **arrays)  # Braze has the purchase...
        raise Crash  # ...and the process dies before anything is written down

    first = connector_for(sandbox, tmp_path)
    monkeypatch.setattr(BrazeClient, "track", track_then_die)
    with pytest.raises(Crash):
        first.handle_event("brevo", order("completed", buyer, products=[{"productId": "sku-7", "price": 9}]))
    first.close()
    monkeypatch.undo()

    restarted = connector_for(sandbox, tmp_path)
    summary = restarted.sync(resources=["events"])
    assert summary["resources"][0]["read"] == 1 and summary["failed"] == 1  # in doubt, shown, not resent
    assert calls(sandbox, TRACK) == 1
    assert [p["product_id"] for p in braze_activity(sandbox, buyer)["purchases"]] == ["sku-7"]
    assert "outcome unknown" in restarted.dead_letters("events")[0]["reason"]
    assert restarted.sync(resources=["events"])["resources"][0]["read"] == 0
    restarted.close()
    assert sandbox.violations() == []


def test_an_ambiguous_failure_is_never_resent(make_world: Callable[..., Sandbox], tmp_path: Path) -> None:
    sandbox = small_world(make_world)
    connector = connector_for(sandbox, tmp_path)
    buyer = subscribed_users(sandbox)[0]["external_id"]
    # Braze applies the purchase, then the answer is lost: a 5xx after processing.
    sandbox.set_faults("braze:/users/track:5xx_after=1")
    result = connector.handle_event(
        "brevo", order("completed", buyer, products=[{"productId": "sku-9", "price": 42}])
    )
    sandbox.set_faults(None)

    assert result["forwarding"]["unknown"] == 1 and calls(sandbox, TRACK) == 1
    summary = connector.sync(resources=["events"])
    assert summary["resources"][0]["read"] == 0  # nothing waits: the event's outcome is unknown, not failed
    connector.handle_event(
        "brevo",
        order(
            "completed",
            buyer,
            products=[{"productId": "sku-9", "price": 42}],
            updatedAt="2024-06-01T00:00:00Z",
        ),
    )
    assert calls(sandbox, TRACK) == 1  # never sent again, whatever arrives
    assert [p["product_id"] for p in braze_activity(sandbox, buyer)["purchases"]] == ["sku-9"]
    letters = connector.dead_letters("events")
    assert len(letters) == 2  # the first delivery and the later one: both in doubt, both shown
    assert "may or may not have been applied" in letters[0]["reason"]
    assert "outcome unknown" in letters[1]["reason"]
    assert connector.state.unsent_purchases() == ["purchase:order-1001:0:0"]
    connector.close()


# ---------------------------------------------------------------- retries and dry runs
def test_a_failed_forward_is_kept_and_retried_by_the_events_sync(
    make_world: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = small_world(make_world)
    users = subscribed_users(sandbox)
    batch = {"events": [currents_open(i, users[i]["external_id"], users[i]["email"]) for i in range(5)]}

    unreachable = connector_for(sandbox, tmp_path, brevo_url=f"http://127.0.0.1:{closed_port()}/brevo/v3")
    result = unreachable.handle_event("braze", batch)
    assert result["recorded"] == 5 and result["forwarding"]["failed"] == 5 and result["backlog"] == 5
    unreachable.close()

    connector = connector_for(sandbox, tmp_path)
    plan = connector.sync(resources=["events"], dry_run=True)["resources"][0]["plan"]
    assert plan == {"events": 5, "brevo /events/batch events": 5}
    assert brevo_events(sandbox) == [] and calls(sandbox, EVENTS_BATCH) == 0

    summary = connector.sync(resources=["events"])
    assert summary["resources"][0]["created"] == 5 and summary["failed"] == 0
    assert sorted(e["event_properties"]["braze_event_id"] for e in brevo_events(sandbox)) == [
        f"currents-{i}" for i in range(5)
    ]
    assert connector.status()["events_backlog"] == 0
    connector.close()
    assert sandbox.violations() == []


# ---------------------------------------------------------------- consent and echoes
def test_a_brevo_unsubscribe_event_moves_the_configured_email_groups_with_the_global_state(
    make_world: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = small_world(make_world)
    groups = admin_get(sandbox, "braze/summary")["subscription_groups"]
    email_groups = sorted(gid for gid, group in groups.items() if group["channel"] == "email")
    connector = connector_for(sandbox, tmp_path, email_subscription_groups=email_groups)
    braze_user = subscribed_users(sandbox)[0]
    connector.handle_event(
        "brevo", {"event": "unsubscribed", "email": braze_user["email"], "ts_event": 1714557600}
    )
    subscriptions = admin_get(sandbox, "braze/subscriptions", external_id=braze_user["external_id"])
    assert subscriptions["email_subscribe"] == "unsubscribed"
    assert {gid: subscriptions["subscription_groups"].get(gid) for gid in email_groups} == {
        gid: "unsubscribed" for gid in email_groups
    }
    connector.close()
    assert sandbox.violations() == []


def test_unsubscribes_cross_both_ways_and_echoes_are_dropped(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = small_world(make_world)
    connector = make_connector(sandbox)
    braze_user = subscribed_users(sandbox)[0]
    contacts = admin_get(sandbox, "brevo/contacts", offset=0, limit=1000)["contacts"]
    contact = next(
        c
        for c in contacts
        if c.get("email") and not c["emailBlacklisted"] and c["email"].lower() != braze_user["email"].lower()
    )

    # Brevo -> Braze: an unsubscribe lands; a later Braze re-subscribe does not undo it.
    connector.handle_event(
        "brevo", {"event": "unsubscribed", "email": braze_user["email"], "ts_event": 1714557600}
    )
    subscriptions = admin_get(sandbox, "braze/subscriptions", external_id=braze_user["external_id"])
    assert subscriptions["email_subscribe"] == "unsubscribed"
    assert (
        braze_activity(sandbox, braze_user["external_id"])["events"][0]["name"] == "brevo_email_unsubscribed"
    )

    # Braze -> Brevo: a dashboard unsubscribe blocks the contact; the REST API echo does nothing.
    def global_change(status: str, source: str, email: str, index: int) -> dict[str, Any]:
        return {
            "event_type": "users.behaviors.subscription.GlobalStateChange",
            "id": f"gsc-{index}",
            "time": 1714557700 + index,
            "user": {"external_user_id": "anyone"},
            "properties": {
                "subscription_status": status,
                "email_address": email,
                "channel": "email",
                "state_change_source": source,
            },
        }

    echo = connector.handle_event("braze", global_change("Subscribed", "REST API", contact["email"], 0))
    assert echo["ignored"] == 1 and echo["recorded"] == 0
    connector.handle_event(
        "braze",
        {
            "events": [
                global_change("Unsubscribed", "Dashboard", contact["email"], 1),
                global_change(
                    "Subscribed", "SDK", braze_user["email"], 2
                ),  # stale against Brevo's unsubscribe
            ]
        },
    )
    blocked = admin_get(sandbox, f"brevo/contacts/{contact['email']}", identifierType="email_id")
    assert blocked["emailBlacklisted"] is True
    assert calls(sandbox, "brevo PUT /contacts/{identifier}") == 1

    # Brevo telling us about our own write is an echo: ignored, nothing written back to Braze.
    before = calls(sandbox, "braze POST /email/status")
    own = connector.handle_event(
        "brevo",
        {
            "event": "contact_updated",
            "ts": 1714557900,
            "api_key_name": "tajo-connector",
            "content": [{"email": contact["email"], "emailBlacklist": True}],
        },
    )
    assert own["ignored"] == 1 and calls(sandbox, "braze POST /email/status") == before
    assert sandbox.violations() == []


def test_a_brevo_deletion_reaches_braze_only_when_deletions_are_enabled(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector], tmp_path: Path
) -> None:
    sandbox = small_world(make_world)
    keep, drop = subscribed_users(sandbox)[:2]

    def deleted(user: dict[str, Any]) -> dict[str, Any]:
        return {
            "event": "contact_deleted",
            "ts": 1714557600,
            "content": [{"email": user["email"], "attributes": {"EXT_ID": user["external_id"]}}],
        }

    cautious = make_connector(sandbox, tmp_path / "a")
    assert cautious.handle_event("brevo", deleted(keep))["ignored"] == 1
    willing = make_connector(sandbox, tmp_path / "b", deletes=True)
    assert willing.handle_event("brevo", deleted(drop))["forwarding"]["forwarded"] == 1
    remaining = {u.get("external_id") for u in braze_users(sandbox)}
    assert keep["external_id"] in remaining and drop["external_id"] not in remaining
    assert sandbox.violations() == []


# ---------------------------------------------------------------- command line
def test_the_cli_reads_json_lines_from_stdin(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = small_world(make_world)
    user = subscribed_users(sandbox)[0]
    config = write_config(sandbox, tmp_path)
    for name, value in env_for(sandbox).items():
        monkeypatch.setenv(name, value)
    lines = "\n".join(json.dumps(opened(user["email"], ts=1714557600 + i * 60)) for i in (0, 1, 0))
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    out = io.StringIO()
    code = main(
        ["connectors", "handle-event", "braze", "--source", "brevo", "--config", str(config), "--json"],
        stdout=out,
    )
    assert code == 0, out.getvalue()
    assert len(braze_activity(sandbox, user["external_id"])["events"]) == 2
    assert sandbox.violations() == []


def test_the_connector_key_name_is_configurable_for_echo_filtering(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector], tmp_path: Path
) -> None:
    sandbox = small_world(make_world)
    user = subscribed_users(sandbox)[0]
    connector = make_connector(sandbox, tmp_path)
    connector.config = connector.config.with_overrides(
        events=replace(connector.config.events, own_key_names=("crm-sync-prod",))
    )

    def updated(key_name: str, ts: int) -> dict[str, Any]:
        return {"event": "contact_updated", "ts": ts, "api_key_name": key_name,
                "content": [{"email": user["email"], "emailBlacklist": True}]}

    assert connector.handle_event("brevo", updated("crm-sync-prod", 1714557700))["ignored"] == 1
    # The default name is now someone else's key: its change is real and crosses to Braze.
    assert connector.handle_event("brevo", updated("tajo-connector", 1714557800))["ignored"] == 0
    assert sandbox.violations() == []
