"""Braze users -> Brevo contacts against the sandbox over loopback."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tajo_braze.collector import SYNC_THRESHOLDS
from tajo_braze.connector import BrazeConnector
from tajo_braze.mapping import CompiledMapping
from tajo_braze.models import BrazeUser, ContactPayload
from tajo_braze.sandbox import Sandbox
from tajo_braze.sync import users as users_module

from .conftest import admin_post, all_braze_users, all_brevo_contacts, brevo_end_state

IMPORT = "brevo POST /contacts/import"


def expected_outcomes(mapping: CompiledMapping, users: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for data in users:
        user = BrazeUser(data.get("external_id"), data.get("braze_id"), data.get("email"), data.get("phone"), data)
        out[data.get("braze_id") or ""] = mapping.to_brevo(user)
    return out


def contacts_by_key(contacts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for c in contacts:
        if c["attributes"].get("EXT_ID"):
            index[f"ext:{c['attributes']['EXT_ID']}"] = c
        if c.get("email"):
            index.setdefault(f"email:{c['email'].lower()}", c)
    return index


def full_sync(connector: BrazeConnector) -> dict[str, Any]:
    connector.install()
    return connector.sync(type="full", resources=["users"])


def test_full_sync_writes_every_holdable_user_with_exactly_the_mapped_attributes(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = make_world()
    connector = make_connector(sandbox)
    summary = full_sync(connector)
    users = all_braze_users(sandbox)
    outcomes = expected_outcomes(connector.mapping, users)
    contacts = contacts_by_key(all_brevo_contacts(sandbox))
    letters = {d["key"]: d for d in connector.dead_letters(limit=10_000)}

    written = rejected = 0
    for outcome in outcomes.values():
        if isinstance(outcome, ContactPayload):
            contact = contacts.get(outcome.key)
            if contact is None:
                # Only a user whose email another Braze user already holds may be missing, and it says so.
                assert outcome.key in letters, outcome.key
                assert "already synced for Braze user" in letters[outcome.key]["reason"]
                rejected += 1
                continue
            written += 1
            for name, value in outcome.attributes.items():
                if name == "SMS" and contact["attributes"].get("SMS") != value:
                    continue  # a phone shared with another contact is written without SMS, by design
                assert contact["attributes"].get(name) == value, (outcome.key, name)
            if outcome.email:
                assert contact["email"].lower() == outcome.email.lower()
            if outcome.email_blacklisted and outcome.email:
                assert contact["emailBlacklisted"] is True, outcome.key
        else:
            assert outcome.key in letters, outcome.key
            assert letters[outcome.key]["reason"] == outcome.reason
            rejected += 1

    result = summary["resources"][0]
    assert written > 0 and rejected > 0  # the seeded world has both kinds
    assert result["created"] + result["updated"] == written
    assert result["failed"] == rejected
    assert summary["api_calls"].get("brevo POST /contacts/import", 0) >= 1
    assert sandbox.violations() == []


def test_second_run_writes_nothing_and_seven_changes_write_seven(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = make_world()
    connector = make_connector(sandbox)
    first = full_sync(connector)["resources"][0]
    imports_after_first = sandbox.request_counts().get(IMPORT, 0)

    second = connector.sync(resources=["users"])["resources"][0]
    assert second["created"] + second["updated"] == 0
    assert second["unchanged"] == first["created"] + first["updated"]
    assert sandbox.request_counts().get(IMPORT, 0) == imports_after_first

    users = [u for u in all_braze_users(sandbox) if u.get("external_id") and u.get("email") and "@" in u["email"]]
    outcomes = expected_outcomes(connector.mapping, users)
    holdable = [u for u in users if isinstance(outcomes[u["braze_id"]], ContactPayload)][:7]
    admin_post(
        sandbox,
        "braze/users",
        {"users": [{"external_id": u["external_id"], "first_name": f"Renamed {i}"} for i, u in enumerate(holdable)]},
    )
    third = connector.sync(resources=["users"])["resources"][0]
    assert third["updated"] == 7 and third["created"] == 0
    contacts = contacts_by_key(all_brevo_contacts(sandbox))
    for i, u in enumerate(holdable):
        assert contacts[f"ext:{u['external_id']}"]["attributes"]["FIRSTNAME"] == f"Renamed {i}"
    assert sandbox.violations() == []


def test_a_sync_collects_garbage_less_often_and_puts_the_hosts_thresholds_back(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector], monkeypatch: Any
) -> None:
    sandbox = make_world()
    connector = make_connector(sandbox)
    seen: list[tuple[int, int, int]] = []
    original = users_module.run

    def observed(ctx: Any) -> Any:
        seen.append(gc.get_threshold())
        return original(ctx)

    monkeypatch.setattr(users_module, "run", observed)
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        result = full_sync(connector)["resources"][0]
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)
    assert seen == [SYNC_THRESHOLDS]
    assert result["created"] > 0


def test_dry_run_plans_without_writing_anything(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector], tmp_path: Path
) -> None:
    sandbox = make_world()
    connector = make_connector(sandbox)
    connector.install()
    before = brevo_end_state(sandbox)
    summary = connector.sync(resources=["users"], dry_run=True)
    plan = summary["resources"][0]["plan"]
    assert plan["create"] + plan["update"] > 0 and plan["reject"] > 0
    assert plan["brevo_calls"]["POST /contacts/import"] >= 1
    assert plan["rejections_by_reason"]
    assert plan["diffs"] and all("changes" in d for d in plan["diffs"])
    assert brevo_end_state(sandbox) == before
    assert sandbox.request_counts().get(IMPORT, 0) == 0
    status = connector.status()
    assert status["users_count"] == 0 and status["dead_letters"] == 0 and status["last_sync"] is None


def test_status_reports_users_last_sync_and_dead_letters(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = make_world()
    connector = make_connector(sandbox)
    summary = full_sync(connector)
    status = connector.status()
    result = summary["resources"][0]
    assert status["users_count"] == result["created"] + result["updated"]
    assert status["dead_letters"] == result["failed"]
    assert status["last_sync"]["status"] == "partial"  # finished, with dead-lettered users
    assert status["connected"] is True


def test_faults_on_both_apis_leave_the_same_end_state(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector], tmp_path: Path
) -> None:
    clean = make_world(seed=5)
    make_connector(clean, tmp_path / "clean").sync(type="full", resources=["users"])
    faulty = make_world(seed=5, faults="5xx=0.1,429=0.05,drop=0.02,5xx_after=0.03,latency=1+4")
    connector = make_connector(faulty, tmp_path / "faulty", batch_size=None)
    connector.sync(type="full", resources=["users"], batch_size=10)
    assert brevo_end_state(faulty) == brevo_end_state(clean)
    injected = faulty.dispatcher.fault_counts()
    assert injected.get("5xx", 0) > 0 and injected.get("429", 0) > 0  # the faults really happened
    assert faulty.violations() == []
