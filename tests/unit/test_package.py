from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

import tajo_braze

ROOT = Path(__file__).resolve().parents[2]


def test_public_surface_is_pinned() -> None:
    assert tajo_braze.__all__ == ["BrazeConnector", "__version__"]
    from tajo_braze.connector import BrazeConnector

    assert tajo_braze.BrazeConnector is BrazeConnector


def test_entry_point_and_console_script_are_declared() -> None:
    eps = metadata.entry_points(group="tajo.connectors")
    braze = [ep for ep in eps if ep.name == "braze"]
    assert braze and braze[0].value == "tajo_braze:BrazeConnector"
    assert braze[0].load() is tajo_braze.BrazeConnector
    scripts = [ep for ep in metadata.entry_points(group="console_scripts") if ep.name == "tajo"]
    assert scripts and scripts[0].value == "tajo_braze.cli:main"


def test_manifest_names_hooks_resources_and_permissions() -> None:
    manifest = yaml.safe_load((ROOT / "connector.yaml").read_text())
    assert manifest["id"] == "braze"
    assert manifest["version"] == tajo_braze.__version__
    assert set(manifest["hooks"]) == {"install", "test", "sync", "export_segment", "status", "handle_event"}
    for name, target in manifest["hooks"].items():
        assert target == f"tajo_braze:BrazeConnector.{name}"
        assert callable(getattr(tajo_braze.BrazeConnector, name))
    assert set(manifest["resources"]) == {"users", "segments", "campaigns", "canvases", "events", "catalogs"}
    assert "users.export.segment" in manifest["resources"]["users"]["braze_permissions"]
    for path in (manifest["config_schema"], manifest["mapping_schema"], manifest["default_mapping"]):
        assert (ROOT / path).is_file()


def test_packaged_copies_match_the_repository_files() -> None:
    data = ROOT / "tajo_braze" / "data"
    assert (data / "default_mapping.yaml").read_bytes() == (ROOT / "mappings" / "default.yaml").read_bytes()
    for name in ("config.schema.json", "mapping.schema.json"):
        assert json.loads((data / name).read_text()) == json.loads((ROOT / "schemas" / name).read_text())


def test_py_typed_marker_ships() -> None:
    assert (ROOT / "tajo_braze" / "py.typed").exists()


def test_sandbox_and_connector_stay_separate_worlds() -> None:
    """The connector never imports the sandbox, and the sandbox never imports the connector."""
    sandbox_dir = ROOT / "tajo_braze" / "sandbox"
    for path in sandbox_dir.glob("*.py"):
        text = path.read_text()
        for forbidden in ("from tajo_braze.", "from .. ", "from ..", "import tajo_braze"):
            assert forbidden not in text.replace("from .core", "").replace("from . ", ""), (path, forbidden)
    code = (
        "import sys, tajo_braze.connector, tajo_braze.sync.users; "
        "print(any(m.startswith('tajo_braze.sandbox') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_export_line_workers_import_only_what_mapping_needs() -> None:
    """Each mapping worker is a process of its own: the HTTP, logging and schema libraries stay out."""
    heavy = ("requests", "structlog", "jsonschema", "cryptography")
    code = (
        "import sys, tajo_braze.sync.line_workers; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
