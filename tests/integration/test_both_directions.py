"""`direction: both` against the sandbox: no ping-pong, conflicts, and opt-in deletions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tajo_braze.connector import BrazeConnector
from tajo_braze.errors import TransientApiError
from tajo_braze.sandbox import Sandbox
from tajo_braze.sync import contacts
from tajo_braze.sync.settle import PENDING
from tajo_braze.sync.users import FINGERPRINTS

from .conftest import (
    DEFAULT_MAPPING,
    TrackLog,
    admin_post,
    all_brevo_contacts,
    braze_user,
    braze_user_by_alias,
    change_contact,
    contacts_with_braze_users,
    settled_world,
    writes_during,
)

DELETES = ("braze POST /users/delete", "brevo DELETE /contacts/{identifier}")


def rename_in_braze(sandbox: Sandbox, changes: dict[str, dict[str, Any]]) -> None:
    admin_post(sandbox, "braze/users", {"users": [{"external_id": x, **c} for x, c in changes.items()]})


def brevo_by_ext_id(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {
        c["attributes"]["EXT_ID"]: c for c in all_brevo_contacts(sandbox) if c["attributes"].get("EXT_ID")
    }


def synced_contacts(sandbox: Sandbox, connector: BrazeConnector) -> list[dict[str, Any]]:
    """Linked contacts whose Braze user the Braze -> Brevo half has written (not dead-lettered)."""
    linked = contacts_with_braze_users(sandbox)
    keys = [f"ext:{c['attributes']['EXT_ID']}" for c in linked]
    written = connector.state.get_fingerprints(FINGERPRINTS, keys)
    return [c for c, key in zip(linked, keys, strict=True) if key in written]


def braze_user_exists(sandbox: Sandbox, external_id: str) -> bool:
    response = requests.get(f"{sandbox.admin_url}/braze/users/{external_id}", timeout=30)
    return response.status_code == 200


# ------------------------------------------------------------------ no ping-pong
@pytest.mark.parametrize("seed", [11, 7, 23])
def test_two_consecutive_runs_from_an_empty_state_and_the_second_writes_nothing(
    sandboxes: Callable[..., Sandbox],
    connectors: Callable[..., BrazeConnector],
    track_log: TrackLog,
    seed: int,
) -> None:
    sandbox = sandboxes(users=300, contacts=200, seed=seed)
    connector = connectors(sandbox, direction="both")
    connector.install()
    first = connector.sync(type="full", resources=["users"])
    forward, reverse = first["resources"]
    written_to_braze = sum(len(call) for call in track_log)
    assert written_to_braze == reverse["created"] + reverse["updated"] > 0
    # Profiles created in Braze for Brevo-only contacts come back with Braze's default states:
    # Brevo is given them in the same run instead of on the next one.
    assert any("what Braze now holds" in note for note in reverse["notes"])
    assert reverse["api_calls"]["POST /contacts/import"] >= 1

    summaries: list[dict[str, Any]] = []
    assert writes_during(sandbox, lambda: summaries.append(connector.sync(resources=["users"]))) == {}
    forward, reverse = summaries[0]["resources"]
    assert forward["created"] + forward["updated"] == 0
    assert reverse["created"] + reverse["updated"] == 0
    assert reverse["unchanged"] == reverse["read"]
    # What the second run read from Braze is what Brevo holds: created profiles have their states.
    created = [c for c in all_brevo_contacts(sandbox) if braze_user_by_alias(sandbox, c["id"]) is not None]
    assert created and all(c["attributes"].get("EMAIL_STATUS") for c in created)
    assert sandbox.violations() == []


def test_changes_on_both_sides_cross_once_and_the_next_run_writes_nothing(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector], track_log: TrackLog
) -> None:
    sandbox, connector = settled_world(sandboxes, connectors)
    linked = synced_contacts(sandbox, connector)
    from_brevo, from_braze = linked[:23], linked[23:30]
    for i, contact in enumerate(from_brevo):
        change_contact(sandbox, contact["id"], {"attributes": {"FIRSTNAME": f"Brevo {i}"}})
    rename_in_braze(
        sandbox, {c["attributes"]["EXT_ID"]: {"last_name": f"Braze {i}"} for i, c in enumerate(from_braze)}
    )
    track_log.clear()

    summary = connector.sync(resources=["users"])
    forward, reverse = summary["resources"]
    assert forward["updated"] == 7 and reverse["updated"] == 23
    assert sum(len(call) for call in track_log) == 23  # Braze's own 7 changes are not echoed back
    contacts = brevo_by_ext_id(sandbox)
    for i, contact in enumerate(from_braze):
        assert contacts[contact["attributes"]["EXT_ID"]]["attributes"]["LASTNAME"] == f"Braze {i}"
    for i, contact in enumerate(from_brevo):
        assert braze_user(sandbox, contact["attributes"]["EXT_ID"])["first_name"] == f"Brevo {i}"

    # Neither half echoes the other's writes: the next run writes nothing anywhere.
    assert writes_during(sandbox, lambda: connector.sync(resources=["users"])) == {}
    assert connector.status()["cursors"]["users/brevo_to_braze"]["read_started_at"]
    assert sandbox.violations() == []


def test_a_field_changed_on_both_sides_converges_without_ping_pong(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector]
) -> None:
    sandbox, connector = settled_world(sandboxes, connectors)
    contact = synced_contacts(sandbox, connector)[0]
    external_id = contact["attributes"]["EXT_ID"]
    change_contact(sandbox, contact["id"], {"attributes": {"FIRSTNAME": "FromBrevo"}})
    rename_in_braze(sandbox, {external_id: {"first_name": "FromBraze"}})

    connector.sync(resources=["users"])
    # The Braze -> Brevo half runs first and carries Braze's value; the reverse half sees an echo.
    assert braze_user(sandbox, external_id)["first_name"] == "FromBraze"
    assert brevo_by_ext_id(sandbox)[external_id]["attributes"]["FIRSTNAME"] == "FromBraze"
    for _ in range(2):
        assert writes_during(sandbox, lambda: connector.sync(resources=["users"])) == {}
    assert sandbox.violations() == []


def edited_on_both_sides(sandbox: Sandbox, connector: BrazeConnector) -> list[dict[str, Any]]:
    """Four synced people: Brevo edits their first name, Braze their last name (so the users half
    imports them whole, and must keep Brevo's edit)."""
    people = synced_contacts(sandbox, connector)[:4]
    for i, contact in enumerate(people):
        change_contact(sandbox, contact["id"], {"attributes": {"FIRSTNAME": f"Brevo {i}"}})
    rename_in_braze(sandbox, {c["attributes"]["EXT_ID"]: {"last_name": f"Braze {i}"} for i, c in enumerate(people)})
    return people


def test_a_brevo_edit_survives_a_braze_change_to_another_field_of_the_same_person(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector]
) -> None:
    sandbox, connector = settled_world(sandboxes, connectors)
    people = edited_on_both_sides(sandbox, connector)

    forward, reverse = connector.sync(resources=["users"])["resources"]
    assert forward["updated"] == 4 and any("4 contact(s) keep fields edited in Brevo" in n for n in forward["notes"])
    assert reverse["updated"] == 4
    contacts = brevo_by_ext_id(sandbox)
    for i, contact in enumerate(people):
        external_id = contact["attributes"]["EXT_ID"]
        assert contacts[external_id]["attributes"]["FIRSTNAME"] == f"Brevo {i}"  # not overwritten
        assert contacts[external_id]["attributes"]["LASTNAME"] == f"Braze {i}"
        user = braze_user(sandbox, external_id)
        assert user["first_name"] == f"Brevo {i}" and user["last_name"] == f"Braze {i}"
    assert writes_during(sandbox, lambda: connector.sync(resources=["users"])) == {}
    assert sandbox.violations() == []


def test_a_run_stopped_between_its_halves_resumes_with_the_brevo_to_braze_half_and_keeps_brevo_edits(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector]
) -> None:
    sandbox, connector = settled_world(sandboxes, connectors)
    people = edited_on_both_sides(sandbox, connector)
    # The Braze -> Brevo half runs (keeping the Brevo edits); then Braze fails every write.
    sandbox.set_faults("braze:/users/track:5xx=1")
    with pytest.raises(TransientApiError):
        connector.sync(resources=["users"])
    sandbox.set_faults(None)
    assert connector.status()["last_sync"]["status"] == "failed"

    forward, reverse = connector.sync(resources=["users"])["resources"]
    # The half done before is not run again, and the kept edits still cross to Braze.
    assert forward["read"] == 0 and "stopped before its Brevo -> Braze half" in forward["notes"][0]
    assert reverse["updated"] == 4
    for i, contact in enumerate(people):
        user = braze_user(sandbox, contact["attributes"]["EXT_ID"])
        assert user["first_name"] == f"Brevo {i}" and user["last_name"] == f"Braze {i}"
    # A whole two-way run again, which finds nothing to write.
    forward, _ = connector.sync(resources=["users"])["resources"]
    assert forward["read"] > 0
    assert writes_during(sandbox, lambda: connector.sync(resources=["users"])) == {}
    assert sandbox.violations() == []


def test_catch_up_imports_left_by_a_failed_run_are_made_when_it_resumes(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = sandboxes(users=300, contacts=200, seed=7)
    connector = connectors(sandbox, direction="both")
    connector.install()
    reverse_half = contacts.ContactsSync.run

    def failing_imports(sync: contacts.ContactsSync) -> Any:
        # Braze takes the writes of the Brevo -> Braze half; Brevo refuses the imports catching it up.
        sandbox.set_faults("brevo:/contacts/import:5xx=1")
        return reverse_half(sync)

    monkeypatch.setattr(contacts.ContactsSync, "run", failing_imports)
    with pytest.raises(TransientApiError):
        connector.sync(type="full", resources=["users"])
    left = connector.state.count_fingerprints(PENDING)
    assert left > 0  # acknowledged Braze writes whose Brevo import is still to make
    monkeypatch.setattr(contacts.ContactsSync, "run", reverse_half)
    sandbox.set_faults(None)

    _, reverse = connector.sync(resources=["users"])["resources"]
    assert connector.state.count_fingerprints(PENDING) == 0
    assert any("what Braze now holds" in note for note in reverse["notes"])
    # Brevo holds what Braze does: a whole two-way run finds nothing to write.
    assert writes_during(sandbox, lambda: connector.sync(resources=["users"])) == {}
    assert sandbox.violations() == []


def test_brevo_wins_keeps_a_brevo_edit_when_braze_changed_the_same_field(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector]
) -> None:
    rules = yaml.safe_load(DEFAULT_MAPPING.read_text(encoding="utf-8"))["field_mapping"]
    rules["first_name"] = {"brevo": "FIRSTNAME", "conflict": "brevo_wins"}
    sandbox, connector = settled_world(sandboxes, connectors, mapping=rules)
    contested, latest_rule = synced_contacts(sandbox, connector)[:2]
    for contact in (contested, latest_rule):
        change_contact(sandbox, contact["id"], {"attributes": {"FIRSTNAME": "FromBrevo", "LASTNAME": "BrevoLast"}})
        rename_in_braze(
            sandbox, {contact["attributes"]["EXT_ID"]: {"first_name": "FromBraze", "last_name": "BrazeLast"}}
        )

    connector.sync(resources=["users"])
    contacts = brevo_by_ext_id(sandbox)
    for contact in (contested, latest_rule):
        external_id = contact["attributes"]["EXT_ID"]
        # first_name is brevo_wins: Brevo's edit holds on both sides; last_name is `latest`:
        # both changed, and Braze (carried first, with no per-field clock) wins.
        assert contacts[external_id]["attributes"]["FIRSTNAME"] == "FromBrevo"
        assert braze_user(sandbox, external_id)["first_name"] == "FromBrevo"
        assert contacts[external_id]["attributes"]["LASTNAME"] == "BrazeLast"
        assert braze_user(sandbox, external_id)["last_name"] == "BrazeLast"
    assert writes_during(sandbox, lambda: connector.sync(resources=["users"])) == {}
    assert sandbox.violations() == []


def test_braze_wins_holds_a_brevo_change_back_when_braze_changed_too(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector]
) -> None:
    rules = yaml.safe_load(DEFAULT_MAPPING.read_text(encoding="utf-8"))["field_mapping"]
    rules["first_name"] = {"brevo": "FIRSTNAME", "conflict": "braze_wins"}
    sandbox = sandboxes(users=300, contacts=200)
    connector = connectors(sandbox, direction="both", mapping=rules)
    connector.install()
    connector.sync(type="full", resources=["users"])
    connector.sync(resources=["users"])
    both, brevo_only = synced_contacts(sandbox, connector)[:2]
    for contact in (both, brevo_only):
        change_contact(sandbox, contact["id"], {"attributes": {"FIRSTNAME": "FromBrevo", "LASTNAME": "Kept"}})
    rename_in_braze(sandbox, {both["attributes"]["EXT_ID"]: {"first_name": "FromBraze"}})

    reverse = connector.sync(resources=["users"], direction="brevo_to_braze")["resources"][0]
    assert any("1 Brevo change(s) held back" in note for note in reverse["notes"])
    held, passed = (
        braze_user(sandbox, both["attributes"]["EXT_ID"]),
        braze_user(sandbox, brevo_only["attributes"]["EXT_ID"]),
    )
    assert held["first_name"] == "FromBraze" and held["last_name"] == "Kept"
    assert passed["first_name"] == "FromBrevo" and passed["last_name"] == "Kept"

    connector.sync(resources=["users"])  # both ways: Braze's value reaches Brevo
    assert brevo_by_ext_id(sandbox)[both["attributes"]["EXT_ID"]]["attributes"]["FIRSTNAME"] == "FromBraze"
    assert writes_during(sandbox, lambda: connector.sync(resources=["users"])) == {}
    assert sandbox.violations() == []


# ------------------------------------------------------------------ deletions
def test_deletions_happen_only_when_enabled_and_are_counted_by_a_dry_run_first(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector], tmp_path: Path
) -> None:
    sandbox, keep = settled_world(sandboxes, connectors, tmp_path)
    linked = synced_contacts(sandbox, keep)
    gone_in_brevo = linked[:2]
    brevo_only = next(
        c for c in all_brevo_contacts(sandbox) if braze_user_by_alias(sandbox, c["id"]) is not None
    )
    gone_in_braze = [c["attributes"]["EXT_ID"] for c in linked[2:4]]
    for contact in [*gone_in_brevo, brevo_only]:
        requests.delete(f"{sandbox.admin_url}/brevo/contacts/{contact['id']}", timeout=30).raise_for_status()
    for external_id in gone_in_braze:
        requests.delete(f"{sandbox.admin_url}/braze/users/{external_id}", timeout=30).raise_for_status()

    # Off (the default): nothing is deleted anywhere.
    writes = writes_during(sandbox, lambda: keep.sync(resources=["users"]))
    assert not any(name in writes for name in DELETES)
    assert all(braze_user_exists(sandbox, c["attributes"]["EXT_ID"]) for c in gone_in_brevo)
    assert set(gone_in_braze) <= set(brevo_by_ext_id(sandbox))

    deleting = connectors(sandbox, tmp_path, direction="both", deletes=True)
    summaries: list[dict[str, Any]] = []
    writes = writes_during(
        sandbox, lambda: summaries.append(deleting.sync(type="full", resources=["users"], dry_run=True))
    )
    assert writes == {}
    plan = summaries[0]["resources"][1]["plan"]
    assert plan["delete_in_braze"] == 3 and plan["delete_in_brevo"] == 2

    result = deleting.sync(type="full", resources=["users"])["resources"][1]
    assert any("3 contact(s) deleted in Brevo were deleted in Braze" in n for n in result["notes"])
    assert not any(braze_user_exists(sandbox, c["attributes"]["EXT_ID"]) for c in gone_in_brevo)
    assert braze_user_by_alias(sandbox, brevo_only["id"]) is None
    # The full Braze -> Brevo half re-imported the three contacts while their Braze users still
    # existed; once those users were gone, the Braze-side pass removed the copies as well.
    assert any("5 user(s) deleted in Braze were deleted in Brevo" in n for n in result["notes"])
    remaining = all_brevo_contacts(sandbox)
    ext_ids = {c["attributes"].get("EXT_ID") for c in remaining}
    assert not (set(gone_in_braze) | {c["attributes"]["EXT_ID"] for c in gone_in_brevo}) & ext_ids
    assert brevo_only["email"] not in {c.get("email") for c in remaining}
    assert writes_during(sandbox, lambda: deleting.sync(resources=["users"])) == {}
    assert sandbox.violations() == []


def test_a_one_way_braze_to_brevo_run_deletes_contacts_of_users_deleted_in_braze_when_enabled(
    sandboxes: Callable[..., Sandbox], connectors: Callable[..., BrazeConnector], tmp_path: Path
) -> None:
    sandbox = sandboxes(users=300, contacts=200)
    keep = connectors(sandbox, tmp_path, direction="braze_to_brevo")
    keep.install()
    keep.sync(type="full", resources=["users"])
    gone = [c["attributes"]["EXT_ID"] for c in synced_contacts(sandbox, keep)[:3]]
    for external_id in gone:
        requests.delete(f"{sandbox.admin_url}/braze/users/{external_id}", timeout=30).raise_for_status()

    assert not any(name in DELETES for name in writes_during(sandbox, lambda: keep.sync(resources=["users"])))
    assert set(gone) <= set(brevo_by_ext_id(sandbox))

    deleting = connectors(sandbox, tmp_path, direction="braze_to_brevo", deletes=True)
    planned = deleting.sync(resources=["users"], dry_run=True)["resources"][0]["plan"]
    assert planned["delete_in_brevo"] == 3 and set(gone) <= set(brevo_by_ext_id(sandbox))
    result = deleting.sync(resources=["users"])["resources"][0]
    assert any("3 user(s) deleted in Braze were deleted in Brevo" in n for n in result["notes"])
    assert not set(gone) & set(brevo_by_ext_id(sandbox))
    assert writes_during(sandbox, lambda: deleting.sync(resources=["users"])) == {}
    assert sandbox.violations() == []
