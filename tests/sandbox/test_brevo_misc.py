"""The Brevo emulator: events, webhooks, products, the deprecated batch endpoint, admin,
seeding and snapshots."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tajo_braze.sandbox.brevo import BrevoApp
from tajo_braze.sandbox.brevo_seed import BrevoWorld, parse_ts, seed_brevo_world
from tajo_braze.sandbox.server import SandboxServer, derive_keys

# ---------------------------------------------------------------------------- harness
NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z
CONNECTOR_KEY = "xkeysib-test-connector"
READONLY_KEY = "xkeysib-test-readonly"
OVERLAP = [(f"user{i}@braze.example", f"ext-{i}") for i in range(10)]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Brevo:
    server: SandboxServer
    app: BrevoApp
    clock: Clock
    http: requests.Session

    def call(
        self, method: str, path: str, *, key: str | None = CONNECTOR_KEY, **kw: Any
    ) -> requests.Response:
        headers = {} if key is None else {"api-key": key}
        return self.http.request(method, self.server.brevo_url + path, headers=headers, timeout=10, **kw)

    def admin(self, method: str, subpath: str, **kw: Any) -> requests.Response:
        return self.http.request(method, f"{self.server.admin_url}/brevo/{subpath}", timeout=10, **kw)

    def violations(self) -> list[dict[str, Any]]:
        return [v for v in self.server.violations() if v["vendor"] == "brevo"]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Brevo, dict[str, Any]]]:
    clock = Clock()
    world = seed_brevo_world(40, 11, OVERLAP, now=NOW)
    app = BrevoApp(world, keys={CONNECTOR_KEY: "tajo-connector", READONLY_KEY: "readonly"}, clock=clock)
    # The Braze half is not under test: an empty Brevo app stands in for it.
    stand_in = BrevoApp(seed_brevo_world(0, 0, [], now=NOW), keys={})
    server = SandboxServer(stand_in, app, keys=derive_keys(7), limits="off", clock=clock).start()
    fresh = app.dump_state()
    with requests.Session() as http:
        yield Brevo(server, app, clock, http), fresh
    server.stop()


@pytest.fixture
def brevo(served: tuple[Brevo, dict[str, Any]]) -> Brevo:
    env, fresh = served
    env.clock.now = NOW
    env.app.load_state(fresh)
    env.app.import_delay_s = 0.0
    env.server.set_limits("off")
    env.server.reset_counters()
    return env


def create(brevo: Brevo, **body: Any) -> int:
    response = brevo.call("POST", "/contacts", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def contact(brevo: Brevo, identifier: str, identifier_type: str | None = None) -> dict[str, Any]:
    params = {} if identifier_type is None else {"identifierType": identifier_type}
    response = brevo.call("GET", "/contacts/" + quote(identifier, safe=""), params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def events(brevo: Brevo) -> list[dict[str, Any]]:
    response = brevo.admin("GET", "events")
    assert response.status_code == 200
    return list(response.json()["events"])


def event(name: str = "order_completed", **extra: Any) -> dict[str, Any]:
    return {"event_name": name, "identifiers": {"email_id": "buyer@example.com"}, **extra}


# ---------------------------------------------------------------------------- events
def test_single_event_is_stored_and_linked_to_its_contact(brevo: Brevo) -> None:
    cid = create(brevo, email="buyer@example.com")
    response = brevo.call(
        "POST",
        "/events",
        json=event(
            event_date="2026-09-21T10:00:00+02:00", event_properties={"total": 59.9, "items": [{"sku": "A"}]}
        ),
    )
    assert response.status_code == 204 and response.content == b""
    [stored] = events(brevo)
    assert stored["event_name"] == "order_completed"
    assert stored["contact_id"] == cid
    assert stored["event_properties"] == {"total": 59.9, "items": [{"sku": "A"}]}
    assert stored["event_date"] == "2026-09-21T10:00:00+02:00"
    assert stored["api_key_name"] == "tajo-connector"


def test_event_for_an_unknown_contact_is_recorded_without_creating_one(brevo: Brevo) -> None:
    before = len(brevo.app.world.contacts)
    response = brevo.call(
        "POST", "/events", json={"event_name": "signup", "identifiers": {"ext_id": "nobody"}}
    )
    assert response.status_code == 204
    assert events(brevo)[0]["contact_id"] is None
    assert len(brevo.app.world.contacts) == before


def test_event_contact_properties_update_known_attributes(brevo: Brevo) -> None:
    cid = create(brevo, email="buyer@example.com")
    brevo.clock.now += 9
    payload = event(contact_properties={"FIRSTNAME": "Jane", "UNKNOWN": 1, "SCORE": "bad"})
    assert brevo.call("POST", "/events", json=payload).status_code == 204
    found = contact(brevo, str(cid))
    assert found["attributes"] == {"FIRSTNAME": "Jane"}
    assert parse_ts(found["modifiedAt"]) == int(brevo.clock.now * 1000)


@pytest.mark.parametrize(
    "payload",
    [
        {"event_name": "has space", "identifiers": {"email_id": "a@example.com"}},
        {"event_name": "x" * 256, "identifiers": {"email_id": "a@example.com"}},
        {"event_name": "ok"},
        {"event_name": "ok", "identifiers": {"braze_id": "1"}},
        {"event_name": "ok", "identifiers": {"email_id": "a@example.com"}, "event_date": "yesterday"},
    ],
)
def test_invalid_events_are_400(brevo: Brevo, payload: dict[str, Any]) -> None:
    response = brevo.call("POST", "/events", json=payload)
    assert response.status_code == 400 and response.json()["code"] == "invalid_parameter"
    assert events(brevo) == []


def test_event_properties_above_50_kb_are_refused_and_logged(brevo: Brevo) -> None:
    fits = brevo.call("POST", "/events", json=event(event_properties={"blob": "x" * 50_000}))
    assert fits.status_code == 204
    response = brevo.call("POST", "/events", json=event(event_properties={"blob": "x" * 52_000}))
    assert response.status_code == 400
    assert [v["endpoint"] for v in brevo.violations()] == ["POST /events"]
    assert len(events(brevo)) == 1


def test_events_batch_in_an_object_is_accepted_with_202(brevo: Brevo) -> None:
    response = brevo.call("POST", "/events/batch", json={"events": [event("a"), event("b")]})
    assert response.status_code == 202
    assert response.json()["count"] == 2 and isinstance(response.json()["message"], str)
    assert [e["event_name"] for e in events(brevo)] == ["a", "b"]


def test_events_batch_as_a_bare_array_is_refused_since_april_2026(brevo: Brevo) -> None:
    response = brevo.call("POST", "/events/batch", json=[event("a")])
    assert response.status_code == 400
    assert '{"events"' in response.json()["message"]
    assert [v["endpoint"] for v in brevo.violations()] == ["POST /events/batch"]
    assert events(brevo) == []


def test_events_batch_with_invalid_items_answers_207_with_their_indexes(brevo: Brevo) -> None:
    batch = [event("ok1"), event("bad name"), {"event_name": "no_ids"}, event("ok2"), event("also bad")]
    response = brevo.call("POST", "/events/batch", json={"events": batch})
    assert response.status_code == 207
    body = response.json()
    assert (body["total_events"], body["successful_events"], body["failed_events"]) == (5, 2, 3)
    by_index = {tuple(e["eventIndex"]): e["message"] for e in body["errors"]}
    assert set(by_index) == {(1, 4), (2,)}
    assert [e["event_name"] for e in events(brevo)] == ["ok1", "ok2"]


def test_events_use_their_own_buckets(brevo: Brevo) -> None:
    brevo.server.set_limits("enforce")
    response = brevo.call("POST", "/events", json=event())
    assert response.headers["x-sib-ratelimit-limit"] == "10"
    assert brevo.server.request_counts() == {"brevo POST /events": 1}


# ---------------------------------------------------------------------------- deprecated batch
def test_contacts_batch_is_gone_and_logged(brevo: Brevo) -> None:
    cid = create(brevo, email="batch@example.com", attributes={"FIRSTNAME": "Before"})
    body = {"contacts": [{"email": "batch@example.com", "attributes": {"FIRSTNAME": "After"}}]}
    response = brevo.call("POST", "/contacts/batch", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "code": "method_not_allowed",
        "message": "POST /contacts/batch was deprecated on 2026-10-30; use POST /contacts/import",
    }
    assert [v["endpoint"] for v in brevo.violations()] == ["POST /contacts/batch"]
    assert contact(brevo, str(cid))["attributes"]["FIRSTNAME"] == "Before"


# ---------------------------------------------------------------------------- webhooks
def test_seeded_webhook_is_listed_and_new_ones_are_created(brevo: Brevo) -> None:
    listed = brevo.call("GET", "/webhooks").json()["webhooks"]
    assert [(w["id"], w["type"]) for w in listed] == [(1, "marketing")]
    created = brevo.call(
        "POST",
        "/webhooks",
        json={
            "url": "https://hooks.example/brevo",
            "type": "marketing",
            "events": ["unsubscribed", "listAddition", "contactUpdated"],
            "auth": {"type": "bearer", "token": "s3cr3t-token"},
        },
    )
    assert created.status_code == 201
    hook_id = created.json()["id"]
    shown = brevo.call("GET", f"/webhooks/{hook_id}")
    assert shown.json()["events"] == ["unsubscribed", "listAddition", "contactUpdated"]
    assert "s3cr3t-token" not in shown.text
    assert "s3cr3t-token" not in json.dumps(brevo.app.dump_state())
    assert len(brevo.call("GET", "/webhooks", params={"type": "marketing"}).json()["webhooks"]) == 2
    assert brevo.call("GET", "/webhooks", params={"type": "transactional"}).json()["webhooks"] == []
    assert brevo.call("DELETE", f"/webhooks/{hook_id}").status_code == 204
    assert brevo.call("GET", f"/webhooks/{hook_id}").status_code == 404


def test_webhook_needs_url_and_events(brevo: Brevo) -> None:
    assert brevo.call("POST", "/webhooks", json={"events": ["spam"]}).status_code == 400
    assert brevo.call("POST", "/webhooks", json={"url": "https://h.example", "events": []}).status_code == 400
    assert brevo.call("GET", "/webhooks").json()["webhooks"][0]["id"] == 1


# ---------------------------------------------------------------------------- products
def product(pid: str, **extra: Any) -> dict[str, Any]:
    return {"id": pid, "name": f"Product {pid}", "price": 9.5, **extra}


def test_products_batch_creates_then_updates_with_update_enabled(brevo: Brevo) -> None:
    first = brevo.call("POST", "/products/batch", json={"products": [product("p1"), product("p2")]})
    assert first.status_code == 201 and first.json() == {"createdCount": 2, "updatedCount": 0}
    again = brevo.call("POST", "/products/batch", json={"products": [product("p2")]})
    assert again.status_code == 400
    update = brevo.call(
        "POST",
        "/products/batch",
        json={"products": [{"id": "p2", "price": 12}, product("p3")], "updateEnabled": True},
    )
    assert update.json() == {"createdCount": 1, "updatedCount": 1}
    listed = brevo.call("GET", "/products", params={"ids": "p2"}).json()
    assert listed["count"] == 1
    assert (listed["products"][0]["name"], listed["products"][0]["price"]) == ("Product p2", 12)


def test_products_batch_limits(brevo: Brevo) -> None:
    hundred = [product(f"p{i}") for i in range(100)]
    assert brevo.call("POST", "/products/batch", json={"products": hundred}).status_code == 201
    too_many = [product(f"q{i}") for i in range(101)]
    refused = brevo.call("POST", "/products/batch", json={"products": too_many, "updateEnabled": True})
    assert refused.status_code == 400
    assert [v["endpoint"] for v in brevo.violations()] == ["POST /products/batch"]
    twice = brevo.call("POST", "/products/batch", json={"products": [product("d"), product("d")]})
    assert twice.status_code == 400 and "Duplicate" in twice.json()["message"]
    nameless = brevo.call("POST", "/products/batch", json={"products": [{"id": "n"}]})
    assert nameless.status_code == 400
    assert brevo.call("GET", "/products", params={"limit": 1000}).json()["count"] == 100


def test_products_list_filters_and_pages(brevo: Brevo) -> None:
    batch = [product("a"), product("b", isDeleted=True), product("c")]
    brevo.call("POST", "/products/batch", json={"products": batch})
    live = brevo.call("GET", "/products", params={"isDeleted": "false"}).json()
    assert [p["id"] for p in live["products"]] == ["a", "c"]
    page = brevo.call("GET", "/products", params={"limit": 1, "offset": 1}).json()
    assert page["count"] == 3 and [p["id"] for p in page["products"]] == ["b"]
    assert brevo.call("GET", "/products", params={"limit": 1001}).status_code == 400


def test_products_draw_on_the_2_per_second_bucket(brevo: Brevo) -> None:
    brevo.server.set_limits("enforce")
    answers = [brevo.call("GET", "/products").status_code for _ in range(3)]
    assert answers == [200, 200, 429]


# ---------------------------------------------------------------------------- admin
def test_admin_reads_and_changes_contacts_as_a_marketer_would(brevo: Brevo) -> None:
    cid = create(brevo, email="ui@example.com", attributes={"FIRSTNAME": "Ui"})
    brevo.clock.now += 120
    changed = brevo.admin(
        "POST",
        "contacts/ui%40example.com",
        json={"attributes": {"FIRSTNAME": "Edited"}, "emailBlacklisted": True, "listIds": [3]},
    )
    assert changed.status_code == 200
    seen = brevo.admin("GET", f"contacts/{cid}").json()
    assert seen["attributes"] == {"FIRSTNAME": "Edited"}
    assert seen["emailBlacklisted"] is True and seen["listIds"] == [3]
    assert parse_ts(seen["modifiedAt"]) == int(brevo.clock.now * 1000)
    assert brevo.admin("DELETE", f"contacts/{cid}").status_code == 204
    assert brevo.admin("GET", f"contacts/{cid}").status_code == 404


def test_admin_creates_and_lists_contacts(brevo: Brevo) -> None:
    made = brevo.admin(
        "POST", "contacts", json={"email": "typed-in@example.com", "attributes": {"COMPANY": "Acme"}}
    )
    assert made.status_code == 201
    listing = brevo.admin("GET", "contacts", params={"offset": 0, "limit": 1000}).json()
    assert listing["count"] == len(brevo.app.world.contacts)
    assert listing["contacts"][-1]["email"] == "typed-in@example.com"
    assert brevo.admin("GET", "nothing").status_code == 404


# ---------------------------------------------------------------------------- the real wiring
def test_the_sandbox_serves_this_app_with_its_brevo_key(make_sandbox: Any) -> None:
    sandbox = make_sandbox(users=40, limits="off")
    headers = {"api-key": sandbox.keys.brevo}
    listing = requests.get(
        sandbox.brevo_url + "/contacts", params={"limit": 1000}, headers=headers, timeout=10
    )
    assert listing.status_code == 200
    assert listing.json()["count"] == 20  # half as many contacts as Braze users
    shared_email, _ = sandbox.braze.overlap_identities(1)[0]
    found = requests.get(
        f"{sandbox.brevo_url}/contacts/{quote(shared_email, safe='')}", headers=headers, timeout=10
    )
    assert found.status_code == 200 and found.json()["email"] == shared_email.lower()
    other = requests.get(sandbox.brevo_url + "/account", headers={"api-key": sandbox.keys.braze}, timeout=10)
    assert other.status_code == 401


# ---------------------------------------------------------------------------- seeding
OVERLAP_MIX = [(f"shared{i}@braze.example", f"ext-{i}") for i in range(60)] + [
    (None, "ext-only-1"),
    ("email-only@braze.example", None),
    (None, None),
]


def test_seeding_is_deterministic() -> None:
    first = seed_brevo_world(300, 5, OVERLAP_MIX, now=1_790_000_000).to_state()
    again = seed_brevo_world(300, 5, OVERLAP_MIX, now=1_790_000_000).to_state()
    other = seed_brevo_world(300, 6, OVERLAP_MIX, now=1_790_000_000).to_state()
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert first["contacts"] != other["contacts"]


def test_seeded_world_shape() -> None:
    world = seed_brevo_world(1000, 5, OVERLAP_MIX, now=1_790_000_000)
    contacts = list(world.contacts.values())
    assert len(contacts) == 1000
    shared = [c for c in contacts if c.email is not None and c.email.endswith("@braze.example")]
    assert len(shared) == 61
    with_ext = [c for c in shared if c.ext_id is not None]
    assert 0 < len(with_ext) < len(shared)  # some linked by ext_id, some e-mail only
    assert world.contact_by_ext_id("ext-only-1") is not None
    assert all(c.ext_id == f"ext-{(c.email or '')[6:].split('@')[0]}" for c in with_ext)
    blocked = sum(c.email_blacklisted for c in contacts)
    assert 20 <= blocked <= 90  # about 5 %
    assert any(c.sms_blacklisted for c in contacts)
    assert any("+" in (c.email or "") for c in contacts)  # plus-addressing to encode
    assert world.lists[2].name == "Newsletter" and world.lists[3].name == "Customers"
    assert world.folders[1].name == "Marketing"
    assert 0 < len(world.list_members[2]) < 1000 and 0 < len(world.list_members[3]) < 1000
    assert sorted(world.contacts) == [c.id for c in contacts]  # ids follow creation
    created = [c.created_ms for c in contacts]
    assert created == sorted(created) and created[-1] <= 1_790_000_000_000
    assert all(c.created_ms <= c.modified_ms <= 1_790_000_000_000 for c in contacts)
    assert len({c.sms for c in contacts if c.sms}) == sum(1 for c in contacts if c.sms)


def test_seed_with_more_overlap_than_contacts_keeps_every_shared_contact() -> None:
    world = seed_brevo_world(10, 1, OVERLAP_MIX, now=1_790_000_000)
    assert len(world.contacts) == 62


def test_utc_worlds_render_timestamps_with_z() -> None:
    world = seed_brevo_world(3, 1, [], now=1_790_000_000, utc_offset_minutes=0)
    app = BrevoApp(world, keys={})
    rendered = app.contact_json(world.contacts[1])
    assert rendered["createdAt"].endswith("Z") and "." in rendered["createdAt"]


def test_modified_since_index_survives_clock_moving_back_and_compaction() -> None:
    world = seed_brevo_world(50, 3, [], now=1_790_000_000)
    first, second = world.contacts[1], world.contacts[2]
    world.touch(first, 1_790_000_500_000)
    world.touch(first, 1_790_000_400_000)  # a clock that moved back
    assert world.modified_since(1_790_000_450_000) == set()
    assert world.modified_since(1_790_000_400_000) == {1}
    for step in range(5000):  # enough writes to compact the log
        world.touch(second, 1_790_001_000_000 + step)
    assert len(world._log_ms) < 5000
    assert world.modified_since(1_790_000_000_001) == {1, 2}
    assert world.modified_since_bound(1_790_001_004_999) >= 1


# ---------------------------------------------------------------------------- snapshots
def test_dump_and_load_round_trip_keeps_state_and_indexes(brevo: Brevo) -> None:
    cid = create(
        brevo, email="snap@example.com", ext_id="snap", attributes={"SMS": "+33622222222"}, listIds=[2]
    )
    brevo.call("POST", "/contacts/attributes/normal/BRAZE_ID", json={"type": "text"})
    brevo.call("POST", "/events", json=event())
    brevo.call("POST", "/products/batch", json={"products": [product("p1")]})
    brevo.app.import_delay_s = 30
    pid = brevo.call(
        "POST", "/contacts/import", json={"jsonBody": [{"email": "pending@example.com"}], "listIds": [3]}
    ).json()["processId"]
    state = brevo.app.dump_state()
    assert json.loads(json.dumps(state)) == state  # JSON-able as is

    copy = BrevoApp(BrevoWorld.from_state(json.loads(json.dumps(state))), keys={}, clock=brevo.clock)
    assert copy.dump_state() == state
    brevo.app.load_state(json.loads(json.dumps(state)))
    assert brevo.app.dump_state() == state
    assert contact(brevo, "+33622222222", "phone_id")["id"] == cid
    assert contact(brevo, "snap", "ext_id")["listIds"] == [2]
    assert brevo.app.world.attribute("BRAZE_ID") is not None
    brevo.clock.now += 31  # the pending import survives the snapshot and still applies
    assert contact(brevo, "pending@example.com")["listIds"] == [3]
    assert brevo.call("GET", f"/processes/{pid}").json()["status"] == "completed"


def test_state_of_an_other_version_is_refused() -> None:
    state = seed_brevo_world(1, 1, [], now=1_790_000_000).to_state()
    state["version"] = 99
    with pytest.raises(ValueError, match="version"):
        BrevoWorld.from_state(state)


def test_repr_never_shows_api_keys() -> None:
    app = BrevoApp(
        seed_brevo_world(1, 1, [], now=1_790_000_000), keys={"xkeysib-very-secret": "tajo-connector"}
    )
    assert "very-secret" not in repr(app)
    assert "very-secret" not in json.dumps(app.dump_state())
