"""`python -m tajo_braze.sandbox`: serve the sandbox until SIGINT/SIGTERM.

Prints one JSON line (URLs and keys) on stdout once the port is bound, so a parent process
can read where to connect.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence

from .limits import MODES
from .server import Sandbox, serve_forever


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tajo_braze.sandbox", description="Serve the Braze and Brevo emulators on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--users", type=int, default=1000, help="seeded Braze users (default: %(default)s)")
    parser.add_argument(
        "--contacts", type=int, default=None, help="seeded Brevo contacts (default: users / 2)"
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="seed of the synthetic world (default: %(default)s)"
    )
    parser.add_argument(
        "--limits", choices=MODES, default="enforce", help="rate-limit mode (default: %(default)s)"
    )
    parser.add_argument("--faults", default=None, help='fault spec, e.g. "5xx=0.1,429=0.05,latency=20+30"')
    parser.add_argument("--data", default=None, help="JSON file: state loaded at start and saved at stop")
    parser.add_argument(
        "--export-delay", type=float, default=0.0, help="seconds before a segment export is ready"
    )
    parser.add_argument(
        "--import-delay", type=float, default=0.0, help="seconds a Brevo import stays in progress"
    )
    parser.add_argument(
        "--track-objects-cap", type=int, default=None, help="objects per /users/track request"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Catch SIGTERM from the start: a parent may send it as soon as it reads the JSON line.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    try:
        sandbox = Sandbox(
            users=args.users,
            contacts=args.contacts,
            seed=args.seed,
            host=args.host,
            port=args.port,
            limits=args.limits,
            faults=args.faults,
            export_delay_s=args.export_delay,
            import_delay_s=args.import_delay,
            data_file=args.data,
            track_objects_cap=args.track_objects_cap,
        ).start()
    except (ValueError, OSError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(sandbox.describe()), flush=True)
    serve_forever(sandbox, stop_event=stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
