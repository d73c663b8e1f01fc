"""The one-shot `export_segment` hook (and its CLI command) against the sandbox over loopback."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tajo_braze.cli import main
from tajo_braze.connector import BrazeConnector
from tajo_braze.errors import UsageError
from tajo_braze.mapping import CompiledMapping
from tajo_braze.models import BrazeUser, ContactPayload
from tajo_braze.sandbox import Sandbox

from .conftest import admin_get, all_braze_users, all_brevo_contacts, env_for, write_config

CREATE_LIST = "brevo POST /contacts/lists"
IDENTIFIERS = {"EXT_ID"}  # identifiers Brevo keeps among the attributes, written with every contact


def segment_id(sandbox: Sandbox, name: str) -> str:
    return next(sid for sid, shown in admin_get(sandbox, "braze")["segments"].items() if shown == name)


def members(sandbox: Sandbox, name: str) -> list[dict[str, Any]]:
    segment = sandbox.braze.world.segments[segment_id(sandbox, name)]
    return [u for u in all_braze_users(sandbox) if segment.contains(u)]


def outcome(mapping: CompiledMapping, data: dict[str, Any]) -> Any:
    return mapping.to_brevo(
        BrazeUser(data.get("external_id"), data.get("braze_id"), data.get("email"), data.get("phone"), data)
    )


def by_id(sandbox: Sandbox) -> dict[int, dict[str, Any]]:
    return {c["id"]: c for c in all_brevo_contacts(sandbox)}


def in_list(contacts: dict[int, dict[str, Any]], list_id: int) -> dict[int, dict[str, Any]]:
    return {i: c for i, c in contacts.items() if list_id in (c.get("listIds") or [])}


def test_counts_equal_the_segment_size_and_a_new_list_holds_the_members(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = make_world()
    connector = make_connector(sandbox)
    connector.install()
    before = by_id(sandbox)
    vip = members(sandbox, "vip")
    assert len(vip) == sandbox.braze.world.segments[segment_id(sandbox, "vip")].seeded_size

    result = connector.export_segment(segment_id(sandbox, "vip"))
    after = by_id(sandbox)
    assert result["count"] == len(vip)
    assert (
        result["list_created"] is True and result["pending_imports"] == [] and result["failed_imports"] == []
    )
    lists = {lst.id: lst.name for lst in sandbox.brevo.world.lists.values()}
    assert lists[result["list_id"]].startswith("braze_vip export ")
    assert result["created"] == len(after) - len(before) > 0
    assert result["created"] + result["updated"] + result["rejected"] == result["count"]

    payloads = [p for p in (outcome(connector.mapping, u) for u in vip) if isinstance(p, ContactPayload)]
    refused = len(vip) - len(payloads)
    assert result["rejected"] >= refused and len(connector.dead_letters("segments")) == refused
    listed = in_list(after, result["list_id"])
    assert len(listed) == result["count"] - result["rejected"]
    keys = {
        f"ext:{c['attributes']['EXT_ID']}" if c["attributes"].get("EXT_ID") else f"email:{c['email'].lower()}"
        for c in listed.values()
    }
    assert keys <= {p.key for p in payloads}
    for payload in payloads:  # unsubscribed in Braze arrives blocklisted in Brevo
        if payload.email_blacklisted and payload.key in keys:
            contact = next(
                c for c in listed.values() if c.get("email", "").lower() == (payload.email or "").lower()
            )
            assert contact["emailBlacklisted"] is True
    assert sandbox.violations() == []


def test_only_the_included_attributes_are_written(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = make_world()
    connector = make_connector(sandbox)
    connector.install()
    before = by_id(sandbox)
    result = connector.export_segment(segment_id(sandbox, "small_test"), include_attributes=["first_name"])
    assert result["attributes"] == ["FIRSTNAME"]
    after = in_list(by_id(sandbox), result["list_id"])
    assert after and result["count"] == len(members(sandbox, "small_test"))
    braze_names = {
        u["external_id"]: u.get("first_name") for u in members(sandbox, "small_test") if u.get("external_id")
    }
    written = 0
    for contact_id, contact in after.items():
        old = before.get(contact_id, {}).get("attributes", {})
        changed = {name for name, value in contact["attributes"].items() if old.get(name) != value}
        assert changed <= {"FIRSTNAME"} | IDENTIFIERS, (contact_id, changed)
        ext = contact["attributes"].get("EXT_ID")
        if ext in braze_names and braze_names[ext]:
            assert contact["attributes"]["FIRSTNAME"] == braze_names[ext]
            written += 1
    assert written > 0
    untouched = {i: c for i, c in by_id(sandbox).items() if i not in after}
    assert all(untouched[i] == before[i] for i in untouched if i in before)  # nobody else changed
    assert sandbox.violations() == []


def test_an_existing_target_list_is_used_and_bad_arguments_are_refused(
    make_world: Callable[..., Sandbox], make_connector: Callable[..., BrazeConnector]
) -> None:
    sandbox = make_world()
    connector = make_connector(sandbox)
    connector.install()
    newsletter = next(lst.id for lst in sandbox.brevo.world.lists.values() if lst.name == "Newsletter")
    lists_created = sandbox.request_counts().get(CREATE_LIST, 0)
    result = connector.export_segment("small_test", target_list=newsletter)  # a name works as well as an id
    assert result["list_id"] == newsletter and result["list_created"] is False
    assert result["segment_id"] == segment_id(sandbox, "small_test")
    assert sandbox.request_counts().get(CREATE_LIST, 0) == lists_created
    assert len(in_list(by_id(sandbox), newsletter)) >= result["count"] - result["rejected"]

    with pytest.raises(UsageError, match="no list with id 999"):
        connector.export_segment("small_test", target_list=999)
    with pytest.raises(UsageError, match="shoe_size"):
        connector.export_segment("small_test", include_attributes=["first_name", "shoe_size"])
    with pytest.raises(UsageError, match="no segment"):
        connector.export_segment("no_such_segment")
    assert sandbox.violations() == []


def test_the_cli_command_exports_with_the_included_attributes(
    make_world: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_world()
    config = write_config(sandbox, tmp_path)
    for name, value in env_for(sandbox).items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    code = main(
        [
            "connectors",
            "export-segment",
            "braze",
            "--config",
            str(config),
            "--segment-id",
            segment_id(sandbox, "vip"),
            "--include-attributes",
            "first_name, last_name",
            "--json",
        ],
        stdout=out,
    )
    assert code == 0, out.getvalue()
    result = json.loads(out.getvalue())
    assert result["count"] == len(members(sandbox, "vip"))
    assert result["attributes"] == ["FIRSTNAME", "LASTNAME"]
    assert sandbox.violations() == []
