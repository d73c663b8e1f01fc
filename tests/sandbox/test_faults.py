"""Fault specs, their resolution, and what each fault does to a request over HTTP."""

from __future__ import annotations

import http.client

import pytest
import requests

from tajo_braze.sandbox.faults import (
    NO_FAULTS,
    FaultInjector,
    FaultPlan,
    FaultRule,
    describe,
    faults_from,
    parse_faults,
)


# ---------------------------------------------------------------------------- parsing
def test_a_full_unscoped_spec():
    config = parse_faults(
        "5xx=0.1,429=0.05,drop=0.01,latency=20+30,5xx_after=0.02,export_delay=3,import_delay=1"
    )
    assert config.rules == (
        FaultRule(
            error_5xx=0.1, storm_429=0.05, drop=0.01, latency_ms=20.0, jitter_ms=30.0, error_5xx_after=0.02
        ),
    )
    assert (config.export_delay_s, config.import_delay_s) == (3.0, 1.0)


def test_scoped_sections():
    config = parse_faults("braze:5xx=0.2; brevo:/contacts/import:429=0.5 ;/segments:latency=5")
    assert config.rules == (
        FaultRule(vendor="braze", error_5xx=0.2),
        FaultRule(vendor="brevo", path_prefix="/contacts/import", storm_429=0.5),
        FaultRule(path_prefix="/segments", latency_ms=5.0, jitter_ms=0.0),
    )
    assert config.export_delay_s is None and config.import_delay_s is None


@pytest.mark.parametrize("spec", ["", "  ", ";", None, {}])
def test_empty_specs_mean_no_faults(spec):
    assert faults_from(spec).rules == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("5xx=1.5", "between 0 and 1"),
        ("429=-0.1", "between 0 and 1"),
        ("drop=often", "not a number"),
        ("latency=abc", "not a number"),
        ("latency=10+x", "not a number"),
        ("timeout=0.1", "unknown fault 'timeout'"),
        ("5xx", "expected key=value"),
        ("5xx=", "expected key=value"),
        ("mailchimp:5xx=0.1", "unknown scope 'mailchimp'"),
        ("/a:/b:5xx=0.1", "more than one path prefix"),
        ("/a:braze:5xx=0.1", "vendor:/path:"),
        ("5xx=0.1,5xx=0.2", "given twice"),
        ("braze:", "sets nothing"),
        ("brevo:export_delay=3", "applies to braze as a whole"),
        ("braze:/users:export_delay=3", "applies to braze as a whole"),
        ("export_delay=1;export_delay=2", "given twice"),
        ("export_delay=-1", "0 or more"),
    ],
)
def test_invalid_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_faults(spec)


def test_dict_forms():
    assert faults_from({"spec": "429=0.5"}).rules == (FaultRule(storm_429=0.5),)
    assert faults_from({"5xx": 0.25, "latency": "3+4"}).rules == (
        FaultRule(error_5xx=0.25, latency_ms=3.0, jitter_ms=4.0),
    )
    assert faults_from({"spec": None}) is NO_FAULTS
    with pytest.raises(ValueError, match="not both"):
        faults_from({"spec": "5xx=1", "429": 1})
    with pytest.raises(ValueError, match="must be a string"):
        faults_from({"spec": 3})


# ---------------------------------------------------------------------------- resolution
def test_more_specific_sections_win_key_by_key():
    config = parse_faults(
        "5xx=0.1,latency=7;brevo:429=0.3;brevo:/contacts:5xx=0.9;brevo:/contacts/import:drop=1"
    )
    assert config.plan_for("brevo", "/contacts/import") == FaultPlan(
        error_5xx=0.9, storm_429=0.3, drop=1.0, latency_ms=7.0
    )
    assert config.plan_for("brevo", "/contacts") == FaultPlan(error_5xx=0.9, storm_429=0.3, latency_ms=7.0)
    assert config.plan_for("brevo", "/contactsx") == FaultPlan(error_5xx=0.1, storm_429=0.3, latency_ms=7.0)
    assert config.plan_for("braze", "/contacts") == FaultPlan(error_5xx=0.1, latency_ms=7.0)


def test_unscoped_faults_spare_export_downloads_unless_scoped_to_s3():
    assert parse_faults("5xx=1").plan_for("s3", "/tok").is_quiet
    assert parse_faults("s3:drop=1").plan_for("s3", "/tok") == FaultPlan(drop=1.0)
    assert parse_faults("s3:drop=1").plan_for("braze", "/users/track").is_quiet


def test_describe_is_json_friendly():
    view = describe(parse_faults("braze:5xx=0.5;import_delay=2"))
    assert view == {
        "spec": "braze:5xx=0.5;import_delay=2",
        "rules": [{"vendor": "braze", "error_5xx": 0.5}],
        "export_delay_s": None,
        "import_delay_s": 2.0,
    }


# ---------------------------------------------------------------------------- decisions
def test_the_same_seed_gives_the_same_faults():
    config = parse_faults("5xx=0.3,429=0.3,drop=0.2,5xx_after=0.2,latency=1+10")
    runs = []
    for _ in range(2):
        injector = FaultInjector(config, seed=42)
        runs.append([injector.decide("braze", "/users/track") for _ in range(200)])
    assert runs[0] == runs[1]
    kinds = {(d.status_before is not None, d.drop, d.error_after) for d in runs[0]}
    assert len(kinds) >= 4  # every kind (and no fault) shows up in 200 draws at these rates
    assert all(0.001 <= d.latency_s <= 0.011 for d in runs[0])
    assert {d.status_before for d in runs[0]} - {None} <= {429, 500, 502, 503}


def test_certain_and_impossible_faults():
    always = FaultInjector(parse_faults("429=1"), seed=1)
    never = FaultInjector(parse_faults("429=0,5xx=0"), seed=1)
    assert {always.decide("brevo", "/x").status_before for _ in range(20)} == {429}
    assert {never.decide("brevo", "/x").status_before for _ in range(20)} == {None}


# ---------------------------------------------------------------------------- over HTTP
def _post_item(world, vendor, item_id):
    return requests.post(world.url(vendor, "/items"), json={"id": item_id}, headers=world.full, timeout=5)


def test_5xx_before_answers_an_error_and_nothing_is_applied(make_fake_server):
    world = make_fake_server(faults="5xx=1")
    answer = _post_item(world, "braze", "a")
    assert answer.status_code in (500, 502, 503)
    assert "message" in answer.json()
    assert world.braze.items == {}
    assert world.server.dispatcher.fault_counts() == {"5xx": 1}


def test_5xx_after_applies_the_request_but_answers_500(make_fake_server):
    world = make_fake_server(faults="5xx_after=1")
    answer = _post_item(world, "brevo", "b")
    assert answer.status_code == 500
    assert answer.json()["code"] == "internal_error"  # Brevo's error shape
    assert world.brevo.items == {"b": {"id": "b"}}


def test_429_storm_uses_the_vendor_answer_and_headers_and_does_not_run_the_handler(make_fake_server):
    world = make_fake_server(faults="429=1")
    answer = _post_item(world, "braze", "c")
    assert answer.status_code == 429
    assert answer.json() == {"message": "braze: slow down"}
    assert answer.headers["X-Limit"] == "3"
    assert answer.headers["X-Remaining"] == "0"
    assert world.braze.items == {}


def test_drop_breaks_the_connection_after_the_handler_ran(make_fake_server):
    world = make_fake_server(faults="drop=1")
    with pytest.raises(requests.exceptions.ConnectionError):
        _post_item(world, "braze", "d")
    assert world.braze.items == {"d": {"id": "d"}}  # applied: the client cannot know
    conn = http.client.HTTPConnection("127.0.0.1", world.server.port, timeout=5)
    conn.request("GET", "/braze/ping", headers=world.full)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.getresponse().read()
    conn.close()


def test_scoped_faults_hit_only_their_vendor_and_endpoint(make_fake_server):
    world = make_fake_server(faults="brevo:/items:5xx=1", limits="off")
    assert _post_item(world, "brevo", "x").status_code >= 500
    assert requests.get(world.url("brevo", "/ping"), headers=world.full, timeout=5).status_code == 200
    assert _post_item(world, "braze", "y").status_code == 201


def test_latency_sleeps_the_fixed_part_plus_bounded_jitter(make_fake_server):
    world = make_fake_server(faults="latency=20+30", limits="off")
    for _ in range(5):
        assert requests.get(world.url("braze", "/ping"), headers=world.full, timeout=5).status_code == 200
    assert len(world.sleeps) == 5
    assert all(0.020 <= s <= 0.050 for s in world.sleeps)


def test_faults_on_export_downloads_need_the_s3_scope(make_fake_server):
    world = make_fake_server(faults="5xx=1")
    world.braze.exports["t"] = b"zip"
    assert requests.get(world.server.public_base + "/_s3/t", timeout=5).content == b"zip"
    world.server.set_faults("s3:5xx=1")
    assert requests.get(world.server.public_base + "/_s3/t", timeout=5).status_code >= 500


def test_delays_in_a_spec_are_applied_to_the_apps(make_fake_server):
    world = make_fake_server(faults="export_delay=3,import_delay=1.5")
    assert (world.braze.export_delay_s, world.brevo.import_delay_s) == (3.0, 1.5)
    world.server.set_faults({"spec": "export_delay=0"})
    assert world.braze.export_delay_s == 0.0
    assert world.brevo.import_delay_s == 1.5  # left alone by a spec that does not mention it


def test_set_faults_at_runtime_replaces_and_clears(make_fake_server):
    world = make_fake_server(faults="429=1")
    assert _post_item(world, "braze", "e").status_code == 429
    world.server.set_faults("")
    assert _post_item(world, "braze", "e").status_code == 201
    with pytest.raises(ValueError):
        world.server.set_faults("5xx=lots")
