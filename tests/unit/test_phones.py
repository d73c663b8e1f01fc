"""The short path to E.164 answers exactly as phonenumbers' full parse does."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tajo_braze import phones


def answer(candidate: str, *, full: bool) -> tuple[str, str]:
    try:
        return ("number", phones.e164(candidate, short=None) if full else phones.e164(candidate))
    except ValueError as exc:
        return ("refused", str(exc))


def region_numbers() -> list[str]:
    """Example numbers of every region, and the near misses around them."""
    rng = random.Random(20261123)
    candidates: list[str] = []
    kinds = (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.TOLL_FREE,
    )
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in kinds:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            code = str(example.country_code)
            nsn = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[1 + len(code) :]
            candidates += [
                f"+{code}{nsn}",
                f"+{code}0{nsn}",  # a national prefix written after the calling code
                f"+{code}00{nsn}",
                f"+{code}{nsn[:-1]}",
                f"+{code}{nsn[:-2]}",
                f"+{code}{nsn}1",
            ]
            candidates += [f"+{code}{rng.randrange(10 ** rng.randint(1, 15))}" for _ in range(3)]
    return candidates


def test_the_short_path_is_taken_for_ordinary_numbers() -> None:
    assert phones._SHORT is not None  # this phonenumbers release has the helpers it uses
    assert phones._SHORT("+33612345678") == "+33612345678"
    assert phones._SHORT("+0612345678") is None  # no calling code: left to the full parse


def test_example_numbers_of_every_region_get_the_full_parse_answer() -> None:
    candidates = region_numbers()
    assert len(candidates) > 2000
    different = [c for c in candidates if answer(c, full=False) != answer(c, full=True)]
    assert different == []
    refused = [c for c in candidates if answer(c, full=False)[0] == "refused"]
    assert 0 < len(refused) < len(candidates)  # both outcomes were exercised


@given(st.text(alphabet="0123456789", max_size=22))
def test_any_digits_get_the_full_parse_answer(digits: str) -> None:
    assert answer(f"+{digits}", full=False) == answer(f"+{digits}", full=True)


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ("+33612345678", "+33612345678"),
        ("+4407911123456", "+447911123456"),  # the UK trunk 0 after +44 is dropped
        ("+390612345678", "+390612345678"),  # Italy keeps its leading 0
        ("+12015550123", "+12015550123"),
    ],
)
def test_known_numbers(candidate: str, expected: str) -> None:
    assert phones.e164(candidate) == expected


def test_impossible_numbers_are_refused() -> None:
    for candidate in ("+336", "+999123456789", "+3361234567890123"):
        with pytest.raises(ValueError):
            phones.e164(candidate)
