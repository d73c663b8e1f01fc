"""Brevo contacts -> Braze users against the sandbox over loopback."""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tajo_braze.clients.braze import BrazeClient
from tajo_braze.connector import BrazeConnector
from tajo_braze.consent import CONSENT_NAMESPACE
from tajo_braze.errors import Interrupted
from tajo_braze.sandbox import Sandbox
from tajo_braze.state import StateStore
from tajo_braze.sync import contacts
from tajo_braze.sync.contacts import DEAD_LETTERS, FIELDS, state_key

from .conftest import (
    FakeClock,
    TrackLog,
    admin_get,
    admin_post,
    all_braze_users,
    all_brevo_contacts,
    braze_end_state,
    braze_user,
    braze_user_by_alias,
    change_contact,
    contacts_with_braze_users,
    settled_world,
    write_config,
    writes_during,
)
from .processes import sync_process, wait_for

TRACK = "braze POST /users/track"
NEWSLETTER, CUSTOMERS = 2, 3  # the lists every seeded Brevo account has


# ------------------------------------------------------------------ changed contacts
def test_23_changed_contacts_update_exactly_those_users_with_only_the_changed_attribute(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector], track_log: TrackLog
) -> None:
    sandbox, connector = settled_world(sandboxes, connectors)
    chosen = contacts_with_braze_users(sandbox)[:23]
    assert len(chosen) == 23
    for i, contact in enumerate(chosen):
        change_contact(sandbox, contact["id"], {"attributes": {"FIRSTNAME": f"Renamed {i}"}})
    track_log.clear()

    summary = connector.sync(resources=["users"])
    reverse = summary["resources"][1]
    assert reverse["direction"] == "brevo_to_braze"
    assert reverse["updated"] == 23 and reverse["created"] == 0 and reverse["failed"] == 0
    objects = [obj for call in track_log for obj in call]
    assert len(track_log) == math.ceil(23 / 75)
    assert sorted(objects, key=lambda o: o["external_id"]) == sorted(
        (
            {"external_id": c["attributes"]["EXT_ID"], "first_name": f"Renamed {i}"}
            for i, c in enumerate(chosen)
        ),
        key=lambda o: o["external_id"],
    )
    for i, contact in enumerate(chosen):
        assert braze_user(sandbox, contact["attributes"]["EXT_ID"])["first_name"] == f"Renamed {i}"
    assert sandbox.violations() == []


@pytest.mark.parametrize(("objects_cap", "per_call"), [(None, 75), (50, 50)])
def test_track_calls_are_packed_densely(
    sandboxes: Callable[..., Sandbox],
    connectors: Callable[..., BrazeConnector],
    track_log: TrackLog,
    objects_cap: int | None,
    per_call: int,
) -> None:
    sandbox, connector = settled_world(
        sandboxes,
        connectors,
        world={"users": 300, "contacts": 200, "track_objects_cap": objects_cap},
        track_objects_cap=objects_cap,  # the contract's cap, told to the connector too
    )
    chosen = all_brevo_contacts(sandbox)[:160]
    for contact in chosen:
        change_contact(sandbox, contact["id"], {"attributes": {"LASTNAME": f"Packed{contact['id']}"}})
    track_log.clear()
    calls_before = sandbox.request_counts().get(TRACK, 0)

    connector.sync(resources=["users"], direction="brevo_to_braze")
    objects = sum(len(call) for call in track_log)
    assert objects == 160
    assert sandbox.request_counts().get(TRACK, 0) - calls_before == math.ceil(objects / per_call)
    assert max(len(call) for call in track_log) == per_call
    assert sandbox.violations() == []


def test_incremental_runs_read_only_what_changed_since_the_cursor(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector], clock: FakeClock
) -> None:
    sandbox, connector = settled_world(sandboxes, connectors)
    # The first run after the settle still re-reads the overlap (the writes of the last run).
    clock.sleep(3600)
    overlap = connector.sync(resources=["users"], direction="brevo_to_braze")["resources"][0]
    assert overlap["read"] > 0 and overlap["updated"] + overlap["created"] == 0
    clock.sleep(3600)  # well beyond the cursor's overlap
    quiet = connector.sync(resources=["users"], direction="brevo_to_braze")["resources"][0]
    assert quiet["read"] == 0
    clock.sleep(3600)
    for contact in contacts_with_braze_users(sandbox)[:3]:
        change_contact(sandbox, contact["id"], {"attributes": {"LASTNAME": "Later"}})
    changed = connector.sync(resources=["users"], direction="brevo_to_braze")["resources"][0]
    assert changed["read"] == 3 and changed["updated"] == 3
    # A full run reads everything again, and finds nothing else to write.
    full = connector.sync(type="full", resources=["users"], direction="brevo_to_braze")["resources"][0]
    assert full["read"] == len(all_brevo_contacts(sandbox)) and full["updated"] + full["created"] == 0
    assert sandbox.violations() == []


# ------------------------------------------------------------------ consent
def test_blocklisted_contacts_unsubscribe_in_braze_and_stale_subscribes_never_undo_it(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector]
) -> None:
    sandbox, connector = settled_world(sandboxes, connectors)
    chosen = [
        c
        for c in contacts_with_braze_users(sandbox)
        if not c["emailBlacklisted"]
        and braze_user(sandbox, c["attributes"]["EXT_ID"]).get("email_subscribe") != "unsubscribed"
    ][:5]
    assert len(chosen) == 5
    ids = [c["attributes"]["EXT_ID"] for c in chosen]
    for contact in chosen:
        change_contact(sandbox, contact["id"], {"emailBlacklisted": True})

    reverse = connector.sync(resources=["users"])["resources"][1]
    assert any("5 contact(s) unsubscribed in Braze" in note for note in reverse["notes"])
    for external_id in ids:
        assert braze_user(sandbox, external_id)["email_subscribe"] == "unsubscribed"
    stored = connector.state.get_field_values(CONSENT_NAMESPACE, [c["email"] for c in chosen])
    assert {v["state"] for v in stored.values()} == {"unsubscribed"} and len(stored) == 5

    # A stale "subscribed" from Brevo (two contacts) and from Braze (two other users).
    for contact in chosen[:2]:
        change_contact(sandbox, contact["id"], {"emailBlacklisted": False})
    admin_post(
        sandbox,
        "braze/users",
        {"users": [{"external_id": x, "email_subscribe": "subscribed"} for x in ids[2:4]]},
    )
    connector.sync(resources=["users"])
    connector.sync(resources=["users"])

    for external_id in ids[:2] + ids[4:]:
        assert braze_user(sandbox, external_id)["email_subscribe"] == "unsubscribed"
    contacts = {c["id"]: c for c in all_brevo_contacts(sandbox)}
    for contact in chosen[2:]:
        assert contacts[contact["id"]]["emailBlacklisted"] is True
    assert sandbox.violations() == []


def email_groups(sandbox: Sandbox) -> list[str]:
    groups = admin_get(sandbox, "braze/summary")["subscription_groups"]
    return sorted(gid for gid, group in groups.items() if group["channel"] == "email")


def test_blocklisted_contacts_leave_the_configured_email_subscription_groups_too(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector]
) -> None:
    sandbox = sandboxes(users=300, contacts=200)
    groups = email_groups(sandbox)
    assert len(groups) == 2
    connector = connectors(sandbox, direction="both", email_subscription_groups=groups[:1])
    connector.install()
    connector.sync(type="full", resources=["users"])
    chosen = [
        c
        for c in contacts_with_braze_users(sandbox)
        if not c["emailBlacklisted"]
        and braze_user(sandbox, c["attributes"]["EXT_ID"]).get("email_subscribe") != "unsubscribed"
    ][:3]
    assert len(chosen) == 3
    for contact in chosen:
        change_contact(sandbox, contact["id"], {"emailBlacklisted": True})

    connector.sync(resources=["users"])
    for contact in chosen:
        user = braze_user(sandbox, contact["attributes"]["EXT_ID"])
        assert user["email_subscribe"] == "unsubscribed"
        # Only the configured group follows the global state; the other one is left as it was.
        assert user["subscription_groups"].get(groups[0]) == "unsubscribed"
        assert groups[1] not in user["subscription_groups"]
    assert writes_during(sandbox, lambda: connector.sync(resources=["users"])) == {}
    assert sandbox.violations() == []


def test_a_newer_resubscribe_crosses_only_when_allowed(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector], clock: FakeClock
) -> None:
    sandbox, connector = settled_world(sandboxes, connectors, allow_resubscribe=True)
    contact = next(
        c
        for c in contacts_with_braze_users(sandbox)
        if not c["emailBlacklisted"]
        and braze_user(sandbox, c["attributes"]["EXT_ID"]).get("email_subscribe") != "unsubscribed"
    )
    external_id = contact["attributes"]["EXT_ID"]
    change_contact(sandbox, contact["id"], {"emailBlacklisted": True})
    connector.sync(resources=["users"])
    assert braze_user(sandbox, external_id)["email_subscribe"] == "unsubscribed"

    clock.sleep(3600)
    change_contact(sandbox, contact["id"], {"emailBlacklisted": False})  # the marketer re-subscribes, later
    reverse = connector.sync(resources=["users"])["resources"][1]
    assert any("re-subscribed" in note for note in reverse["notes"])
    assert braze_user(sandbox, external_id)["email_subscribe"] == "subscribed"
    assert sandbox.violations() == []


# ------------------------------------------------------------------ lists
def test_list_membership_lands_in_brevo_lists(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector], track_log: TrackLog
) -> None:
    sandbox, connector = settled_world(sandboxes, connectors)
    linked = contacts_with_braze_users(sandbox)
    joining = [c for c in linked if NEWSLETTER not in c["listIds"]][:4]
    leaving = [c for c in linked if CUSTOMERS in c["listIds"]][:2]
    assert len(joining) == 4 and len(leaving) == 2
    for contact in joining:
        change_contact(sandbox, contact["id"], {"listIds": [NEWSLETTER]})
    for contact in leaving:
        change_contact(sandbox, contact["id"], {"unlinkListIds": [CUSTOMERS]})
    track_log.clear()

    connector.sync(resources=["users"])
    for contact in joining:
        lists = braze_user(sandbox, contact["attributes"]["EXT_ID"])["custom_attributes"]["brevo_lists"]
        assert "Newsletter" in lists
    for contact in leaving:
        lists = braze_user(sandbox, contact["attributes"]["EXT_ID"])["custom_attributes"].get(
            "brevo_lists", []
        )
        assert "Customers" not in lists
    sent = [obj for call in track_log for obj in call]
    assert all(set(obj) == {"external_id", "brevo_lists"} for obj in sent)  # array operations only
    assert {"add": ["Newsletter"]} in [obj["brevo_lists"] for obj in sent]
    # The connector's own list (filled from the Braze segment) never comes back as an attribute.
    for user in all_braze_users(sandbox):
        assert "braze_all_users" not in (user.get("custom_attributes") or {}).get("brevo_lists", [])
    assert sandbox.violations() == []


# ------------------------------------------------------------------ partial errors
def test_partial_errors_are_dead_lettered_while_the_rest_apply(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector]
) -> None:
    sandbox, connector = settled_world(sandboxes, connectors)
    good = [
        admin_post(
            sandbox,
            "brevo/contacts",
            {"email": f"new.{i}@example.org", "attributes": {"FIRSTNAME": f"New{i}"}},
        )
        for i in range(5)
    ]
    # Brevo accepts consecutive dots in the local part; Braze refuses them per object.
    bad = [
        admin_post(
            sandbox, "brevo/contacts", {"email": f"odd..{i}@example.org", "attributes": {"FIRSTNAME": "Odd"}}
        )
        for i in range(2)
    ]
    summary = connector.sync(resources=["users"], direction="brevo_to_braze")
    reverse = summary["resources"][0]
    assert reverse["created"] == 5 and reverse["failed"] == 2
    assert summary["status"] == "partial"
    for i, contact in enumerate(good):
        user = braze_user_by_alias(sandbox, contact["id"])
        assert (
            user is not None and user["first_name"] == f"New{i}" and user["email"] == f"new.{i}@example.org"
        )
    letters = {d["key"]: d for d in connector.dead_letters(DEAD_LETTERS)}
    assert set(letters) == {f"brevo:{c['id']}" for c in bad}
    assert all("invalid local part" in d["reason"] for d in letters.values())
    assert all(braze_user_by_alias(sandbox, c["id"]) is None for c in bad)

    # The marketer fixes one address: the next run retries the dead letters and resolves that one.
    change_contact(sandbox, bad[0]["id"], {"attributes": {"EMAIL": "fixed@example.org"}})
    again = connector.sync(resources=["users"], direction="brevo_to_braze")["resources"][0]
    assert again["created"] == 1 and again["failed"] == 1
    letters = {d["key"]: d for d in connector.dead_letters(DEAD_LETTERS)}
    assert set(letters) == {f"brevo:{bad[1]['id']}"} and letters[f"brevo:{bad[1]['id']}"]["attempts"] == 2
    fixed = braze_user_by_alias(sandbox, bad[0]["id"])
    assert fixed is not None and fixed["email"] == "fixed@example.org"
    assert sandbox.violations() == []


# ------------------------------------------------------------------ dry run
def test_dry_run_plans_the_writes_without_making_them(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector]
) -> None:
    sandbox, connector = settled_world(sandboxes, connectors)
    chosen = contacts_with_braze_users(sandbox)[:3]
    for contact in chosen:
        change_contact(sandbox, contact["id"], {"attributes": {"FIRSTNAME": "Planned"}})
    before = braze_end_state(sandbox)
    summaries: list[dict[str, Any]] = []
    writes = writes_during(
        sandbox, lambda: summaries.append(connector.sync(resources=["users"], dry_run=True))
    )
    plan = summaries[0]["resources"][1]["plan"]
    assert writes == {}
    assert braze_end_state(sandbox) == before
    assert plan["update"] == 3 and plan["braze_calls"] == {"POST /users/track": 1} and plan["attributes"] == 3
    assert {d["contact_id"] for d in plan["diffs"]} == {c["id"] for c in chosen}
    assert all(d["changes"]["first_name"]["to"] == "Planned" for d in plan["diffs"])
    # The real run then does what the plan said.
    assert connector.sync(resources=["users"])["resources"][1]["updated"] == 3
    assert sandbox.violations() == []


# ------------------------------------------------------------------ kill and resume
def outside_changes(sandbox: Sandbox) -> set[int]:
    """The same marketer edits in every world: 120 renames, 3 blocklistings, 4 list joins; the ids touched."""
    contacts = all_brevo_contacts(sandbox)
    touched: set[int] = set()
    for contact in contacts[:120]:
        change_contact(sandbox, contact["id"], {"attributes": {"LASTNAME": f"Edited{contact['id']}"}})
        touched.add(contact["id"])
    for contact in [c for c in contacts if not c["emailBlacklisted"]][-3:]:
        change_contact(sandbox, contact["id"], {"emailBlacklisted": True})
        touched.add(contact["id"])
    for contact in [c for c in contacts if NEWSLETTER not in c["listIds"]][-4:]:
        change_contact(sandbox, contact["id"], {"listIds": [NEWSLETTER]})
        touched.add(contact["id"])
    return touched


def memories_of(state_path: Path, contact_ids: Iterable[int]) -> dict[str, Any]:
    """What the state at `state_path` remembers of these Brevo contacts (read while a run writes it)."""
    with StateStore(state_path, readonly=True) as state:
        return state.get_field_values(FIELDS, [state_key(i) for i in sorted(contact_ids)])


def committed_since(state_path: Path, before: dict[str, Any]) -> int:
    """How many of the contacts in `before` have had a write committed since."""
    now = memories_of(state_path, (int(key) for key in before))
    return sum(1 for key, memory in now.items() if memory != before.get(key))


@pytest.fixture
def settled_pair(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector], tmp_path: Path
) -> Iterator[tuple[Sandbox, Sandbox, Path]]:
    # Real time here: the killed runs are separate processes, which cannot share a fake clock.
    clean, _ = settled_world(
        make_world, make_connector, tmp_path / "clean", world={"users": 300, "contacts": 200, "seed": 4}
    )
    killed, _ = settled_world(
        make_world, make_connector, tmp_path / "killed", world={"users": 300, "contacts": 200, "seed": 4}
    )
    yield clean, killed, tmp_path


def test_kill_and_resume_gives_the_same_end_state(
    settled_pair: tuple[Sandbox, Sandbox, Path], make_connector: Callable[..., BrazeConnector]
) -> None:
    clean, killed, tmp_path = settled_pair
    touched = outside_changes(clean)
    assert outside_changes(killed) == touched
    make_connector(clean, tmp_path / "clean", direction="both").sync(
        resources=["users"], direction="brevo_to_braze", batch_size=10
    )
    reference = braze_end_state(clean)

    config = write_config(killed, tmp_path / "killed", direction="both")
    state_path = tmp_path / "killed" / "state.db"
    before = memories_of(state_path, touched)
    for kept in (20, 50):  # killed once that many written contacts are committed, twice
        process = sync_process(config, killed, direction="brevo_to_braze", batch_size=10)
        wait_for(lambda kept=kept: committed_since(state_path, before) >= kept)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
    final = sync_process(config, killed, direction="brevo_to_braze", batch_size=10)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    summary = json.loads(out)
    assert summary["status"] == "ok"
    resumed = summary["resources"][0]
    # What was committed before the kills is not sent again; what was in flight is (if anything:
    # answers are committed in groups, and the last group may have landed before the kill).
    assert resumed["updated"] + resumed["created"] <= len(touched) - 50
    assert braze_end_state(killed) == reference
    # Nothing is left half-done: one more run writes nothing.
    after = make_connector(killed, tmp_path / "killed", direction="both")
    assert writes_during(killed, lambda: after.sync(resources=["users"], direction="brevo_to_braze")) == {}
    assert killed.violations() == [] and clean.violations() == []


def test_stop_request_interrupts_between_batches_and_the_next_run_finishes(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector], track_log: TrackLog
) -> None:
    sandbox, connector = settled_world(sandboxes, connectors)
    touched = outside_changes(sandbox)
    original = BrazeClient.track

    def stop_after_first(self: BrazeClient, **arrays: Any) -> Any:
        answer = original(self, **arrays)
        connector.stop.set()  # as SIGINT does: the run stops at the next safe point
        return answer

    track_log.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BrazeClient, "track", stop_after_first)
        with pytest.raises(Interrupted):
            connector.sync(resources=["users"], direction="brevo_to_braze", batch_size=10)
    assert connector.status()["last_sync"]["status"] == "interrupted"
    # The calls already in flight when the stop came were answered, and committed; no more went out.
    sent = sum(len(call) for call in track_log)
    assert 10 <= sent <= 10 * contacts.TRACK_CALLS_IN_FLIGHT < len(touched)
    connector.stop.clear()
    track_log.clear()
    resumed = connector.sync(resources=["users"], direction="brevo_to_braze", batch_size=10)["resources"][0]
    # What was answered before the stop is not written again.
    assert resumed["updated"] + resumed["created"] == len(touched) - sent
    assert sum(len(call) for call in track_log) == len(touched) - sent
    assert sandbox.violations() == []
