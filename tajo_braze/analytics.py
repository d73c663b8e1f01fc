"""Braze campaign and Canvas data series -> rows of the local analytics store. Pure functions only.

A data series answers one entry per day. Every number in it becomes one ``MetricRow`` keyed by
(kind, object, day, channel, variant, step, metric), so re-reading a day replaces its rows instead
of adding to them. Daily "unique" counts are unique within their day only: they are stored per day
and nothing here (or in the report) ever adds them up across days.

The window planning lives here too: which days of an object still need pulling, split into the
largest windows Braze accepts (100 days for campaigns, 14 for Canvases), given the object's
activity (first/last send or entry) and the day the store is complete through.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .errors import RecordRejected
from .state import MetricRow

CAMPAIGN_WINDOW_DAYS = 100
CANVAS_WINDOW_DAYS = 14
# A first run reaches back this far: a year and a month, enough for year-over-year comparisons.
BACKFILL_DAYS = 400
# Opens and clicks keep arriving for days after a send, so a campaign stays "active" for at least
# this long after its last send (longer when its conversion window is longer).
ENGAGEMENT_TAIL_DAYS = 7
# Users who entered a Canvas on its last entry day still walk through its delayed steps afterwards.
CANVAS_TAIL_DAYS = 30

# Keys of a series entry that label a number rather than being one.
_LABEL_KEYS = frozenset({"time", "name", "variation_api_id", "variation_name", "messages"})


# ------------------------------------------------------------------ numbers and days
def metric_value(value: Any) -> float | None:
    """A finite number as float; None for labels, booleans, nulls and anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def series_day(raw: Any) -> str:
    """The YYYY-MM-DD day of an entry's ``time`` (a date, or a datetime whose date is taken as is)."""
    if not isinstance(raw, str) or len(raw) < 10:
        raise RecordRejected(f"series entry has no usable 'time' (got {type(raw).__name__})", field="time")
    try:
        return date.fromisoformat(raw[:10]).isoformat()
    except ValueError:
        raise RecordRejected(f"series entry 'time' {raw[:40]!r} is not a date", field="time") from None


def is_daily_unique(metric: str) -> bool:
    """Whether a metric counts distinct users of one day (summing those across days overcounts)."""
    return "unique" in metric


def _parse_moment(raw: Any) -> datetime | None:
    """A Braze timestamp (ISO-8601, with Z or an offset) in UTC when it has a zone; None when unreadable."""
    if not isinstance(raw, str) or not raw:
        return None
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is None else moment.astimezone(UTC)


def parse_day(raw: Any) -> date | None:
    """The UTC day of a Braze timestamp; None when absent or unreadable."""
    moment = _parse_moment(raw)
    return moment.date() if moment is not None else None


def edit_cursor(raw: Any) -> str | None:
    """A ``last_edited`` timestamp in the ``yyyy-MM-DDTHH:mm:ss`` UTC form ``last_edit.time[gt]`` takes."""
    moment = _parse_moment(raw)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") if moment is not None else None


# ------------------------------------------------------------------ series -> rows
class _Rows:
    """Rows of one day, summed when the same key appears twice (two entries for one variant)."""

    def __init__(self, kind: str, object_id: str, day: str) -> None:
        self.kind, self.object_id, self.day = kind, object_id, day
        self.values: dict[tuple[str, str, str, str], float] = {}

    def add_block(self, block: Mapping[str, Any], *, channel: str = "", variant: str = "", step: str = "") -> None:
        for metric, raw in block.items():
            if metric in _LABEL_KEYS:
                continue
            value = metric_value(raw)
            if value is None:
                continue
            key = (channel, variant, step, str(metric))
            self.values[key] = self.values.get(key, 0.0) + value

    def add_messages(self, messages: Any, *, step: str = "") -> None:
        """``{channel: [entry per variant or message]}``; unknown channels pass through as they are."""
        if not isinstance(messages, Mapping):
            return
        for channel, entries in messages.items():
            if isinstance(entries, Mapping):
                entries = [entries]
            if not isinstance(entries, list):
                continue
            blocks = [entry for entry in entries if isinstance(entry, Mapping)]
            for index, entry in enumerate(blocks):
                variant = message_variant(entry, index, len(blocks))
                self.add_block(entry, channel=str(channel), variant=variant, step=step)

    def rows(self) -> list[MetricRow]:
        return [
            MetricRow(self.kind, self.object_id, self.day, channel, variant, step, metric, value)
            for (channel, variant, step, metric), value in sorted(self.values.items())
        ]


def message_variant(entry: Mapping[str, Any], index: int, count: int) -> str:
    """The variant key of one channel entry: its API id, else its name, else its position."""
    for key in ("variation_api_id", "variation_name"):
        value = entry.get(key)
        if isinstance(value, str) and value:
            return value
    return "" if count == 1 else f"#{index}"


def campaign_day_rows(campaign_id: str, entry: Any) -> list[MetricRow]:
    """One /campaigns/data_series entry: campaign-level numbers (channel "") and one row per
    channel, variant and metric. Raises RecordRejected for an entry that is not a dated object."""
    if not isinstance(entry, Mapping):
        raise RecordRejected(f"series entry is a JSON {type(entry).__name__}, not an object")
    rows = _Rows("campaign", campaign_id, series_day(entry.get("time")))
    rows.add_block(entry)
    rows.add_messages(entry.get("messages"))
    return rows.rows()


def canvas_day_rows(canvas_id: str, entry: Any) -> list[MetricRow]:
    """One /canvas/data_series ``stats`` entry: totals, per variant, per step, per step message."""
    if not isinstance(entry, Mapping):
        raise RecordRejected(f"series entry is a JSON {type(entry).__name__}, not an object")
    rows = _Rows("canvas", canvas_id, series_day(entry.get("time")))
    total = entry.get("total_stats")
    if isinstance(total, Mapping):
        rows.add_block(total)
    variants = entry.get("variant_stats")
    if isinstance(variants, Mapping):
        for variant_id, block in variants.items():
            if isinstance(block, Mapping):
                rows.add_block(block, variant=str(variant_id))
    steps = entry.get("step_stats")
    if isinstance(steps, Mapping):
        for step_id, block in steps.items():
            if isinstance(block, Mapping):
                rows.add_block(block, step=str(step_id))
                rows.add_messages(block.get("messages"), step=str(step_id))
    return rows.rows()


# ------------------------------------------------------------------ names for the report
def campaign_message_names(details: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """``message_variation_id -> {channel, name}`` from /campaigns/details ``messages``."""
    out: dict[str, dict[str, str]] = {}
    messages = details.get("messages")
    if isinstance(messages, Mapping):
        for message_id, message in messages.items():
            if isinstance(message, Mapping):
                out[str(message_id)] = {
                    "channel": str(message.get("channel") or ""),
                    "name": str(message.get("name") or ""),
                }
    return out


def campaign_series_names(entries: Iterable[Any]) -> dict[str, str]:
    """``variation_api_id -> variation_name`` as a multivariate campaign's series labels them."""
    names: dict[str, str] = {}
    for entry in entries:
        messages = entry.get("messages") if isinstance(entry, Mapping) else None
        if not isinstance(messages, Mapping):
            continue
        for items in messages.values():
            for item in items if isinstance(items, list) else ():
                if isinstance(item, Mapping):
                    api_id, name = item.get("variation_api_id"), item.get("variation_name")
                    if isinstance(api_id, str) and isinstance(name, str) and name:
                        names[api_id] = name
    return names


def canvas_structure(details: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Steps in journey order (``{id, name, type, channels}``) and ``variant id -> name``."""
    steps: list[dict[str, Any]] = []
    for step in details.get("steps") or ():
        if isinstance(step, Mapping) and step.get("id") is not None:
            channels = step.get("channels")
            steps.append(
                {
                    "id": str(step["id"]),
                    "name": str(step.get("name") or ""),
                    "type": str(step.get("type") or ""),
                    "channels": [str(c) for c in channels] if isinstance(channels, list) else [],
                }
            )
    variants = {
        str(v["id"]): str(v.get("name") or "")
        for v in details.get("variants") or ()
        if isinstance(v, Mapping) and v.get("id") is not None
    }
    return steps, variants


def canvas_series_names(entries: Iterable[Any]) -> tuple[dict[str, str], dict[str, str]]:
    """``(step id -> name, variant id -> name)`` as the series label them (deleted steps included)."""
    steps: dict[str, str] = {}
    variants: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        for key, into in (("step_stats", steps), ("variant_stats", variants)):
            blocks = entry.get(key)
            if isinstance(blocks, Mapping):
                for object_id, block in blocks.items():
                    if isinstance(block, Mapping) and isinstance(block.get("name"), str):
                        into[str(object_id)] = block["name"]
    return steps, variants


# ------------------------------------------------------------------ what to pull
@dataclass(frozen=True, slots=True)
class Window:
    """Days ``start..end`` inclusive, asked in one data-series call."""

    start: date
    end: date

    @property
    def length(self) -> int:
        return (self.end - self.start).days + 1


def plan_windows(start: date, end: date, max_days: int) -> list[Window]:
    """Days ``start..end`` in consecutive windows of at most ``max_days``, oldest first.

    Oldest first so the per-object cursor can move after each window is stored.
    """
    if max_days < 1:
        raise ValueError(f"max_days must be at least 1, got {max_days}")
    windows: list[Window] = []
    cursor = start
    while cursor <= end:
        last = min(end, cursor + timedelta(days=max_days - 1))
        windows.append(Window(cursor, last))
        cursor = last + timedelta(days=1)
    return windows


@dataclass(frozen=True, slots=True)
class Activity:
    """When an object had activity worth pulling: ``last`` None means it is still active."""

    first: date | None
    last: date | None


def campaign_activity(details: Mapping[str, Any]) -> Activity:
    """From /campaigns/details: first send, and the last send plus the time engagement and
    conversions keep arriving afterwards (the longest conversion window, at least a week)."""
    first = parse_day(details.get("first_sent"))
    last_sent = parse_day(details.get("last_sent"))
    if first is None:
        return Activity(None, None)
    if last_sent is None:
        return Activity(first, None)
    tail = ENGAGEMENT_TAIL_DAYS
    for behaviour in details.get("conversion_behaviors") or ():
        window_s = metric_value(behaviour.get("window")) if isinstance(behaviour, Mapping) else None
        if window_s is not None and window_s > 0:
            tail = max(tail, math.ceil(window_s / 86_400))
    return Activity(first, last_sent + timedelta(days=tail))


def canvas_activity(details: Mapping[str, Any]) -> Activity:
    """From /canvas/details: first entry, and the last entry plus the journey's tail."""
    first = parse_day(details.get("first_entry"))
    last_entry = parse_day(details.get("last_entry"))
    if first is None:
        return Activity(None, None)
    if last_entry is None:
        return Activity(first, None)
    return Activity(first, last_entry + timedelta(days=CANVAS_TAIL_DAYS))


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    """What one object needs this run: windows to pull, or why none (``reason``)."""

    windows: tuple[Window, ...]
    reason: str = ""

    @property
    def start(self) -> date | None:
        return self.windows[0].start if self.windows else None

    @property
    def end(self) -> date | None:
        return self.windows[-1].end if self.windows else None


def plan_series(
    *,
    today: date,
    complete_through: date | None,
    activity: Activity,
    max_days: int,
    since: date | None = None,
    full: bool = False,
    backfill_days: int = BACKFILL_DAYS,
) -> SeriesPlan:
    """The windows one object needs.

    - ``complete_through`` is the object's cursor: days up to it are stored and final. The days
      after it (the partial day of the last run included) are fetched again and replace what
      was stored, so nothing is counted twice.
    - A first run (or ``full``) starts at the later of the backfill horizon and the first
      activity; ``since`` moves that start, and with a cursor it can only add older days.
    - An object whose activity ended on or before its cursor is dormant: nothing to pull.
    """
    if activity.first is None:
        return SeriesPlan((), "never sent")
    floor = since if since is not None else today - timedelta(days=backfill_days - 1)
    natural_start = max(floor, activity.first)
    if complete_through is None or full:
        start = natural_start
    else:
        start = complete_through + timedelta(days=1)
        if since is not None:
            start = min(start, max(since, activity.first))
    end = today if activity.last is None else min(today, activity.last)
    if start > end:
        if complete_through is not None and not full and end <= complete_through:
            return SeriesPlan((), f"dormant: no activity after {complete_through.isoformat()}")
        return SeriesPlan((), f"no activity from {start.isoformat()} on")
    return SeriesPlan(tuple(plan_windows(start, end, max_days)))


def complete_through_after(window: Window, today: date, previous: date | None) -> date | None:
    """The cursor once ``window`` is stored: today is never complete, and the cursor never goes back."""
    through = min(window.end, today - timedelta(days=1))
    if previous is not None and previous > through:
        return previous
    return through


def ending_at(day: date, now: float) -> str:
    """The ``ending_at`` of a window ending on ``day``: the end of that day, or now for today."""
    end_of_day = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)
    moment = min(end_of_day, datetime.fromtimestamp(int(now), UTC))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def series_calls_needed(days: int, max_days: int) -> int:
    """How many calls cover ``days`` days in windows of ``max_days``."""
    return math.ceil(days / max_days) if days > 0 else 0

