"""Segment export builds give, line for line, what the original one-user-at-a-time build gave.

The reference below is that original build, kept here (and only here): every seeded profile
drawn whole from `random.Random(gene)` with the Random methods, projected to the asked
fields, one line per member, in slot order. The build under test draws only what is asked,
in this thread or in worker processes, and applies changed users per range.
"""

from __future__ import annotations

import logging
import random
import subprocess
import zipfile
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tajo_braze.sandbox import segment_export
from tajo_braze.sandbox.braze import (
    EXPORT_FIELDS,
    USERS_PER_EXPORT_FILE,
    BrazeApp,
    ExportJob,
    aggregate_events,
)
from tajo_braze.sandbox.seed import (
    APP_VERSIONS,
    CATEGORIES,
    COUNTRIES,
    FIRST_NAMES,
    GARBAGE_POINTS,
    GENDERS,
    LAST_NAMES,
    SUBSCRIBE_STATES,
    BrazeWorld,
    SegmentDef,
    UserSeeds,
    export_time,
    seed_braze_world,
    utc_text,
)

TODAY = date(2025, 3, 14)
NOW = datetime(2025, 3, 14, 12, tzinfo=UTC).timestamp()
N_USERS = 12_345  # three members of 5000 and a partial one, and ranges that do not end on a member


# ---------------------------------------------------------------------------- the reference build
def reference_export_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.") + f"{int(ts * 1000) % 1000:03d} UTC"


def reference_profile(seeds: UserSeeds, slot: int) -> dict[str, Any]:
    head = seeds.head(slot)
    rng = random.Random(seeds.gene(slot))
    country = COUNTRIES[head.country]
    user: dict[str, Any] = {}
    external_id = seeds.external_id(slot, head)
    if external_id is not None:
        user["external_id"] = external_id
    user["braze_id"] = seeds.braze_id(slot, head)
    user["created_at"] = reference_export_time(head.created_ts)
    user["random_bucket"] = head.random_bucket
    user["first_name"] = FIRST_NAMES[head.first][0]
    user["last_name"] = LAST_NAMES[head.last][0]
    email = seeds.email(slot, head)
    if email is not None:
        user["email"] = email
    phone = seeds.phone(slot, head)
    if phone is not None:
        user["phone"] = phone
    if rng.random() < 0.85:
        user["dob"] = f"{rng.randrange(1950, 2007)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    if rng.random() < 0.95:
        user["country"] = country.code
    if rng.random() < 0.9:
        user["language"] = country.language
    city = rng.randrange(len(country.cities))
    if rng.random() < 0.8:
        user["home_city"] = country.cities[city]
    if rng.random() < 0.85:
        user["gender"] = rng.choice(GENDERS)
    if rng.random() < 0.9:
        user["time_zone"] = country.time_zone
    user["email_subscribe"] = head.email_subscribe
    if rng.random() < 0.9:
        user["push_subscribe"] = rng.choices(SUBSCRIBE_STATES, (25, 55, 20))[0]
    user["total_revenue"] = round(rng.expovariate(1 / 120), 2) if rng.random() < 0.4 else 0.0
    attrs: dict[str, Any] = {}
    roll = rng.random()
    points = rng.randrange(0, 5000)
    if roll < 0.005:
        attrs["loyalty_points"] = GARBAGE_POINTS[points % len(GARBAGE_POINTS)]
    elif roll < 0.025:
        attrs["loyalty_points"] = str(points)
    elif roll < 0.95:
        attrs["loyalty_points"] = points
    if rng.random() < 0.9:
        attrs["last_app_version"] = rng.choice(APP_VERSIONS)
    if rng.random() < 0.7:
        attrs["preferred_language"] = (
            country.language if rng.random() < 0.8 else rng.choice(("en", "fr", "de"))
        )
    if rng.random() < 0.6:
        attrs["address"] = {"city": country.cities[city], "zip": country.zips[city]}
    if rng.random() < 0.75:
        attrs["favorite_categories"] = rng.sample(CATEGORIES, rng.randrange(0, 4))
    if rng.random() < 0.8:
        attrs["signup_date"] = datetime.fromtimestamp(head.created_ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs["vip"] = head.vip
    user["custom_attributes"] = attrs
    return user


def reference_project(
    world: BrazeWorld, slot: int, profile: Mapping[str, Any], fields: list[str], custom: list[str] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        if name == "custom_attributes":
            value: Any = profile.get("custom_attributes") or {}
            if custom is not None:
                value = {k: value[k] for k in custom if k in value}
        elif name == "custom_events":
            value = aggregate_events(world.users.events.get(slot, ()), "event")
        elif name == "purchases":
            value = aggregate_events(world.users.events.get(slot, ()), "purchase")
        else:
            value = profile.get(name)
        if value is not None and value != "" and value != [] and value != {}:
            out[name] = value
    return out


def reference_lines(
    world: BrazeWorld, segment: SegmentDef, fields: list[str], custom: list[str] | None
) -> list[bytes]:
    users = world.users
    seeds = users.seeds
    lines = []
    for slot in range(users.next_slot):
        if not users.alive(slot):
            continue
        if users.is_stored(slot):
            profile = users.profile(slot)
            if not segment.contains(profile):
                continue
        else:
            head = seeds.head(slot)
            if not segment.matches(
                seeds.external_id(slot, head), head.email_subscribe, head.random_bucket, head.vip
            ):
                continue
            profile = reference_profile(seeds, slot)
        lines.append(orjson.dumps(reference_project(world, slot, profile, fields, custom)) + b"\n")
    return lines


# ---------------------------------------------------------------------------- the builds under test
def build(
    app: BrazeApp, tmp_path: Path, segment: SegmentDef, fields: list[str], custom: list[str] | None
) -> Any:
    job = ExportJob("t", segment.id, "prefix", str(tmp_path / f"{len(list(tmp_path.iterdir()))}.zip"), NOW)
    app._build_export(job, segment, list(fields), custom)
    return job


def members(job: Any) -> list[tuple[str, bytes]]:
    assert not job.failed and job.built_at is not None
    with zipfile.ZipFile(job.path) as archive:
        return [(name, archive.read(name)) for name in archive.namelist()]


def as_members(lines: list[bytes]) -> list[tuple[str, bytes]]:
    chunks = [lines[i : i + USERS_PER_EXPORT_FILE] for i in range(0, len(lines), USERS_PER_EXPORT_FILE)]
    return [(f"prefix/{n}.txt", b"".join(chunk)) for n, chunk in enumerate(chunks, 1)]


def changed_world() -> tuple[BrazeWorld, BrazeApp]:
    """A seeded world, then changed the ways the API changes it."""
    world = seed_braze_world(N_USERS, 11, today=TODAY)
    app = BrazeApp(world, keys={"key": None}, clock=lambda: NOW)
    seeds = world.users.seeds
    known = [s for s in range(N_USERS) if seeds.head(s).known]
    rng = random.Random(5)
    for slot in rng.sample(known, 40):  # stored: renamed, a new attribute, some unsubscribed
        ext = seeds.external_id(slot, seeds.head(slot))
        change = {
            "external_id": ext,
            "first_name": "Renamed",
            "tier": "gold",
            "email_subscribe": "unsubscribed",
        }
        if slot % 2:
            del change["email_subscribe"]
        app._apply_attribute_object(change, NOW)
    for slot in rng.sample(range(N_USERS), 30):
        world.users.delete(slot)
    for index in range(12):  # created after seeding, so past the seeded slots
        app._apply_attribute_object({"external_id": f"new-{index}", "first_name": "New", "vip": True}, NOW)
    world.users.delete(world.users.slot_of_external_id("new-3") or -1)
    for slot in rng.sample(known, 25):  # events on users that are not stored
        ext = seeds.external_id(slot, seeds.head(slot))
        if world.users.slot_of_external_id(ext or "") is None:
            continue
        app._apply_event_object({"external_id": ext, "name": "app_open", "time": "2025-03-01T10:00:00Z"}, NOW)
        app._apply_purchase_object(
            {
                "external_id": ext,
                "product_id": "p-1",
                "currency": "EUR",
                "price": 3,
                "time": "2025-03-02T10:00:00Z",
            },
            NOW,
        )
    small = next(s for s in world.segments.values() if s.rule == "listed")
    members_now = sorted(small.members)
    small.removed = set(members_now[:3])
    small.added = {"new-1", "new-3", seeds.external_id(known[7], seeds.head(known[7])) or ""}
    everyone = next(s for s in world.segments.values() if s.rule == "all")
    everyone.removed = {seeds.external_id(known[9], seeds.head(known[9])) or ""}
    return world, app


@pytest.fixture(scope="module")
def changed() -> tuple[BrazeWorld, BrazeApp]:
    return changed_world()


BENCH_FIELDS = [
    "external_id", "braze_id", "email", "phone", "email_subscribe", "first_name", "last_name",
    "total_revenue", "push_subscribe", "custom_attributes",
]  # fmt: skip
CASES = [
    ("all", BENCH_FIELDS, None),
    ("engaged", sorted(EXPORT_FIELDS), None),
    (
        "vip",
        ["email", "dob", "gender", "custom_attributes"],
        ["signup_date", "nope", "vip", "loyalty_points"],
    ),
    ("dormant", ["braze_id", "created_at", "custom_events", "custom_attributes"], ["address"]),
    ("listed", ["first_name", "external_id", "purchases", "home_city"], None),
]


def segment_of(world: BrazeWorld, rule: str) -> SegmentDef:
    return next(s for s in world.segments.values() if s.rule == rule)


@pytest.mark.parametrize(("rule", "fields", "custom"), CASES, ids=[c[0] for c in CASES])
def test_build_in_this_thread_matches_the_original_build(
    changed: tuple[BrazeWorld, BrazeApp],
    tmp_path: Path,
    rule: str,
    fields: list[str],
    custom: list[str] | None,
) -> None:
    world, app = changed
    app.export_processes = 0
    segment = segment_of(world, rule)
    expected = reference_lines(world, segment, fields, custom)
    assert len(expected) > (20 if rule == "listed" else 500)
    got = members(build(app, tmp_path, segment, fields, custom))
    assert [name for name, _ in got] == [name for name, _ in as_members(expected)]
    assert b"".join(data for _, data in got).splitlines(keepends=True) == expected


def test_the_changes_reach_the_export(changed: tuple[BrazeWorld, BrazeApp], tmp_path: Path) -> None:
    """The reference itself sees the changes, so the comparisons above do cover them."""
    world, app = changed
    app.export_processes = 0
    fields = ["external_id", "first_name", "custom_events", "purchases", "custom_attributes"]
    lines = [orjson.loads(line) for line in reference_lines(world, segment_of(world, "all"), fields, None)]
    assert sum(u.get("first_name") == "Renamed" for u in lines) >= 35
    assert sum(u.get("custom_attributes", {}).get("tier") == "gold" for u in lines) >= 35
    assert sum("custom_events" in u and "purchases" in u for u in lines) >= 20
    assert sum(u.get("first_name") == "New" for u in lines) == 11
    assert len(lines) == len(world.users) - 1  # one user removed from the segment by an override
    assert len(world.users) == N_USERS - 30 + 11
    got = members(build(app, tmp_path, segment_of(world, "all"), fields, None))
    assert [orjson.loads(x) for _, data in got for x in data.splitlines()] == lines


@pytest.fixture
def spy() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The worker processes started while the test runs."""
    started: list[subprocess.Popen[bytes]] = []
    real = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = real(*args, **kwargs)
        started.append(proc)
        return proc

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segment_export.subprocess, "Popen", popen)
        yield started


def test_build_in_worker_processes_matches_the_original_build(
    changed: tuple[BrazeWorld, BrazeApp],
    tmp_path: Path,
    spy: list[subprocess.Popen[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, app = changed
    app.export_processes, app.export_processes_min_users = 2, 0
    for rule, fields, custom in CASES[:3]:
        segment = segment_of(world, rule)
        got = members(build(app, tmp_path, segment, fields, custom))
        assert got == as_members(reference_lines(world, segment, fields, custom))
    assert len(spy) == 6  # two per build
    # And none fell back to this thread: the lines did come from the workers.
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert all(proc.returncode == 0 for proc in spy)  # each stopped at the end of its build


def test_workers_that_die_leave_the_rest_to_this_thread(
    changed: tuple[BrazeWorld, BrazeApp],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spy: list[subprocess.Popen[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, app = changed
    app.export_processes, app.export_processes_min_users = 2, 0
    # Workers that answer nothing and exit, as a killed worker would.
    monkeypatch.setattr(segment_export, "_WORKER_CODE", "import sys; sys.stdin.buffer.read(1); sys.exit(3)")
    segment = segment_of(world, "all")
    got = members(build(app, tmp_path, segment, BENCH_FIELDS, None))
    assert got == as_members(reference_lines(world, segment, BENCH_FIELDS, None))
    assert [proc.returncode for proc in spy] == [3, 3]
    assert any("in-process" in record.getMessage() for record in caplog.records)


def test_workers_that_cannot_start_leave_everything_to_this_thread(
    changed: tuple[BrazeWorld, BrazeApp],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, app = changed
    app.export_processes, app.export_processes_min_users = 2, 0
    monkeypatch.setattr(segment_export.sys, "executable", str(tmp_path / "no-such-python"))
    segment = segment_of(world, "vip")
    got = members(build(app, tmp_path, segment, ["external_id"], None))
    assert got == as_members(reference_lines(world, segment, ["external_id"], None))
    assert any("could not start" in record.getMessage() for record in caplog.records)


def test_a_worker_exits_when_its_input_ends(
    changed: tuple[BrazeWorld, BrazeApp], spy: list[subprocess.Popen[bytes]]
) -> None:
    """What a worker sees when its app dies, however it dies: its input pipe closes."""
    world, _ = changed
    seeds = world.users.seeds
    spec = segment_export.SeededExport(
        seeds.seed, seeds.n, seeds.today, segment_of(world, "all"), ("email",), None
    )
    workers = segment_export.ExportWorkers(spec, 1)
    try:
        [(start, stop, slots, lines)] = list(workers.draw([(100, 110)]))
        assert (start, stop, slots) == (100, 110, list(range(100, 110)))
        assert lines == segment_export.SeededLines(seeds, spec).lines(100, 110)[1]
        [proc] = spy
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        workers.close()


def test_a_closing_app_stops_its_build_and_leaves_no_file_and_no_worker(
    changed: tuple[BrazeWorld, BrazeApp], tmp_path: Path, spy: list[subprocess.Popen[bytes]]
) -> None:
    world, app = changed
    app.export_processes, app.export_processes_min_users = 2, 0
    app._closing.set()  # as close() does while a build runs
    try:
        job = build(app, tmp_path, segment_of(world, "all"), BENCH_FIELDS, None)
    finally:
        app._closing.clear()
    assert job.failed and job.built_at is None
    assert list(tmp_path.iterdir()) == []  # neither the archive nor its partial file
    assert len(spy) == 2
    assert all(proc.returncode is not None for proc in spy)  # stopped and reaped
    again = build(app, tmp_path, segment_of(world, "vip"), ["external_id"], None)
    assert not again.failed  # the workers were handed back


def test_only_one_build_at_a_time_has_workers(changed: tuple[BrazeWorld, BrazeApp]) -> None:
    _, app = changed
    app.export_processes, app.export_processes_min_users = 2, 1000
    assert app._export_processes(999) == 0  # a small world is drawn in this thread
    assert app._export_processes(1000) == 2
    assert app._export_processes(1000) == 0  # while the first build holds them
    app._export_workers_free.release()
    assert app._export_processes(1000) == 2
    app._export_workers_free.release()


# ---------------------------------------------------------------------------- time formats
@given(st.floats(min_value=0, max_value=7_000_000_000, allow_nan=False))
def test_utc_text_is_what_datetime_prints(ts: float) -> None:
    assert utc_text(ts) == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert utc_text(ts, "T") == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert export_time(ts) == reference_export_time(ts)


@pytest.mark.parametrize("ts", [0.0, 86_399.9999995, 86_399.9999994, 1_700_000_000.9999995, 1_709_251_199.5])
def test_utc_text_rounds_to_the_microsecond_like_datetime(ts: float) -> None:
    assert utc_text(ts) == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert export_time(ts) == reference_export_time(ts)


def test_every_seeded_profile_is_the_original_one() -> None:
    seeds = UserSeeds(3, 4000, TODAY)
    # Compared as JSON: the same keys in the same order, too.
    assert [orjson.dumps(seeds.profile(slot)) for slot in range(seeds.n)] == [
        orjson.dumps(reference_profile(seeds, slot)) for slot in range(seeds.n)
    ]
