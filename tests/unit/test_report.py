"""The analytics report: HTML for people (self-contained, escaped), CSV and JSON for tools."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tajo_braze.errors import UsageError
from tajo_braze.report import (
    CSV_COLUMNS,
    ObjectReport,
    ReportData,
    canvas_funnel,
    csv_safe,
    figure_of,
    number_text,
    panels_svg,
    render_html,
    render_report,
    rows_from_csv,
    rows_from_json,
)
from tajo_braze.state import MetricRow, StateStore

EVIL = "<script>alert('x')</script> & \"Sale\" <img src=x onerror=alert(1)>"
FORMULA = "=HYPERLINK(\"x\",\"click\")"
VOID = {"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "wbr", "source"}
SVG_LEAVES = {"polyline", "line", "circle", "rect"}


class Tree(HTMLParser):
    """Parses the page strictly enough to catch broken nesting, and keeps what tests look at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.errors: list[str] = []
        self.text_by_tag: dict[str, list[str]] = {}
        self.articles: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "article":
            self.articles.append({"class": attributes.get("class"), "id": attributes.get("data-object-id"),
                                  "svgs": [], "h3": ""})
        if tag == "svg" and self.articles and "article" in self.stack:
            self.articles[-1]["svgs"].append(attributes.get("class"))
        if tag not in VOID and tag not in SVG_LEAVES:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID or tag in SVG_LEAVES:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack:
            self.text_by_tag.setdefault(self.stack[-1], []).append(data)
            if self.stack[-1] == "h3" and self.articles:
                self.articles[-1]["h3"] += data


def parse(page: str) -> Tree:
    tree = Tree()
    tree.feed(page)
    tree.close()
    assert tree.errors == [] and tree.stack == [], (tree.errors, tree.stack)
    return tree


def campaign_rows(object_id: str, day: str, sent: float, *, unique_opens: float = 5) -> list[MetricRow]:
    return [
        MetricRow("campaign", object_id, day, "", "", "", "conversions", sent / 10),
        MetricRow("campaign", object_id, day, "", "", "", "revenue", sent * 1.25),
        MetricRow("campaign", object_id, day, "", "", "", "unique_recipients", sent),
        MetricRow("campaign", object_id, day, "email", "v1", "", "sent", sent),
        MetricRow("campaign", object_id, day, "email", "v1", "", "delivered", sent - 1),
        MetricRow("campaign", object_id, day, "email", "v1", "", "opens", sent / 2),
        MetricRow("campaign", object_id, day, "email", "v1", "", "unique_opens", unique_opens),
        MetricRow("campaign", object_id, day, "email", "v1", "", "clicks", sent / 4),
        MetricRow("campaign", object_id, day, "ios_push", "p1", "", "sent", 7),
        MetricRow("campaign", object_id, day, "ios_push", "p1", "", "total_opens", 3),
    ]


def canvas_rows(day: str) -> list[MetricRow]:
    return [
        MetricRow("canvas", "cv1", day, "", "", "", "entries", 100),
        MetricRow("canvas", "cv1", day, "", "", "", "conversions", 9),
        MetricRow("canvas", "cv1", day, "", "var-a", "", "entries", 100),
        MetricRow("canvas", "cv1", day, "", "", "s1", "conversions", 4),
        MetricRow("canvas", "cv1", day, "email", "", "s1", "sent", 80),
        MetricRow("canvas", "cv1", day, "email", "", "s1", "unique_opens", 30),
        MetricRow("canvas", "cv1", day, "email", "", "s3", "sent", 50),
        MetricRow("canvas", "cv1", day, "android_push", "", "s3", "sent", 30),
        MetricRow("canvas", "cv1", day, "ios_push", "", "s3", "sent", 45),
        MetricRow("canvas", "cv1", day, "sms", "", "gone", "sent", 5),
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    state = StateStore(tmp_path / "state.db")
    state.upsert_object("campaign", "c1", "Spring Sale", {"channels": ["email", "ios_push"]})
    state.upsert_object("campaign", "c2", EVIL, {"channels": ["email"]})
    state.upsert_object("campaign", "c3", FORMULA, {})
    state.upsert_object("campaign", "c4", "Summer Teaser (draft)", {})  # never sent: no points
    state.upsert_object(
        "canvas",
        "cv1",
        "Onboarding <Journey>",
        {
            "steps": [
                {"id": "s1", "name": "Welcome email"},
                {"id": "s2", "name": "Wait a day"},
                {"id": "s3", "name": "Nudge"},
            ],
            "step_names": {"gone": "Old SMS"},
        },
    )
    rows: list[MetricRow] = []
    for index, day in enumerate(("2024-05-01", "2024-05-02", "2024-05-04")):  # 05-03 missing on purpose
        rows += campaign_rows("c1", day, 100.0 + index)
        rows += campaign_rows("c2", day, 40.0)
        rows += canvas_rows(day)
    rows += campaign_rows("c3", "2024-05-02", 3.5)
    state.upsert_metrics(rows)
    yield state
    state.close()


# ------------------------------------------------------------------ CSV and JSON round trips
def test_csv_round_trips_every_stored_point(store: StateStore) -> None:
    text = render_report(store, format="csv")
    header = next(csv.reader(io.StringIO(text)))
    assert tuple(header) == CSV_COLUMNS
    assert rows_from_csv(text) == store.query_metrics()
    names = {r["object_id"]: r["object_name"] for r in csv.DictReader(io.StringIO(text))}
    assert names["c2"] == EVIL  # CSV quoting keeps the name whole
    assert names["c3"] == "'" + FORMULA  # but a spreadsheet never runs it as a formula
    assert csv_safe("-1 promo").startswith("'") and csv_safe("Spring") == "Spring"


def test_json_round_trips_and_never_totals_daily_uniques(store: StateStore) -> None:
    payload = json.loads(render_report(store, format="json"))
    assert rows_from_json(json.dumps(payload)) == store.query_metrics()
    objects = {o["id"]: o for o in payload["objects"]}
    assert objects["c2"]["name"] == EVIL and objects["c4"]["first_day"] is None
    totals = objects["c1"]["totals"]
    assert totals["sent"] == (100 + 101 + 102) + 3 * 7  # email and push sends over the three days
    assert totals["opens"] == (100 + 101 + 102) / 2 + 3 * 3
    assert totals["conversions"] == pytest.approx((100 + 101 + 102) / 10)
    assert not any("unique" in key for key in totals)
    assert payload["first_day"] == "2024-05-01" and payload["last_day"] == "2024-05-04"
    assert any("unique" in note for note in payload["notes"])


def test_since_keeps_days_from_that_day_on(store: StateStore) -> None:
    rows = rows_from_csv(render_report(store, format="csv", since="2024-05-02"))
    assert rows and min(r.day for r in rows) == "2024-05-02"
    assert rows == store.query_metrics(since="2024-05-02")
    payload = json.loads(render_report(store, format="json", since="2024-05-04"))
    assert {m["day"] for m in payload["metrics"]} == {"2024-05-04"} and payload["since"] == "2024-05-04"


def test_bad_format_or_since_is_a_usage_error(store: StateStore) -> None:
    with pytest.raises(UsageError, match="format"):
        render_report(store, format="pdf")
    with pytest.raises(UsageError, match="not a date"):
        render_report(store, since="last week")


def test_numbers_read_back_exactly() -> None:
    for value in (0.0, 3.0, 12345678.0, 0.1, 10.5, 1e-7, 123456.789, 2.0**60):
        assert float(number_text(value)) == value
    assert number_text(42.0) == "42"


# ------------------------------------------------------------------ HTML for people
def test_html_is_self_contained_parses_and_has_a_chart_per_campaign(store: StateStore) -> None:
    page = render_report(store, format="html")
    tree = parse(page)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "url(" not in page.lower()
    assert not [attrs for tag, attrs in tree.tags if "src" in attrs or (tag == "link")]
    assert all(attrs.get("href", "#").startswith("#") for _, attrs in tree.tags)
    campaigns = [a for a in tree.articles if a["class"] == "campaign"]
    assert {a["id"] for a in campaigns} == {"c1", "c2", "c3", "c4"}
    with_data = {a["id"]: a["svgs"] for a in campaigns}
    assert with_data["c1"] == ["chart"] and with_data["c2"] == ["chart"] and with_data["c3"] == ["chart"]
    assert with_data["c4"] == []  # a campaign without data says so instead of an empty chart
    canvases = [a for a in tree.articles if a["class"] == "canvas"]
    assert [a["svgs"] for a in canvases] == [["funnel", "chart"]]
    # The top campaigns table ranks by sends.
    first_row_names = [a["h3"] for a in campaigns]
    assert first_row_names[0] == "Spring Sale"


def test_html_escapes_every_name(store: StateStore) -> None:
    page = render_report(store, format="html")
    assert "<script>alert" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "Onboarding &lt;Journey&gt;" in page
    tree = parse(page)
    assert EVIL in [a["h3"] for a in tree.articles]  # shown to the reader exactly as named


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_any_name_is_shown_as_text_never_as_markup(name: str) -> None:
    obj = ObjectReport("campaign", "c", name, {}, campaign_rows("c", "2024-05-01", 10.0))
    canvas = ObjectReport("canvas", "k", name, {"steps": [{"id": "s1", "name": name}]}, canvas_rows("2024-05-01"))
    page = render_html(ReportData(since=None, objects=[obj, canvas], rows=obj.rows + canvas.rows))
    tree = parse(page)
    assert [a["h3"] for a in tree.articles] == [name, name]
    assert [tag for tag, _ in tree.tags].count("script") == 0


def test_charts_break_their_line_at_missing_days_instead_of_inventing_zeros(store: StateStore) -> None:
    daily = {
        "2024-05-01": {"sends": 1.0},
        "2024-05-02": {"sends": 2.0},
        "2024-05-04": {"sends": 4.0},
    }
    svg = panels_svg("t", daily, ["sends"], {"sends": "Sends"}, {"sends": "#000000"})
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 1
    assert "2024-05-01" in svg and "2024-05-04" in svg


def test_cross_channel_figures_leave_out_uniques_and_breakdowns() -> None:
    def row(channel: str, variant: str, step: str, metric: str) -> MetricRow:
        return MetricRow("campaign", "c", "2024-05-01", channel, variant, step, metric, 1.0)

    assert figure_of(row("email", "v", "", "sent")) == "sends"
    assert figure_of(row("ios_push", "v", "", "total_opens")) == "opens"
    assert figure_of(row("content_cards", "v", "", "total_clicks")) == "clicks"
    assert figure_of(row("", "", "", "conversions")) == "conversions"
    assert figure_of(row("email", "v", "", "unique_opens")) is None
    assert figure_of(row("", "", "", "unique_recipients")) is None
    assert figure_of(row("", "var", "", "conversions")) is None  # the total already counts it
    assert figure_of(row("", "", "step", "conversions")) is None


def test_canvas_funnel_follows_the_journey_and_never_counts_a_user_twice(store: StateStore) -> None:
    page = json.loads(render_report(store, format="json"))
    assert page["objects"][-1]["kind"] == "canvas"
    canvas = ObjectReport("canvas", "cv1", "x", {
        "steps": [{"id": "s1", "name": "Welcome email"}, {"id": "s2", "name": "Wait a day"},
                  {"id": "s3", "name": "Nudge"}],
        "step_names": {"gone": "Old SMS"},
    }, canvas_rows("2024-05-01") + canvas_rows("2024-05-02"))  # fmt: skip
    entries, steps = canvas_funnel(canvas)
    assert entries == 200
    assert [s.name for s in steps] == ["Welcome email", "Wait a day", "Nudge", "Old SMS (removed)"]
    assert [s.reached for s in steps] == [160, None, 100, 10]  # Nudge: the largest channel per day
    assert dict(steps[2].messages) == {"email": 100, "android_push": 60, "ios_push": 90}
    assert steps[0].conversions == 8


def test_an_empty_store_renders_every_format(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "empty.db")
    try:
        page = render_report(state)
        parse(page)
        assert "No campaign tracked yet" in page and "No Canvas tracked yet" in page
        assert rows_from_csv(render_report(state, format="csv")) == []
        assert json.loads(render_report(state, format="json"))["metrics"] == []
    finally:
        state.close()
