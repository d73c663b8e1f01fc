"""Fuzzing configuration and mapping files: every failure is a ConfigError / MappingError naming the
file and the line, never another exception; the CLI answers it with exit code 2 and no traceback.

The inputs are working files with one to three mutations (a value, a key, an indentation, a line
replaced, inserted or deleted), so most examples get past the YAML parser into the schema and the
semantic checks, where a crash would hide.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tajo_braze.cli import main
from tajo_braze.config import Config, load_config
from tajo_braze.errors import ConfigError, MappingError, ProblemsError
from tajo_braze.mapping import CompiledMapping, load_mapping

SECRETS = {
    "BRAZE_API_KEY": "fuzz-canary-braze-51c0ffee",
    "BREVO_API_KEY": "xkeysib-fuzz-canary-brevo-51c0ffee",
    "TAJO_WEBHOOK_TOKEN": "fuzz-canary-token-51c0ffee",
}

CONFIG_TEXT = """\
connectors:
  braze:
    enabled: true
    instance_url: http://127.0.0.1:9/braze
    api_key: ${BRAZE_API_KEY}
    api_version: v1
    brevo:
      api_key: ${BREVO_API_KEY}
      base_url: http://127.0.0.1:9/brevo/v3
    sync:
      users: true
      campaigns: true
      segments: true
      events: true
      direction: both
      users_segment: All Users
      deletes: false
      batch_size: 500
    lists:
      engaged_users: 10
      dormant_users: 11
    mirror_segments: [engaged_users]
    catalogs: {}
    webhooks:
      token: ${TAJO_WEBHOOK_TOKEN}
    field_mapping: mapping.yaml
    debug: false
    log_level: info
    log_api_calls: false
    state_path: state/state.db
"""

MAPPING_TEXT = """\
field_mapping:
  external_id: BRAZE_ID
  email: email
  first_name: FIRSTNAME
  last_name: {brevo: LASTNAME, transform: title}
  phone: SMS
  total_revenue: TOTAL_REVENUE
  push_opted_in: PUSH_OPTIN
  email_subscribe: EMAIL_STATUS
  dob: {brevo: BIRTHDAY, type: date, direction: both}
  loyalty_points: {brevo: LOYALTY_POINTS, type: number, default: 0, conflict: braze_wins}
  address.city:
    brevo: CITY
    type: text
    direction: braze_to_brevo
  vip: {brevo: VIP, type: boolean}
  tier: {brevo: TIER, type: category, default: bronze}
"""

ODD_VALUES = [
    "",
    "~",
    "null",
    "yes",
    "0x1F",
    "1e400",
    "-.inf",
    "[1, {a: b}]",
    "{",
    "]",
    "'unclosed",
    '"\\x"',
    "&anchor 3",
    "*nowhere",
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!!binary aGk=",
    "!!set {a, b}",
    "!!timestamp 2024-01-01",
    "${UNSET_VAR}",
    # A secret variable in a field that is not secret (`instance_url: ${BRAZE_API_KEY}`) has its own
    # check in tests/security: its value must not be echoed by the error.
    "$${LITERAL}",
    "${",
    "xkeysib-literal-secret-0123456789",
    "https://evil.example.com/v3",
    "http://10.1.2.3/braze",
    "rest.iad-99.braze.com",
    "US-01",
    "@reserved",
    "`tick`",
    "%percent",
    "? complex",
    "|",
    ">-",
    "\t",
    "\u202e\u0000",
    "日本語",
    "-1",
    "99999999999999999999999",
    "all",
]
ODD_KEYS = ["instanceurl", "sync", "brevo", "x", "api_key", "<<", "?", "- item", "'quoted key'", "日本", "1", "null"]


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """`text` with one to three mutations, each on a line that holds a `key: value` or on any line."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(lines) - 1)) if lines else 0
        line = lines[index] if lines else ""
        indent = line[: len(line) - len(line.lstrip())]
        key, colon, _ = line.strip().partition(":")
        kind = draw(st.sampled_from(["value", "value", "key", "insert", "delete", "indent", "raw", "duplicate"]))
        value = draw(st.sampled_from(ODD_VALUES) | st.text(max_size=20))
        if kind == "value" and colon:
            lines[index] = f"{indent}{key}: {value}"
        elif kind == "key" and colon:
            lines[index] = f"{indent}{draw(st.sampled_from(ODD_KEYS) | st.text(min_size=1, max_size=12))}:{line.split(':', 1)[1]}"
        elif kind == "insert":
            new_key = draw(st.sampled_from(ODD_KEYS))
            lines.insert(index, f"{indent}{new_key}: {value}")
        elif kind == "delete" and lines:
            del lines[index]
        elif kind == "indent":
            lines[index] = draw(st.sampled_from(["", " ", "   ", "\t", "      "])) + line.lstrip()
        elif kind == "duplicate":
            lines.insert(index, line)
        else:
            lines[index] = draw(st.text(max_size=40))
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, SECRETS):
        yield Path(tmp)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path


def assert_located(error: ProblemsError, path: Path, text: str) -> None:
    """Every problem names the file; the ones about the file's content also name a line in it."""
    rendered = str(error)
    assert error.problems
    for problem in error.problems:
        assert problem.file == str(path), problem
        assert problem.message, problem
        assert problem.line is not None, problem.render()
        assert 1 <= problem.line <= max(1, text.count("\n") + 1), problem.render()
    for secret in SECRETS.values():
        assert secret not in rendered


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv, stdout=out)
    return code, out.getvalue(), err.getvalue()


def assert_cli_says_usage_error(argv: list[str], path: Path) -> None:
    code, out, err = cli(argv)
    assert code == 2, out + err
    assert "Traceback" not in out + err
    assert path.name in err, err
    assert all(secret not in out + err for secret in SECRETS.values())
    code, out, err = cli([*argv, "--json"])
    assert code == 2 and json.loads(out)["exit_code"] == 2, out + err
    assert path.name in json.loads(out)["error"]


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(text=mutated(CONFIG_TEXT))
def test_a_mutated_config_loads_or_fails_with_file_and_line_and_the_cli_exits_2(text: str) -> None:
    with workspace() as tmp:
        write(tmp / "mapping.yaml", MAPPING_TEXT)
        path = write(tmp / "tajo.yaml", text)
        try:
            assert isinstance(load_config(path), Config)
            event("valid configuration")
        except ConfigError as exc:
            event(f"configuration error: {exc.problems[0].message[:30]}")
            assert_located(exc, path, text)
            assert_cli_says_usage_error(["connectors", "status", "braze", "--config", str(path)], path)
            assert not (tmp / "state").exists()  # nothing is created from a configuration that failed


@SETTINGS
@given(text=mutated(MAPPING_TEXT))
def test_a_mutated_mapping_loads_or_fails_with_file_and_line_and_the_cli_exits_2(text: str) -> None:
    with workspace() as tmp:
        write(tmp / "tajo.yaml", CONFIG_TEXT)
        path = write(tmp / "mapping.yaml", text)
        try:
            assert isinstance(load_mapping(path, base_dir=tmp), CompiledMapping)
            event("valid mapping")
        except MappingError as exc:
            event(f"mapping error: {exc.problems[0].message[:30]}")
            assert_located(exc, path, text)
            # A sync reads the mapping before it calls anything (the URLs here lead nowhere).
            assert_cli_says_usage_error(
                ["connectors", "sync", "braze", "--config", str(tmp / "tajo.yaml"), "--resources", "users"], path
            )


RULE_KEYS = ["brevo", "type", "direction", "conflict", "transform", "default", "typo"]
RULE_VALUES = st.one_of(
    st.sampled_from(
        ["text", "number", "boolean", "date", "category", "both", "braze_to_brevo", "brevo_to_braze", "latest",
         "braze_wins", "brevo_wins", "lower", "e164", "nope", "FIRSTNAME", "EMAIL", "lower case", "", "2024-13-01"]
    ),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
BRAZE_FIELDS = st.sampled_from(
    ["external_id", "email", "phone", "first_name", "dob", "custom_events", "apps", "push_opted_in",
     "email_subscribe", "a.b.c", "first_name.x", "loyalty_points", "", "Ünïcode", "total_revenue"]
)


@settings(max_examples=150, deadline=None)
@example(rules={"first_name": {"brevo": "FIRSTNAME", "transform": ["lower"]}})  # a list where a name belongs
@given(
    rules=st.dictionaries(
        BRAZE_FIELDS,
        st.one_of(
            st.sampled_from(["FIRSTNAME", "email", "lower case", "X1", "", "EMAIL"]),
            st.dictionaries(st.sampled_from(RULE_KEYS), RULE_VALUES, max_size=5),
            st.integers(),
            st.none(),
        ),
        max_size=6,
    )
)
def test_any_rule_combination_compiles_or_fails_with_file_and_line(rules: dict[str, Any]) -> None:
    with workspace() as tmp:
        text = yaml.safe_dump({"field_mapping": rules}, allow_unicode=True)
        path = write(tmp / "mapping.yaml", text)
        try:
            mapping = load_mapping(path, base_dir=tmp)
        except MappingError as exc:
            assert_located(exc, path, text)
        else:
            assert {rule.braze for rule in mapping.rules} <= set(rules)
