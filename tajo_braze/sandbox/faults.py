"""Fault injection for the sandbox: latency, 5xx before or after processing, 429 storms, drops.

A spec is a `;`-separated list of sections, each an optional scope and `key=value` pairs:

    5xx=0.1,429=0.05,drop=0.01,latency=20+30,5xx_after=0.02,export_delay=3,import_delay=1
    braze:5xx=0.2;brevo:/contacts/import:429=0.5

A scope is a vendor (`braze`, `brevo`, or `s3` for export downloads) optionally followed by
an endpoint path prefix (below the vendor's base URL). Unscoped sections apply to both
vendor APIs but not to export downloads. When several sections match a request, the more
specific one wins key by key (vendor+path over vendor over unscoped; longer path first).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

VENDORS = ("braze", "brevo", "s3")
API_VENDORS = ("braze", "brevo")  # what unscoped sections cover
PRE_5XX_STATUSES = (500, 502, 503)

_PROBABILITY_KEYS = {"5xx": "error_5xx", "5xx_after": "error_5xx_after", "429": "storm_429", "drop": "drop"}
_DELAY_KEYS = {"export_delay": "export_delay_s", "import_delay": "import_delay_s"}
KNOWN_KEYS = (*_PROBABILITY_KEYS, "latency", *_DELAY_KEYS)


@dataclass(frozen=True, slots=True)
class FaultRule:
    """The settings of one spec section; None means "not set here" so broader rules show through."""

    vendor: str | None = None
    path_prefix: str | None = None
    error_5xx: float | None = None
    error_5xx_after: float | None = None
    storm_429: float | None = None
    drop: float | None = None
    latency_ms: float | None = None
    jitter_ms: float | None = None

    def matches(self, vendor: str, path: str) -> bool:
        if self.vendor is None:
            if vendor not in API_VENDORS:
                return False
        elif self.vendor != vendor:
            return False
        return self.path_prefix is None or _path_has_prefix(path, self.path_prefix)

    @property
    def specificity(self) -> tuple[int, int]:
        return (self.vendor is not None) + (self.path_prefix is not None), len(self.path_prefix or "")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The effective probabilities and latency for one request, after merging matching rules."""

    error_5xx: float = 0.0
    error_5xx_after: float = 0.0
    storm_429: float = 0.0
    drop: float = 0.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0

    @property
    def is_quiet(self) -> bool:
        return self == _QUIET


_QUIET = FaultPlan()
_PLAN_FIELDS = tuple(f.name for f in fields(FaultPlan))


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """A parsed spec. `export_delay_s` / `import_delay_s` are None when the spec leaves them alone."""

    rules: tuple[FaultRule, ...] = ()
    export_delay_s: float | None = None
    import_delay_s: float | None = None
    spec: str = ""

    def plan_for(self, vendor: str, path: str) -> FaultPlan:
        """Merge every rule that matches, the most specific last so its keys win."""
        matching = sorted((r for r in self.rules if r.matches(vendor, path)), key=lambda r: r.specificity)
        if not matching:
            return _QUIET
        merged: dict[str, float] = {}
        for rule in matching:
            for name in _PLAN_FIELDS:
                value = getattr(rule, name)
                if value is not None:
                    merged[name] = value
        return FaultPlan(**merged)


NO_FAULTS = FaultConfig()


def _path_has_prefix(path: str, prefix: str) -> bool:
    # "/contacts" covers "/contacts" and "/contacts/import", not "/contactsfoo".
    prefix = prefix.rstrip("/") or "/"
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _number(key: str, raw: str, *, at_most: float | None = None) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"fault {key}={raw!r}: {raw!r} is not a number") from None
    if value != value or value < 0 or (at_most is not None and value > at_most):  # NaN, negative, too big
        bound = f"between 0 and {at_most:g}" if at_most is not None else "0 or more"
        raise ValueError(f"fault {key}={raw!r}: must be {bound}")
    return value


def _parse_scope(parts: list[str], section: str) -> tuple[str | None, str | None]:
    vendor: str | None = None
    path: str | None = None
    for part in parts:
        part = part.strip()
        if part.startswith("/"):
            if path is not None:
                raise ValueError(f"fault section {section!r}: more than one path prefix")
            path = part
        elif part in VENDORS:
            if vendor is not None or path is not None:
                raise ValueError(f"fault section {section!r}: write the scope as vendor:/path:")
            vendor = part
        else:
            raise ValueError(
                f"fault section {section!r}: unknown scope {part!r} "
                f"(expected one of {', '.join(VENDORS)} or a path starting with /)"
            )
    return vendor, path


def parse_faults(spec: str) -> FaultConfig:
    """Parse a fault spec (see the module docstring); raise ValueError saying what is wrong."""
    rules: list[FaultRule] = []
    delays: dict[str, float] = {}
    for raw_section in spec.split(";"):
        section = raw_section.strip()
        if not section:
            continue
        *scope_parts, settings = section.split(":")
        vendor, path = _parse_scope(scope_parts, section)
        values: dict[str, Any] = {}
        seen: set[str] = set()
        for item in settings.split(","):
            item = item.strip()
            if not item:
                continue
            key, eq, raw = (s.strip() for s in item.partition("="))
            if not eq or not raw:
                raise ValueError(f"fault setting {item!r}: expected key=value")
            if key not in KNOWN_KEYS:
                raise ValueError(f"unknown fault {key!r}: expected one of {', '.join(KNOWN_KEYS)}")
            if key in seen:
                raise ValueError(f"fault section {section!r}: {key} is given twice")
            seen.add(key)
            if key in _PROBABILITY_KEYS:
                values[_PROBABILITY_KEYS[key]] = _number(key, raw, at_most=1.0)
            elif key == "latency":
                fixed, _, jitter = raw.partition("+")
                values["latency_ms"] = _number(key, fixed)
                values["jitter_ms"] = _number(key, jitter) if jitter else 0.0
            else:
                owner = "braze" if key == "export_delay" else "brevo"
                if path is not None or vendor not in (None, owner):
                    raise ValueError(
                        f"fault {key} applies to {owner} as a whole: put it unscoped or under {owner}:"
                    )
                if key in delays:
                    raise ValueError(f"fault {key} is given twice")
                delays[key] = _number(key, raw)
        if not seen:
            raise ValueError(f"fault section {section!r} sets nothing")
        if values:
            rules.append(FaultRule(vendor=vendor, path_prefix=path, **values))
    return FaultConfig(
        rules=tuple(rules),
        export_delay_s=delays.get("export_delay"),
        import_delay_s=delays.get("import_delay"),
        spec=spec.strip(),
    )


def faults_from(value: str | Mapping[str, Any] | None) -> FaultConfig:
    """Accept a spec string, `{"spec": "..."}`, a flat `{"5xx": 0.1, ...}` mapping, or None/{} to clear."""
    if value is None:
        return NO_FAULTS
    if isinstance(value, str):
        return parse_faults(value)
    if "spec" in value:
        spec = value["spec"]
        if spec is None:
            return NO_FAULTS
        if not isinstance(spec, str):
            raise ValueError("fault spec must be a string")
        if len(value) > 1:
            raise ValueError("give either {'spec': ...} or fault settings, not both")
        return parse_faults(spec)
    return parse_faults(",".join(f"{k}={v}" for k, v in value.items()))


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do to one request. `status_before` is 429 or a 5xx sent instead of running it."""

    latency_s: float = 0.0
    status_before: int | None = None
    error_after: bool = False
    drop: bool = False


NO_FAULT = FaultDecision()


class FaultInjector:
    """Rolls the dice for each request, from a RNG seeded by the sandbox seed (reproducible runs)."""

    def __init__(self, config: FaultConfig = NO_FAULTS, *, seed: int = 0) -> None:
        self._config = config
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def config(self) -> FaultConfig:
        return self._config

    def configure(self, config: FaultConfig) -> None:
        self._config = config

    def decide(self, vendor: str, path: str) -> FaultDecision:
        config = self._config
        if not config.rules:
            return NO_FAULT
        plan = config.plan_for(vendor, path)
        if plan.is_quiet:
            return NO_FAULT
        with self._lock:  # one draw sequence, so a seeded single-client run repeats exactly
            rng = self._rng
            latency_ms = plan.latency_ms + (rng.uniform(0, plan.jitter_ms) if plan.jitter_ms else 0.0)
            status: int | None = None
            if plan.error_5xx and rng.random() < plan.error_5xx:
                status = rng.choice(PRE_5XX_STATUSES)
            elif plan.storm_429 and rng.random() < plan.storm_429:
                status = 429
            drop = status is None and bool(plan.drop) and rng.random() < plan.drop
            after = (
                status is None
                and not drop
                and bool(plan.error_5xx_after)
                and rng.random() < plan.error_5xx_after
            )
        return FaultDecision(
            latency_s=latency_ms / 1000.0, status_before=status, error_after=after, drop=drop
        )


def describe(config: FaultConfig) -> dict[str, Any]:
    """A JSON-able view of the active configuration for the admin endpoint."""
    return {
        "spec": config.spec,
        "rules": [
            {k: v for k, v in ((f.name, getattr(r, f.name)) for f in fields(FaultRule)) if v is not None}
            for r in config.rules
        ],
        "export_delay_s": config.export_delay_s,
        "import_delay_s": config.import_delay_s,
    }


__all__ = [
    "NO_FAULTS",
    "FaultConfig",
    "FaultDecision",
    "FaultInjector",
    "FaultPlan",
    "FaultRule",
    "describe",
    "faults_from",
    "parse_faults",
]
