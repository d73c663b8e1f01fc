"""The Brevo emulator over HTTP: asynchronous, lossy contact imports and the processes that report them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tajo_braze.sandbox.brevo import BrevoApp
from tajo_braze.sandbox.brevo_seed import parse_ts, seed_brevo_world
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


def start_import(brevo: Brevo, rows: list[dict[str, Any]], **options: Any) -> int:
    options.setdefault("listIds", [2])
    response = brevo.call("POST", "/contacts/import", json={"jsonBody": rows, **options})
    assert response.status_code == 202, response.text
    assert set(response.json()) == {"processId"}
    return int(response.json()["processId"])


def process(brevo: Brevo, pid: int) -> dict[str, Any]:
    response = brevo.call("GET", f"/processes/{pid}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def counters(brevo: Brevo, pid: int) -> dict[str, Any]:
    found = process(brevo, pid)
    assert found["status"] == "completed"
    return dict(found["info"]["import"])


def imported(brevo: Brevo, pid: int) -> dict[str, Any]:
    """What the sandbox saw of one import (admin view)."""
    listing = brevo.admin("GET", "imports").json()["imports"]
    return next(i for i in listing if i["processId"] == pid)


# ---------------------------------------------------------------------------- the happy path
def test_import_answers_202_and_applies_at_once_with_no_delay(brevo: Brevo) -> None:
    rows = [
        {
            "email": "imp1@example.com",
            "attributes": {"FIRSTNAME": "One", "EXT_ID": "imp-1", "SMS": "+33600000001"},
        },
        {"email": "imp2@example.com", "attributes": {"LASTNAME": "Two", "SCORE": 3}},
    ]
    pid = start_import(brevo, rows, listIds=[2, 3])
    found = process(brevo, pid)
    assert found["name"] == "IMPORTUSER" and found["status"] == "completed"
    assert found["info"]["import"] == {
        "invalid_emails": 0,
        "duplicate_contact_id": 0,
        "duplicate_ext_id": 0,
        "duplicate_email_id": 0,
        "duplicate_phone_id": 0,
        "duplicate_whatsapp_id": 0,
        "duplicate_landline_number_id": 0,
    }
    first = contact(brevo, "imp-1", "ext_id")
    assert first["email"] == "imp1@example.com"
    assert first["attributes"] == {"FIRSTNAME": "One", "EXT_ID": "imp-1", "SMS": "+33600000001"}
    assert first["listIds"] == [2, 3]
    assert contact(brevo, "imp2@example.com")["attributes"] == {"LASTNAME": "Two", "SCORE": 3}
    seen = imported(brevo, pid)
    assert (seen["rows_received"], seen["created"], seen["updated"]) == (2, 2, 0)


def test_a_delayed_import_goes_queued_then_in_process_then_completed(brevo: Brevo) -> None:
    brevo.app.import_delay_s = 10.0
    pid = start_import(brevo, [{"email": "later@example.com"}])
    assert process(brevo, pid)["status"] == "queued"
    assert "info" not in process(brevo, pid)
    assert imported(brevo, pid)["rows_received"] == 1  # counted on arrival, before it applies
    assert brevo.call("GET", "/contacts/later%40example.com").status_code == 404
    brevo.clock.now += 6
    assert process(brevo, pid)["status"] == "in_process"
    brevo.clock.now += 4
    assert brevo.call("GET", "/contacts/later%40example.com").status_code == 200
    done = process(brevo, pid)
    assert done["status"] == "completed"
    assert parse_ts(done["completed_at"]) - parse_ts(done["created_at"]) == 10_000


def test_delayed_imports_apply_in_order_of_submission(brevo: Brevo) -> None:
    brevo.app.import_delay_s = 5.0
    start_import(brevo, [{"email": "order@example.com", "attributes": {"FIRSTNAME": "First"}}])
    brevo.clock.now += 1
    start_import(brevo, [{"email": "order@example.com", "attributes": {"FIRSTNAME": "Second"}}])
    brevo.clock.now += 10
    assert contact(brevo, "order@example.com")["attributes"]["FIRSTNAME"] == "Second"


# ---------------------------------------------------------------------------- lossy rows
def test_invalid_emails_are_dropped_and_only_counted(brevo: Brevo) -> None:
    before = len(brevo.app.world.contacts)
    pid = start_import(brevo, [{"email": "ok@example.com"}, {"email": "no-at-sign"}, {"email": "a@b"}])
    assert counters(brevo, pid)["invalid_emails"] == 2
    assert len(brevo.app.world.contacts) == before + 1


def test_rows_without_identifier_are_dropped(brevo: Brevo) -> None:
    before = len(brevo.app.world.contacts)
    pid = start_import(brevo, [{"attributes": {"FIRSTNAME": "Anonymous"}}, {"email": "ok2@example.com"}])
    assert imported(brevo, pid)["no_identifier"] == 1
    assert len(brevo.app.world.contacts) == before + 1


def test_wrong_typed_values_are_dropped_and_unknown_attributes_ignored(brevo: Brevo) -> None:
    row = {
        "email": "typed@example.com",
        "attributes": {
            "SCORE": "12",
            "OPT_IN_DATE": "2026-13-01",
            "IS_CUSTOMER": "true",
            "BRAZE_ID": "not-created-yet",
            "COMPANY": "Globex",
            "SMS": "12",
        },
    }
    start_import(brevo, [row])
    assert contact(brevo, "typed@example.com")["attributes"] == {"COMPANY": "Globex"}
    good = {
        "email": "typed2@example.com",
        "attributes": {"SCORE": 1.5, "OPT_IN_DATE": "2026-09-01", "IS_CUSTOMER": True},
    }
    start_import(brevo, [good])
    assert contact(brevo, "typed2@example.com")["attributes"] == good["attributes"]


def test_created_attribute_is_accepted_by_later_imports(brevo: Brevo) -> None:
    created = brevo.call("POST", "/contacts/attributes/normal/LOYALTY_POINTS", json={"type": "float"})
    assert created.status_code == 201
    start_import(brevo, [{"email": "points@example.com", "attributes": {"LOYALTY_POINTS": 40}}])
    assert contact(brevo, "points@example.com")["attributes"] == {"LOYALTY_POINTS": 40}


# ---------------------------------------------------------------------------- existing contacts
def test_existing_contacts_are_merged_by_default(brevo: Brevo) -> None:
    create(brevo, email="merge@example.com", attributes={"FIRSTNAME": "Keep", "COMPANY": "Acme"}, listIds=[3])
    pid = start_import(
        brevo, [{"email": "MERGE@example.com", "attributes": {"COMPANY": "Hooli", "EXT_ID": "m-1"}}]
    )
    merged = contact(brevo, "m-1", "ext_id")
    assert merged["attributes"] == {"FIRSTNAME": "Keep", "COMPANY": "Hooli", "EXT_ID": "m-1"}
    assert merged["listIds"] == [2, 3]
    assert (imported(brevo, pid)["created"], imported(brevo, pid)["updated"]) == (0, 1)


def test_a_row_without_email_is_matched_by_ext_id_then_by_sms(brevo: Brevo) -> None:
    by_ext = create(brevo, email="ext-owner@example.com", ext_id="only-ext")
    by_sms = create(brevo, email="sms-owner@example.com", attributes={"SMS": "+33655555555"})
    start_import(
        brevo,
        [
            {"attributes": {"EXT_ID": "only-ext", "COMPANY": "ByExt"}},
            {"attributes": {"SMS": "0033655555555", "COMPANY": "BySms"}},
        ],
    )
    assert contact(brevo, str(by_ext))["attributes"]["COMPANY"] == "ByExt"
    assert contact(brevo, str(by_sms))["attributes"]["COMPANY"] == "BySms"


def test_update_existing_contacts_false_leaves_them_alone(brevo: Brevo) -> None:
    create(brevo, email="stay@example.com", attributes={"FIRSTNAME": "Stay"})
    pid = start_import(
        brevo,
        [
            {"email": "stay@example.com", "attributes": {"FIRSTNAME": "Changed"}},
            {"email": "fresh@example.com"},
        ],
        updateExistingContacts=False,
    )
    assert contact(brevo, "stay@example.com")["attributes"]["FIRSTNAME"] == "Stay"
    assert contact(brevo, "stay@example.com")["listIds"] == []
    assert contact(brevo, "fresh@example.com")["listIds"] == [2]
    assert imported(brevo, pid)["skipped_existing"] == 1


@pytest.mark.parametrize(
    ("erase", "expected"), [(False, {"FIRSTNAME": "Full", "COMPANY": "Acme"}), (True, {"COMPANY": "Acme"})]
)
def test_empty_values_erase_only_with_empty_contacts_attributes(
    brevo: Brevo, erase: bool, expected: dict[str, Any]
) -> None:
    create(brevo, email="empty@example.com", attributes={"FIRSTNAME": "Full", "COMPANY": "Acme"})
    start_import(
        brevo,
        [{"email": "empty@example.com", "attributes": {"FIRSTNAME": ""}}],
        emptyContactsAttributes=erase,
    )
    assert contact(brevo, "empty@example.com")["attributes"] == expected


def test_email_blacklist_blocklists_every_imported_contact(brevo: Brevo) -> None:
    create(brevo, email="was-fine@example.com")
    start_import(
        brevo,
        [{"email": "was-fine@example.com"}, {"email": "new-one@example.com"}],
        emailBlacklist=True,
        smsBlacklist=True,
    )
    for email in ("was-fine@example.com", "new-one@example.com"):
        found = contact(brevo, email)
        assert found["emailBlacklisted"] is True and found["smsBlacklisted"] is True


def test_without_email_blacklist_an_import_never_touches_the_blocklist(brevo: Brevo) -> None:
    create(brevo, email="blocked@example.com", emailBlacklisted=True, ext_id="blk")
    start_import(
        brevo, [{"attributes": {"EXT_ID": "blk", "COMPANY": "Acme"}}, {"email": "blocked@example.com"}]
    )
    found = contact(brevo, "blk", "ext_id")
    assert found["attributes"]["COMPANY"] == "Acme" and found["emailBlacklisted"] is True


def test_an_import_bumps_modified_at_even_without_change(brevo: Brevo) -> None:
    cid = create(brevo, email="same@example.com", attributes={"FIRSTNAME": "Same"}, listIds=[2])
    brevo.clock.now += 42
    start_import(brevo, [{"email": "same@example.com", "attributes": {"FIRSTNAME": "Same"}}])
    assert parse_ts(contact(brevo, str(cid))["modifiedAt"]) == int(brevo.clock.now * 1000)


# ---------------------------------------------------------------------------- duplicates
def test_identifiers_of_another_contact_are_counted_and_the_row_skipped(brevo: Brevo) -> None:
    create(brevo, email="owner-a@example.com", attributes={"FIRSTNAME": "A"})
    create(brevo, email="owner-b@example.com", ext_id="ext-b", attributes={"SMS": "+33677777777"})
    rows = [
        {"email": "owner-a@example.com", "attributes": {"EXT_ID": "ext-b", "FIRSTNAME": "Clash"}},
        {"email": "owner-a@example.com", "attributes": {"SMS": "0033677777777"}},
    ]
    pid = start_import(brevo, rows)
    assert counters(brevo, pid)["duplicate_ext_id"] == 1
    # The second row repeats an e-mail of this import: counted under duplicate_email_id.
    assert imported(brevo, pid)["counters"]["duplicate_email_id"] == 1
    assert contact(brevo, "owner-a@example.com")["attributes"] == {"FIRSTNAME": "A"}


def test_phone_of_another_contact_is_a_duplicate_phone(brevo: Brevo) -> None:
    create(brevo, email="phone-owner@example.com", attributes={"SMS": "+33688888888"})
    # A new e-mail is a new contact: the phone it brings belongs to someone else.
    pid = start_import(brevo, [{"email": "other@example.com", "attributes": {"SMS": "33688888888"}}])
    assert counters(brevo, pid)["duplicate_phone_id"] == 1
    assert brevo.call("GET", "/contacts/other%40example.com").status_code == 404
    assert contact(brevo, "phone-owner@example.com")["attributes"] == {"SMS": "+33688888888"}


def test_repeated_emails_in_one_file_are_reported_as_a_csv_link(brevo: Brevo) -> None:
    rows: list[dict[str, Any]] = [
        {"email": "twice@example.com", "attributes": {"FIRSTNAME": "First"}},
        {"email": "TWICE@example.com"},
    ]
    pid = start_import(brevo, rows)
    link = counters(brevo, pid)["duplicate_email_id"]
    assert isinstance(link, str) and link.startswith(brevo.server.public_base)
    csv = brevo.http.get(link, timeout=10)
    assert csv.status_code == 200
    assert csv.text.splitlines() == ["email", "twice@example.com"]
    assert contact(brevo, "twice@example.com")["attributes"] == {"FIRSTNAME": "First"}


# ---------------------------------------------------------------------------- refused imports
def test_body_above_10_mb_is_refused_and_logged(brevo: Brevo) -> None:
    rows = [{"email": f"big{i}@example.com", "attributes": {"COMPANY": "x" * 1000}} for i in range(10_500)]
    response = brevo.call("POST", "/contacts/import", json={"jsonBody": rows, "listIds": [2]})
    assert response.status_code == 400
    assert [v["endpoint"] for v in brevo.violations()] == ["POST /contacts/import"]
    assert brevo.call("GET", "/contacts/big1%40example.com").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"fileBody": "EMAIL\na@example.com", "listIds": [2]}, 400, "invalid_parameter"),
        ({"fileUrl": "https://files.example/contacts.csv", "listIds": [2]}, 400, "invalid_parameter"),
        ({"listIds": [2]}, 400, "missing_parameter"),
        ({"jsonBody": [], "listIds": [2]}, 400, "invalid_parameter"),
        ({"jsonBody": [{"email": "a@example.com"}]}, 400, "missing_parameter"),
        ({"jsonBody": [{"email": "a@example.com"}], "listIds": [404]}, 404, "document_not_found"),
        (
            {"jsonBody": [{"email": "a@example.com"}], "listIds": [2], "emailBlacklist": "yes"},
            400,
            "invalid_parameter",
        ),
    ],
)
def test_malformed_imports_are_refused(brevo: Brevo, body: dict[str, Any], status: int, code: str) -> None:
    response = brevo.call("POST", "/contacts/import", json=body)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert len(brevo.app.world.processes) == 1  # only the seeded one


def test_file_imports_are_explained_as_unsupported(brevo: Brevo) -> None:
    response = brevo.call(
        "POST", "/contacts/import", json={"fileUrl": "https://x.example/a.csv", "listIds": [2]}
    )
    assert "jsonBody" in response.json()["message"]


def test_new_list_is_created_for_the_import(brevo: Brevo) -> None:
    pid = start_import(
        brevo, [{"email": "nl@example.com"}], listIds=None, newList={"listName": "Imported", "folderId": 1}
    )
    list_id = imported(brevo, pid)["list_ids"][0]
    assert brevo.call("GET", f"/contacts/lists/{list_id}").json()["name"] == "Imported"
    assert contact(brevo, "nl@example.com")["listIds"] == [list_id]


# ---------------------------------------------------------------------------- processes
def test_processes_list_pages_and_caps_the_limit(brevo: Brevo) -> None:
    pids = [start_import(brevo, [{"email": f"p{i}@example.com"}]) for i in range(3)]
    listing = brevo.call("GET", "/processes", params={"limit": 2})
    assert listing.status_code == 200
    assert listing.json()["count"] == 4
    assert [p["id"] for p in listing.json()["processes"]] == [pids[2], pids[1]]
    asc = brevo.call("GET", "/processes", params={"limit": 50, "sort": "asc", "offset": 1}).json()
    assert [p["id"] for p in asc["processes"]] == pids
    refused = brevo.call("GET", "/processes", params={"limit": 51})
    assert refused.status_code == 400
    assert [v["endpoint"] for v in brevo.violations()] == ["GET /processes"]


def test_unknown_process_is_404(brevo: Brevo) -> None:
    response = brevo.call("GET", "/processes/999")
    assert response.status_code == 404
    assert response.json()["code"] == "document_not_found"


def test_processes_draw_on_the_hourly_bucket_and_imports_on_contacts(brevo: Brevo) -> None:
    brevo.server.set_limits("enforce")
    pid = start_import(brevo, [{"email": "bucket@example.com"}])
    assert brevo.call("GET", f"/processes/{pid}").headers["x-sib-ratelimit-limit"] == "100"
    again = brevo.call(
        "POST", "/contacts/import", json={"jsonBody": [{"email": "b2@example.com"}], "listIds": [2]}
    )
    assert again.headers["x-sib-ratelimit-limit"] == "10"
