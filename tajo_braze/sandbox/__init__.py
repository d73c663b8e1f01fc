"""A local, stateful emulator of the Braze and Brevo REST APIs, on one loopback port.

    with Sandbox(users=1000) as sandbox:
        sandbox.braze_url, sandbox.brevo_url, sandbox.keys.braze, sandbox.keys.brevo

The sandbox is a world of its own: it imports nothing from the connector.
"""

from __future__ import annotations

from .faults import FaultConfig, parse_faults
from .server import Sandbox, SandboxKeys, SandboxServer, derive_keys, serve_forever

__all__ = [
    "FaultConfig",
    "Sandbox",
    "SandboxKeys",
    "SandboxServer",
    "derive_keys",
    "parse_faults",
    "serve_forever",
]
