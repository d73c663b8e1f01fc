"""Frozen records that cross module lines. No behaviour beyond small derived properties."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Direction = Literal["braze_to_brevo", "brevo_to_braze", "both"]
SubscriptionState = Literal["opted_in", "subscribed", "unsubscribed"]


# ---------------------------------------------------------------- Braze side
@dataclass(frozen=True, slots=True)
class BrazeUser:
    """One user as exported by Braze (segment export line or /users/export/ids item)."""

    external_id: str | None
    braze_id: str | None
    email: str | None
    phone: str | None
    data: Mapping[str, Any]  # the whole export object, fields as Braze named them


@dataclass(frozen=True, slots=True)
class TrackError:
    """One per-object error of a 2xx /users/track answer."""

    message: str
    input_array: str | None  # "attributes" | "events" | "purchases" | None when Braze gave a bare string
    index: int | None


@dataclass(frozen=True, slots=True)
class TrackResult:
    attributes_processed: int
    events_processed: int
    purchases_processed: int
    errors: tuple[TrackError, ...] = ()


@dataclass(frozen=True, slots=True)
class UserExportIdsResult:
    users: tuple[BrazeUser, ...]
    invalid_user_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SegmentExportJob:
    """What /users/export/segment answered: the URL becomes readable once the export is done."""

    segment_id: str
    url: str | None
    object_prefix: str | None


@dataclass(frozen=True, slots=True)
class Segment:
    id: str
    name: str
    analytics_tracking_enabled: bool = False
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    name: str
    last_edited: str | None = None
    is_api_campaign: bool = False
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Canvas:
    id: str
    name: str
    last_edited: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EmailAddressEvent:
    """An item of /email/hard_bounces or /email/unsubscribes."""

    email: str
    at: str | None


# ---------------------------------------------------------------- Brevo side
@dataclass(frozen=True, slots=True)
class BrevoAccount:
    email: str | None
    company_name: str | None
    plan_types: tuple[str, ...]
    timezone: str | None


@dataclass(frozen=True, slots=True)
class BrevoContact:
    id: int
    email: str | None
    ext_id: str | None
    email_blacklisted: bool
    sms_blacklisted: bool
    created_at: datetime | None
    modified_at: datetime | None
    list_ids: tuple[int, ...]
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BrevoContactPage:
    contacts: tuple[BrevoContact, ...]
    count: int


@dataclass(frozen=True, slots=True)
class BrevoAttribute:
    name: str
    category: str
    type: str | None


@dataclass(frozen=True, slots=True)
class BrevoList:
    id: int
    name: str
    folder_id: int | None


@dataclass(frozen=True, slots=True)
class BrevoFolder:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class ImportProcess:
    id: int
    name: str
    status: str  # queued | processing | in_process | completed | failed | cancelled
    counters: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class ListMembershipResult:
    success: tuple[str, ...]
    failure: tuple[str, ...]


# ---------------------------------------------------------------- mapping output
@dataclass(frozen=True, slots=True)
class ContactPayload:
    """A Braze user mapped to what Brevo should hold. `key` is the stable identity used in state."""

    key: str  # "ext:<external_id>" or "email:<lowercased email>" or "sms:<E.164>"
    email: str | None
    ext_id: str | None
    attributes: Mapping[str, Any]  # Brevo attribute name -> coerced value (SMS, EXT_ID included)
    email_blacklisted: bool | None = None  # None = Braze said nothing that must reach Brevo
    sms_blacklisted: bool | None = None


@dataclass(frozen=True, slots=True)
class BrevoEdit:
    """A field changed in Brevo since the last read, seen before the Braze -> Brevo half of a two-way run."""

    value: Any  # what Brevo holds now; None when it was cleared
    synced: Any  # what both sides last agreed on, as the Braze -> Brevo half writes it; None if unknown
    policy: str  # the field's `conflict` setting
    braze_field: str


@dataclass(frozen=True, slots=True)
class BrazeAttributesPayload:
    """A Brevo contact mapped to a /users/track attributes object (identity + changed fields)."""

    key: str
    external_id: str | None
    user_alias: Mapping[str, str] | None
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that cannot be written, with a precise reason."""

    key: str
    reason: str
    field: str | None = None


# ---------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    cause: str = ""
    fix: str = ""


@dataclass(slots=True)
class ResourceResult:
    """Counters of one resource in one run (mutable while the run goes, frozen in spirit after)."""

    resource: str
    direction: str = "braze_to_brevo"
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    api_calls: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "direction": self.direction,
            "read": self.read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": self.failed,
            "api_calls": dict(self.api_calls),
            "duration_s": round(self.duration_s, 3),
            "notes": list(self.notes),
            **({"plan": self.plan} if self.plan else {}),
        }
