"""Pure transforms of webhook events: what one incoming event asks each vendor to do. No I/O.

Brevo webhook item (marketing, transactional, contact or order event)
    -> Braze custom events, purchases, attribute updates, deletions and consent changes
Braze Currents event, or the simple `{"type": "user.event" | "purchase", "payload": …}` form
    -> Brevo event items (`/events/batch`) and consent changes (or Braze purchases)

Everything here is deterministic: the same item always gives the same event id and the same
effects, so an event recorded now can be forwarded (or retried) later by any process.
A malformed item raises `RecordRejected` with a precise reason; a payload that is not a JSON
object or array at all raises `PayloadError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .errors import RecordRejected, UsageError
from .models import BrevoContact

Source = Literal["brevo", "braze"]
ConsentState = Literal["unsubscribed", "subscribed"]

# The name the connector's own Brevo key carries (the sandbox names it so too). Brevo stamps it as
# `api_key_name` on contact_updated / list_addition events that our writes caused: echoes to drop.
OWN_BREVO_KEY_NAME = "tajo-connector"

BREVO_EVENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
BREVO_EVENT_PROPERTIES_MAX_BYTES = 50 * 1024
NAME_MAX = 255  # Braze event/property names and string values; Brevo event names and keys
BRAZE_RESERVED_PROPERTIES = frozenset({"time", "event_name"})
BRAZE_PURCHASE_QUANTITY_MAX = 100

# Brevo events that take the contact's email away on the Braze side (unsubscribe wins).
BREVO_UNSUBSCRIBING_EVENTS = frozenset({"unsubscribed", "unsubscribe", "spam", "hard_bounce"})
BREVO_ORDER_EVENTS = frozenset(
    {
        "order",
        "order_created",
        "order_placed",
        "order_completed",
        "order_updated",
        "order_refunded",
        "order_cancelled",
        "order_canceled",
    }
)
REFUND_STATUSES = frozenset({"refunded", "refund", "cancelled", "canceled", "cancellation"})
SIMPLE_PURCHASE_TYPES = frozenset({"purchase", "order", "refund", "cancellation"})
SIMPLE_EVENT_TYPE = "user.event"

CURRENTS_GLOBAL_STATE_CHANGE = "users.behaviors.subscription.GlobalStateChange"
CURRENTS_GROUP_STATE_CHANGE = "users.behaviors.subscriptiongroup.StateChange"
CURRENTS_CUSTOM_EVENT = "users.behaviors.CustomEvent"
# Subscription changes our own REST writes caused come back with this source: echoes to drop.
CONNECTOR_STATE_CHANGE_SOURCE = "REST API"
# Set on every Braze event and purchase the connector writes: which side it came from. Currents
# streams them back out of Braze; one that came from Brevo must not be sent back there.
ORIGIN_PROPERTY = "tajo_origin"

# Brevo webhook field -> Braze event property (flat, with the campaign and message ids).
BREVO_EVENT_PROPERTIES: Mapping[str, str] = {
    "camp_id": "campaign_id",
    "campaign name": "campaign_name",
    "message-id": "message_id",
    "template_id": "template_id",
    "subject": "subject",
    "tag": "tag",
    "tags": "tags",
    "link": "link",
    "url": "link",
    "URL": "link",
    "reason": "reason",
    "list_id": "list_id",
    "sending_ip": "sending_ip",
    "X-Mailin-custom": "mailin_custom",
    "id": "brevo_webhook_id",
}
# Fields that tell two Brevo events apart. Brevo sends no event id; the reference advises
# deduplicating on (event, email, ts, camp_id / message-id).
BREVO_ID_FIELDS = (
    "event",
    "email",
    "ts_event",
    "ts_epoch",
    "ts",
    "date_event",
    "date",
    "camp_id",
    "message-id",
    "link",
    "url",
    "URL",
    "list_id",
    "content",
)
BREVO_TIME_FIELDS = ("ts_event", "ts_epoch", "ts", "date_event", "date")


class PayloadError(UsageError):
    """The whole payload is unusable (not a JSON object or array): nothing of it can be recorded."""


# ---------------------------------------------------------------- effects
@dataclass(frozen=True, slots=True)
class BrazeIdentity:
    """Who a Braze write is about: the external id when known, else the email."""

    external_id: str | None = None
    email: str | None = None

    def fields(self) -> dict[str, Any]:
        if self.external_id:
            return {"external_id": self.external_id}
        # By email only profiles that exist are touched: contacts known only to Brevo become Braze
        # users through the contacts sync (with their alias), not through a stray webhook.
        return {"email": self.email, "_update_existing_only": True}


@dataclass(frozen=True, slots=True)
class BrazeEvent:
    identity: BrazeIdentity
    name: str
    time: str  # ISO-8601 UTC
    properties: Mapping[str, Any]

    def track_object(self) -> dict[str, Any]:
        return {
            **self.identity.fields(),
            "name": self.name,
            "time": self.time,
            "properties": dict(self.properties),
        }


@dataclass(frozen=True, slots=True)
class BrazePurchase:
    """One Braze purchase object. `ledger_id` is what the purchase ledger remembers as sent."""

    ledger_id: str
    identity: BrazeIdentity
    product_id: str
    currency: str
    price: float  # negative for refunds and cancellations
    quantity: int
    time: str
    properties: Mapping[str, Any]

    def track_object(self) -> dict[str, Any]:
        return {
            **self.identity.fields(),
            "product_id": self.product_id,
            "currency": self.currency,
            "price": self.price,
            "quantity": self.quantity,
            "time": self.time,
            "properties": dict(self.properties),
        }


@dataclass(frozen=True, slots=True)
class BrazeAttributes:
    identity: BrazeIdentity
    attributes: Mapping[str, Any]

    def track_object(self) -> dict[str, Any]:
        return {**self.identity.fields(), **self.attributes}


@dataclass(frozen=True, slots=True)
class BrazeDeletion:
    identity: BrazeIdentity


@dataclass(frozen=True, slots=True)
class BrevoEvent:
    """One item of Brevo's `/events/batch` body."""

    name: str
    date: str  # ISO-8601 with an offset
    identifiers: Mapping[str, Any]
    properties: Mapping[str, Any]

    def item(self) -> dict[str, Any]:
        return {
            "event_name": self.name,
            "event_date": self.date,
            "identifiers": dict(self.identifiers),
            "event_properties": dict(self.properties),
        }


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """A subscription change seen on `source`, to be weighed by `consent.decide`."""

    email: str
    state: ConsentState
    at: datetime
    source: Source
    cause: str  # the vendor event that said so

    @property
    def key(self) -> str:
        return self.email.strip().lower()


@dataclass(frozen=True, slots=True)
class Effects:
    """Everything one incoming event asks for; `ignored` says why it asks for nothing."""

    braze_events: tuple[BrazeEvent, ...] = ()
    braze_purchases: tuple[BrazePurchase, ...] = ()
    braze_attributes: tuple[BrazeAttributes, ...] = ()
    braze_deletions: tuple[BrazeDeletion, ...] = ()
    brevo_events: tuple[BrevoEvent, ...] = ()
    consent: tuple[ConsentChange, ...] = ()
    ignored: str | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.braze_events
            or self.braze_purchases
            or self.braze_attributes
            or self.braze_deletions
            or self.brevo_events
            or self.consent
        )


def ignored(reason: str) -> Effects:
    return Effects(ignored=reason)


@dataclass(frozen=True, slots=True)
class EventRules:
    """What the configuration says about events, in the form the transforms need."""

    names: Mapping[str, str]  # Brevo webhook event (snake_case) -> Braze custom event name
    deny: frozenset[str] = frozenset()  # Braze Currents event types never forwarded to Brevo
    own_key_names: frozenset[str] = frozenset({OWN_BREVO_KEY_NAME})
    deletes: bool = False  # Brevo contact_deleted -> Braze user deletion
    # Brevo contact -> Braze attributes (the field mapping); None: contact updates carry no attributes.
    contact_attributes: Callable[[BrevoContact], Mapping[str, Any]] | None = field(
        default=None, compare=False
    )


# ---------------------------------------------------------------- small pure helpers
def _text(value: Any) -> str | None:
    value = _unwrap(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _unwrap(value: Any) -> Any:
    """Currents' Avro-style JSON wraps optional values as `{"string": "…"}`: take the value out."""
    if isinstance(value, Mapping) and len(value) == 1:
        ((kind, inner),) = value.items()
        if kind in ("string", "int", "long", "double", "float", "boolean"):
            return inner
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:32]


def snake_case(name: str) -> str:
    """`hardBounce` -> `hard_bounce`: subscription names are camelCase, payload names snake_case."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name.strip()).lower()


def normalize_brevo_event_name(name: str) -> str:
    """A name Brevo accepts (`[A-Za-z0-9_-]{1,255}`): other characters become `_`, runs collapse."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name.strip())
    cleaned = re.sub(r"_{2,}", "_", cleaned).strip("_")[:NAME_MAX].strip("_")
    if not cleaned:
        raise RecordRejected(
            f"event name {name[:60]!r} has no letter or digit Brevo could keep", field="name"
        )
    return cleaned


def braze_event_name_for(event_type: str) -> str:
    """`users.messages.email.Open` -> `braze_email_open` (families and kinds kept, plumbing dropped)."""
    parts = [p for p in event_type.split(".") if p and p not in ("users", "messages", "behaviors")]
    return normalize_brevo_event_name("braze_" + "_".join(parts).lower())


def flatten_properties(value: Mapping[str, Any], *, prefix: str = "", separator: str = "_") -> dict[str, Any]:
    """Nested objects become `parent_child` keys; None values are dropped; lists of plain values stay
    lists, lists holding objects become JSON text (neither API can segment on them anyway)."""
    out: dict[str, Any] = {}
    for raw_key, raw in value.items():
        key = f"{prefix}{separator}{raw_key}" if prefix else str(raw_key)
        item = _unwrap(raw)
        if item is None:
            continue
        if isinstance(item, Mapping):
            out.update(flatten_properties(item, prefix=key, separator=separator))
        elif isinstance(item, list | tuple):
            items = [_unwrap(v) for v in item]
            plain = all(v is None or isinstance(v, str | int | float | bool) for v in items)
            out[key] = [v for v in items if v is not None] if plain else canonical_json(items)
        else:
            out[key] = item
    return out


def brevo_properties(value: Mapping[str, Any]) -> dict[str, Any]:
    """Flat Brevo event properties with keys Brevo takes (at most 255 characters)."""
    return {key[:NAME_MAX]: item for key, item in flatten_properties(value).items() if key}


def braze_properties(value: Mapping[str, Any]) -> dict[str, Any]:
    """Flat Braze event properties: no leading `$`, reserved `time`/`event_name` renamed, names and
    string values cut to 255 characters (longer ones make Braze refuse the whole object)."""
    out: dict[str, Any] = {}
    for raw_key, item in flatten_properties(value).items():
        key = raw_key.lstrip("$")
        if key in BRAZE_RESERVED_PROPERTIES:
            key = f"source_{key}"
        key = key[:NAME_MAX]
        if not key:
            continue
        if isinstance(item, str):
            item = item[:NAME_MAX]
        elif isinstance(item, list):
            item = [v[:NAME_MAX] if isinstance(v, str) else v for v in item]
        out[key] = item
    return out


def braze_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def brevo_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_moment(value: Any) -> datetime | None:
    """An aware datetime from epoch seconds or milliseconds, or an ISO-8601 / `YYYY-MM-DD HH:MM:SS`
    text (no zone means UTC); None when unreadable."""
    value = _unwrap(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 100_000_000_000 else value  # milliseconds since 1973
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isdigit():
            return parse_moment(int(text))
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _email(value: Any) -> str | None:
    text = _text(value)
    return text if text and "@" in text else None


# ---------------------------------------------------------------- payload shape
def split_payload(source: str, payload: Any) -> list[Any]:
    """The items of one delivery: a single object, a batch (list) or a Currents `{"events": [...]}`."""
    if isinstance(payload, list | tuple):
        return list(payload)
    if not isinstance(payload, Mapping):
        kind = "nothing" if payload is None else f"a JSON {type(payload).__name__}"
        raise PayloadError(
            f"A {source} webhook payload must be a JSON object or an array of objects, not {kind}.",
            fix='Send one event object, a batch (array), or a Currents {"events": [...]} body.',
        )
    if source == "braze" and "events" in payload and "event_type" not in payload and "type" not in payload:
        events = payload["events"]
        if isinstance(events, list):
            return list(events)
        # The envelope is an object, so the delivery is accepted; the one item it holds is unusable.
        return [payload]
    return [payload]


def event_id_for(source: str, item: Any) -> str:
    """The id that makes a replay a no-op: the vendor's own id when there is one, else a stable digest."""
    if not isinstance(item, Mapping):
        raise RecordRejected(f"a {source} event must be a JSON object, not a JSON {type(item).__name__}")
    if source == "braze":
        own = _text(item.get("id"))
        if own is None and isinstance(item.get("payload"), Mapping):
            own = _text(item["payload"].get("id"))
        if own is not None:
            return own[:200]
        if "event_type" in item:
            raise RecordRejected(
                "a Currents event must carry its 'id' (it is how replays are recognised)", field="id"
            )
        return "digest:" + digest(item)
    if _is_brevo_order(item):
        return "order:" + digest(
            {k: item.get(k) for k in ("event", "id", "orderId", "status", "updatedAt", "products")}
        )
    key = {name: item[name] for name in BREVO_ID_FIELDS if name in item}
    if isinstance(key.get("email"), str):
        key["email"] = key["email"].strip().lower()
    if not any(name in key for name in BREVO_TIME_FIELDS):
        key = dict(item)  # no timestamp to tell occurrences apart: the whole item is the identity
    return digest(key)


# ---------------------------------------------------------------- Brevo -> Braze
def brevo_effects(item: Any, rules: EventRules, *, event_id: str, received_at: datetime) -> Effects:
    if not isinstance(item, Mapping):
        raise RecordRejected(f"a Brevo webhook event must be a JSON object, not a JSON {type(item).__name__}")
    key_name = _text(item.get("api_key_name"))
    if key_name is not None and key_name in rules.own_key_names:
        return ignored(f"caused by the connector's own write (Brevo API key '{key_name}')")
    if _is_brevo_order(item):
        return Effects(
            braze_purchases=brevo_order_purchases(item, event_id=event_id, received_at=received_at)
        )
    raw_event = item.get("event")
    if not isinstance(raw_event, str) or not raw_event.strip():
        raise RecordRejected(
            "a Brevo webhook event needs an 'event' name (e.g. opened, click, unsubscribed)", field="event"
        )
    event = snake_case(raw_event)
    when = _brevo_moment(item) or received_at
    if event == "contact_deleted":
        if not rules.deletes:
            return ignored("contact deletions are not propagated (sync.deletes is false)")
        return Effects(
            braze_deletions=tuple(BrazeDeletion(_brevo_identity(c)) for c in _brevo_contacts(item))
        )

    consent: list[ConsentChange] = []
    attributes: list[BrazeAttributes] = []
    if event == "contact_updated":
        for contact in _brevo_contacts(item):
            identity = _brevo_identity(contact)
            flag = contact.get("emailBlacklist", contact.get("emailBlacklisted"))
            if isinstance(flag, bool) and identity.email:
                state: ConsentState = "unsubscribed" if flag else "subscribed"
                consent.append(ConsentChange(identity.email, state, when, "brevo", event))
            if rules.contact_attributes is not None:
                mapped = dict(rules.contact_attributes(_as_contact(contact, identity)))
                if identity.external_id is None:
                    mapped.pop("email", None)  # the identifier itself, not a change
                if mapped:
                    attributes.append(BrazeAttributes(identity, mapped))
    elif event in BREVO_UNSUBSCRIBING_EVENTS:
        email = _email(item.get("email"))
        if email is None:
            raise RecordRejected(f"a Brevo '{event}' event needs the contact's 'email'", field="email")
        consent.append(ConsentChange(email, "unsubscribed", when, "brevo", event))

    events: list[BrazeEvent] = []
    braze_name = rules.names.get(event)
    if braze_name:
        properties = {target: item[name] for name, target in BREVO_EVENT_PROPERTIES.items() if name in item}
        properties["brevo_event"] = event
        properties[ORIGIN_PROPERTY] = "brevo"
        for contact in _brevo_contacts(item):
            identity = _brevo_identity(contact)
            events.append(BrazeEvent(identity, braze_name, braze_time(when), braze_properties(properties)))
    effects = Effects(braze_events=tuple(events), braze_attributes=tuple(attributes), consent=tuple(consent))
    if effects.empty:
        if event == "contact_updated":
            return ignored("the contact update carries no mapped attribute and no subscription change")
        return ignored(f"Brevo event '{event}' is not forwarded (not in events.names)")
    return effects


def _brevo_moment(item: Mapping[str, Any]) -> datetime | None:
    for name in BREVO_TIME_FIELDS:
        moment = parse_moment(item.get(name))
        if moment is not None:
            return moment
    return None


def _brevo_contacts(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Contact events list their contacts in `content`; email events are about `email`."""
    content = item.get("content")
    if isinstance(content, list) and content:
        contacts = [c for c in content if isinstance(c, Mapping)]
        if len(contacts) != len(content):
            raise RecordRejected("every entry of 'content' must be a contact object", field="content")
        return contacts
    return [item]


def _brevo_identity(contact: Mapping[str, Any]) -> BrazeIdentity:
    attributes = contact.get("attributes")
    ext_id = _text(contact.get("ext_id"))
    if ext_id is None and isinstance(attributes, Mapping):
        ext_id = _text(attributes.get("EXT_ID"))
    email = _email(contact.get("email"))
    if ext_id is None and email is None:
        raise RecordRejected(
            "the event names no contact: it has neither an email nor an EXT_ID", field="email"
        )
    return BrazeIdentity(ext_id, email)


def _as_contact(contact: Mapping[str, Any], identity: BrazeIdentity) -> BrevoContact:
    attributes = contact.get("attributes")
    return BrevoContact(
        id=0,
        email=identity.email,
        ext_id=identity.external_id,
        email_blacklisted=bool(contact.get("emailBlacklist", False)),
        sms_blacklisted=bool(contact.get("smsBlacklist", False)),
        created_at=None,
        modified_at=None,
        list_ids=(),
        attributes=dict(attributes) if isinstance(attributes, Mapping) else {},
    )


def _is_brevo_order(item: Mapping[str, Any]) -> bool:
    event = item.get("event")
    if isinstance(event, str):
        return snake_case(event) in BREVO_ORDER_EVENTS
    return isinstance(item.get("products"), list) and ("id" in item or "orderId" in item)


def brevo_order_purchases(
    item: Mapping[str, Any], *, event_id: str, received_at: datetime
) -> tuple[BrazePurchase, ...]:
    """A Brevo e-commerce order (`/orders/status` shape) -> Braze purchases, negative when refunded."""
    event = snake_case(item["event"]) if isinstance(item.get("event"), str) else ""
    status = (_text(item.get("status")) or "").lower()
    refund = status in REFUND_STATUSES or event in ("order_refunded", "order_cancelled", "order_canceled")
    identifiers = _mapping(item.get("identifiers"))
    ext_id = _text(identifiers.get("ext_id")) or _text(item.get("ext_id"))
    email = _email(identifiers.get("email_id")) or _email(item.get("email"))
    if ext_id is None and email is None:
        raise RecordRejected(
            "an order must name its buyer (identifiers.ext_id or identifiers.email_id)", field="identifiers"
        )
    meta = _mapping(item.get("metaInfo"))
    when = parse_moment(item.get("updatedAt")) or parse_moment(item.get("createdAt")) or received_at
    order_id = _text(item.get("id")) or _text(item.get("orderId"))
    return order_purchases(
        order_id=order_id,
        identity=BrazeIdentity(ext_id, email),
        lines=item.get("products"),
        currency=_text(item.get("currency")) or _text(meta.get("currency")),
        when=when,
        refund=refund,
        refund_id=_text(item.get("refund_id")),
        event_id=event_id,
        extra={"order_status": status or None, "store_id": item.get("storeId"), ORIGIN_PROPERTY: "brevo"},
    )


def order_purchases(
    *,
    order_id: str | None,
    identity: BrazeIdentity,
    lines: Any,
    currency: str | None,
    when: datetime,
    refund: bool,
    refund_id: str | None,
    event_id: str,
    extra: Mapping[str, Any] | None = None,
) -> tuple[BrazePurchase, ...]:
    """Order lines -> Braze purchases. Refunds and cancellations are negative prices. Braze takes at
    most 100 per purchase object, so bigger quantities are split; each piece gets a ledger id made
    of the order, the line and the piece, so however often the order arrives it is sent once."""
    if not isinstance(lines, list) or not lines:
        raise RecordRejected("an order needs a non-empty 'products' list", field="products")
    order_key = order_id or f"event-{event_id}"
    kind = "refund" if refund else "purchase"
    if refund and refund_id:
        order_key = f"{order_key}:{refund_id}"
    purchases: list[BrazePurchase] = []
    for line_index, line in enumerate(lines):
        if not isinstance(line, Mapping):
            raise RecordRejected(f"order line {line_index} is not an object", field="products")
        product_id = _text(line.get("productId")) or _text(line.get("product_id")) or _text(line.get("id"))
        if product_id is None or len(product_id) > NAME_MAX:
            raise RecordRejected(
                f"order line {line_index} needs a product id of at most 255 characters", field="productId"
            )
        price = line.get("price")
        if isinstance(price, bool) or not isinstance(price, int | float):
            raise RecordRejected(
                f"order line {line_index} needs a numeric 'price' (in major units)", field="price"
            )
        quantity = line.get("quantity", 1)
        if isinstance(quantity, float) and quantity.is_integer():
            quantity = int(quantity)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise RecordRejected(
                f"order line {line_index} needs a whole 'quantity' of 1 or more", field="quantity"
            )
        line_currency = _text(line.get("currency")) or currency
        if line_currency is None or not re.fullmatch(r"[A-Za-z]{3}", line_currency):
            raise RecordRejected(
                "an order needs an ISO-4217 currency ('currency' or metaInfo.currency): Braze requires one",
                field="currency",
            )
        unit_price = -abs(float(price)) if refund else float(price)
        properties = braze_properties(
            {
                "order_id": order_id,
                "variant_id": line.get("variantId"),
                "refund_id": refund_id if refund else None,
                "kind": kind,
                **(extra or {}),
                **_mapping(line.get("properties")),
            }
        )
        for piece, piece_quantity in enumerate(_pieces(quantity, BRAZE_PURCHASE_QUANTITY_MAX)):
            purchases.append(
                BrazePurchase(
                    ledger_id=f"{kind}:{order_key}:{line_index}:{piece}",
                    identity=identity,
                    product_id=product_id,
                    currency=line_currency.upper(),
                    price=unit_price,
                    quantity=piece_quantity,
                    time=braze_time(when),
                    properties=properties,
                )
            )
    return tuple(purchases)


def _pieces(total: int, size: int) -> Iterator[int]:
    while total > 0:
        yield min(total, size)
        total -= size


# ---------------------------------------------------------------- Braze -> Brevo
def braze_effects(item: Any, rules: EventRules, *, event_id: str, received_at: datetime) -> Effects:
    if not isinstance(item, Mapping):
        raise RecordRejected(f"a Braze event must be a JSON object, not a JSON {type(item).__name__}")
    if "type" in item and "event_type" not in item:
        return simple_effects("braze", item, event_id=event_id, received_at=received_at)
    if "events" in item and "event_type" not in item:
        raise RecordRejected("'events' must be a list of Currents events")
    return currents_effects(item, rules, received_at=received_at)


def currents_effects(item: Mapping[str, Any], rules: EventRules, *, received_at: datetime) -> Effects:
    """One Currents event (Custom HTTP connector envelope) -> a Brevo event or a consent change."""
    event_type = _text(item.get("event_type"))
    if event_type is None:
        raise RecordRejected("a Currents event needs its 'event_type'", field="event_type")
    event_id = _text(item.get("id"))
    if event_id is None:
        raise RecordRejected("a Currents event must carry its 'id'", field="id")
    if event_type in rules.deny:
        return ignored(f"'{event_type}' is on the deny list (events.deny)")
    user = _unwrap(item.get("user"))
    user = user if isinstance(user, Mapping) else {}
    properties = _unwrap(item.get("properties"))
    if isinstance(properties, str):
        properties = _json_object(properties, "properties")
    properties = properties if isinstance(properties, Mapping) else {}
    when = parse_moment(item.get("time")) or received_at
    ext_id = _text(user.get("external_user_id")) or _text(item.get("external_user_id"))
    email = _email(properties.get("email_address")) or _email(item.get("email_address"))

    source_of_change = _text(properties.get("state_change_source"))
    if event_type in (CURRENTS_GLOBAL_STATE_CHANGE, CURRENTS_GROUP_STATE_CHANGE) and (
        source_of_change == CONNECTOR_STATE_CHANGE_SOURCE
    ):
        return ignored("subscription change made through the REST API (the connector's own write)")
    if event_type == CURRENTS_GLOBAL_STATE_CHANGE:
        channel = (_text(properties.get("channel")) or "email").lower()
        if channel != "email":
            return ignored(f"a '{channel}' subscription change has no Brevo email counterpart")
        status = (_text(properties.get("subscription_status")) or "").lower()
        if status == "unsubscribed":
            state: ConsentState = "unsubscribed"
        elif status in ("subscribed", "opted in", "opted_in"):
            state = "subscribed"
        else:
            raise RecordRejected(f"unknown subscription_status {status!r}", field="subscription_status")
        if email is None:
            raise RecordRejected(
                "a subscription change needs the user's email_address", field="email_address"
            )
        return Effects(consent=(ConsentChange(email, state, when, "braze", event_type),))

    identifiers: dict[str, Any] = {}
    if ext_id:
        identifiers["ext_id"] = ext_id
    if email:
        identifiers["email_id"] = email
    if not identifiers:
        raise RecordRejected(
            "the event names no user Brevo knows: no external_user_id and no email_address", field="user"
        )
    if event_type == CURRENTS_CUSTOM_EVENT:
        name = _text(properties.get("name"))
        if name is None:
            raise RecordRejected("a custom event needs its 'name'", field="name")
        custom = _unwrap(properties.get("custom_properties"))
        if isinstance(custom, str):
            custom = _json_object(custom, "custom_properties")
        event_properties = brevo_properties(custom if isinstance(custom, Mapping) else {})
        event_name = normalize_brevo_event_name(name)
    else:
        event_properties = brevo_properties({k: v for k, v in properties.items() if k != "email_address"})
        event_name = braze_event_name_for(event_type)
    if event_properties.get(ORIGIN_PROPERTY) == "brevo" or any(
        key.endswith(f"_{ORIGIN_PROPERTY}") and value == "brevo" for key, value in event_properties.items()
    ):
        return ignored("an event the connector wrote into Braze from Brevo (sending it back would echo)")
    event_properties["braze_event_id"] = event_id
    event_properties["braze_event_type"] = event_type
    return Effects(brevo_events=(_brevo_event(event_name, when, identifiers, event_properties),))


def _brevo_event(
    name: str, when: datetime, identifiers: Mapping[str, Any], properties: Mapping[str, Any]
) -> BrevoEvent:
    size = len(canonical_json(properties).encode("utf-8"))
    if size > BREVO_EVENT_PROPERTIES_MAX_BYTES:
        raise RecordRejected(
            f"event properties of {size} bytes are above Brevo's 50 KB limit", field="properties"
        )
    return BrevoEvent(name, brevo_time(when), identifiers, properties)


def _json_object(text: str, name: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RecordRejected(f"'{name}' is text that is not JSON ({exc.args[0]})", field=name) from None
    if not isinstance(value, Mapping):
        raise RecordRejected(f"'{name}' must hold a JSON object", field=name)
    return value


# ---------------------------------------------------------------- the simple form
def simple_effects(source: str, item: Mapping[str, Any], *, event_id: str, received_at: datetime) -> Effects:
    """`{"type": "user.event" | "purchase" | "refund" | "cancellation", "payload": {...}}`."""
    kind = _text(item.get("type"))
    payload = item.get("payload")
    if not isinstance(payload, Mapping):
        raise RecordRejected("the simple form needs a 'payload' object", field="payload")
    when = parse_moment(payload.get("time")) or received_at
    if kind == SIMPLE_EVENT_TYPE:
        if source != "braze":
            raise RecordRejected(
                "the simple 'user.event' form carries Braze events: send it with --source braze"
            )
        name = _text(payload.get("name"))
        if name is None:
            raise RecordRejected("a user.event needs a 'name'", field="name")
        identifiers: dict[str, Any] = {}
        if _text(payload.get("external_id")):
            identifiers["ext_id"] = _text(payload.get("external_id"))
        if _email(payload.get("email")):
            identifiers["email_id"] = _email(payload.get("email"))
        if not identifiers:
            raise RecordRejected("a user.event needs an 'external_id' or an 'email'", field="external_id")
        properties = payload.get("properties")
        if properties is not None and not isinstance(properties, Mapping):
            raise RecordRejected("'properties' must be an object", field="properties")
        flat = brevo_properties(properties or {})
        return Effects(
            brevo_events=(_brevo_event(normalize_brevo_event_name(name), when, identifiers, flat),)
        )
    if kind in SIMPLE_PURCHASE_TYPES:
        ext_id = _text(payload.get("external_id"))
        email = _email(payload.get("email"))
        if ext_id is None and email is None:
            raise RecordRejected("a purchase needs an 'external_id' or an 'email'", field="external_id")
        status = (_text(payload.get("status")) or "").lower()
        refund = kind in ("refund", "cancellation") or status in REFUND_STATUSES
        lines = payload.get("products")
        if lines is None:
            lines = [payload]  # one product described by the payload itself
        return Effects(
            braze_purchases=order_purchases(
                order_id=_text(payload.get("order_id")),
                identity=BrazeIdentity(ext_id, email),
                lines=lines,
                currency=_text(payload.get("currency")),
                when=when,
                refund=refund,
                refund_id=_text(payload.get("refund_id")),
                event_id=event_id,
                extra={ORIGIN_PROPERTY: source},
            )
        )
    raise RecordRejected(
        f"unknown simple event type {kind!r}: expected user.event, purchase, refund or cancellation",
        field="type",
    )


def effects_for(
    source: str, item: Any, rules: EventRules, *, event_id: str, received_at: datetime
) -> Effects:
    """What one recorded item asks for; raises RecordRejected when it is malformed."""
    if source == "brevo":
        if isinstance(item, Mapping) and "type" in item and "event" not in item and "payload" in item:
            return simple_effects("brevo", item, event_id=event_id, received_at=received_at)
        return brevo_effects(item, rules, event_id=event_id, received_at=received_at)
    if source == "braze":
        return braze_effects(item, rules, event_id=event_id, received_at=received_at)
    raise UsageError(f"Unknown event source '{source}'.", fix="Use braze or brevo.")


def rules_from(
    names: Mapping[str, str],
    deny: Sequence[str],
    *,
    deletes: bool,
    contact_attributes: Callable[[BrevoContact], Mapping[str, Any]] | None,
    own_key_names: Sequence[str] = (OWN_BREVO_KEY_NAME,),
) -> EventRules:
    return EventRules(
        names={snake_case(k): v for k, v in names.items()},
        deny=frozenset(deny),
        own_key_names=frozenset(own_key_names),
        deletes=deletes,
        contact_attributes=contact_attributes,
    )
