"""The Braze emulator's user endpoints over HTTP: /users/track, /users/export/ids, /users/delete, auth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tajo_braze.sandbox import Sandbox


class Braze:
    """A tiny client for one sandbox: the Braze API with a chosen key, and the Braze admin routes."""

    def __init__(self, sandbox: Sandbox, key: str | None = None) -> None:
        self.sandbox = sandbox
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key or sandbox.keys.braze}"

    def post(self, path: str, body: Any) -> requests.Response:
        return self.http.post(self.sandbox.braze_url + path, json=body, timeout=10)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(self.sandbox.braze_url + path, params=params, timeout=10)

    def admin(self, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
        url = f"{self.sandbox.admin_url}/braze/{path}"
        return requests.request(method, url, json=body, params=params, timeout=10)

    def user(self, external_id: str) -> dict[str, Any]:
        answer = self.admin("GET", f"users/{external_id}")
        assert answer.status_code == 200, answer.text
        user: dict[str, Any] = answer.json()
        return user

    def user_count(self) -> int:
        return int(self.admin("GET", "summary").json()["users"])

    def track(self, **arrays: Any) -> dict[str, Any]:
        answer = self.post("/users/track", arrays)
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body


def violations_of(sandbox: Sandbox, endpoint: str) -> list[dict[str, Any]]:
    return [v for v in sandbox.violations() if v.get("endpoint") == endpoint and "detail" in v]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(users=300, limits="off") as sb:
        yield sb


@pytest.fixture
def braze(sandbox: Sandbox) -> Braze:
    return Braze(sandbox)


def known_users(braze: Braze, count: int) -> list[dict[str, Any]]:
    """Seeded users that have an external_id, a valid-looking email and numeric loyalty points."""
    users = braze.admin("GET", "users", limit=300).json()["users"]
    chosen = [
        u
        for u in users
        if u.get("external_id")
        and u.get("email", "").count("@") == 1
        and " " not in u["email"]
        and isinstance(u["custom_attributes"].get("loyalty_points"), int)
    ]
    assert len(chosen) >= count
    return chosen[:count]


# ---------------------------------------------------------------------------- /users/track attributes
def test_track_merges_attributes_and_keeps_the_rest(braze: Braze) -> None:
    user = known_users(braze, 1)[0]
    ext = user["external_id"]
    answer = braze.track(attributes=[{"external_id": ext, "first_name": "Zed", "favorite_color": "teal"}])
    assert answer == {"message": "success", "attributes_processed": 1}
    after = braze.user(ext)
    assert after["first_name"] == "Zed"
    assert after["last_name"] == user["last_name"]
    assert after["custom_attributes"]["favorite_color"] == "teal"
    assert after["custom_attributes"]["loyalty_points"] == user["custom_attributes"]["loyalty_points"]
    assert after["updated_at"] > user["updated_at"]


def test_track_null_removes_standard_and_custom_attributes(braze: Braze) -> None:
    ext = known_users(braze, 1)[0]["external_id"]
    braze.track(attributes=[{"external_id": ext, "first_name": None, "loyalty_points": None}])
    after = braze.user(ext)
    assert "first_name" not in after
    assert "loyalty_points" not in after["custom_attributes"]


def test_track_simple_array_add_and_remove(braze: Braze) -> None:
    ext = known_users(braze, 1)[0]["external_id"]
    braze.track(attributes=[{"external_id": ext, "favorite_categories": ["shoes", "home"]}])
    braze.track(
        attributes=[
            {"external_id": ext, "favorite_categories": {"add": ["tea", "shoes"], "remove": ["home"]}}
        ]
    )
    # Arrays hold unique values; re-adding one moves it to the end.
    assert braze.user(ext)["custom_attributes"]["favorite_categories"] == ["tea", "shoes"]


def test_track_inc_adds_to_numbers_and_starts_missing_ones(braze: Braze) -> None:
    user = known_users(braze, 1)[0]
    ext, points = user["external_id"], user["custom_attributes"]["loyalty_points"]
    answer = braze.track(
        attributes=[{"external_id": ext, "loyalty_points": {"inc": 5}, "visits": {"inc": 2}}],
    )
    assert "errors" not in answer
    after = braze.user(ext)["custom_attributes"]
    assert after["loyalty_points"] == points + 5
    assert after["visits"] == 2


def test_track_inc_on_a_string_value_is_an_error_item(braze: Braze) -> None:
    ext = known_users(braze, 1)[0]["external_id"]
    braze.track(attributes=[{"external_id": ext, "loyalty_points": "lots"}])
    answer = braze.track(attributes=[{"external_id": ext, "loyalty_points": {"inc": 1}}])
    assert answer["attributes_processed"] == 0
    assert answer["errors"][0]["input_array"] == "attributes"
    assert braze.user(ext)["custom_attributes"]["loyalty_points"] == "lots"


def test_track_nested_objects_replace_unless_merge_objects(braze: Braze) -> None:
    ext = known_users(braze, 1)[0]["external_id"]
    braze.track(attributes=[{"external_id": ext, "address": {"city": "Lyon", "zip": "69002"}}])
    braze.track(attributes=[{"external_id": ext, "address": {"street": "Rue A"}}])
    assert braze.user(ext)["custom_attributes"]["address"] == {"street": "Rue A"}
    braze.track(attributes=[{"external_id": ext, "_merge_objects": True, "address": {"city": "Nice"}}])
    assert braze.user(ext)["custom_attributes"]["address"] == {"street": "Rue A", "city": "Nice"}


def test_track_null_inside_a_nested_object_drops_nested_updates_silently(braze: Braze) -> None:
    ext = known_users(braze, 1)[0]["external_id"]
    braze.track(attributes=[{"external_id": ext, "address": {"city": "Lyon"}}])
    answer = braze.track(
        attributes=[{"external_id": ext, "address": {"city": None}, "profile": {"a": 1}, "nickname": "Z"}]
    )
    assert answer["attributes_processed"] == 1 and "errors" not in answer
    custom = braze.user(ext)["custom_attributes"]
    assert custom["address"] == {"city": "Lyon"}
    assert "profile" not in custom
    assert custom["nickname"] == "Z"  # flat attributes of the same object still apply


def test_track_email_subscribe_accepts_only_the_three_states(braze: Braze) -> None:
    ext = known_users(braze, 1)[0]["external_id"]
    answer = braze.track(
        attributes=[
            {"external_id": ext, "email_subscribe": "unsubscribed"},
            {"external_id": ext, "push_subscribe": "yes please"},
        ]
    )
    assert answer["attributes_processed"] == 1
    assert [(e["input_array"], e["index"]) for e in answer["errors"]] == [("attributes", 1)]
    assert braze.user(ext)["email_subscribe"] == "unsubscribed"


def test_track_email_subscribe_by_external_id_reaches_profiles_sharing_the_email(braze: Braze) -> None:
    braze.track(
        attributes=[
            {"external_id": "share-a", "email": "shared@example.com"},
            {"external_id": "share-b", "email": "shared@example.com"},
        ]
    )
    braze.track(attributes=[{"external_id": "share-a", "email_subscribe": "unsubscribed"}])
    assert braze.user("share-b")["email_subscribe"] == "unsubscribed"
    listed = braze.get("/email/unsubscribes", end_date="2999-01-01", email="shared@example.com").json()
    assert [e["email"] for e in listed["emails"]] == ["shared@example.com"]


def test_track_reports_bad_objects_by_index_and_applies_the_others(braze: Braze) -> None:
    a, b = (u["external_id"] for u in known_users(braze, 2))
    answer = braze.track(
        attributes=[
            {"external_id": a, "home_city": "Oslo"},
            {"first_name": "nobody"},
            {"external_id": b, "email": "no-at-sign"},
            {"external_id": b, "motto": "x" * 256},
            {"external_id": b, "home_city": "Bergen"},
            {"external_id": b, "email": "has space@example.com"},
        ]
    )
    assert answer["message"] == "success"
    assert answer["attributes_processed"] == 2
    assert [e["index"] for e in answer["errors"]] == [1, 2, 3, 5]
    assert all(e["input_array"] == "attributes" and e["type"] for e in answer["errors"])
    assert braze.user(a)["home_city"] == "Oslo"
    after_b = braze.user(b)
    assert after_b["home_city"] == "Bergen"
    assert "motto" not in after_b["custom_attributes"]
    assert after_b["email"].count("@") == 1


def test_track_76_objects_is_refused_whole_and_logged(braze: Braze, sandbox: Sandbox) -> None:
    before = braze.user_count()
    objects = [{"external_id": f"bulk-{i}", "first_name": "B"} for i in range(76)]
    answer = braze.post("/users/track", {"attributes": objects})
    assert answer.status_code == 400
    assert answer.json()["message"] == "Max Input Length Exceeded"
    assert braze.user_count() == before
    assert len(violations_of(sandbox, "POST /users/track")) == 1
    ok = braze.post("/users/track", {"attributes": objects[:75], "events": []})
    assert ok.status_code == 201 and ok.json()["attributes_processed"] == 75


def test_track_contract_cap_counts_objects_combined() -> None:
    with Sandbox(users=50, limits="off", track_objects_cap=50) as sb:
        braze = Braze(sb)
        attrs = [{"external_id": f"c-{i}", "first_name": "C"} for i in range(30)]
        events = [{"external_id": f"c-{i}", "name": "e", "time": "2024-01-01T00:00:00Z"} for i in range(21)]
        refused = braze.post("/users/track", {"attributes": attrs, "events": events})
        assert refused.status_code == 400
        assert refused.json()["message"] == "Max Input Length Exceeded"
        assert len(violations_of(sb, "POST /users/track")) == 1
        accepted = braze.post("/users/track", {"attributes": attrs, "events": events[:20]})
        assert accepted.status_code == 201
        assert accepted.json()["events_processed"] == 20


def test_track_body_above_4_mb_is_413(braze: Braze, sandbox: Sandbox) -> None:
    padding = "p" * 200
    objects = [{"external_id": f"big-{i}", **{f"k{j}": padding for j in range(300)}} for i in range(75)]
    answer = braze.post("/users/track", {"attributes": objects})
    assert answer.status_code == 413
    assert violations_of(sandbox, "POST /users/track")[0]["detail"].startswith("request body of")


def test_track_without_any_data_is_400(braze: Braze) -> None:
    assert braze.post("/users/track", {"attributes": []}).status_code == 400
    assert braze.post("/users/track", {"attributes": {"external_id": "x"}}).status_code == 400


# ---------------------------------------------------------------------------- identities
def test_alias_writes_are_update_only_unless_told_otherwise(braze: Braze) -> None:
    alias = {"alias_name": "c-981", "alias_label": "brevo_contact_id"}
    before = braze.user_count()
    skipped = braze.track(attributes=[{"user_alias": alias, "first_name": "Ali"}])
    assert skipped["attributes_processed"] == 1  # accepted, then dropped silently like Braze
    assert braze.user_count() == before
    braze.track(attributes=[{"user_alias": alias, "_update_existing_only": False, "first_name": "Ali"}])
    assert braze.user_count() == before + 1
    braze.track(attributes=[{"user_alias": alias, "last_name": "Baba"}])  # now it exists: updated
    found = braze.post(
        "/users/export/ids",
        {"user_aliases": [alias], "fields_to_export": ["first_name", "last_name", "user_aliases"]},
    ).json()
    assert found["users"] == [{"first_name": "Ali", "last_name": "Baba", "user_aliases": [alias]}]


def test_update_existing_only_skips_unknown_external_ids(braze: Braze) -> None:
    before = braze.user_count()
    braze.track(attributes=[{"external_id": "ghost-1", "_update_existing_only": True, "first_name": "G"}])
    assert braze.user_count() == before
    braze.track(attributes=[{"external_id": "ghost-1", "first_name": "G"}])  # omitted: upsert
    assert braze.user("ghost-1")["first_name"] == "G"


def test_email_identifier_updates_the_recent_identified_profile_or_creates_email_only(braze: Braze) -> None:
    braze.track(attributes=[{"email": "walkin@example.com", "first_name": "Walk"}])
    created = braze.post(
        "/users/export/ids",
        {
            "email_address": "walkin@example.com",
            "fields_to_export": ["external_id", "first_name", "braze_id"],
        },
    ).json()["users"]
    assert len(created) == 1 and "external_id" not in created[0] and created[0]["first_name"] == "Walk"
    braze.track(attributes=[{"external_id": "walk-1", "email": "walkin@example.com"}])
    braze.track(attributes=[{"email": "walkin@example.com", "last_name": "Er"}])
    # The identified profile is preferred over the email-only one.
    assert braze.user("walk-1")["last_name"] == "Er"
    both = braze.post(
        "/users/export/ids",
        {"email_address": "walkin@example.com", "fields_to_export": ["external_id", "last_name"]},
    ).json()["users"]
    assert sorted(u.get("external_id", "") for u in both) == ["", "walk-1"]


# ---------------------------------------------------------------------------- events and purchases
def test_events_are_appended_every_time_they_are_sent(braze: Braze) -> None:
    ext = known_users(braze, 1)[0]["external_id"]
    event = {
        "external_id": ext,
        "name": "order_placed",
        "time": "2024-05-01T10:00:00Z",
        "properties": {"id": "A1"},
    }
    for _ in range(2):
        assert braze.track(events=[event]) == {"message": "success", "events_processed": 1}
    logged = braze.admin("GET", "events", external_id=ext).json()["events"]
    assert [e["name"] for e in logged] == ["order_placed", "order_placed"]
    exported = braze.post(
        "/users/export/ids", {"external_ids": [ext], "fields_to_export": ["custom_events"]}
    ).json()
    assert exported["users"][0]["custom_events"][0]["count"] == 2


def test_event_validation_errors_are_items(braze: Braze) -> None:
    ext = known_users(braze, 1)[0]["external_id"]
    answer = braze.track(
        events=[
            {"external_id": ext, "name": "ok", "time": "2024-05-01T10:00:00Z"},
            {"external_id": ext, "name": "no_time"},
            {"external_id": ext, "time": "2024-05-01T10:00:00Z"},
            {"external_id": ext, "name": "bad", "time": "2024-05-01T10:00:00Z", "properties": {"time": 1}},
            {
                "external_id": ext,
                "name": "bad",
                "time": "2024-05-01T10:00:00Z",
                "properties": {"event_name": "x"},
            },
        ]
    )
    assert answer["events_processed"] == 1
    assert [(e["input_array"], e["index"]) for e in answer["errors"]] == [("events", i) for i in (1, 2, 3, 4)]


def test_future_event_times_are_clamped_to_now(braze: Braze) -> None:
    ext = known_users(braze, 1)[0]["external_id"]
    braze.track(events=[{"external_id": ext, "name": "later", "time": "2999-01-01T00:00:00Z"}])
    logged = braze.admin("GET", "events", external_id=ext).json()["events"]
    assert logged[0]["time"] < "2999"


def test_purchases_add_revenue_and_validate_fields(braze: Braze) -> None:
    user = known_users(braze, 1)[0]
    ext = user["external_id"]
    purchase = {
        "external_id": ext,
        "product_id": "Completed Order",
        "currency": "EUR",
        "price": 10.5,
        "time": "2024-05-01T10:00:00Z",
    }
    answer = braze.track(
        purchases=[
            {**purchase, "quantity": 2},
            {**purchase, "quantity": 101},
            {**purchase, "currency": "EURO"},
            {k: v for k, v in purchase.items() if k != "price"},
        ]
    )
    assert answer["purchases_processed"] == 1
    assert [e["index"] for e in answer["errors"]] == [1, 2, 3]
    after = braze.user(ext)
    assert after["total_revenue"] == pytest.approx(user.get("total_revenue", 0.0) + 21.0)
    assert after["purchases"][0]["quantity"] == 2


# ---------------------------------------------------------------------------- /users/export/ids
def test_export_ids_returns_only_requested_fields_and_names_unknown_ids(braze: Braze) -> None:
    users = known_users(braze, 3)
    ids = [u["external_id"] for u in users] + ["nobody-here"]
    answer = braze.post(
        "/users/export/ids", {"external_ids": ids, "fields_to_export": ["external_id", "email"]}
    )
    assert answer.status_code == 201
    body = answer.json()
    assert body["message"] == "success"
    assert body["invalid_user_ids"] == ["nobody-here"]
    assert body["users"] == [{"external_id": u["external_id"], "email": u["email"]} for u in users]


def test_export_ids_needs_fields_to_export_and_at_most_50_ids(braze: Braze, sandbox: Sandbox) -> None:
    missing = braze.post("/users/export/ids", {"external_ids": ["a"]})
    assert missing.status_code == 400
    assert "fields_to_export" in missing.json()["message"]
    unknown_field = braze.post(
        "/users/export/ids", {"external_ids": ["a"], "fields_to_export": ["shoe_size"]}
    )
    assert unknown_field.status_code == 400
    ids = [f"id-{i}" for i in range(50)]
    ok = braze.post("/users/export/ids", {"external_ids": ids, "fields_to_export": ["email"]})
    assert ok.status_code == 201 and len(ok.json()["invalid_user_ids"]) == 50
    too_many = braze.post(
        "/users/export/ids",
        {
            "external_ids": ids,
            "user_aliases": [{"alias_name": "x", "alias_label": "y"}],
            "fields_to_export": ["email"],
        },
    )
    assert too_many.status_code == 400
    assert too_many.json()["message"] == "The max number of external_ids and aliases per request was exceeded"
    assert len(violations_of(sandbox, "POST /users/export/ids")) == 1


# ---------------------------------------------------------------------------- /users/delete
def test_delete_removes_users_and_refuses_more_than_50(braze: Braze, sandbox: Sandbox) -> None:
    users = known_users(braze, 2)
    before = braze.user_count()
    answer = braze.post("/users/delete", {"external_ids": [u["external_id"] for u in users] + ["nobody"]})
    assert answer.status_code == 201
    assert answer.json() == {"deleted": 2, "message": "success"}
    assert braze.user_count() == before - 2
    assert braze.admin("GET", f"users/{users[0]['external_id']}").status_code == 404
    refused = braze.post("/users/delete", {"external_ids": [f"x{i}" for i in range(51)]})
    assert refused.status_code == 400
    assert len(violations_of(sandbox, "POST /users/delete")) == 1


# ---------------------------------------------------------------------------- auth
def test_missing_unknown_and_quoted_keys_are_401_without_echoing_the_key(sandbox: Sandbox) -> None:
    url = sandbox.braze_url + "/segments/list"
    secret = "abc-not-a-real-key-123"
    answers = [
        requests.get(url, timeout=10),
        requests.get(url, headers={"Authorization": f"Bearer {secret}"}, timeout=10),
        requests.get(url, headers={"Authorization": f'Bearer "{sandbox.keys.braze}"'}, timeout=10),
    ]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.json()["message"].startswith("Invalid API key")
        assert secret not in answer.text and sandbox.keys.braze not in answer.text


def test_a_key_without_the_permission_gets_403_access_denied(sandbox: Sandbox) -> None:
    readonly = Braze(sandbox, sandbox.keys.braze_readonly)
    denied = readonly.post("/users/track", {"attributes": [{"external_id": "x", "first_name": "y"}]})
    assert denied.status_code == 403
    assert denied.json() == {"message": "Access Denied"}
    assert readonly.get("/segments/list").status_code == 200


# ---------------------------------------------------------------------------- admin
def test_admin_changes_users_like_an_app_and_bumps_updated_at(braze: Braze) -> None:
    users = known_users(braze, 2)
    changes = [{"external_id": u["external_id"], "first_name": f"Changed {i}"} for i, u in enumerate(users)]
    answer = braze.admin(
        "POST", "users", {"users": [*changes, {"external_id": "brand-new", "first_name": "New"}]}
    )
    assert answer.json() == {"created": 1, "updated": 2, "unchanged": 0, "skipped": 0, "errors": []}
    for i, user in enumerate(users):
        after = braze.user(user["external_id"])
        assert after["first_name"] == f"Changed {i}"
        assert after["updated_at"] > user["updated_at"]
    again = braze.admin("POST", "users", {"users": changes}).json()
    assert again["unchanged"] == 2
    assert braze.admin("DELETE", "users/brand-new").status_code == 200
    assert braze.admin("GET", "users/brand-new").status_code == 404
