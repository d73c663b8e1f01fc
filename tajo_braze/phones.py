"""Phone numbers written `+<digits>` to E.164, as libphonenumber reads them.

`phonenumbers.parse` reads any text a person may type (spaces, letters, extensions, national
formats) and costs ~11 µs a number; a first Brevo -> Braze read converts one for most of its
contacts. The numbers reaching `e164` are already `+` and ASCII digits, so the steps that apply to
them are taken here with the library's own metadata and helpers: split the country calling code,
strip a national prefix when what remains is still a possible length, check the length. Anything
off that path goes through `phonenumbers.parse` itself, and a test holds both to the same answers.
"""

from __future__ import annotations

from collections.abc import Callable

import phonenumbers

_Fast = Callable[[str], str | None]


def _parsed(candidate: str) -> str:
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    # "Possible" (a known country code and a plausible length) rather than "valid": carriers'
    # number plans change faster than any metadata, and Braze and Brevo both store such numbers.
    if not phonenumbers.is_possible_number(number):
        raise ValueError("not a valid phone number")
    formatted: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return formatted


def _fast_path() -> _Fast | None:
    """The short path, or None when this phonenumbers release lacks a helper it relies on."""
    try:
        from phonenumbers.phonemetadata import PhoneMetadata
        from phonenumbers.phonenumberutil import (
            COUNTRY_CODE_TO_REGION_CODE,
            ValidationResult,
            _maybe_strip_national_prefix_carrier_code,
            _test_number_length,
            region_code_for_country_code,
        )
    except ImportError:
        return None
    keep_prefix = (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY, ValidationResult.INVALID_LENGTH)
    possible = (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY)

    def short(candidate: str) -> str | None:
        """E.164 of `+<digits>`; None where only the full parse can tell; ValueError if impossible."""
        digits = candidate[1:]
        if not (4 <= len(digits) <= 20 and digits.isascii() and digits.isdigit()) or digits[0] == "0":
            return None
        for size in (1, 2, 3):  # calling codes are prefix-free
            code = int(digits[:size])
            if code in COUNTRY_CODE_TO_REGION_CODE:
                break
        else:
            return None
        national = digits[size:]
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region_code_for_country_code(code))
        if metadata is None or len(national) < 2:
            return None
        _, stripped, _ = _maybe_strip_national_prefix_carrier_code(national, metadata)
        if _test_number_length(stripped, metadata) not in keep_prefix:
            national = stripped
        if not 2 <= len(national) <= 17:
            return None
        if _test_number_length(national, metadata) not in possible:
            raise ValueError("not a valid phone number")
        return f"+{code}{national}"

    return short


_SHORT = _fast_path()


def e164(candidate: str, *, short: _Fast | None = _SHORT) -> str:
    """`candidate` (`+` then digits) in E.164; ValueError when it is not a possible number."""
    if short is not None:
        answer = short(candidate)
        if answer is not None:
            return answer
    return _parsed(candidate)
