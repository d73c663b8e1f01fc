"""Reading every Brevo contact, two pages in flight, against the sandbox over loopback."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from tajo_braze.clients.brevo import BREVO_BUCKETS, BrevoClient
from tajo_braze.http import ApiSession, RetryPolicy
from tajo_braze.ratelimit import RateLimiter
from tajo_braze.sandbox import Sandbox

from .conftest import all_brevo_contacts

PAGE = 250


@pytest.fixture
def client_for() -> Iterator[Callable[..., BrevoClient]]:
    sessions: list[ApiSession] = []

    def make(sandbox: Sandbox, retry: RetryPolicy = RetryPolicy()) -> BrevoClient:  # noqa: B008
        session = ApiSession(
            api="brevo",
            base_url=sandbox.brevo_url,
            auth_headers={"api-key": sandbox.keys.brevo},
            limiter=RateLimiter(BREVO_BUCKETS),
            retry=retry,
        )
        sessions.append(session)
        return BrevoClient(session)

    yield make
    for session in sessions:
        session.close()


def fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("brevo-contacts") and t.is_alive()]


def test_every_contact_once_in_creation_order_at_the_minimum_of_calls(
    make_world: Callable[..., Sandbox], client_for: Callable[..., BrevoClient]
) -> None:
    world = make_world(contacts=1_100)
    client = client_for(world)

    ids = [c.id for c in client.iter_contacts(limit=PAGE)]

    assert ids == [c["id"] for c in all_brevo_contacts(world)]
    assert len(ids) == 1_100
    assert client.session.call_counts == {"GET /contacts": 1_100 // PAGE + 1}
    assert world.violations() == []  # two in flight still within 10 calls a second
    assert fetch_threads() == []


def test_server_errors_mid_read_are_retried_and_the_read_stays_complete(
    make_world: Callable[..., Sandbox], client_for: Callable[..., BrevoClient]
) -> None:
    world = make_world(contacts=1_100, faults="brevo:/contacts:5xx=0.4")
    client = client_for(world, RetryPolicy(max_attempts=10, base_delay_s=0.0))

    ids = [c.id for c in client.iter_contacts(limit=100)]

    assert ids == [c["id"] for c in all_brevo_contacts(world)]
    assert client.session.retries > 0  # the seeded faults hit pages in flight
    assert client.session.call_counts["GET /contacts"] == 1_100 // 100 + 1 + client.session.retries
    assert world.violations() == []
