"""The Brevo emulator over HTTP: auth, rate-limit headers, contacts CRUD, paging, modifiedSince."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tajo_braze.sandbox.brevo import BrevoApp
from tajo_braze.sandbox.brevo_seed import format_ts, parse_ts, seed_brevo_world
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


# ---------------------------------------------------------------------------- auth and headers
def test_missing_key_and_unknown_key_get_different_401_messages(brevo: Brevo) -> None:
    missing = brevo.call("GET", "/account", key=None)
    unknown = brevo.call("GET", "/account", key="xkeysib-nope")
    assert missing.status_code == unknown.status_code == 401
    assert missing.json() == {"code": "unauthorized", "message": "authentication not found in headers"}
    assert unknown.json() == {"code": "unauthorized", "message": "Key not found"}
    assert missing.headers["sib-request-id"] != unknown.headers["sib-request-id"]


def test_readonly_key_reads_but_gets_403_on_writes(brevo: Brevo) -> None:
    assert brevo.call("GET", "/contacts", key=READONLY_KEY).status_code == 200
    denied = brevo.call("POST", "/contacts", key=READONLY_KEY, json={"email": "ro@x.example"})
    assert denied.status_code == 403
    assert denied.json()["code"] == "permission_denied"
    assert brevo.app.world.contact_by_email("ro@x.example") is None


def test_account_answers_plan_and_timezone(brevo: Brevo) -> None:
    response = brevo.call("GET", "/account")
    assert response.status_code == 200
    body = response.json()
    assert body["dateTimePreferences"]["timezone"] == "Europe/Paris"
    assert body["plan"][0]["type"] == "subscription"
    assert response.headers["sib-request-id"]


def test_rate_limit_headers_count_down_and_429_has_no_retry_after(brevo: Brevo) -> None:
    brevo.server.set_limits("enforce")
    brevo.clock.now = 1_790_000_000.25  # a quarter into a 1 s window
    seen = [brevo.call("GET", "/contacts", params={"limit": 1}) for _ in range(10)]
    assert [r.status_code for r in seen] == [200] * 10
    assert seen[0].headers["x-sib-ratelimit-limit"] == "10"
    assert [r.headers["x-sib-ratelimit-remaining"] for r in seen[:3]] == ["9", "8", "7"]
    assert seen[0].headers["x-sib-ratelimit-reset"] == "1"  # seconds left, not an epoch
    refused = brevo.call("GET", "/contacts", params={"limit": 1})
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_requests"
    assert "Retry-After" not in refused.headers
    assert refused.headers["x-sib-ratelimit-remaining"] == "0"


def test_account_is_in_the_100_per_hour_bucket(brevo: Brevo) -> None:
    brevo.server.set_limits("enforce")
    response = brevo.call("GET", "/account")
    assert response.headers["x-sib-ratelimit-limit"] == "100"
    assert int(response.headers["x-sib-ratelimit-reset"]) > 60


def test_unknown_route_is_a_brevo_shaped_404(brevo: Brevo) -> None:
    response = brevo.call("GET", "/nothing/here")
    assert response.status_code == 404
    assert set(response.json()) == {"code", "message"}


# ---------------------------------------------------------------------------- create and read
def test_created_contact_reads_back_in_brevo_shape(brevo: Brevo) -> None:
    cid = create(
        brevo,
        email="Ann.Lee@Example.com",
        ext_id="b-1",
        attributes={"FIRSTNAME": "Ann", "SMS": "+33612345678", "SCORE": 12.5},
        listIds=[2],
    )
    body = contact(brevo, str(cid))
    assert body["email"] == "ann.lee@example.com"  # Brevo stores e-mails lower-cased
    assert body["attributes"] == {"FIRSTNAME": "Ann", "SMS": "+33612345678", "SCORE": 12.5, "EXT_ID": "b-1"}
    assert body["listIds"] == [2]
    assert body["emailBlacklisted"] is False and body["smsBlacklisted"] is False
    assert body["createdAt"] == body["modifiedAt"] == "2026-09-21T15:13:20.000+01:00"
    assert parse_ts(body["modifiedAt"]) == int(NOW * 1000)


@pytest.mark.parametrize(
    ("identifier", "identifier_type"),
    [
        ("ann+promo@example.com", None),
        ("ann+promo@example.com", "email_id"),
        ("+33612345678", "phone_id"),
        ("0033612345678", "phone_id"),
        ("b-7", "ext_id"),
        ("CONTACT_ID", "contact_id"),
        ("CONTACT_ID", None),
    ],
)
def test_every_identifier_type_finds_the_contact(
    brevo: Brevo, identifier: str, identifier_type: str | None
) -> None:
    cid = create(brevo, email="ann+promo@example.com", ext_id="b-7", attributes={"SMS": "+33612345678"})
    identifier = str(cid) if identifier == "CONTACT_ID" else identifier
    assert contact(brevo, identifier, identifier_type)["id"] == cid


def test_a_bare_plus_in_the_path_reads_as_a_space(brevo: Brevo) -> None:
    create(brevo, email="ann+promo@example.com")
    response = brevo.call("GET", "/contacts/ann+promo@example.com")
    assert response.status_code == 404
    assert response.json() == {"code": "document_not_found", "message": "Contact does not exist"}


def test_numeric_ext_id_without_identifier_type_is_read_as_a_contact_id(brevo: Brevo) -> None:
    cid = create(brevo, email="num@example.com", ext_id="424242")
    assert brevo.call("GET", "/contacts/424242").status_code == 404
    assert contact(brevo, "424242", "ext_id")["id"] == cid


def test_unknown_identifier_type_is_a_400(brevo: Brevo) -> None:
    response = brevo.call("GET", "/contacts/x", params={"identifierType": "braze_id"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter"


def test_create_needs_an_identifier_and_a_valid_email(brevo: Brevo) -> None:
    nothing = brevo.call("POST", "/contacts", json={"attributes": {"FIRSTNAME": "Nobody"}})
    assert nothing.status_code == 400 and nothing.json()["code"] == "missing_parameter"
    bad = brevo.call("POST", "/contacts", json={"email": "not-an-email"})
    assert bad.status_code == 400 and bad.json()["message"] == "Invalid email address"
    phone = brevo.call("POST", "/contacts", json={"attributes": {"SMS": "call me"}})
    assert phone.status_code == 400 and phone.json()["message"] == "Invalid phone number"


def test_ext_id_only_and_sms_only_contacts_have_no_email(brevo: Brevo) -> None:
    cid = create(brevo, ext_id="only-ext")
    body = contact(brevo, "only-ext", "ext_id")
    assert body["id"] == cid and "email" not in body


def test_wrong_typed_and_unknown_attributes_are_dropped_silently(brevo: Brevo) -> None:
    cid = create(
        brevo,
        email="types@example.com",
        attributes={
            "SCORE": "high",
            "OPT_IN_DATE": "21/09/2026",
            "IS_CUSTOMER": "yes",
            "LOYALTY_POINTS": 10,
            "COMPANY": "Acme",
            "firstname": "lower-case key",
        },
    )
    assert contact(brevo, str(cid))["attributes"] == {"COMPANY": "Acme", "FIRSTNAME": "lower-case key"}


@pytest.mark.parametrize(
    ("body", "duplicated"),
    [
        ({"email": "TAKEN@example.com"}, ["email"]),
        ({"email": "free@example.com", "ext_id": "taken-ext"}, ["ext_id"]),
        ({"email": "free@example.com", "attributes": {"SMS": "0033699999999"}}, ["SMS"]),
    ],
)
def test_create_with_an_identifier_owned_by_another_contact_is_a_duplicate(
    brevo: Brevo, body: dict[str, Any], duplicated: list[str]
) -> None:
    create(brevo, email="taken@example.com", ext_id="taken-ext", attributes={"SMS": "+33699999999"})
    before = len(brevo.app.world.contacts)
    response = brevo.call("POST", "/contacts", json=body)
    assert response.status_code == 400
    assert response.json()["code"] == "duplicate_parameter"
    assert response.json()["metadata"] == {"duplicate_identifiers": duplicated}
    assert len(brevo.app.world.contacts) == before


def test_update_enabled_upserts_with_204_and_no_id(brevo: Brevo) -> None:
    cid = create(brevo, email="up@example.com", attributes={"FIRSTNAME": "Old"})
    response = brevo.call(
        "POST",
        "/contacts",
        json={"email": "up@example.com", "attributes": {"FIRSTNAME": "New"}, "updateEnabled": True},
    )
    assert response.status_code == 204 and response.content == b""
    assert contact(brevo, str(cid))["attributes"]["FIRSTNAME"] == "New"
    new = brevo.call("POST", "/contacts", json={"email": "brand-new@example.com", "updateEnabled": True})
    assert new.status_code == 201 and isinstance(new.json()["id"], int)


def test_upsert_whose_identifiers_belong_to_two_contacts_is_refused(brevo: Brevo) -> None:
    create(brevo, email="a@example.com")
    create(brevo, email="b@example.com", ext_id="ext-b")
    response = brevo.call(
        "POST", "/contacts", json={"email": "a@example.com", "ext_id": "ext-b", "updateEnabled": True}
    )
    assert response.status_code == 400
    assert response.json()["metadata"]["duplicate_identifiers"] == ["ext_id"]
    assert "EXT_ID" not in contact(brevo, "a@example.com")["attributes"]


# ---------------------------------------------------------------------------- update and delete
def test_put_changes_attributes_identifiers_blacklists_and_lists(brevo: Brevo) -> None:
    cid = create(
        brevo, email="put@example.com", attributes={"FIRSTNAME": "A", "COMPANY": "Acme"}, listIds=[2]
    )
    brevo.clock.now += 60
    response = brevo.call(
        "PUT",
        f"/contacts/{cid}",
        json={
            "attributes": {"EMAIL": "put.new@example.com", "FIRSTNAME": "B", "COMPANY": ""},
            "ext_id": "put-ext",
            "smsBlacklisted": True,
            "listIds": [3],
            "unlinkListIds": [2],
        },
    )
    assert response.status_code == 204
    body = contact(brevo, "put-ext", "ext_id")
    assert body["email"] == "put.new@example.com"
    assert body["attributes"] == {"FIRSTNAME": "B", "EXT_ID": "put-ext"}  # an empty value erases
    assert body["smsBlacklisted"] is True
    assert body["listIds"] == [3]
    assert parse_ts(body["modifiedAt"]) == int(brevo.clock.now * 1000)
    assert brevo.call("GET", "/contacts/put%40example.com").status_code == 404


def test_changing_the_email_of_a_blocklisted_contact_resubscribes_it(brevo: Brevo) -> None:
    cid = create(brevo, email="blocked@example.com", emailBlacklisted=True)
    brevo.call("PUT", f"/contacts/{cid}", json={"attributes": {"EMAIL": "unblocked@example.com"}})
    assert contact(brevo, str(cid))["emailBlacklisted"] is False


def test_put_to_an_email_owned_by_another_contact_is_a_duplicate(brevo: Brevo) -> None:
    create(brevo, email="first@example.com")
    second = create(brevo, email="second@example.com")
    response = brevo.call("PUT", f"/contacts/{second}", json={"attributes": {"EMAIL": "first@example.com"}})
    assert response.status_code == 400
    assert response.json()["metadata"] == {"duplicate_identifiers": ["email"]}
    assert contact(brevo, str(second))["email"] == "second@example.com"


def test_put_and_delete_of_an_unknown_contact_are_404(brevo: Brevo) -> None:
    assert brevo.call("PUT", "/contacts/ghost%40example.com", json={}).status_code == 404
    response = brevo.call("DELETE", "/contacts/ghost%40example.com")
    assert response.status_code == 404
    assert response.json()["code"] == "document_not_found"


def test_delete_frees_every_identifier(brevo: Brevo) -> None:
    cid = create(brevo, email="gone@example.com", ext_id="gone-ext", attributes={"SMS": "+33611111111"})
    assert brevo.call("DELETE", "/contacts/gone-ext", params={"identifierType": "ext_id"}).status_code == 204
    assert brevo.call("GET", f"/contacts/{cid}").status_code == 404
    assert (
        create(brevo, email="gone@example.com", ext_id="gone-ext", attributes={"SMS": "+33611111111"}) != cid
    )


def test_modified_at_moves_on_a_no_op_put(brevo: Brevo) -> None:
    cid = create(brevo, email="noop@example.com", attributes={"FIRSTNAME": "Same"})
    before = contact(brevo, str(cid))
    brevo.clock.now += 5
    brevo.call("PUT", f"/contacts/{cid}", json={"attributes": {"FIRSTNAME": "Same"}})
    after = contact(brevo, str(cid))
    assert after["attributes"] == before["attributes"]
    assert parse_ts(after["modifiedAt"]) - parse_ts(before["modifiedAt"]) == 5000


def test_a_list_add_alone_bumps_modified_at(brevo: Brevo) -> None:
    cid = create(brevo, email="listed@example.com")
    before = contact(brevo, str(cid))
    brevo.clock.now += 30
    added = brevo.call("POST", "/contacts/lists/3/contacts/add", json={"ids": [cid]})
    assert added.status_code == 201
    after = contact(brevo, str(cid))
    assert after["attributes"] == before["attributes"]
    assert after["listIds"] == [3]
    assert parse_ts(after["modifiedAt"]) == parse_ts(before["modifiedAt"]) + 30_000


# ---------------------------------------------------------------------------- listing
def _ids(response: requests.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["contacts"]]


def test_paging_by_offset_covers_every_contact_once_in_creation_order(brevo: Brevo) -> None:
    total = len(brevo.app.world.contacts)
    asc: list[int] = []
    for offset in range(0, total, 7):
        asc += _ids(brevo.call("GET", "/contacts", params={"limit": 7, "offset": offset, "sort": "asc"}))
    assert asc == sorted(brevo.app.world.contacts)
    desc = _ids(brevo.call("GET", "/contacts", params={"limit": 1000}))  # default sort: newest first
    assert desc == asc[::-1]
    page = brevo.call("GET", "/contacts", params={"limit": 5, "offset": total - 2})
    assert page.json()["count"] == total and len(page.json()["contacts"]) == 2


def test_default_page_is_50_and_limit_above_1000_is_refused_and_logged(brevo: Brevo) -> None:
    for i in range(20):
        create(brevo, email=f"bulk{i}@example.com")
    assert len(_ids(brevo.call("GET", "/contacts"))) == 50
    response = brevo.call("GET", "/contacts", params={"limit": 1001})
    assert response.status_code == 400
    assert response.json()["code"] == "out_of_range"
    assert [v["endpoint"] for v in brevo.violations()] == ["GET /contacts"]


@pytest.mark.parametrize("zone", ["Z", "+02:00", "+0200"])
def test_modified_since_takes_an_explicit_offset(brevo: Brevo, zone: str) -> None:
    brevo.clock.now = NOW + 3600
    cid = create(brevo, email="recent@example.com")
    # NOW + 1800 s is 14:43:20Z, 16:43:20+02:00.
    since = {
        "Z": "2026-09-21T14:43:20Z",
        "+02:00": "2026-09-21T16:43:20+02:00",
        "+0200": "2026-09-21T16:43:20.000+0200",
    }[zone]
    response = brevo.call("GET", "/contacts", params={"modifiedSince": since, "limit": 1000})
    assert _ids(response) == [cid]
    assert response.json()["count"] == 1


def test_modified_since_is_inclusive_of_a_rendered_modified_at(brevo: Brevo) -> None:
    brevo.clock.now = NOW + 100.1234
    cid = create(brevo, email="edge@example.com")
    since = contact(brevo, str(cid))["modifiedAt"]
    assert _ids(brevo.call("GET", "/contacts", params={"modifiedSince": since})) == [cid]


def test_modified_since_without_offset_or_with_an_unencoded_plus_is_a_400(brevo: Brevo) -> None:
    naive = brevo.call("GET", "/contacts", params={"modifiedSince": "2026-09-21T10:00:00"})
    assert naive.status_code == 400 and "time zone" in naive.json()["message"]
    url = brevo.server.brevo_url + "/contacts?modifiedSince=2026-09-21T10:00:00+02:00"
    raw_plus = brevo.http.get(url, headers={"api-key": CONNECTOR_KEY}, timeout=10)
    assert raw_plus.status_code == 400 and "%2B" in raw_plus.json()["message"]


def test_seeded_contacts_spread_over_modified_since_windows(brevo: Brevo) -> None:
    world = brevo.app.world
    cut = sorted(c.modified_ms for c in world.contacts.values())[len(world.contacts) // 2]
    expected = sorted(c.id for c in world.contacts.values() if c.modified_ms >= cut)
    since = format_ts(cut, 120)
    found = _ids(
        brevo.call("GET", "/contacts", params={"modifiedSince": since, "limit": 1000, "sort": "asc"})
    )
    assert found == expected and 0 < len(found) < len(world.contacts)


def test_created_since_and_list_filters(brevo: Brevo) -> None:
    brevo.clock.now = NOW + 10
    newer = create(brevo, email="newer@example.com", listIds=[3])
    created = _ids(brevo.call("GET", "/contacts", params={"createdSince": "2026-09-21T14:13:25Z"}))
    assert created == [newer]
    members = _ids(brevo.call("GET", "/contacts", params={"listIds": 3, "limit": 1000}))
    expected = sorted((c.id for c in brevo.app.world.contacts.values() if 3 in c.list_ids), reverse=True)
    assert members == expected and newer in members
    assert brevo.call("GET", "/contacts", params={"listIds": 99}).status_code == 404


def test_a_write_between_pages_is_seen_by_the_next_filtered_page(brevo: Brevo) -> None:
    since = {"modifiedSince": "2026-09-21T14:13:21Z", "sort": "asc"}
    assert brevo.call("GET", "/contacts", params=since).json()["count"] == 0
    brevo.clock.now = NOW + 2
    cid = create(brevo, email="late@example.com")
    assert _ids(brevo.call("GET", "/contacts", params=since)) == [cid]


def test_concurrent_creates_get_distinct_ids_and_consistent_indexes(brevo: Brevo) -> None:
    def make(worker: int) -> list[int]:
        with requests.Session() as own:
            url = brevo.server.brevo_url + "/contacts"
            return [
                own.post(
                    url,
                    json={"email": f"w{worker}-{i}@example.com"},
                    headers={"api-key": CONNECTOR_KEY},
                    timeout=10,
                ).json()["id"]
                for i in range(15)
            ]

    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = [cid for batch in pool.map(make, range(4)) for cid in batch]
    assert len(set(ids)) == 60
    world = brevo.app.world
    assert all(
        world.contact_by_email(f"w{w}-{i}@example.com") is not None for w in range(4) for i in range(15)
    )
    assert world.roster() == sorted(world.contacts)
