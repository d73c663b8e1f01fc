"""The `tajo` command line against the sandbox: ✓/✗ checks with causes and fixes, exit codes, the demo."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tajo_braze.cli import main
from tajo_braze.sandbox import Sandbox

from .conftest import config_for


def write(sandbox: Sandbox, tmp_path: Path, **braze: object) -> Path:
    config = config_for(sandbox, tmp_path)
    config["connectors"]["braze"].update(braze)
    path = tmp_path / "tajo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> tuple[int, str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    return main(argv, stdout=out), out.getvalue()


def checks(output: str) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in json.loads(output)}


def test_all_checks_pass_against_the_sandbox(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_world()
    config = write(sandbox, tmp_path)
    env = {"BRAZE_API_KEY": sandbox.keys.braze, "BREVO_API_KEY": sandbox.keys.brevo}
    assert run(["connectors", "install", "braze", "--config", str(config), "--json"], monkeypatch, env)[0] == 0
    code, output = run(["connectors", "test", "braze", "--config", str(config)], monkeypatch, env)
    assert code == 0
    assert output.count("✓") == 10 and "✗" not in output and "10/10 checks passed" in output


def test_wrong_braze_key_names_the_key_and_where_to_regenerate_it(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_world()
    config = write(sandbox, tmp_path)
    env = {"BRAZE_API_KEY": "not-a-real-key-0000", "BREVO_API_KEY": sandbox.keys.brevo}
    code, output = run(["connectors", "test", "braze", "--config", str(config), "--json"], monkeypatch, env)
    assert code == 3
    result = checks(output)
    connection = result["Braze API connection"]
    assert connection["ok"] is False
    assert "401" in str(connection["cause"])
    assert "APIs and Identifiers" in str(connection["fix"]) and "instance" in str(connection["fix"])
    assert str(result["Braze segment list"]["cause"]).startswith("not checked")
    assert result["Brevo account"]["ok"] is True
    assert "not-a-real-key-0000" not in output


def test_missing_permission_names_the_permission(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_world()
    config = write(sandbox, tmp_path)
    env = {"BRAZE_API_KEY": sandbox.keys.braze_readonly, "BREVO_API_KEY": sandbox.keys.brevo}
    code, output = run(["connectors", "test", "braze", "--config", str(config), "--json"], monkeypatch, env)
    assert code == 3
    tracking = checks(output)["Braze event tracking"]
    assert tracking["ok"] is False and "users.track" in str(tracking["cause"])
    assert checks(output)["Braze segment list"]["ok"] is True


def test_wrong_brevo_key_says_where_to_create_one(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_world()
    config = write(sandbox, tmp_path)
    env = {"BRAZE_API_KEY": sandbox.keys.braze, "BREVO_API_KEY": "xkeysib-wrong-000"}
    code, output = run(["connectors", "test", "braze", "--config", str(config), "--json"], monkeypatch, env)
    assert code == 3
    account = checks(output)["Brevo account"]
    assert account["ok"] is False and "SMTP & API" in str(account["fix"])
    assert checks(output)["Braze API connection"]["ok"] is True


def test_unreachable_host_is_a_connection_failure_with_exit_3(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_world()
    config = write(sandbox, tmp_path, instance_url="http://127.0.0.1:9/braze")
    env = {"BRAZE_API_KEY": sandbox.keys.braze, "BREVO_API_KEY": sandbox.keys.brevo}
    code, output = run(["connectors", "test", "braze", "--config", str(config), "--json"], monkeypatch, env)
    assert code == 3
    connection = checks(output)["Braze API connection"]
    assert connection["ok"] is False and connection["fix"]


def test_sync_exit_code_and_json_summary(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_world()
    config = write(sandbox, tmp_path)
    env = {"BRAZE_API_KEY": sandbox.keys.braze, "BREVO_API_KEY": sandbox.keys.brevo}
    run(["connectors", "install", "braze", "--config", str(config)], monkeypatch, env)
    code, output = run(["connectors", "sync", "braze", "--config", str(config), "--resources", "users", "--json"],
                       monkeypatch, env)
    summary = json.loads(output)
    assert code == 1 and summary["failed"] > 0  # dead letters -> exit 1
    code, output = run(["connectors", "dead-letters", "braze", "--config", str(config), "--json"], monkeypatch, env)
    assert code == 0 and len(json.loads(output)) == min(50, summary["failed"])
    code, output = run(["connectors", "status", "braze", "--config", str(config), "--json"], monkeypatch, env)
    assert code == 0 and json.loads(output)["dead_letters"] == summary["failed"]
    code, _ = run(["connectors", "sync", "braze", "--config", str(config), "--resources", "nope"], monkeypatch, env)
    assert code == 2


def test_demo_runs_a_complete_round_trip() -> None:
    out = io.StringIO()
    assert main(["demo", "--users", "600"], stdout=out) == 0
    text = out.getvalue()
    for step in ("1. install", "2. test", "3. full sync", "5. incremental sync", "6. export-segment", "7. status"):
        assert step in text
    assert "the incremental sync wrote 7 contacts to Brevo and 5 users back to Braze, 2 of them unsubscribed" in text
    assert "25 users exported" in text
    assert "violation log is empty" in text


def test_rate_limited_check_says_when_to_retry(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_world(faults="braze:429=1.0")
    config = write(sandbox, tmp_path)
    env = {"BRAZE_API_KEY": sandbox.keys.braze, "BREVO_API_KEY": sandbox.keys.brevo}
    code, output = run(["connectors", "test", "braze", "--config", str(config), "--json"], monkeypatch, env)
    assert code == 3
    connection = checks(output)["Braze API connection"]
    assert connection["ok"] is False
    assert "429" in str(connection["cause"]) and "in about" in str(connection["fix"])
    assert checks(output)["Brevo account"]["ok"] is True
