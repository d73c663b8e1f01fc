"""The sandbox's small HTTP vocabulary, shared by the server and the vendor emulators.

The sandbox is a world of its own: nothing here imports the connector.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs


class HttpError(Exception):
    """Raised by a handler to answer with a vendor-shaped error."""

    def __init__(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}: {payload}")
        self.status = status
        self.payload = payload
        self.headers = dict(headers or {})


@dataclass
class Request:
    method: str
    path: str  # below the vendor prefix, e.g. "/users/track" or "/contacts/import"
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""
    principal: Any = None  # set by the vendor's authenticate()

    @classmethod
    def build(cls, method: str, path_and_query: str, headers: Mapping[str, str], body: bytes) -> Request:
        path, _, qs = path_and_query.partition("?")
        return cls(
            method=method.upper(),
            path=path or "/",
            query=parse_qs(qs, keep_blank_values=True),
            headers={k.lower(): v for k, v in headers.items()},
            body=body,
        )

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def args(self, name: str) -> list[str]:
        """All values of a repeated parameter, accepting both `name` and `name[]`."""
        return self.query.get(name, []) + self.query.get(f"{name}[]", [])

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HttpError(400, {"message": f"Invalid JSON body: {exc}"}) from exc


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # A file streamed instead of `body` (segment exports); the server sends it in chunks.
    file_path: str | None = None

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
        data = json.dumps(payload, separators=(",", ":")).encode()
        out = {"Content-Type": "application/json"}
        out.update(headers or {})
        return cls(status, data, out)

    @classmethod
    def empty(cls, status: int = 204) -> Response:
        return cls(status, b"", {})


Handler = Callable[[Request, dict[str, str]], Response]


@dataclass(frozen=True)
class Endpoint:
    """One route of a vendor: which buckets it draws on and which permission it needs."""

    method: str
    pattern: str
    handler: Handler
    name: str  # e.g. "POST /users/track" (used in request counts and the violation log)
    buckets: tuple[str, ...] = ()
    permission: str | None = None
    regex: re.Pattern[str] = field(default=re.compile(""), compare=False)


class Router:
    def __init__(self) -> None:
        self._endpoints: list[Endpoint] = []

    def add(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        buckets: tuple[str, ...] = (),
        permission: str | None = None,
    ) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        name = f"{method.upper()} {pattern}"
        self._endpoints.append(Endpoint(method.upper(), pattern, handler, name, buckets, permission, regex))

    def resolve(self, method: str, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        for ep in self._endpoints:
            if ep.method != method:
                continue
            m = ep.regex.match(path)
            if m:
                return ep, m.groupdict()
        return None

    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints)


@dataclass(frozen=True)
class BucketSpec:
    """A documented rate-limit bucket: `limit` requests per `window_s` seconds, per API key."""

    name: str
    limit: int
    window_s: float


class VendorApp(Protocol):
    """What the server needs from a vendor emulator (Braze or Brevo)."""

    name: str  # "braze" | "brevo"
    router: Router
    buckets: Mapping[str, BucketSpec]

    def authenticate(self, req: Request) -> Response | None:
        """Set req.principal and return None, or return the vendor's 401 response."""

    def authorize(self, req: Request, endpoint: Endpoint) -> Response | None:
        """Return the vendor's 403 response when the principal lacks endpoint.permission."""

    def rate_limit_headers(self, limit: int, remaining: int, reset_epoch: float, now: float) -> dict[str, str]:
        """The vendor's rate-limit headers (Braze: reset = epoch s; Brevo: reset = seconds left)."""

    def too_many_requests(self, headers: dict[str, str]) -> Response:
        """The vendor's 429 (no Retry-After; both vendors)."""

    def dump_state(self) -> dict[str, Any]:
        """A JSON-able snapshot of the vendor's state, for the admin endpoint and --data."""

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore a snapshot made by dump_state()."""
