"""Field mappings: load and compile them once, then convert records with pure functions.

`to_brevo` runs for every Braze user of a sync (millions), so `load_mapping` does all the
lookups up front: each rule becomes a reader, an optional transform and a coercer, and the
per-user work is a loop over ready-made callables.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MappingError, Problem
from .models import BrazeUser, BrevoContact, ContactPayload, Rejection
from .transforms import (
    BRAZE_STRING_MAX,
    TRANSFORMS,
    normalize_email,
    parse_bool,
    parse_date,
    parse_number,
    to_e164,
    to_text,
)
from .yamlpos import (
    LocatedMapping,
    Where,
    YamlReadError,
    close_match,
    duplicate_key_problems,
    load_packaged_schema,
    parse_yaml,
    read_packaged_text,
    read_yaml_file,
    schema_problems,
    sort_problems,
    to_plain,
)

__all__ = ["TRANSFORMS", "CompiledMapping", "FieldRule", "load_mapping"]

MAPPING_SCHEMA_FILE = "mapping.schema.json"
DEFAULT_MAPPING_PATH = "mappings/default.yaml"
PACKAGED_DEFAULT_MAPPING = "default_mapping.yaml"

TYPES = ("text", "number", "boolean", "date", "category")
DIRECTIONS = ("both", "braze_to_brevo", "brevo_to_braze")
CONFLICTS = ("latest", "braze_wins", "brevo_wins")
# Brevo's attribute-creation types (POST /contacts/attributes/normal/{name}).
BREVO_CREATE_TYPES: Mapping[str, str] = {
    "text": "text",
    "number": "float",
    "boolean": "boolean",
    "date": "date",
    "category": "category",
}

# Braze standard fields (top level of a user export object) and the type they carry.
STANDARD_FIELDS: Mapping[str, str] = {
    "external_id": "text",
    "braze_id": "text",
    "email": "text",
    "phone": "text",
    "first_name": "text",
    "last_name": "text",
    "dob": "date",
    "country": "text",
    "home_city": "text",
    "language": "text",
    "time_zone": "text",
    "gender": "text",
    "email_subscribe": "text",
    "push_subscribe": "text",
    "push_opted_in": "boolean",
    "total_revenue": "number",
    "created_at": "date",
    "random_bucket": "number",
    "uninstalled_at": "date",
    "attributed_campaign": "text",
    "attributed_source": "text",
    "attributed_adgroup": "text",
    "attributed_ad": "text",
}
IDENTITY_FIELDS = frozenset({"external_id", "email", "phone"})
# Braze computes or owns these: they flow to Brevo only.
BRAZE_READ_ONLY = frozenset(
    {
        "external_id",
        "braze_id",
        "created_at",
        "random_bucket",
        "total_revenue",
        "uninstalled_at",
        "attributed_campaign",
        "attributed_source",
        "attributed_adgroup",
        "attributed_ad",
    }
)
# Consent has its own rules in the sync (an unsubscribe wins on either side); the mapping only mirrors it to Brevo.
CONSENT_FIELDS = frozenset({"email_subscribe", "push_subscribe", "push_opted_in"})
ALLOWED_TYPES: Mapping[str, tuple[str, ...]] = {
    "external_id": ("text",),
    "braze_id": ("text",),
    "email": ("text",),
    "phone": ("text",),
    "push_opted_in": ("boolean",),
    "email_subscribe": ("text", "category"),
    "push_subscribe": ("text", "category"),
}
# Export fields that are lists or objects, not values a Brevo attribute can hold.
NOT_MAPPABLE = frozenset(
    {
        "custom_attributes",
        "custom_events",
        "purchases",
        "devices",
        "push_tokens",
        "apps",
        "campaigns_received",
        "canvases_received",
        "cards_clicked",
        "user_aliases",
        "last_coordinates",
    }
)
# Valid `fields_to_export` names (braze-api.md §3.1); only these may be requested.
EXPORTABLE_FIELDS = frozenset(
    {
        "apps",
        "attributed_campaign",
        "attributed_source",
        "attributed_adgroup",
        "attributed_ad",
        "braze_id",
        "campaigns_received",
        "canvases_received",
        "cards_clicked",
        "country",
        "created_at",
        "custom_attributes",
        "custom_events",
        "devices",
        "dob",
        "email",
        "email_subscribe",
        "external_id",
        "first_name",
        "gender",
        "home_city",
        "language",
        "last_coordinates",
        "last_name",
        "phone",
        "purchases",
        "push_subscribe",
        "push_tokens",
        "random_bucket",
        "time_zone",
        "total_revenue",
        "uninstalled_at",
        "user_aliases",
    }
)
ALWAYS_EXPORTED = ("external_id", "braze_id", "email", "phone", "email_subscribe")
KNOWN_SUBSCRIPTION_STATES = (
    "opted_in",
    "subscribed",
    "unsubscribed",
)  # a tuple: export values may be unhashable
_BREVO_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_EXPECTS = {
    "text": "text",
    "category": "text",
    "number": "a number",
    "boolean": "a boolean (true/false)",
    "date": "a date (YYYY-MM-DD)",
}
_COERCE_TO_BREVO: Mapping[str, Callable[[Any], Any]] = {
    "text": to_text,
    "category": to_text,
    "number": parse_number,
    "boolean": parse_bool,
    "date": parse_date,
}


@dataclass(frozen=True)
class FieldRule:
    braze: str  # Braze field name; dotted for nested custom attributes ("address.city")
    brevo: str  # Brevo attribute NAME (uppercase)
    type: str = "text"  # text | number | boolean | date | category
    direction: str = "both"  # both | braze_to_brevo | brevo_to_braze
    conflict: str = "latest"  # braze_wins | brevo_wins | latest
    transform: str | None = None
    default: Any = None
    is_custom: bool = False  # True when not a Braze standard field (read from custom_attributes)

    @property
    def to_brevo(self) -> bool:
        return self.direction in ("both", "braze_to_brevo")

    @property
    def to_braze(self) -> bool:
        return self.direction in ("both", "brevo_to_braze")


# ---------------------------------------------------------------- compiled form
Reader = Callable[[Mapping[str, Any]], Any]


def _read_push_opted_in(data: Mapping[str, Any]) -> bool | None:
    state = data.get("push_subscribe")
    if state == "opted_in":
        return True
    return False if state in KNOWN_SUBSCRIPTION_STATES else None


def _reader(rule: FieldRule) -> Reader:
    name = rule.braze
    if name == "push_opted_in":
        return _read_push_opted_in
    if not rule.is_custom:
        return lambda data: data.get(name)
    parts = tuple(name.split("."))

    def read_custom(data: Mapping[str, Any]) -> Any:
        node = data.get("custom_attributes")
        if not isinstance(node, Mapping):
            return None
        if name in node or len(parts) == 1:
            return node.get(name)
        for part in parts:  # nested custom attribute: walk the objects
            if not isinstance(node, Mapping):
                return None
            node = node.get(part)
        return node

    return read_custom


def equal_values(a: Any, b: Any) -> bool:
    """Equal with types that matter: True is not 1, but 5 and 5.0 are the same number."""
    if type(a) is type(b):  # the usual case (two strings), decided first
        return bool(a == b)
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    return isinstance(a, int | float) and isinstance(b, int | float) and bool(a == b)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@dataclass(frozen=True, slots=True)
class _ToBrevoStep:
    rule: FieldRule
    read: Reader
    transform: Callable[[Any], Any] | None
    coerce: Callable[[Any], Any]
    has_default: bool
    default: Any


@dataclass(frozen=True, slots=True)
class _ToBrazeStep:
    braze: str
    brevo: str
    convert: Callable[[Any], Any]


def _text_for_braze(value: Any) -> str:
    return to_text(value)[:BRAZE_STRING_MAX]


_CONVERT_TO_BRAZE: Mapping[str, Callable[[Any], Any]] = {
    "text": _text_for_braze,
    "category": _text_for_braze,
    "number": parse_number,
    "boolean": parse_bool,
    "date": parse_date,
}


class _Rejected(Exception):
    def __init__(self, reason: str, field: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class CompiledMapping:
    """A validated mapping with every rule pre-compiled for fast, pure conversions."""

    __slots__ = (
        "rules", "identity_attribute", "written_to_brevo", "custom_fields", "standard_fields",
        "_phone_attribute", "_to_brevo", "_to_braze", "_nested_dates",
    )  # fmt: skip

    def __init__(self, rules: Sequence[FieldRule]) -> None:
        self.rules: tuple[FieldRule, ...] = tuple(rules)
        by_field = {r.braze: r for r in self.rules}
        identity = by_field.get("external_id")
        self.identity_attribute: str | None = identity.brevo if identity else None
        phone = by_field.get("phone")
        self._phone_attribute: str | None = phone.brevo if phone else None
        # The Brevo attributes `to_brevo` can fill besides EMAIL and the identity: SMS whenever the
        # phone is mapped, and every other rule that flows to Brevo.
        self.written_to_brevo: tuple[str, ...] = tuple(
            r.brevo for r in self.rules if r.braze == "phone" or (r.to_brevo and r.braze not in IDENTITY_FIELDS)
        )
        self._to_brevo = tuple(
            self._compile_to_brevo(r) for r in self.rules if r.to_brevo and r.braze not in IDENTITY_FIELDS
        )
        self._to_braze = tuple(
            _ToBrazeStep(r.braze, r.brevo, _CONVERT_TO_BRAZE[r.type])
            for r in self.rules
            if r.to_braze and r.braze not in IDENTITY_FIELDS | BRAZE_READ_ONLY | CONSENT_FIELDS
        )
        self._nested_dates = frozenset(r.braze for r in self.rules if "." in r.braze and r.type == "date")
        # The Braze fields the rules name, as custom attributes and as standard profile fields.
        self.custom_fields = frozenset(r.braze for r in self.rules if r.is_custom)
        self.standard_fields = frozenset(r.braze for r in self.rules if not r.is_custom)

    @staticmethod
    def _compile_to_brevo(rule: FieldRule) -> _ToBrevoStep:
        coerce = _COERCE_TO_BREVO[rule.type]
        has_default = not _is_empty(rule.default)
        default = coerce(rule.default) if has_default else None
        transform = TRANSFORMS[rule.transform] if rule.transform else None
        return _ToBrevoStep(rule, _reader(rule), transform, coerce, has_default, default)

    @property
    def phone_attribute(self) -> str | None:
        """The Brevo attribute the phone maps to (SMS by default), or None when it is not mapped."""
        return self._phone_attribute

    def __repr__(self) -> str:
        return f"CompiledMapping({len(self.rules)} rules, identity_attribute={self.identity_attribute!r})"

    # ------------------------------------------------------------ what to read and create
    def fields_to_export(self) -> list[str]:
        """Braze `fields_to_export` for user exports: identity, consent and what the rules read."""
        fields = list(ALWAYS_EXPORTED)
        for rule in self.rules:
            if rule.is_custom:
                name = "custom_attributes"
            elif rule.braze == "push_opted_in":
                name = "push_subscribe"
            else:
                name = rule.braze
            if name in EXPORTABLE_FIELDS and name not in fields:
                fields.append(name)
        return fields

    def brevo_attributes(self) -> list[tuple[str, str]]:
        """(NAME, Brevo create type) of every Brevo attribute the mapping names, EMAIL excepted."""
        return [(r.brevo, BREVO_CREATE_TYPES[r.type]) for r in self.rules if r.brevo != "EMAIL"]

    # ------------------------------------------------------------ Braze -> Brevo
    def to_brevo(
        self, user: BrazeUser, *, include: Collection[str] | None = None
    ) -> ContactPayload | Rejection:
        """Map one exported Braze user to what Brevo should hold, or say precisely why it cannot be."""
        data = user.data
        ext_id = _identifier(user.external_id if user.external_id is not None else data.get("external_id"))
        raw_email = user.email if user.email is not None else data.get("email")
        raw_phone = user.phone if user.phone is not None else data.get("phone")
        try:
            email = self._email(raw_email)
            sms = self._sms(raw_phone)
        except _Rejected as exc:
            return Rejection(_fallback_key(ext_id, raw_email, raw_phone, data), exc.reason, exc.field)

        if ext_id is not None:
            key = f"ext:{ext_id}"
        elif email is not None:
            key = f"email:{email.lower()}"
        elif sms is not None:
            key = f"sms:{sms}"
        else:
            return Rejection(
                _fallback_key(ext_id, raw_email, raw_phone, data),
                "no usable identifier: Brevo needs an email, a phone (SMS) or an ext_id",
            )

        attributes: dict[str, Any] = {}
        if ext_id is not None and self.identity_attribute is not None:
            attributes[self.identity_attribute] = ext_id
        if sms is not None and self._phone_attribute is not None:
            attributes[self._phone_attribute] = sms

        steps = self._to_brevo if include is None else [s for s in self._to_brevo if s.rule.braze in include]
        for step in steps:
            value = step.read(data)
            if step.transform is not None and not _is_empty(value):
                try:
                    value = step.transform(value)
                except ValueError as exc:
                    return Rejection(
                        key,
                        f"attribute {step.rule.brevo}: transform `{step.rule.transform}` "
                        f"cannot read {_shown(value)}: {exc}",
                        step.rule.braze,
                    )
            if _is_empty(value):
                if step.has_default:
                    attributes[step.rule.brevo] = step.default
                continue
            try:
                coerced = step.coerce(value)
            except ValueError:
                return Rejection(
                    key,
                    f"attribute {step.rule.brevo} expects {_EXPECTS[step.rule.type]}, got {_shown(value)}",
                    step.rule.braze,
                )
            if coerced == "":
                continue  # never send empty values: they would wipe what Brevo holds
            attributes[step.rule.brevo] = coerced

        state = data.get("email_subscribe")
        blacklisted = (
            True if state == "unsubscribed" else False if state in ("opted_in", "subscribed") else None
        )
        return ContactPayload(
            key=key, email=email, ext_id=ext_id, attributes=attributes, email_blacklisted=blacklisted
        )

    def brevo_value(self, braze_field: str, value: Any) -> Any:
        """One Braze value as the Braze -> Brevo half would write it (None: nothing would be written)."""
        for step in self._to_brevo:
            if step.rule.braze != braze_field:
                continue
            try:
                if step.transform is not None and not _is_empty(value):
                    value = step.transform(value)
                if _is_empty(value):
                    return step.default if step.has_default else None
                coerced = step.coerce(value)
            except ValueError:
                return None
            return None if coerced == "" else coerced
        return None

    @staticmethod
    def _email(raw: Any) -> str | None:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        try:
            return normalize_email(raw)
        except ValueError as exc:
            raise _Rejected(f"invalid email {_shown(raw)}: {exc}", "email") from None

    def _sms(self, raw: Any) -> str | None:
        if self._phone_attribute is None or raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        try:
            return to_e164(raw)
        except ValueError as exc:
            raise _Rejected(f"invalid phone {_shown(raw)}: {exc}", "phone") from None

    # ------------------------------------------------------------ Brevo -> Braze
    def to_braze(self, contact: BrevoContact) -> dict[str, Any]:
        """Braze field -> value for the rules that flow to Braze, plus `email` and `phone`.

        Values that cannot be converted (a phone without a country code, text in a number
        attribute) are left out: Braze would refuse them, and the rest of the contact is good.
        Consent and fields Braze computes are never written from here.
        """
        attributes = contact.attributes
        out: dict[str, Any] = {}
        email = contact.email if contact.email else attributes.get("EMAIL")
        if isinstance(email, str) and email.strip():
            out["email"] = email.strip()
        sms = attributes.get(self._phone_attribute or "SMS")
        if not _is_empty(sms):
            with contextlib.suppress(ValueError):  # a number Braze cannot use is left out
                out["phone"] = to_e164(sms)
        for step in self._to_braze:
            value = attributes.get(step.brevo)
            if _is_empty(value):
                continue
            try:
                out[step.braze] = step.convert(value)
            except ValueError:
                continue
        return out

    def nest(self, flat: Mapping[str, Any], *, merge_objects: bool = False) -> dict[str, Any]:
        """`{"address.city": "x", "first_name": "A"}` -> `{"address": {"city": "x"}, "first_name": "A"}`.

        Inside nested objects Braze needs dates as `{"$time": ...}` and drops every nested
        update of a request that holds a null, so dates are wrapped and None values skipped.
        Without `_merge_objects: true` Braze replaces the whole object; pass
        `merge_objects=True` to add it when something was nested.
        """
        out: dict[str, Any] = {k: v for k, v in flat.items() if "." not in k}
        nested = False
        for key, value in flat.items():
            if "." not in key or value is None:
                continue
            parts = key.split(".")
            node = out
            for part in parts[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
            node[parts[-1]] = {"$time": value} if key in self._nested_dates else value
            nested = True
        if nested and merge_objects:
            out["_merge_objects"] = True
        return out


def _identifier(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _fallback_key(ext_id: str | None, raw_email: Any, raw_phone: Any, data: Mapping[str, Any]) -> str:
    """A key for a rejected user, so the dead letter can still be found."""
    if ext_id is not None:
        return f"ext:{ext_id}"
    if isinstance(raw_email, str) and raw_email.strip():
        return f"email:{raw_email.strip().lower()}"
    if isinstance(raw_phone, str | int) and str(raw_phone).strip():
        return f"sms:{str(raw_phone).strip()}"
    braze_id = data.get("braze_id")
    return f"braze:{braze_id}" if braze_id else "unknown"


# ---------------------------------------------------------------- loading
def load_mapping(source: str | os.PathLike[str] | Mapping[str, Any], *, base_dir: Path) -> CompiledMapping:
    """Load a mapping file (root `field_mapping:`) or an inline mapping; raise one `MappingError` listing every problem."""
    schema = load_packaged_schema(MAPPING_SCHEMA_FILE)
    try:
        rules, where, problems = _read_mapping(source, base_dir, schema)
    except YamlReadError as exc:
        raise MappingError([exc.problem]) from None
    parsed: list[FieldRule] = []
    if isinstance(rules, dict):
        parsed, semantic = _parse_rules(rules, where)
        problems.extend(semantic)
    if problems:
        raise MappingError(sort_problems(problems))
    return CompiledMapping(parsed)


def _read_mapping(
    source: str | os.PathLike[str] | Mapping[str, Any], base_dir: Path, schema: Mapping[str, Any]
) -> tuple[Any, Where, list[Problem]]:
    if isinstance(source, Mapping):
        where = source.where if isinstance(source, LocatedMapping) else Where("<dict>")
        data = to_plain(source, source=where.source)
        if list(data) == ["field_mapping"]:
            return data["field_mapping"], where.sub(("field_mapping",)), schema_problems(schema, data, where)
        rules_schema = {"$ref": "#/$defs/fieldMapping", "$defs": schema["$defs"]}
        return data, where, schema_problems(rules_schema, data, where)
    if not isinstance(source, str | os.PathLike):
        raise YamlReadError(
            Problem(
                "<mapping>",
                None,
                "",
                "a field mapping must be a file path or a mapping",
                "pass the path of a mapping file such as mappings/default.yaml",
            )
        )
    written = os.fspath(source)
    path = Path(written).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists() and Path(written).as_posix() == DEFAULT_MAPPING_PATH:
        # The seed mapping ships inside the package, so a config that relies on the default works from any directory.
        doc = parse_yaml(read_packaged_text(PACKAGED_DEFAULT_MAPPING), source=written, what="field mapping")
    else:
        doc = read_yaml_file(path, source=str(path), what="field mapping")
    where = doc.where()
    problems = duplicate_key_problems(doc)
    problems.extend(schema_problems(schema, doc.data, where))
    rules = doc.data.get("field_mapping") if isinstance(doc.data, dict) else None
    return rules, where.sub(("field_mapping",)), problems


def suggest_brevo_name(name: str) -> str:
    """What a Brevo attribute name was probably meant to be: capitals, digits and `_`."""
    suggestion = re.sub(r"[^A-Z0-9_]", "_", name.upper()).strip("_") or "ATTRIBUTE"
    return suggestion if suggestion[0].isalpha() else f"A_{suggestion}"


def _parse_rules(rules: Mapping[str, Any], where: Where) -> tuple[list[FieldRule], list[Problem]]:
    problems: list[Problem] = []
    parsed: list[FieldRule] = []
    targets: dict[str, str] = {}
    for braze, spec in rules.items():
        if isinstance(spec, str) and spec:
            long: Mapping[str, Any] = {}
            brevo = spec
        elif isinstance(spec, dict) and isinstance(spec.get("brevo"), str) and spec["brevo"]:
            long, brevo = spec, spec["brevo"]
        else:
            continue  # the schema check has already reported it
        target = "EMAIL" if braze == "email" else brevo
        if target in targets:
            problems.append(
                where.problem(
                    (braze,),
                    f"Brevo attribute {target} is already mapped from `{targets[target]}`",
                    "map each Brevo attribute from one Braze field only",
                )
            )
            continue
        targets[target] = braze
        rule, rule_problems = _parse_rule(braze, brevo, long, where)
        problems.extend(rule_problems)
        if rule is not None:
            parsed.append(rule)
    return parsed, problems


def _parse_rule(
    braze: str, brevo: str, long: Mapping[str, Any], where: Where
) -> tuple[FieldRule | None, list[Problem]]:
    problems: list[Problem] = []
    first = braze.split(".")[0]
    if braze in NOT_MAPPABLE or first in NOT_MAPPABLE:
        problems.append(
            where.problem(
                (braze,),
                f"`{first}` is a list or object in Braze exports, not a single value",
                "map one of its values through a custom attribute instead, or remove the line",
            )
        )
    elif "." in braze and first in STANDARD_FIELDS:
        problems.append(
            where.problem(
                (braze,),
                f"`{first}` is a Braze standard field and has no nested keys",
                f"write `{first}:` alone",
            )
        )
    is_custom = braze not in STANDARD_FIELDS

    if braze == "email":
        if brevo.upper() != "EMAIL":
            problems.append(
                where.problem(
                    (braze,), f"`email` must map to the contact's email, not {brevo}", "write `email: email`"
                )
            )
        brevo = "EMAIL"
    elif brevo.upper() == "EMAIL":
        problems.append(
            where.problem(
                (braze,),
                "EMAIL is the Brevo contact's email; only `email` can map to it",
                "choose another Brevo attribute",
            )
        )
    elif not _BREVO_NAME.fullmatch(brevo):
        problems.append(
            where.problem(
                (braze,),
                f"Brevo attribute name {brevo!r} is not valid (capitals, digits and _ only)",
                f"write `{suggest_brevo_name(brevo)}`",
            )
        )

    rule_type = long.get("type") or STANDARD_FIELDS.get(braze, "text")
    allowed_types = ALLOWED_TYPES.get(braze)
    if rule_type in TYPES and allowed_types and rule_type not in allowed_types:
        problems.append(
            where.problem(
                (braze, "type"),
                f"type `{rule_type}` is not allowed for `{braze}`",
                f"use type `{allowed_types[0]}`, or leave `type` out",
            )
        )

    direction = long.get("direction")
    if braze in BRAZE_READ_ONLY | CONSENT_FIELDS and direction in ("both", "brevo_to_braze"):
        why = (
            "consent is synced by the connector's own rules (an unsubscribe always wins)"
            if braze in CONSENT_FIELDS
            else "Braze sets it itself"
            if braze != "external_id"
            else "it is the identity: it is matched through the contact's ext_id"
        )
        problems.append(
            where.problem(
                (braze, "direction"),
                f"`{braze}` cannot be written to Braze: {why}",
                "use `direction: braze_to_brevo`, or leave `direction` out",
            )
        )
    if direction is None:
        direction = "braze_to_brevo" if braze in BRAZE_READ_ONLY | CONSENT_FIELDS else "both"

    transform = long.get("transform")
    if transform is not None and not isinstance(transform, str):
        problems.append(
            where.problem(
                (braze, "transform"),
                "`transform` must be the name of one transform",
                "write one name, e.g. `transform: lower`; known: " + ", ".join(TRANSFORMS),
            )
        )
        transform = None
    elif transform is not None and transform not in TRANSFORMS:
        guess = close_match(str(transform), list(TRANSFORMS))
        problems.append(
            where.problem(
                (braze, "transform"),
                f"unknown transform `{transform}`",
                (f"did you mean `{guess}`? " if guess else "") + "known: " + ", ".join(TRANSFORMS),
            )
        )

    default = long.get("default")
    if "default" in long and not _is_empty(default):
        if braze in IDENTITY_FIELDS:
            problems.append(
                where.problem(
                    (braze, "default"),
                    f"`{braze}` identifies the contact and cannot have a default",
                    "remove `default`",
                )
            )
        elif rule_type in TYPES:
            try:
                _COERCE_TO_BREVO[rule_type](default)
            except ValueError:
                problems.append(
                    where.problem(
                        (braze, "default"),
                        f"default {_shown(default)} is not {_EXPECTS[rule_type]}",
                        f"give a default of type {rule_type}, or remove it",
                    )
                )
    if problems or rule_type not in TYPES:
        return None, problems
    return FieldRule(
        braze=braze,
        brevo=brevo,
        type=rule_type,
        direction=direction,
        conflict=long.get("conflict") or "latest",
        transform=transform,
        default=default,
        is_custom=is_custom,
    ), problems
