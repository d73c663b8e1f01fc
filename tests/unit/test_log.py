"""log.py: JSON lines, levels, and secrets masked wherever they hide."""

from __future__ import annotations

import io
import json

import pytest

from tajo_braze.log import MASK, SecretMasker, make_logger, mask_text

KEY = "xkeysib-0123456789abcdef-SECRET"
OTHER = "braze-key-4242"


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_mask_text_replaces_every_occurrence_of_every_secret() -> None:
    text = f"a {KEY} b {OTHER} c {KEY}"

    assert mask_text(text, [KEY, OTHER]) == f"a {MASK} b {MASK} c {MASK}"


def test_mask_text_ignores_secrets_too_short_to_matter() -> None:
    assert mask_text("on and off", ["on", ""]) == "on and off"


def test_mask_text_masks_a_secret_containing_another_as_a_whole() -> None:
    assert mask_text(f"x{KEY}x", ["0123456789", KEY]) == f"x{MASK}x"


def test_mask_text_masks_the_url_encoded_form() -> None:
    secret = "a+b/c=d"

    assert mask_text("key=a%2Bb%2Fc%3Dd", [secret]) == f"key={MASK}"


def test_secret_masker_walks_nested_values_and_keeps_other_types() -> None:
    masker = SecretMasker([KEY])
    event = {
        "event": f"calling with {KEY}",
        "headers": {"api-key": KEY, "n": 3},
        "bodies": [f"x{KEY}", ("t", KEY), None],
        "count": 2,
    }

    out = masker(None, "info", event)

    assert out == {
        "event": f"calling with {MASK}",
        "headers": {"api-key": MASK, "n": 3},
        "bodies": [f"x{MASK}", ("t", MASK), None],
        "count": 2,
    }
    assert KEY not in repr(masker)


def test_logger_writes_one_json_object_per_line_with_level_and_time() -> None:
    stream = io.StringIO()
    log = make_logger(stream=stream)

    log.info("api_call", api="braze", status=201)

    (record,) = lines(stream)
    assert record["event"] == "api_call"
    assert record["api"] == "braze"
    assert record["status"] == 201
    assert record["level"] == "info"
    assert str(record["timestamp"]).endswith("Z")


def test_logger_masks_secrets_in_event_values_and_exceptions() -> None:
    stream = io.StringIO()
    log = make_logger(stream=stream, secrets=[KEY, OTHER])

    log.warning(f"bad key {KEY}", body={"echo": [OTHER]})
    try:
        raise RuntimeError(f"server said {KEY}")
    except RuntimeError:
        log.exception("boom")

    output = stream.getvalue()
    assert KEY not in output
    assert OTHER not in output
    first, second = lines(stream)
    assert first["event"] == f"bad key {MASK}"
    assert first["body"] == {"echo": [MASK]}
    assert f"server said {MASK}" in str(second["exception"])


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("debug", ["debug", "info", "warning", "error"]),
        ("verbose", ["info", "warning", "error"]),
        ("info", ["info", "warning", "error"]),
        ("WARNING", ["warning", "error"]),
        ("error", ["error"]),
    ],
)
def test_levels_filter_lower_events(level: str, shown: list[str]) -> None:
    stream = io.StringIO()
    log = make_logger(level=level, stream=stream)

    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")

    assert [record["level"] for record in lines(stream)] == shown


def test_unknown_level_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="debug, verbose, info, warning, error"):
        make_logger(level="loud")


def test_console_output_is_plain_text_and_masked() -> None:
    stream = io.StringIO()
    log = make_logger(stream=stream, json_output=False, secrets=[KEY])

    log.info("hello", key=KEY)

    output = stream.getvalue()
    assert "hello" in output
    assert MASK in output
    assert KEY not in output
    assert not output.lstrip().startswith("{")
