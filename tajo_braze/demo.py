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
CHANGED_CONTACTS = 5
UNSUBSCRIBED = 2


def demo_config(sandbox: Sandbox, workdir: Path) -> dict[str, Any]:
    mapping = yaml.safe_load(resources.files("tajo_braze").joinpath("data/default_mapping.yaml").read_text("utf-8"))
    return {
        "connectors": {
            "braze": {
                "enabled": True,
                "instance_url": sandbox.braze_url,
                "api_key": "${BRAZE_API_KEY}",
                "brevo": {"api_key": "${BREVO_API_KEY}", "base_url": sandbox.brevo_url},
                "sync": {"users": True, "direction": "both", "users_segment": "All Users"},
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


def change_contacts(sandbox: Sandbox, connector: BrazeConnector, count: int, unsubscribe: int) -> list[str]:
    """Change `count` linked contacts in Brevo as a marketer would; the first `unsubscribe` are blocklisted."""
    contacts = requests.get(f"{sandbox.admin_url}/brevo/contacts", params={"offset": 0, "limit": 2000}, timeout=10)
    contacts.raise_for_status()
    linked = [c for c in contacts.json()["contacts"] if c["attributes"].get("EXT_ID") and c.get("email")]
    synced = connector.state.get_fingerprints(FINGERPRINTS, [f"ext:{c['attributes']['EXT_ID']}" for c in linked])
    picked = [c for c in linked if f"ext:{c['attributes']['EXT_ID']}" in synced and not c["emailBlacklisted"]]
    picked = picked[40 : 40 + count]
    for i, contact in enumerate(picked):
        change: dict[str, Any] = {"attributes": {"LASTNAME": f"{contact['attributes'].get('LASTNAME') or 'X'}-Brevo"}}
        if i < unsubscribe:
            change["emailBlacklisted"] = True
        ext_id = contact["attributes"]["EXT_ID"]
        requests.post(
            f"{sandbox.admin_url}/brevo/contacts/{ext_id}", params={"identifierType": "ext_id"}, json=change, timeout=10
        ).raise_for_status()
    return [c["attributes"]["EXT_ID"] for c in picked]


def _indent(text: str) -> str:
    return "   " + text.replace("\n", "\n   ")


def _half(summary: dict[str, Any], direction: str) -> dict[str, Any]:
    return next(r for r in summary["resources"] if r["resource"] == "users" and r["direction"] == direction)


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
            say(_indent(render_checks(checks)))

            say("\n3. full sync, both directions, with campaign and Canvas analytics")
            full = connector.sync(type="full", resources=["users", "campaigns", "canvases"])
            report["full_sync"] = full
            say(_indent(render_sync(full, show_calls=False)))
            settle = connector.sync(resources=["users"])
            report["settle_sync"] = settle

            changed = change_users(sandbox, connector, CHANGED_USERS)
            say(f"\n4. {len(changed)} users changed in Braze: {', '.join(changed)}")
            edited = change_contacts(sandbox, connector, CHANGED_CONTACTS, UNSUBSCRIBED)
            say(f"   {len(edited)} contacts changed in Brevo ({UNSUBSCRIBED} of them unsubscribed): {', '.join(edited)}")

            say("\n5. incremental sync, both directions")
            incremental = connector.sync(resources=["users"])
            report["incremental_sync"] = incremental
            say(_indent(render_sync(incremental, show_calls=False)))

            say("\n6. export-segment 'small_test' into a new Brevo list")
            exported = connector.export_segment("small_test", include_attributes=["first_name", "last_name"])
            report["export_segment"] = exported
            say(f"   {exported['count']} users exported into Brevo list {exported['list_id']}")

            say("\n7. status")
            status = connector.status()
            report["status"] = status
            say(
                f"   contacts tracked {status['users_count']}, campaigns tracked {status['campaigns_tracked']}, "
                f"canvases tracked {status['canvases_tracked']}, dead letters {status['dead_letters']}, "
                f"last sync {status['last_sync']['status'] if status['last_sync'] else '-'}"
            )
        to_brevo = _half(incremental, "braze_to_brevo")
        to_braze = _half(incremental, "brevo_to_braze")
        written = to_brevo["created"] + to_brevo["updated"]
        written_back = to_braze["created"] + to_braze["updated"]
        first = _half(full, "braze_to_brevo")
        say(
            f"\nWhat moved: the full sync wrote {first['created'] + first['updated']} contacts to Brevo and set "
            f"aside {first['failed']} users Brevo cannot hold (see dead letters). After {len(changed)} users "
            f"changed in Braze and {len(edited)} contacts in Brevo, the incremental sync wrote {written} contacts "
            f"to Brevo and {written_back} users back to Braze, {UNSUBSCRIBED} of them unsubscribed."
        )
        report["violations"] = sandbox.violations()
        if report["violations"]:
            say(f"Warning: the sandbox recorded {len(report['violations'])} vendor-limit violation(s).")
        else:
            say("No vendor limit was exceeded (the sandbox's violation log is empty).")
    if as_json:
        stream.write(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    ok = (
        all(c["ok"] for c in report["test"])
        and written == CHANGED_USERS
        and written_back == CHANGED_CONTACTS
        and not report["violations"]
    )
    return 0 if ok else 1
