"""Braze Canvases -> the local analytics store: daily data series with variant and step breakdowns.

Same pattern as campaigns (``sync/campaigns.py``): discovery by ``last_edit.time[gt]``, dormant
Canvases skipped by their last entry, a per-Canvas cursor at the last complete day. Canvas series
take at most 14 days per call and need ``ending_at``; the variant and step breakdowns are always
asked for, since without them Braze answers totals only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..analytics import (
    CANVAS_WINDOW_DAYS,
    Window,
    canvas_activity,
    canvas_day_rows,
    canvas_series_names,
    canvas_structure,
    ending_at,
)
from ..models import ResourceResult
from ..state import MetricRow
from .campaigns import Details, Listed, SeriesSync
from .context import SyncContext


class CanvasSync(SeriesSync):
    resource = "canvases"
    kind = "canvas"
    window_days = CANVAS_WINDOW_DAYS

    def list_objects(self, edited_after: str | None) -> Iterator[Listed]:
        for canvas in self.ctx.braze.iter_canvases(edited_after=edited_after, include_archived=True):
            yield Listed(
                canvas.id,
                canvas.name,
                canvas.last_edited,
                {"last_edited": canvas.last_edited, "tags": list(canvas.tags)},
            )

    def read_details(self, object_id: str) -> Details:
        details = self.ctx.braze.canvas_details(object_id)
        steps, variants = canvas_structure(details)
        channels = details.get("channels")
        name = details.get("name")
        return Details(
            name=name if isinstance(name, str) and name else None,
            activity=canvas_activity(details),
            meta={
                "archived": bool(details.get("archived", False)),
                "draft": bool(details.get("draft", False)),
                "enabled": bool(details.get("enabled", False)),
                "channels": [str(c) for c in channels] if isinstance(channels, list) else [],
                "first_entry": details.get("first_entry"),
                "last_entry": details.get("last_entry"),
                "steps": steps,
                "variants": variants,
            },
        )

    def read_series(self, object_id: str, window: Window) -> list[Any]:
        data = self.ctx.braze.canvas_data_series(
            object_id,
            ending_at=ending_at(window.end, self.now),
            length=window.length,
            include_variant_breakdown=True,
            include_step_breakdown=True,
        )
        stats = data.get("stats")
        return list(stats) if isinstance(stats, list) else []

    def day_rows(self, object_id: str, entry: Any) -> list[MetricRow]:
        return canvas_day_rows(object_id, entry)

    def series_meta(self, entries: Sequence[Any], meta: Mapping[str, Any]) -> dict[str, Any]:
        # Steps deleted since keep their numbers in the series; their names come from there only.
        step_names, variant_names = canvas_series_names(entries)
        if not step_names and not variant_names:
            return {}
        known_steps = meta.get("step_names")
        known_variants = meta.get("variants")
        return {
            "step_names": {**(known_steps if isinstance(known_steps, Mapping) else {}), **step_names},
            "variants": {**variant_names, **(known_variants if isinstance(known_variants, Mapping) else {})},
        }


def run(ctx: SyncContext) -> ResourceResult:
    return CanvasSync(ctx).run()
