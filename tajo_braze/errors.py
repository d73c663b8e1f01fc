"""The one exception tree of tajo-braze, grouped by what the caller should do.

Every error carries ``user_message`` (safe to show, never a secret) apart from
``detail`` (internal context for logs, also secret-free).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""

    def __init__(self, user_message: str, *, detail: str = "", fix: str = "") -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.detail = detail
        self.fix = fix

    def __str__(self) -> str:
        return self.user_message if not self.fix else f"{self.user_message} — {self.fix}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One configuration or mapping problem, located in a file."""

    file: str
    line: int | None
    path: str
    message: str
    fix: str = ""

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" at `{self.path}`" if self.path else ""
        tail = f" — {self.fix}" if self.fix else ""
        return f"{where}{key}: {self.message}{tail}"


class ProblemsError(ConnectorError):
    """A fatal error that lists every problem found, each with its file and line."""

    kind = "problems"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p.render()}" for p in self.problems)
        count = len(self.problems)
        super().__init__(f"{count} {self.kind} problem{'s' if count != 1 else ''}:\n{lines}")


class ConfigError(ProblemsError):
    kind = "configuration"


class MappingError(ProblemsError):
    kind = "field mapping"


class UsageError(ConnectorError):
    """The caller asked for something that cannot be done as asked (bad flag, unknown resource)."""


class NotAvailableError(ConnectorError):
    """A capability whose implementation has not landed yet."""


class ApiError(ConnectorError):
    """A vendor API answered with an error. Never carries a key."""

    def __init__(
        self,
        user_message: str,
        *,
        api: str,
        status: int | None = None,
        request_id: str | None = None,
        body_excerpt: str = "",
        method: str = "",
        path: str = "",
        fix: str = "",
        maybe_applied: bool = False,
    ) -> None:
        detail = f"{api} {method} {path} -> {status} request_id={request_id} body={body_excerpt!r}"
        if maybe_applied:
            detail += " maybe_applied=true"
        super().__init__(user_message, detail=detail, fix=fix)
        # True when the request may have been processed although no answer arrived (5xx, read
        # timeout, dropped connection on a non-idempotent call): a caller must not blindly replay it.
        self.maybe_applied = maybe_applied
        self.api = api
        self.status = status
        self.request_id = request_id
        self.body_excerpt = body_excerpt
        self.method = method
        self.path = path


class AuthError(ApiError):
    """401: the key is missing, unknown, revoked, for another instance, or the IP is not allowed."""


class PermissionDenied(ApiError):
    """403: the key exists but lacks a permission (or the plan lacks the feature)."""


class RateLimited(ApiError):
    """429 that could not be absorbed by retries within the budget."""

    def __init__(self, user_message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(user_message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class TransientApiError(ApiError):
    """5xx, 408, dropped connection or timeout that outlived its retries."""


class PermanentApiError(ApiError):
    """4xx that retrying will not fix (400, 404, 413, 422 …): fatal for the batch."""


class ConnectionFailed(ApiError):
    """The host could not be reached at all (DNS, refused, TLS)."""


class RecordRejected(ConnectorError):
    """One record cannot be written: dead-lettered with the reason, the run goes on."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class StateError(ConnectorError):
    """The state store cannot be opened, migrated, locked or written."""


class RunLocked(StateError):
    """Another run of the same connector holds the lock."""


class Interrupted(ConnectorError):
    """The run was stopped (signal); it is resumable."""
