"""The sandbox's HTTP server: one loopback port serving the Braze and Brevo emulators.

    /braze/...        -> the Braze app      (Braze base URL  = http://HOST:PORT/braze)
    /brevo/v3/...     -> the Brevo app      (Brevo base URL  = http://HOST:PORT/brevo/v3)
    /_s3/{token}      -> Braze export files (presigned-style: no auth, no rate limit)
    /_admin/...       -> inspection and test controls (loopback clients only)

Each vendor request goes through one pipeline (`Dispatcher.dispatch`): fault injection →
authenticate → route → authorize → rate limits → handler → rate-limit headers → faults
after processing. The pipeline knows nothing about sockets; `_RequestHandler` does the I/O.

Admin routes (no auth, loopback only):
    GET  /_admin/health                 status, URLs, limits mode, fault spec
    GET  /_admin/state                  both apps' dump_state()
    GET  /_admin/counts                 requests per "vendor METHOD /pattern", 429s, faults, errors
    POST /_admin/counts/reset
    GET  /_admin/violations             rate-limit and app-reported violations
    POST /_admin/violations/reset
    GET|POST /_admin/faults             {"spec": "..."} sets, {} clears
    GET|POST /_admin/limits             {"mode": "enforce" | "count" | "off"}
    POST /_admin/limits/reset           forget all rate-limit windows
    *    /_admin/braze/<subpath>        BrazeApp.admin(req, subpath)
    *    /_admin/brevo/<subpath>        BrevoApp.admin(req, subpath)
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http
import ipaddress
import logging
import os
import signal
import socket
import socketserver
import string
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import orjson

from .core import Endpoint, HttpError, Request, Response, VendorApp
from .faults import FaultDecision, FaultInjector, describe, faults_from
from .limits import RateLimiter, key_label, parse_mode, window_bounds

if TYPE_CHECKING:
    from .braze import BrazeApp
    from .brevo import BrevoApp

log = logging.getLogger("tajo_braze.sandbox")

MAX_BODY_BYTES = 32 * 1024 * 1024
FILE_CHUNK_BYTES = 1024 * 1024
BRAZE_PREFIX = "/braze"
BREVO_PREFIX = "/brevo/v3"
S3_PREFIX = "/_s3/"
ADMIN_PREFIX = "/_admin"
STATE_FILE_VERSION = 1

# What a read-only Braze key may do: listings, details, data series and exports, never a write.
BRAZE_READ_PERMISSIONS = frozenset(
    {
        "segments.list",
        "segments.details",
        "segments.data_series",
        "campaigns.list",
        "campaigns.details",
        "campaigns.data_series",
        "sends.data_series",
        "canvas.list",
        "canvas.details",
        "canvas.data_series",
        "canvas.data_summary",
        "email.hard_bounces",
        "email.unsubscribe",
        "users.export.ids",
        "users.export.segment",
        "users.export.global_control_group",
        "subscription.status.get",
        "subscription.groups.get",
        "events.list",
        "events.data_series",
        "events.get",
        "custom_attributes.get",
        "purchases.product_list",
        "purchases.revenue_series",
        "purchases.quantity_series",
        "catalogs.get",
        "catalogs.get_items",
        "catalogs.get_item",
        "kpi.dau.data_series",
        "kpi.mau.data_series",
        "kpi.new_users.data_series",
        "kpi.uninstalls.data_series",
        "sessions.data_series",
    }
)
BREVO_CONNECTOR_KEY_NAME = "tajo-connector"
BREVO_OTHER_KEY_NAME = "marketing-team"


# ---------------------------------------------------------------------------- keys
@dataclass(frozen=True, repr=False)
class SandboxKeys:
    """The sandbox's API keys, derived from the seed so a seeded sandbox always has the same ones."""

    braze: str  # every permission
    braze_readonly: str  # BRAZE_READ_PERMISSIONS only (no users.track)
    brevo: str  # key name "tajo-connector"
    brevo_other: str  # key name "marketing-team"

    def __repr__(self) -> str:  # keys are secrets even in a sandbox: never print them whole
        return "SandboxKeys(braze=***, braze_readonly=***, brevo=***, brevo_other=***)"

    def as_dict(self) -> dict[str, str]:
        return {
            "braze": self.braze,
            "braze_readonly": self.braze_readonly,
            "brevo": self.brevo,
            "brevo_other": self.brevo_other,
        }

    def braze_permissions(self) -> dict[str, frozenset[str] | None]:
        return {self.braze: None, self.braze_readonly: BRAZE_READ_PERMISSIONS}

    def brevo_names(self) -> dict[str, str]:
        return {self.brevo: BREVO_CONNECTOR_KEY_NAME, self.brevo_other: BREVO_OTHER_KEY_NAME}


def _digest(seed: int, label: str) -> bytes:
    return hashlib.sha256(f"tajo-sandbox:{seed}:{label}".encode()).digest()


def _braze_key(seed: int, label: str) -> str:
    return str(uuid.UUID(bytes=_digest(seed, label)[:16], version=4))


def _brevo_key(seed: int, label: str) -> str:
    # Real v3 keys look like "xkeysib-<64 hex>-<16 alphanumerics>".
    alphabet = string.ascii_letters + string.digits
    tail = "".join(alphabet[b % len(alphabet)] for b in _digest(seed, label + ":tail")[:16])
    return f"xkeysib-{_digest(seed, label).hex()}-{tail}"


def derive_keys(seed: int) -> SandboxKeys:
    return SandboxKeys(
        braze=_braze_key(seed, "braze:all"),
        braze_readonly=_braze_key(seed, "braze:readonly"),
        brevo=_brevo_key(seed, "brevo:connector"),
        brevo_other=_brevo_key(seed, "brevo:other"),
    )


# ---------------------------------------------------------------------------- vendor-shaped errors
def vendor_error(vendor: str, status: int, message: str) -> Response:
    """An error in the vendor's generic shape, for answers the apps do not make themselves."""
    if vendor == "brevo":
        code = {404: "not_found", 413: "bad_request"}.get(
            status, "internal_error" if status >= 500 else "bad_request"
        )
        return Response.json(status, {"code": code, "message": message})
    if vendor == "s3":
        return Response.json(status, {"message": message})
    return Response.json(status, {"message": message, "errors": [message]})


def _not_found(app: VendorApp, req: Request) -> Response:
    custom = getattr(app, "not_found", None)
    if callable(custom):
        answer = custom(req)
        if isinstance(answer, Response):
            return answer
    return vendor_error(app.name, 404, f"No route for {req.method} {req.path}")


# ---------------------------------------------------------------------------- the pipeline
@dataclass
class Reply:
    """A response plus what the socket layer must do with it."""

    response: Response
    drop: bool = False  # close the connection mid-response (fault injection)


@dataclass
class _Counters:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # recent unhandled-exception summaries

    def bump(self, table: dict[str, int], name: str) -> None:
        with self.lock:
            table[name] = table.get(name, 0) + 1


class Dispatcher:
    """Routes one request to a vendor app through auth, limits and faults; also serves /_admin."""

    def __init__(
        self,
        apps: Mapping[str, VendorApp],
        *,
        limiter: RateLimiter,
        faults: FaultInjector,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        admin_extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.apps = dict(apps)
        self.limiter = limiter
        self.faults = faults
        self._clock = clock
        self._sleep = sleep
        self._admin_extra = admin_extra
        self._counters = _Counters()
        for vendor, app in self.apps.items():
            app.violation_hook = self._violation_hook(vendor)  # type: ignore[attr-defined]

    def _violation_hook(self, vendor: str) -> Callable[[str, str], None]:
        def hook(endpoint_name: str, detail: str) -> None:
            self.limiter.record(vendor, endpoint_name, detail)

        return hook

    # ---------------------------------------------------------------- entry point
    def dispatch(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, client_host: str
    ) -> Reply:
        path = target.partition("?")[0]
        try:
            if path == BRAZE_PREFIX or path.startswith(BRAZE_PREFIX + "/"):
                return self._vendor("braze", method, target[len(BRAZE_PREFIX) :], headers, body)
            if path == BREVO_PREFIX or path.startswith(BREVO_PREFIX + "/"):
                return self._vendor("brevo", method, target[len(BREVO_PREFIX) :], headers, body)
            if path.startswith(S3_PREFIX) and method in ("GET", "HEAD"):
                return self._export_file(method, path[len(S3_PREFIX) :])
            if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
                if not _is_loopback(client_host):
                    return Reply(
                        Response.json(403, {"message": "the admin endpoint answers loopback clients only"})
                    )
                return Reply(self._admin(method, target[len(ADMIN_PREFIX) :], headers, body))
            if path.startswith("/brevo"):
                return Reply(vendor_error("brevo", 404, f"No route for {method} {path}"))
            return Reply(Response.json(404, {"message": f"No route for {method} {path}"}))
        except HttpError as exc:
            return Reply(Response.json(exc.status, exc.payload, exc.headers))
        except Exception as exc:  # a bug in an app must not take the server down
            return Reply(self._internal_error(path, exc))

    def _internal_error(self, path: str, exc: BaseException) -> Response:
        summary = f"{type(exc).__name__} on {path}"
        log.error("sandbox handler failed: %s\n%s", summary, "".join(traceback.format_exception(exc)))
        with self._counters.lock:
            self._counters.errors.append(summary)
            del self._counters.errors[:-100]
        return Response.json(500, {"message": "sandbox internal error", "errors": [summary]})

    # ---------------------------------------------------------------- vendor requests
    def _vendor(
        self, vendor: str, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        app = self.apps[vendor]
        req = Request.build(method, target or "/", headers, body)
        resolved = app.router.resolve(req.method, req.path)
        if resolved is not None:
            self._counters.bump(self._counters.requests, f"{vendor} {resolved[0].name}")

        fault = self.faults.decide(vendor, req.path)
        if fault.latency_s > 0:
            self._sleep(fault.latency_s)
        if fault.status_before is not None:
            return Reply(self._fault_before(vendor, app, fault.status_before, resolved))

        denied = app.authenticate(req)
        if denied is not None:
            return Reply(denied)
        if resolved is None:
            return Reply(_not_found(app, req))
        endpoint, params = resolved
        forbidden = app.authorize(req, endpoint)
        if forbidden is not None:
            return Reply(forbidden)

        buckets = [app.buckets[name] for name in endpoint.buckets]
        credential = _credential(req)
        decision = self.limiter.check(
            vendor, key_label(credential), endpoint.name, buckets, key_name=_key_name(req, credential)
        )
        rate_headers: dict[str, str] = {}
        if decision.bucket is not None:
            rate_headers = app.rate_limit_headers(
                decision.limit, decision.remaining, decision.reset_epoch, self._clock()
            )
        if not decision.allowed:
            return Reply(app.too_many_requests(rate_headers))

        response = self._run(endpoint, req, params)
        for name, value in rate_headers.items():
            response.headers.setdefault(name, value)
        return self._fault_after(vendor, fault, response)

    @staticmethod
    def _run(endpoint: Endpoint, req: Request, params: dict[str, str]) -> Response:
        try:
            return endpoint.handler(req, params)
        except HttpError as exc:
            return Response.json(exc.status, exc.payload, exc.headers)

    def _fault_before(
        self, vendor: str, app: VendorApp, status: int, resolved: tuple[Endpoint, dict[str, str]] | None
    ) -> Response:
        if status != 429:
            self._counters.bump(self._counters.faults, "5xx")
            return vendor_error(vendor, status, "injected fault: service unavailable")
        self._counters.bump(self._counters.faults, "429")
        now = self._clock()
        spec = app.buckets.get(resolved[0].buckets[0]) if resolved and resolved[0].buckets else None
        if spec is None:
            headers = app.rate_limit_headers(0, 0, now + 1.0, now)
        else:
            _, reset = window_bounds(now, spec.window_s)
            headers = app.rate_limit_headers(spec.limit, 0, reset, now)
        return app.too_many_requests(headers)

    def _fault_after(self, vendor: str, fault: FaultDecision, response: Response) -> Reply:
        if fault.drop:
            self._counters.bump(self._counters.faults, "drop")
            return Reply(response, drop=True)
        if fault.error_after:
            self._counters.bump(self._counters.faults, "5xx_after")
            return Reply(vendor_error(vendor, 500, "injected fault: internal error after processing"))
        return Reply(response)

    # ---------------------------------------------------------------- export downloads
    def _export_file(self, method: str, token: str) -> Reply:
        name = f"braze {method} /_s3/{{token}}"
        self._counters.bump(self._counters.requests, name)
        fault = self.faults.decide("s3", "/" + token)
        if fault.latency_s > 0:
            self._sleep(fault.latency_s)
        if fault.status_before is not None:
            kind = "429" if fault.status_before == 429 else "5xx"
            self._counters.bump(self._counters.faults, kind)
            return Reply(vendor_error("s3", fault.status_before, "injected fault"))
        braze = self.apps["braze"]
        export = getattr(braze, "export_file_response", None)
        if export is None:
            return Reply(vendor_error("s3", 404, "no exports here"))
        response: Response = export(token, head=method == "HEAD")
        return self._fault_after("s3", fault, response)

    # ---------------------------------------------------------------- counters
    def request_counts(self) -> dict[str, int]:
        with self._counters.lock:
            return dict(self._counters.requests)

    def fault_counts(self) -> dict[str, int]:
        with self._counters.lock:
            return dict(self._counters.faults)

    def recent_errors(self) -> list[str]:
        with self._counters.lock:
            return list(self._counters.errors)

    def reset_counters(self) -> None:
        with self._counters.lock:
            self._counters.requests.clear()
            self._counters.faults.clear()
            self._counters.errors.clear()

    # ---------------------------------------------------------------- admin
    def set_faults(self, spec: str | Mapping[str, Any] | None) -> None:
        """Replace the active faults (None / "" / {} clear them) and apply any app delays they set."""
        config = faults_from(spec)
        self.faults.configure(config)
        if config.export_delay_s is not None and "braze" in self.apps:
            self.apps["braze"].export_delay_s = config.export_delay_s  # type: ignore[attr-defined]
        if config.import_delay_s is not None and "brevo" in self.apps:
            self.apps["brevo"].import_delay_s = config.import_delay_s  # type: ignore[attr-defined]

    def _admin(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        req = Request.build(method, target or "/", headers, body)
        path = req.path.rstrip("/") or "/"
        for vendor, app in self.apps.items():
            prefix = f"/{vendor}"
            if path == prefix or req.path.startswith(prefix + "/"):
                delegate = getattr(app, "admin", None)
                if delegate is None:
                    return Response.json(404, {"message": f"{vendor} has no admin endpoints"})
                req.path = req.path[len(prefix) :] or "/"
                answer: Response = delegate(req, req.path.lstrip("/"))
                return answer
        route = (method, path)
        if route == ("GET", "/health"):
            info = {"status": "ok", "limits": self.limiter.mode, "faults": self.faults.config.spec}
            info.update(self._admin_extra() if self._admin_extra else {})
            return Response.json(200, info)
        if route == ("GET", "/state"):
            return Response.json(200, {vendor: app.dump_state() for vendor, app in self.apps.items()})
        if route == ("GET", "/counts"):
            return Response.json(
                200,
                {
                    "requests": self.request_counts(),
                    "rate_limited": self.limiter.throttled,
                    "faults": self.fault_counts(),
                    "errors": self.recent_errors(),
                },
            )
        if route == ("POST", "/counts/reset"):
            self.reset_counters()
            return Response.json(200, {"message": "counters reset"})
        if route == ("GET", "/violations"):
            return Response.json(
                200, {"violations": self.limiter.violations(), "total": self.limiter.violations_total}
            )
        if route == ("POST", "/violations/reset"):
            self.limiter.reset_violations()
            return Response.json(200, {"message": "violations reset"})
        if route == ("GET", "/faults"):
            return Response.json(200, describe(self.faults.config))
        if route == ("POST", "/faults"):
            payload = _json_object(req)
            try:
                self.set_faults(payload or None)
            except ValueError as exc:
                return Response.json(400, {"message": str(exc)})
            return Response.json(200, describe(self.faults.config))
        if route == ("GET", "/limits"):
            return Response.json(200, {"mode": self.limiter.mode})
        if route == ("POST", "/limits"):
            mode = _json_object(req).get("mode")
            try:
                self.limiter.set_mode(str(mode))
            except ValueError as exc:
                return Response.json(400, {"message": str(exc)})
            return Response.json(200, {"mode": self.limiter.mode})
        if route == ("POST", "/limits/reset"):
            self.limiter.reset_windows()
            return Response.json(200, {"message": "rate-limit windows reset"})
        return Response.json(404, {"message": f"no admin route {method} {path}"})


def _json_object(req: Request) -> dict[str, Any]:
    payload = req.json()
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise HttpError(400, {"message": "expected a JSON object"})
    return payload


def _credential(req: Request) -> str:
    """The API key a request presents, whichever vendor header carries it (only ever hashed)."""
    return req.headers.get("api-key") or req.headers.get("authorization") or ""


def _key_name(req: Request, credential: str) -> str:
    """A readable name for the violation log: the name or label the app gave the key, if any.

    Brevo's principal is the key's name; Braze's carries a `label`. Anything that could be the
    key itself falls back to a hash.
    """
    principal = req.principal
    name = principal if isinstance(principal, str) else getattr(principal, "label", None)
    if isinstance(name, str) and name and name not in credential:
        return name
    return key_label(credential)


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


# ---------------------------------------------------------------------------- sockets
class _BodyTooLarge(Exception):
    pass


class _BadRequest(Exception):
    pass


class _DateHeader:
    """The HTTP Date value, formatted once a second: per response it would be measurable."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:  # a race only formats the same second twice
            self._text, self._second = email.utils.formatdate(now, usegmt=True), now
        return self._text


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _head_bytes(
    status: int, headers: Mapping[str, str], content_length: int | None, close: bool, date: str
) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason(status)}"]
    if content_length is not None:
        # First, so that a dropped response always announces a body it will not deliver.
        lines.append(f"Content-Length: {content_length}")
    lines.extend(f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("content-length", "connection"))
    lines.append(f"Date: {date}")
    lines.append("Server: tajo-sandbox")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SandboxHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silent: a line per request would cost more than the request."""

    def handle_expect_100(self) -> bool:
        # Refuse an oversized body before the client sends it.
        try:
            self._content_length()
        except _BodyTooLarge:
            self._send_plain_error(413, "request body above 32 MiB")
            return False
        except _BadRequest as exc:
            self._send_plain_error(400, str(exc))
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # ---------------------------------------------------------------- reading
    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        try:
            length = int(raw)
        except ValueError:
            raise _BadRequest("invalid Content-Length") from None
        if length < 0:
            raise _BadRequest("invalid Content-Length")
        if length > MAX_BODY_BYTES:
            raise _BodyTooLarge
        return length

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self._content_length()
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest("invalid chunked body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyTooLarge
            parts.append(self.rfile.read(size))
            self.rfile.readline(16)

    # ---------------------------------------------------------------- serving
    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _BodyTooLarge:
            self._send_plain_error(413, "request body above 32 MiB")
            return
        except _BadRequest as exc:
            self._send_plain_error(400, str(exc))
            return
        reply = self.server.dispatcher.dispatch(
            self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
        )
        if reply.drop:
            self._drop(reply.response)
        elif reply.response.file_path is not None:
            self._send_file(reply.response)
        else:
            self._send(reply.response)

    def _send_plain_error(self, status: int, message: str) -> None:
        # The unread body is still on the wire, so this connection cannot be reused.
        self.close_connection = True
        self._send(Response.json(status, {"message": message}))

    def _send(self, response: Response) -> None:
        no_body = response.status in (204, 304) or response.status < 200
        length = None if no_body else len(response.body)
        head = _head_bytes(
            response.status, response.headers, length, self.close_connection, self.server.date()
        )
        if self.command == "HEAD" or no_body:
            self.wfile.write(head)
        else:
            self.wfile.write(head + response.body)  # one sendall: no Nagle stall between head and body

    def _send_file(self, response: Response) -> None:
        assert response.file_path is not None
        try:
            handle: BinaryIO = open(response.file_path, "rb")  # noqa: SIM115 - closed below
        except OSError:
            self._send(vendor_error("s3", 404, "export file is gone"))
            return
        with handle:
            size = os.fstat(handle.fileno()).st_size
            self.wfile.write(
                _head_bytes(
                    response.status, response.headers, size, self.close_connection, self.server.date()
                )
            )
            if self.command == "HEAD":
                return
            while chunk := handle.read(FILE_CHUNK_BYTES):
                self.wfile.write(chunk)

    def _drop(self, response: Response) -> None:
        """Send the status line and part of the headers, then reset the connection."""
        length = len(response.body) if response.file_path is None else 1
        head = _head_bytes(response.status, response.headers, max(length, 1), False, self.server.date())
        cut = head.index(b"\r\n") + 2 + len("Content-Length: ")
        with contextlib.suppress(OSError):
            self.wfile.write(head[:cut])
            # Linger 0 turns close() into a reset, so the client sees a broken connection, not an EOF.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        self.close_connection = True
        self.connection.close()


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threaded keep-alive server that can close every open connection when it stops."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.dispatcher = dispatcher
        self.date = _DateHeader()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup that can stall start-up.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response are normal (timeouts, dropped-connection tests): stay quiet.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        log.error("sandbox connection from %s failed", client_address, exc_info=exc)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        # Small JSON answers must not wait for Nagle's algorithm.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._open_lock:
            self._open.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Wake handler threads idling on keep-alive connections so nothing is served after stop."""
        with self._open_lock:
            conns = list(self._open)
            self._open.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


# ---------------------------------------------------------------------------- the host
class SandboxServer:
    """Serves two vendor apps over HTTP with limits, faults, an admin endpoint and a state file.

    `Sandbox` builds the real seeded apps; tests of the server alone pass their own small apps.
    """

    braze: Any
    brevo: Any

    def __init__(
        self,
        braze: VendorApp,
        brevo: VendorApp,
        *,
        keys: SandboxKeys,
        seed: int = 7,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: str = "enforce",
        faults: str | Mapping[str, Any] | None = None,
        data_file: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.braze = braze
        self.brevo = brevo
        self.keys = keys
        self.seed = seed
        self.host = host
        self.data_file = data_file
        self._requested_port = port
        self._clock = clock
        self.limiter = RateLimiter(limits, clock=clock)
        self.dispatcher = Dispatcher(
            {"braze": braze, "brevo": brevo},
            limiter=self.limiter,
            faults=FaultInjector(seed=seed),
            clock=clock,
            sleep=sleep,
            admin_extra=self._urls,
        )
        self.dispatcher.set_faults(faults)
        self._httpd: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> SandboxServer:
        if self._httpd is not None:
            return self
        httpd = SandboxHTTPServer((self.host, self._requested_port), self.dispatcher)
        self._httpd = httpd
        for app in (self.braze, self.brevo):
            app.public_base = self.public_base
        try:
            if self.data_file and os.path.exists(self.data_file):
                self.load_state_file(self.data_file)
        except BaseException:
            httpd.server_close()
            self._httpd = None
            raise
        self._thread = threading.Thread(
            # A short poll keeps stop() quick (it waits for the loop to notice); idle cost is negligible.
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="tajo-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_open_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.data_file:
            self.save_state_file(self.data_file)
        for app in (self.braze, self.brevo):
            close = getattr(app, "close", None)  # e.g. Braze removes its export files
            if callable(close):
                close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    # ---------------------------------------------------------------- addresses
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the sandbox is not started: call start() first")
        return int(self._httpd.server_address[1])

    @property
    def public_base(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def braze_url(self) -> str:
        return self.public_base + BRAZE_PREFIX

    @property
    def brevo_url(self) -> str:
        return self.public_base + BREVO_PREFIX

    @property
    def admin_url(self) -> str:
        return self.public_base + ADMIN_PREFIX

    def _urls(self) -> dict[str, Any]:
        return {"braze_url": self.braze_url, "brevo_url": self.brevo_url, "admin_url": self.admin_url}

    def describe(self) -> dict[str, Any]:
        """What a client needs to connect: the line `python -m tajo_braze.sandbox` prints."""
        return {**self._urls(), "keys": self.keys.as_dict()}

    # ---------------------------------------------------------------- inspection and control
    def violations(self) -> list[dict[str, Any]]:
        return self.limiter.violations()

    def request_counts(self) -> dict[str, int]:
        return self.dispatcher.request_counts()

    def reset_counters(self) -> None:
        """Forget request and fault counts, violations and rate-limit windows."""
        self.dispatcher.reset_counters()
        self.limiter.reset_violations()
        self.limiter.reset_windows()

    def set_faults(self, spec: str | Mapping[str, Any] | None) -> None:
        self.dispatcher.set_faults(spec)

    def set_limits(self, mode: str) -> None:
        self.limiter.set_mode(parse_mode(mode))

    # ---------------------------------------------------------------- persistence
    def save_state_file(self, path: str) -> None:
        """Write both apps' state atomically (a crash mid-write leaves the old file intact)."""
        payload = {
            "version": STATE_FILE_VERSION,
            "seed": self.seed,
            "braze": self.braze.dump_state(),
            "brevo": self.brevo.dump_state(),
        }
        data = orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".sandbox-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def load_state_file(self, path: str) -> None:
        with open(path, "rb") as handle:
            raw = handle.read()
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"sandbox data file {path} is not valid JSON: {exc}") from None
        if not isinstance(payload, dict) or payload.get("version") != STATE_FILE_VERSION:
            raise ValueError(f"sandbox data file {path} was not written by this sandbox version")
        self.braze.load_state(payload["braze"])
        self.brevo.load_state(payload["brevo"])


class Sandbox(SandboxServer):
    """The seeded Braze and Brevo emulators on one loopback port.

    >>> with Sandbox(users=100) as sb:
    ...     requests.get(sb.braze_url + "/segments/list", headers={"Authorization": f"Bearer {sb.keys.braze}"})
    """

    braze: BrazeApp
    brevo: BrevoApp

    def __init__(
        self,
        *,
        users: int = 1000,
        contacts: int | None = None,
        seed: int = 7,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: str = "enforce",
        faults: str | Mapping[str, Any] | None = None,
        export_delay_s: float = 0.0,
        import_delay_s: float = 0.0,
        data_file: str | None = None,
        track_objects_cap: int | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from .braze import BrazeApp
        from .brevo import BrevoApp
        from .brevo_seed import seed_brevo_world
        from .seed import seed_braze_world

        parse_mode(limits)  # fail before the costly seeding
        fault_config = faults_from(faults)
        keys = derive_keys(seed)
        n_contacts = users // 2 if contacts is None else contacts
        # Seed both worlds at the sandbox's own "now", so an injected clock gives a consistent world.
        now = clock()
        braze = BrazeApp(
            seed_braze_world(users, seed, today=datetime.fromtimestamp(now, UTC).date()),
            keys=keys.braze_permissions(),
            clock=clock,
            export_delay_s=export_delay_s,
            track_objects_cap=track_objects_cap,
        )
        overlap = braze.overlap_identities(n_contacts // 2)
        brevo = BrevoApp(
            seed_brevo_world(n_contacts, seed, overlap, now=now),
            keys=keys.brevo_names(),
            clock=clock,
            import_delay_s=import_delay_s,
        )
        super().__init__(
            # BrazeApp types `buckets` as a dict, which a Protocol attribute (invariant) refuses.
            cast(VendorApp, braze),
            brevo,
            keys=keys,
            seed=seed,
            host=host,
            port=port,
            limits=limits,
            faults=fault_config.spec,
            data_file=data_file,
            clock=clock,
            sleep=sleep,
        )

    def start(self) -> Sandbox:
        super().start()
        return self

    def __enter__(self) -> Sandbox:
        return self.start()


# ---------------------------------------------------------------------------- running until stopped
def serve_forever(sandbox: SandboxServer, *, stop_event: threading.Event | None = None) -> None:
    """Serve until `stop_event` is set, SIGINT or SIGTERM; then stop (saving the data file).

    Signal handlers are installed only when called from the main thread, and restored after.
    """
    stop = stop_event or threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        sandbox.start()
        while not stop.wait(0.5):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sandbox.stop()
