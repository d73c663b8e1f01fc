"""Configuration loading: interpolation, validation with file:line problems, secrets, URLs."""

from __future__ import annotations

import copy
import json
import pickle
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tajo_braze.config import (
    BRAZE_INSTANCES,
    BREVO_HOSTS,
    DEFAULT_EVENT_DENY,
    DEFAULT_EVENT_NAMES,
    Config,
    Secret,
    load_config,
    normalize_braze_url,
    normalize_brevo_url,
)
from tajo_braze.errors import ConfigError
from tajo_braze.yamlpos import LocatedMapping, locate_lines

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "BRAZE_API_KEY": "braze-key-0001",
    "BREVO_API_KEY": "xkeysib-brevo-0002",
    "TAJO_WEBHOOK_TOKEN": "hook-token-0003",
}


def write(tmp_path: Path, text: str, name: str = "tajo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def minimal(extra: str = "", *, url: str = "rest.iad-01.braze.com") -> str:
    """A valid configuration with `extra` lines appended inside `braze:` (indented by 4)."""
    return (
        "connectors:\n"
        "  braze:\n"
        f"    instance_url: {url}\n"
        "    api_key: ${BRAZE_API_KEY}\n"
        "    brevo:\n"
        "      api_key: ${BREVO_API_KEY}\n"
        + textwrap.indent(textwrap.dedent(extra).strip("\n"), "    ")
        + "\n"
    )


def problems_of(source: Any, env: dict[str, str] | None = None) -> list[Any]:
    with pytest.raises(ConfigError) as caught:
        load_config(source, env=ENV if env is None else env)
    return list(caught.value.problems)


# ---------------------------------------------------------------- examples and schema copies
def test_production_example_loads_with_keys_from_the_environment() -> None:
    config = load_config(ROOT / "examples" / "tajo.yaml", env=ENV)
    assert config.braze_base_url == "https://rest.iad-01.braze.com"
    assert config.brevo.base_url == "https://api.brevo.com/v3"
    assert config.braze_api_key is not None and config.braze_api_key.reveal() == ENV["BRAZE_API_KEY"]
    assert config.brevo.api_key is not None and config.brevo.api_key.reveal() == ENV["BREVO_API_KEY"]
    assert config.webhooks.token == Secret(ENV["TAJO_WEBHOOK_TOKEN"])
    assert config.base_dir == (ROOT / "examples").absolute()
    assert config.state_path == (ROOT / "examples" / ".tajo" / "state.db").absolute()
    assert dict(config.lists) == {"engaged_users": 10, "dormant_users": 11}
    assert (config.base_dir / str(config.field_mapping)).resolve() == (
        ROOT / "mappings" / "default.yaml"
    ).resolve()


def test_sandbox_example_points_at_loopback() -> None:
    env = {"BRAZE_API_KEY": "sandbox-braze", "BREVO_API_KEY": "xkeysib-sandbox"}
    config = load_config(ROOT / "examples" / "tajo.sandbox.yaml", env=env)
    assert config.braze_base_url == "http://127.0.0.1:8900/braze"
    assert config.brevo.base_url == "http://127.0.0.1:8900/brevo/v3"
    assert config.secrets() == ("sandbox-braze", "xkeysib-sandbox")
    assert config.mirror_segments == ("engaged_users", "dormant_users")


@pytest.mark.parametrize("name", ["config.schema.json", "mapping.schema.json"])
def test_packaged_schema_is_identical_to_the_editor_copy_and_valid(name: str) -> None:
    editor_copy = (ROOT / "schemas" / name).read_bytes()
    packaged = (ROOT / "tajo_braze" / "data" / name).read_bytes()
    assert editor_copy == packaged
    jsonschema.Draft202012Validator.check_schema(json.loads(packaged))


def test_packaged_default_mapping_is_identical_to_the_seed_mapping() -> None:
    assert (ROOT / "mappings" / "default.yaml").read_bytes() == (
        ROOT / "tajo_braze" / "data" / "default_mapping.yaml"
    ).read_bytes()


def test_every_object_in_the_config_schema_refuses_unknown_keys() -> None:
    schema = json.loads((ROOT / "schemas" / "config.schema.json").read_text())
    checked = []

    def walk(node: Any, name: str) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                assert node.get("additionalProperties") is False, name
                checked.append(name)
            for key, value in node.items():
                walk(value, key)
        elif isinstance(node, list):
            for item in node:
                walk(item, name)

    walk(schema, "root")
    assert {"root", "connectors", "braze", "brevo", "sync", "webhooks", "events"} <= set(checked)


# ---------------------------------------------------------------- Secret
def test_secret_never_prints_its_value() -> None:
    secret = Secret("s3cr3t-value")
    assert repr(secret) == "***"
    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert "s3cr3t" not in repr([secret, {"k": secret}])
    assert secret.reveal() == "s3cr3t-value"
    assert copy.deepcopy(secret) is secret
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_secret_compares_and_hashes_by_value() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert len({Secret("a"), Secret("a"), Secret("b")}) == 2
    assert bool(Secret("x")) is True
    assert bool(Secret("")) is False


def test_config_repr_masks_every_secret(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        minimal("webhooks:\n  token: ${TAJO_WEBHOOK_TOKEN}\n  basic_user: ops\n  basic_password: ${PW}"),
    )
    config = load_config(path, env={**ENV, "PW": "basic-pass-0004"})
    text = repr(config)
    for value in (*ENV.values(), "basic-pass-0004"):
        assert value not in text
    assert set(config.secrets()) == {*ENV.values(), "basic-pass-0004"}


# ---------------------------------------------------------------- hosts
def test_instance_table_matches_the_braze_reference() -> None:
    assert set(BRAZE_INSTANCES) == {
        "US-01",
        "US-02",
        "US-03",
        "US-04",
        "US-05",
        "US-06",
        "US-07",
        "US-08",
        "US-10",
        "EU-01",
        "EU-02",
        "AU-01",
        "ID-01",
    }
    assert BRAZE_INSTANCES["US-01"] == "https://rest.iad-01.braze.com"
    assert BRAZE_INSTANCES["US-10"] == "https://rest.us-10.braze.com"
    assert BRAZE_INSTANCES["EU-01"] == "https://rest.fra-01.braze.eu"
    assert BRAZE_INSTANCES["EU-02"] == "https://rest.fra-02.braze.eu"
    assert BRAZE_INSTANCES["AU-01"] == "https://rest.au-01.braze.com"
    assert BRAZE_INSTANCES["ID-01"] == "https://rest.id-01.braze.com"
    assert BREVO_HOSTS == ("api.brevo.com",)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("rest.iad-01.braze.com", "https://rest.iad-01.braze.com"),
        ("https://rest.fra-02.braze.eu/", "https://rest.fra-02.braze.eu"),
        ("  REST.US-10.BRAZE.COM ", "https://rest.us-10.braze.com"),
        ("https://rest.iad-08.braze.com:443", "https://rest.iad-08.braze.com"),
        ("http://127.0.0.1:8900/braze/", "http://127.0.0.1:8900/braze"),
        ("http://127.4.5.6", "http://127.4.5.6"),
        ("http://localhost:1234/a/b", "http://localhost:1234/a/b"),
        ("http://[::1]:9000/braze", "http://[::1]:9000/braze"),
    ],
)
def test_braze_urls_are_normalized(written: str, expected: str) -> None:
    assert normalize_braze_url(written) == expected


@pytest.mark.parametrize(
    ("written", "fragment"),
    [
        ("http://rest.iad-01.braze.com", "only on loopback"),
        ("rest.fra-01.braze.com", "rest.fra-01.braze.eu"),  # EU hosts end in .braze.eu: the list says so
        ("rest.sfo-01.braze.com", "rest.iad-01.braze.com"),
        ("dashboard-01.braze.com", "rest.iad-01.braze.com"),
        ("sdk.iad-01.braze.com", "rest.iad-01.braze.com"),
        ("https://rest.iad-01.braze.com/v1", "no port or path"),
        ("https://user:pw@rest.iad-01.braze.com", "credentials"),
        ("http://localhost.example.com", "valid hosts"),
        ("ftp://127.0.0.1", "http(s)"),
        ("US-01", "instance: US-01"),
        ("", "empty"),
        ("http://127.0.0.1:notaport", "not a valid URL"),
    ],
)
def test_unusable_braze_urls_are_refused_with_a_fix(written: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalize_braze_url(written)
    assert fragment in str(caught.value)


def test_unknown_braze_host_lists_every_valid_host() -> None:
    with pytest.raises(ValueError) as caught:
        normalize_braze_url("rest.nowhere.braze.com")
    for url in BRAZE_INSTANCES.values():
        assert url.removeprefix("https://") in str(caught.value)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("https://api.brevo.com/v3", "https://api.brevo.com/v3"),
        ("api.brevo.com", "https://api.brevo.com/v3"),
        ("https://api.brevo.com/v3/", "https://api.brevo.com/v3"),
        ("http://127.0.0.1:8900/brevo/v3/", "http://127.0.0.1:8900/brevo/v3"),
        ("http://localhost:80", "http://localhost:80"),
    ],
)
def test_brevo_urls_are_normalized(written: str, expected: str) -> None:
    assert normalize_brevo_url(written) == expected


@pytest.mark.parametrize(
    ("written", "fragment"),
    [
        ("https://api.sendinblue.com/v3", "https://api.brevo.com/v3"),
        ("http://api.brevo.com/v3", "only on loopback"),
        ("https://api.example.com/v3", "not the Brevo API host"),
        ("https://api.brevo.com/v2", "/v3"),
    ],
)
def test_unusable_brevo_urls_are_refused_with_a_fix(written: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalize_brevo_url(written)
    assert fragment in str(caught.value)


# ---------------------------------------------------------------- loading
def test_minimal_file_gets_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, minimal()), env=ENV)
    assert config.enabled is True
    assert config.api_version == "v1"
    assert config.sync.direction == "both"
    assert config.sync.track_batch_size == 75
    assert config.sync.catalogs is False
    assert config.mirror_segments == ()
    assert config.field_mapping == "mappings/default.yaml"
    assert config.state_path == tmp_path.absolute() / ".tajo" / "state.db"
    assert config.log_level == "info"
    assert config.events.names == DEFAULT_EVENT_NAMES
    assert config.events.names["opened"] == "brevo_email_opened"
    assert config.events.deny == DEFAULT_EVENT_DENY
    assert config.webhooks.token is None
    assert config.source == str(tmp_path / "tajo.yaml")


def test_missing_api_keys_are_allowed_at_load_time(tmp_path: Path) -> None:
    path = write(tmp_path, "connectors:\n  braze:\n    instance: EU-01\n")
    config = load_config(path, env={})
    assert config.braze_api_key is None
    assert config.brevo.api_key is None
    assert config.braze_base_url == "https://rest.fra-01.braze.eu"
    assert config.secrets() == ()


def test_every_section_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        minimal("""
        enabled: false
        sync:
          direction: braze_to_brevo
          users_segment: engaged_users
          batch_size: 500
          track_batch_size: 50
          track_objects_cap: 50
          export_concurrency: 3
        lists:
          engaged_users: 10
          12345: 11
        mirror_segments: all
        catalogs:
          products: {id: SKU, name: NAME}
        events:
          names:
            opened: email_opened_in_brevo
            delivered: null
          deny: [users.behaviors.CustomEvent]
          batch_size: 50
        debug: true
        log_level: verbose
        log_api_calls: true
        state_path: /var/lib/tajo/state.db
    """),
    )
    config = load_config(path, env=ENV)
    assert config.enabled is False
    assert config.sync.direction == "braze_to_brevo"
    assert config.sync.users_segment == "engaged_users"
    assert (config.sync.batch_size, config.sync.track_batch_size, config.sync.track_objects_cap) == (
        500,
        50,
        50,
    )
    assert config.sync.export_concurrency == 3
    assert dict(config.lists) == {"engaged_users": 10, "12345": 11}
    assert config.mirror_segments == "all"
    assert dict(config.catalogs["products"]) == {"id": "SKU", "name": "NAME"}
    assert config.events.names["opened"] == "email_opened_in_brevo"
    assert "delivered" not in config.events.names
    assert config.events.names["click"] == "brevo_email_clicked"
    assert config.events.deny == ("users.behaviors.CustomEvent",)
    assert config.events.batch_size == 50
    assert (config.debug, config.log_level, config.log_api_calls) == (True, "verbose", True)
    assert config.state_path == Path("/var/lib/tajo/state.db")


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, minimal("sync:\nlists:\nwebhooks:\nevents:\nmirror_segments:")), env=ENV
    )
    assert config.sync.users is True
    assert dict(config.lists) == {}
    assert config.mirror_segments == ()


def test_config_from_a_dict_uses_the_working_directory() -> None:
    config = load_config(
        {
            "connectors": {
                "braze": {
                    "instance_url": "http://127.0.0.1:9/braze",
                    "api_key": "${BRAZE_API_KEY}",
                    "field_mapping": {"email": "email"},
                }
            }
        },
        env=ENV,
    )
    assert config.source == "<dict>"
    assert config.base_dir == Path.cwd()
    assert isinstance(config.field_mapping, LocatedMapping)
    assert dict(config.field_mapping) == {"email": "email"}


def test_a_bare_connector_section_is_accepted_from_a_host() -> None:
    config = load_config({"instance": "US-03"}, env={})
    assert config.braze_base_url == "https://rest.iad-03.braze.com"


def test_interpolation_inside_text_and_literal_dollar(tmp_path: Path) -> None:
    path = write(tmp_path, minimal("sync:\n  users_segment: seg-${REGION}-$${literal}\n  list_prefix: $5_"))
    config = load_config(path, env={**ENV, "REGION": "eu"})
    assert config.sync.users_segment == "seg-eu-${literal}"
    assert config.sync.list_prefix == "$5_"


def test_plaintext_secrets_are_accepted_only_when_allowed(tmp_path: Path) -> None:
    text = "connectors:\n  braze:\n    instance_url: rest.iad-01.braze.com\n    api_key: literal-key-123\n"
    problems = problems_of(write(tmp_path, text))
    assert [p.line for p in problems] == [4]
    assert "allow_plaintext_secrets" in problems[0].fix
    assert "literal-key-123" not in ConfigError(problems).user_message
    config = load_config(write(tmp_path, text + "    allow_plaintext_secrets: true\n"), env={})
    assert config.braze_api_key == Secret("literal-key-123")
    assert config.allow_plaintext_secrets is True


def test_env_values_and_secrets_never_appear_in_problems(tmp_path: Path) -> None:
    path = write(tmp_path, minimal("enabled: ${FLAG}\nwebhooks:\n  token: 12345678"))
    problems = problems_of(path, env={**ENV, "FLAG": "hunter2-secretish"})
    text = ConfigError(problems).user_message
    assert "hunter2-secretish" not in text
    assert "12345678" not in text
    assert {p.path for p in problems} == {"connectors.braze.enabled", "connectors.braze.webhooks.token"}


def test_with_overrides_wraps_and_normalizes(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "connectors:\n  braze:\n    instance: US-01\n"), env={})
    changed = config.with_overrides(
        braze_api_key="cli-braze",
        brevo_api_key="cli-brevo",
        braze_base_url="rest.fra-01.braze.eu",
        debug=True,
    )
    assert changed.braze_api_key == Secret("cli-braze")
    assert changed.brevo.api_key == Secret("cli-brevo")
    assert changed.braze_base_url == "https://rest.fra-01.braze.eu"
    assert changed.debug is True
    assert config.braze_api_key is None  # the original is untouched
    with pytest.raises(ConfigError) as caught:
        config.with_overrides(braze_base_url="rest.nowhere.example")
    assert caught.value.problems[0].fix


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, minimal()), env=ENV)
    with pytest.raises(AttributeError):
        config.enabled = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.lists["x"] = 1  # type: ignore[index]
    assert isinstance(config, Config)


# ---------------------------------------------------------------- problems: file, line, fix
BAD_CASES = [
    # (id, extra lines inside braze:, line of the problem, path, fragment of the fix)
    ("misspelt key", "sycn:\n  users: true", 7, "connectors.braze.sycn", "did you mean `sync`?"),
    ("key one level too high", "users: false", 7, "connectors.braze.users", "move it under `sync:`"),
    ("unknown key without a guess", "zzzzqqq: 1", 7, "connectors.braze.zzzzqqq", "remove it; allowed keys:"),
    (
        "misspelt nested key",
        "sync:\n  userz: true",
        8,
        "connectors.braze.sync.userz",
        "did you mean `users`?",
    ),
    ("wrong type", "enabled: yes please", 7, "connectors.braze.enabled", "expected a boolean (true/false)"),
    (
        "text for a number",
        "lists:\n  engaged: ten",
        8,
        "connectors.braze.lists.engaged",
        "expected a whole number",
    ),
    (
        "out of range",
        "sync:\n  track_batch_size: 100",
        8,
        "connectors.braze.sync.track_batch_size",
        "from 1 to 75",
    ),
    ("bad enum", "sync:\n  direction: bothh", 8, "connectors.braze.sync.direction", "did you mean `both`?"),
    ("bad log level", "log_level: INFO", 7, "connectors.braze.log_level", "did you mean `info`?"),
    ("bad mirror", "mirror_segments: al", 7, "connectors.braze.mirror_segments", "`all`, or a list"),
    (
        "unknown event",
        "events:\n  names:\n    opend: x",
        9,
        "connectors.braze.events.names.opend",
        "did you mean `opened`?",
    ),
    (
        "missing variable",
        "webhooks:\n  token: ${MISSING_TOKEN}",
        8,
        "connectors.braze.webhooks.token",
        "MISSING_TOKEN",
    ),
    (
        "plaintext secret",
        "webhooks:\n  token: abcdefgh",
        8,
        "connectors.braze.webhooks.token",
        "${TAJO_WEBHOOK_TOKEN}",
    ),
    (
        "malformed reference",
        "sync:\n  users_segment: ${not valid}",
        8,
        "connectors.braze.sync.users_segment",
        "${NAME}",
    ),
    (
        "legacy brevo host",
        "      base_url: https://api.sendinblue.com/v3",
        7,
        "connectors.braze.brevo.base_url",
        "api.brevo.com",
    ),
    ("duplicate key", "debug: true\ndebug: false", 8, "connectors.braze.debug", "keep only one"),
    ("both instance forms", "instance: US-01", 7, "connectors.braze.instance", "keep only one"),
]


@pytest.mark.parametrize(
    ("extra", "line", "path", "fix"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_each_problem_names_file_line_and_fix(
    tmp_path: Path, extra: str, line: int, path: str, fix: str
) -> None:
    text = minimal(extra)
    if extra.startswith("      base_url"):  # belongs inside `brevo:`, the last section of the minimal file
        text = minimal().rstrip("\n") + "\n" + extra + "\n"
    config_file = write(tmp_path, text)
    problems = problems_of(config_file)
    assert len(problems) == 1, [p.render() for p in problems]
    problem = problems[0]
    assert problem.file == str(config_file)
    assert problem.line == line
    assert problem.path == path
    assert fix in problem.fix
    assert f"{config_file}:{line}" in problem.render()


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("http://rest.iad-01.braze.com", "https://rest.iad-01.braze.com"),
        ("rest.sfo-01.braze.com", "rest.iad-01.braze.com (US-01)"),
        ("http://10.0.0.5:8900/braze", "valid hosts"),
    ],
)
def test_bad_instance_url_in_a_file(tmp_path: Path, url: str, fix: str) -> None:
    problems = problems_of(write(tmp_path, minimal(url=url)))
    assert [(p.line, p.path) for p in problems] == [(3, "connectors.braze.instance_url")]
    assert fix in problems[0].fix


def test_missing_instance_says_how_to_write_it(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "connectors:\n  braze:\n    enabled: true\n"))
    assert [(p.line, p.path) for p in problems] == [(2, "connectors.braze")]
    assert "instance_url" in problems[0].fix and "US-01" in problems[0].fix


def test_missing_root_keys_are_reported(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "connector:\n  braze: {}\n"))
    messages = " ".join(p.message + p.fix for p in problems)
    assert "did you mean `connectors`?" in messages
    assert "missing required key `connectors`" in messages
    assert all(p.line == 1 for p in problems)


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        minimal("""
        sycn: {}
        debug: maybe
        sync:
          direction: sideways
        webhooks:
          token: ${NOT_SET_ANYWHERE}
    """),
    )
    problems = problems_of(path)
    assert [p.line for p in problems] == [7, 8, 10, 12]
    assert all(p.fix for p in problems)
    assert "4 configuration problems" in str(ConfigError(problems))


def test_yaml_syntax_error_points_at_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "connectors:\n  braze:\n    instance_url: x\n   bad: [\n")
    problems = problems_of(path)
    assert len(problems) == 1 and problems[0].line == 4
    assert "YAML syntax error" in problems[0].message
    assert problems[0].fix


def test_tab_indentation_gets_a_specific_fix(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "connectors:\n\tbraze: {}\n"))
    assert problems[0].line == 2
    assert "spaces, not tabs" in problems[0].fix


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "empty"),
        ("- a\n- b\n", "not a mapping"),
        ("just text\n", "not a mapping"),
        ("a: 1\n---\nb: 2\n", "one document"),
        ("? [a, b]\n: 1\n", "plain words"),
    ],
)
def test_wrong_documents_are_config_errors(tmp_path: Path, content: str, fragment: str) -> None:
    problems = problems_of(write(tmp_path, content))
    assert fragment in " ".join(p.message + " " + p.fix for p in problems)


def test_missing_file_and_directory_and_binary(tmp_path: Path) -> None:
    missing = problems_of(tmp_path / "nope.yaml")
    assert missing[0].file.endswith("nope.yaml") and "not found" in missing[0].message and missing[0].fix
    assert "directory" in problems_of(tmp_path)[0].message
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    assert "UTF-8" in problems_of(binary)[0].fix


def test_hostile_yaml_is_refused_quickly(tmp_path: Path) -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
    )
    assert "more than" in problems_of(write(tmp_path, laughs, "laughs.yaml"))[0].message
    assert "deeper" in problems_of(write(tmp_path, "[" * 3000 + "]" * 3000, "deep.yaml"))[0].message
    assert "deeper" in problems_of(write(tmp_path, "a: &a [*a]\n", "loop.yaml"))[0].message
    assert problems_of(write(tmp_path, "connectors: !!python/object:os.system {}\n", "unsafe.yaml"))


def test_line_table_maps_paths_to_lines() -> None:
    lines = locate_lines(
        "connectors:\n  braze:\n    lists:\n      a: 1\n    mirror_segments:\n      - x\n      - y\n"
    )
    assert lines[("connectors", "braze", "lists", "a")] == 4
    assert lines[("connectors", "braze", "mirror_segments", 1)] == 7


# ---------------------------------------------------------------- fuzzing: only ConfigError escapes
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_yields_a_config_or_a_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            assert isinstance(load_config(path, env={}), Config)
        except ConfigError as exc:
            assert exc.problems and all(p.message for p in exc.problems)


YAMLISH_KEYS = st.sampled_from(
    [
        "connectors",
        "braze",
        "instance_url",
        "instance",
        "api_key",
        "sync",
        "users",
        "lists",
        "brevo",
        "base_url",
        "events",
        "names",
        "field_mapping",
        "mirror_segments",
        "webhooks",
        "token",
        "direction",
        "x",
        "${A}",
    ]
)


@st.composite
def yaml_fragments(draw: st.DrawFn) -> str:
    """Text that looks like a configuration, so the fuzzing reaches past the YAML parser."""
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        indent = "  " * draw(st.integers(0, 4))
        key = draw(YAMLISH_KEYS)
        value = draw(
            st.sampled_from(
                [
                    "",
                    " true",
                    " 12",
                    " rest.iad-01.braze.com",
                    " http://127.0.0.1:1/x",
                    " [a, b]",
                    " {}",
                    " ${BRAZE_API_KEY}",
                    " ${UNSET}",
                    " null",
                    " all",
                    " 'q'",
                    " - z",
                ]
            )
        )
        lines.append(f"{indent}{key}:{value}")
    return "\n".join(lines) + "\n"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_fragments())
def test_config_like_text_yields_a_config_or_a_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path, env={"BRAZE_API_KEY": "k"})
        except ConfigError as exc:
            assert all(p.file == str(path) for p in exc.problems)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10) | st.integers(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(JSONISH)
def test_any_mapping_yields_a_config_or_a_config_error(value: Any) -> None:
    candidates = [value, {"connectors": {"braze": value}}, {"connectors": value}]
    for candidate in candidates:
        try:
            load_config(candidate if isinstance(candidate, dict) else {"connectors": candidate}, env={})
        except ConfigError as exc:
            assert exc.problems


def test_unset_api_key_variables_leave_the_keys_to_stored_credentials(tmp_path: Path) -> None:
    """`install` may have stored the keys encrypted: an unset ${BRAZE_API_KEY} is not yet an error."""
    path = write(tmp_path, minimal())
    config = load_config(path, env={})
    assert config.braze_api_key is None
    assert config.brevo.api_key is None


def test_unset_webhook_token_variable_is_still_an_error(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, minimal("webhooks:\n  token: ${NOPE_TOKEN}")), env={})
    assert any("NOPE_TOKEN" in p.message for p in problems)
