"""Webhook deliveries as the vendors send them, and what the sandbox's worlds received of them.

Shared by the events tests and the crash suite's events test.
"""

from __future__ import annotations

import socket
from typing import Any

from tajo_braze.sandbox import Sandbox

from .conftest import admin_get


def braze_users(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(admin_get(sandbox, "braze/users", offset=0, limit=1000)["users"])


def subscribed_users(sandbox: Sandbox) -> list[dict[str, Any]]:
    """Users with an external id, a plain ASCII email nobody else holds, and email_subscribe set."""
    users = braze_users(sandbox)
    counts: dict[str, int] = {}
    for user in users:
        if user.get("email"):
            counts[user["email"].lower()] = counts.get(user["email"].lower(), 0) + 1
    return [
        u
        for u in users
        if u.get("external_id")
        and u.get("email")
        and u["email"].isascii()
        and counts[u["email"].lower()] == 1
        and u.get("email_subscribe") in ("subscribed", "opted_in")
    ]


def braze_activity(sandbox: Sandbox, external_id: str) -> dict[str, Any]:
    return dict(admin_get(sandbox, "braze/events", external_id=external_id))


def brevo_events(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(admin_get(sandbox, "brevo/events", offset=0, limit=100_000)["events"])


def calls(sandbox: Sandbox, name: str) -> int:
    return sandbox.request_counts().get(name, 0)


def opened(email: str, ts: int = 1714557600, **extra: Any) -> dict[str, Any]:
    return {
        "id": 77,
        "camp_id": 56,
        "email": email,
        "campaign name": "Spring",
        "event": "opened",
        "ts_event": ts,
        "ts": ts + 1,
        **extra,
    }


def currents_open(index: int, external_id: str, email: str) -> dict[str, Any]:
    return {
        "event_type": "users.messages.email.Open",
        "id": f"currents-{index}",
        "time": 1714557600 + index,
        "user": {"user_id": f"b{index}", "external_user_id": external_id},
        "properties": {"email_address": email, "campaign_id": "c-1", "device": {"os": "iOS", "model": "x"}},
    }


def order(status: str, external_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": "order_completed" if status == "completed" else "order_refunded",
        "id": "order-1001",
        "status": status,
        "updatedAt": "2024-05-01T10:00:00Z",
        "currency": "EUR",
        "identifiers": {"ext_id": external_id},
        "products": [
            {"productId": "sku-1", "price": 19.5, "quantity": 2},
            {"productId": "sku-2", "price": 5},
        ],
        **extra,
    }


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
