"""BrazeConnector: the hooks a host calls (and the `tajo` CLI calls the same ones).

Builds clients, state and mapping from the configuration, runs the resource syncs, and turns
errors into results where a result is what the caller wants (named checks, run summaries).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from .clients.braze import BRAZE_BUCKETS, BrazeClient
from .clients.brevo import BREVO_BUCKETS, BrevoClient
from .collector import fewer_collections
from .config import Config, Secret, load_config, normalize_braze_url, without_values
from .errors import (
    ApiError,
    AuthError,
    ConfigError,
    ConnectionFailed,
    ConnectorError,
    Interrupted,
    MappingError,
    NotAvailableError,
    PermissionDenied,
    Problem,
    RateLimited,
    UsageError,
)
from .http import ApiSession, RetryPolicy
from .log import make_logger
from .mapping import CompiledMapping, load_mapping
from .models import CheckResult, ResourceResult
from .ratelimit import RateLimiter
from .state import StateStore
from .sync import users as users_sync
from .sync.context import NoProgress, Progress, SyncContext
from .sync.registry import optional_module
from .vault import Vault

RESOURCES = ("users", "segments", "campaigns", "canvases", "events", "catalogs")
# Each resource is a module with `run(ctx) -> ResourceResult`; `users` has a second half for
# Brevo -> Braze. A module that is not there yet makes its resource "not available yet".
RESOURCE_MODULES = {
    "users": "tajo_braze.sync.users",
    "segments": "tajo_braze.sync.segments",
    "campaigns": "tajo_braze.sync.campaigns",
    "canvases": "tajo_braze.sync.canvases",
    "events": "tajo_braze.sync.events",
    "catalogs": "tajo_braze.sync.catalogs",
}
REVERSE_USERS_MODULE = "tajo_braze.sync.contacts"
DELETIONS_MODULE = "tajo_braze.sync.deletions"
# Taken off the time since the last run ended: the moment between its last call and its row being
# closed, and a clock that stepped, must not make a window look over before it is.
IDLE_MARGIN_S = 0.25
CREDENTIALS = ("braze_api_key", "brevo_api_key")
LAST_CHECK = "connector:last_check"
PROBE_RETRY = RetryPolicy(max_attempts=3, max_total_wait_s=10.0)
RATE_LIMITS = "connector:rate_limits"
RECENT_REQUESTS = "connector:recent_requests"


class BrazeConnector:
    """The tajo-braze connector. `config` is a path, a dict or a parsed Config."""

    def __init__(
        self,
        config: str | os.PathLike[str] | Mapping[str, Any] | Config,
        *,
        env: Mapping[str, str] | None = None,
        log_stream: IO[str] | None = None,
        progress: Callable[[], Progress] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self.config = config if isinstance(config, Config) else load_config(config, env=self._env)
        self._log_stream = log_stream
        self._progress_factory = progress or NoProgress
        self._sleep = sleep
        self._clock = clock
        self._state: StateStore | None = None
        self._mapping: CompiledMapping | None = None
        self._sessions: dict[str, ApiSession] = {}
        # An injected clock (tests) drives the limiters too, so waits and windows agree with it.
        timing: dict[str, Any] = {"sleep": sleep, "cautious_start_s": 1.0}
        if clock is not time.time:
            timing["clock"] = clock
        self._limiters = {"braze": RateLimiter(BRAZE_BUCKETS, **timing), "brevo": RateLimiter(BREVO_BUCKETS, **timing)}
        self.stop = threading.Event()

    # ------------------------------------------------------------------ building blocks
    @property
    def state(self) -> StateStore:
        if self._state is None:
            self._state = StateStore(self.config.state_path)
        return self._state

    @property
    def mapping(self) -> CompiledMapping:
        if self._mapping is None:
            try:
                self._mapping = load_mapping(self.config.field_mapping, base_dir=self.config.base_dir)
            except MappingError as exc:
                hidden = self.config.unechoable()
                raise MappingError([without_values(p, hidden) for p in exc.problems]) from None
        return self._mapping

    def _vault(self) -> Vault:
        return Vault(key_file=self.config.state_path.parent / "secret.key", env=self._env)

    def _stored_secret(self, name: str) -> Secret | None:
        if not self.config.state_path.exists():
            return None
        blob = self.state.get_credential(name)
        return Secret(self._vault().decrypt(name, blob)) if blob is not None else None

    def _effective(self) -> Config:
        """The config with credentials and instance stored by `install` filling what it leaves out."""
        cfg = self.config
        if cfg.braze_api_key is None and (stored := self._stored_secret("braze_api_key")) is not None:
            cfg = replace(cfg, braze_api_key=stored)
        if cfg.brevo.api_key is None and (stored := self._stored_secret("brevo_api_key")) is not None:
            cfg = replace(cfg, brevo=replace(cfg.brevo, api_key=stored))
        return cfg

    def _secrets(self, cfg: Config) -> tuple[str, ...]:
        return tuple(s for s in cfg.secrets() if s)

    def _logger(self, cfg: Config) -> Any:
        level = "debug" if cfg.debug else cfg.log_level
        return make_logger(level=level, stream=self._log_stream or sys.stderr, secrets=self._secrets(cfg))

    def _session(self, api: str, cfg: Config, *, probe: bool = False) -> ApiSession:
        """One pooled session per API; checks get their own with a short retry budget, because a
        connection test that waits out an hourly rate-limit window helps nobody."""
        name = f"{api}:probe" if probe else api
        if name in self._sessions:
            return self._sessions[name]
        if api == "braze":
            if cfg.braze_api_key is None:
                raise _missing_key("braze", cfg.source)
            base, headers = cfg.braze_base_url, {"Authorization": f"Bearer {cfg.braze_api_key.reveal()}"}
        else:
            if cfg.brevo.api_key is None:
                raise _missing_key("brevo", cfg.source)
            base, headers = cfg.brevo.base_url, {"api-key": cfg.brevo.api_key.reveal()}
        session = ApiSession(
            api=api,  # type: ignore[arg-type]
            base_url=base,
            auth_headers=headers,
            limiter=self._limiters[api],
            logger=self._logger(cfg),
            log_bodies=cfg.log_api_calls,
            secrets=self._secrets(cfg),
            sleep=self._sleep,
            retry=PROBE_RETRY if probe else RetryPolicy(),
        )
        self._sessions[name] = session
        return session

    def _clients(self, cfg: Config) -> tuple[BrazeClient, BrevoClient]:
        return BrazeClient(self._session("braze", cfg)), BrevoClient(self._session("brevo", cfg))

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()
        if self._state is not None:
            self._state.close()
            self._state = None

    def __enter__(self) -> BrazeConnector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ install
    def install(
        self, api_key: str | None = None, instance_url: str | None = None, brevo_api_key: str | None = None
    ) -> dict[str, Any]:
        """Validate config and mapping, check both keys, create missing Brevo attributes, store credentials."""
        cfg = self.config
        if instance_url is not None:
            try:
                cfg = replace(cfg, braze_base_url=normalize_braze_url(instance_url))
            except ValueError as exc:
                raise ConfigError([Problem("--instance-url", None, "instance_url", str(exc))]) from exc
        if api_key:
            cfg = replace(cfg, braze_api_key=Secret(api_key))
        if brevo_api_key:
            cfg = replace(cfg, brevo=replace(cfg.brevo, api_key=Secret(brevo_api_key)))
        self.config = cfg
        cfg = self._effective()
        self.close()
        mapping = self.mapping
        braze, brevo = self._clients(cfg)
        # Both keys must work before anything is created or stored.
        braze.hard_bounces(start_date=_days_ago(1), end_date=_days_ago(0), limit=1)
        brevo.get_account()

        existing = {a.name.upper() for a in brevo.list_attributes()}
        created: list[str] = []
        for name, kind in mapping.brevo_attributes():
            if name.upper() in existing or name.upper() in ("EMAIL", "EXT_ID"):
                continue
            brevo.create_attribute(name, type=kind)
            created.append(name)

        known_lists = {lst.id for lst in brevo.iter_lists()}
        missing_lists = {segment: list_id for segment, list_id in cfg.lists.items() if list_id not in known_lists}

        stored: list[str] = []
        vault = self._vault()
        for name, value in (("braze_api_key", api_key), ("brevo_api_key", brevo_api_key)):
            if value:
                self.state.put_credential(name, vault.encrypt(name, value))
                stored.append(name)
        if instance_url is not None:
            self.state.set_value("braze:instance_url", cfg.braze_base_url)
        self.state.set_value(LAST_CHECK, {"at": _now_iso(), "ok": True, "by": "install"})
        return {
            "ok": not missing_lists,
            "braze_instance": cfg.braze_base_url,
            "checks": {"braze_key": "ok", "brevo_key": "ok", "mapping": f"{len(mapping.rules)} fields"},
            "attributes_created": created,
            "attributes_existing": sorted(existing & {n.upper() for n, _ in mapping.brevo_attributes()}),
            "lists_missing": missing_lists,
            "credentials_stored": stored,
            "credentials_location": (
                f"{cfg.state_path} (AES-256-GCM, key from {vault.key_source})" if stored else None
            ),
        }

    # ------------------------------------------------------------------ test
    def test(self) -> list[dict[str, Any]]:
        """Named ✓/✗ checks with cheap read-only probes; a failure carries its cause and fix."""
        checks: list[CheckResult] = []
        cfg = self._effective()
        try:
            mapping = self.mapping
            checks.append(CheckResult("Field mapping", True, f"{len(mapping.rules)} fields mapped"))
        except ConnectorError as exc:
            checks.append(CheckResult("Field mapping", False, exc.user_message, "Fix the mapping file as listed."))
            mapping = None
        checks.extend(self._braze_checks(cfg))
        checks.extend(self._brevo_checks(cfg, mapping))
        ok = all(c.ok for c in checks)
        try:
            self.state.set_value(LAST_CHECK, {"at": _now_iso(), "ok": ok, "by": "test"})
        except ConnectorError as exc:
            checks.append(CheckResult("State store", False, exc.user_message, exc.fix))
        return [asdict(c) for c in checks]

    def _braze_checks(self, cfg: Config) -> list[CheckResult]:
        names = ["Braze API connection", "Braze user export", "Braze campaign data", "Braze segment list",
                 "Braze event tracking"]
        try:
            braze = BrazeClient(self._session("braze", cfg, probe=True))
        except ConnectorError as exc:
            return [CheckResult(n, False, exc.user_message, exc.fix) for n in names]

        def segments() -> str:
            first = [s for _, s in zip(range(100), braze.iter_segments(), strict=False)]
            wanted = cfg.sync.users_segment
            if wanted and not any(wanted in (s.id, s.name) for s in first):
                try:
                    ctx_segment = users_sync.resolve_segment_id(self._probe_ctx(cfg, braze), wanted)
                except UsageError as exc:
                    raise _CheckFailed(exc.user_message, exc.fix) from exc
                return f"users segment '{wanted}' found ({ctx_segment})"
            return f"{len(first)} segment(s) visible"

        def tracking() -> str:
            braze.probe_track_permission()
            return "the key may write users, events and purchases"

        probes: list[tuple[str, Callable[[], str]]] = [
            ("Braze API connection", lambda: _ok(braze.hard_bounces(start_date=_days_ago(1), end_date=_days_ago(0), limit=1),
                                                  f"reached {cfg.braze_base_url}")),
            ("Braze user export", lambda: _ok(braze.export_ids(external_ids=["tajo-connection-check"],
                                                               fields_to_export=["external_id"]), "export by id allowed")),
            ("Braze campaign data", lambda: _ok(next(iter(braze.iter_campaigns()), None), "campaign list readable")),
            ("Braze segment list", segments),
            ("Braze event tracking", tracking),
        ]
        return _run_probes(probes, api="Braze")

    def _brevo_checks(self, cfg: Config, mapping: CompiledMapping | None) -> list[CheckResult]:
        names = ["Brevo account", "Brevo contacts", "Brevo lists", "Brevo attributes"]
        try:
            brevo = BrevoClient(self._session("brevo", cfg, probe=True))
        except ConnectorError as exc:
            return [CheckResult(n, False, exc.user_message, exc.fix) for n in names]

        def account() -> str:
            info = brevo.get_account()
            plans = ", ".join(info.plan_types) or "unknown plan"
            return f"{info.company_name or info.email or 'account'} ({plans})"

        def lists() -> str:
            known = {lst.id for lst in brevo.iter_lists()}
            missing = {segment: list_id for segment, list_id in cfg.lists.items() if list_id not in known}
            if missing:
                raise _CheckFailed(
                    f"configured list id(s) not found in Brevo: {missing}",
                    "Create the lists in Brevo (Contacts → Lists) or correct connectors.braze.lists in the config.",
                )
            return f"{len(known)} list(s); configured lists present"

        def attributes() -> str:
            existing = {a.name.upper() for a in brevo.list_attributes()}
            if mapping is None:
                return f"{len(existing)} attribute(s)"
            needed = {n.upper() for n, _ in mapping.brevo_attributes()} - {"EMAIL", "EXT_ID"}
            missing = sorted(needed - existing)
            if missing:
                raise _CheckFailed(
                    f"the mapping writes attribute(s) Brevo does not have: {', '.join(missing)}",
                    "Run `tajo connectors install braze` to create them with the declared types.",
                )
            return f"all {len(needed)} mapped attribute(s) exist"

        probes: list[tuple[str, Callable[[], str]]] = [
            ("Brevo account", account),
            ("Brevo contacts", lambda: f"{brevo.get_contacts_page(limit=1).count} contact(s)"),
            ("Brevo lists", lists),
            ("Brevo attributes", attributes),
        ]
        return _run_probes(probes, api="Brevo")

    def _probe_ctx(self, cfg: Config, braze: BrazeClient) -> SyncContext:
        brevo = BrevoClient(self._session("brevo", cfg)) if cfg.brevo.api_key else None
        return SyncContext(
            config=cfg, mapping=self.mapping, state=self.state, braze=braze, brevo=brevo,  # type: ignore[arg-type]
            braze_session=self._session("braze", cfg), logger=None, work_dir=self._work_dir(), dry_run=True,
        )

    # ------------------------------------------------------------------ sync
    def sync(
        self,
        type: str = "incremental",
        resources: Sequence[str] | None = None,
        since: str | date | None = None,
        batch_size: int | None = None,
        dry_run: bool = False,
        direction: str | None = None,
    ) -> dict[str, Any]:
        if type not in ("incremental", "full"):
            raise UsageError(f"Unknown sync type '{type}'.", fix="Use 'incremental' or 'full'.")
        direction = direction or self.config.sync.direction
        if direction not in ("braze_to_brevo", "brevo_to_braze", "both"):
            raise UsageError(f"Unknown direction '{direction}'.", fix="Use braze_to_brevo, brevo_to_braze or both.")
        if batch_size is not None and batch_size < 1:
            raise UsageError("--batch-size must be a positive number.")
        wanted = self._resources(resources)
        since_date = users_sync.parse_since(since)
        self.stop.clear()  # a stop asked of an earlier run does not stop this one
        cfg = self._effective()
        mapping = self.mapping
        braze, brevo = self._clients(cfg)
        started = time.monotonic()
        results: list[ResourceResult] = []
        with self._run_state(dry_run) as state, state.run_lock("sync"), self._signals(), fewer_collections():
            _resume_limiters(state, self._limiters)
            run_id = None if dry_run else state.start_run(
                "sync", {"type": type, "resources": wanted, "since": str(since_date or ""), "dry_run": dry_run,
                         "direction": direction}
            )
            progress = self._progress_factory()
            ctx = SyncContext(
                config=cfg, mapping=mapping, state=state, braze=braze, brevo=brevo,
                braze_session=self._session("braze", cfg), logger=self._logger(cfg), work_dir=self._work_dir(),
                run_id=run_id, full=type == "full", dry_run=dry_run, since=since_date, batch_size=batch_size,
                direction=direction, progress=progress, stop=self.stop, sleep=self._sleep, clock=self._clock,
            )
            status = "ok"
            try:
                for resource, module_name, half in self._plan(wanted, direction):
                    module = optional_module(module_name)
                    if module is None:
                        skipped = ResourceResult(resource, direction=half)
                        skipped.notes.append("not available yet in this version; skipped")
                        results.append(skipped)
                        continue
                    ctx.check_stop()
                    two_way_users = resource == "users" and half == "braze_to_brevo" and direction == "both"
                    reverse = optional_module(REVERSE_USERS_MODULE) if two_way_users else None
                    if reverse is not None:
                        due = None if dry_run else state.get_value(reverse.REVERSE_DUE)
                        if due is not None:
                            results.append(_half_done_before(half, due))
                            continue
                        # Brevo edits made since the last run must not be overwritten by this half.
                        ctx.brevo_edits = reverse.read_brevo_edits(ctx)
                    results.append(module.run(ctx))
                    if reverse is not None and not dry_run:
                        state.set_value(reverse.REVERSE_DUE, {"run_id": run_id})
                    if resource == "users" and direction == "braze_to_brevo" and cfg.sync.deletes:
                        # In two-way runs the Brevo -> Braze half does this after its own deletions.
                        deletions = optional_module(DELETIONS_MODULE)
                        if deletions is not None:
                            deletions.propagate_braze_deletions(ctx, results[-1])
            except Interrupted:
                status = "interrupted"
                raise
            except BaseException:
                status = "failed"
                raise
            finally:
                progress.close()
                summary = self._summary(type, dry_run, results, started, status)
                if not dry_run and run_id is not None:
                    state.finish_run(run_id, status if status != "ok" or not _failed(results) else "partial", summary)
                    state.set_value(RATE_LIMITS, self._rate_limits())
                    _record_recent_requests(state, run_id, self._limiters)
        return summary

    def _resources(self, resources: Sequence[str] | None) -> list[str]:
        if resources:
            unknown = [r for r in resources if r not in RESOURCES]
            if unknown:
                raise UsageError(
                    f"Unknown resource(s): {', '.join(unknown)}.", fix=f"Choose from: {', '.join(RESOURCES)}."
                )
            available = [r for r in RESOURCES if optional_module(RESOURCE_MODULES[r]) is not None]
            missing = [r for r in resources if r not in available]
            if missing:
                raise NotAvailableError(
                    f"Syncing {', '.join(missing)} is not available yet in this version.",
                    fix=f"Available now: {', '.join(available)}.",
                )
            return list(dict.fromkeys(resources))
        enabled = self.config.sync
        return [r for r in RESOURCES if getattr(enabled, r, False)]

    @staticmethod
    def _plan(wanted: Sequence[str], direction: str) -> list[tuple[str, str, str]]:
        """(resource, module, direction) in run order: Braze -> Brevo first, then Brevo -> Braze."""
        steps: list[tuple[str, str, str]] = []
        for resource in wanted:
            if resource == "users":
                if direction in ("braze_to_brevo", "both"):
                    steps.append(("users", RESOURCE_MODULES["users"], "braze_to_brevo"))
                if direction in ("brevo_to_braze", "both"):
                    steps.append(("users", REVERSE_USERS_MODULE, "brevo_to_braze"))
            else:
                steps.append((resource, RESOURCE_MODULES[resource], "braze_to_brevo"))
        return steps

    def _summary(
        self, kind: str, dry_run: bool, results: list[ResourceResult], started: float, status: str
    ) -> dict[str, Any]:
        return {
            "type": kind,
            "dry_run": dry_run,
            "status": "partial" if status == "ok" and _failed(results) else status,
            "resources": [r.as_dict() for r in results],
            "failed": sum(r.failed for r in results),
            "duration_s": round(time.monotonic() - started, 3),
            "api_calls": self._call_counts(),
        }

    def _call_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name, session in self._sessions.items():
            api = name.split(":")[0]
            for endpoint, n in session.call_counts.items():
                counts[f"{api} {endpoint}"] = counts.get(f"{api} {endpoint}", 0) + n
        return counts

    def _rate_limits(self) -> dict[str, Any]:
        return {api: limiter.snapshot() for api, limiter in self._limiters.items()}

    def _work_dir(self) -> Path:
        path = self.config.state_path.parent / "exports"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    @contextmanager
    def _run_state(self, dry_run: bool) -> Iterator[StateStore]:
        """A dry run reads state but must not write it: it gets a throwaway copy when state exists."""
        if not dry_run:
            yield self.state
            return
        with tempfile.TemporaryDirectory(prefix="tajo-dry-run-") as tmp:
            copy = Path(tmp) / "state.db"
            if self.config.state_path.exists():
                self.state.backup_to(copy)
            store = StateStore(copy)
            try:
                yield store
            finally:
                store.close()

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM ask the run to stop at the next safe point (exit code 4, resumable)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def ask_to_stop(signum: int, frame: object) -> None:
            if self.stop.is_set():
                raise KeyboardInterrupt
            self.stop.set()

        previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # ------------------------------------------------------------------ other hooks
    def context(self, *, dry_run: bool = False, run_id: int | None = None) -> SyncContext:
        """A context for work outside a sync run (webhook events, one-shot exports, retries)."""
        cfg = self._effective()
        braze, brevo = self._clients(cfg)
        return SyncContext(
            config=cfg, mapping=self.mapping, state=self.state, braze=braze, brevo=brevo,
            braze_session=self._session("braze", cfg), logger=self._logger(cfg), work_dir=self._work_dir(),
            run_id=run_id, dry_run=dry_run, direction=cfg.sync.direction, stop=self.stop, sleep=self._sleep,
            clock=self._clock,
        )

    def export_segment(
        self, segment_id: str, target_list: int | None = None, include_attributes: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """One-shot export of a Braze segment into a Brevo list (created when `target_list` is None)."""
        module = _required("tajo_braze.sync.segments", "export_segment")
        with self.state.run_lock("export_segment"):
            run_id = self.state.start_run("export_segment", {"segment_id": segment_id, "target_list": target_list})
            status = "failed"
            try:
                result: dict[str, Any] = module.export_segment(
                    self.context(run_id=run_id), segment_id, target_list=target_list,
                    include_attributes=list(include_attributes) if include_attributes else None,
                )
                status = "ok"
                return result
            finally:
                self.state.finish_run(run_id, status, {})

    def handle_event(self, source: str, event: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
        """Forward one webhook payload (single or batched) from `braze` or `brevo`, exactly once."""
        if source not in ("braze", "brevo"):
            raise UsageError(f"Unknown event source '{source}'.", fix="Use --source braze or --source brevo.")
        module = _required("tajo_braze.events", "handle_event")
        result: dict[str, Any] = module.handle_event(self.context(), source, event)
        return result

    def report(self, format: str = "html", since: str | None = None) -> str:
        """The analytics report as text (HTML, CSV or JSON)."""
        module = _required("tajo_braze.report", "the analytics report")
        text: str = module.render_report(self.state, format=format, since=since)
        return text

    def retry_dead_letters(self, resource: str | None = None) -> dict[str, Any]:
        """Try dead-lettered records again; those still refused stay, with their current reason."""
        with self.state.run_lock("dead_letters"):
            run_id = self.state.start_run("retry_dead_letters", {"resource": resource})
            summary: dict[str, Any] = {}
            try:
                summary = users_sync.retry_dead_letters(self.context(run_id=run_id))
                return summary
            finally:
                self.state.finish_run(run_id, "ok" if summary else "failed", summary)

    def status(self) -> dict[str, Any]:
        state = self.state
        last_check = state.get_value(LAST_CHECK) or {}
        last = state.last_run(kind="sync")
        ok_run = state.last_run(kind="sync", status="ok")
        return {
            "connected": bool(last_check.get("ok")) if last_check else None,
            "last_check": last_check or None,
            "last_sync": (
                {"id": last.id, "status": last.status, "started_at": last.started_at, "finished_at": last.finished_at}
                if last
                else None
            ),
            "last_successful_sync": ok_run.finished_at if ok_run else None,
            "users_count": state.count_fingerprints(users_sync.FINGERPRINTS),
            "campaigns_tracked": len(state.objects("campaign")),
            "canvases_tracked": len(state.objects("canvas")),
            "events_processed": state.count_events("forwarded"),
            "events_backlog": state.count_events("pending") + state.count_events("failed"),
            "cursors": state.cursors(),
            "rate_limits": state.get_value(RATE_LIMITS) or {},
            "dead_letters": state.count_dead_letters(),
            "catalogs": _catalog_counts(state),
        }

    def dead_letters(self, resource: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [asdict(d) for d in self.state.list_dead_letters(resource, limit=limit)]


# ---------------------------------------------------------------------- helpers
def _catalog_counts(state: StateStore) -> dict[str, int]:
    module = optional_module("tajo_braze.sync.catalogs")
    return dict(module.catalog_counts(state)) if module is not None else {}


def _required(module_name: str, what: str) -> Any:
    module = optional_module(module_name)
    if module is None:
        raise NotAvailableError(f"{what} is not available yet in this version.")
    return module


class _CheckFailed(Exception):
    def __init__(self, cause: str, fix: str) -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix


def _ok(_: object, message: str) -> str:
    return message


def _run_probes(probes: Sequence[tuple[str, Callable[[], str]]], *, api: str) -> list[CheckResult]:
    """Run probes in order; once the key is rejected the rest are not tried (they would all say 401)."""
    out: list[CheckResult] = []
    blocked: ConnectorError | None = None
    for name, probe in probes:
        if blocked is not None:
            out.append(CheckResult(name, False, f"not checked: {blocked.user_message}", blocked.fix))
            continue
        try:
            out.append(CheckResult(name, True, probe()))
        except _CheckFailed as exc:
            out.append(CheckResult(name, False, exc.cause, exc.fix))
        except (AuthError, ConnectionFailed) as exc:
            out.append(CheckResult(name, False, exc.user_message, exc.fix))
            blocked = exc
        except RateLimited as exc:
            when = f" in {exc.retry_after:.0f} s" if exc.retry_after else " later"
            out.append(CheckResult(name, False, exc.user_message, exc.fix or f"Retry{when}."))
        except (PermissionDenied, ApiError) as exc:
            out.append(CheckResult(name, False, exc.user_message, exc.fix))
    return out


def _record_recent_requests(state: StateStore, run_id: int, limiters: Mapping[str, RateLimiter]) -> None:
    """What the run's last second of requests was, for the next run's limiters (`_resume_limiters`)."""
    requests = {api: limiter.recent_requests() for api, limiter in limiters.items()}
    state.set_value(RECENT_REQUESTS, {"run_id": run_id, "at": datetime.now(UTC).timestamp(), "requests": requests})


def _resume_limiters(state: StateStore, limiters: Mapping[str, RateLimiter]) -> None:
    """Start the limiters from what the previous run sent, when it finished cleanly.

    Its recorded requests say exactly how much of each short window is still taken; without a
    record (another kind of run, an older state), the time since it ended bounds it instead.
    """
    idle = _idle_since_last_run(state)
    if idle is None:
        return  # killed or still running: the cautious start stays
    recent = state.get_value(RECENT_REQUESTS)
    last = state.last_run()
    if isinstance(recent, dict) and last is not None and recent.get("run_id") == last.id:
        elapsed = max(0.0, datetime.now(UTC).timestamp() - float(recent.get("at", 0.0)) - IDLE_MARGIN_S)
        for api, limiter in limiters.items():
            limiter.resume_after(recent.get("requests", {}).get(api, {}), elapsed)
    for limiter in limiters.values():
        limiter.trust_idle_start(idle)  # the buckets the record does not name


def _idle_since_last_run(state: StateStore) -> float | None:
    """Seconds since the last run finished cleanly (not killed): none of its calls is more recent.

    A killed run leaves its row 'running', and nothing says when it made its last call; then the
    limiters keep their cautious start (None). The margin covers the time between the run's last
    call and its row being closed, read the other way round by a clock that stepped.
    """
    last = state.last_run()
    if last is None or last.status == "running" or not last.finished_at:
        return None
    try:
        finished = datetime.fromisoformat(last.finished_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    idle = (datetime.now(UTC) - finished).total_seconds() - IDLE_MARGIN_S
    return idle if idle > 0 else None


def _half_done_before(half: str, due: Any) -> ResourceResult:
    """The users half that a stopped two-way run finished: this run resumes with the other one."""
    done = ResourceResult("users", direction=half)
    run = f"run {due['run_id']}" if isinstance(due, dict) and due.get("run_id") else "an earlier run"
    done.notes.append(
        f"done by {run}, which stopped before its Brevo -> Braze half: this run finishes that half first; "
        "Braze changes made since are read by the next run"
    )
    return done


def _failed(results: Sequence[ResourceResult]) -> bool:
    return any(r.failed for r in results)


def _missing_key(api: str, source: str) -> ConfigError:
    where = "connectors.braze.api_key" if api == "braze" else "connectors.braze.brevo.api_key"
    var = "BRAZE_API_KEY" if api == "braze" else "BREVO_API_KEY"
    return ConfigError(
        [
            Problem(
                source,
                None,
                where,
                f"no {'Braze REST API' if api == 'braze' else 'Brevo API'} key is configured",
                f"set {where}: ${{{var}}} and export {var}, or pass it to `tajo connectors install braze`",
            )
        ]
    )


def _days_ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).date().isoformat()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
