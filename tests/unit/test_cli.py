from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tajo_braze.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv",
    [
        [
            "connectors",
            "install",
            "braze",
            "--api-key",
            "k",
            "--instance-url",
            "rest.iad-01.braze.com",
            "--brevo-api-key",
            "b",
        ],
        ["connectors", "test", "braze"],
        [
            "connectors",
            "sync",
            "braze",
            "--full",
            "--resources",
            "users,segments",
            "--since",
            "2024-01-01",
            "--batch-size",
            "10",
            "--dry-run",
            "--direction",
            "both",
        ],
        [
            "connectors",
            "export-segment",
            "braze",
            "--segment-id",
            "s1",
            "--target-list",
            "3",
            "--include-attributes",
            "email,first_name",
        ],
        ["connectors", "status", "braze", "--json"],
        ["connectors", "handle-event", "braze", "--source", "brevo"],
        ["connectors", "dead-letters", "braze", "--retry"],
        ["connectors", "report", "braze", "--format", "csv", "--since", "2024-01-01", "--out", "r.csv"],
        ["connectors", "serve", "braze", "--port", "9000"],
        ["sandbox", "--port", "0", "--users", "10", "--faults", "5xx=0.1"],
        ["demo"],
        ["--config", "x.yaml", "--json", "-v", "connectors", "status", "braze"],
    ],
)
def test_every_documented_subcommand_parses(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.command in ("connectors", "sandbox", "demo")


def test_global_options_work_after_the_subcommand_too() -> None:
    args = build_parser().parse_args(["connectors", "status", "braze", "--config", "y.yaml", "--json"])
    assert args.config == "y.yaml" and args.json is True


def test_unknown_connector_is_a_usage_error() -> None:
    out = io.StringIO()
    assert main(["--json", "connectors", "status", "mailchimp"], stdout=out) == 2
    assert "invalid choice" in json.loads(out.getvalue())["error"]


def test_missing_config_file_exits_2_and_names_it(tmp_path: Path) -> None:
    out = io.StringIO()
    code = main(
        ["connectors", "test", "braze", "--config", str(tmp_path / "nope.yaml"), "--json"], stdout=out
    )
    assert code == 2
    payload = json.loads(out.getvalue())
    assert "nope.yaml" in payload["error"]


def test_config_error_exits_2_with_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "tajo.yaml"
    cfg.write_text(
        "connectors:\n  braze:\n    instance_url: rest.iad-01.braze.com\n    api_key: ${BRAZE_API_KEY}\n"
        "    sycn:\n      users: true\n"
    )
    out = io.StringIO()
    code = main(["connectors", "status", "braze", "--config", str(cfg), "--json"], stdout=out)
    assert code == 2
    error = json.loads(out.getvalue())["error"]
    assert f"{cfg}:5" in error and "sync" in error


def test_a_capability_missing_from_this_version_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tajo_braze.connector as connector_module

    monkeypatch.setattr(connector_module, "optional_module", lambda name: None)
    cfg = tmp_path / "tajo.yaml"
    cfg.write_text(
        "connectors:\n  braze:\n    instance_url: rest.iad-01.braze.com\n"
        f"    state_path: {tmp_path / 'state.db'}\n"
    )
    out = io.StringIO()
    code = main(["connectors", "report", "braze", "--config", str(cfg), "--json"], stdout=out)
    assert code == 2
    assert "not available yet" in json.loads(out.getvalue())["error"]
