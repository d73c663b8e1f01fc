"""The seeded Braze world: deterministic, fast, and as awkward as real workspaces."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tajo_braze.sandbox.braze import BrazeApp
from tajo_braze.sandbox.seed import (
    BrazeWorld,
    campaign_day,
    canvas_day,
    email_key,
    email_problem,
    phone_key,
    scale_counts,
    seed_braze_world,
    segment_size_on,
)

TODAY = date(2025, 3, 14)


@pytest.fixture(scope="module")
def world() -> BrazeWorld:
    return seed_braze_world(10_000, 7, today=TODAY)


@pytest.fixture(scope="module")
def profiles(world: BrazeWorld) -> list[dict[str, Any]]:
    return list(world.users.values())


def snapshot(world: BrazeWorld) -> dict[str, Any]:
    return {
        "users": list(world.users.values()),
        "segments": [s.to_json() for s in world.segments.values()],
        "campaigns": world.campaigns,
        "canvases": world.canvases,
        "catalogs": world.catalogs,
        "unsubscribes": (world.unsubscribes.times, world.unsubscribes.emails),
        "hard_bounces": (world.hard_bounces.times, world.hard_bounces.emails),
    }


# ---------------------------------------------------------------------------- determinism and speed
def test_same_seed_same_world_and_other_seed_other_world() -> None:
    first = snapshot(seed_braze_world(1500, 11, today=TODAY))
    assert snapshot(seed_braze_world(1500, 11, today=TODAY)) == first
    other = snapshot(seed_braze_world(1500, 12, today=TODAY))
    assert other["users"] != first["users"]
    assert set(other["campaigns"]).isdisjoint(first["campaigns"])


def test_campaigns_and_segments_do_not_depend_on_the_number_of_users() -> None:
    small, large = seed_braze_world(10, 3, today=TODAY), seed_braze_world(3000, 3, today=TODAY)
    assert small.campaigns == large.campaigns
    assert small.canvases == large.canvases
    assert list(small.segments) == list(large.segments)
    assert list(large.users.values())[:10] != []


def test_ten_thousand_users_seed_well_under_a_second() -> None:
    started = time.perf_counter()
    world = seed_braze_world(10_000, 99, today=TODAY)
    assert time.perf_counter() - started < 1.0
    assert len(world.users) == 10_000


# ---------------------------------------------------------------------------- the awkward values
def share(profiles: list[dict[str, Any]], predicate: Any) -> float:
    return sum(1 for p in profiles if predicate(p)) / len(profiles)


def test_identities_are_mostly_clean_with_realistic_gaps(profiles: list[dict[str, Any]]) -> None:
    assert 0.02 <= share(profiles, lambda p: "external_id" not in p) <= 0.045
    assert 0.01 <= share(profiles, lambda p: "email" not in p) <= 0.035
    ids = [p["external_id"] for p in profiles if "external_id" in p]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"u-\d{6}-[0-9a-f]{4}", i) for i in ids)
    assert all(re.fullmatch(r"[0-9a-f]{24}", p["braze_id"]) for p in profiles)
    assert len({p["braze_id"] for p in profiles}) == len(profiles)


def test_emails_include_the_awkward_kinds(profiles: list[dict[str, Any]]) -> None:
    emails = [p["email"] for p in profiles if "email" in p]
    invalid = [e for e in emails if email_problem(e) is not None]
    assert 0.005 <= len(invalid) / len(profiles) <= 0.02
    assert any("@@" in e for e in invalid) and any("@" not in e for e in invalid)
    assert any(" " in e for e in invalid)
    valid = [e for e in emails if email_problem(e) is None]
    assert any("+" in e.split("@")[0] for e in valid)
    assert any(not e.split("@")[0].isascii() for e in valid)
    assert any(e.split("@")[1].isupper() for e in valid)
    shared = [key for key, count in Counter(email_key(e) for e in valid).items() if count > 1]
    assert len(shared) > 20


def test_phones_include_national_shared_and_unparseable_forms(profiles: list[dict[str, Any]]) -> None:
    phones = [p["phone"] for p in profiles if "phone" in p]
    assert 0.3 <= 1 - len(phones) / len(profiles) <= 0.5
    assert share([{"x": x} for x in phones], lambda p: re.fullmatch(r"\+\d{8,15}", p["x"])) > 0.5
    assert any(re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", x) for x in phones)
    assert any(re.fullmatch(r"\d{10}", x) for x in phones)
    assert any(phone_key(x) == x and not x.startswith("+") for x in phones)  # unparseable
    assert any(count > 1 for count in Counter(phone_key(x) for x in phones if x.startswith("+")).values())


def test_names_are_unicode_with_the_occasional_emoji(profiles: list[dict[str, Any]]) -> None:
    names = {p["first_name"] for p in profiles} | {p["last_name"] for p in profiles}
    assert {"José", "Zoë", "Łukasz", "山田"} <= names
    assert any(any(ord(ch) > 0x1F000 for ch in n) for n in names)


def test_standard_fields_have_braze_shapes(profiles: list[dict[str, Any]]) -> None:
    assert all(
        re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} UTC", p["created_at"]) for p in profiles
    )
    assert all(0 <= p["random_bucket"] <= 9999 for p in profiles)
    assert {p["email_subscribe"] for p in profiles} == {"opted_in", "subscribed", "unsubscribed"}
    dobs = [p["dob"] for p in profiles if "dob" in p]
    assert 0.75 < len(dobs) / len(profiles) < 0.95
    assert all(date.fromisoformat(d) for d in dobs)
    assert all(isinstance(p["total_revenue"], float) for p in profiles)
    assert all(len(p["country"]) == 2 for p in profiles if "country" in p)


def test_custom_attributes_include_wrong_types(profiles: list[dict[str, Any]]) -> None:
    points = [p["custom_attributes"].get("loyalty_points") for p in profiles]
    present = [x for x in points if x is not None]
    numeric_strings = [x for x in present if isinstance(x, str) and x.isdigit()]
    garbage = [x for x in present if isinstance(x, str) and not x.isdigit()]
    assert share([{"x": x} for x in present], lambda p: isinstance(p["x"], int)) > 0.95
    assert 0.01 <= len(numeric_strings) / len(profiles) <= 0.035
    assert 0.002 <= len(garbage) / len(profiles) <= 0.01
    custom = [p["custom_attributes"] for p in profiles]
    addresses = [c["address"] for c in custom if "address" in c]
    assert addresses and all(set(a) == {"city", "zip"} for a in addresses)
    assert any(len(c.get("favorite_categories", [])) > 1 for c in custom)
    assert all(datetime.fromisoformat(c["signup_date"]) for c in custom if "signup_date" in c)
    assert all(isinstance(c["vip"], bool) for c in custom)
    assert any(re.fullmatch(r"\d+\.\d+\.\d+", c.get("last_app_version", "")) for c in custom)


# ---------------------------------------------------------------------------- segments, campaigns, Canvases, catalogs
def test_segments_follow_their_rules(world: BrazeWorld, profiles: list[dict[str, Any]]) -> None:
    by_name = {s.name: s for s in world.segments.values()}
    assert set(by_name) == {"All Users", "engaged_users", "dormant_users", "vip", "small_test"}
    engaged = [p for p in profiles if p["email_subscribe"] != "unsubscribed" and p["random_bucket"] < 5000]
    assert by_name["engaged_users"].seeded_size == len(engaged)
    assert by_name["dormant_users"].seeded_size == sum(p["random_bucket"] >= 8000 for p in profiles)
    assert by_name["vip"].seeded_size == sum(p["custom_attributes"]["vip"] for p in profiles)
    assert by_name["All Users"].seeded_size == 10_000
    members = by_name["small_test"].members
    assert len(members) == 25 and all(world.users.slot_of_external_id(m) is not None for m in members)
    assert all(re.fullmatch(r"[0-9a-f-]{36}", s.id) for s in world.segments.values())
    assert segment_size_on(world, by_name["vip"], TODAY) == by_name["vip"].seeded_size


def test_campaigns_canvases_and_catalogs(world: BrazeWorld) -> None:
    campaigns = list(world.campaigns.values())
    assert len(campaigns) == 12
    assert sum(c["archived"] for c in campaigns) == 2 and sum(c["is_api_campaign"] for c in campaigns) == 3
    cutoff = datetime(2025, 3, 14).timestamp() - 200 * 86_400
    assert sum(1 for c in campaigns if c["last_sent"] is not None and c["last_sent"] < cutoff) >= 3
    assert len({c["last_edited"] for c in campaigns}) == 12
    canvases = list(world.canvases.values())
    assert len(canvases) == 5
    assert all(3 <= sum(not s["deleted"] for s in c["steps"]) <= 6 for c in canvases)
    assert {name: len(c["items"]) for name, c in world.catalogs.items()} == {"products": 120, "stores": 30}
    product = world.catalogs["products"]["items"]["prod-0001"]
    assert set(product) == {"id", "name", "price", "url", "image_url", "category", "in_stock"}


def test_daily_series_are_pure_functions_of_the_day(world: BrazeWorld) -> None:
    welcome = next(c for c in world.campaigns.values() if c["name"] == "Welcome Email")
    day = TODAY - timedelta(days=3)
    assert campaign_day(world, welcome, day) == campaign_day(world, welcome, day)
    assert campaign_day(world, welcome, day) != campaign_day(world, welcome, day - timedelta(days=1))
    canvas = next(iter(world.canvases.values()))
    flags = {"variant_breakdown": True, "step_breakdown": True, "include_deleted_steps": False}
    assert canvas_day(world, canvas, day, **flags) == canvas_day(world, canvas, day, **flags)
    other = seed_braze_world(10, 8, today=TODAY)
    other_welcome = next(c for c in other.campaigns.values() if c["name"] == "Welcome Email")
    assert (
        campaign_day(other, other_welcome, day)["unique_recipients"]
        != campaign_day(world, welcome, day)["unique_recipients"]
    )


def test_scale_counts_keeps_ints_and_labels() -> None:
    stats = {
        "time": "2025-01-01",
        "sent": 101,
        "revenue": 10.0,
        "messages": {"email": [{"variation_api_id": "v", "sent": 3}]},
    }
    assert scale_counts(stats, 0.5) == {
        "time": "2025-01-01",
        "sent": 50,
        "revenue": 5.0,
        "messages": {"email": [{"variation_api_id": "v", "sent": 1}]},
    }


# ---------------------------------------------------------------------------- the user table
def test_user_table_lookups_and_changes_keep_indexes_right() -> None:
    world = seed_braze_world(500, 5, today=TODAY)
    users = world.users
    slot = next(s for s in users.iter_slots() if email_problem(users.profile(s).get("email", "")) is None)
    profile = users.profile(slot)
    assert users.slot_of_external_id(profile.get("external_id", "missing")) in (slot, None)
    assert users.slot_of_braze_id(profile["braze_id"]) == slot
    assert slot in users.slots_with_email(profile["email"].upper())
    changed = dict(profile, email="moved@example.com")
    assert users.store(slot, changed, 1e10) is True
    assert users.store(slot, dict(changed), 1e10 + 1) is False  # no change, no new updated_at
    assert users.updated_at(slot) == 1e10
    assert slot not in users.slots_with_email(profile["email"])
    assert users.slots_with_email("MOVED@example.com") == [slot]
    new = users.create({"external_id": "fresh", "phone": "(415) 555-0134"}, 1e10)
    assert users.slot_of_external_id("fresh") == new
    assert users.slots_with_phone("+14155550134") == [new]
    assert len(users) == 501
    users.delete(slot)
    assert users.slot_of_braze_id(profile["braze_id"]) is None and len(users) == 500
    restored = seed_braze_world(500, 5, today=TODAY)
    restored.users.load(users.dump())
    assert list(restored.users.values()) == list(users.values())
    assert restored.users.slots_with_email("moved@example.com") == []
    assert restored.users.slot_of_external_id("fresh") == new


def test_overlap_identities_are_valid_emails_of_real_users() -> None:
    world = seed_braze_world(400, 5, today=TODAY)
    app = BrazeApp(world, keys={"k": None})
    pairs = app.overlap_identities(100)
    assert len(pairs) == 100
    assert pairs == BrazeApp(seed_braze_world(400, 5, today=TODAY), keys={"k": None}).overlap_identities(100)
    for email, external_id in pairs:
        assert email is not None and email_problem(email) is None
        slots = world.users.slots_with_email(email)
        assert any(world.users.profile(s).get("external_id") == external_id for s in slots)
    assert any(ext is None for _, ext in app.overlap_identities(400))
    app.close()


# ---------------------------------------------------------------------------- identities
def test_phone_key_reads_10_digits_as_us_and_strips_formatting() -> None:
    assert phone_key("(415) 555-0134") == "+14155550134"
    assert phone_key("4155550134") == "+14155550134"
    assert phone_key("+33 6 12 34 56 78") == "+33612345678"
    assert phone_key(" n/a ") == "n/a"


@given(st.text(max_size=30))
def test_phone_key_is_idempotent(text: str) -> None:
    assert phone_key(phone_key(text)) == phone_key(text)


@given(st.text(max_size=40))
def test_email_problem_never_raises_and_rejects_whitespace(text: str) -> None:
    problem = email_problem(text)
    if any(ch.isspace() for ch in text):
        assert problem is not None


def test_email_problem_examples() -> None:
    assert email_problem("ana+promo@example.com") is None
    assert email_problem("zoë@example.fr") is None
    assert email_problem("ana@EXAMPLE.COM") is None
    for bad in ("bob@@example", "no-at-sign", "a b@example.com", "x@", "@example.com", "a@münchen.de"):
        assert email_problem(bad) is not None
