"""Field mapping: loading and validation, Braze -> Brevo and Brevo -> Braze conversions, transforms."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from tajo_braze.config import load_config
from tajo_braze.errors import MappingError
from tajo_braze.mapping import TRANSFORMS, CompiledMapping, FieldRule, load_mapping
from tajo_braze.models import BrazeUser, BrevoContact, ContactPayload, Rejection
from tajo_braze.transforms import _plain_email, parse_bool, parse_date, parse_number, to_e164, to_text

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "mappings" / "default.yaml"
# Valid `fields_to_export` names, as listed in braze-api.md §3.1.
BRAZE_EXPORT_FIELDS = {
    "apps", "attributed_campaign", "attributed_source", "attributed_adgroup", "attributed_ad", "braze_id",
    "campaigns_received", "canvases_received", "cards_clicked", "country", "created_at", "custom_attributes",
    "custom_events", "devices", "dob", "email", "email_subscribe", "external_id", "first_name", "gender",
    "home_city", "language", "last_coordinates", "last_name", "phone", "purchases", "push_subscribe",
    "push_tokens", "random_bucket", "time_zone", "total_revenue", "uninstalled_at", "user_aliases",
}  # fmt: skip


def user(data: dict[str, Any]) -> BrazeUser:
    return BrazeUser(
        data.get("external_id"), data.get("braze_id"), data.get("email"), data.get("phone"), data
    )


def contact(
    attributes: dict[str, Any], email: str | None = "ana@example.com", ext_id: str | None = "u-1"
) -> BrevoContact:
    return BrevoContact(7, email, ext_id, False, False, None, None, (), attributes)


def inline(rules: dict[str, Any]) -> CompiledMapping:
    return load_mapping(rules, base_dir=Path.cwd())


def payload(mapping: CompiledMapping, data: dict[str, Any], **kw: Any) -> ContactPayload:
    result = mapping.to_brevo(user(data), **kw)
    assert isinstance(result, ContactPayload), result
    return result


def rejection(mapping: CompiledMapping, data: dict[str, Any]) -> Rejection:
    result = mapping.to_brevo(user(data))
    assert isinstance(result, Rejection), result
    return result


@pytest.fixture(scope="module")
def seed() -> CompiledMapping:
    return load_mapping(DEFAULT, base_dir=ROOT)


# ---------------------------------------------------------------- the seed mapping
def test_seed_mapping_is_the_product_mapping(seed: CompiledMapping) -> None:
    pairs = [(r.braze, r.brevo) for r in seed.rules]
    assert pairs == [
        ("external_id", "BRAZE_ID"), ("email", "EMAIL"), ("first_name", "FIRSTNAME"), ("last_name", "LASTNAME"),
        ("phone", "SMS"), ("total_revenue", "TOTAL_REVENUE"), ("push_opted_in", "PUSH_OPTIN"),
        ("email_subscribe", "EMAIL_STATUS"), ("loyalty_points", "LOYALTY_POINTS"), ("last_app_version", "APP_VERSION"),
        ("preferred_language", "LANGUAGE"),
    ]  # fmt: skip
    assert seed.identity_attribute == "BRAZE_ID"
    by_field = {r.braze: r for r in seed.rules}
    assert by_field["total_revenue"].type == "number"
    assert by_field["total_revenue"].direction == "braze_to_brevo"  # Braze computes it
    assert by_field["push_opted_in"].type == "boolean"
    assert by_field["first_name"].direction == "both"
    assert by_field["first_name"].conflict == "latest"
    assert [r.braze for r in seed.rules if r.is_custom] == [
        "loyalty_points",
        "last_app_version",
        "preferred_language",
    ]


def test_fields_to_export_are_valid_braze_names(seed: CompiledMapping) -> None:
    fields = seed.fields_to_export()
    assert fields[:5] == ["external_id", "braze_id", "email", "phone", "email_subscribe"]
    assert {"first_name", "last_name", "total_revenue", "push_subscribe", "custom_attributes"} <= set(fields)
    assert "push_opted_in" not in fields
    assert set(fields) <= BRAZE_EXPORT_FIELDS
    assert len(fields) == len(set(fields))


def test_fields_to_export_only_adds_what_rules_need() -> None:
    fields = inline({"email": "email", "dob": "DOB"}).fields_to_export()
    assert fields == ["external_id", "braze_id", "email", "phone", "email_subscribe", "dob"]


def test_brevo_attributes_with_create_types(seed: CompiledMapping) -> None:
    attributes = dict(seed.brevo_attributes())
    assert "EMAIL" not in attributes
    assert attributes["SMS"] == "text"
    assert attributes["BRAZE_ID"] == "text"
    assert attributes["TOTAL_REVENUE"] == "float"
    assert attributes["PUSH_OPTIN"] == "boolean"
    mapping = inline({"dob": "DOB", "tier": {"brevo": "TIER", "type": "category"}})
    assert mapping.brevo_attributes() == [("DOB", "date"), ("TIER", "category")]


def test_a_config_without_mapping_uses_the_packaged_seed(tmp_path: Path) -> None:
    mapping = load_mapping("mappings/default.yaml", base_dir=tmp_path)
    assert mapping.identity_attribute == "BRAZE_ID"
    assert len(mapping.rules) == 11


def test_a_local_mapping_file_wins_over_the_packaged_seed(tmp_path: Path) -> None:
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "default.yaml").write_text(
        "field_mapping:\n  email: email\n  first_name: GIVEN\n"
    )
    mapping = load_mapping("mappings/default.yaml", base_dir=tmp_path)
    assert [r.brevo for r in mapping.rules] == ["EMAIL", "GIVEN"]


# ---------------------------------------------------------------- identity
def test_identity_from_a_full_user(seed: CompiledMapping) -> None:
    result = payload(
        seed, {"external_id": "u-1", "email": "  Ana.B+promo@EXAMPLE.Com ", "phone": "+33 6 12 34 56 78"}
    )
    assert result.key == "ext:u-1"
    assert result.ext_id == "u-1"
    assert result.email == "Ana.B+promo@example.com"  # domain lower-cased, local part kept
    assert result.attributes["BRAZE_ID"] == "u-1"
    assert result.attributes["SMS"] == "+33612345678"


def test_key_falls_back_to_email_then_sms(seed: CompiledMapping) -> None:
    assert payload(seed, {"email": "Zoe@Example.FR"}).key == "email:zoe@example.fr"
    only_phone = payload(seed, {"phone": "4155550134"})
    assert only_phone.key == "sms:+14155550134"
    assert only_phone.email is None and only_phone.ext_id is None


def test_internationalised_local_parts_are_refused_before_brevo_drops_them(seed: CompiledMapping) -> None:
    refused = rejection(seed, {"external_id": "u-9", "email": "zoë@example.fr"})
    assert refused.field == "email" and "Internationalized characters" in refused.reason


def test_idn_domains_become_punycode(seed: CompiledMapping) -> None:
    assert payload(seed, {"email": "ana@Bücher.de"}).email == "ana@xn--bcher-kva.de"


@pytest.mark.parametrize("email", ["bob@@example.com", "no-at-sign", "a b@example.com", "ana@example"])
def test_invalid_email_is_rejected_with_the_reason(seed: CompiledMapping, email: str) -> None:
    result = rejection(seed, {"external_id": "u-9", "email": email})
    assert result.field == "email"
    assert result.reason.startswith(f"invalid email {email!r}: ")
    assert len(result.reason) > len(f"invalid email {email!r}: ")
    assert result.key == "ext:u-9"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("(415) 555-0134", "+14155550134"),  # 10 digits without + are read as US, as Braze does
        ("4155550134", "+14155550134"),
        ("+44 20 7183 8750", "+442071838750"),
        ("0033612345678", "+33612345678"),
        ("33612345678", "+33612345678"),  # the way Brevo stores SMS numbers
    ],
)
def test_phone_becomes_e164(seed: CompiledMapping, written: str, expected: str) -> None:
    assert payload(seed, {"external_id": "u", "phone": written}).attributes["SMS"] == expected


@pytest.mark.parametrize("phone", ["123", "+1 555 01", "call me", "+"])
def test_invalid_phone_is_rejected(seed: CompiledMapping, phone: str) -> None:
    result = rejection(seed, {"external_id": "u-2", "phone": phone})
    assert result.field == "phone"
    assert result.reason.startswith(f"invalid phone {phone!r}")


def test_phone_is_ignored_when_not_mapped() -> None:
    result = payload(inline({"email": "email"}), {"external_id": "u", "phone": "garbage"})
    assert "SMS" not in result.attributes


def test_user_without_identifier_is_rejected(seed: CompiledMapping) -> None:
    result = rejection(seed, {"braze_id": "5fbd99bac125ca40511f2cb1", "first_name": "Ana", "email": "  "})
    assert result.reason == "no usable identifier: Brevo needs an email, a phone (SMS) or an ext_id"
    assert result.key == "braze:5fbd99bac125ca40511f2cb1"


# ---------------------------------------------------------------- coercion by type
TYPED = {
    "external_id": "BRAZE_ID",
    "label": {"brevo": "LABEL", "type": "text"},
    "points": {"brevo": "POINTS", "type": "number"},
    "vip": {"brevo": "VIP", "type": "boolean"},
    "signup": {"brevo": "SIGNUP", "type": "date"},
    "tier": {"brevo": "TIER", "type": "category"},
}


@pytest.fixture(scope="module")
def typed() -> CompiledMapping:
    return inline(TYPED)


@pytest.mark.parametrize(
    ("field", "value", "name", "expected"),
    [
        ("label", "hello", "LABEL", "hello"),
        ("label", 12, "LABEL", "12"),
        ("label", 1.5, "LABEL", "1.5"),
        ("label", True, "LABEL", "true"),
        ("label", ["a", "b", None], "LABEL", "a, b"),
        ("tier", "gold", "TIER", "gold"),
        ("tier", 3, "TIER", "3"),
        ("points", 12, "POINTS", 12),
        ("points", 2.5, "POINTS", 2.5),
        ("points", "321", "POINTS", 321),
        ("points", " -4.25 ", "POINTS", -4.25),
        ("points", "1e3", "POINTS", 1000.0),
        ("vip", True, "VIP", True),
        ("vip", "false", "VIP", False),
        ("vip", "TRUE", "VIP", True),
        ("vip", 1, "VIP", True),
        ("vip", 0, "VIP", False),
        ("signup", "2020-07-10", "SIGNUP", "2020-07-10"),
        ("signup", "2020-07-10T15:00:00Z", "SIGNUP", "2020-07-10"),
        ("signup", "2020-07-10T23:30:00-05:00", "SIGNUP", "2020-07-11"),  # moved to UTC first
        ("signup", "2020-07-10 15:00:00.000 UTC", "SIGNUP", "2020-07-10"),
        ("signup", "07/10/2020", "SIGNUP", "2020-07-10"),
        ("signup", "2020-07-10 15:00:00", "SIGNUP", "2020-07-10"),
        ("signup", "2020-07-10T15:00:00:123Z", "SIGNUP", "2020-07-10"),
        ("signup", "2020-07-10T23:00:00:000-0300", "SIGNUP", "2020-07-11"),
        ("signup", "Fri 07 10 15:00:00.000 UTC 2020", "SIGNUP", "2020-07-10"),
        ("signup", "Fri Jul 10 15:00:00 +0200 2020", "SIGNUP", "2020-07-10"),
    ],
)
def test_values_are_coerced_by_type(
    typed: CompiledMapping, field: str, value: Any, name: str, expected: Any
) -> None:
    result = payload(typed, {"external_id": "u", "custom_attributes": {field: value}})
    assert result.attributes[name] == expected
    assert type(result.attributes[name]) is type(expected)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("points", "abc", "attribute POINTS expects a number, got 'abc'"),
        ("points", "1,5", "attribute POINTS expects a number, got '1,5'"),
        ("points", True, "attribute POINTS expects a number, got True"),
        ("points", "nan", "attribute POINTS expects a number, got 'nan'"),
        ("vip", "yes", "attribute VIP expects a boolean (true/false), got 'yes'"),
        ("vip", 2, "attribute VIP expects a boolean (true/false), got 2"),
        ("signup", "10 July", "attribute SIGNUP expects a date (YYYY-MM-DD), got '10 July'"),
        ("signup", "2020-13-45", "attribute SIGNUP expects a date (YYYY-MM-DD), got '2020-13-45'"),
        ("label", {"a": 1}, "attribute LABEL expects text, got {'a': 1}"),
    ],
)
def test_values_of_the_wrong_type_are_rejected(
    typed: CompiledMapping, field: str, value: Any, reason: str
) -> None:
    result = rejection(typed, {"external_id": "u-5", "custom_attributes": {field: value}})
    assert result.reason == reason
    assert result.field == field
    assert result.key == "ext:u-5"


@pytest.mark.parametrize("empty", [None, "", [], {}])
def test_empty_values_are_never_sent(typed: CompiledMapping, empty: Any) -> None:
    data = {
        "external_id": "u",
        "custom_attributes": {k: empty for k in ("label", "points", "vip", "signup", "tier")},
    }
    assert dict(payload(typed, data).attributes) == {"BRAZE_ID": "u"}


def test_default_fills_missing_values() -> None:
    mapping = inline(
        {
            "points": {"brevo": "POINTS", "type": "number", "default": "0"},
            "plan": {"brevo": "PLAN", "default": "free"},
        }
    )
    assert dict(payload(mapping, {"external_id": "u"}).attributes) == {"POINTS": 0, "PLAN": "free"}
    present = payload(mapping, {"external_id": "u", "custom_attributes": {"points": 5, "plan": "pro"}})
    assert dict(present.attributes) == {"POINTS": 5, "PLAN": "pro"}


def test_custom_attributes_are_read_from_their_object_and_nested_with_dots() -> None:
    mapping = inline({"first_name": "FIRSTNAME", "address.city": "CITY", "a.b.c": "DEEP", "nickname": "NICK"})
    data = {
        "external_id": "u",
        "first_name": "Ana",
        "nickname": "top-level value is not a custom attribute",
        "custom_attributes": {"address": {"city": "Paris"}, "a": {"b": {"c": 3}}, "nickname": "Nana"},
    }
    assert dict(payload(mapping, data).attributes) == {
        "FIRSTNAME": "Ana",
        "CITY": "Paris",
        "DEEP": "3",
        "NICK": "Nana",
    }
    assert (
        dict(payload(mapping, {"external_id": "u", "custom_attributes": {"address": "flat"}}).attributes)
        == {}
    )
    assert dict(
        payload(mapping, {"external_id": "u", "custom_attributes": {"address.city": "Lyon"}}).attributes
    ) == {"CITY": "Lyon"}


@pytest.mark.parametrize(
    ("state", "blacklisted"),
    [("unsubscribed", True), ("opted_in", False), ("subscribed", False), (None, None)],
)
def test_email_subscribe_sets_the_attribute_and_the_blacklist_flag(
    seed: CompiledMapping, state: str | None, blacklisted: bool | None
) -> None:
    result = payload(seed, {"external_id": "u", "email_subscribe": state})
    assert result.email_blacklisted is blacklisted
    assert result.attributes.get("EMAIL_STATUS") == state


@pytest.mark.parametrize(
    ("state", "opted_in"),
    [("opted_in", True), ("subscribed", False), ("unsubscribed", False), (None, None), ("weird", None)],
)
def test_push_opted_in_is_derived_from_push_subscribe(
    seed: CompiledMapping, state: str | None, opted_in: bool | None
) -> None:
    result = payload(seed, {"external_id": "u", "push_subscribe": state})
    assert result.attributes.get("PUSH_OPTIN") is opted_in


def test_include_limits_rules_but_keeps_identity(seed: CompiledMapping) -> None:
    data = {
        "external_id": "u",
        "email": "a@b.co",
        "phone": "+33612345678",
        "first_name": "Ana",
        "last_name": "B",
    }
    result = payload(seed, data, include={"first_name"})
    assert dict(result.attributes) == {"BRAZE_ID": "u", "SMS": "+33612345678", "FIRSTNAME": "Ana"}
    assert result.email == "a@b.co"


def test_rules_towards_braze_only_are_not_applied_towards_brevo() -> None:
    mapping = inline({"nickname": {"brevo": "NICK", "direction": "brevo_to_braze"}, "tier": "TIER"})
    data = {"external_id": "u", "custom_attributes": {"nickname": "Nana", "tier": "gold"}}
    assert dict(payload(mapping, data).attributes) == {"TIER": "gold"}


def test_transforms_run_before_coercion() -> None:
    mapping = inline({
        "city": {"brevo": "CITY", "transform": "upper"},
        "mobile": {"brevo": "MOBILE", "transform": "e164"},
        "bio": {"brevo": "BIO", "transform": "truncate255"},
    })  # fmt: skip
    data = {
        "external_id": "u",
        "custom_attributes": {"city": "paris", "mobile": "0033612345678", "bio": "x" * 300},
    }
    attributes = payload(mapping, data).attributes
    assert attributes["CITY"] == "PARIS"
    assert attributes["MOBILE"] == "+33612345678"
    assert attributes["BIO"] == "x" * 255
    failed = rejection(mapping, {"external_id": "u", "custom_attributes": {"mobile": "nope"}})
    assert failed.reason.startswith("attribute MOBILE: transform `e164` cannot read 'nope'")
    assert failed.field == "mobile"


def test_to_brevo_prefers_the_user_identity_fields(seed: CompiledMapping) -> None:
    data = {"external_id": "from-data", "email": "data@example.com"}
    result = seed.to_brevo(BrazeUser("from-field", None, "field@example.com", None, data))
    assert isinstance(result, ContactPayload)
    assert (result.ext_id, result.email) == ("from-field", "field@example.com")


# ---------------------------------------------------------------- Brevo -> Braze
def test_to_braze_converts_and_skips_what_braze_owns(seed: CompiledMapping) -> None:
    brevo = contact({
        "BRAZE_ID": "u-1", "FIRSTNAME": "Ana" * 100, "LASTNAME": "", "SMS": "33612345678", "TOTAL_REVENUE": 12.5,
        "PUSH_OPTIN": True, "EMAIL_STATUS": "unsubscribed", "LOYALTY_POINTS": 321, "APP_VERSION": "3.2.1",
    })  # fmt: skip
    out = seed.to_braze(brevo)
    assert out == {
        "email": "ana@example.com",
        "phone": "+33612345678",
        "first_name": ("Ana" * 100)[:255],
        "loyalty_points": "321",
        "last_app_version": "3.2.1",
    }


def test_to_braze_by_type() -> None:
    mapping = inline({
        "points": {"brevo": "POINTS", "type": "number"}, "vip": {"brevo": "VIP", "type": "boolean"},
        "signup": {"brevo": "SIGNUP", "type": "date"}, "tier": {"brevo": "TIER", "type": "category"},
        "address.city": "CITY", "only_out": {"brevo": "OUT", "direction": "braze_to_brevo"},
    })  # fmt: skip
    out = mapping.to_braze(
        contact({"POINTS": 4.5, "VIP": False, "SIGNUP": "2024-02-29", "TIER": 2, "CITY": "Paris", "OUT": "x"})
    )
    assert out == {
        "email": "ana@example.com",
        "points": 4.5,
        "vip": False,
        "signup": "2024-02-29",
        "tier": "2",
        "address.city": "Paris",
    }


def test_to_braze_leaves_out_values_braze_cannot_take() -> None:
    mapping = inline(
        {
            "phone": "SMS",
            "points": {"brevo": "POINTS", "type": "number"},
            "signup": {"brevo": "SIGNUP", "type": "date"},
        }
    )
    out = mapping.to_braze(contact({"SMS": "0612", "POINTS": "many", "SIGNUP": "someday"}, email=None))
    assert out == {}


def test_to_braze_reads_email_from_attributes_when_needed() -> None:
    out = inline({"email": "email"}).to_braze(contact({"EMAIL": "x@y.co"}, email=None))
    assert out == {"email": "x@y.co"}


def test_nest_builds_track_fragments() -> None:
    mapping = inline(
        {
            "address.city": "CITY",
            "address.moved": {"brevo": "MOVED", "type": "date"},
            "first_name": "FIRSTNAME",
        }
    )
    flat = {"address.city": "x", "address.moved": "2024-01-01", "first_name": "A", "address.zip": None}
    assert mapping.nest(flat) == {
        "address": {"city": "x", "moved": {"$time": "2024-01-01"}},
        "first_name": "A",
    }
    assert mapping.nest(flat, merge_objects=True)["_merge_objects"] is True
    assert "_merge_objects" not in mapping.nest({"first_name": "A"}, merge_objects=True)
    assert mapping.nest({"address.city": "x", "first_name": "A"}) == {
        "address": {"city": "x"},
        "first_name": "A",
    }


# ---------------------------------------------------------------- round trips
ROUND_TRIP = {
    "external_id": "BRAZE_ID", "email": "email", "phone": "SMS", "first_name": "FIRSTNAME",
    "score": {"brevo": "SCORE", "type": "number"}, "vip": {"brevo": "VIP", "type": "boolean"},
    "signup": {"brevo": "SIGNUP", "type": "date"},
}  # fmt: skip


@pytest.fixture(scope="module")
def round_trip() -> CompiledMapping:
    return inline(ROUND_TRIP)


def there_and_back(mapping: CompiledMapping, data: dict[str, Any]) -> dict[str, Any]:
    result = mapping.to_brevo(user({"external_id": "u-1", **data}))
    assert isinstance(result, ContactPayload), result
    return mapping.to_braze(contact(dict(result.attributes), email=result.email, ext_id=result.ext_id))


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=255))
def test_text_round_trip(round_trip: CompiledMapping, text: str) -> None:
    assert there_and_back(round_trip, {"first_name": text})["first_name"] == text


@settings(max_examples=150, deadline=None)
@given(st.integers(-(10**15), 10**15) | st.floats(allow_nan=False, allow_infinity=False))
def test_number_round_trip(round_trip: CompiledMapping, number: float) -> None:
    back = there_and_back(round_trip, {"custom_attributes": {"score": number}})["score"]
    assert back == number and type(back) is type(number)


@settings(max_examples=20, deadline=None)
@given(st.booleans())
def test_boolean_round_trip(round_trip: CompiledMapping, flag: bool) -> None:
    assert there_and_back(round_trip, {"custom_attributes": {"vip": flag}})["vip"] is flag


@settings(max_examples=150, deadline=None)
@given(st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
def test_date_round_trip(round_trip: CompiledMapping, day: date) -> None:
    assert (
        there_and_back(round_trip, {"custom_attributes": {"signup": day.isoformat()}})["signup"]
        == day.isoformat()
    )


VALID_NUMBERS = [
    phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
    for region in ("US", "GB", "FR", "DE", "BR", "JP", "IN", "AU", "ZA", "MX")
    for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    if (n := phonenumbers.example_number_for_type(region, kind)) is not None
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(VALID_NUMBERS))
def test_phone_round_trip(round_trip: CompiledMapping, phone: str) -> None:
    assert there_and_back(round_trip, {"phone": phone})["phone"] == phone


LOCAL = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+_-", min_size=1, max_size=20
)
LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(LOCAL, st.lists(LABEL, min_size=1, max_size=3), st.sampled_from(["com", "fr", "io", "co.uk"]))
def test_email_round_trip(round_trip: CompiledMapping, local: str, labels: list[str], tld: str) -> None:
    email = f"{local}@{'.'.join(labels)}.{tld}"
    assert there_and_back(round_trip, {"email": email})["email"] == email


EXPORT_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "external_id",
                "email",
                "phone",
                "first_name",
                "push_subscribe",
                "email_subscribe",
                "total_revenue",
                "custom_attributes",
            ]
        ),
        EXPORT_VALUES,
    )
)
def test_to_brevo_never_raises_on_odd_exports(seed: CompiledMapping, data: dict[str, Any]) -> None:
    result = seed.to_brevo(BrazeUser(None, None, None, None, data))
    assert isinstance(result, ContactPayload | Rejection)
    if isinstance(result, ContactPayload):
        assert all(value not in (None, "") for value in result.attributes.values())


# ---------------------------------------------------------------- transforms
def test_transform_registry_is_read_only_and_complete() -> None:
    assert {"lower", "upper", "strip", "title", "e164", "date", "bool", "number", "truncate255"} <= set(
        TRANSFORMS
    )
    with pytest.raises(TypeError):
        TRANSFORMS["evil"] = print  # type: ignore[index]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("lower", "AbC", "abc"), ("upper", "AbC", "ABC"), ("strip", "  a ", "a"), ("title", "ana b", "Ana B"),
        ("capitalize", "ana B", "Ana b"), ("lower", 12, 12), ("e164", "+1 415 555 0134", "+14155550134"),
        ("date", "07/04/2021", "2021-07-04"), ("bool", "True", True), ("number", "7", 7),
        ("email", "A@B.CO", "A@b.co"), ("truncate255", "y" * 300, "y" * 255),
    ],
)  # fmt: skip
def test_each_transform(name: str, value: Any, expected: Any) -> None:
    assert TRANSFORMS[name](value) == expected


def test_conversion_helpers_on_python_values() -> None:
    assert parse_date(datetime(2021, 1, 1, 23, 0, tzinfo=UTC)) == "2021-01-01"
    assert parse_date(date(2021, 1, 2)) == "2021-01-02"
    assert to_text(datetime(2021, 1, 1, 10, 0)) == "2021-01-01T10:00:00"
    assert to_e164(4155550134) == "+14155550134"
    assert parse_number(-3) == -3
    assert parse_bool(False) is False
    for bad in ("1" * 5000, float("inf"), None):
        with pytest.raises(ValueError):
            parse_number(bad)


def test_phone_answers_are_the_same_when_asked_again() -> None:
    # Answers are kept between calls: a repeat, an int beside its text, a refusal, all answer alike.
    for _ in range(2):
        assert to_e164("33612345678") == "+33612345678"
        assert to_e164(33612345678) == "+33612345678"
        assert to_e164("(415) 555-0134") == "+14155550134"
        for bad in (True, 1, "12", ["+33612345678"], {"n": 1}, 4.0):
            with pytest.raises(ValueError):
                to_e164(bad)


# ---------------------------------------------------------------- mapping problems
def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "field_mapping:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n", encoding="utf-8"
    )
    return path


BAD_MAPPINGS = [
    # (id, rules, line, path, fix fragment)
    ("lower-case Brevo name", "first_name: firstname", 2, "field_mapping.first_name", "write `FIRSTNAME`"),
    ("Brevo name with spaces", "first_name: first name", 2, "field_mapping.first_name", "write `FIRST_NAME`"),
    ("unknown transform", "city: {brevo: CITY, transform: lowr}", 2, "field_mapping.city.transform", "did you mean `lower`?"),
    ("type not allowed", "phone: {brevo: SMS, type: number}", 2, "field_mapping.phone.type", "use type `text`"),
    ("unknown type", "dob: {brevo: DOB, type: datum}", 2, "field_mapping.dob.type", "did you mean `date`?"),
    ("duplicate target", "first_name: NAME\nlast_name: NAME", 3, "field_mapping.last_name", "one Braze field only"),
    ("email elsewhere", "email: CONTACT_EMAIL", 2, "field_mapping.email", "write `email: email`"),
    ("EMAIL from another field", "work_email: EMAIL", 2, "field_mapping.work_email", "another Brevo attribute"),
    ("misspelt long-form key", "city: {brevo: CITY, tpye: text}", 2, "field_mapping.city.tpye", "did you mean `type`?"),
    ("long form without brevo", "city: {type: text}", 2, "field_mapping.city", "add `brevo:`"),
    ("consent towards Braze", "email_subscribe: {brevo: ST, direction: both}", 2, "field_mapping.email_subscribe.direction",
     "braze_to_brevo"),
    ("computed field towards Braze", "total_revenue: {brevo: REV, direction: brevo_to_braze}", 2,
     "field_mapping.total_revenue.direction", "braze_to_brevo"),
    ("default of the wrong type", "points: {brevo: POINTS, type: number, default: lots}", 2, "field_mapping.points.default",
     "type number"),
    ("default on identity", "external_id: {brevo: BRAZE_ID, default: x}", 2, "field_mapping.external_id.default",
     "remove `default`"),
    ("list field", "purchases: PURCHASES", 2, "field_mapping.purchases", "custom attribute"),
    ("nested standard field", "email.domain: DOMAIN", 2, 'field_mapping["email.domain"]', "write `email:` alone"),
    ("space in Braze name", "'my field': FIELD", 2, 'field_mapping["my field"]', "no spaces"),
    ("number for a name", "dob: 12", 2, "field_mapping.dob", "a Brevo attribute name"),
    ("duplicate Braze key", "dob: DOB\ndob: BIRTHDAY", 3, "field_mapping.dob", "keep only one"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rules", "line", "path", "fix"), [c[1:] for c in BAD_MAPPINGS], ids=[c[0] for c in BAD_MAPPINGS]
)
def test_each_mapping_problem_names_file_line_and_fix(
    tmp_path: Path, rules: str, line: int, path: str, fix: str
) -> None:
    mapping_file = write(tmp_path, rules)
    with pytest.raises(MappingError) as caught:
        load_mapping(mapping_file, base_dir=tmp_path)
    problems = caught.value.problems
    assert len(problems) == 1, [p.render() for p in problems]
    assert problems[0].file == str(mapping_file)
    assert (problems[0].line, problems[0].path) == (line, path)
    assert fix in problems[0].fix


def test_every_mapping_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "first_name: firstname\ncity: {brevo: CITY, transform: nope}\nphone: {brevo: SMS, type: date}",
    )
    with pytest.raises(MappingError) as caught:
        load_mapping(path, base_dir=tmp_path)
    assert [p.line for p in caught.value.problems] == [2, 3, 4]
    assert "3 field mapping problems" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("mapping:\n  email: email\n", "did you mean `field_mapping`?"),
        ("field_mapping: {}\n", "at least one"),
        ("field_mapping:\n  email: [email\n", "YAML syntax error"),
        ("- a\n", "mapping"),
    ],
)
def test_malformed_mapping_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(content)
    with pytest.raises(MappingError) as caught:
        load_mapping(path, base_dir=tmp_path)
    assert fragment in " ".join(f"{p.message} {p.fix}" for p in caught.value.problems)
    assert all(p.file == str(path) for p in caught.value.problems)


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as caught:
        load_mapping("mappings/custom.yaml", base_dir=tmp_path)
    problem = caught.value.problems[0]
    assert "not found" in problem.message and problem.fix
    assert problem.file == str(tmp_path / "mappings" / "custom.yaml")


def test_inline_mapping_forms() -> None:
    wrapped = load_mapping(
        {"field_mapping": {"email": "email", "first_name": "FIRSTNAME"}}, base_dir=Path.cwd()
    )
    bare = load_mapping({"email": "email", "first_name": "FIRSTNAME"}, base_dir=Path.cwd())
    assert wrapped.rules == bare.rules
    with pytest.raises(MappingError) as caught:
        load_mapping({"first_name": "firstname"}, base_dir=Path.cwd())
    assert caught.value.problems[0].file == "<dict>"
    assert caught.value.problems[0].path == "first_name"


def test_inline_mapping_in_a_config_is_located_in_the_config_file(tmp_path: Path) -> None:
    config_file = tmp_path / "tajo.yaml"
    config_file.write_text(
        "connectors:\n  braze:\n    instance: US-01\n    field_mapping:\n      email: email\n      first_name: firstname\n"
    )
    config = load_config(config_file, env={})
    with pytest.raises(MappingError) as caught:
        load_mapping(config.field_mapping, base_dir=config.base_dir)
    problem = caught.value.problems[0]
    assert (problem.file, problem.line, problem.path) == (
        str(config_file),
        6,
        "connectors.braze.field_mapping.first_name",
    )


def test_compiled_mapping_can_be_built_from_rules() -> None:
    mapping = CompiledMapping(
        [
            FieldRule("external_id", "EXT", direction="braze_to_brevo"),
            FieldRule("nick", "NICK", is_custom=True),
        ]
    )
    result = payload(mapping, {"external_id": "u", "custom_attributes": {"nick": "N"}})
    assert dict(result.attributes) == {"EXT": "u", "NICK": "N"}
    assert mapping.identity_attribute == "EXT"
    assert "rules" in repr(mapping)


# ---------------------------------------------------------------- the plain-address fast path
_ATOM = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}"
_LABEL = "[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?"
_PLAINISH = st.from_regex(
    rf"\A{_ATOM}(\.{_ATOM}){{0,3}}@({_LABEL}\.){{1,3}}[A-Za-z]{{2,8}}\Z", fullmatch=True
) | st.text(alphabet="ab.@-_+xn", max_size=30)


@given(_PLAINISH)
def test_the_fast_path_agrees_with_the_full_validator(text: str) -> None:
    fast = _plain_email(text)
    if fast is None:
        return
    full = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    assert fast == f"{full.local_part}@{(full.ascii_domain or full.domain).lower()}"


@given(_PLAINISH)
def test_what_the_full_validator_refuses_never_passes_the_fast_path(text: str) -> None:
    try:
        validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        assert _plain_email(text) is None


def test_one_braze_value_maps_as_the_users_half_writes_it() -> None:
    mapping = CompiledMapping(
        [
            FieldRule("first_name", "FIRSTNAME"),
            FieldRule("loyalty_points", "LOYALTY", type="number", is_custom=True),
            FieldRule("signup", "SIGNUP", type="date", is_custom=True),
            FieldRule("tier", "TIER", default="basic", is_custom=True),
        ]
    )
    assert mapping.brevo_value("first_name", "Ann") == "Ann"
    assert mapping.brevo_value("loyalty_points", "12") == 12
    assert mapping.brevo_value("signup", "2024-05-01T10:00:00Z") == "2024-05-01"
    assert mapping.brevo_value("tier", None) == "basic"  # the rule's default, as an import would write
    assert mapping.brevo_value("first_name", "") is None
    assert mapping.brevo_value("loyalty_points", "many") is None  # never written: nothing to compare
    assert mapping.brevo_value("not_mapped", "x") is None


def test_the_attributes_written_to_brevo_are_known_from_the_rules() -> None:
    mapping = inline({
        "external_id": "BRAZE_ID", "email": "email", "first_name": "FIRSTNAME",
        "phone": {"brevo": "SMS", "direction": "brevo_to_braze"},
        "nickname": {"brevo": "NICK", "direction": "brevo_to_braze"}, "tier": "TIER",
    })  # fmt: skip
    # SMS whenever the phone is mapped (the users half writes it), never EMAIL or the identity.
    assert mapping.written_to_brevo == ("FIRSTNAME", "SMS", "TIER")
    assert mapping.identity_attribute == "BRAZE_ID"
