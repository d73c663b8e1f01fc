"""Export lines -> what the users sync may write: parse, skip what is unchanged, map, serialise.

The work per line is pure (plus one read of the fingerprints), so it runs either in the run's own
process or in worker processes that take chunks of raw lines and answer with plain tuples: the
run's process keeps what must be sequential (claims, the diff against state, the import writer).
Both paths run the same `LineReader`, so they give the same outcomes.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from .. import jsonbytes
from ..errors import ConnectorError, RecordRejected
from ..mapping import CompiledMapping, FieldRule
from ..models import BrazeUser, ContactPayload
from ..state import StateStore

# Outcome kinds. Outcomes are tuples, (kind, index in chunk, ...), because they cross processes.
REJECTED = 0  # (REJECTED, i, key or None for the line's own key, reason, field, detail)
SKIPPED = 1  # (SKIPPED, i): not active since `since`
UNCHANGED = 2  # (UNCHANGED, i): byte-identical to the line last written
MAPPED = 3  # (MAPPED, i, source, external_id, braze_id, raw email, raw phone, key, email, ext_id,
#             sms, blacklisted, digest, row)

Outcome = tuple[Any, ...]
Fingerprints = Callable[[list[str]], Mapping[str, str]]

LONG_LINE = "export line is longer than the line limit"


class MappingWorkerFailed(ConnectorError):
    """A worker process that maps export lines died (killed, or out of memory)."""


@dataclass(frozen=True)
class LineRules:
    """Everything the per-line work depends on; picklable, so workers are built from it."""

    rules: tuple[FieldRule, ...]
    mapping_tag: bytes
    fingerprint_namespace: str
    since: date | None = None
    check_unchanged: bool = True  # a line identical to the one last written is skipped unmapped
    state_path: str | None = None  # workers read fingerprints from here (read-only)
    connector_id: str = "braze"


# ------------------------------------------------------------------ shared with the users sync
def payload_digest(payload: ContactPayload) -> str:
    body = jsonbytes.dumps(
        [payload.email, payload.ext_id, payload.attributes, payload.email_blacklisted], sort_keys=True
    )
    return hashlib.blake2b(body, digest_size=10).hexdigest()


def import_row(payload: ContactPayload) -> dict[str, Any]:
    attributes = dict(payload.attributes)
    if payload.ext_id is not None:
        attributes["EXT_ID"] = payload.ext_id
    row: dict[str, Any] = {"attributes": attributes}
    if payload.email:
        row["email"] = payload.email
    return row


def user_from_line(raw: bytes) -> BrazeUser:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RecordRejected(f"export line is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RecordRejected(f"export line is a JSON {type(data).__name__}, not an object")

    def text(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) and value else None

    return BrazeUser(text("external_id"), text("braze_id"), text("email"), text("phone"), data)


def identity_of(user: BrazeUser) -> dict[str, Any]:
    return {
        "external_id": user.external_id,
        "braze_id": user.braze_id,
        "email": user.email,
        "phone": user.phone,
    }


def _user_activity_dates(user: BrazeUser) -> Iterator[str]:
    created = user.data.get("created_at")
    if isinstance(created, str):
        yield created
    for group in ("apps", "custom_events", "purchases"):
        items = user.data.get(group)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict):
                    for name in ("last_used", "last"):
                        value = item.get(name)
                        if isinstance(value, str):
                            yield value


def active_since(user: BrazeUser, since: date) -> bool:
    floor = since.isoformat()
    return any(value[:10] >= floor for value in _user_activity_dates(user))


# ------------------------------------------------------------------ the per-line work
class LineReader:
    """Turns raw export lines into outcomes, in order, one per line."""

    def __init__(self, rules: LineRules, mapping: CompiledMapping, fingerprints: Fingerprints | None) -> None:
        self.rules = rules
        self.mapping = mapping
        self.fingerprints = fingerprints if rules.check_unchanged else None

    def read(self, raws: Sequence[bytes]) -> list[Outcome]:
        rules = self.rules
        outcomes: list[Outcome | None] = [None] * len(raws)
        parsed: list[tuple[int, str, BrazeUser]] = []
        for i, raw in enumerate(raws):
            if not raw:
                outcomes[i] = (REJECTED, i, None, LONG_LINE, None, {})
                continue
            try:
                user = user_from_line(raw)
            except RecordRejected as exc:
                outcomes[i] = (REJECTED, i, None, exc.reason, None, {"raw": raw[:500].decode("utf-8", "replace")})
                continue
            if rules.since is not None and not active_since(user, rules.since):
                outcomes[i] = (SKIPPED, i)
                continue
            source = hashlib.blake2b(raw.strip() + rules.mapping_tag, digest_size=10).hexdigest()
            parsed.append((i, source, user))
        known = self._known(parsed)
        mapping = self.mapping
        # orjson leaves each output in a 4 KiB block: rows are gathered in one buffer and cut out
        # at their own size, or a chunk's rows would hold ten times their bytes.
        rows = bytearray()
        spans: list[tuple[int, int, int]] = []
        for i, source, user in parsed:
            if known:
                record = known.get(f"ext:{user.external_id}") if user.external_id else None
                if record is not None and record.endswith("\t" + source):
                    outcomes[i] = (UNCHANGED, i)
                    continue
            out = mapping.to_brevo(user)
            if not isinstance(out, ContactPayload):
                outcomes[i] = (REJECTED, i, out.key, out.reason, out.field, identity_of(user))
                continue
            sms = out.attributes.get("SMS")  # the attribute Brevo keeps unique
            start = len(rows)
            rows += jsonbytes.dumps(import_row(out))
            spans.append((i, start, len(rows)))
            outcomes[i] = (
                MAPPED, i, source, user.external_id, user.braze_id, user.email, user.phone,
                out.key, out.email, out.ext_id, sms if isinstance(sms, str) else None,
                out.email_blacklisted, payload_digest(out),
            )  # fmt: skip
        if spans:
            joined = bytes(rows)
            for i, start, end in spans:
                outcomes[i] = (*outcomes[i], joined[start:end])  # type: ignore[misc]
        return [o for o in outcomes if o is not None]

    def _known(self, parsed: Sequence[tuple[int, str, BrazeUser]]) -> Mapping[str, str]:
        if self.fingerprints is None:
            return {}
        quick = [f"ext:{u.external_id}" for _, _, u in parsed if u.external_id]
        return self.fingerprints(quick) if quick else {}


def local_reader(rules: LineRules, mapping: CompiledMapping, state: StateStore | None) -> LineReader:
    lookup = None
    if state is not None:
        namespace = rules.fingerprint_namespace

        def lookup(keys: list[str]) -> Mapping[str, str]:
            return state.get_fingerprints(namespace, keys)

    return LineReader(rules, mapping, lookup)


# ------------------------------------------------------------------ worker processes
_worker: LineReader | None = None


def _watch_parent(parent: int) -> None:
    # A worker blocks on its task queue, which it also holds open itself: if the run's process is
    # killed (SIGKILL, OOM), nothing would ever wake it. It leaves when it is orphaned.
    stop = threading.Event()
    while not stop.wait(0.5):
        if os.getppid() != parent:
            os._exit(0)


def _start_worker(rules: LineRules, parent: int) -> None:
    global _worker  # noqa: PLW0603 - one reader per worker process, built once by the pool
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()
    mapping = CompiledMapping(rules.rules)
    state = None
    if rules.check_unchanged and rules.state_path:
        state = StateStore(rules.state_path, readonly=True, connector_id=rules.connector_id)
    _worker = local_reader(rules, mapping, state)


def _read_in_worker(raws: list[bytes]) -> list[Outcome]:
    assert _worker is not None, "worker not initialised"
    return _worker.read(raws)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class WorkerPool:
    """Worker processes reading chunks in order, a few chunks ahead of the caller."""

    def __init__(self, rules: LineRules, workers: int) -> None:
        # spawn, not fork: the run's process has threads (the import sender, HTTP pools) whose
        # locks a forked child could inherit held.
        context = multiprocessing.get_context("spawn")
        self.workers = workers
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(rules, os.getpid())
        )

    def read(self, chunks: Iterable[list[bytes]], *, ahead: int | None = None) -> Iterator[list[Outcome]]:
        """Outcomes of each chunk, in the chunks' order."""
        depth = ahead if ahead is not None else 2 * self.workers
        waiting: deque[Future[list[Outcome]]] = deque()
        source = iter(chunks)
        try:
            for chunk in source:
                waiting.append(self._pool.submit(_read_in_worker, chunk))
                if len(waiting) >= depth:
                    yield self._result(waiting.popleft())
            while waiting:
                yield self._result(waiting.popleft())
        finally:
            for future in waiting:
                future.cancel()

    @staticmethod
    def _result(future: Future[list[Outcome]]) -> list[Outcome]:
        try:
            return future.result()
        except BrokenProcessPool:
            raise MappingWorkerFailed(
                "A worker process mapping export lines stopped unexpectedly.",
                fix="Check the machine's memory (the system log names a killed process); "
                "set connectors.braze.sync.map_workers: 0 to map in the run's own process; then retry "
                "(the run resumes at its checkpoint).",
            ) from None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
