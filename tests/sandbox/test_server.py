"""The sandbox HTTP server: routing, the auth/limit pipeline, admin, persistence, lifecycle.

Most tests host two small fake vendor apps (see conftest) so they depend on the server only.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests

from tajo_braze.sandbox.core import Response
from tajo_braze.sandbox.server import (
    BRAZE_READ_PERMISSIONS,
    MAX_BODY_BYTES,
    Dispatcher,
    SandboxKeys,
    _is_loopback,
    derive_keys,
    serve_forever,
)


def _connection(world) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", world.server.port, timeout=5)


# ---------------------------------------------------------------------------- connections
def test_keep_alive_serves_two_requests_on_one_connection(fake_server):
    conn = _connection(fake_server)
    conn.request("GET", "/braze/ping", headers=fake_server.full)
    first = conn.getresponse()
    assert first.status == 200
    first.read()
    sock = conn.sock
    assert sock is not None
    conn.request("GET", "/brevo/v3/ping", headers=fake_server.full)
    second = conn.getresponse()
    assert second.status == 200
    assert json.loads(second.read())["vendor"] == "brevo"
    assert conn.sock is sock  # http.client would have reconnected had the server closed it
    conn.close()


def test_connection_close_header_is_honoured(fake_server):
    conn = _connection(fake_server)
    conn.request("GET", "/braze/ping", headers={**fake_server.full, "Connection": "close"})
    response = conn.getresponse()
    assert response.getheader("Connection") == "close"
    assert response.read()
    conn.close()


# ---------------------------------------------------------------------------- routing
def test_prefixes_route_to_their_vendor_with_the_path_below_the_prefix(fake_server):
    braze = requests.get(fake_server.url("braze", "/ping?page=2"), headers=fake_server.full, timeout=5)
    brevo = requests.get(fake_server.url("brevo", "/ping"), headers=fake_server.full, timeout=5)
    assert braze.json() == {"vendor": "braze", "path": "/ping", "query": {"page": ["2"]}}
    assert brevo.json()["vendor"] == "brevo"
    assert fake_server.braze.calls == ["/ping"]
    assert fake_server.brevo.calls == ["/ping"]


def test_unknown_paths_get_404_without_reaching_any_handler(fake_server):
    base = fake_server.server.public_base
    outside = requests.get(base + "/elsewhere", timeout=5)
    brevo_without_version = requests.get(base + "/brevo/ping", headers=fake_server.full, timeout=5)
    unknown_braze = requests.get(fake_server.url("braze", "/nope"), headers=fake_server.full, timeout=5)
    assert outside.status_code == 404
    assert brevo_without_version.status_code == 404
    assert brevo_without_version.json()["code"] == "not_found"  # Brevo's error shape
    assert unknown_braze.status_code == 404
    assert "message" in unknown_braze.json() and "errors" in unknown_braze.json()  # Braze's shape
    assert fake_server.braze.calls == [] and fake_server.brevo.calls == []


def test_path_parameters_and_json_bodies_reach_the_handler(fake_server):
    created = requests.post(
        fake_server.url("brevo", "/items"), json={"id": "a1", "v": 3}, headers=fake_server.full
    )
    fetched = requests.get(fake_server.url("brevo", "/items/a1"), headers=fake_server.full, timeout=5)
    assert created.status_code == 201
    assert fetched.json() == {"id": "a1", "v": 3}


def test_http_error_from_a_handler_becomes_its_json_answer(fake_server):
    missing = requests.get(fake_server.url("braze", "/items/zzz"), headers=fake_server.full, timeout=5)
    assert missing.status_code == 404
    assert missing.json() == {"message": "no such item"}


def test_a_bug_in_a_handler_answers_500_and_the_server_keeps_serving(fake_server):
    with requests.Session() as client:
        boom = client.get(fake_server.url("braze", "/boom"), headers=fake_server.full, timeout=5)
        after = client.get(fake_server.url("braze", "/free"), headers=fake_server.full, timeout=5)
    assert boom.status_code == 500
    assert boom.json()["errors"] == ["RuntimeError on /braze/boom"]
    assert after.status_code == 200
    counts = requests.get(fake_server.admin_url + "/counts", timeout=5).json()
    assert counts["errors"] == ["RuntimeError on /braze/boom"]


def test_chunked_request_bodies_are_read(fake_server):
    def body():
        yield b'{"id": "c1",'
        yield b' "v": 1}'

    created = requests.post(
        fake_server.url("braze", "/items"),
        data=body(),
        headers={**fake_server.full, "Content-Type": "application/json"},
        timeout=5,
    )
    assert created.status_code == 201
    assert fake_server.braze.items == {"c1": {"id": "c1", "v": 1}}


@pytest.mark.parametrize("expect_continue", [False, True])
def test_body_above_32_mib_is_refused_with_413_before_it_is_read(fake_server, expect_continue):
    head = (
        "POST /braze/items HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer full-token\r\n"
        f"Content-Length: {MAX_BODY_BYTES + 1}\r\n"
        + ("Expect: 100-continue\r\n" if expect_continue else "")
        + "\r\n"
    )
    with socket.create_connection(("127.0.0.1", fake_server.server.port), timeout=5) as sock:
        sock.sendall(head.encode())  # no body at all: the server must answer anyway
        answer = sock.makefile("rb").readline()
    assert answer.startswith(b"HTTP/1.1 413")
    assert fake_server.braze.calls == []


# ---------------------------------------------------------------------------- auth
def test_401_and_403_come_from_the_app_and_stop_the_request(fake_server):
    no_key = requests.post(fake_server.url("braze", "/items"), json={"id": "x"}, timeout=5)
    read_only = requests.post(
        fake_server.url("braze", "/items"), json={"id": "x"}, headers=fake_server.read_only, timeout=5
    )
    bad_key_unknown_path = requests.get(fake_server.url("braze", "/nope"), timeout=5)
    assert no_key.status_code == 401
    assert no_key.json() == {"message": "braze: invalid key"}
    assert read_only.status_code == 403
    assert read_only.json() == {"message": "braze: missing write"}
    assert bad_key_unknown_path.status_code == 401  # auth is checked before routing
    assert fake_server.braze.items == {}


# ---------------------------------------------------------------------------- rate limits
def _ping(world, vendor="braze", headers=None):
    return requests.get(world.url(vendor, "/ping"), headers=headers or world.full, timeout=5)


def test_enforce_mode_answers_429_with_headers_and_does_not_run_the_handler(fake_server):
    answers = [_ping(fake_server) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    window_end = str(int(fake_server.clock.now // 10 * 10 + 10))
    assert answers[3].headers["X-Limit"] == "3"
    assert answers[3].headers["X-Reset"] == window_end
    assert answers[3].json() == {"message": "braze: slow down"}
    assert fake_server.braze.calls == ["/ping"] * 3
    [violation] = fake_server.server.violations()
    assert violation["mode"] == "enforce"
    assert violation["count"] == 4


def test_rate_limits_are_per_vendor_and_per_key(fake_server):
    for _ in range(3):
        _ping(fake_server)
    assert _ping(fake_server).status_code == 429
    assert _ping(fake_server, headers=fake_server.read_only).status_code == 200
    assert _ping(fake_server, vendor="brevo").status_code == 200


def test_window_resets_when_the_clock_reaches_the_next_window(fake_server):
    fake_server.clock.now = 1_700_000_000.0  # a multiple of the 10 s window
    for _ in range(3):
        _ping(fake_server)
    fake_server.clock.advance(9.999)
    assert _ping(fake_server).status_code == 429
    fake_server.clock.advance(0.001)
    fresh = _ping(fake_server)
    assert fresh.status_code == 200
    assert fresh.headers["X-Remaining"] == "2"


def test_count_mode_runs_the_handler_and_records_the_violation(make_fake_server):
    world = make_fake_server(limits="count")
    answers = [_ping(world) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert len(world.braze.calls) == 5
    [violation] = world.server.violations()
    assert violation == {
        "time": world.clock.now,
        "vendor": "braze",
        "endpoint": "GET /ping",
        "bucket": "general",
        "limit": 3,
        "window_s": 10.0,
        "count": 5,
        "mode": "count",
        "key_name": violation["key_name"],
    }
    assert "full-token" not in violation["key_name"]


def test_off_mode_counts_nothing_and_sends_no_rate_headers(make_fake_server):
    world = make_fake_server(limits="off")
    answers = [_ping(world) for _ in range(5)]
    assert {a.status_code for a in answers} == {200}
    assert "X-Remaining" not in answers[-1].headers
    assert world.server.violations() == []


def test_limits_mode_switches_at_runtime(fake_server):
    for _ in range(3):
        _ping(fake_server)
    fake_server.server.set_limits("off")
    assert _ping(fake_server).status_code == 200
    fake_server.server.set_limits("enforce")
    assert _ping(fake_server).status_code == 429
    with pytest.raises(ValueError, match="unknown limits mode"):
        fake_server.server.set_limits("sometimes")


def test_endpoints_without_buckets_are_never_limited(fake_server):
    answers = [
        requests.get(fake_server.url("braze", "/free"), headers=fake_server.full, timeout=5) for _ in range(5)
    ]
    assert {a.status_code for a in answers} == {200}


def test_app_reported_violations_join_the_log(fake_server):
    refused = requests.get(fake_server.url("brevo", "/refuse"), headers=fake_server.full, timeout=5)
    assert refused.status_code == 400
    assert fake_server.server.violations() == [
        {
            "time": fake_server.clock.now,
            "vendor": "brevo",
            "endpoint": "GET /refuse",
            "detail": "batch above 75 objects",
        }
    ]


def test_request_counts_are_kept_per_vendor_endpoint(fake_server):
    _ping(fake_server)
    _ping(fake_server)
    requests.get(fake_server.url("brevo", "/items/zz"), headers=fake_server.full, timeout=5)
    assert fake_server.server.request_counts() == {"braze GET /ping": 2, "brevo GET /items/{item_id}": 1}
    fake_server.server.reset_counters()
    assert fake_server.server.request_counts() == {}
    assert _ping(fake_server).headers["X-Remaining"] == "2"  # windows were reset too


# ---------------------------------------------------------------------------- export files
def test_export_files_stream_without_auth_and_support_head(fake_server):
    payload = bytes(range(256)) * 9000  # more than one 1 MiB chunk is not needed; content must survive
    fake_server.braze.exports["tok1"] = payload
    base = fake_server.server.public_base
    got = requests.get(base + "/_s3/tok1", timeout=5)
    head = requests.head(base + "/_s3/tok1", timeout=5)
    missing = requests.get(base + "/_s3/unknown", timeout=5)
    assert got.status_code == 200
    assert got.content == payload
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(payload))
    assert head.content == b""
    assert missing.status_code == 403
    assert fake_server.server.request_counts()["braze GET /_s3/{token}"] == 2


def test_large_export_files_stream_in_chunks(fake_server):
    payload = b"x" * (3 * 1024 * 1024 + 17)
    fake_server.braze.exports["big"] = payload
    got = requests.get(fake_server.server.public_base + "/_s3/big", timeout=5)
    assert len(got.content) == len(payload)


# ---------------------------------------------------------------------------- admin
def test_admin_health_counts_and_violations(fake_server):
    admin = fake_server.admin_url
    health = requests.get(admin + "/health", timeout=5).json()
    assert health["status"] == "ok"
    assert health["braze_url"] == fake_server.server.braze_url
    assert health["limits"] == "enforce"
    for _ in range(4):
        _ping(fake_server)
    counts = requests.get(admin + "/counts", timeout=5).json()
    assert counts["requests"] == {"braze GET /ping": 4}
    assert counts["rate_limited"] == 1
    violations = requests.get(admin + "/violations", timeout=5).json()
    assert violations["total"] == 1
    assert violations["violations"][0]["endpoint"] == "GET /ping"
    assert requests.post(admin + "/violations/reset", timeout=5).status_code == 200
    assert requests.post(admin + "/counts/reset", timeout=5).status_code == 200
    assert requests.get(admin + "/violations", timeout=5).json() == {"violations": [], "total": 0}
    assert requests.get(admin + "/counts", timeout=5).json()["requests"] == {}


def test_admin_switches_limits_and_refuses_unknown_modes(fake_server):
    admin = fake_server.admin_url
    assert requests.post(admin + "/limits", json={"mode": "count"}, timeout=5).json() == {"mode": "count"}
    assert fake_server.server.limiter.mode == "count"
    bad = requests.post(admin + "/limits", json={"mode": "loud"}, timeout=5)
    assert bad.status_code == 400
    assert "unknown limits mode" in bad.json()["message"]


def test_admin_sets_and_clears_faults(fake_server):
    admin = fake_server.admin_url
    set_answer = requests.post(admin + "/faults", json={"spec": "braze:5xx=1"}, timeout=5)
    assert set_answer.status_code == 200
    assert set_answer.json()["spec"] == "braze:5xx=1"
    assert _ping(fake_server).status_code in (500, 502, 503)
    assert requests.post(admin + "/faults", json={}, timeout=5).json()["rules"] == []
    assert _ping(fake_server).status_code == 200
    bad = requests.post(admin + "/faults", json={"spec": "5xx=2"}, timeout=5)
    assert bad.status_code == 400
    assert "between 0 and 1" in bad.json()["message"]


def test_admin_state_and_vendor_delegation(fake_server):
    requests.post(fake_server.url("braze", "/items"), json={"id": "s1"}, headers=fake_server.full, timeout=5)
    admin = fake_server.admin_url
    state = requests.get(admin + "/state", timeout=5).json()
    assert state == {"braze": {"items": {"s1": {"id": "s1"}}}, "brevo": {"items": {}}}
    delegated = requests.post(admin + "/brevo/contacts/touch", json={}, timeout=5).json()
    assert delegated == {"vendor": "brevo", "subpath": "contacts/touch", "method": "POST"}
    assert requests.get(admin + "/nothing", timeout=5).status_code == 404


def test_admin_does_not_disturb_vendor_counts_or_limits(fake_server):
    for _ in range(10):
        requests.get(fake_server.admin_url + "/health", timeout=5)
    assert fake_server.server.request_counts() == {}
    assert _ping(fake_server).headers["X-Remaining"] == "2"


def test_admin_answers_loopback_clients_only(fake_server):
    dispatcher: Dispatcher = fake_server.server.dispatcher
    remote = dispatcher.dispatch("GET", "/_admin/health", {}, b"", "192.0.2.10")
    local = dispatcher.dispatch("GET", "/_admin/health", {}, b"", "127.0.0.1")
    vendor_from_remote = dispatcher.dispatch("GET", "/braze/ping", fake_server.full, b"", "192.0.2.10")
    assert remote.response.status == 403
    assert local.response.status == 200
    assert vendor_from_remote.response.status == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.1.2.3", False),
        ("bogus", False),
    ],
)
def test_loopback_detection(host, loopback):
    assert _is_loopback(host) is loopback


# ---------------------------------------------------------------------------- persistence and lifecycle
def test_data_file_round_trip(make_fake_server, tmp_path):
    data_file = str(tmp_path / "state" / "sandbox.json")
    first = make_fake_server(data_file=data_file)
    requests.post(first.url("brevo", "/items"), json={"id": "kept"}, headers=first.full, timeout=5)
    first.server.stop()
    saved = json.loads((tmp_path / "state" / "sandbox.json").read_text(encoding="utf-8"))
    assert saved["brevo"] == {"items": {"kept": {"id": "kept"}}}

    second = make_fake_server(data_file=data_file)
    assert second.brevo.items == {"kept": {"id": "kept"}}
    fetched = requests.get(second.url("brevo", "/items/kept"), headers=second.full, timeout=5)
    assert fetched.json() == {"id": "kept"}


def test_a_corrupt_data_file_is_refused_at_start(make_fake_server, tmp_path):
    data_file = tmp_path / "broken.json"
    data_file.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        make_fake_server(data_file=str(data_file))


def test_stop_closes_idle_keep_alive_connections(make_fake_server):
    world = make_fake_server()
    conn = _connection(world)
    conn.request("GET", "/braze/ping", headers=world.full)
    conn.getresponse().read()
    world.server.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        conn.request("GET", "/braze/ping", headers=world.full)
        conn.getresponse()
    conn.close()
    assert world.braze.calls == ["/ping"]


def test_serve_forever_returns_and_stops_when_the_event_is_set(make_fake_server):
    world = make_fake_server()
    stop = threading.Event()
    runner = threading.Thread(target=serve_forever, args=(world.server,), kwargs={"stop_event": stop})
    runner.start()
    assert _ping(world).status_code == 200
    stop.set()
    runner.join(timeout=5)
    assert not runner.is_alive()
    assert not world.server.running


def test_urls_need_a_started_server(make_fake_server):
    world = make_fake_server()
    world.server.stop()
    with pytest.raises(RuntimeError, match="not started"):
        _ = world.server.braze_url


# ---------------------------------------------------------------------------- keys
def test_keys_are_deterministic_per_seed_and_look_like_the_vendors():
    keys = derive_keys(7)
    assert keys == derive_keys(7)
    assert keys != derive_keys(8)
    assert str(uuid.UUID(keys.braze)) == keys.braze
    assert str(uuid.UUID(keys.braze_readonly)) == keys.braze_readonly
    assert keys.brevo.startswith("xkeysib-") and keys.brevo_other.startswith("xkeysib-")
    assert len(set(keys.as_dict().values())) == 4


def test_keys_never_show_in_their_repr():
    keys = derive_keys(7)
    text = repr(keys) + str(keys)
    assert all(secret not in text for secret in keys.as_dict().values())


def test_key_permissions_and_names():
    keys: SandboxKeys = derive_keys(3)
    braze = keys.braze_permissions()
    assert braze[keys.braze] is None
    assert braze[keys.braze_readonly] == BRAZE_READ_PERMISSIONS
    assert "users.track" not in BRAZE_READ_PERMISSIONS and "segments.list" in BRAZE_READ_PERMISSIONS
    assert keys.brevo_names() == {keys.brevo: "tajo-connector", keys.brevo_other: "marketing-team"}


def test_vendor_404_uses_the_apps_own_answer_when_it_has_one(fake_server):
    fake_server.braze.not_found = lambda req: Response.json(404, {"message": f"custom {req.path}"})
    answer = requests.get(fake_server.url("braze", "/nope"), headers=fake_server.full, timeout=5)
    assert answer.json() == {"message": "custom /nope"}


# ---------------------------------------------------------------------------- the real sandbox
def test_sandbox_with_10000_users_starts_within_two_seconds_and_answers(make_sandbox):
    started = time.perf_counter()
    sandbox = make_sandbox(users=10_000)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"Sandbox(users=10000) took {elapsed:.2f}s to start"
    braze = requests.get(
        sandbox.braze_url + "/segments/list",
        headers={"Authorization": f"Bearer {sandbox.keys.braze}"},
        timeout=5,
    )
    brevo = requests.get(sandbox.brevo_url + "/account", headers={"api-key": sandbox.keys.brevo}, timeout=5)
    health = requests.get(sandbox.admin_url + "/health", timeout=5)
    assert braze.status_code == 200 and "segments" in braze.json()
    assert brevo.status_code == 200
    assert health.json()["brevo_url"] == sandbox.brevo_url


def test_sandbox_keys_and_permissions_reach_the_apps(sandbox):
    track = sandbox.braze_url + "/users/track"
    body = {"attributes": [{"external_id": "perm-check", "first_name": "P"}]}
    read_only = requests.post(
        track, json=body, headers={"Authorization": f"Bearer {sandbox.keys.braze_readonly}"}, timeout=5
    )
    full = requests.post(
        track, json=body, headers={"Authorization": f"Bearer {sandbox.keys.braze}"}, timeout=5
    )
    listing = requests.get(
        sandbox.braze_url + "/segments/list",
        headers={"Authorization": f"Bearer {sandbox.keys.braze_readonly}"},
        timeout=5,
    )
    other_brevo = requests.get(
        sandbox.brevo_url + "/account", headers={"api-key": sandbox.keys.brevo_other}, timeout=5
    )
    wrong_brevo = requests.get(
        sandbox.brevo_url + "/account", headers={"api-key": sandbox.keys.braze}, timeout=5
    )
    assert read_only.status_code == 403
    assert full.status_code in (200, 201)
    assert listing.status_code == 200
    assert other_brevo.status_code == 200
    assert wrong_brevo.status_code == 401


def test_sandbox_enforces_brevo_limits_with_brevo_headers(sandbox):
    with requests.Session() as client:
        client.headers["api-key"] = sandbox.keys.brevo
        answers = [client.get(sandbox.brevo_url + "/account", timeout=5) for _ in range(101)]
    assert {a.status_code for a in answers[:100]} == {200}
    assert answers[100].status_code == 429
    assert answers[100].headers["x-sib-ratelimit-remaining"] == "0"
    [violation] = sandbox.violations()
    assert violation["vendor"] == "brevo"
    assert violation["key_name"] == "tajo-connector"
    assert sandbox.request_counts()["brevo GET /account"] == 101


def test_sandbox_wires_the_apps_violation_hooks_and_public_base(sandbox):
    sandbox.braze.violation_hook("POST /users/track", "76 attributes")
    sandbox.brevo.violation_hook("POST /contacts/import", "body too large")
    details = [(v["vendor"], v["detail"]) for v in sandbox.violations()]
    assert details == [("braze", "76 attributes"), ("brevo", "body too large")]
    assert sandbox.braze.public_base == sandbox.brevo.public_base == f"http://127.0.0.1:{sandbox.port}"


def test_sandbox_data_file_round_trip(make_sandbox, tmp_path):
    data_file = str(tmp_path / "sandbox.json")
    first = make_sandbox(users=50, data_file=data_file)
    requests.post(
        first.braze_url + "/users/track",
        json={"attributes": [{"external_id": "saved-user", "first_name": "Saved"}]},
        headers={"Authorization": f"Bearer {first.keys.braze}"},
        timeout=5,
    )
    braze_state, brevo_state = first.braze.dump_state(), first.brevo.dump_state()
    first.stop()
    second = make_sandbox(users=50, data_file=data_file)
    assert second.braze.dump_state() == braze_state
    assert second.brevo.dump_state() == brevo_state


def test_module_entry_point_prints_its_json_line_and_stops_on_sigterm(tmp_path):
    data_file = tmp_path / "state.json"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tajo_braze.sandbox",
            "--users",
            "50",
            "--seed",
            "11",
            "--data",
            str(data_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
        assert set(info) == {"braze_url", "brevo_url", "admin_url", "keys"}
        assert info["keys"] == derive_keys(11).as_dict()
        assert info["brevo_url"].endswith("/brevo/v3")
        health = requests.get(info["admin_url"] + "/health", timeout=5)
        assert health.json()["status"] == "ok"
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert json.loads(data_file.read_text())["version"] == 1


def test_module_entry_point_refuses_a_bad_fault_spec():
    result = subprocess.run(
        [sys.executable, "-m", "tajo_braze.sandbox", "--users", "10", "--faults", "5xx=7"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "between 0 and 1" in result.stderr
    assert result.stdout == ""


def test_admin_reads_back_settings_resets_windows_and_refuses_bad_json(fake_server):
    admin = fake_server.admin_url
    fake_server.server.set_faults("brevo:latency=5")
    assert requests.get(admin + "/faults", timeout=5).json()["rules"] == [
        {"vendor": "brevo", "latency_ms": 5.0, "jitter_ms": 0.0}
    ]
    assert requests.get(admin + "/limits", timeout=5).json() == {"mode": "enforce"}
    for _ in range(3):
        _ping(fake_server)
    assert _ping(fake_server).status_code == 429
    assert requests.post(admin + "/limits/reset", timeout=5).status_code == 200
    assert _ping(fake_server).status_code == 200
    bad = requests.post(admin + "/limits", data=b"{nope", timeout=5)
    assert bad.status_code == 400
    assert "Invalid JSON" in bad.json()["message"]
