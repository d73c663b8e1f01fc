"""Pure analytics transforms: series entries -> metric rows, activity, windows and cursors."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tajo_braze.analytics import (
    BACKFILL_DAYS,
    CAMPAIGN_WINDOW_DAYS,
    CANVAS_TAIL_DAYS,
    CANVAS_WINDOW_DAYS,
    ENGAGEMENT_TAIL_DAYS,
    Activity,
    Window,
    campaign_activity,
    campaign_day_rows,
    campaign_message_names,
    campaign_series_names,
    canvas_activity,
    canvas_day_rows,
    canvas_series_names,
    canvas_structure,
    complete_through_after,
    edit_cursor,
    ending_at,
    is_daily_unique,
    metric_value,
    plan_series,
    plan_windows,
    series_calls_needed,
    series_day,
)
from tajo_braze.errors import RecordRejected
from tajo_braze.state import MetricRow

TODAY = date(2025, 3, 10)


def keyed(rows: list[MetricRow]) -> dict[tuple[str, str, str, str], float]:
    return {(r.channel, r.variant, r.step, r.metric): r.value for r in rows}


# ------------------------------------------------------------------ campaign entries
CAMPAIGN_DAY: dict[str, Any] = {
    "time": "2024-05-01",
    "unique_recipients": 123,
    "revenue": 10.5,
    "conversions": 4,
    "conversions_by_send_time": 3,
    "messages": {
        "email": [
            {"variation_api_id": "v-a", "variation_name": "Variant A", "sent": 100, "opens": 40,
             "unique_opens": 30, "clicks": 10, "unique_clicks": 8, "unsubscribes": 1, "bounces": 2,
             "delivered": 98, "reported_spam": 0},
            {"variation_api_id": "v-b", "variation_name": "Variant B", "sent": 50, "opens": 20,
             "unique_opens": 15, "clicks": 5, "unique_clicks": 4, "unsubscribes": 0, "bounces": 1,
             "delivered": 49, "reported_spam": 1},
            {"variation_api_id": "ctrl", "variation_name": "Control", "enrolled": 12},
        ],
        "ios_push": [{"variation_api_id": "p-a", "sent": 70, "direct_opens": 5, "total_opens": 9,
                      "bounces": 1, "body_clicks": 3}],
        "trigger_in_app_message": [{"variation_name": "IAM 1", "impressions": 30, "clicks": 2}],
        "new_channel": [{"sent": 3, "weird": True, "label": "x", "missing": None}],
    },
}  # fmt: skip


def test_campaign_day_keeps_every_number_by_channel_and_variant() -> None:
    rows = campaign_day_rows("c1", CAMPAIGN_DAY)
    assert {(r.kind, r.object_id, r.day) for r in rows} == {("campaign", "c1", "2024-05-01")}
    values = keyed(rows)
    assert values[("", "", "", "unique_recipients")] == 123
    assert values[("", "", "", "revenue")] == 10.5
    assert values[("", "", "", "conversions_by_send_time")] == 3
    assert values[("email", "v-a", "", "unique_opens")] == 30
    assert values[("email", "v-b", "", "reported_spam")] == 1
    assert values[("email", "ctrl", "", "enrolled")] == 12
    assert values[("ios_push", "p-a", "", "total_opens")] == 9
    # An entry without an API id is keyed by its name; unknown channels pass through.
    assert values[("trigger_in_app_message", "IAM 1", "", "impressions")] == 30
    assert values[("new_channel", "", "", "sent")] == 3
    # Labels, booleans and nulls are not metrics.
    metrics = {r.metric for r in rows}
    assert not metrics & {"time", "variation_api_id", "variation_name", "messages", "weird", "label", "missing"}
    assert len(rows) == len(values)  # one row per key


def test_campaign_day_accepts_datetime_time_and_sums_repeated_variants() -> None:
    entry = {
        "time": "2024-05-01T00:00:00+00:00",
        "messages": {"email": [{"variation_api_id": "v", "sent": 5}, {"variation_api_id": "v", "sent": 7}]},
    }
    rows = campaign_day_rows("c1", entry)
    assert [(r.day, r.channel, r.variant, r.metric, r.value) for r in rows] == [
        ("2024-05-01", "email", "v", "sent", 12.0)
    ]


def test_unnamed_entries_of_one_channel_are_kept_apart_by_position() -> None:
    entry = {"time": "2024-05-01", "messages": {"webhook": [{"sent": 1}, {"sent": 2}]}}
    assert keyed(campaign_day_rows("c", entry)) == {
        ("webhook", "#0", "", "sent"): 1.0,
        ("webhook", "#1", "", "sent"): 2.0,
    }


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ([1, 2], "not an object"),
        ({"sent": 1}, "no usable 'time'"),
        ({"time": "yesterday-ish"}, "is not a date"),
        ({"time": "2024-13-01"}, "is not a date"),
    ],
)
def test_unreadable_entries_are_rejected_with_a_reason(entry: Any, reason: str) -> None:
    with pytest.raises(RecordRejected, match=reason):
        campaign_day_rows("c", entry)
    with pytest.raises(RecordRejected, match=reason):
        canvas_day_rows("c", entry)


def test_metric_value_takes_finite_numbers_only() -> None:
    assert metric_value(3) == 3.0 and metric_value(2.5) == 2.5
    for not_a_number in (True, None, "3", float("nan"), float("inf"), [1]):
        assert metric_value(not_a_number) is None


def test_series_day_normalises_to_the_date() -> None:
    assert series_day("2024-05-01") == "2024-05-01"
    assert series_day("2024-05-01T23:00:00-05:00") == "2024-05-01"


# ------------------------------------------------------------------ Canvas entries
CANVAS_DAY: dict[str, Any] = {
    "time": "2024-05-02",
    "total_stats": {"revenue": 20.0, "conversions": 3, "conversions_by_entry_time": 2, "entries": 100},
    "variant_stats": {"var-1": {"name": "Variant A", "revenue": 5.0, "conversions": 1, "entries": 60}},
    "step_stats": {
        "step-1": {
            "name": "Welcome",
            "revenue": 1.0,
            "conversions": 1,
            "messages": {
                "email": [{"sent": 80, "opens": 30, "unique_opens": 25}],
                "android_push": [{"sent": 40, "direct_opens": 4}],
            },
        },
        "step-2": {"name": "Delay", "conversions": 0},
    },
}


def test_canvas_day_keeps_totals_variants_steps_and_step_messages() -> None:
    rows = canvas_day_rows("cv", CANVAS_DAY)
    assert {(r.kind, r.object_id, r.day) for r in rows} == {("canvas", "cv", "2024-05-02")}
    values = keyed(rows)
    assert values[("", "", "", "entries")] == 100
    assert values[("", "", "", "conversions_by_entry_time")] == 2
    assert values[("", "var-1", "", "entries")] == 60
    assert values[("", "", "step-1", "conversions")] == 1
    assert values[("email", "", "step-1", "unique_opens")] == 25
    assert values[("android_push", "", "step-1", "direct_opens")] == 4
    assert values[("", "", "step-2", "conversions")] == 0
    assert "name" not in {r.metric for r in rows}


def test_canvas_day_without_breakdowns_keeps_the_totals() -> None:
    rows = canvas_day_rows("cv", {"time": "2024-05-02", "total_stats": {"entries": 7}})
    assert keyed(rows) == {("", "", "", "entries"): 7.0}


# ------------------------------------------------------------------ names
def test_names_come_from_details_and_series() -> None:
    details = {
        "messages": {"m1": {"channel": "email", "name": "Variant 1"}, "ctl": {"channel": "email", "type": "control"}},
    }
    assert campaign_message_names(details) == {
        "m1": {"channel": "email", "name": "Variant 1"},
        "ctl": {"channel": "email", "name": ""},
    }
    assert campaign_series_names([CAMPAIGN_DAY]) == {"v-a": "Variant A", "v-b": "Variant B", "ctrl": "Control"}
    steps, variants = canvas_structure(
        {
            "steps": [{"id": "s1", "name": "Welcome", "type": "message", "channels": ["email"]}, {"name": "no id"}],
            "variants": [{"id": "v1", "name": "Variant A"}],
        }
    )
    assert steps == [{"id": "s1", "name": "Welcome", "type": "message", "channels": ["email"]}]
    assert variants == {"v1": "Variant A"}
    assert canvas_series_names([CANVAS_DAY]) == ({"step-1": "Welcome", "step-2": "Delay"}, {"var-1": "Variant A"})


def test_only_metrics_named_unique_are_daily_uniques() -> None:
    assert is_daily_unique("unique_opens") and is_daily_unique("unique_recipients")
    assert not is_daily_unique("opens") and not is_daily_unique("entries")


# ------------------------------------------------------------------ windows
def test_four_hundred_days_take_four_campaign_windows_and_twenty_nine_canvas_windows() -> None:
    start, end = TODAY - timedelta(days=399), TODAY
    campaign = plan_windows(start, end, CAMPAIGN_WINDOW_DAYS)
    canvas = plan_windows(start, end, CANVAS_WINDOW_DAYS)
    assert len(campaign) == 4 == math.ceil(400 / 100)
    assert len(canvas) == 29 == math.ceil(400 / 14)
    assert max(w.length for w in canvas) == 14 and canvas[-1].length == 400 - 28 * 14
    assert campaign[0].start == start and campaign[-1].end == end


@given(
    start_offset=st.integers(min_value=0, max_value=2000),
    days=st.integers(min_value=1, max_value=900),
    max_days=st.integers(min_value=1, max_value=120),
)
def test_windows_cover_each_day_once_in_order(start_offset: int, days: int, max_days: int) -> None:
    start = date(2020, 1, 1) + timedelta(days=start_offset)
    end = start + timedelta(days=days - 1)
    windows = plan_windows(start, end, max_days)
    assert len(windows) == series_calls_needed(days, max_days)
    assert windows[0].start == start and windows[-1].end == end
    assert all(1 <= w.length <= max_days for w in windows)
    for earlier, later in zip(windows, windows[1:], strict=False):
        assert later.start == earlier.end + timedelta(days=1)


def test_an_empty_span_needs_no_window() -> None:
    assert plan_windows(TODAY, TODAY - timedelta(days=1), 14) == []
    assert series_calls_needed(0, 14) == 0
    with pytest.raises(ValueError):
        plan_windows(TODAY, TODAY, 0)


# ------------------------------------------------------------------ activity
def test_campaign_activity_extends_the_last_send_by_the_longest_conversion_window() -> None:
    details = {
        "first_sent": "2024-01-01T10:00:00+00:00",
        "last_sent": "2024-02-01T18:00:00Z",
        "conversion_behaviors": [{"type": "Opens App", "window": 259_200}, {"window": 30 * 86_400}],
    }
    assert campaign_activity(details) == Activity(date(2024, 1, 1), date(2024, 3, 2))
    short = {**details, "conversion_behaviors": [{"window": 3600}]}
    assert campaign_activity(short).last == date(2024, 2, 1) + timedelta(days=ENGAGEMENT_TAIL_DAYS)
    assert campaign_activity({"first_sent": None, "last_sent": None}) == Activity(None, None)
    assert campaign_activity({"first_sent": "2024-01-01T00:00:00Z"}) == Activity(date(2024, 1, 1), None)


def test_canvas_activity_keeps_the_journey_tail_after_the_last_entry() -> None:
    details = {"first_entry": "2024-01-01T09:00:00+00:00", "last_entry": "2024-02-01T18:00:00+00:00"}
    assert canvas_activity(details) == Activity(date(2024, 1, 1), date(2024, 2, 1) + timedelta(days=CANVAS_TAIL_DAYS))
    assert canvas_activity({"first_entry": "2024-01-01T09:00:00Z", "last_entry": None}).last is None
    assert canvas_activity({}) == Activity(None, None)


# ------------------------------------------------------------------ what to pull
ONGOING = Activity(date(2020, 1, 1), None)


def test_first_run_backfills_the_horizon_and_later_runs_only_the_tail() -> None:
    first = plan_series(today=TODAY, complete_through=None, activity=ONGOING, max_days=100)
    assert first.start == TODAY - timedelta(days=BACKFILL_DAYS - 1) and first.end == TODAY
    assert len(first.windows) == 4
    # Next day: the partial day of the last run and the new day, in one call.
    later = plan_series(
        today=TODAY + timedelta(days=1), complete_through=TODAY - timedelta(days=1), activity=ONGOING, max_days=14
    )
    assert later.windows == (Window(TODAY, TODAY + timedelta(days=1)),)


def test_first_run_starts_at_the_first_activity_when_it_is_recent() -> None:
    young = Activity(TODAY - timedelta(days=20), None)
    plan = plan_series(today=TODAY, complete_through=None, activity=young, max_days=14)
    assert plan.start == TODAY - timedelta(days=20) and len(plan.windows) == 2


def test_dormant_and_never_sent_objects_need_no_call() -> None:
    ended = Activity(date(2024, 6, 1), date(2024, 7, 1))
    dormant = plan_series(today=TODAY, complete_through=date(2024, 7, 1), activity=ended, max_days=100)
    assert dormant.windows == () and dormant.reason.startswith("dormant")
    never = plan_series(today=TODAY, complete_through=None, activity=Activity(None, None), max_days=100)
    assert never.windows == () and never.reason == "never sent"
    too_old = Activity(date(2020, 1, 1), date(2020, 2, 1))
    assert plan_series(today=TODAY, complete_through=None, activity=too_old, max_days=100).windows == ()
    # An ended campaign is pulled once, up to the end of its activity only.
    once = plan_series(today=TODAY, complete_through=None, activity=ended, max_days=100)
    assert once.start == date(2024, 6, 1) and once.end == date(2024, 7, 1)


def test_since_only_adds_older_days_and_full_ignores_the_cursor() -> None:
    cursor = TODAY - timedelta(days=1)
    older = plan_series(
        today=TODAY, complete_through=cursor, activity=ONGOING, max_days=100, since=TODAY - timedelta(days=30)
    )
    assert older.start == TODAY - timedelta(days=30)
    newer = plan_series(today=TODAY, complete_through=cursor, activity=ONGOING, max_days=100, since=TODAY)
    assert newer.start == TODAY  # never skips the days after the cursor
    first = plan_series(today=TODAY, complete_through=None, activity=ONGOING, max_days=100, since=date(2024, 1, 1))
    assert first.start == date(2024, 1, 1)
    full = plan_series(today=TODAY, complete_through=cursor, activity=ONGOING, max_days=100, full=True)
    assert full.start == TODAY - timedelta(days=BACKFILL_DAYS - 1)


def test_the_cursor_stops_before_today_and_never_goes_back() -> None:
    yesterday = TODAY - timedelta(days=1)
    assert complete_through_after(Window(TODAY - timedelta(days=5), TODAY), TODAY, None) == yesterday
    assert complete_through_after(Window(TODAY, TODAY), TODAY, yesterday) == yesterday
    past = Window(date(2024, 1, 1), date(2024, 4, 9))
    assert complete_through_after(past, TODAY, None) == date(2024, 4, 9)
    assert complete_through_after(past, TODAY, yesterday) == yesterday


def test_ending_at_is_the_end_of_a_past_day_and_now_for_today() -> None:
    now = datetime(2025, 3, 10, 12, 30, 5, tzinfo=UTC).timestamp()
    assert ending_at(date(2025, 3, 1), now) == "2025-03-01T23:59:59Z"
    assert ending_at(date(2025, 3, 10), now) == "2025-03-10T12:30:05Z"


def test_edit_cursor_is_utc_to_the_second() -> None:
    assert edit_cursor("2024-05-01T10:00:00+02:00") == "2024-05-01T08:00:00"
    assert edit_cursor("2024-05-01T10:00:00.123Z") == "2024-05-01T10:00:00"
    assert edit_cursor("2024-05-01T10:00:00") == "2024-05-01T10:00:00"
    assert edit_cursor("last tuesday") is None and edit_cursor(None) is None
