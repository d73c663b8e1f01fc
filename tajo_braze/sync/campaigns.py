"""Braze campaigns -> the local analytics store: daily data series, pulled incrementally.

discover campaigns edited since the discovery cursor (``last_edit.time[gt]``) -> for every tracked
campaign read its details (name, variants, first and last send) -> skip it when it has been dormant
since its cursor -> pull ``/campaigns/data_series`` from the day after its cursor, in windows of at
most 100 days -> store each window's days and move the cursor to the last complete day, in one
transaction. Today is partial: it is stored, and fetched again (and replaced) by the next run.

``SeriesSync`` is the engine shared with Canvases (``sync/canvases.py``); a subclass says how to
list, describe and read one kind of object.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from ..analytics import (
    CAMPAIGN_WINDOW_DAYS,
    Activity,
    Window,
    campaign_activity,
    campaign_day_rows,
    campaign_message_names,
    campaign_series_names,
    complete_through_after,
    edit_cursor,
    ending_at,
    plan_series,
    series_day,
)
from ..errors import PermanentApiError, RecordRejected
from ..models import ResourceResult
from ..state import MetricRow
from .context import SyncContext

DIRECTION = "braze_to_brevo"
PLAN_SAMPLE = 50  # objects listed one by one in a dry run's plan


@dataclass(frozen=True, slots=True)
class Listed:
    """One object of a /…/list page."""

    id: str
    name: str
    last_edited: str | None
    meta: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Details:
    """What /…/details says about one object: its name, activity, and metadata for the report."""

    name: str | None
    activity: Activity
    meta: Mapping[str, Any]


@dataclass
class _Tally:
    discovered: int = 0
    series_calls: int = 0
    dormant: int = 0
    plan: list[dict[str, Any]] = field(default_factory=list)


def _day_or_none(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


class SeriesSync:
    """Discovery cursor + per-object series cursors + windowed pulls, for one kind of object."""

    resource = ""  # sync resource and cursor prefix: "campaigns"
    kind = ""  # state object and metric kind: "campaign"
    window_days = 0  # the API's maximum window

    def __init__(self, ctx: SyncContext) -> None:
        self.ctx = ctx
        self.result = ResourceResult(self.resource, direction=DIRECTION)
        self.now = ctx.clock()
        self.today = datetime.fromtimestamp(self.now, UTC).date()
        self.tally = _Tally()

    # ------------------------------------------------------------ what a kind of object provides
    def list_objects(self, edited_after: str | None) -> Iterator[Listed]:
        raise NotImplementedError

    def read_details(self, object_id: str) -> Details:
        raise NotImplementedError

    def read_series(self, object_id: str, window: Window) -> list[Any]:
        raise NotImplementedError

    def day_rows(self, object_id: str, entry: Any) -> list[MetricRow]:
        raise NotImplementedError

    def series_meta(self, entries: Sequence[Any], meta: Mapping[str, Any]) -> dict[str, Any]:
        """Metadata the series teach (variant and step names); merged into the object's meta."""
        return {}

    # ------------------------------------------------------------ the run
    def cursor_key(self, object_id: str) -> str:
        return f"{self.resource}:{object_id}"

    def run(self) -> ResourceResult:
        ctx = self.ctx
        started = time.monotonic()
        calls_before = dict(ctx.braze_session.call_counts)
        tracked = self.discover()
        order = sorted(tracked, key=lambda object_id: (tracked[object_id][0].casefold(), object_id))
        for object_id in order:
            ctx.check_stop()
            name, meta = tracked[object_id]
            self.sync_object(object_id, name, meta)
            ctx.progress.update(
                self.resource,
                read=self.result.read,
                written=self.result.created + self.result.updated,
                skipped=self.result.skipped,
                rejected=self.result.failed,
            )
        calls_after = ctx.braze_session.call_counts
        self.result.api_calls = {
            endpoint: count - calls_before.get(endpoint, 0)
            for endpoint, count in sorted(calls_after.items())
            if count > calls_before.get(endpoint, 0)
        }
        verb = "would need" if ctx.dry_run else "made"
        self.result.notes.append(
            f"{len(tracked)} {self.resource} tracked, {self.tally.discovered} new or edited since the last run, "
            f"{self.tally.dormant} without activity to pull; {verb} {self.tally.series_calls} data-series call(s)"
        )
        if ctx.dry_run:
            self.result.plan = {
                "tracked": len(tracked),
                "discovered": self.tally.discovered,
                "series_calls": self.tally.series_calls,
                "objects": self.tally.plan[:PLAN_SAMPLE],
            }
        self.result.duration_s = time.monotonic() - started
        return self.result

    def discover(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every tracked object (``id -> (name, meta)``): the stored ones plus those listed as edited
        after the discovery cursor. Unchanged objects are not listed again, so a run does not rescan
        the whole workspace."""
        ctx = self.ctx
        tracked = {object_id: (name, dict(meta)) for object_id, (name, meta) in ctx.state.objects(self.kind).items()}
        cursor = ctx.state.get_cursor(self.resource, DIRECTION) or {}
        stored_cursor = cursor.get("last_edit_gt")
        # A full run lists everything again; an incremental one only what was edited since.
        edited_after = stored_cursor if isinstance(stored_cursor, str) and not ctx.full else None
        newest = edited_after
        # Never move the cursor past the run's start: a future-dated edit would freeze discovery.
        ceiling = datetime.fromtimestamp(int(self.now), UTC).strftime("%Y-%m-%dT%H:%M:%S")
        for listed in self.list_objects(edited_after):
            ctx.check_stop()
            self.tally.discovered += 1
            _, known = tracked.get(listed.id, ("", {}))
            meta = {**known, **listed.meta}
            tracked[listed.id] = (listed.name, meta)
            if not ctx.dry_run:
                ctx.state.upsert_object(self.kind, listed.id, listed.name, meta)
            edited = edit_cursor(listed.last_edited)
            if edited is not None:
                edited = min(edited, ceiling)
                newest = edited if newest is None else max(newest, edited)
        if not ctx.dry_run:
            value: dict[str, Any] = {"tracked": len(tracked)}
            if newest is not None:
                value["last_edit_gt"] = newest
            ctx.state.set_cursor(self.resource, DIRECTION, value)
        return tracked

    def sync_object(self, object_id: str, name: str, meta: dict[str, Any]) -> None:
        ctx = self.ctx
        try:
            details = self.read_details(object_id)
        except PermanentApiError as exc:
            self.reject(object_id, f"Braze refused the {self.kind} details: {exc.user_message}", name)
            return
        name = details.name or name
        meta = {**meta, **details.meta}
        key = self.cursor_key(object_id)
        cursor = ctx.state.get_cursor(key, DIRECTION) or {}
        complete = _day_or_none(cursor.get("last_complete_day"))
        last_stored = _day_or_none(cursor.get("last_stored_day"))
        plan = plan_series(
            today=self.today,
            complete_through=complete,
            activity=details.activity,
            max_days=self.window_days,
            since=ctx.since,
            full=ctx.full,
        )
        if not ctx.dry_run:
            ctx.state.upsert_object(self.kind, object_id, name, meta)
        if not plan.windows:
            self.result.skipped += 1
            self.tally.dormant += 1
            self.tally.plan.append({"id": object_id, "name": name, "skip": plan.reason})
            return
        if ctx.dry_run:
            self.tally.series_calls += len(plan.windows)
            self.tally.plan.append(
                {
                    "id": object_id,
                    "name": name,
                    "from": str(plan.start),
                    "to": str(plan.end),
                    "series_calls": len(plan.windows),
                }
            )
            return
        all_entries: list[Any] = []
        pulled = True
        stored_before = last_stored  # days up to it were stored by an earlier run: re-storing them updates
        for window in plan.windows:
            ctx.check_stop()
            try:
                entries = self.read_series(object_id, window)
            except PermanentApiError as exc:
                self.reject(
                    object_id,
                    f"Braze refused the data series of {window.start}..{window.end}: {exc.user_message}",
                    name,
                )
                pulled = False
                break
            self.tally.series_calls += 1
            complete, last_stored = self.store_window(
                object_id, name, window, entries, complete, last_stored, stored_before
            )
            all_entries.extend(entries)
        learned = self.series_meta(all_entries, meta)
        if learned:
            ctx.state.upsert_object(self.kind, object_id, name, {**meta, **learned})
        if pulled:
            ctx.state.resolve_dead_letters(self.resource, [object_id])

    def store_window(
        self,
        object_id: str,
        name: str,
        window: Window,
        entries: Sequence[Any],
        complete: date | None,
        last_stored: date | None,
        stored_before: date | None,
    ) -> tuple[date | None, date | None]:
        """Store one window's days and move the cursor, in one transaction; returns the new cursor."""
        ctx = self.ctx
        rows: list[MetricRow] = []
        days: set[date] = set()
        rejected: list[tuple[str, str, str, Mapping[str, Any]]] = []
        for index, entry in enumerate(entries):
            try:
                day_rows = self.day_rows(object_id, entry)
                day = date.fromisoformat(series_day(entry.get("time")))
            except RecordRejected as exc:
                label = entry.get("time") if isinstance(entry, Mapping) else None
                # Keyed by position: an unreadable entry has no day to be keyed by.
                rejected.append(
                    (
                        self.resource,
                        f"{object_id}:{window.start}+{index}",
                        f"unreadable data-series day of {self.kind} '{name}': {exc.reason}",
                        {
                            "id": object_id,
                            "name": name,
                            "window": [str(window.start), str(window.end)],
                            "index": index,
                            "time": None if label is None else str(label)[:40],
                        },
                    )
                )
                continue
            rows.extend(day_rows)
            days.add(day)
        complete = complete_through_after(window, self.today, complete)
        newest = max(days) if days else None
        if newest is not None and (last_stored is None or newest > last_stored):
            last_stored = newest
        with ctx.state.transaction():
            ctx.state.upsert_metrics(rows)
            if rejected:
                ctx.state.add_dead_letters(rejected, run_id=ctx.run_id)
            value: dict[str, Any] = {"name": name}
            if complete is not None:
                value["last_complete_day"] = complete.isoformat()
            if last_stored is not None:
                value["last_stored_day"] = last_stored.isoformat()
            ctx.state.set_cursor(self.cursor_key(object_id), DIRECTION, value)
        self.result.read += len(entries)
        self.result.failed += len(rejected)
        for day in days:
            if stored_before is not None and day <= stored_before:
                self.result.updated += 1
            else:
                self.result.created += 1
        return complete, last_stored

    def reject(self, object_id: str, reason: str, name: str) -> None:
        self.result.failed += 1
        if not self.ctx.dry_run:
            self.ctx.state.add_dead_letter(
                self.resource, object_id, reason, {"id": object_id, "name": name}, run_id=self.ctx.run_id
            )


class CampaignSync(SeriesSync):
    resource = "campaigns"
    kind = "campaign"
    window_days = CAMPAIGN_WINDOW_DAYS

    def list_objects(self, edited_after: str | None) -> Iterator[Listed]:
        for campaign in self.ctx.braze.iter_campaigns(edited_after=edited_after, include_archived=True):
            yield Listed(
                campaign.id,
                campaign.name,
                campaign.last_edited,
                {
                    "last_edited": campaign.last_edited,
                    "tags": list(campaign.tags),
                    "is_api_campaign": campaign.is_api_campaign,
                },
            )

    def read_details(self, object_id: str) -> Details:
        details = self.ctx.braze.campaign_details(object_id)
        channels = details.get("channels")
        name = details.get("name")
        return Details(
            name=name if isinstance(name, str) and name else None,
            activity=campaign_activity(details),
            meta={
                "archived": bool(details.get("archived", False)),
                "draft": bool(details.get("draft", False)),
                "enabled": bool(details.get("enabled", False)),
                "channels": [str(c) for c in channels] if isinstance(channels, list) else [],
                "first_sent": details.get("first_sent"),
                "last_sent": details.get("last_sent"),
                "messages": campaign_message_names(details),
            },
        )

    def read_series(self, object_id: str, window: Window) -> list[Any]:
        return list(
            self.ctx.braze.campaign_data_series(
                object_id, length=window.length, ending_at=ending_at(window.end, self.now)
            )
        )

    def day_rows(self, object_id: str, entry: Any) -> list[MetricRow]:
        return campaign_day_rows(object_id, entry)

    def series_meta(self, entries: Sequence[Any], meta: Mapping[str, Any]) -> dict[str, Any]:
        names = campaign_series_names(entries)
        known = meta.get("variation_names")
        merged = {**(known if isinstance(known, Mapping) else {}), **names}
        return {"variation_names": merged} if names else {}


def run(ctx: SyncContext) -> ResourceResult:
    return CampaignSync(ctx).run()
