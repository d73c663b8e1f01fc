"""A recognisable key must never appear in a log line, an error, the state files or the CLI output."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tajo_braze.cli import main
from tajo_braze.sandbox import Sandbox

from .conftest import config_for

CANARY_BRAZE = "tajo-canary-braze-7f3e9c1d"
CANARY_BREVO = "xkeysib-canary-brevo-7f3e9c1d"


def files_containing(root: Path, secrets: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.name}: {s[:8]}…" for s in secrets if s.encode() in data]
    return hits


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    out = io.StringIO()
    main(argv, stdout=out)
    captured = capsys.readouterr()
    return out.getvalue() + captured.out + captured.err


def test_a_rejected_canary_key_appears_nowhere(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox = make_world()
    config = config_for(sandbox, tmp_path)
    config["connectors"]["braze"].update(log_level="debug", log_api_calls=True)
    path = tmp_path / "tajo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("BRAZE_API_KEY", CANARY_BRAZE)
    monkeypatch.setenv("BREVO_API_KEY", CANARY_BREVO)
    seen = ""
    for argv in (["connectors", "install", "braze"], ["connectors", "test", "braze"],
                 ["connectors", "sync", "braze", "--resources", "users"], ["connectors", "status", "braze"]):
        for extra in ([], ["--json"], ["-v"]):
            seen += cli([*argv, "--config", str(path), *extra], capsys)
    assert "401" in seen  # the keys really were tried and refused
    assert CANARY_BRAZE not in seen and CANARY_BREVO not in seen
    assert files_containing(tmp_path, [CANARY_BRAZE, CANARY_BREVO]) == []


def test_working_keys_appear_nowhere_after_install_test_sync_and_status(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sandbox = make_world()
    config = config_for(sandbox, tmp_path)
    config["connectors"]["braze"].update(log_level="debug", log_api_calls=True)
    path = tmp_path / "tajo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    keys = [sandbox.keys.braze, sandbox.keys.brevo]
    seen = cli(["connectors", "install", "braze", "--config", str(path), "--api-key", keys[0],
                "--brevo-api-key", keys[1], "--instance-url", sandbox.braze_url, "-v"], capsys)
    assert "Installed" in seen
    # The keys now come from the encrypted store only: no environment variable is set.
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.delenv("BREVO_API_KEY", raising=False)
    for argv in (["connectors", "test", "braze"], ["connectors", "sync", "braze", "--resources", "users"],
                 ["connectors", "status", "braze"], ["connectors", "dead-letters", "braze"]):
        seen += cli([*argv, "--config", str(path), "-v"], capsys)
    assert "10/10 checks passed" in seen
    assert '"api_call"' in seen  # audit lines were written, with bodies
    assert all(key not in seen for key in keys)
    assert files_containing(tmp_path, keys) == []
    assert (tmp_path / "state.db").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
