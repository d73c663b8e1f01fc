"""Segment exports over HTTP: the presigned-style URL, its readiness, the ZIP of NDJSON files, expiry."""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tajo_braze.sandbox import Sandbox
from tajo_braze.sandbox import braze as braze_module

DELAY_S = 30.0
TTL_S = 14_400.0


class Clock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Exports:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {sandbox.keys.braze}"

    def segment_id(self, name: str) -> str:
        segments = self.http.get(self.sandbox.braze_url + "/segments/list", timeout=10).json()["segments"]
        return next(s["id"] for s in segments if s["name"] == name)

    def start(self, segment: str, fields: list[str], **extra: Any) -> requests.Response:
        body = {"segment_id": self.segment_id(segment), "fields_to_export": fields, **extra}
        return self.http.post(self.sandbox.braze_url + "/users/export/segment", json=body, timeout=10)

    def ready_url(self, segment: str, fields: list[str], **extra: Any) -> str:
        answer = self.start(segment, fields, **extra)
        assert answer.status_code == 201, answer.text
        assert self.sandbox.braze.wait_for_exports(timeout=60)
        url: str = answer.json()["url"]
        return url


def read_zip(url: str) -> dict[str, list[dict[str, Any]]]:
    answer = requests.get(url, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        return {
            name: [json.loads(line) for line in archive.read(name).decode().splitlines()]
            for name in archive.namelist()
        }


def lines_of(members: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [line for name in sorted(members) for line in members[name]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def big(clock: Clock) -> Iterator[Sandbox]:
    """12,000 users with an export delay, on a clock the test moves."""
    with Sandbox(users=12_000, limits="off", export_delay_s=DELAY_S, clock=clock) as sb:
        yield sb


@pytest.fixture
def small(clock: Clock) -> Iterator[Sandbox]:
    with Sandbox(users=300, limits="off", clock=clock) as sb:
        yield sb


def test_export_url_is_access_denied_until_ready_then_a_zip_of_5000_user_files(
    big: Sandbox, clock: Clock
) -> None:
    exports = Exports(big)
    fields = ["external_id", "braze_id", "email_subscribe", "random_bucket"]
    answer = exports.start("All Users", fields)
    assert answer.status_code == 201
    body = answer.json()
    assert body["message"] == "success" and body["object_prefix"]
    assert body["url"].startswith(big.public_base + "/_s3/")
    assert big.braze.wait_for_exports(timeout=60)

    early = requests.get(body["url"], timeout=10)
    assert early.status_code == 403
    assert "<Code>AccessDenied</Code>" in early.text
    assert requests.head(body["url"], timeout=10).status_code == 403

    clock.now += DELAY_S + 1
    head = requests.head(body["url"], timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) > 0
    members = read_zip(body["url"])
    assert len(members) == math.ceil(12_000 / 5000) == 3
    assert sorted(len(lines) for lines in members.values()) == [2000, 5000, 5000]
    assert all(name.startswith(body["object_prefix"] + "/") for name in members)
    everyone = lines_of(members)
    assert len({u["braze_id"] for u in everyone}) == 12_000
    assert all(set(u) <= set(fields) for u in everyone)
    assert sum("external_id" not in u for u in everyone) > 0  # email-only users have none


def test_segment_export_holds_exactly_the_members_of_the_rule(big: Sandbox, clock: Clock) -> None:
    exports = Exports(big)
    fields = ["braze_id", "email_subscribe", "random_bucket"]
    everyone_url = exports.ready_url("All Users", fields)
    engaged_url = exports.ready_url("engaged_users", fields)
    clock.now += DELAY_S
    everyone = lines_of(read_zip(everyone_url))
    expected = {
        u["braze_id"]
        for u in everyone
        if u["email_subscribe"] != "unsubscribed" and u["random_bucket"] < 5000
    }
    engaged = lines_of(read_zip(engaged_url))
    assert {u["braze_id"] for u in engaged} == expected
    assert len(engaged) == len(expected)


def test_a_second_export_of_a_running_segment_is_429(big: Sandbox, clock: Clock) -> None:
    exports = Exports(big)
    assert exports.start("dormant_users", ["external_id"]).status_code == 201
    again = exports.start("dormant_users", ["external_id"])
    assert again.status_code == 429
    assert any(v.get("endpoint") == "POST /users/export/segment" for v in big.violations())
    assert exports.start("vip", ["external_id"]).status_code == 201  # another segment may run
    assert big.braze.wait_for_exports(timeout=60)
    clock.now += DELAY_S
    assert exports.start("dormant_users", ["external_id"]).status_code == 201  # the first is done


def test_exports_beyond_the_concurrency_cap_are_429(big: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(braze_module, "CONCURRENT_EXPORTS_MAX", 2)  # Braze's cap is 100 per company
    exports = Exports(big)
    assert exports.start("vip", ["external_id"]).status_code == 201
    assert exports.start("small_test", ["external_id"]).status_code == 201
    refused = exports.start("dormant_users", ["external_id"])
    assert refused.status_code == 429
    assert any("limit is 2" in v.get("detail", "") for v in big.violations())


def test_export_expires_and_its_file_is_deleted(small: Sandbox, clock: Clock) -> None:
    url = Exports(small).ready_url("small_test", ["external_id"])
    assert requests.get(url, timeout=10).status_code == 200
    job = requests.get(small.admin_url + "/braze/exports", timeout=10).json()["exports"][0]
    clock.now += TTL_S + 1
    expired = requests.get(url, timeout=10)
    assert expired.status_code == 400
    assert "<Code>ExpiredToken</Code>" in expired.text
    assert not os.path.exists(os.path.join(small.braze.export_dir, job["token"] + ".zip"))


def test_expired_exports_never_fetched_are_swept_when_another_starts(small: Sandbox, clock: Clock) -> None:
    exports = Exports(small)
    exports.ready_url("vip", ["external_id"])
    job = requests.get(small.admin_url + "/braze/exports", timeout=10).json()["exports"][0]
    path = os.path.join(small.braze.export_dir, job["token"] + ".zip")
    assert os.path.exists(path)
    clock.now += TTL_S + 1
    exports.ready_url("dormant_users", ["external_id"])
    assert not os.path.exists(path)


def test_unknown_export_token_is_no_such_key(small: Sandbox) -> None:
    answer = requests.get(small.public_base + "/_s3/0123456789abcdef", timeout=10)
    assert answer.status_code == 404
    assert "<Code>NoSuchKey</Code>" in answer.text


def test_export_validates_segment_and_fields(small: Sandbox) -> None:
    exports = Exports(small)
    url = small.braze_url + "/users/export/segment"
    no_fields = exports.http.post(url, json={"segment_id": exports.segment_id("vip")}, timeout=10)
    assert no_fields.status_code == 400
    unknown = exports.http.post(url, json={"segment_id": "nope", "fields_to_export": ["email"]}, timeout=10)
    assert unknown.status_code == 400
    missing = exports.http.post(url, json={"fields_to_export": ["email"]}, timeout=10)
    assert missing.status_code == 400


def test_small_test_has_25_users_and_follows_admin_overrides(small: Sandbox) -> None:
    exports = Exports(small)
    fields = ["external_id", "email"]
    members = read_zip(exports.ready_url("small_test", fields))
    assert len(members) == 1
    ids = [u["external_id"] for u in lines_of(members)]
    assert len(ids) == 25
    segment_id = exports.segment_id("small_test")
    change = {"add": ["override-in"], "remove": ids[:2]}
    created = {"attributes": [{"external_id": "override-in", "first_name": "In"}]}
    assert exports.http.post(small.braze_url + "/users/track", json=created, timeout=10).status_code == 201
    assert requests.post(f"{small.admin_url}/braze/segments/{segment_id}/members", json=change, timeout=10).ok
    after = {u["external_id"] for u in lines_of(read_zip(exports.ready_url("small_test", fields)))}
    assert after == (set(ids) - set(ids[:2])) | {"override-in"}


def test_export_reflects_changes_and_deletions(small: Sandbox) -> None:
    exports = Exports(small)
    fields = ["braze_id", "external_id", "first_name", "custom_attributes"]
    before = lines_of(read_zip(exports.ready_url("All Users", fields)))
    known = [u for u in before if "external_id" in u][:2]
    changed, deleted = known[0], known[1]
    api = exports.http
    change = {
        "attributes": [{"external_id": changed["external_id"], "first_name": "Renamed", "tier": "gold"}]
    }
    assert api.post(small.braze_url + "/users/track", json=change, timeout=10).status_code == 201
    gone = api.post(
        small.braze_url + "/users/delete", json={"external_ids": [deleted["external_id"]]}, timeout=10
    )
    assert gone.json()["deleted"] == 1
    after = {u["braze_id"]: u for u in lines_of(read_zip(exports.ready_url("All Users", fields)))}
    assert len(after) == len(before) - 1
    assert deleted["braze_id"] not in after
    assert after[changed["braze_id"]]["first_name"] == "Renamed"
    assert after[changed["braze_id"]]["custom_attributes"]["tier"] == "gold"


def test_custom_attributes_to_export_limits_the_custom_attributes(small: Sandbox) -> None:
    exports = Exports(small)
    url = exports.ready_url("All Users", ["external_id"], custom_attributes_to_export=["vip"])
    users = lines_of(read_zip(url))
    assert all(set(u["custom_attributes"]) == {"vip"} for u in users)
    assert {u["custom_attributes"]["vip"] for u in users} == {True, False}
