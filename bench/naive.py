"""The naive baseline: one Brevo call per Braze user, to give the connector's batching a ratio.

    python bench/naive.py --config tajo.yaml --users 2000      (API keys from the environment)

It reads the same segment export the connector reads, maps each user with the same mapping, and
sends every holdable user in its own `POST /contacts` with `updateEnabled: true`, through the same
HTTP layer (`ApiSession`: pooled keep-alive connections, the rate limiter, retries). That is what
a straightforward integration does. Only the per-user phase is timed: the export is shared by both
approaches, so leaving it out favours the baseline. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tajo_braze.connector import BrazeConnector
from tajo_braze.errors import ApiError, RecordRejected
from tajo_braze.exports import download_export, iter_export_lines, wait_until_ready
from tajo_braze.models import ContactPayload
from tajo_braze.sync.users import resolve_segment_id, user_from_line

EXPORT_TIMEOUT_S = 600.0


def naive_sync(connector: BrazeConnector, users: int) -> dict[str, Any]:
    """Write the first `users` holdable users of the export one request each; time that phase."""
    ctx = connector.context()
    segment = ctx.config.sync.users_segment or "All Users"
    segment_id = resolve_segment_id(ctx, segment)
    job = ctx.braze.export_segment(segment_id, fields_to_export=list(ctx.mapping.fields_to_export()))
    if not job.url:
        raise RuntimeError("the export answered without a URL")
    with tempfile.TemporaryDirectory(prefix="naive-") as tmp:
        archive = Path(tmp) / "export.zip"
        wait_until_ready(ctx.braze_session, job.url, timeout_s=EXPORT_TIMEOUT_S)
        download_export(ctx.braze_session, job.url, archive)
        payloads: list[ContactPayload] = []
        for line in iter_export_lines(archive):
            if len(payloads) >= users:
                break
            try:
                user = user_from_line(line.raw)
            except RecordRejected:
                continue  # the baseline skips what the connector dead-letters
            mapped = ctx.mapping.to_brevo(user)
            if isinstance(mapped, ContactPayload):
                payloads.append(mapped)

    sent = failed = 0
    started = time.perf_counter()
    for payload in payloads:
        try:
            ctx.brevo.create_contact(
                email=payload.email,
                ext_id=payload.ext_id,
                attributes=payload.attributes,
                email_blacklisted=payload.email_blacklisted,
                update_enabled=True,
            )
            sent += 1
        except ApiError:
            failed += 1  # e.g. an identifier another contact holds: the baseline moves on
    elapsed = time.perf_counter() - started
    calls = sent + failed
    return {
        "users": len(payloads),
        "sent": sent,
        "failed": failed,
        "calls": calls,
        "seconds": round(elapsed, 3),
        "seconds_per_user": elapsed / calls if calls else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="tajo.yaml pointing at the sandbox")
    parser.add_argument("--users", type=int, default=2000, help="how many users to write one by one")
    args = parser.parse_args(argv)
    with BrazeConnector(args.config) as connector:
        print(json.dumps(naive_sync(connector, args.users)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
