"""A small webhook receiver for users without a host runtime: `tajo connectors serve braze`.

    POST /webhooks/brevo    Brevo webhooks (one event, or a batched array)
    POST /webhooks/braze    Braze Currents (Custom HTTP connector) or campaign/Canvas webhooks
    GET  /health            liveness, no authentication, no detail

Every call is authenticated by the configured bearer token (or basic auth), compared in constant
time. Its events are recorded durably in the state store and the answer goes out at once; a
background worker forwards them in batches bounded by size and time.

Status codes follow what the senders do with them (see the Braze and Brevo references):
200 once recorded (malformed items are reported in the body and dead-lettered: a 400 would make
Braze split the batch and drop it), 400 only for a body that is not a JSON object or array,
401 for a missing or wrong credential (nothing is read or recorded), 413 for a body too large
(Braze splits and resends), 503 when the state store cannot record (both senders retry 5xx).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import signal
import socketserver
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .config import Secret
from .errors import ConfigError, ConnectorError, Problem, StateError
from .event_mapping import PayloadError
from .events import ForwardReport, accept, backlog, forward_pending, rules_for
from .sync.context import SyncContext

if TYPE_CHECKING:
    from .connector import BrazeConnector

__all__ = ["Credentials", "WebhookReceiver", "serve"]

DEFAULT_HOST = "127.0.0.1"
ROUTES: Mapping[str, str] = {"/webhooks/brevo": "brevo", "/webhooks/braze": "braze"}
MAX_BODY_BYTES = 16 * 1024 * 1024  # Brevo batches hold up to 500 events, Currents up to 100
FLUSH_AFTER_S = 2.0  # a lone event waits at most this long for others to share its batch
RETRY_FIRST_S = 5.0  # after a failed forward: first retry delay, doubled up to RETRY_MAX_S
RETRY_MAX_S = 300.0
STOP_TIMEOUT_S = 30.0
UNAUTHENTICATED_DRAIN_BYTES = 64 * 1024
AUTHENTICATE = 'Bearer realm="tajo-webhooks", Basic realm="tajo-webhooks"'


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a caller must present. Comparisons are constant-time and never short-circuit."""

    token: Secret | None
    basic_user: str | None = None
    basic_password: Secret | None = None

    def allows(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and self.token:
            return hmac.compare_digest(value.encode("utf-8"), self.token.reveal().encode("utf-8"))
        if scheme == "basic" and self.basic_user and self.basic_password:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                return False
            user, colon, password = decoded.partition(":")
            user_ok = hmac.compare_digest(user.encode("utf-8"), self.basic_user.encode("utf-8"))
            password_ok = hmac.compare_digest(
                password.encode("utf-8"), self.basic_password.reveal().encode("utf-8")
            )
            return bool(colon) and user_ok and password_ok
        return False


# ---------------------------------------------------------------- the background worker
class _Worker:
    """Forwards recorded events: when a batch is full, or FLUSH_AFTER_S after the first waiting
    event; after a failed pass it retries with a doubling delay even if nothing new arrives."""

    def __init__(self, ctx: SyncContext, *, flush_after_s: float, logger: Any) -> None:
        self._ctx = ctx
        self._rules = rules_for(ctx)
        self._flush_after = flush_after_s
        self._batch = max(1, ctx.config.events.batch_size)
        self._logger = logger
        self._cond = threading.Condition()
        self._waiting = 0
        self._first_at: float | None = None
        self._retry_at: float | None = None
        self._retry_delay = RETRY_FIRST_S
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.last_report: ForwardReport | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tajo-webhook-forwarder", daemon=True)
        self._thread.start()

    def notify(self, recorded: int) -> None:
        if recorded <= 0:
            return
        with self._cond:
            self._waiting += recorded
            if self._first_at is None:
                self._first_at = time.monotonic()
            self._cond.notify_all()

    def stop(self, timeout: float) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_until_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._waiting == 0 and not self._busy, timeout)

    def _due(self, now: float) -> float | None:
        due: float | None = None
        if self._waiting:
            assert self._first_at is not None
            due = now if self._waiting >= self._batch else self._first_at + self._flush_after
        if self._retry_at is not None:
            due = self._retry_at if due is None else min(due, self._retry_at)
        return due

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    due = self._due(now)
                    if due is not None and due <= now:
                        break
                    self._cond.wait(None if due is None else due - now)
                if self._stopping and not self._waiting:
                    return
                self._waiting, self._first_at, self._retry_at = 0, None, None
                self._busy = True
            report = self._forward()
            with self._cond:
                self._busy = False
                self.last_report = report
                if report is None or report.failed or report.error is not None:
                    self._retry_at = time.monotonic() + self._retry_delay
                    self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)
                else:
                    self._retry_delay = RETRY_FIRST_S
                self._cond.notify_all()

    def _forward(self) -> ForwardReport | None:
        try:
            report = forward_pending(self._ctx, rules=self._rules)
        except Exception as exc:  # the worker must outlive any one bad pass; the events stay recorded
            self._log(
                "warning",
                "webhook_forward_failed",
                error=str(exc) if isinstance(exc, ConnectorError) else type(exc).__name__,
            )
            return None
        if report.failed or report.unknown or report.rejected or report.error is not None:
            self._log(
                "warning",
                "webhook_forward",
                forwarded=report.forwarded,
                failed=report.failed,
                unknown=report.unknown,
                rejected=report.rejected,
                error=report.error.user_message if report.error is not None else None,
            )
        elif report.examined:
            self._log("info", "webhook_forward", forwarded=report.forwarded, ignored=report.ignored)
        return report

    def _log(self, level: str, event: str, **fields: Any) -> None:
        if self._logger is not None:
            getattr(self._logger, level)(event, **fields)


# ---------------------------------------------------------------- HTTP
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, a DNS query that can stall start-up.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "tajo-webhooks"
    sys_version = ""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.server.receiver.handle_post(self)

    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/health":
            self.reply(200, {"ok": True})
        else:
            self.reply(
                405 if path in ROUTES else 404, {"error": "POST events to /webhooks/brevo or /webhooks/braze"}
            )

    def do_PUT(self) -> None:  # noqa: N802
        self.reply(405, {"error": "POST events to /webhooks/brevo or /webhooks/braze"}, close=True)

    do_DELETE = do_PATCH = do_PUT  # noqa: N815

    def reply(
        self,
        status: int,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        # Request lines carry no secrets (credentials travel in headers); keep them out of stderr.
        return


class WebhookReceiver:
    """The receiver as an object: `start()`, `stop()`, `url`. Port 0 picks a free port."""

    def __init__(
        self,
        connector: BrazeConnector,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        flush_after_s: float = FLUSH_AFTER_S,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        webhooks = connector.config.webhooks
        if not webhooks.token:
            raise ConfigError(
                [
                    Problem(
                        connector.config.source,
                        None,
                        "connectors.braze.webhooks.token",
                        "no webhook token is configured, and the receiver never runs unauthenticated",
                        "set webhooks: {token: ${TAJO_WEBHOOK_TOKEN}} in the config and export TAJO_WEBHOOK_TOKEN",
                    )
                ]
            )
        self.credentials = Credentials(webhooks.token, webhooks.basic_user, webhooks.basic_password)
        self.ctx = connector.context()  # fails here, before listening, when an API key is missing
        self._rules = rules_for(self.ctx)
        self._host = host
        self._port = port
        self._max_body = max_body_bytes
        self._logger = self.ctx.logger
        self._worker = _Worker(self.ctx, flush_after_s=flush_after_s, logger=self._logger)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> WebhookReceiver:
        if self._server is not None:
            return self
        self._server = _Server((self._host, self._port), self)
        self._worker.start()
        # Events recorded before a stop or a crash are forwarded first.
        self._worker.notify(backlog(self.ctx))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="tajo-webhooks",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop listening, then let the worker forward what is waiting (bounded by `timeout`)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._worker.stop(timeout)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not started: call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._host if self._host not in ("", "0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
        return f"http://{host}:{self.port}"

    def wait_until_idle(self, timeout: float = 30.0) -> bool:
        """True once nothing recorded is waiting for the worker (for tests and orderly shutdowns)."""
        return self._worker.wait_until_idle(timeout)

    @property
    def last_report(self) -> ForwardReport | None:
        return self._worker.last_report

    # ------------------------------------------------------------ one request
    def handle_post(self, request: _Handler) -> None:
        source = ROUTES.get(urlsplit(request.path).path.rstrip("/"))
        if source is None:
            request.reply(404, {"error": "POST events to /webhooks/brevo or /webhooks/braze"}, close=True)
            return
        if not self.credentials.allows(request.headers.get("Authorization")):
            # Nothing is parsed or recorded. A small body is drained so the client reads the 401
            # instead of a reset connection; a big one is not worth reading for a stranger.
            with contextlib.suppress(ValueError, OSError):
                length = int(request.headers.get("Content-Length") or 0)
                if 0 < length <= UNAUTHENTICATED_DRAIN_BYTES:
                    request.rfile.read(length)
            request.reply(
                401,
                {"error": "missing or wrong credentials"},
                headers={"WWW-Authenticate": AUTHENTICATE},
                close=True,
            )
            return
        raw_length = request.headers.get("Content-Length")
        if raw_length is None:
            if request.headers.get("Transfer-Encoding"):
                request.reply(411, {"error": "send a Content-Length"}, close=True)
                return
            raw_length = "0"
        try:
            length = int(raw_length)
        except ValueError:
            request.reply(400, {"error": "Content-Length is not a number"}, close=True)
            return
        if length < 0 or length > self._max_body:
            request.reply(
                413, {"error": f"body above {self._max_body} bytes; send smaller batches"}, close=True
            )
            return
        body = request.rfile.read(length)
        if not body.strip():
            request.reply(
                200, {"source": source, "received": 0, "recorded": 0}
            )  # an empty delivery is a no-op
            return
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            request.reply(400, {"error": f"the body is not JSON we accept ({type(exc).__name__})"})
            return
        try:
            intake = accept(self.ctx, source, payload, rules=self._rules)
        except PayloadError as exc:
            request.reply(400, {"error": exc.user_message})
            return
        except StateError as exc:
            request.reply(
                503, {"error": "the events could not be recorded; retry later"}, headers={"Retry-After": "30"}
            )
            self._log("error", "webhook_record_failed", error=exc.user_message)
            return
        except ConnectorError as exc:
            request.reply(500, {"error": exc.user_message})
            return
        self._worker.notify(len(intake.recorded))
        request.reply(200, intake.as_dict())

    def _log(self, level: str, event: str, **fields: Any) -> None:
        if self._logger is not None:
            getattr(self._logger, level)(event, **fields)


# ---------------------------------------------------------------- `tajo connectors serve`
def serve(
    connector: BrazeConnector,
    *,
    port: int,
    stream: IO[str],
    host: str = DEFAULT_HOST,
    stop_event: threading.Event | None = None,
) -> int:
    """Run the receiver until SIGINT/SIGTERM (or `stop_event`); returns the exit code."""
    receiver = WebhookReceiver(connector, host=host, port=port)  # refuses to start without a token
    stop = stop_event or threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        for wanted in (signal.SIGINT, signal.SIGTERM):
            previous[wanted] = signal.signal(wanted, on_signal)
    try:
        receiver.start()
        stream.write(
            f"Receiving webhooks on {receiver.url}/webhooks/brevo and {receiver.url}/webhooks/braze"
            " (Ctrl-C stops)\n"
        )
        stream.flush()
        while not stop.wait(0.5):
            pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        receiver.stop()
    waiting = backlog(receiver.ctx)
    tail = f"; {waiting} event(s) wait for the next start or `sync --resources events`" if waiting else ""
    stream.write(f"Stopped{tail}.\n")
    stream.flush()
    return 0
