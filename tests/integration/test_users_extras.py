"""`--since`, dead-letter retries, the `tajo sandbox` command and the progress display."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tajo_braze.connector import BrazeConnector
from tajo_braze.progress import TerminalProgress
from tajo_braze.sandbox import Sandbox

from .conftest import admin_post, all_braze_users


def test_since_keeps_only_users_created_or_active_since_the_date(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = make_world()
    connector = make_connector(sandbox)
    connector.install()
    users = all_braze_users(sandbox)
    dates = sorted(str(u.get("created_at", ""))[:10] for u in users if u.get("created_at"))
    cutoff = dates[len(dates) // 2]
    result = connector.sync(resources=["users"], since=cutoff, dry_run=True)["resources"][0]
    assert result["read"] == len(users)
    assert 0 < result["skipped"] < len(users)
    plan = result["plan"]
    assert plan["create"] + plan["reject"] + result["skipped"] + plan["update"] == len(users)


def test_retrying_dead_letters_writes_users_fixed_in_braze(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = make_world()
    connector = make_connector(sandbox)
    connector.install()
    connector.sync(resources=["users"])
    phone_letters = [d for d in connector.dead_letters(limit=10_000)
                     if d["reason"].startswith("invalid phone") and d["record"].get("external_id")]
    assert phone_letters
    fixed = [d["record"]["external_id"] for d in phone_letters[:3]]
    admin_post(sandbox, "braze/users", {"users": [{"external_id": x, "phone": None} for x in fixed]})
    before = connector.status()["dead_letters"]
    outcome = connector.retry_dead_letters()
    assert outcome["written"] == 3 and outcome["resolved"] >= 3
    assert connector.status()["dead_letters"] == before - 3
    remaining = {d["key"] for d in connector.dead_letters(limit=10_000)}
    assert not {f"ext:{x}" for x in fixed} & remaining
    still = [d for d in connector.dead_letters(limit=10_000) if d["key"] == phone_letters[3]["key"]]
    assert still and still[0]["attempts"] == 2  # retried, still refused, counted
    assert sandbox.violations() == []


def test_tajo_sandbox_prints_urls_and_keys_and_stops_on_sigint(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tajo_braze.cli", "sandbox", "--port", "0", "--users", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(6)]
    text = "".join(lines)
    assert "Braze REST URL : http://127.0.0.1:" in text and "Brevo API URL  : http://127.0.0.1:" in text
    assert "BRAZE_API_KEY=" in text and "BREVO_API_KEY=xkeysib-" in text
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0


def test_progress_draws_on_a_terminal_and_stays_silent_when_piped() -> None:
    shown, piped = io.StringIO(), io.StringIO()
    on = TerminalProgress(shown, enabled=True, min_interval_s=0)
    off = TerminalProgress(piped, enabled=False, min_interval_s=0)
    for progress in (on, off):
        progress.update("users", read=1200, written=1000, rejected=3)
        progress.close()
    assert "users: read 1,200  written 1,000  rejected 3" in shown.getvalue()
    assert shown.getvalue().endswith("\n")
    assert piped.getvalue() == ""
