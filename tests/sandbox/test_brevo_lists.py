"""The Brevo emulator over HTTP: contact attributes, lists, folders and list membership."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tajo_braze.sandbox.brevo import BrevoApp
from tajo_braze.sandbox.brevo_seed import seed_brevo_world
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


def members(brevo: Brevo, list_id: int) -> list[int]:
    response = brevo.call("GET", f"/contacts/lists/{list_id}/contacts", params={"limit": 500, "sort": "asc"})
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["contacts"]]


def new_list(brevo: Brevo, name: str = "Sync", folder_id: int = 1) -> int:
    response = brevo.call("POST", "/contacts/lists", json={"name": name, "folderId": folder_id})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


# ---------------------------------------------------------------------------- attributes
def test_attributes_start_without_the_connector_attributes(brevo: Brevo) -> None:
    response = brevo.call("GET", "/contacts/attributes")
    assert response.status_code == 200
    attributes = {a["name"]: a for a in response.json()["attributes"]}
    assert {"EMAIL", "SMS", "FIRSTNAME", "LASTNAME", "EXT_ID"} <= set(attributes)
    assert attributes["SCORE"] == {"name": "SCORE", "category": "normal", "type": "float"}
    assert attributes["OPT_IN_DATE"]["type"] == "date" and attributes["IS_CUSTOMER"]["type"] == "boolean"
    missing = {
        "BRAZE_ID",
        "TOTAL_REVENUE",
        "PUSH_OPTIN",
        "EMAIL_STATUS",
        "LOYALTY_POINTS",
        "APP_VERSION",
        "LANGUAGE",
    }
    assert not missing & set(attributes)


def test_create_attribute_then_duplicate_is_refused(brevo: Brevo) -> None:
    created = brevo.call("POST", "/contacts/attributes/normal/TOTAL_REVENUE", json={"type": "float"})
    assert created.status_code == 201 and created.content == b""
    listed = {a["name"]: a for a in brevo.call("GET", "/contacts/attributes").json()["attributes"]}
    assert listed["TOTAL_REVENUE"] == {"name": "TOTAL_REVENUE", "category": "normal", "type": "float"}
    again = brevo.call("POST", "/contacts/attributes/normal/total_revenue", json={"type": "text"})
    assert again.status_code == 400
    assert again.json() == {"code": "invalid_parameter", "message": "Attribute name already exists"}
    system = brevo.call("POST", "/contacts/attributes/normal/EXT_ID", json={"type": "text"})
    assert system.status_code == 400


def test_created_attribute_types_are_enforced_on_writes(brevo: Brevo) -> None:
    for name, kind in (("PUSH_OPTIN", "boolean"), ("LAST_SEEN", "date"), ("LANGUAGE", "text")):
        assert (
            brevo.call("POST", f"/contacts/attributes/normal/{name}", json={"type": kind}).status_code == 201
        )
    response = brevo.call(
        "POST",
        "/contacts",
        json={
            "email": "typed@example.com",
            "attributes": {"PUSH_OPTIN": "true", "LAST_SEEN": "2026-09-01", "LANGUAGE": "fr"},
        },
    )
    cid = response.json()["id"]
    attributes = brevo.call("GET", f"/contacts/{cid}").json()["attributes"]
    assert attributes == {"LAST_SEEN": "2026-09-01", "LANGUAGE": "fr"}


@pytest.mark.parametrize("path", ["/contacts/attributes/category/TIER", "/contacts/attributes/normal/TIER"])
def test_category_attribute_takes_enumerated_values(brevo: Brevo, path: str) -> None:
    body = {"type": "category", "enumeration": [{"value": 1, "label": "Free"}, {"value": 2, "label": "Pro"}]}
    assert brevo.call("POST", path, json=body).status_code == 201
    tier = next(
        a for a in brevo.call("GET", "/contacts/attributes").json()["attributes"] if a["name"] == "TIER"
    )
    assert tier["category"] == "category" and tier["enumeration"][1] == {"value": 2, "label": "Pro"}
    for email, value in (("one@example.com", 2), ("two@example.com", 7), ("three@example.com", "Free")):
        brevo.call("POST", "/contacts", json={"email": email, "attributes": {"TIER": value}})
    got = {
        e: brevo.call("GET", f"/contacts/{quote(e)}").json()["attributes"].get("TIER")
        for e in ("one@example.com", "two@example.com", "three@example.com")
    }
    assert got == {"one@example.com": 2, "two@example.com": None, "three@example.com": 1}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/contacts/attributes/weird/NAME", {"type": "text"}),
        ("/contacts/attributes/normal/NAME", {"type": "integer"}),
        ("/contacts/attributes/normal/NAME", {"type": "id"}),
        ("/contacts/attributes/category/NAME", {}),
        ("/contacts/attributes/normal/NAME", {"type": "category"}),
        ("/contacts/attributes/normal/NAME", {"type": "multiple-choice"}),
    ],
)
def test_invalid_attribute_definitions_are_refused(brevo: Brevo, path: str, body: dict[str, Any]) -> None:
    before = len(brevo.app.world.attributes)
    response = brevo.call("POST", path, json=body)
    assert response.status_code == 400
    assert len(brevo.app.world.attributes) == before


# ---------------------------------------------------------------------------- lists and folders
def test_seeded_folder_and_lists(brevo: Brevo) -> None:
    lists = brevo.call("GET", "/contacts/lists", params={"sort": "asc"}).json()
    assert lists["count"] == 2
    assert [(li["id"], li["name"], li["folderId"]) for li in lists["lists"]] == [
        (2, "Newsletter", 1),
        (3, "Customers", 1),
    ]
    world = brevo.app.world
    newsletter = lists["lists"][0]
    assert newsletter["uniqueSubscribers"] == len(world.list_members[2]) > 0
    assert newsletter["totalBlacklisted"] == sum(
        world.contacts[c].email_blacklisted for c in world.list_members[2]
    )
    folders = brevo.call("GET", "/contacts/folders").json()
    assert folders["count"] == 1 and folders["folders"][0]["name"] == "Marketing"


def test_list_crud(brevo: Brevo) -> None:
    list_id = new_list(brevo, "Engaged")
    detail = brevo.call("GET", f"/contacts/lists/{list_id}").json()
    assert (detail["name"], detail["folderId"], detail["uniqueSubscribers"]) == ("Engaged", 1, 0)
    assert detail["createdAt"].endswith("+01:00")
    assert brevo.call("PUT", f"/contacts/lists/{list_id}", json={"name": "Engaged users"}).status_code == 204
    both = brevo.call("PUT", f"/contacts/lists/{list_id}", json={"name": "x", "folderId": 1})
    assert both.status_code == 400
    assert brevo.call("GET", f"/contacts/lists/{list_id}").json()["name"] == "Engaged users"
    assert brevo.call("DELETE", f"/contacts/lists/{list_id}").status_code == 204
    gone = brevo.call("GET", f"/contacts/lists/{list_id}")
    assert gone.status_code == 404 and gone.json()["code"] == "document_not_found"


def test_list_creation_needs_a_name_and_an_existing_folder(brevo: Brevo) -> None:
    assert brevo.call("POST", "/contacts/lists", json={"folderId": 1}).json()["code"] == "missing_parameter"
    assert brevo.call("POST", "/contacts/lists", json={"name": "x"}).json()["code"] == "missing_parameter"
    assert brevo.call("POST", "/contacts/lists", json={"name": "x", "folderId": 77}).status_code == 404


def test_lists_page_size_is_capped_at_50(brevo: Brevo) -> None:
    for i in range(9):
        new_list(brevo, f"L{i}")
    assert len(brevo.call("GET", "/contacts/lists").json()["lists"]) == 10  # default page
    page = brevo.call("GET", "/contacts/lists", params={"limit": 50, "offset": 10}).json()
    assert page["count"] == 11 and len(page["lists"]) == 1
    refused = brevo.call("GET", "/contacts/lists", params={"limit": 51})
    assert refused.status_code == 400
    assert [v["endpoint"] for v in brevo.violations()] == ["GET /contacts/lists"]


def test_folders_crud_and_deleting_a_folder_deletes_its_lists(brevo: Brevo) -> None:
    created = brevo.call("POST", "/contacts/folders", json={"name": "Braze"})
    assert created.status_code == 201
    folder_id = created.json()["id"]
    first = new_list(brevo, "braze_a", folder_id)
    second = new_list(brevo, "braze_b", folder_id)
    in_folder = brevo.call("GET", f"/contacts/folders/{folder_id}/lists").json()
    assert in_folder["count"] == 2 and {li["id"] for li in in_folder["lists"]} == {first, second}
    assert brevo.call("PUT", f"/contacts/folders/{folder_id}", json={"name": "Braze sync"}).status_code == 204
    assert brevo.call("GET", f"/contacts/folders/{folder_id}").json()["name"] == "Braze sync"
    cid = brevo.call("POST", "/contacts", json={"email": "in-folder@example.com", "listIds": [first]}).json()[
        "id"
    ]
    assert brevo.call("DELETE", f"/contacts/folders/{folder_id}").status_code == 204
    assert brevo.call("GET", f"/contacts/lists/{first}").status_code == 404
    assert brevo.call("GET", f"/contacts/folders/{folder_id}").status_code == 404
    assert brevo.call("GET", f"/contacts/{cid}").json()["listIds"] == []


# ---------------------------------------------------------------------------- membership
@pytest.mark.parametrize("kind", ["emails", "ids", "extIds"])
def test_add_and_remove_by_each_identifier_kind(brevo: Brevo, kind: str) -> None:
    list_id = new_list(brevo)
    made = [
        brevo.call("POST", "/contacts", json={"email": f"m{i}@example.com", "ext_id": f"m-{i}"}).json()["id"]
        for i in range(3)
    ]
    values = {
        "emails": [f"m{i}@example.com" for i in range(3)],
        "ids": made,
        "extIds": [f"m-{i}" for i in range(3)],
    }[kind]
    added = brevo.call("POST", f"/contacts/lists/{list_id}/contacts/add", json={kind: values + [values[0]]})
    assert added.status_code == 201
    assert added.json() == {"contacts": {"success": values, "failure": [values[0]]}}
    assert members(brevo, list_id) == made
    removed = brevo.call("POST", f"/contacts/lists/{list_id}/contacts/remove", json={kind: values[:2]})
    assert removed.status_code == 201
    assert removed.json()["contacts"]["success"] == values[:2]
    assert members(brevo, list_id) == made[2:]


def test_add_reports_unknown_contacts_as_failures(brevo: Brevo) -> None:
    list_id = new_list(brevo)
    brevo.call("POST", "/contacts", json={"email": "known@example.com"})
    added = brevo.call(
        "POST",
        f"/contacts/lists/{list_id}/contacts/add",
        json={"emails": ["known@example.com", "ghost@example.com"]},
    )
    assert added.json()["contacts"] == {"success": ["known@example.com"], "failure": ["ghost@example.com"]}


def test_when_nothing_is_added_the_answer_is_400(brevo: Brevo) -> None:
    list_id = new_list(brevo)
    brevo.call("POST", "/contacts", json={"email": "already@example.com", "listIds": [list_id]})
    for emails in (["already@example.com"], ["ghost@example.com"]):
        response = brevo.call("POST", f"/contacts/lists/{list_id}/contacts/add", json={"emails": emails})
        assert response.status_code == 400
        assert response.json() == {
            "code": "invalid_parameter",
            "message": "Contact already in list and/or does not exist",
        }
    nothing = brevo.call(
        "POST", f"/contacts/lists/{list_id}/contacts/remove", json={"emails": ["ghost@example.com"]}
    )
    assert nothing.status_code == 400


def test_150_items_pass_and_151_are_refused_and_logged(brevo: Brevo) -> None:
    list_id = new_list(brevo)
    seeded = sorted(brevo.app.world.contacts)
    ids = (seeded * 4)[:150]
    assert brevo.call("POST", f"/contacts/lists/{list_id}/contacts/add", json={"ids": ids}).status_code == 201
    assert brevo.violations() == []
    refused = brevo.call("POST", f"/contacts/lists/{list_id}/contacts/add", json={"ids": ids + [seeded[0]]})
    assert refused.status_code == 400
    refused_remove = brevo.call(
        "POST", f"/contacts/lists/{list_id}/contacts/remove", json={"ids": ids + [seeded[0]]}
    )
    assert refused_remove.status_code == 400
    assert [v["endpoint"] for v in brevo.violations()] == [
        "POST /contacts/lists/{list_id}/contacts/add",
        "POST /contacts/lists/{list_id}/contacts/remove",
    ]
    assert members(brevo, list_id) == seeded


@pytest.mark.parametrize("body", [{}, {"emails": ["a@example.com"], "ids": [1]}, {"emails": "a@example.com"}])
def test_exactly_one_identifier_array_is_required(brevo: Brevo, body: dict[str, Any]) -> None:
    response = brevo.call("POST", "/contacts/lists/2/contacts/add", json=body)
    assert response.status_code == 400 and response.json()["code"] == "invalid_parameter"


def test_remove_all_answers_a_process_and_empties_the_list(brevo: Brevo) -> None:
    before = sorted(brevo.app.world.list_members[2])
    response = brevo.call("POST", "/contacts/lists/2/contacts/remove", json={"all": True})
    assert response.status_code == 201
    assert response.json()["contacts"]["total"] == len(before)
    pid = response.json()["contacts"]["processId"]
    assert brevo.call("GET", f"/processes/{pid}").json()["status"] == "completed"
    assert members(brevo, 2) == []
    assert all(2 not in brevo.app.world.contacts[c].list_ids for c in before)


def test_list_contacts_page_is_capped_at_500_and_unknown_list_is_404(brevo: Brevo) -> None:
    assert brevo.call("GET", "/contacts/lists/2/contacts", params={"limit": 500}).status_code == 200
    refused = brevo.call("GET", "/contacts/lists/2/contacts", params={"limit": 501})
    assert refused.status_code == 400
    assert [v["endpoint"] for v in brevo.violations()] == ["GET /contacts/lists/{list_id}/contacts"]
    assert brevo.call("GET", "/contacts/lists/99/contacts").status_code == 404


def test_list_contacts_filter_by_modified_since(brevo: Brevo) -> None:
    list_id = new_list(brevo)
    old = brevo.call("POST", "/contacts", json={"email": "old@example.com", "listIds": [list_id]}).json()[
        "id"
    ]
    brevo.clock.now += 60
    recent = brevo.call(
        "POST", "/contacts", json={"email": "recent@example.com", "listIds": [list_id]}
    ).json()["id"]
    page = brevo.call(
        "GET", f"/contacts/lists/{list_id}/contacts", params={"modifiedSince": "2026-09-21T16:14:00+02:00"}
    ).json()
    assert [c["id"] for c in page["contacts"]] == [recent] and page["count"] == 1
    assert members(brevo, list_id) == [old, recent]


def test_list_membership_through_contact_writes(brevo: Brevo) -> None:
    list_id = new_list(brevo)
    cid = brevo.call("POST", "/contacts", json={"email": "lm@example.com", "listIds": [list_id, 2]}).json()[
        "id"
    ]
    assert cid in members(brevo, list_id)
    brevo.call("PUT", f"/contacts/{cid}", json={"unlinkListIds": [list_id]})
    assert cid not in members(brevo, list_id)
    unknown = brevo.call("PUT", f"/contacts/{cid}", json={"listIds": [12345]})
    assert unknown.status_code == 404
