"""`sync(resources=["events"])`: forward the backlog of recorded webhook events.

Events arrive through `handle_event` or the webhook receiver and are recorded before anything is
sent. Whatever is still waiting here (never forwarded because the process stopped, or failed and
due for a retry) is forwarded now, batch by batch, with the same exactly-once rules
(`tajo_braze.events`). A dry run reports what would be written and writes nothing.
"""

from __future__ import annotations

import time

from ..events import backlog, forward_pending
from ..models import ResourceResult
from .context import SyncContext

RESOURCE = "events"


def run(ctx: SyncContext) -> ResourceResult:
    result = ResourceResult(RESOURCE, direction="both")
    started = time.monotonic()
    report = forward_pending(ctx)
    result.read = report.examined
    result.created = report.forwarded
    result.skipped = report.ignored
    # Rejected and in-doubt events are dead-lettered; failed ones stay in the backlog for a retry.
    result.failed = report.failed + report.unknown + report.rejected
    result.api_calls = dict(report.calls)
    result.notes.extend(report.notes)
    if ctx.dry_run:
        result.plan = {"events": report.examined, **report.plan}
    else:
        waiting = backlog(ctx)
        if waiting:
            result.notes.append(f"{waiting} event(s) still waiting; the next run retries them")
        if report.unknown:
            result.notes.append(
                f"{report.unknown} event(s) with an unknown outcome were not resent (see dead letters)"
            )
    result.duration_s = time.monotonic() - started
    if report.error is not None:
        raise report.error
    return result
