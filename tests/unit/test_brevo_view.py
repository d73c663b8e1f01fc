"""The users half's view of a person, predicted on the Brevo -> Braze side: echoes and catch-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tajo_braze.mapping import CompiledMapping, load_mapping
from tajo_braze.models import BrazeUser, BrevoContact, ContactPayload
from tajo_braze.sync import users as users_half
from tajo_braze.sync.brevo_view import NEW_PROFILE_DEFAULTS, expect, export_view, is_braze_echo

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def mapping() -> CompiledMapping:
    return load_mapping(str(ROOT / "mappings" / "default.yaml"), base_dir=ROOT)


def contact(
    *, cid: int = 42, email: str | None = "ann@example.com", ext_id: str | None = "u-1",
    blacklisted: bool = False, **attributes: Any,
) -> BrevoContact:  # fmt: skip
    attrs = dict(attributes)
    if ext_id is not None:
        attrs["EXT_ID"] = ext_id
    return BrevoContact(
        id=cid, email=email, ext_id=ext_id, email_blacklisted=blacklisted, sms_blacklisted=False,
        created_at=T0 - timedelta(days=30), modified_at=T0, list_ids=(), attributes=attrs,
    )  # fmt: skip


def braze_user(**data: Any) -> BrazeUser:
    return BrazeUser(data.get("external_id"), None, data.get("email"), data.get("phone"), data)


def mapped(mapping: CompiledMapping, **data: Any) -> ContactPayload:
    payload = mapping.to_brevo(braze_user(**data))
    assert isinstance(payload, ContactPayload)
    return payload


def sent_for(payload: ContactPayload) -> users_half.SentRecord:
    return users_half.SentRecord(users_half.payload_digest(payload), payload.email, None, payload.email_blacklisted)


def imported_contact(payload: ContactPayload, *, cid: int = 42, **extra: Any) -> BrevoContact:
    """What Brevo holds after the users half imported `payload` (Brevo lower-cases emails)."""
    attributes = {**dict(payload.attributes), **extra}
    return contact(
        cid=cid,
        email=payload.email.lower() if payload.email else None,
        ext_id=payload.ext_id,
        blacklisted=bool(payload.email_blacklisted),
        **{k: v for k, v in attributes.items() if k != "EXT_ID"},
    )


ANN = {"external_id": "u-1", "email": "Ann.Lee@Example.com", "first_name": "Ann", "email_subscribe": "subscribed"}


def test_what_the_users_half_imported_is_recognised_as_an_echo(mapping: CompiledMapping) -> None:
    payload = mapped(mapping, **ANN, custom_attributes={"loyalty_points": 7})
    sent = sent_for(payload)
    brevo = imported_contact(payload, COMPANY="Acme")  # attributes the mapping does not name do not matter
    assert is_braze_echo(brevo, mapping, sent)
    assert not is_braze_echo(imported_contact(payload, COMPANY="Acme", FIRSTNAME="Anna"), mapping, sent)
    assert not is_braze_echo(brevo, mapping, None)


def test_a_copied_field_is_already_held_by_brevo(mapping: CompiledMapping) -> None:
    payload = mapped(mapping, **ANN)
    # A marketer renames the contact in Brevo; we write first_name to Braze ...
    edited = imported_contact(payload, FIRSTNAME="Anna")
    expectation = expect(
        edited, mapping, {"first_name": "Anna"}, sent=sent_for(payload), base=None, external_id="u-1",
        blacklisted=False,
    )  # fmt: skip
    assert expectation is not None and expectation.brevo_holds_it and not expectation.blocklists
    # ... and the users half, exporting Braze's new profile, computes exactly that digest: no echo.
    after = mapped(mapping, **{**ANN, "first_name": "Anna"})
    assert users_half.payload_digest(after) == expectation.record.digest
    # A real Braze change on top still differs, so the users half still carries it.
    moved = mapped(mapping, **{**ANN, "first_name": "Anna", "last_name": "New"})
    assert users_half.payload_digest(moved) != expectation.record.digest


def test_a_carried_phone_is_predicted_with_its_new_identifier(mapping: CompiledMapping) -> None:
    payload = mapped(mapping, **ANN)
    brevo = imported_contact(payload, SMS="+33612345678")
    expectation = expect(
        brevo, mapping, {"phone": "+33612345678"}, sent=sent_for(payload), base=None, external_id="u-1",
        blacklisted=False,
    )  # fmt: skip
    assert expectation is not None and expectation.brevo_holds_it
    assert expectation.record.sms == "+33612345678" and expectation.record.email == "Ann.Lee@example.com"
    with_phone = mapped(mapping, **{**ANN, "phone": "+33612345678"})
    assert users_half.payload_digest(with_phone) == expectation.record.digest


def test_an_unsubscribe_written_to_braze_changes_the_state_the_mapping_carries(mapping: CompiledMapping) -> None:
    payload = mapped(mapping, **ANN)
    assert payload.attributes["EMAIL_STATUS"] == "subscribed"
    blocklisted = imported_contact(payload)
    blocklisted = contact(email=blocklisted.email, blacklisted=True, **{
        k: v for k, v in blocklisted.attributes.items() if k != "EXT_ID"
    })  # fmt: skip
    expectation = expect(
        blocklisted, mapping, {"email_subscribe": "unsubscribed"}, sent=sent_for(payload), base=None,
        external_id="u-1", blacklisted=True,
    )  # fmt: skip
    assert expectation is not None
    # Brevo still says EMAIL_STATUS "subscribed": it must be told, though it blocklists already.
    assert expectation.payload.attributes["EMAIL_STATUS"] == "unsubscribed"
    assert not expectation.brevo_holds_it and not expectation.blocklists
    after = mapped(mapping, **{**ANN, "email_subscribe": "unsubscribed"})
    assert users_half.payload_digest(after) == expectation.record.digest


def test_a_profile_the_write_creates_starts_from_brazes_defaults(mapping: CompiledMapping) -> None:
    brevo = contact(ext_id=None, email="zoe@example.com", FIRSTNAME="Zoe", SMS="+33612345679")
    written = {"email": "zoe@example.com", "phone": "+33612345679", "first_name": "Zoe"}
    expectation = expect(
        brevo, mapping, written, sent=None, base=NEW_PROFILE_DEFAULTS, external_id=None, blacklisted=None
    )
    assert expectation is not None and not expectation.brevo_holds_it
    payload = expectation.payload
    assert payload.key == "email:zoe@example.com" and payload.ext_id is None
    assert payload.attributes == {
        "SMS": "+33612345679", "FIRSTNAME": "Zoe", "EMAIL_STATUS": "subscribed", "PUSH_OPTIN": False,
    }  # fmt: skip
    # Exactly what the users half maps from the profile Braze exports next.
    exported = mapped(mapping, **{**written, "email_subscribe": "subscribed", "push_subscribe": "subscribed"})
    assert users_half.payload_digest(exported) == expectation.record.digest


def test_an_existing_profile_keeps_what_braze_held_under_the_write(mapping: CompiledMapping) -> None:
    profile = {**ANN, "last_name": "Lee", "push_subscribe": "opted_in", "custom_attributes": {"loyalty_points": 3}}
    brevo = contact(email="ann@example.com", FIRSTNAME="Annie")
    expectation = expect(
        brevo, mapping, {"first_name": "Annie", "email": "ann@example.com"}, sent=None, base=profile,
        external_id="u-1", blacklisted=None,
    )  # fmt: skip
    assert expectation is not None
    attributes = expectation.payload.attributes
    assert attributes["FIRSTNAME"] == "Annie" and attributes["LASTNAME"] == "Lee"
    assert attributes["PUSH_OPTIN"] is True and attributes["LOYALTY_POINTS"] == "3"  # a text attribute
    assert expectation.payload.key == "ext:u-1" and expectation.payload.email == "ann@example.com"


def test_the_export_view_lays_written_fields_over_braze_values(mapping: CompiledMapping) -> None:
    base = {"first_name": "A", "custom_attributes": {"loyalty_points": 1, "other": "kept"}}
    view = export_view(mapping, {"first_name": "B", "loyalty_points": 2, "brevo_lists": {"add": ["x"]}}, base)
    assert view == {"first_name": "B", "custom_attributes": {"loyalty_points": 2, "other": "kept"}}
    assert base["first_name"] == "A"  # the base is not changed in place
