"""Pure transforms of webhook events: ids, names, properties, effects. No HTTP."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tajo_braze.config import DEFAULT_EVENT_DENY, DEFAULT_EVENT_NAMES, Secret
from tajo_braze.errors import (
    AuthError,
    ConnectionFailed,
    PermanentApiError,
    RateLimited,
    RecordRejected,
    TransientApiError,
    UsageError,
)
from tajo_braze.event_mapping import (
    BREVO_EVENT_NAME,
    BrazeIdentity,
    EventRules,
    PayloadError,
    braze_event_name_for,
    braze_properties,
    effects_for,
    event_id_for,
    flatten_properties,
    normalize_brevo_event_name,
    parse_moment,
    rules_from,
    snake_case,
    split_payload,
)
from tajo_braze.events import classify
from tajo_braze.models import BrevoContact
from tajo_braze.webhooks import Credentials

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def attributes_of(contact: BrevoContact) -> dict[str, Any]:
    return {"first_name": contact.attributes["FIRSTNAME"]} if "FIRSTNAME" in contact.attributes else {}


RULES = rules_from(DEFAULT_EVENT_NAMES, DEFAULT_EVENT_DENY, deletes=False, contact_attributes=attributes_of)
RULES_WITH_DELETES = rules_from(
    DEFAULT_EVENT_NAMES, DEFAULT_EVENT_DENY, deletes=True, contact_attributes=None
)


def effects(source: str, item: Any, rules: EventRules = RULES) -> Any:
    return effects_for(source, item, rules, event_id=event_id_for(source, item), received_at=NOW)


def opened(**extra: Any) -> dict[str, Any]:
    return {
        "id": 1234,
        "camp_id": 56,
        "email": "Ana@Example.com",
        "campaign name": "Spring",
        "event": "opened",
        "ts_sent": 1714557000,
        "ts_event": 1714557600,
        "ts": 1714557601,
        **extra,
    }


def currents(event_type: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "id": "evt-1",
        "time": 1714557600,
        "user": {"user_id": "b1", "external_user_id": "u-1"},
        "properties": properties,
        **extra,
    }


# ---------------------------------------------------------------- names and properties
def test_event_names_are_normalised_to_brevo_rules() -> None:
    assert normalize_brevo_event_name("Added to Cart!") == "Added_to_Cart"
    assert normalize_brevo_event_name("order.shipped") == "order_shipped"
    assert normalize_brevo_event_name("x" * 300) == "x" * 255
    with pytest.raises(RecordRejected, match="no letter or digit"):
        normalize_brevo_event_name("  ...  ")
    assert braze_event_name_for("users.messages.email.Open") == "braze_email_open"
    assert braze_event_name_for("users.behaviors.Purchase") == "braze_purchase"


@given(st.text(max_size=400))
def test_a_normalised_name_is_always_valid_or_refused_with_a_reason(name: str) -> None:
    try:
        result = normalize_brevo_event_name(name)
    except RecordRejected as exc:
        assert "no letter or digit" in exc.reason
    else:
        assert BREVO_EVENT_NAME.match(result)


def test_subscription_names_in_camel_case_become_payload_names() -> None:
    assert snake_case("hardBounce") == "hard_bounce"
    assert snake_case("listAddition") == "list_addition"
    assert snake_case("opened") == "opened"


def test_nested_properties_are_flattened() -> None:
    flat = flatten_properties(
        {
            "cart": {"total": 12.5, "items": [{"sku": "A"}], "tags": ["a", None, "b"]},
            "gone": None,
            "n": {"string": "x"},
        }
    )
    assert flat == {"cart_total": 12.5, "cart_items": '[{"sku":"A"}]', "cart_tags": ["a", "b"], "n": "x"}


def test_braze_properties_avoid_reserved_and_operator_names() -> None:
    props = braze_properties({"time": 1, "event_name": "x", "$add": 2, "long": "y" * 300, "": 3})
    assert props == {"source_time": 1, "source_event_name": "x", "add": 2, "long": "y" * 255}


def test_moments_from_epochs_and_texts() -> None:
    assert parse_moment(1714557600) == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert parse_moment(1714557600123) == datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert parse_moment("2024-05-01 10:00:00") == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert parse_moment("2024-05-01T12:00:00+02:00") == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert parse_moment("soon") is None and parse_moment(True) is None


# ---------------------------------------------------------------- payload shape and ids
def test_payload_shapes() -> None:
    assert split_payload("brevo", {"event": "opened"}) == [{"event": "opened"}]
    assert split_payload("brevo", [{"a": 1}, {"b": 2}]) == [{"a": 1}, {"b": 2}]
    assert split_payload("braze", {"events": [{"id": "1"}, {"id": "2"}]}) == [{"id": "1"}, {"id": "2"}]
    for bad in ("text", 42, None, True):
        with pytest.raises(PayloadError) as caught:
            split_payload("braze", bad)
        assert isinstance(caught.value, UsageError)


def test_brevo_ids_are_stable_and_tell_events_apart() -> None:
    first = event_id_for("brevo", opened())
    same_reordered = event_id_for("brevo", dict(reversed(list(opened().items()))))
    assert first == same_reordered
    assert event_id_for("brevo", opened(email="ana@example.com")) == first  # email case does not matter
    assert event_id_for("brevo", opened(id=999)) == first  # the webhook's own id is not the event's
    assert event_id_for("brevo", opened(ts_event=1714557700, ts=1714557701)) != first
    assert event_id_for("brevo", opened(event="click", link="https://x.io")) != first


def test_braze_ids_come_from_the_event() -> None:
    assert event_id_for("braze", currents("users.messages.email.Open", {})) == "evt-1"
    simple = {"type": "user.event", "payload": {"external_id": "u-1", "name": "x"}}
    assert event_id_for("braze", simple) == event_id_for("braze", json.loads(json.dumps(simple)))
    with pytest.raises(RecordRejected, match="'id'"):
        event_id_for("braze", {"event_type": "users.messages.email.Open"})


# ---------------------------------------------------------------- Brevo -> Braze
def test_an_open_becomes_a_braze_custom_event_with_flat_campaign_properties() -> None:
    result = effects("brevo", opened(**{"message-id": "<m1@x>", "tags": ["spring"]}))
    [event] = result.braze_events
    assert event.name == "brevo_email_opened"
    assert event.time == "2024-05-01T10:00:00Z"
    assert event.identity == BrazeIdentity(None, "Ana@Example.com")
    assert event.properties["campaign_id"] == 56 and event.properties["campaign_name"] == "Spring"
    assert event.properties["message_id"] == "<m1@x>" and event.properties["tags"] == ["spring"]
    assert result.consent == () and result.ignored is None
    track = event.track_object()
    assert track["email"] == "Ana@Example.com" and track["_update_existing_only"] is True


def test_unsubscribe_spam_and_hard_bounce_also_change_consent() -> None:
    for name in ("unsubscribed", "spam", "hardBounce"):
        result = effects("brevo", opened(event=name))
        [change] = result.consent
        assert change.state == "unsubscribed" and change.source == "brevo"
        assert change.key == "ana@example.com" and change.at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
        assert len(result.braze_events) == 1


def test_echoes_of_the_connectors_own_writes_are_ignored() -> None:
    item = {
        "event": "contact_updated",
        "ts": 1,
        "api_key_name": "tajo-connector",
        "content": [{"email": "a@x.io", "emailBlacklist": True}],
    }
    assert effects("brevo", item).ignored is not None
    item["api_key_name"] = "marketing-team"
    assert effects("brevo", item).consent[0].state == "unsubscribed"


def test_events_not_configured_are_ignored_and_malformed_ones_refused() -> None:
    assert "not in events.names" in (effects("brevo", opened(event="unique_opened")).ignored or "")
    with pytest.raises(RecordRejected, match="'event'"):
        effects("brevo", {"email": "a@x.io"})
    with pytest.raises(RecordRejected, match="email"):
        effects("brevo", {"event": "unsubscribed", "ts": 1})
    with pytest.raises(RecordRejected, match="JSON object"):
        effects("brevo", ["not", "an", "object"])


def test_contact_updates_carry_mapped_attributes_and_consent() -> None:
    item = {
        "event": "contact_updated",
        "ts": 1714557600,
        "content": [
            {"email": "a@x.io", "attributes": {"EXT_ID": "u-9", "FIRSTNAME": "Ann"}, "emailBlacklist": False}
        ],
    }
    result = effects("brevo", item)
    [attrs] = result.braze_attributes
    assert attrs.track_object() == {"external_id": "u-9", "first_name": "Ann"}
    assert result.consent[0].state == "subscribed"


def test_deletions_only_when_enabled() -> None:
    item = {
        "event": "contact_deleted",
        "ts": 1,
        "content": [{"email": "a@x.io", "attributes": {"EXT_ID": "u-3"}}],
    }
    assert "sync.deletes" in (effects("brevo", item).ignored or "")
    [deletion] = effects("brevo", item, RULES_WITH_DELETES).braze_deletions
    assert deletion.identity.external_id == "u-3"


# ---------------------------------------------------------------- purchases
def order(status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {
        "event": "order_completed" if status == "completed" else "order_refunded",
        "id": "o-1",
        "status": status,
        "updatedAt": "2024-05-01T10:00:00Z",
        "identifiers": {"ext_id": "u-1"},
        "currency": "eur",
        "products": [
            {"productId": "sku-1", "price": 19.99, "quantity": 2},
            {"productId": "sku-2", "price": 5},
        ],
        **extra,
    }


def test_an_order_becomes_braze_purchases_with_ledger_ids() -> None:
    purchases = effects("brevo", order()).braze_purchases
    assert [(p.product_id, p.price, p.quantity, p.currency) for p in purchases] == [
        ("sku-1", 19.99, 2, "EUR"),
        ("sku-2", 5.0, 1, "EUR"),
    ]
    assert [p.ledger_id for p in purchases] == ["purchase:o-1:0:0", "purchase:o-1:1:0"]
    assert purchases[0].track_object()["external_id"] == "u-1"
    assert purchases[0].time == "2024-05-01T10:00:00Z"


def test_a_refund_is_negative_and_has_its_own_ledger_ids() -> None:
    refunds = effects("brevo", order("refunded")).braze_purchases
    assert [p.price for p in refunds] == [-19.99, -5.0]
    assert all(p.ledger_id.startswith("refund:o-1:") for p in refunds)
    again = effects("brevo", order("refunded", updatedAt="2024-05-02T10:00:00Z")).braze_purchases
    assert [p.ledger_id for p in again] == [
        p.ledger_id for p in refunds
    ]  # a re-sent refund is the same refund


def test_big_quantities_are_split_under_brazes_limit() -> None:
    item = order(products=[{"productId": "sku-1", "price": 1, "quantity": 250}])
    assert [(p.quantity, p.ledger_id) for p in effects("brevo", item).braze_purchases] == [
        (100, "purchase:o-1:0:0"),
        (100, "purchase:o-1:0:1"),
        (50, "purchase:o-1:0:2"),
    ]


def test_orders_without_what_braze_requires_are_refused() -> None:
    with pytest.raises(RecordRejected, match="currency"):
        effects("brevo", order(currency=None))
    with pytest.raises(RecordRejected, match="price"):
        effects("brevo", order(products=[{"productId": "a", "price": "ten"}]))
    with pytest.raises(RecordRejected, match="buyer"):
        effects("brevo", order(identifiers={}))


def test_the_simple_purchase_form_from_either_source() -> None:
    simple = {
        "type": "refund",
        "id": "r-1",
        "payload": {
            "external_id": "u-1",
            "order_id": "o-7",
            "product_id": "p",
            "price": 3,
            "currency": "USD",
            "time": "2024-05-01T10:00:00Z",
        },
    }
    for source in ("braze", "brevo"):
        [refund] = effects(source, simple).braze_purchases
        assert refund.price == -3.0 and refund.ledger_id == "refund:o-7:0:0"


# ---------------------------------------------------------------- Braze -> Brevo
def test_a_currents_email_open_becomes_a_brevo_event() -> None:
    item = currents(
        "users.messages.email.Open", {"email_address": "a@x.io", "campaign_id": "c1", "extra": {"k": 1}}
    )
    [event] = effects("braze", item).brevo_events
    assert event.item() == {
        "event_name": "braze_email_open",
        "event_date": "2024-05-01T10:00:00+00:00",
        "identifiers": {"ext_id": "u-1", "email_id": "a@x.io"},
        "event_properties": {
            "campaign_id": "c1",
            "extra_k": 1,
            "braze_event_id": "evt-1",
            "braze_event_type": "users.messages.email.Open",
        },
    }


def test_custom_events_keep_their_name_normalised_and_properties_flattened() -> None:
    http_form = currents(
        "users.behaviors.CustomEvent", {"name": "Added to Cart", "custom_properties": {"cart": {"n": 2}}}
    )
    storage_form = currents(
        "users.behaviors.CustomEvent", {"name": "Added to Cart", "custom_properties": '{"cart": {"n": 2}}'}
    )
    for item in (http_form, storage_form):
        [event] = effects("braze", item).brevo_events
        assert event.name == "Added_to_Cart" and event.properties["cart_n"] == 2


def test_deny_listed_types_and_connector_writes_are_ignored() -> None:
    assert effects("braze", currents("users.behaviors.app.SessionStart", {})).ignored
    change = currents(
        "users.behaviors.subscription.GlobalStateChange",
        {"subscription_status": "Unsubscribed", "email_address": "a@x.io", "state_change_source": "REST API"},
    )
    assert "REST API" in (effects("braze", change).ignored or "")


def test_what_the_connector_wrote_from_brevo_is_not_sent_back_to_brevo() -> None:
    [written] = effects("brevo", opened()).braze_events
    assert written.properties["tajo_origin"] == "brevo"
    echo = currents(
        "users.behaviors.CustomEvent", {"name": written.name, "custom_properties": dict(written.properties)}
    )
    assert "echo" in (effects("braze", echo).ignored or "")
    [bought] = effects("brevo", order()).braze_purchases[:1]
    purchase_echo = currents(
        "users.behaviors.Purchase",
        {
            "product_id": "sku-1",
            "price": 19.99,
            "currency": "EUR",
            "purchase_properties": dict(bought.properties),
        },
    )
    assert effects("braze", purchase_echo).ignored
    from_the_shop = currents(
        "users.behaviors.Purchase",
        {
            "product_id": "sku-1",
            "price": 1,
            "currency": "EUR",
            "purchase_properties": {"tajo_origin": "braze"},
        },
    )
    assert effects("braze", from_the_shop).brevo_events[0].name == "braze_purchase"


def test_a_global_unsubscribe_in_braze_is_a_consent_change() -> None:
    change = currents(
        "users.behaviors.subscription.GlobalStateChange",
        {
            "subscription_status": "Unsubscribed",
            "email_address": "a@x.io",
            "state_change_source": "Dashboard",
        },
    )
    [consent] = effects("braze", change).consent
    assert (consent.email, consent.state, consent.source) == ("a@x.io", "unsubscribed", "braze")
    sms = currents(
        "users.behaviors.subscription.GlobalStateChange",
        {"subscription_status": "Unsubscribed", "channel": "sms"},
    )
    assert effects("braze", sms).ignored
    odd = currents(
        "users.behaviors.subscription.GlobalStateChange",
        {"subscription_status": "Maybe", "email_address": "a@x.io"},
    )
    with pytest.raises(RecordRejected, match="subscription_status"):
        effects("braze", odd)


def test_malformed_braze_items_say_what_is_wrong() -> None:
    with pytest.raises(RecordRejected, match="event_type"):
        effects("braze", {"id": "x", "properties": {}})
    with pytest.raises(RecordRejected, match="no user"):
        effects("braze", {**currents("users.messages.email.Open", {}), "user": {}})
    with pytest.raises(RecordRejected, match="50 KB"):
        effects(
            "braze",
            currents(
                "users.behaviors.CustomEvent", {"name": "big", "custom_properties": {"b": "x" * 60_000}}
            ),
        )
    with pytest.raises(RecordRejected, match="unknown simple event type"):
        effects("braze", {"type": "nonsense", "payload": {}})
    with pytest.raises(RecordRejected, match="--source braze"):
        effects("brevo", {"type": "user.event", "payload": {"external_id": "u", "name": "x"}})


# ---------------------------------------------------------------- failures and credentials
def error(cls: type, status: int | None = None, *, maybe_applied: bool = False) -> Any:
    return cls("x", api="braze", status=status, maybe_applied=maybe_applied)


def test_what_a_failed_call_means() -> None:
    assert classify(error(TransientApiError, 502), idempotent=False) == "unknown"  # may have landed
    assert classify(error(TransientApiError, 502), idempotent=True) == "failed"
    assert classify(error(PermanentApiError, 413, maybe_applied=True), idempotent=False) == "unknown"
    assert classify(error(RateLimited, 429), idempotent=False) == "failed"
    assert classify(error(ConnectionFailed), idempotent=False) == "failed"
    assert classify(error(PermanentApiError, 400), idempotent=False) == "rejected"
    assert classify(error(AuthError, 401), idempotent=True) == "fatal"


def test_credentials_accept_only_the_configured_ones() -> None:
    creds = Credentials(Secret("s3cret-token"), "hook", Secret("pa:ss"))
    basic = base64.b64encode(b"hook:pa:ss").decode()
    assert creds.allows("Bearer s3cret-token") and creds.allows("bearer  s3cret-token ")
    assert creds.allows(f"Basic {basic}")
    for wrong in (
        None,
        "",
        "Bearer s3cret",
        "Bearer s3cret-token2",
        "Token s3cret-token",
        "Basic " + base64.b64encode(b"hook:nope").decode(),
        "Basic !!!",
    ):
        assert not creds.allows(wrong), wrong
    assert not Credentials(Secret("t")).allows(f"Basic {basic}")  # basic auth not configured
