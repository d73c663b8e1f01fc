"""Fuzzing the Braze export reader: any line becomes a contact or a dead letter with a reason, never a crash.

Two levels: the pure pieces (`user_from_line` + the mapping + the import row) with many examples,
and whole syncs against the sandbox whose segment export is a ZIP of such lines, served from a
loopback stand-in for Braze's export storage.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tajo_braze.clients.braze import BrazeClient
from tajo_braze.connector import BrazeConnector
from tajo_braze.errors import RecordRejected
from tajo_braze.mapping import CompiledMapping, load_mapping
from tajo_braze.models import ContactPayload, Rejection, SegmentExportJob
from tajo_braze.sandbox import Sandbox
from tajo_braze.sync.users import import_row, payload_digest, user_from_line
from tests.integration.conftest import config_for, env_for

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MAPPING = ROOT / "mappings" / "default.yaml"

# A mapping that reaches every coercer: dates, numbers, booleans, categories, transforms, defaults,
# nested custom attributes.
RICH_MAPPING = {
    "field_mapping": {
        "external_id": "BRAZE_ID",
        "email": "email",
        "phone": "SMS",
        "first_name": {"brevo": "FIRSTNAME", "transform": "title"},
        "last_name": {"brevo": "LASTNAME", "transform": "truncate255"},
        "dob": "BIRTHDAY",
        "country": {"brevo": "COUNTRY", "type": "category", "default": "unknown"},
        "total_revenue": "TOTAL_REVENUE",
        "push_opted_in": "PUSH_OPTIN",
        "email_subscribe": "EMAIL_STATUS",
        "loyalty_points": {"brevo": "LOYALTY_POINTS", "type": "number", "default": 0},
        "vip": {"brevo": "VIP", "type": "boolean"},
        "signup": {"brevo": "SIGNUP", "type": "date"},
        "address.city": {"brevo": "CITY", "transform": "upper"},
        "address.since": {"brevo": "ADDRESS_SINCE", "type": "date"},
    }
}

SYNC_LEVEL_REASONS = ("is already synced for Braze user", "no usable identifier left")


# ---------------------------------------------------------------------------- odd values
HUGE = st.sampled_from(["x" * 100_000, "é" * 70_000, "😀" * 40_000, "a@" + "b" * 10_000 + ".com"])
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "\u202eevil\u202c",  # right-to-left override
            "\u0000nul",
            "Ωmega\u0301",  # combining mark
            "ｆｕｌｌｗｉｄｔｈ@ｅｘａｍｐｌｅ.ｃｏｍ",
            "user@exa mple.com",
            "user@@example.com",
            "+33 6 12 34 56 78",
            "+1 (555) 010-9999",
            "0000000",
            "2024-02-30",
            "1e309",
            "NaN",
            "true",
            "null",
        ]
    ),
    HUGE,
)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    ODD_TEXT,
)
ODD_VALUE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
USER_FIELDS = (
    "external_id", "braze_id", "email", "phone", "first_name", "last_name", "dob", "country",
    "total_revenue", "email_subscribe", "push_subscribe", "created_at", "language",
)
CUSTOM_FIELDS = ("loyalty_points", "last_app_version", "preferred_language", "vip", "signup", "address")


@st.composite
def odd_user(draw: st.DrawFn, ext_id: str | None = None) -> dict[str, Any]:
    """An export object whose fields may each be missing, of the wrong type, huge or odd."""
    user: dict[str, Any] = {}
    for name in USER_FIELDS:
        if draw(st.booleans()):
            user[name] = draw(ODD_VALUE)
    if ext_id is not None and draw(st.integers(0, 3)):
        user["external_id"] = ext_id
        if draw(st.booleans()):
            user["email"] = f"{ext_id}@example.com"
    if draw(st.booleans()):
        custom = {name: draw(ODD_VALUE) for name in CUSTOM_FIELDS if draw(st.booleans())}
        user["custom_attributes"] = custom if draw(st.integers(0, 4)) else draw(ODD_VALUE)
    return user


def garbage_line(data: bytes) -> bytes:
    # Never blank and never split in two: the export reader yields one record per non-empty line.
    return b"#" + data.replace(b"\n", b" ").replace(b"\r", b" ")


@st.composite
def export_line(draw: st.DrawFn, ext_id: str | None = None) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return garbage_line(draw(st.binary(max_size=60)))
    if kind == 1:
        return json.dumps(draw(st.one_of(st.lists(SCALAR, max_size=3), SCALAR))).encode()
    if kind == 2:  # JSON that Python writes but a strict reader refuses: NaN, lone surrogates
        return draw(st.sampled_from([b'{"external_id": NaN}', b'{"email": "\\ud800"}', b'{"a": 1,}', b"{"]))
    return json.dumps(draw(odd_user(ext_id))).encode()


# ---------------------------------------------------------------------------- the pure pipeline
@pytest.fixture(scope="module")
def mappings() -> list[CompiledMapping]:
    return [load_mapping(DEFAULT_MAPPING, base_dir=ROOT), load_mapping(RICH_MAPPING, base_dir=ROOT)]


def outcome_of(mapping: CompiledMapping, raw: bytes) -> ContactPayload | Rejection | RecordRejected:
    try:
        user = user_from_line(raw)
    except RecordRejected as exc:
        return exc
    return mapping.to_brevo(user)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(export_line(), st.binary(max_size=200)))
def test_any_export_line_maps_to_a_contact_or_a_precise_rejection(
    mappings: list[CompiledMapping], raw: bytes
) -> None:
    for mapping in mappings:
        outcome = outcome_of(mapping, raw)
        if isinstance(outcome, RecordRejected):
            assert outcome.reason and "export line" in outcome.reason
        elif isinstance(outcome, Rejection):
            assert outcome.reason and outcome.key
        else:
            # What the import writer does with an accepted contact must work for any input.
            row = orjson.loads(orjson.dumps(import_row(outcome)))
            assert row["attributes"] == {**outcome.attributes, **({"EXT_ID": outcome.ext_id} if outcome.ext_id else {})}
            assert len(payload_digest(outcome)) == 20
            assert outcome.key.split(":", 1)[0] in ("ext", "email", "sms")
            assert all(v is not None and v != "" for v in outcome.attributes.values())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=odd_user(ext_id="fuzz-1"))
def test_the_same_line_always_gives_the_same_outcome(mappings: list[CompiledMapping], user: dict[str, Any]) -> None:
    raw = json.dumps(user).encode()
    for mapping in mappings:
        first, second = outcome_of(mapping, raw), outcome_of(mapping, raw)
        if isinstance(first, RecordRejected):
            assert isinstance(second, RecordRejected) and first.reason == second.reason
        else:
            assert first == second


# ---------------------------------------------------------------------------- whole syncs
class ExportHost:
    """A loopback stand-in for Braze's export storage: serves the bytes it was given, without auth."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                host.requests.append(self.path)
                body = host.files.get(self.path.lstrip("/").split("?")[0])
                status = 200 if body is not None else 404
                if body and self.headers.get("Range") == "bytes=0-0":  # the readiness probe
                    status, body = 206, body[:1]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                return  # a client closing early (a refused archive) is expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def serving_export(url: str) -> Any:
    """Make Braze answer every segment export with `url` (the real client call is replaced)."""
    return mock.patch.object(
        BrazeClient, "export_segment", lambda self, segment_id, **kw: SegmentExportJob(segment_id, url, None)
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, BrazeConnector, ExportHost]]:
    sandbox = Sandbox(users=20, contacts=5, seed=13).start()
    host = ExportHost()
    connector = BrazeConnector(
        config_for(sandbox, tmp_path_factory.mktemp("state")), env=env_for(sandbox), log_stream=io.StringIO()
    )
    connector.install()
    yield sandbox, connector, host
    connector.close()
    host.close()
    sandbox.stop()


class Examples:
    count = 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_sync_of_an_export_full_of_odd_lines_dead_letters_each_bad_one_with_its_reason(
    world: tuple[Sandbox, BrazeConnector, ExportHost], data: st.DataObject
) -> None:
    sandbox, connector, host = world
    Examples.count += 1
    example = Examples.count
    lines = [data.draw(export_line(ext_id=f"fz{example}-{i}")) for i in range(data.draw(st.integers(1, 25)))]
    # Empty members first put this example's lines at their own member index, so the keys of
    # unparseable lines ("line:<member>:<line>") never collide with an earlier example's.
    members = {f"pad-{i}.txt": b"" for i in range(example)}
    members["users.txt"] = b"\n".join(lines) + b"\n"
    url = host.publish(f"export-{example}.zip", zip_of(members))

    with serving_export(url):
        summary = connector.sync(type="full", resources=["users"])
    result = summary["resources"][0]

    assert result["read"] == len(lines)
    assert result["created"] + result["updated"] + result["failed"] == len(lines)
    outcomes = [outcome_of(connector.mapping, raw + b"\n") for raw in lines]  # lines as the reader yields them
    pure_rejections = [o for o in outcomes if not isinstance(o, ContactPayload)]
    assert result["failed"] >= len(pure_rejections)

    letters = {d["key"]: d for d in connector.dead_letters(limit=100_000)}
    keys = [
        f"line:{example}:{i}" if isinstance(o, RecordRejected) else o.key for i, o in enumerate(outcomes)
    ]
    for key, outcome in zip(keys, outcomes, strict=True):
        if isinstance(outcome, ContactPayload) or keys.count(key) > 1:
            continue
        assert key in letters, key
        assert letters[key]["reason"] == outcome.reason
    # Whatever the mapping accepted but the sync still refused says why, in words a person can act on.
    accepted_keys = {o.key for o in outcomes if isinstance(o, ContactPayload)}
    for key in accepted_keys & letters.keys():
        if keys.count(key) == 1:
            assert any(reason in letters[key]["reason"] for reason in SYNC_LEVEL_REASONS), letters[key]
    assert sandbox.violations() == []


def test_an_over_long_line_is_dead_lettered_and_the_lines_around_it_are_written(
    world: tuple[Sandbox, BrazeConnector, ExportHost],
) -> None:
    sandbox, connector, host = world
    before = connector.dead_letters(limit=100_000)
    good = [json.dumps({"external_id": f"long-{i}", "email": f"long-{i}@example.com", "first_name": "Ok"}).encode()
            for i in range(3)]
    # 17 MB of text in one line: over the reader's 16 MB line limit (stored, so no compression ratio).
    huge = json.dumps({"external_id": "long-huge", "first_name": "y" * (17 * 1024 * 1024)}).encode()
    members = {f"pad-{i}.txt": b"" for i in range(200)}
    members["users.txt"] = b"\n".join([good[0], huge, good[1], good[2]]) + b"\n"
    url = host.publish("long.zip", zip_of(members))

    with serving_export(url):
        result = connector.sync(type="full", resources=["users"])["resources"][0]

    assert (result["read"], result["failed"], result["created"] + result["updated"]) == (4, 1, 3)
    letters = {d["key"]: d for d in connector.dead_letters(limit=100_000)}
    assert "longer than the line limit" in letters["line:200:1"]["reason"]
    assert len(letters) == len(before) + 1
    assert sandbox.violations() == []
