"""Campaign and Canvas analytics against the sandbox over loopback: windows, cursors, numbers, report."""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests

from tajo_braze.analytics import Window
from tajo_braze.cli import main
from tajo_braze.connector import BrazeConnector
from tajo_braze.errors import Interrupted
from tajo_braze.report import rows_from_csv, rows_from_json
from tajo_braze.sandbox import Sandbox
from tajo_braze.sync.campaigns import CampaignSync

from .conftest import admin_get, admin_post, config_for, env_for, write_config

DAY = 86_400.0
SERIES_DAYS = 400  # what the sandbox keeps per campaign and Canvas
CAMPAIGN_SERIES = "braze GET /campaigns/data_series"
CANVAS_SERIES = "braze GET /canvas/data_series"
Key = tuple[str, str, str, str, str]  # day, channel, variant, step, metric


class Clock:
    """The one "now" of the sandbox and the connector; tests move it, nothing sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 3, 10, 12, 0, tzinfo=UTC).timestamp())  # noon: today is half over


@pytest.fixture
def world(make_world: Callable[..., Sandbox], clock: Clock) -> Sandbox:
    return make_world(users=40, contacts=10, clock=clock)


@pytest.fixture
def connect(tmp_path: Path, clock: Clock) -> Iterator[Callable[..., BrazeConnector]]:
    made: list[BrazeConnector] = []

    def make(sandbox: Sandbox, **options: Any) -> BrazeConnector:
        connector = BrazeConnector(
            config_for(sandbox, tmp_path), env=env_for(sandbox), log_stream=io.StringIO(), clock=clock,
            sleep=lambda _s: None, **options,
        )  # fmt: skip
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


# ------------------------------------------------------------------ reading the sandbox directly
class Braze:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {sandbox.keys.braze}"

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.http.get(self.sandbox.braze_url + path, params=params, timeout=30)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def campaigns(self) -> dict[str, str]:
        return {c["id"]: c["name"] for c in self.get("/campaigns/list", include_archived="true")["campaigns"]}

    def canvases(self) -> dict[str, str]:
        return {c["id"]: c["name"] for c in self.get("/canvas/list", include_archived="true")["canvases"]}

    def campaign_points(self, campaign_id: str, today: date) -> dict[Key, float]:
        """Every number of the campaign's 400 days, flattened independently of the connector."""
        points: dict[Key, float] = {}
        for back in range(0, SERIES_DAYS, 100):
            end = today - timedelta(days=back)
            data = self.get("/campaigns/data_series", campaign_id=campaign_id, length=100,
                            ending_at=f"{end}T23:59:59Z")["data"]  # fmt: skip
            for entry in data:
                day = entry["time"]
                for metric, value in entry.items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        points[(day, "", "", "", metric)] = value
                for channel, items in entry["messages"].items():
                    for item in items:
                        for metric, value in item.items():
                            if isinstance(value, int | float) and not isinstance(value, bool):
                                points[(day, channel, item["variation_api_id"], "", metric)] = value
        return points

    def canvas_points(self, canvas_id: str, today: date) -> dict[Key, float]:
        points: dict[Key, float] = {}
        for back in range(0, SERIES_DAYS, 14):
            end = today - timedelta(days=back)
            stats = self.get("/canvas/data_series", canvas_id=canvas_id, length=14, ending_at=f"{end}T23:59:59Z",
                             include_variant_breakdown="true", include_step_breakdown="true")["data"]["stats"]  # fmt: skip
            for entry in stats:
                day = entry["time"]
                blocks = [("", "", entry["total_stats"])]
                blocks += [("", variant, block) for variant, block in entry["variant_stats"].items()]
                for step, block in entry["step_stats"].items():
                    blocks.append(("", "", {**block, "__step": step}))
                    for channel, items in block["messages"].items():
                        blocks += [(channel, "", {**item, "__step": step}) for item in items]
                for channel, variant, block in blocks:
                    step = block.get("__step", "")
                    for metric, value in block.items():
                        if isinstance(value, int | float) and not isinstance(value, bool):
                            points[(day, channel, variant, step, metric)] = value
        return points


def stored(connector: BrazeConnector, kind: str, object_id: str) -> dict[Key, float]:
    return {
        (r.day, r.channel, r.variant, r.step, r.metric): r.value
        for r in connector.state.query_metrics(kind=kind, object_id=object_id)
    }


def series_log(sandbox: Sandbox) -> list[dict[str, Any]]:
    return list(admin_get(sandbox, "braze/series_requests")["requests"])


def calls_by_object(log: list[dict[str, Any]], kind: str) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in log:
        if call["kind"] == kind:
            grouped[call["id"]].append(call)
    return grouped


def assert_matches_sandbox(mine: dict[Key, float], theirs: dict[Key, float]) -> None:
    """Every stored number equals the sandbox's; every day not stored had nothing to store."""
    assert mine, "nothing stored"
    for key, value in mine.items():
        assert theirs[key] == pytest.approx(value), key
    stored_days = {key[0] for key in mine}
    for key, value in theirs.items():
        if key[0] in stored_days:
            assert key in mine, key
        else:
            assert value == 0, f"{key} = {value} was never pulled"


# ------------------------------------------------------------------ tests
def test_first_run_pulls_400_days_in_the_fewest_windows_and_stores_the_sandbox_numbers(
    world: Sandbox, connect: Callable[..., BrazeConnector], clock: Clock
) -> None:
    connector = connect(world)
    summary = connector.sync(resources=["campaigns", "canvases"])
    campaigns, canvases = summary["resources"]
    log = series_log(world)

    per_campaign = calls_by_object(log, "campaign")
    per_canvas = calls_by_object(log, "canvas")
    assert per_campaign and per_canvas
    assert max(len(calls) for calls in per_campaign.values()) <= math.ceil(SERIES_DAYS / 100)
    assert max(len(calls) for calls in per_canvas.values()) <= math.ceil(SERIES_DAYS / 14)
    assert all(1 <= call["length"] <= 100 for calls in per_campaign.values() for call in calls)
    assert world.request_counts()[CAMPAIGN_SERIES] == sum(map(len, per_campaign.values()))
    assert world.request_counts()[CANVAS_SERIES] == sum(map(len, per_canvas.values()))
    assert campaigns["api_calls"]["GET /campaigns/data_series"] == world.request_counts()[CAMPAIGN_SERIES]
    # Campaign series have their own bucket; lists, details and Canvas series share the hourly default.
    shared = sum(n for name, n in world.request_counts().items() if name.startswith("braze ") and name != CAMPAIGN_SERIES)
    limits = connector.status()["rate_limits"]["braze"]
    assert limits["braze.default"]["used_in_window"] == shared == 2 + 12 + 5 + sum(map(len, per_canvas.values()))

    braze = Braze(world)
    today = datetime.fromtimestamp(clock.now, UTC).date()
    for campaign_id in per_campaign:
        assert_matches_sandbox(stored(connector, "campaign", campaign_id), braze.campaign_points(campaign_id, today))
    for canvas_id in braze.canvases():
        assert_matches_sandbox(stored(connector, "canvas", canvas_id), braze.canvas_points(canvas_id, today))

    # The draft that never sent costs no series call and stores nothing, but is tracked.
    never_sent = set(braze.campaigns()) - set(per_campaign)
    assert len(never_sent) == 1 and all(not stored(connector, "campaign", c) for c in never_sent)
    assert campaigns["skipped"] == 1 and campaigns["failed"] == canvases["failed"] == 0
    assert campaigns["created"] == len({(r.object_id, r.day) for r in connector.state.query_metrics(kind="campaign")})

    status = connector.status()
    assert status["campaigns_tracked"] == 12 and status["canvases_tracked"] == 5
    yesterday = (today - timedelta(days=1)).isoformat()
    welcome = next(i for i, n in braze.campaigns().items() if n == "Welcome Email")
    ongoing = status["cursors"][f"campaigns:{welcome}/braze_to_brevo"]
    assert ongoing["last_complete_day"] == yesterday and ongoing["last_stored_day"] == today.isoformat()
    assert status["cursors"]["campaigns/braze_to_brevo"]["last_edit_gt"]
    assert world.violations() == []


def test_canvas_windows_never_exceed_14_days_and_tile_the_history(
    world: Sandbox, connect: Callable[..., BrazeConnector]
) -> None:
    connector = connect(world)
    connector.sync(resources=["canvases"])
    per_canvas = calls_by_object(series_log(world), "canvas")
    assert len(per_canvas) == 5
    for calls in per_canvas.values():
        assert all(1 <= call["length"] <= 14 for call in calls)
        days = [(date.fromisoformat(c["first_day"]), date.fromisoformat(c["last_day"])) for c in calls]
        for (_, end), (start, _) in zip(days, days[1:], strict=False):
            assert start == end + timedelta(days=1)  # no day asked twice, none skipped
    # Both breakdowns were asked for: step and variant rows are stored.
    rows = connector.state.query_metrics(kind="canvas")
    assert any(r.step for r in rows) and any(r.variant for r in rows) and any(r.channel for r in rows)
    assert world.violations() == []


def test_next_day_fetches_only_the_tail_and_replaces_the_partial_day(
    world: Sandbox, connect: Callable[..., BrazeConnector], clock: Clock
) -> None:
    connector = connect(world)
    connector.sync(resources=["campaigns", "canvases"])
    braze = Braze(world)
    welcome = next(i for i, n in braze.campaigns().items() if n == "Welcome Email")
    first_day = datetime.fromtimestamp(clock.now, UTC).date().isoformat()
    partial = stored(connector, "campaign", welcome)
    partial_sends = sum(v for k, v in partial.items() if k[0] == first_day and k[4] == "sent")
    assert partial_sends > 0
    requests.delete(f"{world.admin_url}/braze/series_requests", timeout=10).raise_for_status()

    clock.now += DAY
    summary = connector.sync(resources=["campaigns", "canvases"])
    log = series_log(world)
    assert log and all(call["first_day"] >= first_day and call["length"] <= 2 for call in log)
    for kind in ("campaign", "canvas"):
        assert all(len(calls) == 1 for calls in calls_by_object(log, kind).values())
    pulled = {call["id"] for call in log}
    for resource in summary["resources"]:
        objects = resource["created"]  # one new day per object pulled
        assert resource["updated"] == objects  # and its partial day of yesterday, replaced
        assert resource["skipped"] + objects == (12 if resource["resource"] == "campaigns" else 5)
    assert welcome in pulled
    # Dormant campaigns (ended long ago) cost nothing.
    spring = next(i for i, n in braze.campaigns().items() if n == "Spring Sale")
    assert spring not in pulled

    now_today = datetime.fromtimestamp(clock.now, UTC).date()
    after = stored(connector, "campaign", welcome)
    full_day = {k: v for k, v in braze.campaign_points(welcome, now_today).items() if k[0] == first_day}
    assert {k: v for k, v in after.items() if k[0] == first_day} == full_day  # replaced, not added to
    full_sends = sum(v for k, v in full_day.items() if k[4] == "sent")
    assert full_sends > partial_sends
    cursor = connector.status()["cursors"][f"campaigns:{welcome}/braze_to_brevo"]
    assert cursor["last_complete_day"] == first_day and cursor["last_stored_day"] == now_today.isoformat()
    assert world.violations() == []


def test_an_edited_campaign_is_rediscovered_and_its_new_name_reported_safely(
    world: Sandbox, connect: Callable[..., BrazeConnector], clock: Clock
) -> None:
    connector = connect(world)
    connector.sync(resources=["campaigns"])
    braze = Braze(world)
    spring = next(i for i, n in braze.campaigns().items() if n == "Spring Sale")
    evil = '<img src=x onerror=alert(1)> Spring "Sale" & more'
    clock.now += 3600
    edited = admin_post(world, f"braze/campaigns/{spring}/edit", {"name": evil})

    second = connector.sync(resources=["campaigns"])["resources"][0]
    assert "1 new or edited" in second["notes"][0]
    assert connector.state.objects("campaign")[spring][0] == evil
    cursor = connector.status()["cursors"]["campaigns/braze_to_brevo"]
    assert cursor["last_edit_gt"] == datetime.fromisoformat(edited["last_edited"]).strftime("%Y-%m-%dT%H:%M:%S")
    third = connector.sync(resources=["campaigns"])["resources"][0]
    assert "0 new or edited" in third["notes"][0]

    page = connector.report(format="html")
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert world.violations() == []


def test_report_hook_and_cli_give_a_self_contained_page_and_round_tripping_exports(
    world: Sandbox,
    connect: Callable[..., BrazeConnector],
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connector = connect(world)
    connector.sync(resources=["campaigns", "canvases"])
    campaigns_with_data = {r.object_id for r in connector.state.query_metrics(kind="campaign")}

    page = connector.report(format="html")
    assert "http://" not in page and "https://" not in page and "<script" not in page

    class Charts(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.current: str | None = None
            self.charts: dict[str, int] = defaultdict(int)
            self.funnels = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            attributes = dict(attrs)
            if tag == "article" and attributes.get("class") == "campaign":
                self.current = attributes["data-object-id"]
            elif tag == "article":
                self.current = None
            if tag == "svg" and attributes.get("class") == "chart" and self.current:
                self.charts[self.current] += 1
            if tag == "svg" and attributes.get("class") == "funnel":
                self.funnels += 1

    charts = Charts()
    charts.feed(page)
    assert set(charts.charts) == campaigns_with_data and set(charts.charts.values()) == {1}
    assert charts.funnels == 5

    everything = connector.state.query_metrics()
    assert rows_from_csv(connector.report(format="csv")) == everything
    assert rows_from_json(connector.report(format="json")) == everything
    since = (datetime.fromtimestamp(clock.now, UTC).date() - timedelta(days=6)).isoformat()
    recent = rows_from_json(connector.report(format="json", since=since))
    assert recent == connector.state.query_metrics(since=since) and len(recent) < len(everything)
    connector.close()

    # The command line writes the same report to a file.
    config = write_config(world, tmp_path)
    for name, value in env_for(world).items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "report.csv"
    code = main(["connectors", "report", "braze", "--config", str(config), "--format", "csv", "--out", str(out),
                 "--json"], stdout=io.StringIO())  # fmt: skip
    assert code == 0
    assert rows_from_csv(out.read_text(encoding="utf-8")) == everything


def test_dry_run_plans_the_calls_without_pulling_or_storing(
    world: Sandbox, connect: Callable[..., BrazeConnector]
) -> None:
    connector = connect(world)
    plan = connector.sync(resources=["campaigns", "canvases"], dry_run=True)
    assert series_log(world) == []
    planned = {r["resource"]: r["plan"]["series_calls"] for r in plan["resources"]}
    assert not connector.state.objects("campaign") and not connector.state.query_metrics()

    real = connector.sync(resources=["campaigns", "canvases"])
    made = {r["resource"]: r["api_calls"] for r in real["resources"]}
    assert planned["campaigns"] == made["campaigns"]["GET /campaigns/data_series"]
    assert planned["canvases"] == made["canvases"]["GET /canvas/data_series"]


def test_an_interrupted_run_resumes_without_asking_any_day_twice(
    world: Sandbox, connect: Callable[..., BrazeConnector]
) -> None:
    class StopAfter:
        def __init__(self, connector_ref: list[BrazeConnector], objects: int) -> None:
            self.ref, self.left = connector_ref, objects

        def update(self, resource: str, **counters: int) -> None:
            self.left -= 1
            if self.left == 0:
                self.ref[0].stop.set()

        def close(self) -> None:
            return None

    holder: list[BrazeConnector] = []
    connector = connect(world, progress=lambda: StopAfter(holder, 2))
    holder.append(connector)
    with pytest.raises(Interrupted):
        connector.sync(resources=["canvases"])
    interrupted = calls_by_object(series_log(world), "canvas")
    assert 0 < len(interrupted) < 5
    connector.close()
    connect(world).sync(resources=["canvases"])  # a new process, the same state file
    asked: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for call in series_log(world):
        asked[call["id"]].append((call["first_day"], call["last_day"]))
    assert len(asked) == 5
    for spans in asked.values():
        assert len(spans) <= math.ceil(SERIES_DAYS / 14)
        assert len(set(spans)) == len(spans)  # the resumed run skipped the canvases already done
    assert world.violations() == []


def test_a_campaign_braze_no_longer_knows_is_dead_lettered_and_the_run_goes_on(
    world: Sandbox, connect: Callable[..., BrazeConnector]
) -> None:
    connector = connect(world)
    connector.state.upsert_object("campaign", "deleted-campaign", "Deleted campaign", {})
    summary = connector.sync(resources=["campaigns"])
    result = summary["resources"][0]
    assert result["failed"] == 1 and summary["status"] == "partial"
    letters = connector.dead_letters("campaigns")
    assert [d["key"] for d in letters] == ["deleted-campaign"]
    assert "details" in letters[0]["reason"]
    assert len(calls_by_object(series_log(world), "campaign")) == 11  # every other campaign with sends
    assert world.violations() == []


def test_an_unreadable_day_is_dead_lettered_and_the_other_days_are_stored(
    world: Sandbox, connect: Callable[..., BrazeConnector], clock: Clock
) -> None:
    class GarbledDay(CampaignSync):
        """The real sandbox answer, with one day garbled in each campaign's first window."""

        def read_series(self, object_id: str, window: Window) -> list[Any]:
            entries = super().read_series(object_id, window)
            if window.length == 100 and entries:
                entries[0] = {"time": "the day after tomorrow", "messages": {}}
            return entries

    connector = connect(world)
    result = GarbledDay(connector.context()).run()
    letters = connector.dead_letters("campaigns", limit=100)
    assert result.failed == len(letters) > 0
    assert all("not a date" in d["reason"] and d["record"]["time"] == "the day after tomorrow" for d in letters)
    windows_of_100 = sum(1 for call in series_log(world) if call["length"] == 100)
    assert len(letters) == windows_of_100
    stored_days = {(r.object_id, r.day) for r in connector.state.query_metrics(kind="campaign")}
    assert result.created == len(stored_days) > 0  # every readable day is stored
    today = datetime.fromtimestamp(clock.now, UTC).date()
    cursors = connector.status()["cursors"]
    assert any(v.get("last_complete_day") == (today - timedelta(days=1)).isoformat() for v in cursors.values())
    assert world.violations() == []
