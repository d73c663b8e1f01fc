"""Pure value conversions shared by the field mapping, and the registry of named transforms.

Every function here takes one value and returns the converted value or raises `ValueError`
with a short reason. Nothing is ever evaluated from configuration: a mapping names a
transform, and the name is looked up in `TRANSFORMS`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

from email_validator import EmailNotValidError, validate_email

from . import phones

BRAZE_STRING_MAX = 255  # Braze caps custom-attribute strings at 255 characters

# ---------------------------------------------------------------- numbers and booleans
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


def parse_number(value: Any) -> int | float:
    """An int or a finite float; numeric text is read ("12", "-3.5", "1e3") but "1,5" is not."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text) and len(text) <= 30:
            return int(text)
        if _NUMBER.fullmatch(text) and len(text) <= 400:
            number = float(text)
            if math.isfinite(number):
                return number
    raise ValueError("not a number")


_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


def parse_bool(value: Any) -> bool:
    """true/false, "true"/"false" (any case), 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError("not a boolean")


# ---------------------------------------------------------------- dates
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_US_DAY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
# "2020-07-10 15:00:00.000 UTC" (Braze export samples)
_UTC_SUFFIX = re.compile(r"(.+?)\s*(?:UTC|GMT)")
# yyyy-MM-ddTHH:mm:ss:SSSZ (Braze's own format, colon before the milliseconds)
_COLON_MILLIS = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2}):(\d{1,3})\s*(Z|[+-]\d{2}:?\d{2})?")
# ddd MM dd HH:mm:ss.TZD YYYY, e.g. "Fri 07 10 15:00:00.000 UTC 2020" or "Fri Jul 10 15:00:00 +0200 2020"
_LONG_FORM = re.compile(
    r"[A-Za-z]{3},?\s+(\d{1,2}|[A-Za-z]{3})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})?\s+(\d{4})"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}


def _offset(text: str | None) -> timezone:
    if not text or text in ("Z", "UTC", "GMT"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


def _utc_day(moment: datetime) -> str:
    # Braze reads a time without a zone as UTC; a zoned time is moved to UTC before its day is taken.
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date().isoformat()


def parse_date(value: Any) -> str:
    """`YYYY-MM-DD` from any date format Braze accepts or exports (braze-api.md §12)."""
    if isinstance(value, datetime):
        return _utc_day(value)
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        raise ValueError("not a date")
    text = value.strip()
    if len(text) > 64:
        raise ValueError("not a date")
    try:
        if _DAY.fullmatch(text):
            return date.fromisoformat(text).isoformat()
        if match := _US_DAY.fullmatch(text):
            month, day, year = (int(g) for g in match.groups())
            return date(year, month, day).isoformat()
        if match := _COLON_MILLIS.fullmatch(text):
            day_part, clock, millis, zone = match.groups()
            moment = datetime.fromisoformat(f"{day_part}T{clock}.{millis.ljust(3, '0')}")
            return _utc_day(moment.replace(tzinfo=_offset(zone)))
        if match := _LONG_FORM.fullmatch(text):
            month_text, day_text, hh, mm, ss, zone, year_text = match.groups()
            month = int(month_text) if month_text.isdigit() else _MONTHS[month_text.lower()]
            moment = datetime(
                int(year_text), month, int(day_text), int(hh), int(mm), int(ss), tzinfo=_offset(zone)
            )
            return _utc_day(moment)
        if match := _UTC_SUFFIX.fullmatch(text):
            return _utc_day(datetime.fromisoformat(match.group(1).strip()).replace(tzinfo=UTC))
        return _utc_day(datetime.fromisoformat(text))
    except (ValueError, KeyError, OverflowError):
        raise ValueError("not a date") from None


# ---------------------------------------------------------------- phone and email
_NOT_DIGIT = re.compile(r"\D")


def to_e164(value: Any) -> str:
    """A phone number in E.164 (`+<country><number>`).

    Without a leading `+`: `00` is read as the international prefix, exactly 10 digits as a
    US number (as Braze does), anything else as digits that already start with the country
    code (as Brevo stores SMS numbers, e.g. `33612345678`).
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("not a phone number")
    text = str(value).strip()
    if not text or len(text) > 40:
        raise ValueError("not a phone number")
    if text.startswith("+"):
        return _e164("+" + _NOT_DIGIT.sub("", text))
    digits = _NOT_DIGIT.sub("", text)
    if digits.startswith("00"):
        return _e164("+" + digits[2:])
    if len(digits) == 10:
        return _e164("+1" + digits)
    return _e164("+" + digits)


# One Brevo -> Braze read converts a number up to three times, in Brevo's form (`336...`) and in
# Braze's (`+336...`): the latest answers are kept, by `+<digits>`.
@functools.lru_cache(maxsize=4096)
def _e164(candidate: str) -> str:
    return phones.e164(candidate)


# Plain ASCII addresses (dot-atom local part, LDH labels, alphabetic TLD) are what nearly every
# user has; for them the full validator's answer is known in advance, and it costs ~30 µs a call.
# Anything else (quotes, IDNs, punycode, special-use names, odd lengths) takes the full path.
_PLAIN_EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_SPECIAL_USE_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})


def _plain_email(text: str) -> str | None:
    match = _PLAIN_EMAIL.fullmatch(text)
    if match is None or len(text) > 254 or len(match["local"]) > 64:
        return None
    domain = match["domain"].lower()
    if "--" in domain or domain.rsplit(".", 1)[-1] in _SPECIAL_USE_TLDS:
        return None
    return f"{match['local']}@{domain}"


def normalize_email(value: Any) -> str:
    """Syntax-checked email: local part kept as written, domain lower-cased (punycode for IDNs).

    Braze requires punycode for non-ASCII domains, so the ASCII form is what both sides get.
    """
    if not isinstance(value, str):
        raise ValueError("not text")
    text = value.strip()
    plain = _plain_email(text)
    if plain is not None:
        return plain
    try:
        # Brevo does not take internationalised local parts (SMTPUTF8): refuse them before sending.
        result = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    domain = (result.ascii_domain or result.domain).lower()
    return f"{result.local_part}@{domain}"


# ---------------------------------------------------------------- text
def to_text(value: Any) -> str:
    """Text for a Brevo text attribute; numbers and booleans written out, lists joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ", ".join(
            to_text(item) for item in value if item is not None and not isinstance(item, Mapping | list)
        )
    raise ValueError("not text")


def truncate(value: Any, limit: int = BRAZE_STRING_MAX) -> Any:
    return value[:limit] if isinstance(value, str) else value


# ---------------------------------------------------------------- named transforms
def _text_method(name: str) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        return getattr(value, name)() if isinstance(value, str) else value

    apply.__name__ = name
    return apply


TRANSFORMS: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
    {
        "lower": _text_method("lower"),
        "upper": _text_method("upper"),
        "strip": _text_method("strip"),
        "title": _text_method("title"),
        "capitalize": _text_method("capitalize"),
        "e164": to_e164,
        "date": parse_date,
        "bool": parse_bool,
        "number": parse_number,
        "email": normalize_email,
        "truncate255": truncate,
    }
)
