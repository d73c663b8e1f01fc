"""Pure pieces of the segments sync: membership diffs, list addressing, targets, windows, checkpoints."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tajo_braze.mapping import FieldRule
from tajo_braze.models import Segment
from tajo_braze.state import MetricRow
from tajo_braze.sync.segments import (
    EXPORT_REUSE_MAX_AGE_S,
    USERS_EXPORT_REUSE_S,
    ExportCheckpoint,
    MemberRef,
    MirrorTarget,
    diff_sorted,
    first_day_to_fetch,
    list_name_for,
    member_ref,
    plan_targets,
    reusable_users_export,
    select_rules,
    series_windows,
    size_rows,
)

keys = st.lists(st.text(alphabet="abcxyz:@.0123", min_size=1, max_size=6), unique=True)


# ------------------------------------------------------------------ the membership diff
@given(keys, keys)
def test_diff_of_sorted_streams_equals_set_difference(current: list[str], mirrored: list[str]) -> None:
    changes = list(diff_sorted(sorted(current), sorted(mirrored)))
    assert {k for c, k in changes if c == "add"} == set(current) - set(mirrored)
    assert {k for c, k in changes if c == "remove"} == set(mirrored) - set(current)
    assert {k for c, k in changes if c == "keep"} == set(current) & set(mirrored)
    assert len(changes) == len(set(current) | set(mirrored))  # each key decided exactly once


def test_diff_streams_lazily_in_key_order() -> None:
    changes = list(diff_sorted(iter(["a", "c", "d"]), iter(["b", "c", "e"])))
    assert changes == [("add", "a"), ("remove", "b"), ("keep", "c"), ("add", "d"), ("remove", "e")]
    assert list(diff_sorted([], [])) == []
    assert list(diff_sorted([], ["x"])) == [("remove", "x")]


# ------------------------------------------------------------------ list addressing
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("ext:u-1", MemberRef("ext:u-1", "extIds", "u-1")),
        ("email:a@x.io", MemberRef("email:a@x.io", "emails", "a@x.io")),
        ("sms:+33612345678", MemberRef("sms:+33612345678", "ids", "+33612345678")),
        ("ext:with:colon", MemberRef("ext:with:colon", "extIds", "with:colon")),
        ("braze:5f00", None),
        ("unknown", None),
        ("ext:", None),
    ],
)
def test_member_keys_become_the_identifier_list_calls_take(key: str, expected: MemberRef | None) -> None:
    assert member_ref(key) == expected


# ------------------------------------------------------------------ which segment goes to which list
SEGMENTS = [
    Segment("s-eng", "engaged_users"),
    Segment("s-vip", "VIP customers"),
    Segment("s-all", "All Users"),
]


def test_configured_lists_win_and_mirrored_segments_get_a_prefixed_list() -> None:
    plan = plan_targets(SEGMENTS, [("engaged_users", "s-eng", 10)], ["s-eng", "s-vip"], {}, "braze_")
    assert plan.targets == (
        MirrorTarget("s-eng", "engaged_users", 10, None, True),
        MirrorTarget("s-vip", "VIP customers", None, "braze_VIP customers", False),
    )
    assert plan.notes == ()


def test_a_renamed_segment_keeps_the_list_created_for_it() -> None:
    # The list was created as braze_vip; the segment is now called "VIP customers".
    plan = plan_targets(SEGMENTS, [], ["s-vip"], {"s-vip": 42}, "braze_")
    assert plan.targets == (MirrorTarget("s-vip", "VIP customers", 42, None, False),)


def test_a_segment_mirrors_into_one_list_and_a_list_takes_one_segment() -> None:
    configured = [
        ("engaged_users", "s-eng", 10),
        ("s-eng", "s-eng", 11),
        ("vip", "s-vip", 10),
        ("s-eng", "s-eng", 10),
    ]
    plan = plan_targets(SEGMENTS, configured, [], {}, "braze_")
    assert [(t.segment_id, t.list_id) for t in plan.targets] == [("s-eng", 10)]
    assert len(plan.notes) == 2
    assert "list 11 is left alone" in plan.notes[0]
    assert "list 10 already mirrors segment 'engaged_users'" in plan.notes[1]


def test_list_names_use_the_configured_prefix() -> None:
    assert list_name_for("braze_", "vip") == "braze_vip"
    assert list_name_for("", "vip") == "vip"


# ------------------------------------------------------------------ export_segment attribute selection
RULES = [
    FieldRule("external_id", "BRAZE_ID"),
    FieldRule("email", "EMAIL"),
    FieldRule("first_name", "FIRSTNAME"),
    FieldRule("loyalty_points", "LOYALTY_POINTS", type="number", is_custom=True),
]


def test_included_attributes_select_their_rules_and_name_the_unknown_ones() -> None:
    selected, unknown = select_rules(RULES, ["first_name", " loyalty_points ", "email", "shoe_size"])
    assert [r.brevo for r in selected] == ["EMAIL", "FIRSTNAME", "LOYALTY_POINTS"]
    assert unknown == ["shoe_size"]
    assert select_rules(RULES, ["external_id"]) == ([RULES[0]], [])


# ------------------------------------------------------------------ size series windows
def test_windows_cover_the_range_in_pieces_braze_accepts() -> None:
    start = date(2024, 1, 1)
    windows = series_windows(start, start + timedelta(days=249))
    assert windows == [
        (date(2024, 1, 1), date(2024, 4, 9)),
        (date(2024, 4, 10), date(2024, 7, 18)),
        (date(2024, 7, 19), date(2024, 9, 6)),
    ]
    assert all((end - first).days + 1 <= 100 for first, end in windows)
    assert series_windows(start, start) == [(start, start)]
    assert series_windows(start, start - timedelta(days=1)) == []
    with pytest.raises(ValueError, match="max_days"):
        series_windows(start, start, 0)


def test_series_resume_at_the_last_stored_day_which_may_have_been_partial() -> None:
    today = date(2024, 6, 30)
    assert first_day_to_fetch(date(2024, 6, 28), today, since=None, full=False) == date(2024, 6, 28)
    assert first_day_to_fetch(None, today, since=None, full=False) == today - timedelta(days=99)
    assert first_day_to_fetch(None, today, since=date(2024, 1, 1), full=False) == date(2024, 1, 1)
    assert first_day_to_fetch(date(2024, 6, 28), today, since=None, full=True) == today - timedelta(days=99)
    assert first_day_to_fetch(date(2024, 7, 5), today, since=None, full=False) == today  # never past today


def test_size_points_become_one_row_per_day_without_future_or_unreadable_points() -> None:
    points = [
        {"time": "2024-06-29", "size": 120},
        {"time": "2024-06-30T00:00:00Z", "size": 125.0},
        {"time": "2024-07-01", "size": 130},  # after the run's day
        {"time": "not a day", "size": 1},
        {"time": "2024-06-28", "size": "12"},
        {"time": "2024-06-27", "size": True},
        {"size": 3},
    ]
    assert size_rows("s-1", points, not_after=date(2024, 6, 30)) == [
        MetricRow("segment", "s-1", "2024-06-29", "", "", "", "size", 120.0),
        MetricRow("segment", "s-1", "2024-06-30", "", "", "", "size", 125.0),
    ]


# ------------------------------------------------------------------ checkpoints and export reuse
CHECKPOINT = ExportCheckpoint(
    segment_id="s-1",
    list_id=7,
    fields=("external_id", "email"),
    url="https://exports.example/x",
    object_prefix="p",
    requested_at=1_000.0,
    path="exports/x.zip",
    phase="applying",
    member=2,
    line=40,
)


def test_a_checkpoint_survives_the_state_store_round_trip() -> None:
    assert ExportCheckpoint.from_value(CHECKPOINT.as_value()) == CHECKPOINT
    assert ExportCheckpoint.from_value({"segment_id": "s-1"}) is None
    assert ExportCheckpoint.from_value({**CHECKPOINT.as_value(), "phase": "writing"}) is None
    assert ExportCheckpoint.from_value("nonsense") is None


def test_a_checkpoint_resumes_only_for_the_same_list_and_fields_while_young() -> None:
    now = CHECKPOINT.requested_at + 60
    assert CHECKPOINT.resumable(list_id=7, fields=["external_id", "email"], now=now)
    assert not CHECKPOINT.resumable(list_id=8, fields=["external_id", "email"], now=now)
    assert not CHECKPOINT.resumable(list_id=7, fields=["external_id"], now=now)
    assert not CHECKPOINT.resumable(
        list_id=7, fields=["external_id", "email"], now=CHECKPOINT.requested_at + EXPORT_REUSE_MAX_AGE_S
    )


def test_the_users_syncs_fresh_export_of_the_same_segment_is_reused() -> None:
    record = {
        "segment_id": "s-all",
        "fields": ["external_id", "email", "first_name"],
        "url": "https://exports.example/u",
        "object_prefix": "pre",
        "requested_at": 5_000.0,
        "path": "exports/u.zip",
    }
    found = reusable_users_export(record, segment_id="s-all", fields=["email", "external_id"], now=5_060.0)
    assert found == ("https://exports.example/u", "pre", 5_000.0, "exports/u.zip")
    assert reusable_users_export(record, segment_id="s-vip", fields=["email"], now=5_060.0) is None
    assert reusable_users_export(record, segment_id="s-all", fields=["phone"], now=5_060.0) is None
    late = 5_000.0 + USERS_EXPORT_REUSE_S + 1
    assert reusable_users_export(record, segment_id="s-all", fields=["email"], now=late) is None
    assert reusable_users_export(None, segment_id="s-all", fields=["email"], now=5_060.0) is None
