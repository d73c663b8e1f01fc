"""Braze segments mirrored into Brevo lists, against the sandbox over loopback."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tajo_braze.connector import BrazeConnector
from tajo_braze.errors import Interrupted
from tajo_braze.mapping import CompiledMapping
from tajo_braze.models import BrazeUser, ContactPayload, Rejection
from tajo_braze.sandbox import Sandbox
from tajo_braze.sandbox.seed import segment_size_on
from tajo_braze.sync import segments as segments_sync
from tajo_braze.sync import users as users_sync

from .conftest import (
    admin_get,
    admin_post,
    all_braze_users,
    all_brevo_contacts,
    brevo_end_state,
    config_for,
    env_for,
)
from .processes import sync_process, wait_for

EXPORT = "braze POST /users/export/segment"
ADD = "brevo POST /contacts/lists/{list_id}/contacts/add"
REMOVE = "brevo POST /contacts/lists/{list_id}/contacts/remove"
CREATE_LIST = "brevo POST /contacts/lists"
SERIES = "braze GET /segments/data_series"

MakeMirror = Callable[..., BrazeConnector]


# ------------------------------------------------------------------ building blocks
def mirror_config(sandbox: Sandbox, state_dir: Path, **braze: Any) -> dict[str, Any]:
    config = config_for(sandbox, state_dir, **braze.pop("sync", {}))
    config["connectors"]["braze"].update(braze)
    return config


@pytest.fixture
def make_mirror(tmp_path: Path) -> Iterator[MakeMirror]:
    made: list[BrazeConnector] = []

    def make(sandbox: Sandbox, state_dir: Path | None = None, **braze: Any) -> BrazeConnector:
        clock = braze.pop("clock", time.time)
        connector = BrazeConnector(
            mirror_config(sandbox, state_dir or tmp_path, **braze),
            env=env_for(sandbox),
            log_stream=io.StringIO(),
            clock=clock,
        )
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


def segment_id(sandbox: Sandbox, name: str) -> str:
    names = admin_get(sandbox, "braze")["segments"]
    return next(sid for sid, shown in names.items() if shown == name)


def payload_of(mapping: CompiledMapping, data: dict[str, Any]) -> ContactPayload | None:
    out = outcome_of(mapping, data)
    return out if isinstance(out, ContactPayload) else None


def outcome_of(mapping: CompiledMapping, data: dict[str, Any]) -> ContactPayload | Rejection:
    user = BrazeUser(
        data.get("external_id"), data.get("braze_id"), data.get("email"), data.get("phone"), data
    )
    return mapping.to_brevo(user)


def member_keys(sandbox: Sandbox, mapping: CompiledMapping, name: str) -> set[str]:
    """Identity keys of the segment's members (also of those Brevo cannot take), from the sandbox's own rule."""
    segment = sandbox.braze.world.segments[segment_id(sandbox, name)]
    return {outcome_of(mapping, u).key for u in all_braze_users(sandbox) if segment.contains(u)}


def contact_key(contact: dict[str, Any]) -> str:
    ext = contact["attributes"].get("EXT_ID")
    if ext:
        return f"ext:{ext}"
    return (
        f"email:{contact['email'].lower()}"
        if contact.get("email")
        else f"sms:{contact['attributes'].get('SMS')}"
    )


def brevo_keys(sandbox: Sandbox) -> set[str]:
    return {contact_key(c) for c in all_brevo_contacts(sandbox)}


def list_keys(sandbox: Sandbox, list_id: int) -> set[str]:
    return {contact_key(c) for c in all_brevo_contacts(sandbox) if list_id in (c.get("listIds") or [])}


def brevo_lists(sandbox: Sandbox) -> dict[str, int]:
    return {lst.name: lst.id for lst in sandbox.brevo.world.lists.values()}


def mirrorable(sandbox: Sandbox, connector: BrazeConnector, name: str) -> set[str]:
    """Members Brevo holds that the connector wrote, or that an ext_id names (the users path may refuse
    a user whose contact exists in Brevo all the same)."""
    members = member_keys(sandbox, connector.mapping, name)
    written = connector.state.get_fingerprints(users_sync.FINGERPRINTS, sorted(members))
    return {k for k in members & brevo_keys(sandbox) if k in written or k.startswith("ext:")}


def expect_mirrored(sandbox: Sandbox, connector: BrazeConnector, name: str, list_id: int) -> set[str]:
    expected = mirrorable(sandbox, connector, name)
    assert list_keys(sandbox, list_id) == expected
    return expected


def mirrored_list(connector: BrazeConnector, sandbox: Sandbox, name: str) -> int:
    record = connector.state.get_value(f"{segments_sync.CREATED_LIST_PREFIX}{segment_id(sandbox, name)}")
    assert isinstance(record, dict)
    return int(record["list_id"])


def holdable_outsiders(sandbox: Sandbox, connector: BrazeConnector, name: str, count: int) -> list[str]:
    """external_ids of users outside the segment whose contact exists in Brevo, outside the segment's list."""
    segment = sandbox.braze.world.segments[segment_id(sandbox, name)]
    existing = brevo_keys(sandbox)
    record = connector.state.get_value(f"{segments_sync.CREATED_LIST_PREFIX}{segment.id}")
    listed = list_keys(sandbox, record["list_id"]) if isinstance(record, dict) else set()
    found = []
    for user in all_braze_users(sandbox):
        payload = payload_of(connector.mapping, user)
        outside = payload and user.get("external_id") and not segment.contains(user)
        if outside and payload and payload.key in existing and payload.key not in listed:
            found.append(user["external_id"])
    return found[:count]


def new_client(sandbox: Sandbox) -> None:
    """A new client knows nothing of the calls another one made in the current second (it learns the
    budget from the first answer's headers); people start one seconds apart, these tests at once, so
    the rate-limit windows start afresh."""
    admin_post(sandbox, "limits/reset", {})


def segments_result(summary: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in summary["resources"] if r["resource"] == "segments")


# ------------------------------------------------------------------ membership
def test_joins_and_leaves_are_mirrored_exactly_after_the_next_run(
    make_world: Callable[..., Sandbox], make_mirror: MakeMirror
) -> None:
    sandbox = make_world()
    connector = make_mirror(sandbox, mirror_segments=["small_test", "vip"])
    connector.install()
    connector.sync(type="full", resources=["users"])
    first = segments_result(connector.sync(resources=["segments"]))
    small_list, vip_list = (
        mirrored_list(connector, sandbox, "small_test"),
        mirrored_list(connector, sandbox, "vip"),
    )
    small = expect_mirrored(sandbox, connector, "small_test", small_list)
    vip = expect_mirrored(sandbox, connector, "vip", vip_list)
    assert first["created"] == len(small) + len(vip) and first["updated"] == 0

    small_id = segment_id(sandbox, "small_test")
    joiners = holdable_outsiders(sandbox, connector, "small_test", 6)
    leavers = sorted(k[4:] for k in small if k.startswith("ext:"))[:4]
    # A brand-new Braze user joins too: Brevo does not hold it yet, so the users path creates it first.
    admin_post(
        sandbox,
        "braze/users",
        {"users": [{"external_id": "newcomer-1", "email": "newcomer.one@example.com", "first_name": "Nova"}]},
    )
    admin_post(
        sandbox, f"braze/segments/{small_id}/members", {"add": [*joiners, "newcomer-1"], "remove": leavers}
    )

    second = segments_result(connector.sync(resources=["segments"]))
    after = expect_mirrored(sandbox, connector, "small_test", small_list)
    assert after == (small - {f"ext:{e}" for e in leavers}) | {f"ext:{e}" for e in joiners} | {
        "ext:newcomer-1"
    }
    assert expect_mirrored(sandbox, connector, "vip", vip_list) == vip
    assert second["created"] == 7 and second["updated"] == 4
    newcomer = connector.context().brevo.get_contact("newcomer-1", identifier_type="ext_id")
    assert newcomer is not None and newcomer.attributes.get("FIRSTNAME") == "Nova"
    users_list = connector.state.get_value(users_sync.USERS_LIST)
    assert set(newcomer.list_ids) == {users_list, small_list}
    for leaver in leavers:  # leaving a segment leaves the list, never Brevo
        contact = connector.context().brevo.get_contact(leaver, identifier_type="ext_id")
        assert contact is not None and small_list not in contact.list_ids
    assert connector.state.count_members(f"segment:{small_id}") == len(after)

    third = segments_result(connector.sync(resources=["segments"]))
    assert third["created"] == third["updated"] == 0 and third["unchanged"] == len(after) + len(vip)
    assert sandbox.violations() == []


def test_lists_are_created_once_and_a_renamed_segment_keeps_its_list(
    make_world: Callable[..., Sandbox], make_mirror: MakeMirror
) -> None:
    sandbox = make_world()
    connector = make_mirror(sandbox, mirror_segments="all", sync={"export_concurrency": 2})
    connector.install()
    connector.sync(resources=["segments"])  # no users sync before: every contact comes through the users path
    created = sandbox.request_counts().get(CREATE_LIST, 0)
    names = admin_get(sandbox, "braze")["segments"]
    lists = brevo_lists(sandbox)
    assert {f"braze_{name}" for name in names.values()} <= lists.keys()
    assert created == len(names) + 1  # one list per segment, plus the users list
    for name in names.values():
        expect_mirrored(sandbox, connector, name, lists[f"braze_{name}"])

    vip_id = segment_id(sandbox, "vip")
    admin_post(sandbox, f"braze/segments/{vip_id}/rename", {"name": "VIP customers"})
    joiner = holdable_outsiders(sandbox, connector, "VIP customers", 1)
    admin_post(sandbox, f"braze/segments/{vip_id}/members", {"add": joiner})
    summary = segments_result(connector.sync(resources=["segments"]))
    assert sandbox.request_counts().get(CREATE_LIST, 0) == created
    assert "braze_VIP customers" not in brevo_lists(sandbox)
    assert f"ext:{joiner[0]}" in expect_mirrored(sandbox, connector, "VIP customers", lists["braze_vip"])
    assert summary["created"] == 1 and summary["updated"] == 0
    assert sandbox.violations() == []


def test_a_configured_list_keeps_members_it_had_and_loses_only_those_mirrored_out(
    make_world: Callable[..., Sandbox], make_mirror: MakeMirror
) -> None:
    sandbox = make_world()
    customers = brevo_lists(sandbox)["Customers"]
    before = list_contact_ids(sandbox, customers)
    connector = make_mirror(sandbox, lists={"engaged_users": customers})
    connector.install()
    connector.sync(type="full", resources=["users"])
    result = segments_result(connector.sync(resources=["segments"]))
    ids = contact_ids_by_key(sandbox)
    engaged = {ids[k] for k in mirrorable(sandbox, connector, "engaged_users")}
    assert (
        list_contact_ids(sandbox, customers) == engaged | before
    )  # nobody the marketer put there is removed
    already = engaged & before
    assert already, "the seeded world has engaged users in Customers already"
    assert result["unchanged"] == len(already) and result["created"] == len(engaged - before)

    by_id = {c["id"]: c for c in all_brevo_contacts(sandbox)}
    leavers = sorted(
        by_id[i]["attributes"]["EXT_ID"] for i in already if by_id[i]["attributes"].get("EXT_ID")
    )[:2]
    assert len(leavers) == 2
    admin_post(sandbox, f"braze/segments/{segment_id(sandbox, 'engaged_users')}/members", {"remove": leavers})
    second = segments_result(connector.sync(resources=["segments"]))
    left = {ids[f"ext:{e}"] for e in leavers}
    # Mirrored members who leave the segment leave the list; the list's other contacts stay.
    assert list_contact_ids(sandbox, customers) == (engaged | before) - left
    assert second["updated"] == 2 and second["created"] == 0
    assert sandbox.violations() == []


def list_contact_ids(sandbox: Sandbox, list_id: int) -> set[int]:
    return {c["id"] for c in all_brevo_contacts(sandbox) if list_id in (c.get("listIds") or [])}


def contact_ids_by_key(sandbox: Sandbox) -> dict[str, int]:
    return {
        contact_key(c): c["id"]
        for c in all_brevo_contacts(sandbox)
        if c["attributes"].get("EXT_ID") or c.get("email")
    }


def test_a_lost_membership_state_converges_without_adding_anyone_twice(
    make_world: Callable[..., Sandbox], make_mirror: MakeMirror, tmp_path: Path
) -> None:
    sandbox = make_world()
    first = make_mirror(sandbox, tmp_path / "first", mirror_segments=["engaged_users"])
    first.install()
    first.sync(type="full", resources=["users", "segments"])
    engaged_list = mirrored_list(first, sandbox, "engaged_users")
    mirrored = expect_mirrored(sandbox, first, "engaged_users", engaged_list)
    lists_created = sandbox.request_counts().get(CREATE_LIST, 0)

    # A second state file knows nothing: it adopts the list by name, and every add answers "already in list".
    second = make_mirror(sandbox, tmp_path / "second", mirror_segments=["engaged_users"])
    new_client(sandbox)
    second.sync(type="full", resources=["users"])
    sandbox.reset_counters()
    result = segments_result(second.sync(resources=["segments"]))
    assert sandbox.request_counts().get(CREATE_LIST, 0) == 0 and lists_created >= 1
    assert mirrored_list(second, sandbox, "engaged_users") == engaged_list
    assert result["created"] == 0 and result["unchanged"] == len(mirrored) and result["skipped"] == 0
    assert second.state.count_members(f"segment:{segment_id(sandbox, 'engaged_users')}") == len(mirrored)
    # Past a few single checks the list is read once instead of one contact at a time.
    assert (
        sandbox.request_counts().get("brevo GET /contacts/{identifier}", 0) <= segments_sync.DIRECT_CHECKS_MAX
    )
    assert sandbox.request_counts().get("brevo GET /contacts/lists/{list_id}/contacts", 0) >= 1
    assert list_keys(sandbox, engaged_list) == mirrored
    assert sandbox.violations() == []


def test_a_member_known_only_by_phone_joins_and_leaves_by_contact_id(
    make_world: Callable[..., Sandbox], make_mirror: MakeMirror
) -> None:
    sandbox = make_world(seed=2)  # this world has one Braze user with a phone and nothing else
    connector = make_mirror(sandbox, mirror_segments=["All Users"])
    connector.install()
    connector.sync(type="full", resources=["users", "segments"])
    everyone = mirrored_list(connector, sandbox, "All Users")
    by_phone = {k for k in expect_mirrored(sandbox, connector, "All Users", everyone) if k.startswith("sms:")}
    assert len(by_phone) == 1

    # A contact the state remembers as mirrored, known only by its phone, that Braze no longer has.
    gone = admin_post(
        sandbox, "brevo/contacts", {"attributes": {"SMS": "+33612345670"}, "listIds": [everyone]}
    )
    members = f"segment:{segment_id(sandbox, 'All Users')}"
    connector.state.add_members(members, ["sms:+33612345670"])
    result = segments_result(connector.sync(resources=["segments"]))
    assert result["updated"] == 1
    assert (
        everyone
        not in connector.context().brevo.get_contact(str(gone["id"]), identifier_type="contact_id").list_ids
    )
    assert "sms:+33612345670" not in set(connector.state.iter_members(members))
    assert by_phone <= list_keys(sandbox, everyone)
    assert sandbox.violations() == []


# ------------------------------------------------------------------ dry run
def test_dry_run_shows_adds_and_removes_per_list_and_writes_nothing(
    make_world: Callable[..., Sandbox], make_mirror: MakeMirror
) -> None:
    sandbox = make_world()
    connector = make_mirror(sandbox, mirror_segments=["small_test", "dormant_users"])
    connector.install()
    connector.sync(type="full", resources=["users", "segments"])
    small_id = segment_id(sandbox, "small_test")
    small = mirrored_list(connector, sandbox, "small_test")
    members = expect_mirrored(sandbox, connector, "small_test", small)
    joiners = holdable_outsiders(sandbox, connector, "small_test", 3)
    leavers = sorted(k[4:] for k in members if k.startswith("ext:"))[:2]
    admin_post(sandbox, f"braze/segments/{small_id}/members", {"add": joiners, "remove": leavers})

    before = brevo_end_state(sandbox)
    counts = sandbox.request_counts()
    summary = connector.sync(resources=["segments"], dry_run=True)
    plan = segments_result(summary)["plan"]
    by_segment = {p["segment"]: p for p in plan["lists"]}
    assert by_segment["small_test"]["list_id"] == small
    assert by_segment["small_test"]["add"] == 3 and by_segment["small_test"]["remove"] == 2
    assert sorted(by_segment["small_test"]["add_sample"]) == sorted(f"ext:{e}" for e in joiners)
    assert sorted(by_segment["small_test"]["remove_sample"]) == sorted(f"ext:{e}" for e in leavers)
    assert by_segment["small_test"]["unchanged"] == len(members) - 2
    assert by_segment["dormant_users"]["add"] == by_segment["dormant_users"]["remove"] == 0
    assert plan["brevo_calls"]["POST /contacts/lists/{id}/contacts/add"] == 1
    assert brevo_end_state(sandbox) == before
    after = sandbox.request_counts()
    for write in (ADD, REMOVE, CREATE_LIST, "brevo POST /contacts/import"):
        assert after.get(write, 0) == counts.get(write, 0), write
    assert connector.state.count_members(f"segment:{small_id}") == len(members)
    assert sandbox.violations() == []


def test_dry_run_of_a_first_mirror_plans_the_list_and_the_contacts_to_create(
    make_world: Callable[..., Sandbox], make_mirror: MakeMirror
) -> None:
    sandbox = make_world()
    connector = make_mirror(sandbox, mirror_segments=["vip"])
    connector.install()
    lists_before = brevo_lists(sandbox)
    plan = segments_result(connector.sync(resources=["segments"], dry_run=True))["plan"]["lists"][0]
    assert plan["create_list"] is True and plan["list_id"] is None and plan["list_name"] == "braze_vip"
    # With nothing mirrored yet, every member Brevo can take is created first and joins the list.
    assert plan["add"] == plan["create_contacts_first"] > 0
    assert plan["add"] + plan["add_if_in_brevo"] + plan["cannot_be_held"] >= len(
        member_keys(sandbox, connector.mapping, "vip")
    )
    assert brevo_lists(sandbox) == lists_before
    assert sandbox.request_counts().get("brevo POST /contacts/import", 0) == 0
    assert sandbox.violations() == []


# ------------------------------------------------------------------ exports
def test_the_users_syncs_fresh_export_of_a_mirrored_segment_is_reused(
    make_world: Callable[..., Sandbox], make_mirror: MakeMirror
) -> None:
    sandbox = make_world()
    connector = make_mirror(sandbox, mirror_segments=["All Users", "vip"])
    connector.install()
    connector.sync(type="full", resources=["users"])
    all_users = segment_id(sandbox, "All Users")
    fields = users_sync.UsersSync(connector.context()).export_fields()
    job = connector.context().braze.export_segment(all_users, fields_to_export=fields)
    # What the users sync leaves behind when its export is complete (see users:last_export).
    connector.state.set_value(
        segments_sync.USERS_LAST_EXPORT,
        {
            "segment_id": all_users,
            "fields": fields,
            "url": job.url,
            "object_prefix": job.object_prefix,
            "requested_at": time.time(),
            "path": "",
        },
    )
    exports = sandbox.request_counts().get(EXPORT, 0)
    result = segments_result(connector.sync(resources=["segments"]))
    assert sandbox.request_counts().get(EXPORT, 0) == exports + 1  # vip only
    assert any("reused the users sync's export" in note for note in result["notes"])
    expect_mirrored(sandbox, connector, "All Users", mirrored_list(connector, sandbox, "All Users"))
    assert sandbox.violations() == []


def config_file(sandbox: Sandbox, state_dir: Path, **braze: Any) -> Path:
    path = state_dir / "tajo.yaml"
    path.write_text(yaml.safe_dump(mirror_config(sandbox, state_dir, **braze)), encoding="utf-8")
    return path


def mirror_process(config: Path, sandbox: Sandbox) -> subprocess.Popen[str]:
    new_client(sandbox)
    return sync_process(config, sandbox, resources="segments", batch_size=20)


def prepared_world(make_world: Callable[..., Sandbox], make_mirror: MakeMirror, state_dir: Path) -> Sandbox:
    """Users synced and segments mirrored once, then memberships changed: the next run adds and removes."""
    sandbox = make_world(seed=4)
    state_dir.mkdir()
    connector = make_mirror(sandbox, state_dir, mirror_segments=["engaged_users", "dormant_users"])
    connector.install()
    connector.sync(type="full", resources=["users", "segments"])
    engaged, dormant = segment_id(sandbox, "engaged_users"), segment_id(sandbox, "dormant_users")
    # Swap most members between the two segments: many list calls of both kinds.
    engaged_members = sorted(
        k[4:] for k in member_keys(sandbox, connector.mapping, "engaged_users") if k[:4] == "ext:"
    )
    dormant_members = sorted(
        k[4:] for k in member_keys(sandbox, connector.mapping, "dormant_users") if k[:4] == "ext:"
    )
    admin_post(
        sandbox,
        f"braze/segments/{engaged}/members",
        {"add": dormant_members[:80], "remove": engaged_members[:120]},
    )
    admin_post(
        sandbox,
        f"braze/segments/{dormant}/members",
        {"add": engaged_members[:120], "remove": dormant_members[:60]},
    )
    connector.close()
    new_client(sandbox)
    return sandbox


def test_kill_and_resume_mid_mirror_gives_the_same_end_state(
    make_world: Callable[..., Sandbox], make_mirror: MakeMirror, tmp_path: Path
) -> None:
    mirrored = ["engaged_users", "dormant_users"]
    clean = prepared_world(make_world, make_mirror, tmp_path / "clean")
    clean_before = clean.request_counts()
    reference = mirror_process(config_file(clean, tmp_path / "clean", mirror_segments=mirrored), clean)
    _, err = reference.communicate(timeout=120)
    assert reference.returncode in (0, 1), err
    calls = {e: clean.request_counts().get(e, 0) - clean_before.get(e, 0) for e in (ADD, REMOVE)}
    assert calls[ADD] + calls[REMOVE] >= 16  # enough list calls for every kill point to land mid-run

    world = prepared_world(make_world, make_mirror, tmp_path / "killed")
    config = config_file(world, tmp_path / "killed", mirror_segments=mirrored)
    base = world.request_counts()

    def progress(endpoints: tuple[str, ...]) -> int:
        counts = world.request_counts()
        return sum(counts.get(e, 0) - base.get(e, 0) for e in endpoints)

    # Killed right after the first export request, then after 3, 8 and 13 list calls (adds and
    # removes together) counted over all the killed processes.
    kill_points = [((EXPORT,), 1), ((ADD, REMOVE), 3), ((ADD, REMOVE), 8), ((ADD, REMOVE), 13)]
    for endpoints, count in kill_points:
        process = mirror_process(config, world)
        wait_for(lambda endpoints=endpoints, count=count: progress(endpoints) >= count)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL

    final = mirror_process(config, world)
    out, err = final.communicate(timeout=120)
    assert final.returncode in (0, 1), err
    summary = json.loads(out)
    assert summary["status"] in ("ok", "partial")
    assert brevo_end_state(world) == brevo_end_state(clean)
    # Only calls in flight at a kill are sent twice; never a whole list again.
    for endpoint in (ADD, REMOVE):
        sent = world.request_counts().get(endpoint, 0) - base.get(endpoint, 0)
        assert sent <= calls[endpoint] + len(kill_points), endpoint
    assert world.violations() == [] and clean.violations() == []


def test_an_interrupted_mirror_resumes_its_segment_without_exporting_it_again(
    make_world: Callable[..., Sandbox],
    make_mirror: MakeMirror,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = prepared_world(make_world, make_mirror, tmp_path / "state")
    connector = make_mirror(sandbox, tmp_path / "state", mirror_segments=["engaged_users", "dormant_users"])
    sent = {"calls": 0}
    real_call = segments_sync.ListApplier._call

    def stop_after_two(self: Any, *args: Any) -> Any:
        sent["calls"] += 1
        if sent["calls"] == 2:
            connector.stop.set()  # what SIGINT does: the run stops at its next safe point
        return real_call(self, *args)

    monkeypatch.setattr(segments_sync.ListApplier, "_call", stop_after_two)
    exports = sandbox.request_counts().get(EXPORT, 0)
    with pytest.raises(Interrupted):
        connector.sync(resources=["segments"], batch_size=20)
    engaged = segment_id(sandbox, "engaged_users")
    checkpoint = connector.state.get_value(f"{segments_sync.CHECKPOINT_PREFIX}{engaged}")
    assert checkpoint["phase"] == "applying"
    assert sandbox.request_counts().get(EXPORT, 0) == exports + 1

    monkeypatch.undo()
    connector.stop.clear()
    result = segments_result(connector.sync(resources=["segments"], batch_size=20))
    assert any("'engaged_users': resumed its export" in note for note in result["notes"])
    assert sandbox.request_counts().get(EXPORT, 0) == exports + 2  # dormant_users only
    assert connector.state.get_value(f"{segments_sync.CHECKPOINT_PREFIX}{engaged}") is None
    for name in ("engaged_users", "dormant_users"):
        expect_mirrored(sandbox, connector, name, mirrored_list(connector, sandbox, name))
    assert sandbox.violations() == []


# ------------------------------------------------------------------ segment sizes
def test_segment_sizes_are_stored_per_day_and_read_incrementally(
    make_world: Callable[..., Sandbox], make_mirror: MakeMirror
) -> None:
    shift = {"days": 0.0}

    def clock() -> float:  # real time moves (rate-limit windows), days are moved by the test
        return time.time() + shift["days"] * 86_400

    sandbox = make_world(clock=clock)
    connector = make_mirror(sandbox, clock=clock)
    connector.sync(resources=["segments"])
    world = sandbox.braze.world
    ids = list(world.segments)
    assert sandbox.request_counts().get(SERIES, 0) == len(ids)
    rows = connector.state.query_metrics(kind="segment")
    assert len(rows) == len(ids) * segments_sync.FIRST_BACKFILL_DAYS
    today = world.today.isoformat()
    for row in rows:
        segment = world.segments[row.object_id]
        assert row.metric == "size" and row.channel == row.variant == row.step == ""
        assert row.value == segment_size_on(world, segment, date.fromisoformat(row.day))
    assert {r.day for r in rows if r.day == today} == {today}
    assert connector.status()["cursors"]["segments/size_series"]["last_day"] == dict.fromkeys(ids, today)

    # Incremental: three days later only the last stored day and the new ones are read, so a stored
    # point removed behind the cursor stays away.
    first_day = min(r.day for r in rows)
    shift["days"] = 3
    dropped = next(r for r in rows if r.day == first_day)
    _delete_metric(connector, dropped.object_id, dropped.day)
    connector.sync(resources=["segments"])
    after = connector.state.query_metrics(kind="segment")
    assert len(after) == len(rows) - 1 + 3 * len(ids)
    new_today = (world.today + timedelta(days=3)).isoformat()
    assert connector.status()["cursors"]["segments/size_series"]["last_day"] == dict.fromkeys(ids, new_today)
    assert sandbox.request_counts().get(SERIES, 0) == 2 * len(ids)
    assert sandbox.violations() == []


def _delete_metric(connector: BrazeConnector, object_id: str, day: str) -> None:
    store = connector.state
    with store._writing("test") as connection:  # the store has no delete for metrics: reach in
        connection.execute(
            "DELETE FROM metrics WHERE kind = 'segment' AND object_id = ? AND day = ?", (object_id, day)
        )
