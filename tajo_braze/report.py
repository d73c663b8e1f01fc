"""The analytics report: campaign and Canvas data series from the local store, for people and tools.

- ``html``: one self-contained page for marketers (no script, no stylesheet or font from anywhere,
  charts drawn here as inline SVG): a table of top campaigns, per campaign a chart over time of
  sends, opens, clicks and conversions, per Canvas a funnel over its steps.
- ``csv``: one row per stored point (long format), ready for a spreadsheet or a warehouse load.
- ``json``: the same points plus each object's name, metadata and period totals.

Campaign and Canvas names are user data: every one is escaped in HTML (and guarded against
formula injection in CSV). Daily "unique" counts are unique within their day only, so they are
exported per day and never added up into a total anywhere in the report.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from .analytics import is_daily_unique
from .errors import UsageError
from .state import MetricRow, StateStore

FORMATS = ("html", "csv", "json")
KINDS = ("campaign", "canvas")
CSV_COLUMNS = ("kind", "object_id", "object_name", "day", "channel", "variant", "step", "metric", "value")

# Channel metrics that add up into the cross-channel figures of the charts and tables. All of them
# are plain counts (never daily-unique ones), so summing them over channels and days is sound.
SEND_METRICS = frozenset({"sent"})
DELIVERY_METRICS = frozenset({"delivered"})
OPEN_METRICS = frozenset({"opens", "total_opens"})
CLICK_METRICS = frozenset({"clicks", "body_clicks", "total_clicks"})
FIGURES = ("sends", "opens", "clicks", "conversions")
FIGURE_LABELS = {"sends": "Sends", "opens": "Opens", "clicks": "Clicks", "conversions": "Conversions"}
FIGURE_COLOURS = {"sends": "#2f6db5", "opens": "#d9822b", "clicks": "#2e8b57", "conversions": "#b03a48"}
CANVAS_FIGURES = ("entries", "sends", "conversions")
CANVAS_LABELS = {"entries": "Entries", "sends": "Messages sent", "conversions": "Conversions"}
CANVAS_COLOURS = {"entries": "#6a4c93", "sends": "#2f6db5", "conversions": "#b03a48"}

# Spreadsheets run a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# ------------------------------------------------------------------ the data of a report
@dataclass
class Totals:
    """Plain counts of one object over the period (daily-unique metrics are left out on purpose)."""

    sends: float = 0.0
    delivered: float = 0.0
    opens: float = 0.0
    clicks: float = 0.0
    conversions: float = 0.0
    revenue: float = 0.0
    entries: float = 0.0
    active_days: int = 0
    last_active_day: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": _plain(self.sends),
            "delivered": _plain(self.delivered),
            "opens": _plain(self.opens),
            "clicks": _plain(self.clicks),
            "conversions": _plain(self.conversions),
            "revenue": round(self.revenue, 2),
            "entries": _plain(self.entries),
            "active_days": self.active_days,
            "last_active_day": self.last_active_day,
        }


@dataclass
class ObjectReport:
    kind: str
    object_id: str
    name: str
    meta: dict[str, Any]
    rows: list[MetricRow] = field(default_factory=list)

    @property
    def first_day(self) -> str | None:
        return min(row.day for row in self.rows) if self.rows else None

    @property
    def last_day(self) -> str | None:
        return max(row.day for row in self.rows) if self.rows else None

    def daily(self) -> dict[str, dict[str, float]]:
        """``day -> {sends, opens, clicks, conversions, revenue, entries}`` across channels."""
        out: dict[str, dict[str, float]] = {}
        for row in self.rows:
            figure = figure_of(row)
            if figure is None:
                continue
            day = out.setdefault(row.day, dict.fromkeys((*FIGURES, "revenue", "entries", "delivered"), 0.0))
            day[figure] += row.value
        return out

    def totals(self) -> Totals:
        totals = Totals()
        for name, day in sorted(self.daily().items()):
            totals.sends += day["sends"]
            totals.delivered += day["delivered"]
            totals.opens += day["opens"]
            totals.clicks += day["clicks"]
            totals.conversions += day["conversions"]
            totals.revenue += day["revenue"]
            totals.entries += day["entries"]
            if day["sends"] or day["entries"]:
                totals.active_days += 1
                totals.last_active_day = name
        return totals


def figure_of(row: MetricRow) -> str | None:
    """Which cross-channel figure a stored point adds to, if any."""
    if is_daily_unique(row.metric):
        return None
    if row.channel:
        if row.metric in SEND_METRICS:
            return "sends"
        if row.metric in DELIVERY_METRICS:
            return "delivered"
        if row.metric in OPEN_METRICS:
            return "opens"
        if row.metric in CLICK_METRICS:
            return "clicks"
        return None
    if row.variant or row.step:
        return None  # per-variant and per-step blocks repeat what the object-level block counts
    if row.metric in ("conversions", "revenue", "entries"):
        return row.metric
    return None


@dataclass
class ReportData:
    since: str | None
    objects: list[ObjectReport]
    rows: list[MetricRow]

    @property
    def first_day(self) -> str | None:
        return min((row.day for row in self.rows), default=None)

    @property
    def last_day(self) -> str | None:
        return max((row.day for row in self.rows), default=None)

    def of_kind(self, kind: str) -> list[ObjectReport]:
        return [obj for obj in self.objects if obj.kind == kind]


def collect(state: StateStore, since: str | None) -> ReportData:
    rows = state.query_metrics(since=since)
    rows = [row for row in rows if row.kind in KINDS]
    objects: dict[tuple[str, str], ObjectReport] = {}
    for kind in KINDS:
        for object_id, (name, meta) in state.objects(kind).items():
            objects[(kind, object_id)] = ObjectReport(kind, object_id, name, dict(meta))
    for row in rows:
        key = (row.kind, row.object_id)
        if key not in objects:  # points of an object whose name was never stored: show its id
            objects[key] = ObjectReport(row.kind, row.object_id, row.object_id, {})
        objects[key].rows.append(row)
    ordered = sorted(objects.values(), key=lambda o: (KINDS.index(o.kind), o.name.casefold(), o.object_id))
    return ReportData(since=since, objects=ordered, rows=rows)


def render_report(state: StateStore, *, format: str = "html", since: str | None = None) -> str:
    """The report of what the store holds (from ``since``, a YYYY-MM-DD day, when given)."""
    if format not in FORMATS:
        raise UsageError(f"Unknown report format '{format}'.", fix=f"Use one of: {', '.join(FORMATS)}.")
    data = collect(state, _since_day(since))
    if format == "csv":
        return render_csv(data)
    if format == "json":
        return render_json(data)
    return render_html(data)


def _since_day(since: str | None) -> str | None:
    if since is None or since == "":
        return None
    try:
        return date.fromisoformat(since.strip()[:10]).isoformat()
    except ValueError:
        raise UsageError(
            f"--since '{since}' is not a date.", fix="Use YYYY-MM-DD, e.g. --since 2024-01-01."
        ) from None


# ------------------------------------------------------------------ CSV and JSON for tools
def number_text(value: float) -> str:
    """A number as text that reads back to the same float: integers without a trailing '.0'."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _plain(value: float) -> int | float:
    return int(value) if value.is_integer() and abs(value) < 1e15 else value


def csv_safe(text: str) -> str:
    """A name a spreadsheet shows as text, never runs as a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def render_csv(data: ReportData) -> str:
    names = {(obj.kind, obj.object_id): obj.name for obj in data.objects}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in data.rows:
        writer.writerow(
            (
                row.kind,
                row.object_id,
                csv_safe(names.get((row.kind, row.object_id), row.object_id)),
                row.day,
                row.channel,
                row.variant,
                row.step,
                row.metric,
                number_text(row.value),
            )
        )
    return out.getvalue()


def render_json(data: ReportData) -> str:
    payload = {
        "report": "braze-analytics",
        "version": 1,
        "since": data.since,
        "first_day": data.first_day,
        "last_day": data.last_day,
        "notes": [
            "Metrics whose name contains 'unique' count distinct users within one day; "
            "adding them across days overcounts, so no total of them is given."
        ],
        "objects": [
            {
                "kind": obj.kind,
                "id": obj.object_id,
                "name": obj.name,
                "meta": obj.meta,
                "first_day": obj.first_day,
                "last_day": obj.last_day,
                "totals": obj.totals().as_dict(),
            }
            for obj in data.objects
        ],
        "metrics": [
            {
                "kind": row.kind,
                "object_id": row.object_id,
                "day": row.day,
                "channel": row.channel,
                "variant": row.variant,
                "step": row.step,
                "metric": row.metric,
                "value": _plain(row.value),
            }
            for row in data.rows
        ],
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=False)


def rows_from_csv(text: str) -> list[MetricRow]:
    """Read a CSV report back into points (for tools and round-trip checks)."""
    reader = csv.DictReader(io.StringIO(text))
    return [
        MetricRow(
            r["kind"], r["object_id"], r["day"], r["channel"], r["variant"], r["step"], r["metric"], float(r["value"])
        )
        for r in reader
    ]


def rows_from_json(text: str) -> list[MetricRow]:
    """Read a JSON report back into points."""
    payload = json.loads(text)
    return [
        MetricRow(
            m["kind"], m["object_id"], m["day"], m["channel"], m["variant"], m["step"], m["metric"], float(m["value"])
        )
        for m in payload["metrics"]
    ]


# ------------------------------------------------------------------ HTML for people
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def compact(value: float) -> str:
    """1234 -> '1.2k', for axis labels."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def count_text(value: float) -> str:
    return f"{value:,.0f}"


def money_text(value: float) -> str:
    return f"{value:,.2f}"


def percent_text(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "—"


def _day_span(days: Sequence[str]) -> tuple[date, date]:
    first, last = date.fromisoformat(min(days)), date.fromisoformat(max(days))
    return first, last


def _segments(points: Sequence[tuple[date, float]]) -> list[list[tuple[date, float]]]:
    """Split a day-sorted series where days are missing: a gap is unknown, not zero."""
    runs: list[list[tuple[date, float]]] = []
    for day, value in points:
        if runs and (day - runs[-1][-1][0]) == timedelta(days=1):
            runs[-1].append((day, value))
        else:
            runs.append([(day, value)])
    return runs


def panels_svg(
    title: str,
    daily: Mapping[str, Mapping[str, float]],
    figures: Sequence[str],
    labels: Mapping[str, str],
    colours: Mapping[str, str],
    *,
    width: int = 760,
    panel_height: int = 64,
) -> str:
    """Small multiples: one panel per figure over the same days, each on its own scale (so
    conversions stay readable beside sends)."""
    days = sorted(daily)
    left, right, top, gap, axis = 120, 12, 8, 14, 22
    plot_width = width - left - right
    height = top + len(figures) * (panel_height + gap) + axis
    parts = [
        f'<svg class="chart" role="img" aria-label="{_e(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title>{_e(title)}</title>'
    ]
    if not days:
        parts.append(f'<text x="{left}" y="{top + 20}" class="muted">No data in this period</text></svg>')
        return "".join(parts)
    first, last = _day_span(days)
    span = max((last - first).days, 1)

    def x_of(day: date) -> float:
        return left + plot_width * (day - first).days / span

    for index, figure in enumerate(figures):
        y0 = top + index * (panel_height + gap)
        values = [(date.fromisoformat(day), float(daily[day].get(figure, 0.0))) for day in days]
        peak = max((value for _, value in values), default=0.0)
        scale = peak if peak > 0 else 1.0
        colour = colours[figure]
        parts.append(
            f'<g class="panel" data-figure="{_e(figure)}">'
            f'<text x="{left - 8}" y="{y0 + 14}" text-anchor="end" class="label">{_e(labels[figure])}</text>'
            f'<text x="{left - 8}" y="{y0 + 30}" text-anchor="end" class="muted">max {_e(compact(peak))}</text>'
            f'<line x1="{left}" y1="{y0 + panel_height}" x2="{left + plot_width}" y2="{y0 + panel_height}" '
            f'class="axis"/>'
        )
        for run in _segments(values):
            coords = " ".join(
                f"{x_of(day):.1f},{y0 + panel_height - panel_height * value / scale:.1f}" for day, value in run
            )
            if len(run) == 1:
                x, y = coords.split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="1.5" fill="{colour}"/>')
            else:
                parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.3"/>')
        parts.append("</g>")
    base = top + len(figures) * (panel_height + gap) + 12
    middle = first + timedelta(days=span // 2)
    for anchor, day in (("start", first), ("middle", middle), ("end", last)):
        parts.append(
            f'<text x="{x_of(day):.1f}" y="{base}" text-anchor="{anchor}" class="muted">{day.isoformat()}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class FunnelStep:
    name: str
    reached: float | None  # None: the step sends nothing (a delay, a split)
    messages: Mapping[str, float]  # channel -> messages sent over the period
    conversions: float


def canvas_funnel(obj: ObjectReport) -> tuple[float, list[FunnelStep]]:
    """Entries over the period and, per step in journey order, the users it reached at least.

    A step that sends on several channels (email and push) may reach one user on each, so its
    reach is the largest channel of each day, not their sum; the messages per channel are kept
    beside it.
    """
    entries = 0.0
    sent: dict[str, dict[str, dict[str, float]]] = {}  # step -> day -> channel -> sent
    conversions: dict[str, float] = {}
    for row in obj.rows:
        if is_daily_unique(row.metric):
            continue
        if not row.step:
            if not row.channel and not row.variant and row.metric == "entries":
                entries += row.value
            continue
        if row.channel and row.metric in SEND_METRICS:
            day = sent.setdefault(row.step, {}).setdefault(row.day, {})
            day[row.channel] = day.get(row.channel, 0.0) + row.value
        elif not row.channel and not row.variant and row.metric == "conversions":
            conversions[row.step] = conversions.get(row.step, 0.0) + row.value
    meta_steps = obj.meta.get("steps")
    step_names = obj.meta.get("step_names")
    order: list[tuple[str, str]] = []
    if isinstance(meta_steps, list):
        order = [(str(s.get("id")), str(s.get("name") or "")) for s in meta_steps if isinstance(s, Mapping)]
    known = {step_id for step_id, _ in order}
    extra = sorted((set(sent) | set(conversions)) - known)
    names = step_names if isinstance(step_names, Mapping) else {}
    order += [(step_id, str(names.get(step_id) or step_id) + " (removed)") for step_id in extra]
    steps: list[FunnelStep] = []
    for step_id, name in order:
        days = sent.get(step_id)
        messages: dict[str, float] = {}
        for channels in (days or {}).values():
            for channel, value in channels.items():
                messages[channel] = messages.get(channel, 0.0) + value
        reached = sum(max(channels.values()) for channels in days.values()) if days else None
        steps.append(FunnelStep(name or step_id, reached, messages, conversions.get(step_id, 0.0)))
    return entries, steps


def funnel_svg(title: str, entries: float, steps: Sequence[FunnelStep], *, width: int = 760) -> str:
    row_height, label_width = 34, 230
    bar_space = width - label_width - 200
    height = row_height * (len(steps) + 1) + 8
    peak = max([entries, *(s.reached or 0.0 for s in steps)]) or 1.0
    parts = [
        f'<svg class="funnel" role="img" aria-label="{_e(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title>{_e(title)}</title>'
    ]
    bars: list[tuple[str, float | None, str]] = [("Entries", entries, count_text(entries))]
    for step in steps:
        if step.reached is None:
            bars.append((step.name, None, "sends no message"))
        else:
            bars.append(
                (step.name, step.reached, f"{count_text(step.reached)} reached ({percent_text(step.reached, entries)})")
            )
    for index, (name, value, caption) in enumerate(bars):
        y = 4 + index * row_height
        label = name if len(name) <= 34 else name[:33] + "…"
        parts.append(
            f'<g class="step"><text x="{label_width - 8}" y="{y + 20}" text-anchor="end" class="label">'
            f"{_e(label)}</text>"
        )
        if value is not None:
            bar = max(bar_space * value / peak, 1.0 if value else 0.0)
            colour = "#6a4c93" if index == 0 else "#2f6db5"
            parts.append(
                f'<rect x="{label_width}" y="{y + 6}" width="{bar:.1f}" height="20" fill="{colour}" rx="2"/>'
                f'<text x="{label_width + bar + 6:.1f}" y="{y + 20}" class="muted">{_e(caption)}</text>'
            )
        else:
            parts.append(f'<text x="{label_width}" y="{y + 20}" class="muted">{_e(caption)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _funnel_table(entries: float, steps: Sequence[FunnelStep]) -> str:
    body = [
        f'<tr><td class="t">Entries</td><td>{count_text(entries)}</td><td>100%</td><td class="t"></td><td></td></tr>'
    ]
    for step in steps:
        messages = ", ".join(f"{channel} {count_text(n)}" for channel, n in sorted(step.messages.items()))
        reached = "—" if step.reached is None else count_text(step.reached)
        share = "—" if step.reached is None else percent_text(step.reached, entries)
        body.append(
            f'<tr><td class="t">{_e(step.name)}</td><td>{reached}</td><td>{share}</td>'
            f'<td class="t">{_e(messages or "—")}</td>'
            f"<td>{count_text(step.conversions)}</td></tr>"
        )
    return (
        '<table class="funnel"><thead><tr><th class="t">Step</th><th>Reached (at least)</th><th>Of entries</th>'
        '<th class="t">Messages sent</th><th>Conversions</th></tr></thead><tbody>' + "".join(body) + "</tbody></table>"
    )


def _channel_table(obj: ObjectReport) -> str:
    channels: dict[str, dict[str, float]] = {}
    for row in obj.rows:
        if not row.channel or is_daily_unique(row.metric):
            continue
        figure = figure_of(row)
        bucket = channels.setdefault(row.channel, {"sends": 0.0, "delivered": 0.0, "opens": 0.0, "clicks": 0.0})
        if figure in bucket:
            bucket[figure] += row.value
    if not channels:
        return ""
    body = "".join(
        f"<tr><td class=\"t\">{_e(channel)}</td><td>{count_text(v['sends'])}</td><td>{count_text(v['delivered'])}</td>"
        f"<td>{count_text(v['opens'])}</td><td>{count_text(v['clicks'])}</td></tr>"
        for channel, v in sorted(channels.items())
    )
    return (
        '<table class="channels"><thead><tr><th class="t">Channel</th><th>Sent</th><th>Delivered</th><th>Opens</th>'
        f"<th>Clicks</th></tr></thead><tbody>{body}</tbody></table>"
    )


def _top_campaigns(campaigns: Sequence[tuple[ObjectReport, Totals]]) -> str:
    body = []
    for rank, (obj, t) in enumerate(campaigns, start=1):
        body.append(
            f'<tr><td>{rank}</td><td class="t"><a href="#campaign-{rank}">{_e(obj.name)}</a></td>'
            f"<td>{count_text(t.sends)}</td><td>{count_text(t.delivered)}</td><td>{count_text(t.opens)}</td>"
            f"<td>{count_text(t.clicks)}</td><td>{percent_text(t.clicks, t.sends)}</td>"
            f"<td>{count_text(t.conversions)}</td><td>{money_text(t.revenue)}</td><td>{t.active_days}</td>"
            f"<td>{_e(t.last_active_day or '—')}</td></tr>"
        )
    return (
        '<table class="top"><thead><tr><th>#</th><th class="t">Campaign</th><th>Sent</th><th>Delivered</th>'
        "<th>Opens</th><th>Clicks</th><th>Clicks per send</th><th>Conversions</th><th>Revenue (USD)</th>"
        "<th>Days sending</th><th>Last send</th></tr></thead><tbody>" + "".join(body) + "</tbody></table>"
    )


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;margin:0;background:#f6f7f9}
main{max-width:1000px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px}h3{font-size:16px;margin:0 0 4px}
article{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:16px;margin:12px 0}
table{border-collapse:collapse;width:100%;margin:8px 0;background:#fff}
th,td{padding:4px 8px;border-bottom:1px solid #e6e9ee;text-align:right;white-space:nowrap}
th.t,td.t{text-align:left;white-space:normal}
.muted{fill:#6b7380;color:#6b7380;font-size:12px}.label{fill:#1d2430;font-size:13px}
.axis{stroke:#c5cad3;stroke-width:1}svg{max-width:100%;height:auto;font-family:inherit}
nav a{margin-right:16px}p.note{color:#6b7380}
"""


def render_html(data: ReportData) -> str:
    campaigns = sorted(
        ((obj, obj.totals()) for obj in data.of_kind("campaign")),
        key=lambda pair: (-pair[1].sends, pair[0].name.casefold(), pair[0].object_id),
    )
    canvases = data.of_kind("canvas")
    period = (
        f"{data.first_day} to {data.last_day}" if data.first_day and data.last_day else "no data stored yet"
    )
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing on this page may load anything: it must open offline and leak nothing.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<title>Braze campaign and Canvas analytics</title>",
        f"<style>{_STYLE}</style></head><body><main>",
        "<header><h1>Braze campaign and Canvas analytics</h1>",
        f"<p>Daily data series from Braze, {_e(period)}"
        + (f" (since {_e(data.since)})" if data.since else "")
        + f". {len(campaigns)} campaign(s), {len(canvases)} Canvas(es).</p>",
        '<p class="note">Opens and clicks add up every channel (email opens, push opens, content-card '
        "clicks …). Unique counts are unique within one day only, so they are not added up here; the "
        "CSV and JSON exports keep them per day.</p>",
        '<nav><a href="#top-campaigns">Top campaigns</a><a href="#campaigns">Campaigns over time</a>'
        '<a href="#canvases">Canvas funnels</a></nav></header>',
        '<section id="top-campaigns"><h2>Top campaigns</h2>',
        _top_campaigns(campaigns) if campaigns else '<p class="note">No campaign tracked yet.</p>',
        '</section><section id="campaigns"><h2>Campaigns over time</h2>',
    ]
    for rank, (obj, totals) in enumerate(campaigns, start=1):
        channels = obj.meta.get("channels")
        channel_text = ", ".join(str(c) for c in channels) if isinstance(channels, list) and channels else ""
        out.append(
            f'<article class="campaign" id="campaign-{rank}" data-object-id="{_e(obj.object_id)}">'
            f"<h3>{_e(obj.name)}</h3>"
            f'<p class="note">{_e(channel_text)}{" · " if channel_text else ""}'
            f"{_e(obj.first_day or '—')} to {_e(obj.last_day or '—')} · "
            f"{count_text(totals.sends)} sent · {count_text(totals.conversions)} conversions · "
            f"{money_text(totals.revenue)} USD</p>"
        )
        if obj.rows:
            out.append(
                panels_svg(
                    f"{obj.name}: sends, opens, clicks and conversions per day",
                    obj.daily(),
                    FIGURES,
                    FIGURE_LABELS,
                    FIGURE_COLOURS,
                )
            )
            out.append(_channel_table(obj))
        else:
            out.append('<p class="note">No data in this period.</p>')
        out.append("</article>")
    out.append('</section><section id="canvases"><h2>Canvas funnels</h2>')
    if not canvases:
        out.append('<p class="note">No Canvas tracked yet.</p>')
    for index, obj in enumerate(canvases, start=1):
        entries, steps = canvas_funnel(obj)
        totals = obj.totals()
        out.append(
            f'<article class="canvas" id="canvas-{index}" data-object-id="{_e(obj.object_id)}">'
            f"<h3>{_e(obj.name)}</h3>"
            f'<p class="note">{_e(obj.first_day or "—")} to {_e(obj.last_day or "—")} · '
            f"{count_text(entries)} entries · {count_text(totals.conversions)} conversions · "
            f"{money_text(totals.revenue)} USD</p>"
        )
        if obj.rows:
            out.append(funnel_svg(f"{obj.name}: entries and users reached per step", entries, steps))
            out.append(_funnel_table(entries, steps))
            out.append(
                panels_svg(
                    f"{obj.name}: entries, messages and conversions per day",
                    obj.daily(),
                    CANVAS_FIGURES,
                    CANVAS_LABELS,
                    CANVAS_COLOURS,
                    panel_height=48,
                )
            )
        else:
            out.append('<p class="note">No data in this period.</p>')
        out.append("</article>")
    out.append("</section></main></body></html>")
    return "\n".join(out) + "\n"
