"""Consent rules shared by every path that moves subscription state (syncs and webhook events).

Unsubscribe wins. A recorded unsubscribe is never undone by a stale subscribe; a re-subscribe
crosses to the other side only when the configuration allows it and it is newer than the
unsubscribe we know of. The last known state per email lives in the state store's field values
under the namespace CONSENT_NAMESPACE, keyed by lower-cased email:
``{"state": "unsubscribed" | "subscribed", "at": ISO-8601 UTC, "source": "braze" | "brevo"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

CONSENT_NAMESPACE = "consent"
State = Literal["unsubscribed", "subscribed"]


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    state: State
    at: datetime
    source: str

    def as_value(self) -> dict[str, Any]:
        return {"state": self.state, "at": self.at.astimezone(UTC).isoformat(), "source": self.source}

    @classmethod
    def from_value(cls, value: Any) -> ConsentRecord | None:
        if not isinstance(value, dict) or value.get("state") not in ("unsubscribed", "subscribed"):
            return None
        try:
            at = datetime.fromisoformat(str(value["at"]))
        except (KeyError, ValueError):
            return None
        return cls(value["state"], at if at.tzinfo else at.replace(tzinfo=UTC), str(value.get("source", "")))


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    propagate: bool  # write the change to the other side
    record: ConsentRecord | None  # what to store as the last known state (None: keep what is stored)
    reason: str


def braze_state_is_unsubscribed(value: Any) -> bool | None:
    """Braze `email_subscribe`: unsubscribed -> True, opted_in/subscribed -> False, else None."""
    if value == "unsubscribed":
        return True
    if value in ("opted_in", "subscribed"):
        return False
    return None


def decide(
    known: ConsentRecord | None, incoming: ConsentRecord, *, allow_resubscribe: bool
) -> ConsentDecision:
    """Whether a subscription change seen on `incoming.source` should be written to the other side."""
    if incoming.state == "unsubscribed":
        if known is not None and known.state == "unsubscribed":
            # Already unsubscribed: nothing to write, keep the earliest unsubscribe we know of.
            return ConsentDecision(False, None, "already unsubscribed")
        return ConsentDecision(True, incoming, "unsubscribe wins")
    # A subscribe.
    if known is None:
        # Nothing recorded: a subscribe is the default state on both sides; there is nothing to undo.
        return ConsentDecision(False, incoming, "subscribed; nothing to undo")
    if known.state == "subscribed":
        return ConsentDecision(False, incoming if incoming.at > known.at else None, "already subscribed")
    if not allow_resubscribe:
        return ConsentDecision(False, None, "re-subscribe not allowed by configuration (sync.allow_resubscribe)")
    if incoming.at <= known.at:
        return ConsentDecision(False, None, "stale subscribe: older than the recorded unsubscribe")
    return ConsentDecision(True, incoming, "re-subscribe newer than the unsubscribe, allowed by configuration")
