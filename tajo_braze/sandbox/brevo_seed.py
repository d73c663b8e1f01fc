"""The Brevo account the sandbox serves, and how a fresh one is seeded.

`BrevoWorld` holds the account's state (contacts, attributes, lists, folders, processes,
events, webhooks, products) together with the indexes that keep every request cheap on a
million contacts: contacts by e-mail, ext_id and SMS, list members, creation order, and a
modification log for `modifiedSince` reads. Only `BrevoWorld`'s own methods change
identifiers, list membership or `modifiedAt`, so the indexes cannot drift.

Times are integer milliseconds since the epoch: Brevo renders them with millisecond
precision, and integers compare exactly with the cursors a client sends back.
"""

from __future__ import annotations

import random
import re
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

STATE_VERSION = 1

# Attributes whose values are identifiers of the contact rather than data.
IDENTIFIER_ATTRIBUTES = frozenset({"EMAIL", "SMS", "EXT_ID"})

_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
_SMS_DIGITS = re.compile(r"^\d{6,17}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# RFC 3339 date-time; the zone is mandatory (Brevo's docs ask for an explicit offset).
_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|z|[+-]\d{2}:?\d{2})?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- values


def is_valid_email(value: str) -> bool:
    return len(value) <= 254 and _EMAIL.match(value) is not None


def sms_key(value: str) -> str | None:
    """The number an SMS identifier stands for: `+33…`, `0033…` and `33…` are one contact.

    None when the value is not a phone number Brevo would accept.
    """
    digits = value.strip().replace(" ", "").replace("-", "")
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    return digits if _SMS_DIGITS.match(digits) else None


def is_iso_date(value: str) -> bool:
    if not _ISO_DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def now_ms(clock_value: float) -> int:
    return int(clock_value * 1000)


def format_ts(ms: int, utc_offset_minutes: int) -> str:
    """Brevo's production format: milliseconds and an offset (`Z` for UTC)."""
    tz = timezone(timedelta(minutes=utc_offset_minutes))
    text = datetime.fromtimestamp(ms / 1000, tz=tz).isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if utc_offset_minutes == 0 else text


def parse_ts(text: str) -> int:
    """An RFC 3339 date-time with an explicit zone, as the smallest whole millisecond at or after it.

    Rounding up keeps `modifiedSince=<a rendered modifiedAt>` inclusive of that contact.
    Raises ValueError for a value without a zone (or a `+` that arrived as a space).
    """
    match = _DATETIME.match(text.strip())
    if not match:
        raise ValueError(f"not an ISO 8601 date-time with a time zone: {text!r}")
    day, clock, fraction, zone = match.groups()
    if zone is None:
        raise ValueError(f"the date-time {text!r} has no time zone offset (use Z or +HH:MM, URL-encoded)")
    zone = "+00:00" if zone in ("Z", "z") else zone
    if ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    moment = datetime.fromisoformat(f"{day}T{clock}.{micro}{zone}")
    total_us = (moment - _EPOCH) // timedelta(microseconds=1)
    return -((-total_us) // 1000)


# --------------------------------------------------------------------------- records


@dataclass(slots=True)
class Contact:
    id: int
    email: str | None
    attributes: dict[str, Any]  # EXT_ID and SMS live here, as Brevo returns them
    email_blacklisted: bool = False
    sms_blacklisted: bool = False
    created_ms: int = 0
    modified_ms: int = 0
    # Tuples, not sets: most contacts are in no list, and () costs nothing.
    list_ids: tuple[int, ...] = ()
    list_unsubscribed: tuple[int, ...] = ()

    @property
    def ext_id(self) -> str | None:
        value = self.attributes.get("EXT_ID")
        return value if isinstance(value, str) else None

    @property
    def sms(self) -> str | None:
        value = self.attributes.get("SMS")
        return value if isinstance(value, str) else None


@dataclass(slots=True)
class AttributeDef:
    name: str
    category: str  # normal | transactional | category | calculated | global
    type: str | None  # text | date | float | boolean | id | category | multiple-choice | user
    enumeration: tuple[tuple[int, str], ...] = ()
    options: tuple[str, ...] = ()  # multiple-choice
    system: bool = False  # created with the account (EMAIL, SMS, EXT_ID, …)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "category": self.category}
        if self.type is not None:
            out["type"] = self.type
        if self.enumeration:
            out["enumeration"] = [{"value": v, "label": label} for v, label in self.enumeration]
        if self.options:
            out["multiCategoryOptions"] = list(self.options)
        return out


@dataclass(slots=True)
class Folder:
    id: int
    name: str


@dataclass(slots=True)
class ContactList:
    id: int
    name: str
    folder_id: int
    created_ms: int


@dataclass(slots=True)
class Process:
    """An asynchronous job (`IMPORTUSER`, …). `payload` holds an import until it is applied."""

    id: int
    name: str
    created_ms: int
    due_ms: int
    completed_ms: int | None = None
    counters: dict[str, int] = field(default_factory=dict)  # Brevo's info.import counters
    stats: dict[str, Any] = field(default_factory=dict)  # what the sandbox saw (rows received, …)
    duplicate_emails: list[str] = field(default_factory=list)
    payload: dict[str, Any] | None = None


@dataclass(slots=True)
class Webhook:
    id: int
    url: str
    events: list[str]
    type: str
    description: str
    channel: str
    batched: bool
    created_ms: int
    modified_ms: int
    # The shape of the receiver's auth and headers (their secret values are not kept).
    auth: dict[str, Any] | None = None
    headers: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------- the world


@dataclass
class BrevoWorld:
    account: dict[str, Any]
    utc_offset_minutes: int = 60
    contacts: dict[int, Contact] = field(default_factory=dict)  # insertion order = creation order
    by_email: dict[str, int] = field(default_factory=dict)  # lower-cased e-mail -> id
    by_ext_id: dict[str, int] = field(default_factory=dict)
    by_sms: dict[str, int] = field(default_factory=dict)  # sms_key() -> id
    attributes: dict[str, AttributeDef] = field(default_factory=dict)  # upper-cased name -> def
    folders: dict[int, Folder] = field(default_factory=dict)
    lists: dict[int, ContactList] = field(default_factory=dict)
    list_members: dict[int, set[int]] = field(default_factory=dict)
    processes: dict[int, Process] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    webhooks: dict[int, Webhook] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_contact_id: int = 1
    next_list_id: int = 1
    next_folder_id: int = 1
    next_process_id: int = 1
    next_webhook_id: int = 1
    # Bumped on every change; readers cache query results against it.
    version: int = 0
    _roster: list[int] | None = field(default=None, repr=False)
    # Append-only (modifiedAt, id) log; an entry is live while the contact still has that modifiedAt.
    _log_ms: array[int] = field(default_factory=lambda: array("q"), repr=False)
    _log_ids: array[int] = field(default_factory=lambda: array("q"), repr=False)
    _log_sorted: bool = field(default=True, repr=False)

    # ---- lookups

    def contact_by_email(self, email: str) -> Contact | None:
        cid = self.by_email.get(email.lower())
        return None if cid is None else self.contacts.get(cid)

    def contact_by_ext_id(self, ext_id: str) -> Contact | None:
        cid = self.by_ext_id.get(ext_id)
        return None if cid is None else self.contacts.get(cid)

    def contact_by_sms(self, sms: str) -> Contact | None:
        key = sms_key(sms)
        cid = None if key is None else self.by_sms.get(key)
        return None if cid is None else self.contacts.get(cid)

    def attribute(self, name: str) -> AttributeDef | None:
        return self.attributes.get(name.upper())

    def roster(self) -> list[int]:
        """Every contact id in creation order (cached until a contact is created or deleted)."""
        if self._roster is None:
            self._roster = list(self.contacts)
        return self._roster

    def modified_since_bound(self, since_ms: int) -> int:
        """At most how many contacts changed at or after `since_ms` (a cheap upper bound)."""
        if not self._log_sorted:
            self._rebuild_log()
        return len(self._log_ms) - bisect_left(self._log_ms, since_ms)

    def modified_since(self, since_ms: int) -> set[int]:
        """Ids of contacts whose modifiedAt is at or after `since_ms`, without scanning all contacts."""
        if not self._log_sorted:
            self._rebuild_log()
        start = bisect_left(self._log_ms, since_ms)
        found: set[int] = set()
        contacts = self.contacts
        for at, cid in zip(self._log_ms[start:], self._log_ids[start:], strict=True):
            contact = contacts.get(cid)
            if contact is not None and contact.modified_ms == at:
                found.add(cid)
        return found

    # ---- changes (the only code that touches indexes)

    def add_contact(self, contact: Contact) -> None:
        self.contacts[contact.id] = contact
        self.next_contact_id = max(self.next_contact_id, contact.id + 1)
        if contact.email is not None:
            self.by_email[contact.email.lower()] = contact.id
        ext_id = contact.attributes.get("EXT_ID")
        if isinstance(ext_id, str):
            self.by_ext_id[ext_id] = contact.id
        sms = contact.attributes.get("SMS")
        if isinstance(sms, str):
            key = sms_key(sms)
            if key is not None:
                self.by_sms[key] = contact.id
        for list_id in contact.list_ids:
            self.list_members.setdefault(list_id, set()).add(contact.id)
        self._roster = None
        self._log(contact)

    def add_contacts(self, contacts: Iterable[Contact]) -> None:
        """Insert many contacts at once (seeding, snapshots): the same indexes as add_contact,
        without its per-contact overhead; the modification log is sorted on first use."""
        store, by_email, by_ext_id, by_sms = self.contacts, self.by_email, self.by_ext_id, self.by_sms
        members = self.list_members
        log_ms, log_ids = self._log_ms, self._log_ids
        top = self.next_contact_id - 1
        for contact in contacts:
            cid = contact.id
            store[cid] = contact
            top = max(top, cid)
            if contact.email is not None:
                by_email[contact.email.lower()] = cid
            attributes = contact.attributes
            ext_id = attributes.get("EXT_ID")
            if isinstance(ext_id, str):
                by_ext_id[ext_id] = cid
            sms = attributes.get("SMS")
            if isinstance(sms, str):
                key = sms_key(sms)
                if key is not None:
                    by_sms[key] = cid
            for list_id in contact.list_ids:
                members.setdefault(list_id, set()).add(cid)
            log_ms.append(contact.modified_ms)
            log_ids.append(cid)
        self.next_contact_id = top + 1
        self._log_sorted = False
        self._roster = None
        self.version += 1

    def remove_contact(self, contact: Contact) -> None:
        del self.contacts[contact.id]
        if contact.email is not None:
            self.by_email.pop(contact.email.lower(), None)
        if contact.ext_id is not None:
            self.by_ext_id.pop(contact.ext_id, None)
        if contact.sms is not None:
            key = sms_key(contact.sms)
            if key is not None:
                self.by_sms.pop(key, None)
        for list_id in contact.list_ids:
            self.list_members.get(list_id, set()).discard(contact.id)
        self._roster = None
        self.version += 1

    def set_email(self, contact: Contact, email: str | None) -> None:
        if contact.email is not None:
            self.by_email.pop(contact.email.lower(), None)
        contact.email = None if email is None else email.lower()
        if contact.email is not None:
            self.by_email[contact.email] = contact.id
        self.version += 1

    def set_ext_id(self, contact: Contact, ext_id: str | None) -> None:
        old = contact.ext_id
        if old is not None:
            self.by_ext_id.pop(old, None)
        if ext_id is None:
            contact.attributes.pop("EXT_ID", None)
        else:
            contact.attributes["EXT_ID"] = ext_id
            self.by_ext_id[ext_id] = contact.id
        self.version += 1

    def set_sms(self, contact: Contact, sms: str | None) -> None:
        old = contact.sms
        if old is not None:
            old_key = sms_key(old)
            if old_key is not None:
                self.by_sms.pop(old_key, None)
        if sms is None:
            contact.attributes.pop("SMS", None)
        else:
            contact.attributes["SMS"] = sms
            key = sms_key(sms)
            if key is not None:
                self.by_sms[key] = contact.id
        self.version += 1

    def add_to_list(self, contact: Contact, list_id: int) -> bool:
        if list_id in contact.list_ids:
            return False
        contact.list_ids = (*contact.list_ids, list_id)
        self.list_members.setdefault(list_id, set()).add(contact.id)
        self.version += 1
        return True

    def remove_from_list(self, contact: Contact, list_id: int) -> bool:
        if list_id not in contact.list_ids:
            return False
        contact.list_ids = tuple(x for x in contact.list_ids if x != list_id)
        self.list_members.get(list_id, set()).discard(contact.id)
        self.version += 1
        return True

    def touch(self, contact: Contact, at_ms: int) -> None:
        """Record that the contact changed at `at_ms` (Brevo bumps modifiedAt even on no-op writes)."""
        contact.modified_ms = at_ms
        self._log(contact)

    def delete_list(self, list_id: int) -> None:
        for cid in self.list_members.pop(list_id, set()):
            contact = self.contacts.get(cid)
            if contact is not None:
                contact.list_ids = tuple(x for x in contact.list_ids if x != list_id)
        self.lists.pop(list_id, None)
        self.version += 1

    def _log(self, contact: Contact) -> None:
        if self._log_ms and contact.modified_ms < self._log_ms[-1]:
            self._log_sorted = False  # seeding, a clock moved back: sort once on the next read
        self._log_ms.append(contact.modified_ms)
        self._log_ids.append(contact.id)
        self.version += 1
        if len(self._log_ms) > 2 * len(self.contacts) + 4096:
            self._rebuild_log()

    def _rebuild_log(self) -> None:
        pairs = sorted((c.modified_ms, c.id) for c in self.contacts.values())
        self._log_ms = array("q", (at for at, _ in pairs))
        self._log_ids = array("q", (cid for _, cid in pairs))
        self._log_sorted = True

    # ---- snapshot

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot, detached from the live state (a server may serialise it while
        requests keep changing the account); indexes are rebuilt on load rather than stored."""
        return {
            "version": STATE_VERSION,
            "account": self.account,
            "utc_offset_minutes": self.utc_offset_minutes,
            "next_ids": {
                "contact": self.next_contact_id,
                "list": self.next_list_id,
                "folder": self.next_folder_id,
                "process": self.next_process_id,
                "webhook": self.next_webhook_id,
            },
            "attributes": [
                {
                    "name": a.name,
                    "category": a.category,
                    "type": a.type,
                    "enumeration": [list(e) for e in a.enumeration],
                    "options": list(a.options),
                    "system": a.system,
                }
                for a in self.attributes.values()
            ],
            "folders": [[f.id, f.name] for f in self.folders.values()],
            "lists": [[li.id, li.name, li.folder_id, li.created_ms] for li in self.lists.values()],
            "contacts": [
                [
                    c.id,
                    c.email,
                    dict(c.attributes),
                    c.email_blacklisted,
                    c.sms_blacklisted,
                    c.created_ms,
                    c.modified_ms,
                    list(c.list_ids),
                    list(c.list_unsubscribed),
                ]
                for c in self.contacts.values()
            ],
            "processes": [
                {
                    "id": p.id,
                    "name": p.name,
                    "created_ms": p.created_ms,
                    "due_ms": p.due_ms,
                    "completed_ms": p.completed_ms,
                    "counters": dict(p.counters),
                    "stats": dict(p.stats),
                    "duplicate_emails": list(p.duplicate_emails),
                    "payload": p.payload,
                }
                for p in self.processes.values()
            ],
            "events": [dict(e) for e in self.events],
            "webhooks": [
                {
                    "id": w.id,
                    "url": w.url,
                    "events": w.events,
                    "type": w.type,
                    "description": w.description,
                    "channel": w.channel,
                    "batched": w.batched,
                    "created_ms": w.created_ms,
                    "modified_ms": w.modified_ms,
                    "auth": w.auth,
                    "headers": w.headers,
                }
                for w in self.webhooks.values()
            ],
            "products": [dict(p) for p in self.products.values()],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BrevoWorld:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported Brevo state version {state.get('version')!r}")
        world = cls(account=dict(state["account"]), utc_offset_minutes=int(state["utc_offset_minutes"]))
        for a in state["attributes"]:
            world.attributes[a["name"].upper()] = AttributeDef(
                name=a["name"],
                category=a["category"],
                type=a["type"],
                enumeration=tuple((int(v), str(label)) for v, label in a["enumeration"]),
                options=tuple(a["options"]),
                system=bool(a["system"]),
            )
        for fid, name in state["folders"]:
            world.folders[fid] = Folder(fid, name)
        for lid, name, folder_id, created_ms in state["lists"]:
            world.lists[lid] = ContactList(lid, name, folder_id, created_ms)
            world.list_members[lid] = set()
        world.add_contacts(
            Contact(cid, email, dict(attrs), eb, sb, created_ms, modified_ms, tuple(list_ids), tuple(unsub))
            for cid, email, attrs, eb, sb, created_ms, modified_ms, list_ids, unsub in state["contacts"]
        )
        for p in state["processes"]:
            world.processes[p["id"]] = Process(
                id=p["id"],
                name=p["name"],
                created_ms=p["created_ms"],
                due_ms=p["due_ms"],
                completed_ms=p["completed_ms"],
                counters=dict(p["counters"]),
                stats=dict(p["stats"]),
                duplicate_emails=list(p["duplicate_emails"]),
                payload=p["payload"],
            )
        world.events = [dict(e) for e in state["events"]]
        for w in state["webhooks"]:
            world.webhooks[w["id"]] = Webhook(**w)
        world.products = {p["id"]: dict(p) for p in state["products"]}
        ids = state["next_ids"]
        world.next_contact_id = max(world.next_contact_id, int(ids["contact"]))
        world.next_list_id = int(ids["list"])
        world.next_folder_id = int(ids["folder"])
        world.next_process_id = int(ids["process"])
        world.next_webhook_id = int(ids["webhook"])
        return world


# --------------------------------------------------------------------------- seeding

_FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas",
    "Kira", "Liam", "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tess",
    "Ugo", "Vera", "Wen", "Yara", "Zoe",
)  # fmt: skip
_LAST_NAMES = (
    "Martin", "Bernard", "Dubois", "Garcia", "Muller", "Rossi", "Smith", "Nowak", "Silva",
    "Kowalski", "Jensen", "Novak", "Costa", "Weber", "Moreau", "Laurent", "Petit", "Horvat",
)  # fmt: skip
_COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Vandelay")
_DOMAINS = ("inbox.example", "mailbox.example", "post.example")

NEWSLETTER_LIST_ID = 2
CUSTOMERS_LIST_ID = 3
MARKETING_FOLDER_ID = 1

# Shared tuples: a million contacts in the same lists need not hold a million copies.
_SEED_MEMBERSHIPS: dict[tuple[bool, bool], tuple[int, ...]] = {
    (False, False): (),
    (True, False): (NEWSLETTER_LIST_ID,),
    (False, True): (CUSTOMERS_LIST_ID,),
    (True, True): (NEWSLETTER_LIST_ID, CUSTOMERS_LIST_ID),
}
_DAY_MS = 86_400_000
_SEED_SPAN_MS = 365 * _DAY_MS


def default_account() -> dict[str, Any]:
    return {
        "organization_id": "5f0c0ffee0ddba11deadbeef",
        "user_id": 1_000_001,
        "enterprise": False,
        "email": "owner@tajo.example",
        "firstName": "Sandbox",
        "lastName": "Owner",
        "companyName": "Tajo Sandbox",
        "address": {"city": "Paris", "country": "France", "street": "1 rue de la Paix", "zipCode": "75002"},
        "dateTimePreferences": {"timezone": "Europe/Paris", "timeFormat": "24", "dateFormat": "dd-mm-yyyy"},
        "marketingAutomation": {"enabled": True, "key": "ma-sandbox-tracker"},
        "plan": [
            {
                "type": "subscription",
                "creditsType": "sendLimit",
                "credits": 20000,
                "startDate": "2026-01-01",
                "endDate": "2027-01-01",
            }
        ],
        "planVerticals": [
            {
                "planCategory": "Marketing",
                "planType": "business",
                "name": "Business",
                "status": "active",
                "startDate": "2026-01-01",
                "endDate": "2027-01-01",
                "users": {"purchasedSeats": "1", "usedSeats": "1"},
                "credits": "20000",
            }
        ],
        "relay": {
            "enabled": True,
            "data": {"relay": "smtp-relay.brevo.com", "port": 587, "userName": "sandbox"},
        },
    }


def default_attributes() -> dict[str, AttributeDef]:
    """The account's attributes at start. The connector's own (BRAZE_ID, …) are left for `install`."""
    defs = [
        AttributeDef("EMAIL", "normal", "text", system=True),
        AttributeDef("SMS", "normal", "text", system=True),
        AttributeDef("FIRSTNAME", "normal", "text", system=True),
        AttributeDef("LASTNAME", "normal", "text", system=True),
        AttributeDef("EXT_ID", "normal", "text", system=True),
        AttributeDef("COMPANY", "normal", "text"),
        AttributeDef("SCORE", "normal", "float"),
        AttributeDef("OPT_IN_DATE", "normal", "date"),
        AttributeDef("IS_CUSTOMER", "normal", "boolean"),
    ]
    return {d.name: d for d in defs}


@dataclass(frozen=True, slots=True)
class _Planned:
    email: str | None
    ext_id: str | None
    first_name: str
    last_name: str


def seed_brevo_world(
    n_contacts: int,
    seed: int,
    overlap: Sequence[tuple[str | None, str | None]],
    *,
    now: float | None = None,
    utc_offset_minutes: int = 60,
) -> BrevoWorld:
    """A Brevo account with `n_contacts` contacts, the same for the same arguments.

    `overlap` lists (email, external_id) pairs of Braze users that also exist in Brevo: each
    becomes a contact, some with EXT_ID set and some known by e-mail only (the connector must
    link those by e-mail). Brevo-only contacts make up the rest. Timestamps lie in the year
    before `now` (default: the current time), in creation order.
    """
    rng = random.Random(seed)
    now_at = now_ms(time.time() if now is None else now)
    world = BrevoWorld(account=default_account(), utc_offset_minutes=utc_offset_minutes)
    world.attributes = default_attributes()
    start_ms = now_at - _SEED_SPAN_MS

    world.folders[MARKETING_FOLDER_ID] = Folder(MARKETING_FOLDER_ID, "Marketing")
    for list_id, name in ((NEWSLETTER_LIST_ID, "Newsletter"), (CUSTOMERS_LIST_ID, "Customers")):
        world.lists[list_id] = ContactList(list_id, name, MARKETING_FOLDER_ID, start_ms - _DAY_MS)
        world.list_members[list_id] = set()
    world.next_folder_id = MARKETING_FOLDER_ID + 1
    world.next_list_id = CUSTOMERS_LIST_ID + 1

    planned = list(_plan_contacts(n_contacts, overlap, rng))
    rng.shuffle(planned)  # Braze users and Brevo-only contacts were created interleaved
    total = len(planned)
    step = _SEED_SPAN_MS / max(total, 1)
    world.add_contacts(
        _seed_contact(index + 1, plan, start_ms + int(index * step), now_at, rng)
        for index, plan in enumerate(planned)
    )

    world.processes[1] = Process(
        id=1,
        name="IMPORTUSER",
        created_ms=start_ms,
        due_ms=start_ms,
        completed_ms=start_ms + 60_000,
        counters=zero_import_counters(),
        stats={"rows_received": total, "created": total, "updated": 0},
    )
    world.next_process_id = 2
    world.webhooks[1] = Webhook(
        id=1,
        url="https://hooks.tajo.example/brevo/marketing",
        events=["unsubscribed", "hardBounce", "spam"],
        type="marketing",
        description="Existing marketing webhook",
        channel="email",
        batched=False,
        created_ms=start_ms,
        modified_ms=start_ms,
    )
    world.next_webhook_id = 2
    world.version = 0
    return world


def zero_import_counters() -> dict[str, int]:
    """Brevo's `info.import` counters, all zero."""
    return {
        "invalid_emails": 0,
        "duplicate_contact_id": 0,
        "duplicate_ext_id": 0,
        "duplicate_email_id": 0,
        "duplicate_phone_id": 0,
        "duplicate_whatsapp_id": 0,
        "duplicate_landline_number_id": 0,
    }


def _day(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).date().isoformat()


def _pick(rng: random.Random, choices: Sequence[str]) -> str:
    # random.choice costs three times as much, which shows when seeding a million contacts.
    return choices[int(rng.random() * len(choices))]


def _plan_contacts(
    n_contacts: int, overlap: Sequence[tuple[str | None, str | None]], rng: random.Random
) -> Iterator[_Planned]:
    seen_emails: set[str] = set()
    seen_ext: set[str] = set()
    shared = 0
    for email, ext_id in overlap:
        email_l = email.lower() if email else None
        if email_l in seen_emails:
            email_l = None
        if ext_id in seen_ext:
            ext_id = None
        if email_l is None and ext_id is None:
            continue
        # Four in ten shared contacts were imported by e-mail only: no EXT_ID yet.
        if email_l is not None and ext_id is not None and rng.random() < 0.4:
            ext_id = None
        if email_l is not None:
            seen_emails.add(email_l)
        if ext_id is not None:
            seen_ext.add(ext_id)
        shared += 1
        # Names picked on the Brevo side: they may disagree with Braze's, as in real accounts.
        yield _Planned(email_l, ext_id, _pick(rng, _FIRST_NAMES), _pick(rng, _LAST_NAMES))
    for i in range(max(0, n_contacts - shared)):
        first = _pick(rng, _FIRST_NAMES)
        last = _pick(rng, _LAST_NAMES)
        # Some marketers' contacts use plus-addressing: it must survive URL encoding.
        tag = f"+news{i}" if rng.random() < 0.1 else str(i)
        email = f"{first}.{last}{tag}@{_pick(rng, _DOMAINS)}".lower()
        while email in seen_emails:
            email = f"{first}.{last}.{i}.{rng.randrange(10**6)}@{_pick(rng, _DOMAINS)}".lower()
        seen_emails.add(email)
        yield _Planned(email, None, first, last)


def _seed_contact(cid: int, plan: _Planned, created_ms: int, now_at: int, rng: random.Random) -> Contact:
    attrs: dict[str, Any] = {"FIRSTNAME": plan.first_name, "LASTNAME": plan.last_name}
    if plan.ext_id is not None:
        attrs["EXT_ID"] = plan.ext_id
    has_sms = rng.random() < 0.4
    if has_sms:
        # A German mobile range per contact id: unique, and apart from the Braze side's numbers.
        attrs["SMS"] = f"+4915{cid:09d}"
    if rng.random() < 0.5:
        attrs["COMPANY"] = _pick(rng, _COMPANIES)
    if rng.random() < 0.3:
        attrs["SCORE"] = round(rng.uniform(0, 100), 1)
    if rng.random() < 0.4:
        attrs["OPT_IN_DATE"] = _day(created_ms)
    newsletter = rng.random() < 0.3
    customer = rng.random() < 0.15
    if customer:
        attrs["IS_CUSTOMER"] = True
    elif rng.random() < 0.2:
        attrs["IS_CUSTOMER"] = False
    # Half the contacts were edited after creation, at some point before now.
    modified = created_ms if rng.random() < 0.5 else created_ms + int(rng.random() * (now_at - created_ms))
    return Contact(
        id=cid,
        email=plan.email,
        attributes=attrs,
        email_blacklisted=rng.random() < 0.05,
        sms_blacklisted=has_sms and rng.random() < 0.03,
        created_ms=created_ms,
        modified_ms=modified,
        list_ids=_SEED_MEMBERSHIPS[newsletter, customer],
    )
