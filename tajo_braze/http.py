"""The one way tajo-braze talks HTTP: pooled connections, rate limiting, retries, error translation, audit.

An `ApiSession` per API key wraps a `requests.Session`. Every attempt first waits for the
`RateLimiter`, then feeds the response's rate-limit headers back to it. Only what is safe to
replay is retried. Every failure leaves as an exception from `tajo_braze.errors`, chosen by one
table (`STATUS_ERRORS`), with a message that names the key or permission and says how to fix it.
Secrets never reach an exception, a log line or a repr.
"""

from __future__ import annotations

import email.utils
import ipaddress
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from tajo_braze import jsonbytes
from tajo_braze.errors import (
    ApiError,
    AuthError,
    ConnectionFailed,
    PermanentApiError,
    PermissionDenied,
    RateLimited,
    TransientApiError,
)
from tajo_braze.log import mask_text
from tajo_braze.ratelimit import RateLimiter

ApiName = Literal["braze", "brevo"]

API_LABELS: Mapping[str, str] = MappingProxyType({"braze": "Braze", "brevo": "Brevo"})

# The REST hosts Braze documents (braze-docs: _includes/data_centers.md). Used in messages only:
# the host itself is configuration, never looked up here.
BRAZE_REST_HOSTS: tuple[str, ...] = (
    "rest.iad-01.braze.com",
    "rest.iad-02.braze.com",
    "rest.iad-03.braze.com",
    "rest.iad-04.braze.com",
    "rest.iad-05.braze.com",
    "rest.iad-06.braze.com",
    "rest.iad-07.braze.com",
    "rest.iad-08.braze.com",
    "rest.us-10.braze.com",
    "rest.fra-01.braze.eu",
    "rest.fra-02.braze.eu",
    "rest.au-01.braze.com",
    "rest.id-01.braze.com",
)

USER_AGENT = "tajo-braze"
EXCERPT_CHARS = 300
LOG_BODY_CHARS = 2000
# A wait the server told us is honoured exactly, plus this much for clock granularity.
HEADER_WAIT_PADDING_S = 0.05
# Reset values above this are epoch seconds, below it relative seconds (robust to either).
EPOCH_THRESHOLD = 1_000_000_000

REQUEST_ID_HEADERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"braze": ("X-Request-Id", "sib-request-id"), "brevo": ("sib-request-id", "X-Request-Id")}
)
RATE_LIMIT_PREFIXES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"braze": ("x-ratelimit-", "x-sib-ratelimit-"), "brevo": ("x-sib-ratelimit-", "x-ratelimit-")}
)


class ExportNotReady(TransientApiError):
    """The export URL answers 403/404: the export is still being written (or has expired)."""


# ----------------------------------------------------------------- status -> exception
# The one table. Statuses absent from it fall back by family in `error_class_for`.
STATUS_ERRORS: Mapping[int, type[ApiError]] = MappingProxyType(
    {
        400: PermanentApiError,
        401: AuthError,
        402: PermissionDenied,
        403: PermissionDenied,
        404: PermanentApiError,
        405: PermanentApiError,
        408: TransientApiError,
        409: PermanentApiError,
        413: PermanentApiError,
        422: PermanentApiError,
        425: TransientApiError,
        429: RateLimited,
        501: PermanentApiError,  # not implemented: retrying cannot help
        505: PermanentApiError,
    }
)

RETRYABLE_ERRORS: tuple[type[ApiError], ...] = (TransientApiError, RateLimited)


def error_class_for(status: int) -> type[ApiError]:
    """The exception class for an HTTP status that is an error."""
    known = STATUS_ERRORS.get(status)
    if known is not None:
        return known
    if status >= 500:
        return TransientApiError
    # Other 4xx, and 1xx/3xx (redirects are not followed: an API key must not travel elsewhere).
    return PermanentApiError


# ----------------------------------------------------------------- retry policy
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_total_wait_s: float = 900.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.max_total_wait_s < 0:
            raise ValueError("retry delays must be >= 0")


def full_jitter(delay: float, rng: random.Random) -> float:
    """A uniformly random wait in [0, delay] ("full jitter"): spreads retries of many clients."""
    return rng.uniform(0.0, delay) if delay > 0 else 0.0


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Capped exponential backoff with full jitter; `attempt` is the 1-based attempt that failed."""
    exponent = min(max(attempt - 1, 0), 62)
    capped = min(policy.max_delay_s, policy.base_delay_s * (2.0**exponent))
    return full_jitter(capped, rng)


# ----------------------------------------------------------------- header parsing
@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    limit: int | None
    remaining: int | None
    reset_in_s: float | None

    @property
    def present(self) -> bool:
        return self.limit is not None or self.remaining is not None or self.reset_in_s is not None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        # Some proxies join repeated headers with commas: the first value is the server's.
        return float(value.split(",")[0].strip())
    except ValueError:
        return None


def _seconds_until(reset: float, now_epoch: float) -> float:
    # Braze documents epoch seconds, Brevo relative seconds; accept either from either.
    return reset - now_epoch if reset > EPOCH_THRESHOLD else reset


def parse_rate_limit_headers(api: str, headers: Mapping[str, str], now_epoch: float) -> RateLimitInfo:
    """Read limit/remaining/reset from Braze `X-RateLimit-*` or Brevo `x-sib-ratelimit-*` headers."""
    lowered = CaseInsensitiveDict(headers)
    for prefix in RATE_LIMIT_PREFIXES[api]:
        limit = _number(lowered.get(prefix + "limit"))
        remaining = _number(lowered.get(prefix + "remaining"))
        reset = _number(lowered.get(prefix + "reset"))
        if limit is None and remaining is None and reset is None:
            continue
        return RateLimitInfo(
            limit=int(limit) if limit is not None else None,
            remaining=int(remaining) if remaining is not None else None,
            reset_in_s=_seconds_until(reset, now_epoch) if reset is not None else None,
        )
    return RateLimitInfo(None, None, None)


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """`Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_epoch)


# ----------------------------------------------------------------- URL safety
def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url_safe(url: str, *, what: str) -> None:
    """Refuse anything but https, except plain http on loopback (the sandbox)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"{what} has no host: {mask_url(url)}")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return
    raise ValueError(f"{what} must use https (plain http is allowed only on loopback): {mask_url(url)}")


def host_of(url: str) -> str:
    """Host and port of a URL, never its user-info (which may hold credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def mask_url(url: str) -> str:
    """Scheme, host and path only: query strings of export URLs carry signatures."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{host_of(url)}{parts.path}"


# ----------------------------------------------------------------- responses
@dataclass(frozen=True)
class ApiResponse:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    data: Any  # parsed JSON, or None when the body is empty or not JSON
    text: str
    request_id: str | None
    elapsed_s: float
    method: str = ""
    path: str = ""  # the path as counted and logged (a template when the caller gave one)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _parse_json(content: bytes) -> Any:
    if not content or not content.strip():
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def _excerpt(text: str, secrets: Sequence[str], limit: int = EXCERPT_CHARS) -> str:
    # Mask before cutting so a secret straddling the cut cannot leave half of itself behind.
    flat = " ".join(mask_text(text, secrets).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _vendor_code(data: Any) -> str:
    if isinstance(data, Mapping):
        code = data.get("code")
        if isinstance(code, str):
            return code
    return ""


# ----------------------------------------------------------------- messages
@dataclass(frozen=True, slots=True)
class _Failure:
    """What went wrong in one attempt, before it becomes an exception."""

    cls: type[ApiError]
    status: int | None = None
    request_id: str | None = None
    body_excerpt: str = ""
    vendor_code: str = ""
    reason: str = ""  # for connection failures: a short, secret-free description
    retry_after: float | None = None


def _headline_and_fix(
    api: str, failure: _Failure, *, method: str, path: str, host: str, permission: str | None, attempts: int
) -> tuple[str, str]:
    label = API_LABELS[api]
    cls, status = failure.cls, failure.status
    if issubclass(cls, AuthError):
        if api == "braze":
            return (
                "Braze rejected the REST API key (401).",
                "Check `api_key` (BRAZE_API_KEY): regenerate it in Braze under Settings → APIs and "
                "Identifiers → API Keys. A 401 is also what a wrong instance answers: the key must "
                f"belong to the instance of {host}; valid REST hosts are {', '.join(BRAZE_REST_HOSTS)}.",
            )
        return (
            "Brevo rejected the API key (401).",
            "Check `brevo.api_key` (BREVO_API_KEY): create a key in Brevo under SMTP & API → API Keys "
            "(keys start with xkeysib-); if 'Authorized IPs' is on, allow this machine's IP.",
        )
    if issubclass(cls, PermissionDenied):
        if api == "braze":
            if permission:
                return (
                    f"The Braze API key lacks the permission `{permission}` ({status}).",
                    "In Braze under Settings → APIs and Identifiers → API Keys, create a new key with "
                    f"`{permission}` (permissions cannot be edited on an existing key) and set it as "
                    "`api_key` (BRAZE_API_KEY). A 403 also means the plan lacks the feature or the "
                    "account is inactive.",
                )
            return (
                f"Braze refused {method} {path} ({status}): the key lacks the permission for it, or "
                "the plan does not include it.",
                "Create a new key with the permission this endpoint needs (permissions cannot be "
                "edited on an existing key) and set it as `api_key` (BRAZE_API_KEY).",
            )
        if failure.vendor_code == "not_enough_credits" or status == 402:
            return (
                f"Brevo refused {method} {path} ({status} {failure.vendor_code or 'payment required'}): "
                "not enough credits, or the plan lacks this feature.",
                "Check the plan and credits in Brevo under Plan & Usage, or turn off the resource "
                "that needs this feature.",
            )
        need = f" `{permission}`" if permission else ""
        return (
            f"Brevo refused {method} {path} ({status} {failure.vendor_code or 'permission_denied'}): "
            f"the API key is not allowed to use{need or ' this endpoint'}.",
            "Check `brevo.api_key` (BREVO_API_KEY) in Brevo under SMTP & API → API Keys: use a key "
            f"with access to{need or ' this API'} (or full access); an account still under "
            "validation also gets 403 until Brevo approves it.",
        )
    if issubclass(cls, RateLimited):
        wait = failure.retry_after
        when = f"in about {wait:.0f} s" if wait is not None else "in a few minutes"
        headline = (
            f"{label} is rate-limiting {method} {path} (429) and the retry budget ran out after "
            f"{attempts} attempt{'s' if attempts != 1 else ''}; retry {when}."
            if status is not None
            else f"{method} {path} was not sent: {label}'s rate limit for it resets only {when}, "
            "beyond the retry budget."
        )
        return (
            headline,
            f"Rerun {when}: the sync resumes where it stopped. If it keeps happening, other "
            f"integrations share this {label} key's limits: lower the batch size or ask {label} to "
            "raise the limit.",
        )
    if issubclass(cls, ConnectionFailed):
        setting = "`instance_url`" if api == "braze" else "`brevo.base_url`"
        return (
            f"Could not connect to {label} at {host} ({failure.reason}).",
            f"Check {setting}, DNS, proxy settings and that this machine can reach {host} over HTTPS.",
        )
    if issubclass(cls, ExportNotReady):
        return (
            f"The {label} export at {host} is not ready yet (HTTP {status}).",
            "Wait and poll again; an export URL answers 403 until the export is written and expires "
            "after about 4 hours.",
        )
    if issubclass(cls, TransientApiError):
        what = f"a server error (HTTP {status})" if status is not None else failure.reason
        return (
            f"{label} failed {method} {path} with {what} after {attempts} "
            f"attempt{'s' if attempts != 1 else ''}.",
            f"This is on the {label} side or the network; rerun later: the sync resumes where it stopped.",
        )
    # PermanentApiError and anything else: a few statuses deserve their own words.
    headline, fixes = _PERMANENT_TEXT.get(status or 0, _PERMANENT_DEFAULT)
    return (
        headline.format(label=label, method=method, path=path, status=status),
        fixes.get(api, fixes["*"]).format(label=label),
    )


_PERMANENT_DEFAULT: tuple[str, Mapping[str, str]] = (
    "{label} rejected {method} {path} as invalid (HTTP {status}).",
    {"*": "See what {label} said; if the data looks right, report it with the request id."},
)
_PERMANENT_TEXT: Mapping[int, tuple[str, Mapping[str, str]]] = MappingProxyType(
    {
        404: (
            "{label} answered 404 Not Found for {method} {path}.",
            {
                "braze": "Check `instance_url` and the id used; Braze also answers 404 for an unknown path.",
                "*": "The object does not exist in {label} (or was deleted); check the id used.",
            },
        ),
        413: (
            "{label} refused the body of {method} {path} as too large (413).",
            {"*": "Send smaller batches (Braze: 4 MB per request; Brevo import: 10 MB)."},
        ),
    }
)


# ----------------------------------------------------------------- connection errors
@dataclass(frozen=True, slots=True)
class _ConnectionProblem:
    reason: str
    sent: bool  # the request may have reached the server
    fatal: bool  # retrying cannot help (TLS failure, bad URL)


def _classify_exception(exc: requests.RequestException) -> _ConnectionProblem:
    """Describe a transport failure without its message (which may carry a URL)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return _ConnectionProblem("TLS handshake or certificate failure", sent=False, fatal=True)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return _ConnectionProblem("connect timeout", sent=False, fatal=False)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return _ConnectionProblem("read timeout", sent=True, fatal=False)
    if isinstance(exc, requests.exceptions.ConnectionError):
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, MaxRetryError):
            cause = cause.reason
        if isinstance(cause, NewConnectionError | ConnectTimeoutError):
            return _ConnectionProblem(
                f"connection refused or host not found ({type(cause).__name__})", sent=False, fatal=False
            )
        if isinstance(exc, requests.exceptions.ProxyError):
            return _ConnectionProblem("proxy failure", sent=False, fatal=False)
        name = type(cause).__name__ if isinstance(cause, BaseException) else type(exc).__name__
        return _ConnectionProblem(f"connection dropped ({name})", sent=True, fatal=False)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return _ConnectionProblem(f"response cut off ({type(exc).__name__})", sent=True, fatal=False)
    return _ConnectionProblem(f"request failed ({type(exc).__name__})", sent=False, fatal=True)


# ----------------------------------------------------------------- ApiSession
class _HeadersOnly(AuthBase):
    """Leaves a request's headers as we set them.

    Without an explicit auth, requests looks up ~/.netrc on every call and, on a match, replaces
    the Authorization header (the Braze key) or adds the file's password to a Brevo call or an
    export download. Passing this also spares that file lookup on each call.
    """

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


HEADERS_ONLY = _HeadersOnly()


class ApiSession:
    """What one API key needs to talk HTTP: base URL, auth, pooled connections, limiter, retries, audit."""

    def __init__(
        self,
        *,
        api: ApiName,
        base_url: str,
        auth_headers: Mapping[str, str],
        limiter: RateLimiter,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, so a shared default is safe
        timeout: tuple[float, float] = (5.0, 60.0),
        logger: Any = None,
        log_bodies: bool = False,
        secrets: Sequence[str] = (),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
        pool_size: int = 8,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if api not in API_LABELS:
            raise ValueError(f"api must be one of {sorted(API_LABELS)}, got {api!r}")
        check_url_safe(base_url, what=f"{API_LABELS[api]} base URL")
        self.api: ApiName = api
        self.base_url = base_url.rstrip("/")
        self.host = host_of(self.base_url)
        self._auth_headers = dict(auth_headers)
        self._limiter = limiter
        self._retry = retry
        self._timeout = timeout
        self._logger = logger
        self._log_bodies = log_bodies
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        self._wall_clock = wall_clock
        self._secrets = self._collect_secrets(secrets, self._auth_headers)
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._counter_lock = threading.Lock()
        self.call_counts: dict[str, int] = {}
        self.retries = 0
        self.throttled_429 = 0

    @staticmethod
    def _collect_secrets(secrets: Sequence[str], auth_headers: Mapping[str, str]) -> tuple[str, ...]:
        # The auth header values are secrets even if the caller forgot to say so.
        found = [s for s in secrets if s]
        for value in auth_headers.values():
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() in ("bearer", "basic", "token"):
                found.append(token.strip())
        return tuple(dict.fromkeys(found))

    def __repr__(self) -> str:
        return f"ApiSession(api={self.api!r}, base_url={self.base_url!r})"

    def __enter__(self) -> ApiSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    # ------------------------------------------------------------- public calls
    def request(
        self,
        method: str,
        path: str,
        *,
        buckets: Sequence[str],
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        permission: str | None = None,
        idempotent: bool = True,
        expected: Collection[int] = (),
        endpoint: str | None = None,
    ) -> ApiResponse:
        """Send one API call with rate limiting and retries; return a 2xx (or `expected`) answer.

        `endpoint` is the name the call is counted and logged under (a path template such as
        `/contacts/{identifier}`), so identifiers like emails stay out of the audit log and the
        counters stay bounded. Defaults to `path`.
        """
        if not buckets:
            raise ValueError("every API call must name at least one rate-limit bucket")
        if json is not None and data is not None:
            raise ValueError("pass either json or data, not both")
        method = method.upper()
        logged_path = endpoint or path
        body = jsonbytes.dumps(json) if json is not None else data
        send_headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **self._auth_headers}
        if body is not None:
            send_headers["Content-Type"] = "application/json"
        if headers:
            send_headers.update(headers)
        response, elapsed = self._send_with_retries(
            method,
            self._url(path),
            logged_path=logged_path,
            count_key=f"{method} {logged_path}",
            buckets=buckets,
            params=params,
            body=body,
            headers=send_headers,
            permission=permission,
            idempotent=idempotent,
            expected=expected,
            stream=False,
        )
        content = response.content
        return ApiResponse(
            status=response.status_code,
            headers=response.headers,
            data=_parse_json(content),
            text=content.decode("utf-8", errors="replace"),  # both APIs speak UTF-8 JSON
            request_id=self._request_id(response.headers),
            elapsed_s=elapsed,
            method=method,
            path=logged_path,
        )

    def error_from(self, response: ApiResponse, *, permission: str | None = None) -> ApiError:
        """The translated exception for an answer a caller accepted via `expected` but cannot use."""
        failure = _Failure(
            cls=error_class_for(response.status),
            status=response.status,
            request_id=response.request_id,
            body_excerpt=_excerpt(response.text, self._secrets),
            vendor_code=_vendor_code(response.data),
        )
        return self._build_error(
            failure, method=response.method, path=response.path, permission=permission, attempts=1
        )

    def stream_get(self, url: str, *, max_bytes: int, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Download a vendor-hosted file (a Braze export URL) in chunks, without any auth header.

        The URL is checked now; the download starts on first iteration. 403/404 raise
        `ExportNotReady` so the caller can poll; a body over `max_bytes` raises PermanentApiError.
        """
        check_url_safe(url, what="export URL")
        if max_bytes < 0 or chunk_size < 1:
            raise ValueError("max_bytes must be >= 0 and chunk_size >= 1")
        return self._stream(url, max_bytes=max_bytes, chunk_size=chunk_size)

    def probe_url(self, url: str) -> int:
        """HTTP status of an export URL, read with a one-byte ranged GET (no download, no auth).

        A ranged GET rather than HEAD: pre-signed storage URLs are signed for GET only.
        """
        check_url_safe(url, what="export URL")
        logged_path = mask_url(url)
        self._count("GET <export URL>")
        started = time.monotonic()
        try:
            with self._session.get(
                url,
                headers={"Range": "bytes=0-0", "User-Agent": USER_AGENT},
                auth=HEADERS_ONLY,
                timeout=self._timeout,
                stream=True,
                allow_redirects=True,
            ) as response:
                status = response.status_code
                request_id = self._request_id(response.headers)
        except requests.RequestException as exc:
            problem = _classify_exception(exc)
            self._audit(logged_path, "GET", None, started, None, 1, error=problem.reason)
            cls = TransientApiError if problem.sent else ConnectionFailed
            raise self._build_error(
                _Failure(cls=cls, reason=problem.reason),
                method="GET",
                path=logged_path,
                permission=None,
                attempts=1,
                host=host_of(url),
            ) from None
        self._audit(logged_path, "GET", status, started, request_id, 1)
        return status

    # ------------------------------------------------------------- internals
    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _request_id(self, headers: Mapping[str, str]) -> str | None:
        for name in REQUEST_ID_HEADERS[self.api]:
            value = headers.get(name)
            if value:
                return mask_text(value, self._secrets)
        return None

    def _count(self, key: str) -> None:
        with self._counter_lock:
            self.call_counts[key] = self.call_counts.get(key, 0) + 1

    def _bump(self, *, retry: bool = False, throttled: bool = False) -> None:
        with self._counter_lock:
            self.retries += int(retry)
            self.throttled_429 += int(throttled)

    def _observed_bucket(self, buckets: Sequence[str], limit: int | None) -> str:
        """The bucket a response's headers describe: the one whose documented limit they quote."""
        if limit is not None:
            for name in buckets:
                if self._limiter.bucket(name).limit == limit:
                    return name
        return buckets[0]

    def _send_with_retries(
        self,
        method: str,
        url: str,
        *,
        logged_path: str,
        count_key: str,
        buckets: Sequence[str],
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None,
        body: bytes | None,
        headers: Mapping[str, str],
        permission: str | None,
        idempotent: bool,
        expected: Collection[int],
        stream: bool,
        host: str | None = None,
    ) -> tuple[requests.Response, float]:
        policy = self._retry
        waited = 0.0
        attempt = 0
        reached_server = False
        while True:
            attempt += 1
            sent_at: float | None = None
            if buckets:
                limiter_wait, sent_at = self._wait_for_limiter(
                    buckets, budget=policy.max_total_wait_s - waited, method=method, path=logged_path
                )
                waited += limiter_wait
            self._count(count_key)
            started = time.monotonic()
            try:
                response = self._answered_request(
                    buckets,
                    sent_at,
                    method,
                    url,
                    params=params,
                    data=body,
                    headers=dict(headers),
                    auth=HEADERS_ONLY,
                    timeout=self._timeout,
                    allow_redirects=stream,  # API calls never follow redirects: the key must not travel
                    stream=stream,
                )
            except requests.RequestException as exc:
                problem = _classify_exception(exc)
                reached_server = reached_server or problem.sent
                self._audit(logged_path, method, None, started, None, attempt, error=problem.reason)
                # ConnectionFailed only while no attempt ever reached the host.
                failure = _Failure(
                    cls=TransientApiError if reached_server else ConnectionFailed, reason=problem.reason
                )
                maybe_applied = problem.sent and not idempotent
                delay = backoff_delay(policy, attempt, self._rng)
                if (
                    problem.fatal
                    or maybe_applied
                    or attempt >= policy.max_attempts
                    or waited + delay > policy.max_total_wait_s
                ):
                    raise self._build_error(
                        failure,
                        method=method,
                        path=logged_path,
                        permission=permission,
                        attempts=attempt,
                        maybe_applied=maybe_applied,
                        host=host,
                    ) from None
                self._retry_log(logged_path, method, attempt, delay, problem.reason)
                self._sleep(delay)
                waited += delay
                self._bump(retry=True)
                continue

            reached_server = True
            elapsed = time.monotonic() - started
            status = response.status_code
            rate = parse_rate_limit_headers(self.api, response.headers, self._wall_clock())
            bucket = self._observed_bucket(buckets, rate.limit) if buckets else None
            if bucket is not None and rate.present:
                self._limiter.observe(
                    bucket, limit=rate.limit, remaining=rate.remaining, reset_in_s=rate.reset_in_s
                )
            ok = 200 <= status < 300 or status in expected
            error_body = b"" if ok else self._read_error_body(response, stream=stream)
            self._audit(
                logged_path,
                method,
                status,
                started,
                self._request_id(response.headers),
                attempt,
                bucket_remaining=rate.remaining,
                bucket=bucket,
                request_body=body,
                response_body=None if stream and ok else (error_body if not ok else response.content),
            )
            if ok:
                return response, elapsed

            cls = error_class_for(status)
            throttled = issubclass(cls, RateLimited)
            self._bump(throttled=throttled)
            retryable = issubclass(cls, RETRYABLE_ERRORS) and (idempotent or throttled)
            # A 429 whose own headers say requests remain is about something else than the rate
            # (Braze: an export of this segment is still being built). Waiting for the bucket's
            # reset, up to an hour, and holding every other call on it back, would not help.
            rate_bound = throttled and not (rate.remaining is not None and rate.remaining > 0)
            if rate_bound:
                wait = self._throttle_wait(response.headers, rate, attempt)
            else:
                wait = self._server_wait(response.headers) or backoff_delay(policy, attempt, self._rng)
            failure = _Failure(
                cls=cls,
                status=status,
                request_id=self._request_id(response.headers),
                body_excerpt=_excerpt(error_body.decode("utf-8", errors="replace"), self._secrets),
                vendor_code=_vendor_code(_parse_json(error_body)),
                retry_after=wait if throttled else None,
            )
            blocked_bucket = bucket if rate_bound else None
            if blocked_bucket is not None:
                # Every thread holds back, not only this one: nothing on this bucket goes out
                # before the reset. The next `acquire` does the waiting, on the limiter's clock.
                self._limiter.block_until(blocked_bucket, wait)
            if not retryable or attempt >= policy.max_attempts or waited + wait > policy.max_total_wait_s:
                raise self._build_error(
                    failure,
                    method=method,
                    path=logged_path,
                    permission=permission,
                    attempts=attempt,
                    maybe_applied=issubclass(cls, TransientApiError) and not idempotent,
                    host=host,
                )
            self._retry_log(logged_path, method, attempt, wait, f"HTTP {status}")
            if blocked_bucket is None:
                self._sleep(wait)
                waited += wait
            self._bump(retry=True)

    def _answered_request(
        self, buckets: Sequence[str], sent_at: float | None, method: str, url: str, **options: Any
    ) -> requests.Response:
        """One HTTP exchange; its rate-limit slots count from when it ends (`RateLimiter.answered`)."""
        try:
            return self._session.request(method, url, **options)
        finally:
            if sent_at is not None:
                self._limiter.answered(buckets, sent_at)

    def _wait_for_limiter(
        self, buckets: Sequence[str], *, budget: float, method: str, path: str
    ) -> tuple[float, float]:
        """Acquire the buckets and return the seconds waited and the send's time for
        `RateLimiter.answered`, unless that would block longer than the retry budget allows.

        After a 429 whose reset is an hour away (Brevo's hourly buckets, Braze's shared default),
        every later call would otherwise sleep silently inside `acquire`; raising RateLimited
        lets the caller stop and resume later instead.
        """
        estimate = self._limiter.wait_estimate(buckets)
        if estimate > max(budget, 0.0):
            raise self._build_error(
                _Failure(cls=RateLimited, retry_after=estimate, reason="held back by the rate limiter"),
                method=method,
                path=path,
                permission=None,
                attempts=0,
            )
        return self._limiter.take(buckets)

    @staticmethod
    def _read_error_body(response: requests.Response, *, stream: bool) -> bytes:
        """The body of an error answer; when streaming, only its first 64 KiB (error pages are small)."""
        try:
            if stream:
                return next(response.iter_content(chunk_size=64 * 1024), b"")
            return response.content
        except (requests.RequestException, OSError):
            return b""
        finally:
            response.close()

    def _server_wait(self, headers: Mapping[str, str]) -> float | None:
        wait = parse_retry_after(headers.get("Retry-After"), self._wall_clock())
        return None if wait is None else wait + HEADER_WAIT_PADDING_S

    def _throttle_wait(self, headers: Mapping[str, str], rate: RateLimitInfo, attempt: int) -> float:
        """How long a 429 asks us to wait: Retry-After, else the rate-limit reset, else backoff."""
        header_wait = self._server_wait(headers)
        if header_wait is not None:
            return header_wait
        if rate.reset_in_s is not None and rate.reset_in_s > 0:
            return rate.reset_in_s + HEADER_WAIT_PADDING_S
        return backoff_delay(self._retry, attempt, self._rng)

    def _build_error(
        self,
        failure: _Failure,
        *,
        method: str,
        path: str,
        permission: str | None,
        attempts: int,
        maybe_applied: bool = False,
        host: str | None = None,
    ) -> ApiError:
        host = host or self.host
        label = API_LABELS[self.api]
        headline, fix = _headline_and_fix(
            self.api, failure, method=method, path=path, host=host, permission=permission, attempts=attempts
        )
        if maybe_applied:
            headline = (
                f"{headline} The call is not safe to repeat and may or may not have been applied, "
                "so it was not retried."
            )
            fix = "Rerun: only what was not acknowledged is sent again."
        where = f"{label} {method} {path}"
        if failure.status is not None:
            where += f" → HTTP {failure.status}"
        where += f"; request id {failure.request_id or 'none'}"
        message = f"{headline} [{where}]"
        if failure.body_excerpt:
            message += f" {label} said: {failure.body_excerpt}"
        message = mask_text(message, self._secrets)
        fix = mask_text(fix, self._secrets)
        kwargs: dict[str, Any] = {
            "api": self.api,
            "status": failure.status,
            "request_id": failure.request_id,
            "body_excerpt": failure.body_excerpt,
            "method": method,
            "path": path,
            "fix": fix,
            "maybe_applied": maybe_applied,
        }
        error: ApiError
        if issubclass(failure.cls, RateLimited):
            error = RateLimited(message, retry_after=failure.retry_after, **kwargs)
        else:
            error = failure.cls(message, **kwargs)
        if failure.reason:
            error.detail += f" reason={failure.reason}"
        return error

    # ------------------------------------------------------------- streaming
    def _stream(self, url: str, *, max_bytes: int, chunk_size: int) -> Iterator[bytes]:
        host = host_of(url)
        logged_path = mask_url(url)
        response, _ = self._send_with_retries(
            "GET",
            url,
            logged_path=logged_path,
            count_key=f"GET {host}",
            buckets=(),
            params=None,
            body=None,
            headers={"User-Agent": USER_AGENT},
            permission=None,
            idempotent=True,
            expected=(403, 404),
            stream=True,
            host=host,
        )
        with response:
            if response.status_code in (403, 404):
                raise self._build_error(
                    _Failure(
                        cls=ExportNotReady,
                        status=response.status_code,
                        request_id=self._request_id(response.headers),
                    ),
                    method="GET",
                    path=logged_path,
                    permission=None,
                    attempts=1,
                    host=host,
                )
            declared = _number(response.headers.get("Content-Length"))
            if declared is not None and declared > max_bytes:
                raise self._too_large(logged_path, host, max_bytes)
            received = 0
            try:
                for chunk in response.iter_content(chunk_size=chunk_size):
                    received += len(chunk)
                    if received > max_bytes:
                        raise self._too_large(logged_path, host, max_bytes)
                    if chunk:
                        yield chunk
            except requests.RequestException as exc:
                problem = _classify_exception(exc)
                raise self._build_error(
                    _Failure(cls=TransientApiError, reason=problem.reason),
                    method="GET",
                    path=logged_path,
                    permission=None,
                    attempts=1,
                    host=host,
                ) from None

    def _too_large(self, logged_path: str, host: str, max_bytes: int) -> PermanentApiError:
        label = API_LABELS[self.api]
        return PermanentApiError(
            f"The {label} export at {host} is larger than the {max_bytes} bytes allowed.",
            api=self.api,
            method="GET",
            path=logged_path,
            fix="Raise the export size limit, or split the segment (for example by random_bucket ranges).",
        )

    # ------------------------------------------------------------- audit log
    def _audit(
        self,
        path: str,
        method: str,
        status: int | None,
        started: float,
        request_id: str | None,
        attempt: int,
        *,
        error: str | None = None,
        bucket_remaining: int | None = None,
        bucket: str | None = None,
        request_body: bytes | None = None,
        response_body: bytes | None = None,
    ) -> None:
        if self._logger is None:
            return
        if bucket_remaining is None and bucket is not None:
            bucket_remaining = int(self._limiter.snapshot()[bucket]["remaining"])
        fields: dict[str, Any] = {
            "api": self.api,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000.0, 1),
            "request_id": request_id,
            "attempt": attempt,
            "bucket_remaining": bucket_remaining,
        }
        if error:
            fields["error"] = error
        if self._log_bodies:
            if request_body is not None:
                fields["request_body"] = self._log_text(request_body)
            if response_body is not None:
                fields["response_body"] = self._log_text(response_body)
        self._logger.info("api_call", **fields)

    def _retry_log(self, path: str, method: str, attempt: int, wait: float, why: str) -> None:
        if self._logger is not None:
            self._logger.warning(
                "api_retry",
                api=self.api,
                method=method,
                path=path,
                attempt=attempt,
                wait_s=round(wait, 3),
                why=why,
            )

    def _log_text(self, body: bytes) -> str:
        text = mask_text(body[: LOG_BODY_CHARS * 4].decode("utf-8", errors="replace"), self._secrets)
        return text if len(text) <= LOG_BODY_CHARS else text[:LOG_BODY_CHARS] + "…"
