"""The first Brevo -> Braze read when Braze answers /users/track slowly, by calls in flight.

    python bench/track_latency.py [--users 100000] [--latency-ms 80] [--in-flight 1 3 8]

On loopback the sandbox answers a track call in about 10 ms; Braze, over the internet, in tens
to hundreds. For each count of calls in flight this starts a fresh sandbox (limits counted) with
the users, runs the full Braze -> Brevo sync, makes the sandbox answer /users/track after the
latency (its fault injection), then times the first Brevo -> Braze read in this process with
that many track calls in flight (`contacts.TRACK_CALLS_IN_FLIGHT`). Prints one JSON line each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402 - the benchmark's own helpers, next to this file

from tajo_braze.connector import BrazeConnector  # noqa: E402
from tajo_braze.sync import contacts  # noqa: E402


def first_read(users: int, latency_ms: float, in_flight: int, out: Path) -> dict[str, object]:
    log = out / f"sandbox-latency-{in_flight}.log"
    with bench.running_sandbox(users, "count", log) as sandbox, tempfile.TemporaryDirectory(prefix="latency-") as tmp:
        config = bench.write_config(Path(tmp), sandbox)
        bench.run_child({"action": "install", "config": str(config)}, sandbox.env, 3600)
        request = {"action": "sync", "config": str(config), "type": "full", "direction": "braze_to_brevo"}
        bench.run_child(request, sandbox.env, 3600)
        sandbox.post("faults", {"spec": f"braze:/users/track:latency={latency_ms:g}"})
        os.environ.update(sandbox.env)
        contacts.TRACK_CALLS_IN_FLIGHT = in_flight
        with BrazeConnector(str(config)) as connector:
            started = time.perf_counter()
            summary = connector.sync(resources=["users"], direction="brevo_to_braze")
            wall = time.perf_counter() - started
        counts = sandbox.get("counts")["requests"]
    pages = counts.get("brevo GET /contacts", 0)
    return {
        "users": users,
        "latency_ms": latency_ms,
        "in_flight": in_flight,
        "wall_s": round(wall, 1),
        "track_calls": counts.get("braze POST /users/track", 0),
        "contact_pages": pages,
        "read_bound_s": round(pages / 10, 1),  # Brevo: 10 contact calls a second
        "status": summary["status"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=80.0)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 3, 8])
    args = parser.parse_args()
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    for in_flight in args.in_flight:
        print(json.dumps(first_read(args.users, args.latency_ms, in_flight, out)), flush=True)


if __name__ == "__main__":
    main()
