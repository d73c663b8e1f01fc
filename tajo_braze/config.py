"""Load `tajo.yaml`: `${VAR}` interpolation, schema validation with file:line problems, a frozen `Config`.

All problems are collected first and raised together as one `ConfigError`, each naming the
file, the line, the key and a fix. Secrets are wrapped in `Secret` the moment they are read,
so no repr, log line or exception can print them.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError, Problem
from .yamlpos import (
    JsonPath,
    LocatedMapping,
    Where,
    YamlDocument,
    YamlReadError,
    duplicate_key_problems,
    load_packaged_schema,
    read_yaml_file,
    schema_problems,
    sort_problems,
    to_plain,
)

CONFIG_SCHEMA_FILE = "config.schema.json"
DICT_SOURCE = "<dict>"


# ---------------------------------------------------------------- secrets
class Secret:
    """A secret string that prints as `***` everywhere; `reveal()` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # constant-time: secrets are compared when webhook tokens are checked
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __copy__(self) -> Secret:
        return self  # immutable; also lets dataclasses.asdict() copy a Config

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> Any:  # pickling would write the value out of sight of the masking
        raise TypeError("Secret values cannot be pickled")


# ---------------------------------------------------------------- hosts
# braze-api.md §1.1 — REST hosts (not SDK or dashboard hosts). EU hosts end in .braze.eu.
BRAZE_INSTANCES: Mapping[str, str] = MappingProxyType(
    {
        "US-01": "https://rest.iad-01.braze.com",
        "US-02": "https://rest.iad-02.braze.com",
        "US-03": "https://rest.iad-03.braze.com",
        "US-04": "https://rest.iad-04.braze.com",
        "US-05": "https://rest.iad-05.braze.com",
        "US-06": "https://rest.iad-06.braze.com",
        "US-07": "https://rest.iad-07.braze.com",
        "US-08": "https://rest.iad-08.braze.com",
        "US-10": "https://rest.us-10.braze.com",
        "EU-01": "https://rest.fra-01.braze.eu",
        "EU-02": "https://rest.fra-02.braze.eu",
        "AU-01": "https://rest.au-01.braze.com",
        "ID-01": "https://rest.id-01.braze.com",
    }
)
_DASHBOARD_HOSTS = {
    **{f"dashboard-0{n}.braze.com": f"US-0{n}" for n in range(1, 9)},
    "dashboard.us-10.braze.com": "US-10",
    "dashboard-01.braze.eu": "EU-01",
    "dashboard-02.braze.eu": "EU-02",
    "dashboard.au-01.braze.com": "AU-01",
    "dashboard.id-01.braze.com": "ID-01",
}
BREVO_HOSTS = ("api.brevo.com",)
BREVO_LEGACY_HOSTS = ("api.sendinblue.com",)
BREVO_DEFAULT_BASE_URL = "https://api.brevo.com/v3"


class InvalidUrl(ValueError):
    """A base URL that cannot be used; `reason` and `fix` are shown to the user separately."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(f"{reason}; {fix}")
        self.reason = reason
        self.fix = fix


def _braze_hosts() -> list[str]:
    return [urlsplit(url).hostname or url for url in BRAZE_INSTANCES.values()]


def _valid_braze_hosts_text() -> str:
    return "valid hosts: " + ", ".join(
        f"{h} ({name})" for name, h in zip(BRAZE_INSTANCES, _braze_hosts(), strict=True)
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split(value: str, what: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, path) of a URL written with or without `https://`."""
    text = value.strip()
    if not text:
        raise InvalidUrl(f"the {what} URL is empty", "write a host such as rest.iad-01.braze.com")
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidUrl(
            f"{value!r} is not a valid URL", "write a host name, optionally with http(s):// and a port"
        ) from None
    if parts.username or parts.password:
        raise InvalidUrl(f"the {what} URL must not contain credentials", "remove the `user:password@` part")
    if parts.query or parts.fragment:
        raise InvalidUrl(
            f"the {what} URL must not have a query or a fragment", "remove the part after `?` or `#`"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidUrl(f"{value!r} is not an http(s) URL", "write a host name, optionally with https://")
    return parts.scheme, parts.hostname.lower(), port, parts.path.rstrip("/")


def _loopback_url(scheme: str, host: str, port: int | None, path: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}{f':{port}' if port is not None else ''}{path}"


def normalize_braze_url(value: str) -> str:
    """`rest.iad-01.braze.com` -> `https://rest.iad-01.braze.com`.

    Only documented Braze REST hosts over https, or any http(s) URL on loopback (127.0.0.0/8,
    localhost, ::1) with an optional port and path prefix (the sandbox). Raises `InvalidUrl`
    (a `ValueError`) whose message lists the valid hosts.
    """
    scheme, host, port, path = _split(value, "Braze")
    if is_loopback(host):
        return _loopback_url(scheme, host, port, path)
    if host.upper() in BRAZE_INSTANCES and "." not in host:
        raise InvalidUrl(
            f"{value!r} is an instance name, not a URL", f"write `instance: {host.upper()}` instead"
        )
    if host not in _braze_hosts():
        if host in _DASHBOARD_HOSTS:
            instance = _DASHBOARD_HOSTS[host]
            fix = f"that is the dashboard host; use the REST host of {instance}: {urlsplit(BRAZE_INSTANCES[instance]).hostname}"
        elif host.startswith("sdk.") and "rest." + host[4:] in _braze_hosts():
            fix = f"that is the SDK host; use the REST host rest.{host[4:]}"
        else:
            fix = _valid_braze_hosts_text()
        raise InvalidUrl(f"{host!r} is not a Braze REST host", fix)
    if scheme != "https":
        raise InvalidUrl(
            "Braze must be called over https (http is allowed only on loopback)", f"write https://{host}"
        )
    if port not in (None, 443) or path:
        raise InvalidUrl(f"the Braze REST URL takes no port or path (got {value!r})", f"write https://{host}")
    return f"https://{host}"


def normalize_brevo_url(value: str) -> str:
    """Brevo base URL: `https://api.brevo.com/v3`, or http(s) on loopback with an optional prefix."""
    scheme, host, port, path = _split(value, "Brevo")
    if is_loopback(host):
        return _loopback_url(scheme, host, port, path)
    if host in BREVO_LEGACY_HOSTS:
        raise InvalidUrl(f"{host} is the legacy Sendinblue host", f"use {BREVO_DEFAULT_BASE_URL}")
    if host not in BREVO_HOSTS:
        raise InvalidUrl(f"{host!r} is not the Brevo API host", f"use {BREVO_DEFAULT_BASE_URL}")
    if scheme != "https":
        raise InvalidUrl(
            "Brevo must be called over https (http is allowed only on loopback)",
            f"use {BREVO_DEFAULT_BASE_URL}",
        )
    if port not in (None, 443) or path not in ("", "/v3"):
        raise InvalidUrl(
            f"the Brevo API lives under /v3 on the default port (got {value!r})",
            f"use {BREVO_DEFAULT_BASE_URL}",
        )
    return BREVO_DEFAULT_BASE_URL


# ---------------------------------------------------------------- settings
@dataclass(frozen=True)
class BrevoSettings:
    api_key: Secret | None
    base_url: str = BREVO_DEFAULT_BASE_URL


@dataclass(frozen=True)
class SyncSettings:
    users: bool = True
    campaigns: bool = True
    canvases: bool = True
    segments: bool = True
    events: bool = True
    catalogs: bool = False
    direction: str = "both"  # braze_to_brevo | brevo_to_braze | both
    users_segment: str | None = None  # Braze segment id or name
    deletes: bool = False
    batch_size: int | None = None  # override for writes (clamped later to vendor max)
    track_batch_size: int = 75  # objects per /users/track array (1..75)
    track_objects_cap: int | None = None  # e.g. 50 for MAU CY24-25 contracts (all arrays combined)
    alias_label: str = "brevo_contact_id"
    brevo_lists_attribute: str = "brevo_lists"
    allow_resubscribe: bool = False
    # Braze email subscription groups that follow the global email state (a Brevo blocklist
    # unsubscribes the user from each of them too).
    email_subscription_groups: tuple[str, ...] = ()
    list_prefix: str = "braze_"
    list_folder: str = "Braze"
    export_timeout_s: int = 3600  # how long to wait for a segment export URL
    export_concurrency: int = 1
    # Processes that parse and map export lines: None picks one per CPU beyond the run's own (at
    # most 4) for large exports and none for small ones; 0 maps in the run's own process.
    map_workers: int | None = None


@dataclass(frozen=True)
class WebhookSettings:
    token: Secret | None = None
    basic_user: str | None = None
    basic_password: Secret | None = None


# Brevo webhook `event` values (snake_case, as in payloads) -> Braze custom event names.
DEFAULT_EVENT_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "request": "brevo_email_sent",
        "sent": "brevo_email_sent",
        "delivered": "brevo_email_delivered",
        "opened": "brevo_email_opened",
        "click": "brevo_email_clicked",
        "hard_bounce": "brevo_email_hard_bounced",
        "soft_bounce": "brevo_email_soft_bounced",
        "blocked": "brevo_email_blocked",
        "invalid": "brevo_email_invalid",
        "deferred": "brevo_email_deferred",
        "spam": "brevo_email_marked_spam",
        "unsubscribed": "brevo_email_unsubscribed",
        "unsubscribe": "brevo_email_unsubscribed",
        "list_addition": "brevo_list_addition",
    }
)
# Braze Currents event types that never reach Brevo unless `events.deny` says otherwise:
# high-volume session and location noise, and bookkeeping events that are not engagement.
DEFAULT_EVENT_DENY: tuple[str, ...] = (
    "users.behaviors.app.SessionStart",
    "users.behaviors.app.SessionEnd",
    "users.behaviors.Location",
    "users.RandomBucketNumberUpdate",
    "users.UserOrphan",
)


@dataclass(frozen=True)
class EventSettings:
    names: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: DEFAULT_EVENT_NAMES
    )  # brevo event -> Braze event
    deny: tuple[str, ...] = DEFAULT_EVENT_DENY  # Braze Currents event types never forwarded to Brevo
    batch_size: int = 100
    # Brevo key names the connector writes with: webhook events they caused are our own echoes.
    own_key_names: tuple[str, ...] = ("tajo-connector",)


DEFAULT_FIELD_MAPPING = "mappings/default.yaml"
DEFAULT_STATE_PATH = ".tajo/state.db"


@dataclass(frozen=True)
class Config:
    source: str  # file path, or "<dict>" when built from a dict
    base_dir: Path  # directory of the config file (cwd for dicts); relative paths resolve from here
    enabled: bool
    braze_base_url: str  # normalized, no trailing slash
    braze_api_key: Secret | None
    api_version: str
    brevo: BrevoSettings
    sync: SyncSettings
    lists: Mapping[str, int]  # Braze segment name or id -> Brevo list id
    mirror_segments: str | tuple[str, ...]  # "all" or names
    catalogs: Mapping[str, Mapping[str, Any]]
    webhooks: WebhookSettings
    events: EventSettings
    field_mapping: str | Mapping[str, Any]  # path (as written) or inline mapping
    debug: bool
    log_level: str
    log_api_calls: bool
    state_path: Path  # resolved against base_dir
    allow_plaintext_secrets: bool
    # Values read from the environment: any of them may be a secret written in the wrong field,
    # so messages about this configuration (mapping problems included) never echo them.
    from_environment: tuple[Secret, ...] = dataclasses.field(default=(), repr=False, compare=False)

    def unechoable(self) -> tuple[str, ...]:
        """Every value a message about this configuration must not echo."""
        return tuple(dict.fromkeys([*self.secrets(), *(s.reveal() for s in self.from_environment)]))

    def secrets(self) -> tuple[str, ...]:
        """Every configured secret value, revealed, so the logger can mask it."""
        candidates = (
            self.braze_api_key,
            self.brevo.api_key,
            self.webhooks.token,
            self.webhooks.basic_password,
        )
        return tuple(s.reveal() for s in candidates if s)

    def with_overrides(self, **changes: Any) -> Config:
        """`dataclasses.replace` plus conveniences for values given on the command line.

        Plain strings for `braze_api_key` are wrapped in `Secret`; `brevo_api_key` and
        `brevo_base_url` reach into `brevo`; `braze_base_url` and `brevo_base_url` are
        normalized (a bad one is a `ConfigError`).
        """
        brevo = self.brevo
        if "brevo_api_key" in changes:
            brevo = dataclasses.replace(brevo, api_key=_as_secret(changes.pop("brevo_api_key")))
        if "brevo_base_url" in changes:
            brevo = dataclasses.replace(
                brevo,
                base_url=_override_url(changes.pop("brevo_base_url"), normalize_brevo_url, "brevo.base_url"),
            )
        if brevo is not self.brevo:
            changes.setdefault("brevo", brevo)
        if "braze_api_key" in changes:
            changes["braze_api_key"] = _as_secret(changes["braze_api_key"])
        if "braze_base_url" in changes:
            changes["braze_base_url"] = _override_url(
                changes["braze_base_url"], normalize_braze_url, "instance_url"
            )
        return dataclasses.replace(self, **changes)


def _as_secret(value: Any) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value or None
    return Secret(str(value)) if str(value) else None


def _override_url(value: Any, normalize: Any, key: str) -> str:
    try:
        result: str = normalize(str(value))
    except InvalidUrl as exc:
        raise ConfigError([Problem("<override>", None, key, exc.reason, exc.fix)]) from None
    return result


# ---------------------------------------------------------------- loading
BRAZE_PATH: JsonPath = ("connectors", "braze")
SECRET_KEYS: Mapping[JsonPath, str] = MappingProxyType(
    {
        ("api_key",): "BRAZE_API_KEY",
        ("brevo", "api_key"): "BREVO_API_KEY",
        ("webhooks", "token"): "TAJO_WEBHOOK_TOKEN",
        ("webhooks", "basic_password"): "TAJO_WEBHOOK_PASSWORD",
    }
)
_VAR_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_WHOLE_REFERENCE = re.compile(r"\$\{" + _VAR_NAME + r"\}")
# `$${` is a literal `${`; `${NAME}` a reference; any other `${` is a mistake worth reporting.
_REFERENCE = re.compile(r"\$\$\{|\$\{(" + _VAR_NAME + r")\}|\$\{")


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any], *, env: Mapping[str, str] | None = None
) -> Config:
    """Read, interpolate and validate a configuration; raise one `ConfigError` listing every problem."""
    environment = os.environ if env is None else env
    doc, base_dir = _read(source)
    secret_paths = frozenset(BRAZE_PATH + p for p in SECRET_KEYS)
    # API keys may instead have been stored (encrypted) by `install`; an unset variable is not yet an error.
    storable_key_paths = frozenset({BRAZE_PATH + ("api_key",), BRAZE_PATH + ("brevo", "api_key")})
    problems = duplicate_key_problems(doc)
    data = doc.data
    if isinstance(data, dict) and "connectors" not in data and ("instance_url" in data or "instance" in data):
        data = {"connectors": {"braze": data}}  # a host may hand over just the connector's own section
    if not isinstance(data, dict):
        where = doc.where()
        what = "empty" if data is None else f"a {type(data).__name__}, not a mapping"
        problems.append(
            where.problem(
                (),
                f"the configuration is {what}",
                "start from examples/tajo.yaml: the file begins with `connectors:` then `braze:`",
            )
        )
        raise ConfigError(problems)

    braze = _dig(data, BRAZE_PATH)
    allow_plaintext = isinstance(braze, dict) and braze.get("allow_plaintext_secrets") is True
    hidden = set(secret_paths)
    base_where = Where(doc.source, doc.lines, (), frozenset(hidden))
    if isinstance(braze, dict) and not allow_plaintext:
        problems.extend(_plaintext_secret_problems(braze, base_where.sub(BRAZE_PATH)))

    from_environment: set[str] = set()
    data, interpolated, var_problems = _interpolate(
        data, environment, base_where, optional=storable_key_paths, used=from_environment
    )
    problems.extend(var_problems)
    hidden.update(interpolated)
    where = Where(doc.source, doc.lines, (), frozenset(hidden))

    problems.extend(schema_problems(load_packaged_schema(CONFIG_SCHEMA_FILE), data, where))
    braze = _dig(data, BRAZE_PATH)
    if isinstance(braze, dict):
        problems.extend(_semantic_problems(braze, where.sub(BRAZE_PATH)))
    if problems:
        # A value read from the environment may be a secret written in the wrong field: never echo it.
        raise ConfigError(sort_problems([_without(p, from_environment) for p in problems]))
    assert isinstance(braze, dict)
    config = _build(braze, doc, base_dir, where.sub(BRAZE_PATH))
    return dataclasses.replace(config, from_environment=tuple(Secret(v) for v in sorted(from_environment) if v))


def _read(source: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[YamlDocument, Path]:
    try:
        if isinstance(source, Mapping):
            return YamlDocument(DICT_SOURCE, to_plain(source, source=DICT_SOURCE), {}), Path.cwd()
        if not isinstance(source, str | os.PathLike):
            raise YamlReadError(
                Problem(
                    str(type(source).__name__),
                    None,
                    "",
                    "the configuration must be a file path or a mapping",
                    "pass the path of tajo.yaml",
                )
            )
        path = Path(os.fspath(source))
        shown = str(source)
        return read_yaml_file(path, source=shown, what="configuration"), path.absolute().parent
    except YamlReadError as exc:
        raise ConfigError([exc.problem]) from None
    except (TypeError, ValueError, RecursionError) as exc:  # e.g. an unusable path object
        raise ConfigError(
            [
                Problem(
                    DICT_SOURCE,
                    None,
                    "",
                    f"the configuration cannot be read ({type(exc).__name__})",
                    "pass the path of tajo.yaml or a mapping",
                )
            ]
        ) from None


def _dig(data: Any, path: JsonPath) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _plaintext_secret_problems(braze: Mapping[str, Any], where: Where) -> list[Problem]:
    problems = []
    for rel, variable in SECRET_KEYS.items():
        value = _dig(braze, rel)
        if not isinstance(value, str) or not value.strip() or _WHOLE_REFERENCE.fullmatch(value.strip()):
            continue
        key = ".".join(str(p) for p in rel)
        problems.append(
            where.problem(
                rel,
                f"`{key}` is written in the file as plain text; secrets must come from the environment",
                f"write `{rel[-1]}: ${{{variable}}}` and set {variable} in the environment, "
                "or set `allow_plaintext_secrets: true` if this file is itself kept secret",
            )
        )
    return problems


def _interpolate(
    data: Any,
    env: Mapping[str, str],
    where: Where,
    *,
    optional: frozenset[JsonPath] = frozenset(),
    used: set[str] | None = None,
) -> tuple[Any, set[JsonPath], list[Problem]]:
    """Replace `${VAR}` in every string value; report each missing variable where it is used.

    A secret written wholly as `${VAR}` whose variable is unset is left out instead (`optional`):
    `install` may have stored that key encrypted, and the connector says which key is missing
    when it is needed and found nowhere.
    """
    interpolated: set[JsonPath] = set()
    problems: list[Problem] = []

    def substitute(text: str, path: JsonPath) -> str:
        if "$" not in text:
            return text

        def replace(match: re.Match[str]) -> str:
            written = match.group(0)
            if written == "$${":
                return "${"
            name = match.group(1)
            if name is None:
                problems.append(
                    where.problem(
                        path,
                        "`${` does not start a valid ${VARIABLE} reference",
                        "write ${NAME} (letters, digits and _), or $${ for a literal ${",
                    )
                )
                return written
            interpolated.add(path)
            if name not in env:
                problems.append(
                    where.problem(
                        path,
                        f"environment variable `{name}` is not set",
                        f"set {name} in the environment (e.g. `export {name}=...`) before running",
                    )
                )
                return written
            if used is not None:
                used.add(env[name])
            return env[name]

        return _REFERENCE.sub(replace, text)

    def walk(value: Any, path: JsonPath) -> Any:
        if isinstance(value, str):
            whole = _WHOLE_REFERENCE.fullmatch(value.strip())
            if path in optional and whole and value.strip()[2:-1] not in env:
                interpolated.add(path)
                return None
            return substitute(value, path)
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    return walk(data, ()), interpolated, problems


def without_values(problem: Problem, values: Iterable[str]) -> Problem:
    """The problem with every given value (4 characters or more) replaced by ***."""
    return _without(problem, set(values))


def _without(problem: Problem, values: set[str]) -> Problem:
    file, message, fix = problem.file, problem.message, problem.fix
    for value in sorted((v for v in values if len(v) >= 4), key=len, reverse=True):
        file, message, fix = file.replace(value, "***"), message.replace(value, "***"), fix.replace(value, "***")
    return dataclasses.replace(problem, file=file, message=message, fix=fix)


def _semantic_problems(braze: Mapping[str, Any], where: Where) -> list[Problem]:
    problems: list[Problem] = []
    has_url, has_instance = "instance_url" in braze, "instance" in braze
    if has_url and has_instance:
        problems.append(
            where.problem(
                ("instance",), "both `instance` and `instance_url` are set", "keep only one of them"
            )
        )
    elif not has_url and not has_instance:
        problems.append(
            where.problem(
                (),
                "missing `instance_url`",
                "add `instance_url:` with the REST host of your Braze dashboard "
                "(e.g. rest.iad-01.braze.com), or `instance:` with one of " + ", ".join(BRAZE_INSTANCES),
            )
        )
    url = braze.get("instance_url")
    if isinstance(url, str) and url:
        try:
            normalize_braze_url(url)
        except InvalidUrl as exc:
            problems.append(where.problem(("instance_url",), exc.reason, exc.fix))
    brevo = braze.get("brevo")
    base_url = brevo.get("base_url") if isinstance(brevo, dict) else None
    if isinstance(base_url, str) and base_url:
        try:
            normalize_brevo_url(base_url)
        except InvalidUrl as exc:
            problems.append(where.problem(("brevo", "base_url"), exc.reason, exc.fix))
    return problems


def _secret(value: Any) -> Secret | None:
    return Secret(value) if isinstance(value, str) and value else None


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def _build(braze: Mapping[str, Any], doc: YamlDocument, base_dir: Path, where: Where) -> Config:
    brevo_raw = braze.get("brevo") or {}
    sync_raw = braze.get("sync") or {}
    hooks_raw = braze.get("webhooks") or {}
    events_raw = braze.get("events") or {}

    if "instance" in braze:
        braze_url = BRAZE_INSTANCES[braze["instance"]]
    else:
        braze_url = normalize_braze_url(braze["instance_url"])

    names = dict(DEFAULT_EVENT_NAMES)
    for event, target in (events_raw.get("names") or {}).items():
        if target:
            names[event] = target
        else:
            names.pop(event, None)  # null switches the default forwarding of this event off
    events = EventSettings(
        names=MappingProxyType(names),
        deny=tuple(events_raw["deny"]) if "deny" in events_raw else DEFAULT_EVENT_DENY,
        batch_size=events_raw.get("batch_size", 100),
        own_key_names=tuple(events_raw.get("own_key_names") or ("tajo-connector",)),
    )

    mirror = braze.get("mirror_segments") or ()
    field_mapping = braze.get("field_mapping", DEFAULT_FIELD_MAPPING)
    if isinstance(field_mapping, dict):
        field_mapping = LocatedMapping(field_mapping, where.sub(("field_mapping",)))

    state_path = Path(braze.get("state_path", DEFAULT_STATE_PATH)).expanduser()
    if not state_path.is_absolute():
        state_path = base_dir / state_path

    return Config(
        source=doc.source,
        base_dir=base_dir,
        enabled=braze.get("enabled", True),
        braze_base_url=braze_url,
        braze_api_key=_secret(braze.get("api_key")),
        api_version=braze.get("api_version", "v1"),
        brevo=BrevoSettings(
            api_key=_secret(brevo_raw.get("api_key")),
            base_url=normalize_brevo_url(brevo_raw.get("base_url") or BREVO_DEFAULT_BASE_URL),
        ),
        sync=SyncSettings(
            **{**sync_raw, "email_subscription_groups": tuple(sync_raw.get("email_subscription_groups") or ())}
        ),
        lists=MappingProxyType(dict(braze.get("lists") or {})),
        mirror_segments=mirror if isinstance(mirror, str) else tuple(mirror),
        catalogs=MappingProxyType({k: _frozen(v) for k, v in (braze.get("catalogs") or {}).items()}),
        webhooks=WebhookSettings(
            token=_secret(hooks_raw.get("token")),
            basic_user=hooks_raw.get("basic_user") or None,
            basic_password=_secret(hooks_raw.get("basic_password")),
        ),
        events=events,
        field_mapping=field_mapping,
        debug=braze.get("debug", False),
        log_level=braze.get("log_level", "info"),
        log_api_calls=braze.get("log_api_calls", False),
        state_path=state_path,
        allow_plaintext_secrets=braze.get("allow_plaintext_secrets", False),
    )
