"""Fixtures for sandbox tests.

- `sandbox`: a started, seeded `Sandbox` (small world, real Braze and Brevo apps).
- `make_sandbox`: a factory for sandboxes with other options; all are stopped at teardown.
- `fake_server` / `make_fake_server`: the HTTP server alone, hosting two tiny fake vendor
  apps, so server behaviour is tested without depending on the vendor emulators.
- `clock`: a settable clock to move rate-limit windows without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from tajo_braze.sandbox.core import BucketSpec, Endpoint, HttpError, Request, Response, Router
from tajo_braze.sandbox.server import SandboxServer, derive_keys


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeApp:
    """A minimal vendor: bearer-token auth, two permissions, one 3-request bucket.

    Routes: GET /ping (read), POST /items (write, records the body), GET /items/{item_id} (read),
    GET /boom (raises a bug), GET /refuse (reports a violation and answers 400),
    GET /free (no bucket).
    """

    name: str
    keys: Mapping[str, frozenset[str]]  # token -> permissions
    limit: int = 3
    window_s: float = 10.0
    calls: list[str] = field(default_factory=list)
    items: dict[str, Any] = field(default_factory=dict)
    public_base: str = ""
    violation_hook: Callable[[str, str], None] | None = None
    export_delay_s: float = 0.0
    import_delay_s: float = 0.0
    exports: dict[str, bytes] = field(default_factory=dict)
    export_dir: str = ""

    def __post_init__(self) -> None:
        self.buckets = {"general": BucketSpec("general", self.limit, self.window_s)}
        self.router = Router()
        self.router.add("GET", "/ping", self._ping, buckets=("general",), permission="read")
        self.router.add("POST", "/items", self._create, buckets=("general",), permission="write")
        self.router.add("GET", "/items/{item_id}", self._get, buckets=("general",), permission="read")
        self.router.add("GET", "/boom", self._boom, buckets=("general",), permission="read")
        self.router.add("GET", "/refuse", self._refuse, permission="read")
        self.router.add("GET", "/free", self._ping, permission="read")

    # -- VendorApp
    def authenticate(self, req: Request) -> Response | None:
        token = req.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.keys:
            return Response.json(401, {"message": f"{self.name}: invalid key"})
        req.principal = self.keys[token]
        return None

    def authorize(self, req: Request, endpoint: Endpoint) -> Response | None:
        if endpoint.permission and endpoint.permission not in req.principal:
            return Response.json(403, {"message": f"{self.name}: missing {endpoint.permission}"})
        return None

    def rate_limit_headers(
        self, limit: int, remaining: int, reset_epoch: float, now: float
    ) -> dict[str, str]:
        return {"X-Limit": str(limit), "X-Remaining": str(remaining), "X-Reset": str(int(reset_epoch))}

    def too_many_requests(self, headers: dict[str, str]) -> Response:
        return Response.json(429, {"message": f"{self.name}: slow down"}, headers)

    def dump_state(self) -> dict[str, Any]:
        return {"items": dict(self.items)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.items = dict(state["items"])

    # -- extras the server uses when present
    def admin(self, req: Request, subpath: str) -> Response:
        return Response.json(200, {"vendor": self.name, "subpath": subpath, "method": req.method})

    def export_file_response(self, token: str, *, head: bool = False) -> Response:
        if token not in self.exports:
            return Response.json(403, {"message": "AccessDenied"})
        path = f"{self.export_dir}/{token}.zip"
        with open(path, "wb") as out:
            out.write(self.exports[token])
        return Response(200, b"", {"Content-Type": "application/zip"}, file_path=path)

    # -- handlers
    def _ping(self, req: Request, params: dict[str, str]) -> Response:
        self.calls.append(req.path)
        return Response.json(200, {"vendor": self.name, "path": req.path, "query": req.query})

    def _create(self, req: Request, params: dict[str, str]) -> Response:
        self.calls.append(req.path)
        payload = req.json()
        self.items[payload["id"]] = payload
        return Response.json(201, {"created": payload["id"]})

    def _get(self, req: Request, params: dict[str, str]) -> Response:
        self.calls.append(req.path)
        if params["item_id"] not in self.items:
            raise HttpError(404, {"message": "no such item"})
        return Response.json(200, self.items[params["item_id"]])

    def _boom(self, req: Request, params: dict[str, str]) -> Response:
        self.calls.append(req.path)
        raise RuntimeError("a bug in the app")

    def _refuse(self, req: Request, params: dict[str, str]) -> Response:
        self.calls.append(req.path)
        if self.violation_hook is not None:
            self.violation_hook("GET /refuse", "batch above 75 objects")
        return Response.json(400, {"message": "too many objects"})


@dataclass
class FakeWorld:
    server: SandboxServer
    braze: FakeApp
    brevo: FakeApp
    clock: FakeClock
    sleeps: list[float]

    def url(self, vendor: str, path: str) -> str:
        base = self.server.braze_url if vendor == "braze" else self.server.brevo_url
        return base + path

    @property
    def admin_url(self) -> str:
        return self.server.admin_url

    @property
    def full(self) -> dict[str, str]:
        """Headers of a key with every permission."""
        return dict(FULL)

    @property
    def read_only(self) -> dict[str, str]:
        """Headers of a key that may only read."""
        return dict(READ_ONLY)


FULL_TOKEN = "full-token"
READ_TOKEN = "read-token"
FULL = {"Authorization": f"Bearer {FULL_TOKEN}"}
READ_ONLY = {"Authorization": f"Bearer {READ_TOKEN}"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_fake_server(clock: FakeClock, tmp_path: Any) -> Iterator[Callable[..., FakeWorld]]:
    started: list[SandboxServer] = []

    def make(**options: Any) -> FakeWorld:
        keys = {FULL_TOKEN: frozenset({"read", "write"}), READ_TOKEN: frozenset({"read"})}
        braze = FakeApp("braze", keys, export_dir=str(tmp_path))
        brevo = FakeApp("brevo", keys, export_dir=str(tmp_path))
        sleeps: list[float] = []
        options.setdefault("limits", "enforce")
        server = SandboxServer(braze, brevo, keys=derive_keys(7), clock=clock, sleep=sleeps.append, **options)
        server.start()
        started.append(server)
        return FakeWorld(server, braze, brevo, clock, sleeps)

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def fake_server(make_fake_server: Callable[..., FakeWorld]) -> FakeWorld:
    return make_fake_server()


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Any]]:
    """Start real sandboxes (small worlds by default); every one is stopped at teardown."""
    from tajo_braze.sandbox import Sandbox

    started: list[Sandbox] = []

    def make(**options: Any) -> Sandbox:
        options.setdefault("users", 200)
        sandbox = Sandbox(**options).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Any]) -> Any:
    """A started sandbox with 200 Braze users and 100 Brevo contacts, limits enforced, no faults."""
    return make_sandbox()
