"""How many requests a second the sandbox serves (limits off), so it is never a benchmark's bottleneck.

    python bench/sandbox_throughput.py [--threads 8] [--requests 20000] [--endpoint brevo-account]
                                       [--users 1000] [--subprocess]

Clients are keep-alive `http.client` connections, one per thread (a `requests` keep-alive client costs more
client CPU than the server spends per request, so it would measure the client). By default the
sandbox runs in this process, sharing the interpreter lock with the clients, which is the
pessimistic figure; `--subprocess` serves it from `python -m tajo_braze.sandbox` instead.
Prints one JSON line: requests, seconds, requests_per_s, latency percentiles, errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from tajo_braze.sandbox import Sandbox

ENDPOINTS = {
    # name: (vendor, method, path below the vendor base URL)
    "brevo-account": ("brevo", "GET", "/account"),
    "braze-segments": ("braze", "GET", "/segments/list"),
}


@contextmanager
def running_sandbox(users: int, subprocess_mode: bool) -> Iterator[dict[str, Any]]:
    """Yield the sandbox's description (URLs and keys) while it serves."""
    if not subprocess_mode:
        with Sandbox(users=users, limits="off") as sandbox:
            yield sandbox.describe()
        return
    child = subprocess.Popen(
        [sys.executable, "-m", "tajo_braze.sandbox", "--users", str(users), "--limits", "off"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        yield json.loads(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)


def hammer(
    base_url: str, method: str, path: str, headers: dict[str, str], count: int
) -> tuple[list[float], int]:
    """Send `count` requests on one keep-alive connection; return latencies (s) and the non-2xx count."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    target = parts.path + path
    latencies: list[float] = []
    errors = 0
    for _ in range(count):
        started = time.perf_counter()
        conn.request(method, target, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        errors += not 200 <= response.status < 300
    conn.close()
    return latencies, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20_000, help="total, split across threads")
    parser.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="brevo-account")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--subprocess", action="store_true", help="serve from a separate process")
    args = parser.parse_args()

    vendor, method, path = ENDPOINTS[args.endpoint]
    per_thread = max(1, args.requests // args.threads)
    with running_sandbox(args.users, args.subprocess) as info:
        base = info["brevo_url"] if vendor == "brevo" else info["braze_url"]
        headers = (
            {"api-key": info["keys"]["brevo"]}
            if vendor == "brevo"
            else {"Authorization": f"Bearer {info['keys']['braze']}"}
        )
        hammer(base, method, path, headers, 50)  # warm-up: first-call costs are not throughput
        results: list[tuple[list[float], int]] = []
        lock = threading.Lock()

        def run() -> None:
            outcome = hammer(base, method, path, headers, per_thread)
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=run) for _ in range(args.threads)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started

    latencies = sorted(lat for lats, _ in results for lat in lats)
    total = len(latencies)
    quantiles = statistics.quantiles(latencies, n=100)
    print(
        json.dumps(
            {
                "endpoint": f"{vendor} {method} {path}",
                "server": "subprocess" if args.subprocess else "in-process",
                "cpus": os.cpu_count(),
                "threads": args.threads,
                "requests": total,
                "errors": sum(err for _, err in results),
                "seconds": round(elapsed, 3),
                "requests_per_s": round(total / elapsed),
                "latency_ms": {
                    "p50": round(quantiles[49] * 1000, 2),
                    "p99": round(quantiles[98] * 1000, 2),
                    "max": round(latencies[-1] * 1000, 2),
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
