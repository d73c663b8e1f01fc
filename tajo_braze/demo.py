"""`tajo demo`: a complete round trip against the local sandbox, with no account and no network.

install -> test -> full sync -> change users in the sandbox -> incremental sync -> status.
"""

from __future__ import annotations

import io
import json
import tempfile
from importlib import resources
from pathlib import Path
from typing import IO, Any

import requests
import yaml

from .cli import render_checks, render_sync
from .connector import BrazeConnector
from .sandbox import Sandbox
from .sync.users import FINGERPRINTS

CHANGED_USERS = 7


def demo_config(sandbox: Sandbox, workdir: Path) -> dict[str, Any]:
    mapping = yaml.safe_load(resources.files("tajo_braze").joinpath("data/default_mapping.yaml").read_text("utf-8"))
    return {
        "connectors": {
            "braze": {
                "enabled": True,
                "instance_url": sandbox.braze_url,
                "api_key": "${BRAZE_API_KEY}",
                "brevo": {"api_key": "${BREVO_API_KEY}", "base_url": sandbox.brevo_url},
                "sync": {"users": True, "direction": "braze_to_brevo", "users_segment": "All Users"},
                "field_mapping": mapping["field_mapping"],
                "state_path": str(workdir / ".tajo" / "state.db"),
                "log_level": "warning",
            }
        }
    }


def change_users(sandbox: Sandbox, connector: BrazeConnector, count: int) -> list[str]:
    """Change `count` users already in Brevo, the way an app would, through the sandbox's admin door."""
    listing = requests.get(f"{sandbox.admin_url}/braze/users", params={"offset": 0, "limit": 200}, timeout=10)
    listing.raise_for_status()
    candidates = [u for u in listing.json()["users"] if u.get("external_id")]
    synced = connector.state.get_fingerprints(FINGERPRINTS, [f"ext:{u['external_id']}" for u in candidates])
    users = [u for u in candidates if f"ext:{u['external_id']}" in synced]
    picked = users[10 : 10 + count]
    changes = [
        {"external_id": u["external_id"], "first_name": f"{u.get('first_name') or 'User'} (renamed)",
         "custom_attributes": {"loyalty_points": 1000 + i}}
        for i, u in enumerate(picked)
    ]
    requests.post(f"{sandbox.admin_url}/braze/users", json={"users": changes}, timeout=10).raise_for_status()
    return [u["external_id"] for u in picked]


def run_demo(stream: IO[str], *, users: int = 2000, as_json: bool = False) -> int:
    say = (lambda text: None) if as_json else (lambda text: stream.write(text + "\n"))
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tajo-demo-") as tmp, Sandbox(users=users, seed=7) as sandbox:
        workdir = Path(tmp)
        config = demo_config(sandbox, workdir)
        (workdir / "tajo.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        env = {"BRAZE_API_KEY": sandbox.keys.braze, "BREVO_API_KEY": sandbox.keys.brevo}
        say(f"Sandbox up: Braze {sandbox.braze_url}, Brevo {sandbox.brevo_url} ({users} Braze users seeded)")
        logs = io.StringIO()
        with BrazeConnector(workdir / "tajo.yaml", env=env, log_stream=logs) as connector:
            say("\n1. install")
            installed = connector.install()
            report["install"] = installed
            say(f"   created Brevo attributes: {', '.join(installed['attributes_created']) or 'none needed'}")

            say("\n2. test")
            checks = connector.test()
            report["test"] = checks
            say("   " + render_checks(checks).replace("\n", "\n   "))

            say("\n3. full sync (Braze users -> Brevo contacts)")
            full = connector.sync(type="full", resources=["users"])
            report["full_sync"] = full
            say("   " + render_sync(full, show_calls=False).replace("\n", "\n   "))

            changed = change_users(sandbox, connector, CHANGED_USERS)
            say(f"\n4. {len(changed)} users changed in Braze: {', '.join(changed)}")

            say("\n5. incremental sync")
            incremental = connector.sync(resources=["users"])
            report["incremental_sync"] = incremental
            say("   " + render_sync(incremental, show_calls=False).replace("\n", "\n   "))

            say("\n6. status")
            status = connector.status()
            report["status"] = status
            say(
                f"   contacts tracked {status['users_count']}, dead letters {status['dead_letters']}, "
                f"last sync {status['last_sync']['status'] if status['last_sync'] else '-'}"
            )
        users_result = incremental["resources"][0]
        written = users_result["created"] + users_result["updated"]
        say(
            f"\nWhat moved: the full sync wrote {full['resources'][0]['created'] + full['resources'][0]['updated']} "
            f"contacts and set aside {full['resources'][0]['failed']} users Brevo cannot hold (see dead letters); "
            f"after {len(changed)} users changed in Braze, the incremental sync wrote {written}."
        )
        report["violations"] = sandbox.violations()
        if report["violations"]:
            say(f"Warning: the sandbox recorded {len(report['violations'])} vendor-limit violation(s).")
        else:
            say("No vendor limit was exceeded (the sandbox's violation log is empty).")
    if as_json:
        stream.write(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    ok = all(c["ok"] for c in report["test"]) and written == CHANGED_USERS and not report["violations"]
    return 0 if ok else 1
