"""Security checks across the connector: secrets stay secret, only vendor hosts are called, hostile
exports and YAML are refused, private files stay private, the webhook receiver admits only its callers.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import selectors
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
import urllib3.util.connection
import yaml

from tajo_braze.cli import main
from tajo_braze.clients.braze import BrazeClient
from tajo_braze.config import load_config
from tajo_braze.connector import BrazeConnector
from tajo_braze.errors import ConfigError, ConnectorError, MappingError
from tajo_braze.exports import UnsafeExport
from tajo_braze.http import ApiSession
from tajo_braze.mapping import load_mapping
from tajo_braze.models import SegmentExportJob
from tajo_braze.ratelimit import RateLimiter
from tajo_braze.sandbox import Sandbox
from tajo_braze.webhooks import WebhookReceiver
from tests.fuzz.test_fuzz_exports import ExportHost, zip_of
from tests.integration.conftest import admin_get, config_for, env_for

ROOT = Path(__file__).resolve().parents[2]
CANARY_BRAZE = "tajo-canary-braze-5ec0a11d"
CANARY_BREVO = "xkeysib-canary-brevo-5ec0a11d"
HOOK_TOKEN = "tajo-canary-hook-token-5ec0a11d"
HOOK_PASSWORD = "tajo-canary-hook-password-5ec0a11d"
IMPORT = "brevo POST /contacts/import"


# ---------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One world for the module, its Brevo attributes created once (syncs need no install of their own)."""
    with Sandbox(users=60, contacts=20, seed=23) as world:
        with BrazeConnector(config_for(world, tmp_path_factory.mktemp("setup")), env=env_for(world),
                            log_stream=io.StringIO()) as connector:
            connector.install()
        yield world


def secure_config(world: Sandbox, state_dir: Path) -> dict[str, Any]:
    config = config_for(world, state_dir)
    braze = config["connectors"]["braze"]
    braze.update(log_level="debug", log_api_calls=True)
    braze["webhooks"] = {
        "token": "${TAJO_WEBHOOK_TOKEN}",
        "basic_user": "brevo",
        "basic_password": "${TAJO_WEBHOOK_PASSWORD}",
    }
    return config


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def files_containing(root: Path, secrets: list[str]) -> list[str]:
    """Every file under `root` (state, WAL, key, exports, reports) that holds one of the secrets."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {s[:12]}…" for s in secrets if s.encode() in data]
    return hits


def cli(argv: list[str], *, stdin: str | None = None) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stderr(err))
        if stdin is not None:
            stack.enter_context(mock.patch("sys.stdin", io.StringIO(stdin)))
        code = main(argv, stdout=out)
    return code, out.getvalue() + err.getvalue()


def a_user(world: Sandbox) -> dict[str, Any]:
    users = admin_get(world, "braze/users", offset=0, limit=1000)["users"]
    return next(u for u in users if u.get("external_id") and isinstance(u.get("email"), str) and "@" in u["email"])


def opened(email: str, ts: int = 1714557600) -> dict[str, Any]:
    return {"event": "opened", "email": email, "camp_id": 5, "ts_event": ts, "ts": ts}


def read_line(process: subprocess.Popen[str], *, timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError("the receiver printed nothing")
    return process.stdout.readline()


def serve_and_call(config_path: Path, env: dict[str, str], calls: Callable[[str], None]) -> str:
    """`tajo connectors serve braze` in its own process: make `calls`, stop it with SIGTERM; its output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tajo_braze.cli", "connectors", "serve", "braze", "--port", "0", "--config",
         str(config_path), "-v"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=config_path.parent,
    )
    try:
        line = read_line(process, timeout=60)
        assert "/webhooks/brevo" in line, line
        calls(line.split(" on ", 1)[1].split("/webhooks/", 1)[0])
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    return line + out + err


# ---------------------------------------------------------------------------- the secret canary
def test_keys_and_webhook_secrets_appear_nowhere_after_report_handle_event_and_serve(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = [sandbox.keys.braze, sandbox.keys.brevo, HOOK_TOKEN, HOOK_PASSWORD]
    env = {**env_for(sandbox), "TAJO_WEBHOOK_TOKEN": HOOK_TOKEN, "TAJO_WEBHOOK_PASSWORD": HOOK_PASSWORD}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = write_yaml(tmp_path / "tajo.yaml", secure_config(sandbox, tmp_path))
    user = a_user(sandbox)
    seen = ""
    for argv, stdin in (
        (["connectors", "install", "braze"], None),
        (["connectors", "sync", "braze", "--resources", "users,campaigns"], None),
        (["connectors", "report", "braze", "--format", "json"], None),
        (["connectors", "report", "braze", "--format", "csv", "--out", str(tmp_path / "report.csv")], None),
        (["connectors", "report", "braze", "--out", str(tmp_path / "report.html")], None),
        (["connectors", "handle-event", "braze", "--source", "brevo"],
         json.dumps([opened(user["email"]), {"event": 3}])),
        (["connectors", "dead-letters", "braze"], None),
        (["connectors", "status", "braze"], None),
    ):
        for extra in ([], ["--json"]):
            code, output = cli([*argv, "--config", str(config), "-v", *extra], stdin=stdin)
            assert code in (0, 1), output
            seen += output
    assert '"api_call"' in seen and "campaign" in (tmp_path / "report.csv").read_text(encoding="utf-8")

    def calls(url: str) -> None:
        good = requests.post(f"{url}/webhooks/brevo", json=opened(user["email"], 1714557700),
                             headers={"Authorization": f"Bearer {HOOK_TOKEN}"}, timeout=30)
        assert good.status_code == 200
        basic = base64.b64encode(f"brevo:{HOOK_PASSWORD}".encode()).decode()
        assert requests.post(f"{url}/webhooks/brevo", json=opened(user["email"], 1714557800),
                             headers={"Authorization": f"Basic {basic}"}, timeout=30).status_code == 200
        # A caller who puts the token where it does not belong is refused; the token is not echoed.
        stray = requests.post(f"{url}/webhooks/brevo?token={HOOK_TOKEN}", json={}, timeout=30)
        assert stray.status_code == 401 and HOOK_TOKEN not in stray.text
        wrong = requests.post(f"{url}/webhooks/braze", data=b"{not json",
                              headers={"Authorization": f"Bearer {HOOK_TOKEN}"}, timeout=30)
        assert wrong.status_code == 400 and HOOK_TOKEN not in wrong.text

    seen += serve_and_call(config, env, calls)
    leaked = [s[:12] for s in secrets if s in seen]
    assert leaked == []
    assert files_containing(tmp_path, secrets) == []
    assert sandbox.violations() == []


def test_rejected_canary_keys_appear_nowhere_when_events_are_handled_and_served(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = [CANARY_BRAZE, CANARY_BREVO, HOOK_TOKEN]
    env = {"BRAZE_API_KEY": CANARY_BRAZE, "BREVO_API_KEY": CANARY_BREVO, "TAJO_WEBHOOK_TOKEN": HOOK_TOKEN,
           "TAJO_WEBHOOK_PASSWORD": HOOK_PASSWORD}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = write_yaml(tmp_path / "tajo.yaml", secure_config(sandbox, tmp_path))
    user = a_user(sandbox)
    seen = ""
    for argv, stdin in (
        (["connectors", "handle-event", "braze", "--source", "brevo"], json.dumps(opened(user["email"]))),
        (["connectors", "handle-event", "braze", "--source", "braze"],
         json.dumps({"events": [{"event_type": "users.messages.email.Open", "id": "c-1",
                                 "user": {"external_user_id": user["external_id"]}}]})),
        (["connectors", "report", "braze"], None),
        (["connectors", "dead-letters", "braze", "--retry"], None),
    ):
        for extra in ([], ["--json"]):
            seen += cli([*argv, "--config", str(config), "-v", *extra], stdin=stdin)[1]
    assert "401" in seen or "rejected" in seen.lower()  # the keys really were tried and refused

    def calls(url: str) -> None:
        answer = requests.post(f"{url}/webhooks/brevo", json=opened(user["email"], 1714557900),
                               headers={"Authorization": f"Bearer {HOOK_TOKEN}"}, timeout=30)
        assert answer.status_code == 200

    seen += serve_and_call(config, env, calls)
    assert [s[:12] for s in secrets if s in seen] == []
    assert files_containing(tmp_path, secrets) == []


@pytest.mark.parametrize("field", ["instance_url", "brevo.base_url", "field_mapping"])
def test_a_secret_variable_written_in_the_wrong_field_is_not_echoed_by_the_error(
    tmp_path: Path, field: str
) -> None:
    """`instance_url: ${BRAZE_API_KEY}` is a plausible slip; the error must name the field, not the key."""
    braze: dict[str, Any] = {
        "instance_url": "http://127.0.0.1:9/braze",
        "api_key": "${BRAZE_API_KEY}",
        "brevo": {"api_key": "${BREVO_API_KEY}", "base_url": "http://127.0.0.1:9/brevo/v3"},
        "field_mapping": str(ROOT / "mappings" / "default.yaml"),
        "state_path": str(tmp_path / "state.db"),
    }
    parent, _, leaf = field.rpartition(".")
    (braze[parent] if parent else braze)[leaf] = "${BRAZE_API_KEY}"
    path = write_yaml(tmp_path / "tajo.yaml", {"connectors": {"braze": braze}})
    env = {"BRAZE_API_KEY": CANARY_BRAZE, "BREVO_API_KEY": CANARY_BREVO}
    with mock.patch.dict(os.environ, env):
        code, output = cli(["connectors", "sync", "braze", "--config", str(path)])
    assert code == 2, output
    assert CANARY_BRAZE not in output
    assert files_containing(tmp_path, [CANARY_BRAZE]) == []


# ---------------------------------------------------------------------------- only vendor hosts, https
@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("instance_url", "https://evil.example.com"),
        ("instance_url", "https://rest.iad-01.braze.com.evil.example.com"),
        ("instance_url", "https://rest.iad-01.braze.com@evil.example.com"),
        ("instance_url", "http://rest.iad-01.braze.com"),
        ("instance_url", "http://10.0.0.8:8080/braze"),
        ("instance_url", "https://169.254.169.254/latest"),
        ("brevo.base_url", "https://api.brevo.com.evil.example.com/v3"),
        ("brevo.base_url", "https://api.brevo.com@evil.example.com/v3"),
        ("brevo.base_url", "http://api.brevo.com/v3"),
        ("brevo.base_url", "http://192.168.1.10/brevo/v3"),
    ],
)
def test_non_vendor_hosts_and_plain_http_off_loopback_are_refused_by_the_config(
    tmp_path: Path, field: str, url: str
) -> None:
    braze: dict[str, Any] = {
        "instance_url": "rest.iad-01.braze.com",
        "api_key": "${BRAZE_API_KEY}",
        "brevo": {"api_key": "${BREVO_API_KEY}"},
    }
    parent, _, leaf = field.rpartition(".")
    (braze[parent] if parent else braze)[leaf] = url
    path = write_yaml(tmp_path / "tajo.yaml", {"connectors": {"braze": braze}})
    with pytest.raises(ConfigError) as refused:
        load_config(path, env={"BRAZE_API_KEY": "k", "BREVO_API_KEY": "k"})
    assert [p.path for p in refused.value.problems] == [f"connectors.braze.{field}"]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[refused.value.problems[0].line - 1].strip().startswith(f"{leaf}:")


@pytest.mark.parametrize(
    "url", ["http://example.com/v3", "http://10.0.0.8/x", "ftp://127.0.0.1/x", "http:///nohost", "file:///etc/passwd"]
)
def test_the_http_layer_refuses_plain_http_off_loopback_before_any_connection(url: str) -> None:
    attempts: list[Any] = []
    with mock.patch.object(urllib3.util.connection, "create_connection", side_effect=lambda *a, **k: attempts.append(a)):
        with pytest.raises(ValueError, match="https|no host"):
            ApiSession(api="brevo", base_url=url, auth_headers={"api-key": "k"}, limiter=RateLimiter(()))
        session = ApiSession(api="brevo", base_url="https://api.brevo.com/v3", auth_headers={"api-key": "k"},
                             limiter=RateLimiter(()))
        with pytest.raises(ValueError, match="https|no host"):
            session.probe_url(url)
        with pytest.raises(ValueError, match="https|no host"):
            session.stream_get(url, max_bytes=10)
        session.close()
    assert attempts == []


@contextlib.contextmanager
def braze_exports_at(url: str) -> Iterator[None]:
    """Braze answers every segment export with `url` (the real client call is replaced)."""
    with mock.patch.object(
        BrazeClient, "export_segment", lambda self, segment_id, **kw: SegmentExportJob(segment_id, url, None)
    ):
        yield


def test_an_export_url_over_plain_http_off_loopback_is_refused_before_any_connection(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = BrazeConnector(config_for(sandbox, tmp_path), env=env_for(sandbox), log_stream=io.StringIO())
    imports_before = sandbox.request_counts().get(IMPORT, 0)
    remote: list[Any] = []
    real = urllib3.util.connection.create_connection

    def connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        if address[0] != "127.0.0.1":
            remote.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", connect)
    with braze_exports_at("http://203.0.113.9/export.zip"), pytest.raises((ValueError, ConnectorError), match="https"):
        connector.sync(type="full", resources=["users"])
    connector.close()
    assert remote == []
    assert sandbox.request_counts().get(IMPORT, 0) == imports_before
    for name, value in env_for(sandbox).items():
        monkeypatch.setenv(name, value)
    config = write_yaml(tmp_path / "tajo.yaml", config_for(sandbox, tmp_path / "cli"))
    with braze_exports_at("http://203.0.113.9/export.zip"):
        try:
            code, output = cli(["connectors", "sync", "braze", "--config", str(config), "--resources", "users"])
        except Exception as exc:  # noqa: BLE001 - reported as the failure it is
            pytest.fail(f"the CLI crashed instead of reporting the refusal: {type(exc).__name__}: {exc}")
    assert code == 3 and "https" in output and "Traceback" not in output  # a clear error, not a crash
    assert remote == []


# ---------------------------------------------------------------------------- hostile exports
def bomb() -> bytes:
    return zip_of({"users.json": b"0" * 20_000_000}, zipfile.ZIP_DEFLATED)


HOSTILE_EXPORTS: dict[str, tuple[Callable[[], bytes], str]] = {
    "zip bomb": (bomb, "expands"),
    "path traversal": (lambda: zip_of({"../../evil.txt": b'{"external_id": "x"}\n'}), "outside the archive"),
    "absolute path": (lambda: zip_of({"/tmp/evil.txt": b'{"external_id": "x"}\n'}), "outside the archive"),
    "windows drive": (lambda: zip_of({"C:\\evil.txt": b'{"external_id": "x"}\n'}), "outside the archive"),
    "not a zip": (lambda: b"<Error><Code>AccessDenied</Code></Error>", "not a ZIP"),
}


@pytest.fixture(scope="module")
def export_host() -> Iterator[ExportHost]:
    host = ExportHost()
    yield host
    host.close()


@pytest.mark.parametrize("kind", sorted(HOSTILE_EXPORTS))
def test_a_hostile_export_archive_is_refused_end_to_end_and_nothing_is_written(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, export_host: ExportHost, kind: str
) -> None:
    make, reason = HOSTILE_EXPORTS[kind]
    url = export_host.publish(f"{kind.replace(' ', '-')}.zip", make())
    for name, value in env_for(sandbox).items():
        monkeypatch.setenv(name, value)
    state_dir = tmp_path / "deep" / "state"
    config = write_yaml(tmp_path / "tajo.yaml", config_for(sandbox, state_dir))
    imports_before = sandbox.request_counts().get(IMPORT, 0)

    with braze_exports_at(url):
        code, output = cli(["connectors", "sync", "braze", "--config", str(config), "--resources", "users"])
    assert code == 3, output
    assert "export archive was refused" in output and reason in output
    assert "Traceback" not in output
    assert sandbox.request_counts().get(IMPORT, 0) == imports_before
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*")) and not Path("/tmp/evil.txt").exists()
    with braze_exports_at(url), BrazeConnector(config) as connector, pytest.raises(UnsafeExport):
        connector.sync(type="full", resources=["users"])
    assert sandbox.violations() == []


# ---------------------------------------------------------------------------- private files
def test_credentials_state_and_exports_are_private_even_under_a_permissive_umask(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = tmp_path / "private" / "nested"
    config = write_yaml(tmp_path / "tajo.yaml", config_for(sandbox, state_dir))
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.delenv("BREVO_API_KEY", raising=False)
    previous = os.umask(0)
    try:
        code, output = cli(["connectors", "install", "braze", "--config", str(config), "--api-key", sandbox.keys.braze,
                            "--brevo-api-key", sandbox.keys.brevo])
        assert code == 0, output
        code, output = cli(["connectors", "sync", "braze", "--config", str(config), "--resources", "users"])
        assert code in (0, 1), output
    finally:
        os.umask(previous)
    made = [p for p in (tmp_path / "private").rglob("*")]
    assert {p.name for p in made} >= {"state.db", "secret.key", "exports"}
    loose = [f"{p.relative_to(tmp_path)} {oct(p.stat().st_mode & 0o777)}" for p in made if p.stat().st_mode & 0o077]
    assert loose == []


# ---------------------------------------------------------------------------- the webhook receiver
@pytest.fixture
def receiver(sandbox: Sandbox, tmp_path: Path) -> Iterator[WebhookReceiver]:
    env = {**env_for(sandbox), "TAJO_WEBHOOK_TOKEN": HOOK_TOKEN, "TAJO_WEBHOOK_PASSWORD": HOOK_PASSWORD}
    connector = BrazeConnector(secure_config(sandbox, tmp_path), env=env, log_stream=io.StringIO())
    hooks = WebhookReceiver(connector).start()
    yield hooks
    hooks.stop(timeout=30)
    connector.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


UNAUTHENTICATED: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": f"Bearer {HOOK_TOKEN[:-1]}"},
    {"Authorization": f"Bearer {HOOK_TOKEN}x"},
    {"Authorization": f"Bearer {HOOK_TOKEN.upper()}"},
    {"Authorization": f"Token {HOOK_TOKEN}"},
    {"Authorization": HOOK_TOKEN},
    {"Authorization": basic("brevo", HOOK_PASSWORD + "x")},
    {"Authorization": basic("someone", HOOK_PASSWORD)},
    {"Authorization": basic("brevo", HOOK_TOKEN)},
    {"Authorization": "Basic not-base64!"},
    {"X-Api-Key": HOOK_TOKEN},
    {"Cookie": f"token={HOOK_TOKEN}"},
]


def test_the_receiver_refuses_every_unauthenticated_call_and_records_nothing(
    sandbox: Sandbox, receiver: WebhookReceiver
) -> None:
    user = a_user(sandbox)
    calls_before = sandbox.request_counts()
    assert receiver.url.startswith("http://127.0.0.1:")  # loopback unless a host is chosen on purpose
    for route in ("/webhooks/brevo", "/webhooks/braze"):
        for headers in UNAUTHENTICATED:
            answer = requests.post(receiver.url + route, json=opened(user["email"]), headers=headers, timeout=30)
            assert answer.status_code == 401, headers
            assert HOOK_TOKEN not in answer.text and HOOK_PASSWORD not in answer.text
        answer = requests.post(f"{receiver.url}{route}?token={HOOK_TOKEN}", json=opened(user["email"]), timeout=30)
        assert answer.status_code == 401
    assert requests.get(receiver.url + "/health", timeout=30).json() == {"ok": True}  # no detail for strangers
    assert receiver.ctx.state.count_events() == 0 and receiver.ctx.state.count_dead_letters() == 0
    assert sandbox.request_counts() == calls_before  # nothing was forwarded either
    assert requests.post(receiver.url + "/webhooks/brevo", json=opened(user["email"]),
                         headers={"Authorization": f"Bearer {HOOK_TOKEN}"}, timeout=30).status_code == 200


# ---------------------------------------------------------------------------- YAML
def test_yaml_is_loaded_safely_and_a_python_tag_is_a_located_error_that_runs_nothing(tmp_path: Path) -> None:
    canary = tmp_path / "executed"
    tags = [
        f"!!python/object/apply:builtins.open ['{canary}', 'w']",
        f"!!python/object/new:builtins.open ['{canary}', 'w']",
        "!!python/name:os.system",
        "!!python/module:os",
    ]
    for tag in tags:
        config = tmp_path / "tajo.yaml"
        config.write_text(f"connectors:\n  braze:\n    instance_url: {tag}\n", encoding="utf-8")
        with pytest.raises(ConfigError) as refused:
            load_config(config, env={})
        assert refused.value.problems[0].file == str(config) and refused.value.problems[0].line == 3
        mapping = tmp_path / "mapping.yaml"
        mapping.write_text(f"field_mapping:\n  email: email\n  first_name: {tag}\n", encoding="utf-8")
        with pytest.raises(MappingError) as refused_mapping:
            load_mapping(mapping, base_dir=tmp_path)
        assert refused_mapping.value.problems[0].line == 3
        code, output = cli(["connectors", "status", "braze", "--config", str(config)])
        assert code == 2 and "Traceback" not in output
    assert not canary.exists()
