"""`tajo sandbox`: serve the Braze and Brevo emulators until interrupted."""

from __future__ import annotations

import argparse
from typing import IO

from .sandbox import Sandbox, serve_forever


def run_sandbox(args: argparse.Namespace, stream: IO[str]) -> int:
    sandbox = Sandbox(
        users=args.users,
        contacts=args.contacts,
        seed=args.seed,
        port=args.port,
        limits=args.limits,
        faults=args.faults,
        data_file=args.data,
        export_delay_s=args.export_delay,
        import_delay_s=args.import_delay,
    )
    sandbox.start()
    try:
        _announce(sandbox, stream)
        serve_forever(sandbox)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a sandbox is meant to stop
    finally:
        sandbox.stop()
    return 0


def _announce(sandbox: Sandbox, stream: IO[str]) -> None:
    stream.write(
        "tajo sandbox is serving on loopback\n"
        f"  Braze REST URL : {sandbox.braze_url}\n"
        f"  Brevo API URL  : {sandbox.brevo_url}\n"
        f"  admin          : {sandbox.admin_url}\n"
        f"  BRAZE_API_KEY={sandbox.keys.braze}\n"
        f"  BREVO_API_KEY={sandbox.keys.brevo}\n"
        "In tajo.yaml: instance_url: <Braze REST URL>, brevo.base_url: <Brevo API URL>. Ctrl-C stops it.\n"
    )
    stream.flush()
