"""Email and subscription endpoints, catalogs, rate-limit headers and state snapshots, over HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests

from tajo_braze.sandbox import Sandbox


class Api:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {sandbox.keys.braze}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(self.sandbox.braze_url + path, params=params, timeout=10)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.http.post(self.sandbox.braze_url + path, json=body, timeout=10)

    def admin(self, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
        return requests.request(
            method, f"{self.sandbox.admin_url}/braze/{path}", json=body, params=params, timeout=10
        )

    def violations(self, endpoint: str) -> list[dict[str, Any]]:
        return [v for v in self.sandbox.violations() if v.get("endpoint") == endpoint and "detail" in v]

    def groups(self) -> dict[str, dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = self.admin("GET", "summary").json()["subscription_groups"]
        return groups

    def group_id(self, name: str) -> str:
        return next(gid for gid, g in self.groups().items() if g["name"] == name)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(users=2000, limits="off") as sb:
        yield sb


@pytest.fixture
def api(sandbox: Sandbox) -> Api:
    return Api(sandbox)


def all_pages(api: Api, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Raise offset by limit until a page comes back short, as the Braze docs say."""
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = api.get(path, limit=limit, offset=offset, **params).json()["emails"]
        out.extend(page)
        if len(page) < limit:
            return out
        offset += limit


# ---------------------------------------------------------------------------- /email/status
def test_email_status_sets_every_profile_with_the_address(api: Api) -> None:
    api.post(
        "/users/track",
        {"attributes": [{"external_id": f"twin-{i}", "email": "Twin@Example.com"} for i in range(2)]},
    )
    answer = api.post("/email/status", {"email": "twin@example.com", "subscription_state": "unsubscribed"})
    assert answer.status_code == 201 and answer.json() == {"message": "success"}
    for i in range(2):
        assert api.admin("GET", f"users/twin-{i}").json()["email_subscribe"] == "unsubscribed"


def test_email_status_is_remembered_for_addresses_not_yet_seen(api: Api) -> None:
    assert api.post("/email/status", {"email": ["later@example.com"], "subscription_state": "opted_in"}).ok
    api.post("/users/track", {"attributes": [{"external_id": "later-1", "email": "later@example.com"}]})
    assert api.admin("GET", "users/later-1").json()["email_subscribe"] == "opted_in"


def test_email_status_validates_state_and_batch_size(api: Api) -> None:
    bad_state = api.post("/email/status", {"email": "a@example.com", "subscription_state": "maybe"})
    assert bad_state.status_code == 400
    emails = [f"bulk{i}@example.com" for i in range(51)]
    too_many = api.post("/email/status", {"email": emails, "subscription_state": "subscribed"})
    assert too_many.status_code == 400
    assert len(api.violations("POST /email/status")) == 1
    assert api.post("/email/status", {"email": emails[:50], "subscription_state": "subscribed"}).ok


# ---------------------------------------------------------------------------- /email/unsubscribes
def test_unsubscribes_page_with_offset_newest_first(api: Api, sandbox: Sandbox) -> None:
    params = {"start_date": "2000-01-01", "end_date": "2999-01-01"}
    seeded = len(sandbox.braze.world.unsubscribes)
    assert seeded > 150
    listed = all_pages(api, "/email/unsubscribes", 100, **params)
    assert len(listed) == seeded
    stamps = [e["unsubscribed_at"] for e in listed]
    assert stamps == sorted(stamps, reverse=True)
    asc = all_pages(api, "/email/unsubscribes", 500, sort_direction="asc", **params)
    assert asc == listed[::-1]


def test_unsubscribes_need_end_date_and_a_start_or_email(api: Api) -> None:
    assert api.get("/email/unsubscribes", start_date="2020-01-01").status_code == 400
    assert api.get("/email/unsubscribes", end_date="2020-01-01").status_code == 400
    assert api.get("/email/unsubscribes", end_date="2020-13-01", start_date="2020-01-01").status_code == 400
    too_big = api.get("/email/unsubscribes", start_date="2020-01-01", end_date="2999-01-01", limit=501)
    assert too_big.status_code == 400
    assert len(api.violations("GET /email/unsubscribes")) == 1


def test_unsubscribes_record_changes_and_filter_by_date_and_email(api: Api) -> None:
    api.post("/users/track", {"attributes": [{"external_id": "leaver", "email": "leaver@example.com"}]})
    api.post("/users/track", {"attributes": [{"external_id": "leaver", "email_subscribe": "unsubscribed"}]})
    by_email = api.get("/email/unsubscribes", end_date="2000-01-01", email="leaver@example.com").json()[
        "emails"
    ]
    assert [e["email"] for e in by_email] == ["leaver@example.com"]
    newest = api.get("/email/unsubscribes", start_date="2000-01-01", end_date="2999-01-01", limit=1).json()
    assert newest["emails"] == by_email
    # end_date is read as midnight UTC: today's unsubscribe is not before today's midnight.
    today = by_email[0]["unsubscribed_at"][:10]
    before = api.get("/email/unsubscribes", start_date="2000-01-01", end_date=today).json()["emails"]
    assert "leaver@example.com" not in [e["email"] for e in before]


# ---------------------------------------------------------------------------- /email/hard_bounces
def test_hard_bounces_page_newest_first_and_filter_by_email(api: Api, sandbox: Sandbox) -> None:
    params = {"start_date": "2000-01-01", "end_date": "2999-01-01"}
    listed = all_pages(api, "/email/hard_bounces", 3, **params)
    assert len(listed) == len(sandbox.braze.world.hard_bounces) > 3
    stamps = [e["hard_bounced_at"] for e in listed]
    assert stamps == sorted(stamps, reverse=True)
    one = listed[-1]["email"]
    found = api.get("/email/hard_bounces", end_date="2000-01-01", email=one).json()["emails"]
    assert [e["email"] for e in found] == [one]
    assert (
        api.get("/email/hard_bounces", start_date="2000-01-01", end_date="2999-01-01", limit=600).status_code
        == 400
    )
    assert len(api.violations("GET /email/hard_bounces")) == 1


# ---------------------------------------------------------------------------- subscription groups
def test_subscription_status_set_reaches_profiles_sharing_the_email(api: Api) -> None:
    newsletter = api.group_id("Newsletter")
    api.post(
        "/users/track",
        {"attributes": [{"external_id": f"fan-{i}", "email": "fan@example.com"} for i in range(2)]},
    )
    answer = api.post(
        "/subscription/status/set",
        {
            "subscription_group_id": newsletter,
            "subscription_state": "unsubscribed",
            "email": "fan@example.com",
        },
    )
    assert answer.status_code == 201
    for i in range(2):
        groups = api.admin("GET", "subscriptions", external_id=f"fan-{i}").json()["subscription_groups"]
        assert groups == {newsletter: "unsubscribed"}
    status = api.get(
        "/subscription/status/get", subscription_group_id=newsletter, external_id=["fan-0", "nobody"]
    ).json()
    assert status["status"] == {"fan-0": "Unsubscribed", "nobody": "Unknown"}


def test_subscription_status_set_rules(api: Api) -> None:
    newsletter = api.group_id("Newsletter")
    both = api.post(
        "/subscription/status/set",
        {
            "subscription_group_id": newsletter,
            "subscription_state": "subscribed",
            "email": "a@x.io",
            "phone": "+1",
        },
    )
    assert both.status_code == 400
    assert (
        both.json()["message"]
        == "Either an email address or a phone number should be provided, but not both."
    )
    many = api.post(
        "/subscription/status/set",
        {
            "subscription_group_id": newsletter,
            "subscription_state": "subscribed",
            "external_id": [f"x{i}" for i in range(51)],
        },
    )
    assert many.status_code == 400
    assert len(api.violations("POST /subscription/status/set")) == 1
    unknown = api.post(
        "/subscription/status/set",
        {"subscription_group_id": "nope", "subscription_state": "subscribed", "external_id": "x"},
    )
    assert unknown.status_code == 400


def test_track_subscription_groups_by_external_id(api: Api) -> None:
    promos = api.group_id("Promotions")
    answer = api.post(
        "/users/track",
        {
            "attributes": [
                {
                    "external_id": "grouped",
                    "subscription_groups": [
                        {"subscription_group_id": promos, "subscription_state": "subscribed"}
                    ],
                },
                {
                    "external_id": "grouped",
                    "subscription_groups": [
                        {"subscription_group_id": "nope", "subscription_state": "subscribed"}
                    ],
                },
            ]
        },
    ).json()
    assert [e["index"] for e in answer["errors"]] == [1]
    groups = api.admin("GET", "subscriptions", external_id="grouped").json()["subscription_groups"]
    assert groups == {promos: "subscribed"}


# ---------------------------------------------------------------------------- catalogs
def test_catalog_items_page_by_link_header(api: Api, sandbox: Sandbox) -> None:
    url: str | None = sandbox.braze_url + "/catalogs/products/items"
    seen: list[str] = []
    links: list[str] = []
    while url:
        answer = api.http.get(url, timeout=10)
        assert answer.status_code == 200
        seen.extend(item["id"] for item in answer.json()["items"])
        links.append(answer.headers.get("Link", ""))
        url = answer.links.get("next", {}).get("url")
    assert len(seen) == len(set(seen)) == 120
    assert [len(link.split(",")) for link in links] == [1, 2, 1]
    assert 'rel="next"' in links[0] and 'rel="prev"' not in links[0]
    assert 'rel="prev"' in links[2] and 'rel="next"' not in links[2]
    assert base64.b64decode(links[0].split("cursor=")[1].split(">")[0]).decode() == "skip:50"
    first = api.get("/catalogs/products/items").json()["items"][0]
    assert set(first) == {"id", "name", "price", "url", "image_url", "category", "in_stock"}


def test_small_catalog_has_no_link_and_bad_cursor_is_catalog_error(api: Api) -> None:
    stores = api.get("/catalogs/stores/items")
    assert len(stores.json()["items"]) == 30 and "Link" not in stores.headers
    bad = api.get("/catalogs/products/items", cursor="bad-cursor")
    assert bad.status_code == 400
    assert bad.json() == {
        "errors": [
            {
                "id": "invalid-cursor",
                "message": "'cursor' is not valid",
                "parameters": ["cursor"],
                "parameter_values": ["bad-cursor"],
            }
        ],
        "message": "Invalid Request",
    }
    missing = api.get("/catalogs/nothing/items")
    assert missing.status_code == 404 and missing.json()["errors"][0]["id"] == "catalog-not-found"


def test_admin_catalog_edits_show_in_listing(api: Api) -> None:
    assert api.admin("POST", "catalogs/stores/items", {"items": [{"id": "store-99", "name": "Pop-up"}]}).ok
    assert api.admin("DELETE", "catalogs/stores/items/store-01").ok
    ids = [i["id"] for i in api.get("/catalogs/stores/items").json()["items"]]
    assert "store-99" in ids and "store-01" not in ids and len(ids) == 30
    catalogs = {c["name"]: c["num_items"] for c in api.get("/catalogs").json()["catalogs"]}
    assert catalogs == {"products": 120, "stores": 30}


# ---------------------------------------------------------------------------- limits, events, state
def test_rate_limit_headers_and_429_shape() -> None:
    with Sandbox(users=20, limits="enforce") as sb:
        api = Api(sb)
        first = api.get("/catalogs/products/items")
        assert first.headers["X-RateLimit-Limit"] == "50"
        assert first.headers["X-RateLimit-Remaining"] == "49"
        assert int(first.headers["X-RateLimit-Reset"]) % 60 == 0
        for _ in range(49):
            api.get("/catalogs/products/items")
        refused = api.get("/catalogs/products/items")
        assert refused.status_code == 429
        assert refused.json() == {"message": "Rate Limit Exceeded"}
        assert "Retry-After" not in refused.headers
        assert refused.headers["X-RateLimit-Remaining"] == "0"


def test_events_list_names_tracked_events(api: Api) -> None:
    event = {"external_id": "evt-user", "name": "zz_custom_event", "time": "2024-01-01T00:00:00Z"}
    api.post("/users/track", {"events": [event]})
    names = api.get("/events/list").json()["events"]
    assert names == sorted(names) and "zz_custom_event" in names and "app_open" in names


def test_state_survives_a_dump_and_load(api: Api, sandbox: Sandbox) -> None:
    api.post("/users/track", {"attributes": [{"external_id": "kept", "first_name": "Kept", "tier": "gold"}]})
    api.post(
        "/users/track", {"events": [{"external_id": "kept", "name": "e1", "time": "2024-01-01T00:00:00Z"}]}
    )
    users = api.admin("GET", "users", limit=3).json()["users"]
    seeded = next(u["external_id"] for u in users if "external_id" in u)
    api.post("/users/track", {"attributes": [{"external_id": seeded, "home_city": "Porto"}]})
    gone = next(u["external_id"] for u in users if "external_id" in u and u["external_id"] != seeded)
    api.post("/users/delete", {"external_ids": [gone]})
    api.post("/email/status", {"email": "future@example.com", "subscription_state": "unsubscribed"})
    segment = next(s for s in api.get("/segments/list").json()["segments"] if s["name"] == "vip")
    api.admin("POST", f"segments/{segment['id']}/rename", {"name": "VIPs"})
    state = sandbox.braze.dump_state()
    text = orjson.dumps(state)
    summary = api.admin("GET", "summary").json()

    with Sandbox(users=5, limits="off") as other:
        other.braze.load_state(orjson.loads(text))
        copy = Api(other)
        assert copy.admin("GET", "summary").json() == {**summary, "exports": 0}
        kept = copy.admin("GET", "users/kept").json()
        assert kept["first_name"] == "Kept" and kept["custom_attributes"]["tier"] == "gold"
        assert [e["name"] for e in kept["events"]] == ["e1"]
        assert copy.admin("GET", f"users/{seeded}").json()["home_city"] == "Porto"
        assert copy.admin("GET", f"users/{gone}").status_code == 404
        names = [s["name"] for s in copy.get("/segments/list").json()["segments"]]
        assert "VIPs" in names
        unsubscribed = copy.get("/email/unsubscribes", end_date="2000-01-01", email="future@example.com")
        assert len(unsubscribed.json()["emails"]) == 1
        assert copy.post("/users/export/ids", {}).status_code == 400  # still a working app


def test_admin_unknown_route_is_404(api: Api) -> None:
    assert api.admin("GET", "nothing/here").status_code == 404
    assert api.admin("GET", "users/not-a-user").status_code == 404
