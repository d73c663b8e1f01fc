"""How the Braze -> Brevo half sees a person, worked out on the Brevo -> Braze side.

Both halves key a person the same way and compare contents, never timestamps. The Brevo -> Braze
half uses these pure functions to tell an echo of the users half's import from a real Brevo
change, and to predict what the users half will read in Braze once a write has landed: a
profile it creates gets Braze's own defaults (the email and push states of a new profile), and
a consent write changes the state the mapping may carry to Brevo.

A prediction is safe by construction: the users half skips a person only when the payload it
maps from the export has exactly the predicted digest, so a wrong guess costs one write on the
next run, never a lost one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..mapping import IDENTITY_FIELDS, CompiledMapping
from ..models import BrazeUser, BrevoContact, ContactPayload
from ..transforms import to_e164
from . import users as users_half

# What Braze gives a profile it creates: "subscribed" (neither opted in nor out) is the documented
# default of both the email and the push subscription state.
NEW_PROFILE_DEFAULTS: Mapping[str, Any] = {"email_subscribe": "subscribed", "push_subscribe": "subscribed"}


def identity_key(contact: BrevoContact, phone_name: str | None = "SMS") -> str:
    """The users half's key for the person behind a contact (it keys Braze users the same way)."""
    if contact.ext_id:
        return f"ext:{contact.ext_id}"
    if contact.email:
        return f"email:{contact.email.strip().lower()}"
    sms = contact.attributes.get(phone_name or "SMS")
    if sms not in (None, ""):
        try:
            return f"sms:{to_e164(sms)}"
        except ValueError:
            pass
    return f"brevo:{contact.id}"


def users_half_attribute_names(mapping: CompiledMapping, *, with_identity: bool) -> tuple[str, ...]:
    """The Brevo attributes the Braze -> Brevo half writes for a user (EMAIL and EXT_ID aside)."""
    if with_identity and mapping.identity_attribute:
        return (mapping.identity_attribute, *mapping.written_to_brevo)
    return mapping.written_to_brevo


def brevo_content_as_sent(
    contact: BrevoContact, mapping: CompiledMapping, email_as_sent: str | None, *, blacklisted: bool | None
) -> ContactPayload:
    """The payload the users half would build from a Braze profile holding exactly what Brevo holds."""
    email = contact.email
    if email and email_as_sent and email_as_sent.lower() == email.lower():
        email = email_as_sent  # Brevo lower-cases addresses; the users half keeps the local part as written
    attributes: dict[str, Any] = {}
    for name in users_half_attribute_names(mapping, with_identity=contact.ext_id is not None):
        value = contact.attributes.get(name)
        if value is not None and value != "" and value != []:
            attributes[name] = value
    return ContactPayload(
        key=identity_key(contact, mapping.phone_attribute),
        email=email,
        ext_id=contact.ext_id,
        attributes=attributes,
        email_blacklisted=blacklisted,
    )


def is_braze_echo(contact: BrevoContact, mapping: CompiledMapping, sent: users_half.SentRecord | None) -> bool:
    """Brevo holds exactly what the users half last imported from Braze for this person."""
    if sent is None:
        return False
    payload = brevo_content_as_sent(contact, mapping, sent.email, blacklisted=sent.blacklisted)
    return users_half.payload_digest(payload) == sent.digest


# Laid over the profile whether or not the mapping names them: the identity and the email state.
_ALWAYS_LAID_OVER = frozenset({"email", "phone", "email_subscribe"})


def export_view(mapping: CompiledMapping, written: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """An export object: `base` (what Braze held) with the flat Braze fields just written laid over it.

    Only fields the mapping knows (and the identifiers and email state) are laid over; the list
    attribute's add/remove operations are not values the users half reads.
    """
    custom_names, standard_names = mapping.custom_fields, mapping.standard_fields
    data = dict(base)
    custom = dict(data["custom_attributes"]) if isinstance(data.get("custom_attributes"), Mapping) else {}
    for name, value in written.items():
        if name in custom_names:
            custom[name] = value  # a dotted name is read as it stands before the nested objects
        elif name in standard_names or name in _ALWAYS_LAID_OVER:
            data[name] = value
    if custom:
        data["custom_attributes"] = custom
    return data


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the users half will map from Braze for one person once our write has landed."""

    payload: ContactPayload
    # Brevo already holds exactly that: nothing to write, only the fingerprint to set.
    brevo_holds_it: bool
    # Braze will say "unsubscribed" while Brevo does not blocklist the contact yet.
    blocklists: bool
    phone_name: str | None = None

    @property
    def record(self) -> users_half.SentRecord:
        payload = self.payload
        sms = payload.attributes.get(self.phone_name) if self.phone_name else None
        return users_half.SentRecord(
            users_half.payload_digest(payload),
            payload.email or None,
            sms if isinstance(sms, str) else None,
            payload.email_blacklisted,
        )


def expect(
    contact: BrevoContact,
    mapping: CompiledMapping,
    written: Mapping[str, Any],
    *,
    sent: users_half.SentRecord | None,
    base: Mapping[str, Any] | None,
    external_id: str | None,
    blacklisted: bool | None,
) -> Expectation | None:
    """Predict the users half's payload for this person after `written` (flat Braze fields) lands.

    With `base` (the profile as Braze exported it, or NEW_PROFILE_DEFAULTS for a profile the write
    creates) the payload is mapped from that profile with the write laid over. Without it the users
    half must know the person (`sent`): Braze is then taken to hold what Brevo holds, with the
    written fields (a consent state, say) mapped over it. None when the mapping refuses the view.
    """
    phone_name = mapping.phone_attribute
    if base is not None:
        data = export_view(mapping, written, base)
        email, phone = data.get("email"), data.get("phone")
        user = BrazeUser(
            external_id,
            None,
            email if isinstance(email, str) else None,
            phone if isinstance(phone, str) else None,
            data,
        )
        mapped = mapping.to_brevo(user)
        if not isinstance(mapped, ContactPayload):
            return None
        payload = mapped
    elif sent is not None:
        now = payload = brevo_content_as_sent(contact, mapping, sent.email, blacklisted=blacklisted)
        over = {name: value for name, value in written.items() if name not in IDENTITY_FIELDS}
        overlay = mapping.to_brevo(
            BrazeUser(payload.ext_id, None, payload.email, None, export_view(mapping, over, {})),
            include=set(over),
        )
        if not isinstance(overlay, ContactPayload):
            return None
        names = {rule.brevo for rule in mapping.rules if rule.braze in over and rule.to_brevo}
        attributes = dict(payload.attributes)
        attributes.update({name: value for name, value in overlay.attributes.items() if name in names})
        payload = dataclasses.replace(payload, attributes=attributes)
    else:
        return None
    if base is not None:
        now = brevo_content_as_sent(contact, mapping, payload.email, blacklisted=payload.email_blacklisted)
    holds = users_half.payload_digest(now) == users_half.payload_digest(payload)
    blocklists = payload.email_blacklisted is True and not contact.email_blacklisted
    return Expectation(payload, holds and not blocklists, blocklists, phone_name)
