"""Structured logging for tajo-braze: one JSON object per line, secrets masked.

No global structlog configuration: every logger is built by `make_logger` and handed to
whoever needs it, so two connectors (or two tests) in one process never share settings.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, TextIO, cast
from urllib.parse import quote

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

MASK = "***"

# A secret shorter than this would mask ordinary words ("on", "api") and protect nothing.
MIN_SECRET_LENGTH = 4

# "verbose" sits between debug and info for users; structlog's filtering loggers only know
# the standard levels, so it filters like info (debug lines stay hidden).
LOG_LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "verbose": logging.INFO,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _secret_variants(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every spelling of every secret that may leak, longest first.

    Longest first so a secret that contains another is masked whole. The URL-encoded form is
    included because a key can travel in a query string or a redirect URL.
    """
    variants: set[str] = set()
    for secret in secrets:
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            continue
        variants.add(secret)
        variants.add(quote(secret, safe=""))
    return tuple(sorted(variants, key=len, reverse=True))


def _mask(text: str, variants: Sequence[str]) -> str:
    for secret in variants:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_text(text: str, secrets: Sequence[str]) -> str:
    """Return `text` with every occurrence of every secret (len >= 4) replaced by ``***``."""
    return _mask(text, _secret_variants(secrets))


class SecretMasker:
    """structlog processor: masks secrets in the event name and in every string value.

    Walks dicts, lists and tuples recursively; other values (numbers, None) pass through.
    """

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self._variants = _secret_variants(secrets)

    def __repr__(self) -> str:  # never show what is being masked
        return f"SecretMasker(<{len(self._variants)} masked values>)"

    def mask(self, value: Any) -> Any:
        if not self._variants:
            return value
        if isinstance(value, str):
            return _mask(value, self._variants)
        if isinstance(value, Mapping):
            return {key: self.mask(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.mask(item) for item in value)
        return value

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if not self._variants:
            return event_dict
        return {key: self.mask(value) for key, value in event_dict.items()}


def level_number(level: str) -> int:
    """The numeric level for a configured level name (case-insensitive)."""
    try:
        return LOG_LEVELS[level.strip().lower()]
    except KeyError:
        known = ", ".join(LOG_LEVELS)
        raise ValueError(f"unknown log level {level!r}; use one of: {known}") from None


def make_logger(
    *,
    level: str = "info",
    stream: IO[str] | TextIO | None = None,
    secrets: Sequence[str] = (),
    json_output: bool = True,
) -> FilteringBoundLogger:
    """Build a logger writing one line per event to `stream` (default: standard error).

    Logs go to standard error so that machine-readable command output on standard output
    stays clean. Exceptions are rendered to text before masking, so a secret inside an
    exception message is masked too.
    """
    renderer: Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        SecretMasker(secrets),
        renderer,
    ]
    logger: FilteringBoundLogger = structlog.wrap_logger(
        structlog.PrintLogger(cast(TextIO, stream) if stream is not None else sys.stderr),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level_number(level)),
    )
    return logger
