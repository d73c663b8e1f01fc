"""Segments, campaigns and Canvases over HTTP: listings, details and deterministic data series."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests

from tajo_braze.sandbox import Sandbox

HOUR = 3600.0


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Api:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {sandbox.keys.braze}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(self.sandbox.braze_url + path, params=params, timeout=10)

    def ok(self, path: str, **params: Any) -> dict[str, Any]:
        answer = self.get(path, **params)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def campaign(self, name: str) -> dict[str, Any]:
        listed = self.ok("/campaigns/list", include_archived="true")["campaigns"]
        found: dict[str, Any] = next(c for c in listed if c["name"] == name)
        return found

    def canvas(self, name: str) -> dict[str, Any]:
        listed = self.ok("/canvas/list", include_archived="true")["canvases"]
        found: dict[str, Any] = next(c for c in listed if c["name"] == name)
        return found

    def violations(self, endpoint: str) -> list[dict[str, Any]]:
        return [v for v in self.sandbox.violations() if v.get("endpoint") == endpoint and "detail" in v]


def midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def today_of(sandbox: Sandbox) -> date:
    return date.fromisoformat(requests.get(sandbox.admin_url + "/braze/summary", timeout=10).json()["today"])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> Iterator[Sandbox]:
    with Sandbox(users=300, limits="off", clock=clock) as sb:
        clock.now = midnight(today_of(sb)) + 12 * HOUR  # noon on the world's "today"
        yield sb


@pytest.fixture
def api(sandbox: Sandbox) -> Api:
    return Api(sandbox)


# ---------------------------------------------------------------------------- segments
def test_segments_list_pages_from_zero_and_sorts(api: Api) -> None:
    first = api.ok("/segments/list")["segments"]
    assert [s["name"] for s in first] == ["All Users", "engaged_users", "dormant_users", "vip", "small_test"]
    assert set(first[0]) == {"id", "name", "analytics_tracking_enabled", "tags"}
    assert api.ok("/segments/list", page=1)["segments"] == []
    assert api.ok("/segments/list", sort_direction="desc")["segments"] == first[::-1]
    assert api.get("/segments/list", page=-1).status_code == 400


def test_segment_details_and_size_series(api: Api, sandbox: Sandbox) -> None:
    segments = {s["name"]: s["id"] for s in api.ok("/segments/list")["segments"]}
    details = api.ok("/segments/details", segment_id=segments["vip"])
    assert details["name"] == "vip" and details["description"] and details["created_at"]
    series = api.ok("/segments/data_series", segment_id=segments["All Users"], length=100)["data"]
    assert len(series) == 100
    assert series[-1] == {"time": today_of(sandbox).isoformat(), "size": 300}
    small = api.ok("/segments/data_series", segment_id=segments["small_test"], length=7)["data"]
    assert [d["size"] for d in small] == [25] * 7
    assert api.get("/segments/data_series", segment_id=segments["vip"], length=101).status_code == 400
    assert len(api.violations("GET /segments/data_series")) == 1
    assert api.get("/segments/details", segment_id="nope").status_code == 400


# ---------------------------------------------------------------------------- campaigns
def test_campaigns_list_hides_archived_unless_asked_and_pages(api: Api) -> None:
    default = api.ok("/campaigns/list")["campaigns"]
    everything = api.ok("/campaigns/list", include_archived="true")["campaigns"]
    assert len(everything) == 12 and len(default) == 10
    assert {c["name"] for c in everything} - {c["name"] for c in default} == {
        "Black Friday",
        "Old Promo 2023",
    }
    assert set(default[0]) == {"id", "last_edited", "name", "is_api_campaign", "tags"}
    assert sum(c["is_api_campaign"] for c in everything) == 3
    assert (
        api.ok("/campaigns/list", include_archived="true", sort_direction="desc")["campaigns"]
        == everything[::-1]
    )
    assert api.ok("/campaigns/list", page=1)["campaigns"] == []


def test_campaigns_list_filters_on_last_edit_time(api: Api, sandbox: Sandbox, clock: Clock) -> None:
    everything = api.ok("/campaigns/list", include_archived="true")["campaigns"]
    edits = sorted(c["last_edited"] for c in everything)
    threshold = datetime.fromisoformat(edits[5]).strftime("%Y-%m-%dT%H:%M:%S")
    newer = api.ok("/campaigns/list", include_archived="true", **{"last_edit.time[gt]": threshold})[
        "campaigns"
    ]
    expected = {c["id"] for c in everything if c["last_edited"] > edits[5]}
    assert {c["id"] for c in newer} == expected and 0 < len(expected) < 12
    oldest = next(c for c in everything if c["last_edited"] == edits[0])
    assert requests.post(f"{sandbox.admin_url}/braze/campaigns/{oldest['id']}/edit", timeout=10).ok
    again = api.ok("/campaigns/list", include_archived="true", **{"last_edit.time[gt]": threshold})[
        "campaigns"
    ]
    assert {c["id"] for c in again} == expected | {oldest["id"]}
    assert api.get("/campaigns/list", **{"last_edit.time[gt]": "yesterday"}).status_code == 400


def test_campaign_details_have_sends_messages_and_dormant_campaigns(api: Api, sandbox: Sandbox) -> None:
    today = today_of(sandbox)
    everything = api.ok("/campaigns/list", include_archived="true")["campaigns"]
    details = {c["name"]: api.ok("/campaigns/details", campaign_id=c["id"]) for c in everything}
    spring = details["Spring Sale"]
    assert set(spring["channels"]) == {"email", "ios_push", "android_push"}
    assert {m["channel"] for m in spring["messages"].values()} == set(spring["channels"])
    email = next(m for m in spring["messages"].values() if m["channel"] == "email")
    assert email["subject"] and email["body"] and email["from"]
    assert (
        details["Summer Teaser (draft)"]["first_sent"] is None and details["Summer Teaser (draft)"]["draft"]
    )
    dormant = [
        name
        for name, d in details.items()
        if d["last_sent"] and (today - datetime.fromisoformat(d["last_sent"]).date()).days > 200
    ]
    assert len(dormant) >= 3
    welcome = details["Welcome Email"]
    assert {"type": "control", "channel": "email", "name": "Control"} in welcome["messages"].values()
    assert datetime.fromisoformat(welcome["last_sent"]).timestamp() <= midnight(today) + 12 * HOUR
    assert api.get("/campaigns/details", campaign_id="nope").status_code == 400


def test_campaign_series_length_is_1_to_100(api: Api) -> None:
    welcome = api.campaign("Welcome Email")["id"]
    assert len(api.ok("/campaigns/data_series", campaign_id=welcome, length=100)["data"]) == 100
    assert len(api.ok("/campaigns/data_series", campaign_id=welcome, length=1)["data"]) == 1
    for bad in (0, 101):
        assert api.get("/campaigns/data_series", campaign_id=welcome, length=bad).status_code == 400
    assert len(api.violations("GET /campaigns/data_series")) == 2
    missing = api.get("/campaigns/data_series", campaign_id=welcome)
    assert missing.status_code == 400
    assert len(api.violations("GET /campaigns/data_series")) == 2  # a missing parameter is no limit breach


def test_campaign_series_shape_matches_braze(api: Api, sandbox: Sandbox) -> None:
    spring = api.campaign("Spring Sale")["id"]
    last_sent = api.ok("/campaigns/details", campaign_id=spring)["last_sent"]
    data = api.ok("/campaigns/data_series", campaign_id=spring, length=5, ending_at=last_sent)["data"]
    assert data[-1]["time"] == last_sent[:10]
    day = data[-1]
    assert {
        "time",
        "unique_recipients",
        "revenue",
        "conversions",
        "conversions_by_send_time",
        "messages",
    } <= set(day)
    assert set(day["messages"]) == {"email", "ios_push", "android_push"}
    email_keys = {
        "variation_api_id", "sent", "delivered", "opens", "unique_opens", "clicks",
        "unique_clicks", "unsubscribes", "bounces", "reported_spam",
    }  # fmt: skip
    for entry in day["messages"]["email"]:
        assert email_keys <= set(entry)
        assert entry["sent"] >= entry["delivered"] >= entry["unique_opens"] >= entry["unique_clicks"]
        assert entry["sent"] > 0
    push_keys = {"variation_api_id", "sent", "direct_opens", "total_opens", "bounces", "body_clicks"}
    assert all(push_keys <= set(e) for e in day["messages"]["ios_push"])
    variants = {e["variation_api_id"] for e in day["messages"]["email"]}
    messages = api.ok("/campaigns/details", campaign_id=spring)["messages"]
    assert variants <= set(messages) and len(variants) == 2


def test_campaign_series_is_deterministic_and_clipped_to_400_days(
    api: Api, sandbox: Sandbox, clock: Clock
) -> None:
    welcome = api.campaign("Welcome Email")["id"]
    today = today_of(sandbox)
    end = (today - timedelta(days=10)).isoformat() + "T23:00:00"
    first = api.ok("/campaigns/data_series", campaign_id=welcome, length=30, ending_at=end)["data"]
    assert first == api.ok("/campaigns/data_series", campaign_id=welcome, length=30, ending_at=end)["data"]
    overlap = api.ok(
        "/campaigns/data_series",
        campaign_id=welcome,
        length=10,
        ending_at=(today - timedelta(days=15)).isoformat(),
    )["data"]
    by_day = {d["time"]: d for d in first}
    assert all(by_day[d["time"]] == d for d in overlap)
    with Sandbox(users=10, limits="off", clock=Clock(clock.now)) as twin:  # same seed, fewer users
        twin_api = Api(twin)
        twin_id = twin_api.campaign("Welcome Email")["id"]
        assert twin_id == welcome
        assert (
            twin_api.ok("/campaigns/data_series", campaign_id=twin_id, length=30, ending_at=end)["data"]
            == first
        )
    old_end = (today - timedelta(days=350)).isoformat()
    clipped = api.ok("/campaigns/data_series", campaign_id=welcome, length=100, ending_at=old_end)["data"]
    assert len(clipped) == 50 and clipped[0]["time"] == (today - timedelta(days=399)).isoformat()
    gone = (today - timedelta(days=500)).isoformat()
    assert api.ok("/campaigns/data_series", campaign_id=welcome, length=10, ending_at=gone)["data"] == []


def test_todays_numbers_grow_through_the_day(api: Api, sandbox: Sandbox, clock: Clock) -> None:
    welcome = api.campaign("Welcome Email")["id"]
    clock.now = midnight(today_of(sandbox)) + 6 * HOUR
    morning = api.ok("/campaigns/data_series", campaign_id=welcome, length=2)["data"]
    clock.now += 12 * HOUR
    evening = api.ok("/campaigns/data_series", campaign_id=welcome, length=2)["data"]
    assert morning[0] == evening[0]  # yesterday is final
    assert evening[1]["unique_recipients"] > morning[1]["unique_recipients"] > 0
    sent = [sum(e.get("sent", 0) for e in day["messages"]["email"]) for day in (morning[1], evening[1])]
    assert sent[1] > sent[0]


# ---------------------------------------------------------------------------- Canvases
def test_canvas_list_and_details(api: Api) -> None:
    default = api.ok("/canvas/list")["canvases"]
    everything = api.ok("/canvas/list", include_archived="true")["canvases"]
    assert len(default) == 4 and len(everything) == 5
    assert set(default[0]) == {"id", "last_edited", "name", "tags"}
    for canvas in everything:
        details = api.ok("/canvas/details", canvas_id=canvas["id"])
        assert 3 <= len(details["steps"]) <= 6
        assert details["variants"] and all(v["first_step_ids"] for v in details["variants"])
        step_ids = {s["id"] for s in details["steps"]}
        assert all(n in step_ids for s in details["steps"] for n in s["next_step_ids"])


def test_canvas_series_window_is_at_most_14_days(api: Api, sandbox: Sandbox) -> None:
    canvas = api.canvas("Onboarding Journey")["id"]
    today = today_of(sandbox)
    end = today.isoformat() + "T12:00:00Z"
    assert api.get("/canvas/data_series", canvas_id=canvas, length=5).status_code == 400  # ending_at required
    assert api.get("/canvas/data_series", canvas_id=canvas, ending_at=end).status_code == 400  # no window
    stats = api.ok("/canvas/data_series", canvas_id=canvas, ending_at=end, length=14)["data"]["stats"]
    assert len(stats) == 14 and stats[-1]["time"] == today.isoformat()
    assert api.get("/canvas/data_series", canvas_id=canvas, ending_at=end, length=15).status_code == 400
    start = (today - timedelta(days=14)).isoformat()
    assert (
        api.get("/canvas/data_series", canvas_id=canvas, ending_at=end, starting_at=start).status_code == 400
    )
    assert len(api.violations("GET /canvas/data_series")) == 2
    start = (today - timedelta(days=13)).isoformat()
    window = api.ok("/canvas/data_series", canvas_id=canvas, ending_at=end, starting_at=start)["data"][
        "stats"
    ]
    assert window == stats


def test_canvas_breakdowns_only_when_asked(api: Api, sandbox: Sandbox) -> None:
    canvas = api.canvas("Post-Purchase Follow-up")["id"]
    details = api.ok("/canvas/details", canvas_id=canvas)
    end = (today_of(sandbox) - timedelta(days=1)).isoformat()
    plain = api.ok("/canvas/data_series", canvas_id=canvas, ending_at=end, length=3)["data"]
    assert plain["name"] == "Post-Purchase Follow-up"
    day = plain["stats"][-1]
    assert set(day) == {"time", "total_stats"}
    assert set(day["total_stats"]) == {"revenue", "conversions", "conversions_by_entry_time", "entries"}
    full = api.ok(
        "/canvas/data_series",
        canvas_id=canvas,
        ending_at=end,
        length=3,
        include_variant_breakdown="true",
        include_step_breakdown="true",
    )["data"]["stats"][-1]
    assert full["total_stats"] == day["total_stats"]
    assert set(full["variant_stats"]) == {v["id"] for v in details["variants"]}
    assert sum(v["entries"] for v in full["variant_stats"].values()) == day["total_stats"]["entries"]
    assert set(full["step_stats"]) == {s["id"] for s in details["steps"]}
    email_step = next(s for s in details["steps"] if s["channels"] == ["email"])
    assert "sent" in full["step_stats"][email_step["id"]]["messages"]["email"][0]
    with_deleted = api.ok(
        "/canvas/data_series",
        canvas_id=canvas,
        ending_at=end,
        length=3,
        include_step_breakdown="true",
        include_deleted_step_data="true",
    )["data"]["stats"][-1]
    assert len(with_deleted["step_stats"]) == len(details["steps"]) + 1
