"""The connector's memory: one SQLite file beside the data flow, and the only module that touches SQLite.

It holds cursors, fingerprints of what was last written to each side, per-field values for
two-way diffs, segment membership, run history, dead letters, webhook event ids, the purchase
ledger, analytics series and encrypted credentials (ciphertext only; see ``vault.py``).

The file is opened in WAL mode with mode 0600. Every sqlite error surfaces as ``StateError``
(with the path and a fix), never as a raw ``sqlite3`` exception.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import orjson

from tajo_braze.batching import chunked

from .errors import RunLocked, StateError, UsageError

# ---------------------------------------------------------------- schema
# Each entry is one migration, applied in order inside one transaction. Never edit a released
# entry: append a new one. SCHEMA_VERSION is the number of migrations this code knows.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE cursors (
        resource   TEXT NOT NULL,
        direction  TEXT NOT NULL,
        value      TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (resource, direction)
    ) WITHOUT ROWID;

    -- Keyed tables refer to their namespace by a small integer: rows stay short, so more fit a
    -- page and a batch of upserts dirties fewer pages (fingerprint tables hold millions of rows).
    CREATE TABLE namespaces (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );

    CREATE TABLE fingerprints (
        namespace_id INTEGER NOT NULL,
        key          TEXT NOT NULL,
        fingerprint  TEXT NOT NULL,
        PRIMARY KEY (namespace_id, key)
    ) WITHOUT ROWID;

    CREATE TABLE field_values (
        namespace_id INTEGER NOT NULL,
        key          TEXT NOT NULL,
        value        TEXT NOT NULL,
        PRIMARY KEY (namespace_id, key)
    ) WITHOUT ROWID;

    CREATE TABLE members (
        namespace_id INTEGER NOT NULL,
        key          TEXT NOT NULL,
        PRIMARY KEY (namespace_id, key)
    ) WITHOUT ROWID;

    CREATE TABLE kv (
        key        TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        kind        TEXT NOT NULL,
        status      TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        params      TEXT NOT NULL,
        summary     TEXT NOT NULL DEFAULT '{}',
        pid         INTEGER
    );
    CREATE INDEX runs_by_kind_status ON runs (kind, status, id);
    CREATE INDEX runs_by_status ON runs (status, id);

    CREATE TABLE dead_letters (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        resource   TEXT NOT NULL,
        key        TEXT NOT NULL,
        reason     TEXT NOT NULL,
        record     TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen  TEXT NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 1,
        run_id     INTEGER REFERENCES runs (id) ON DELETE SET NULL,
        UNIQUE (resource, key)
    );

    CREATE TABLE events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        source      TEXT NOT NULL,
        event_id    TEXT NOT NULL,
        payload     TEXT NOT NULL,
        status      TEXT NOT NULL DEFAULT 'pending',
        attempts    INTEGER NOT NULL DEFAULT 0,
        received_at TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        UNIQUE (source, event_id)
    );
    CREATE INDEX events_by_status ON events (status, id);

    CREATE TABLE purchases (
        purchase_id TEXT PRIMARY KEY,
        status      TEXT NOT NULL,
        claimed_at  TEXT NOT NULL,
        sent_at     TEXT
    ) WITHOUT ROWID;
    CREATE INDEX purchases_by_status ON purchases (status, claimed_at);

    CREATE TABLE metrics (
        kind      TEXT NOT NULL,
        object_id TEXT NOT NULL,
        day       TEXT NOT NULL,
        channel   TEXT NOT NULL,
        variant   TEXT NOT NULL,
        step      TEXT NOT NULL,
        metric    TEXT NOT NULL,
        value     REAL NOT NULL,
        PRIMARY KEY (kind, object_id, day, channel, variant, step, metric)
    ) WITHOUT ROWID;
    CREATE INDEX metrics_by_day ON metrics (day);

    CREATE TABLE objects (
        kind       TEXT NOT NULL,
        object_id  TEXT NOT NULL,
        name       TEXT NOT NULL,
        meta       TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (kind, object_id)
    ) WITHOUT ROWID;

    CREATE TABLE credentials (
        name       TEXT PRIMARY KEY,
        ciphertext BLOB NOT NULL,
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION: int = len(MIGRATIONS)

RUN_STATUSES = frozenset({"ok", "partial", "failed", "interrupted"})
# failed = not applied, retried; unknown = a non-idempotent send may or may not have landed (never
# resent automatically); rejected = refused by the vendor or unusable (dead-lettered, not retried).
EVENT_STATUSES = frozenset({"forwarded", "failed", "ignored", "unknown", "rejected"})
METRIC_KINDS = frozenset({"campaign", "canvas", "segment"})

RESET_FIX = "delete it to start over; cursors and fingerprints will be rebuilt by a full sync"

LOOKUP_CHUNK = 500  # keys per IN (…) statement: well under SQLite's oldest 999-variable limit
WRITE_CHUNK = 50_000  # rows sorted then written per executemany: sorted keys touch fewer b-tree pages
PAGE_SIZE = 5_000  # rows per page when streaming a namespace
WAL_CHECKPOINT_PAGES = 10_000  # ~40 MiB: a 10k-row fingerprint batch dirties thousands of pages
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # shrink the WAL back after an unusually large transaction
BUSY_TIMEOUT_MS = 15_000  # a concurrent writer (webhook receiver) holds the write lock for milliseconds
# Point lookups in batches of a few thousand keys: the file's pages stay in the OS cache anyway.
READER_CACHE_KIB = 4_096
CACHE_KIB = 16_384  # page-cache ceiling per connection: 1M fingerprint upserts thrash the 2 MiB default; more costs RSS

# Table names are interpolated into SQL, so they only ever come from this allow-list.
_TABLE_BY_KIND: dict[str, str] = {
    "fingerprints": "fingerprints",
    "field_values": "field_values",
    "members": "members",
}
KeyedTable = Literal["fingerprints", "field_values", "members"]

# SQLite primary result codes (the low byte of sqlite_errorcode) that need their own message.
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 10, 11, 13, 14, 26


# ---------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    kind: str
    status: str  # running | ok | partial | failed | interrupted
    started_at: str
    finished_at: str | None
    params: dict[str, Any]
    summary: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    resource: str
    key: str
    reason: str
    record: dict[str, Any]
    first_seen: str
    last_seen: str
    attempts: int
    run_id: int | None


@dataclass(frozen=True, slots=True)
class MetricRow:
    kind: str  # campaign | canvas | segment
    object_id: str
    day: str  # YYYY-MM-DD
    channel: str  # "" when the series has no channel breakdown
    variant: str  # "" when not applicable
    step: str  # "" when not applicable
    metric: str
    value: float


@dataclass(frozen=True, slots=True)
class PendingEvent:
    id: int
    source: str
    event_id: str
    payload: dict[str, Any]
    attempts: int
    status: str  # pending | failed


# ---------------------------------------------------------------- pure helpers
def utc_iso(moment: datetime) -> str:
    """A UTC ISO-8601 string with milliseconds, e.g. ``2024-05-01T10:00:00.000+00:00``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


# orjson writes the same compact, key-sorted JSON several times faster (a first Brevo -> Braze read
# stores a memory per contact). The standard encoder, built once, takes what orjson refuses:
# integers beyond 64 bits, and NaN or infinities (which orjson would silently store as null).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# Types orjson would write on its own (dates, dataclasses, str and int subclasses) go to the
# standard encoder, which refuses or writes them as it always did.
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _dumps(value: Any) -> str:
    try:
        text = orjson.dumps(value, option=_ORJSON_OPTIONS).decode("utf-8")
    except TypeError:
        text = ""
    if text and "null" not in text:
        return text
    # Either orjson refused the value, or a null may stand for a NaN it could not write.
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        # The message names the type only: values may hold personal data.
        raise UsageError(
            "A value given to the state store cannot be saved as JSON", detail=str(exc)
        ) from None


def _loads(text: str) -> Any:
    # Not orjson: it reads integers beyond 64 bits as floats.
    return json.loads(text)


def _first(row: tuple[Any, ...]) -> Any:
    return row[0]


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


def split_statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (trigger bodies and quoted ';' stay whole)."""
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip(" \t\r\n;"):
        statements.append(buffer.strip())
    return statements


def schema_version(connection: sqlite3.Connection) -> int:
    """The schema version recorded in the file; 0 for a file with no tables at all."""
    has_table = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if has_table:
        row = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)
    other = connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    if other[0]:
        raise StateError(
            "This SQLite file is not a tajo-braze state file (it has tables but no schema version)",
            fix="point state_path to another file",
        )
    return 0


def migrate(connection: sqlite3.Connection, migrations: Sequence[str], *, path: str, now: str) -> int:
    """Bring the file up to ``len(migrations)`` in one transaction; returns the version reached.

    The version is read again after the write lock is taken, so two processes opening a fresh
    file at the same time migrate it once. ``connection`` must be in autocommit mode.
    """
    target = len(migrations)
    found = schema_version(connection)
    if found > target:
        raise _newer_schema(path, found, target)
    if found == target:
        return found
    connection.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(connection)
        if found > target:
            raise _newer_schema(path, found, target)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        for version in range(found + 1, target + 1):
            for statement in split_statements(migrations[version - 1]):
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, now)
            )
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return target


def _newer_schema(path: str, found: int, known: int) -> StateError:
    return StateError(
        f"The state file {path} was written by a newer tajo-braze (schema version {found}; "
        f"this version understands up to {known})",
        fix="upgrade tajo-braze, or point state_path to another file",
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


# ---------------------------------------------------------------- the store
class StateStore:
    """All persistent state of one connector instance. Thread-safe; one connection per store."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        connector_id: str = "braze",
        readonly: bool = False,
        clock: Callable[[], datetime] | None = None,
        cache_kib: int = CACHE_KIB,
    ) -> None:
        self._path = Path(path)
        self._cache_kib = cache_kib
        self._lock_path = Path(f"{self._path}.lock")
        self._connector_id = connector_id
        self._readonly = readonly
        self._clock = clock or (lambda: datetime.now(UTC))
        # Reentrant: a transaction() holds it while the methods it groups take it again.
        self._lock = threading.RLock()
        self._depth = 0
        # Set when a write joined to an open transaction failed: that transaction may only roll back.
        self._doomed = False
        # namespace name -> id; forgotten on every rollback, which may have undone a creation.
        self._namespace_ids: dict[str, int] = {}
        self._connection: sqlite3.Connection | None = None
        self._connection = self._open()

    def __repr__(self) -> str:
        mode = "readonly" if self._readonly else "readwrite"
        return f"StateStore({str(self._path)!r}, connector_id={self._connector_id!r}, {mode})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def connector_id(self) -> str:
        return self._connector_id

    def reader(self) -> StateStore:
        """A read-only store on the same file with its own connection: its reads never wait for a
        transaction another thread holds open here, and see what was last committed."""
        return StateStore(
            self._path, readonly=True, connector_id=self._connector_id, clock=self._clock, cache_kib=READER_CACHE_KIB
        )

    # ------------------------------------------------------------ open / close
    def _open(self) -> sqlite3.Connection:
        if self._readonly:
            if not self._path.exists():
                raise StateError(
                    f"The state file {self._path} does not exist yet",
                    fix="run `tajo connectors install braze` or a first sync to create it",
                )
            uri = f"file:{quote(str(self._path.resolve()))}?mode=ro"
            target, use_uri = uri, True
        else:
            self._prepare_file()
            target, use_uri = str(self._path), False
        connection: sqlite3.Connection | None = None
        try:
            with self._sqlite_errors("opening"):
                connection = sqlite3.connect(
                    target,
                    uri=use_uri,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                )
                connection.execute("PRAGMA foreign_keys = ON")
                connection.execute(f"PRAGMA cache_size = -{int(self._cache_kib)}")
                connection.execute("PRAGMA temp_store = MEMORY")
                if not self._readonly:
                    # Both persist in WAL mode; the first statement also proves the file is SQLite.
                    connection.execute("PRAGMA journal_mode = WAL").fetchone()
                    connection.execute("PRAGMA synchronous = NORMAL")
                    connection.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
                    connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
                    migrate(connection, MIGRATIONS, path=str(self._path), now=self._now())
                    self._claim_or_check_owner(connection)
                else:
                    found = schema_version(connection)
                    if found > SCHEMA_VERSION:
                        raise _newer_schema(str(self._path), found, SCHEMA_VERSION)
                    if found < SCHEMA_VERSION:
                        state = "is empty" if found == 0 else "needs an upgrade before it can be read"
                        raise StateError(
                            f"The state file {self._path} {state}",
                            fix="run `tajo connectors install braze` or a sync once (it prepares the file), then retry",
                        )
                    self._claim_or_check_owner(connection)
        except BaseException:
            if connection is not None:
                connection.close()
            raise
        assert connection is not None
        return connection

    def _prepare_file(self) -> None:
        """Create the directory (0700) and the file (0600) before SQLite does, so it is never world-readable."""
        try:
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            for suffix in ("", "-wal", "-shm"):
                sibling = Path(f"{self._path}{suffix}")
                if sibling.exists():
                    os.chmod(sibling, 0o600)
        except OSError as exc:
            raise StateError(
                f"The state file {self._path} cannot be created or protected: {exc.strerror}",
                fix="check that its directory is writable by this user, or set state_path elsewhere",
            ) from None

    def _claim_or_check_owner(self, connection: sqlite3.Connection) -> None:
        """A state file belongs to one connector instance: mixing two would mix their cursors."""
        row = connection.execute("SELECT value FROM meta WHERE key = 'connector_id'").fetchone()
        if row is None:
            if self._readonly:
                return
            connection.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('connector_id', ?), ('created_at', ?)",
                (self._connector_id, self._now()),
            )
            row = connection.execute("SELECT value FROM meta WHERE key = 'connector_id'").fetchone()
        if row[0] != self._connector_id:
            raise StateError(
                f"The state file {self._path} belongs to connector {row[0]!r}, not {self._connector_id!r}",
                fix="give each connector its own state_path",
            )

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is None:
                return
            with self._sqlite_errors("closing"):
                if not self._readonly:
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("PRAGMA optimize")
                connection.close()

    def backup_to(self, destination: str | os.PathLike[str]) -> None:
        """Write a consistent copy of the whole state to ``destination`` (0600), e.g. for a dry run."""
        target_path = Path(destination)
        try:
            target_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(target_path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(target_path, 0o600)
        except OSError as exc:
            raise StateError(
                f"A copy of the state cannot be written to {target_path}: {exc.strerror}",
                fix="check that the directory is writable by this user",
            ) from None
        with self._reading("copying the state") as connection:
            target = sqlite3.connect(target_path)
            try:
                connection.backup(target)
            finally:
                target.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing
    def _now(self) -> str:
        return utc_iso(self._clock())

    def _translate(self, exc: sqlite3.Error, action: str) -> StateError:
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        where = f"The state file {self._path}"
        detail = f"{action}: {type(exc).__name__}: {exc}"
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return StateError(
                f"{where} is damaged or is not a tajo-braze state file", detail=detail, fix=RESET_FIX
            )
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return StateError(
                f"{where} stayed locked by another process for {BUSY_TIMEOUT_MS // 1000}s while {action}",
                detail=detail,
                fix="retry when the other tajo-braze process has finished",
            )
        if code in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN):
            return StateError(
                f"{where} cannot be opened for {action}",
                detail=detail,
                fix="check that the file and its directory are writable by this user",
            )
        if code == _SQLITE_FULL:
            return StateError(
                f"{where} cannot grow: the disk is full", detail=detail, fix="free some disk space"
            )
        if code == _SQLITE_IOERR:
            return StateError(
                f"{where} could not be read or written ({action})", detail=detail, fix=RESET_FIX
            )
        return StateError(f"{where} failed while {action}: {exc}", detail=detail, fix=RESET_FIX)

    @contextlib.contextmanager
    def _sqlite_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._translate(exc, action) from exc

    def _require_open(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StateError(f"The state store {self._path} is closed", fix="open a new StateStore")
        return self._connection

    @contextlib.contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._sqlite_errors(action):
            yield self._require_open()

    @contextlib.contextmanager
    def _writing(self, action: str) -> Iterator[sqlite3.Connection]:
        # Errors of the body are named by ``action`` before transaction() rolls back.
        with self._lock:
            if self._depth == 0:
                with self.transaction(), self._sqlite_errors(action):
                    yield self._require_open()
                return
            # Inside an open transaction the write joins it, without a SAVEPOINT of its own: SQLite
            # keeps the original of every page written under a savepoint in a sub-journal, in memory
            # with temp_store = MEMORY. A commit of one 8 MB import's fingerprints and claims held
            # ~37 MB there. If the write fails, the whole transaction can only roll back.
            try:
                with self._sqlite_errors(action):
                    yield self._require_open()
            except BaseException:
                self._doom()
                raise

    def _doom(self) -> None:
        self._doomed = True
        connection = self._require_open()
        if not connection.in_transaction:
            # SQLite rolled back by itself (disk full, I/O error): what the block writes next must
            # still wait for its end, which rolls it back, rather than be committed one by one.
            with contextlib.suppress(sqlite3.Error):
                connection.execute("BEGIN IMMEDIATE")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically. Nests: inner blocks are SAVEPOINTs that roll back on their own.

        A write method that fails inside a transaction fails all of it (see `_writing`).
        """
        with self._lock, self._sqlite_errors("writing"):
            connection = self._require_open()
            if self._readonly:
                raise StateError(
                    f"The state file {self._path} was opened read-only",
                    fix="open it without readonly=True to write",
                )
            depth = self._depth
            savepoint = f"nested_{depth}"
            connection.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {savepoint}")
            self._depth = depth + 1
            try:
                yield
            except BaseException:
                self._depth = depth
                self._undo(connection, depth, savepoint)
                raise
            self._depth = depth
            if depth == 0 and self._doomed:
                self._undo(connection, depth, savepoint)
                raise StateError(
                    f"A write to {self._path} failed inside a transaction, so none of its writes were saved",
                    fix="let that error stop the transaction instead of catching it inside it",
                )
            try:
                connection.execute("COMMIT" if depth == 0 else f"RELEASE {savepoint}")
            except BaseException:
                self._undo(connection, depth, savepoint)
                raise

    def _undo(self, connection: sqlite3.Connection, depth: int, savepoint: str) -> None:
        self._namespace_ids.clear()
        if depth == 0:
            self._doomed = False
        # SQLite may already have rolled the whole transaction back (disk full, I/O error).
        with contextlib.suppress(sqlite3.Error):
            if depth == 0:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
            elif connection.in_transaction:
                connection.execute(f"ROLLBACK TO {savepoint}")
                connection.execute(f"RELEASE {savepoint}")

    # ------------------------------------------------------------ run lock
    @contextlib.contextmanager
    def run_lock(self, owner: str = "") -> Iterator[None]:
        """Hold the exclusive run lock of this state file, or raise RunLocked at once.

        ``flock`` belongs to the open file, so the kernel releases it when the holder dies,
        even by SIGKILL: there is never a stale lock to clean up by hand.
        """
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(
                f"The run lock {self._lock_path} cannot be created: {exc.strerror}",
                fix="check that the state directory is writable by this user",
            ) from None
        try:
            with contextlib.suppress(OSError):  # not ours to chmod: the lock still works
                os.fchmod(fd, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise StateError(
                        f"The run lock {self._lock_path} cannot be taken: {exc.strerror}",
                        fix="check that the state directory is on a local file system",
                    ) from None
                raise self._locked_error(fd) from None
            holder = {
                "pid": os.getpid(),
                "started_at": self._now(),
                "owner": owner,
                "connector": self._connector_id,
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder, sort_keys=True).encode("utf-8"), 0)
            try:
                if not self._readonly:
                    self._close_abandoned_runs()
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _locked_error(self, fd: int) -> RunLocked:
        # The holder writes its details just after locking: they may be missing for an instant.
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        except (OSError, ValueError):
            holder = {}
        if not isinstance(holder, dict):
            holder = {}
        pid = holder.get("pid", "unknown")
        started = holder.get("started_at", "unknown")
        doing = f", {holder['owner']}" if holder.get("owner") else ""
        return RunLocked(
            f"Another tajo-braze run is already using {self._path} (pid {pid}{doing}, started {started})",
            fix="wait for it to finish, or stop it; a lock left by a killed run is released automatically",
        )

    def _close_abandoned_runs(self) -> None:
        """Runs left 'running' by a process that died are closed as interrupted (we hold the lock now)."""
        with self._writing("closing abandoned runs") as connection:
            rows = connection.execute("SELECT id, pid FROM runs WHERE status = 'running'").fetchall()
            now = self._now()
            connection.executemany(
                "UPDATE runs SET status = 'interrupted', finished_at = ? WHERE id = ?",
                [(now, run_id) for run_id, pid in rows if pid is None or not _pid_alive(int(pid))],
            )

    # ------------------------------------------------------------ cursors
    def get_cursor(self, resource: str, direction: str) -> dict[str, Any] | None:
        with self._reading("reading a cursor") as connection:
            row = connection.execute(
                "SELECT value FROM cursors WHERE resource = ? AND direction = ?", (resource, direction)
            ).fetchone()
        return None if row is None else dict(_loads(row[0]))

    def set_cursor(self, resource: str, direction: str, value: Mapping[str, Any]) -> None:
        text = _dumps(dict(value))
        with self._writing("saving a cursor") as connection:
            connection.execute(
                "INSERT INTO cursors (resource, direction, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (resource, direction) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (resource, direction, text, self._now()),
            )

    def delete_cursor(self, resource: str, direction: str) -> None:
        with self._writing("deleting a cursor") as connection:
            connection.execute(
                "DELETE FROM cursors WHERE resource = ? AND direction = ?", (resource, direction)
            )

    def cursors(self) -> dict[str, dict[str, Any]]:
        """Every cursor as ``"resource/direction" -> value`` (for status())."""
        with self._reading("reading cursors") as connection:
            rows = connection.execute(
                "SELECT resource, direction, value FROM cursors ORDER BY resource, direction"
            )
            return {f"{resource}/{direction}": dict(_loads(value)) for resource, direction, value in rows}

    # ------------------------------------------------------------ keyed namespaces (shared plumbing)
    def _namespace_id(self, connection: sqlite3.Connection, namespace: str, *, create: bool) -> int | None:
        """The id of a namespace; created (inside the caller's transaction) when ``create``."""
        known = self._namespace_ids.get(namespace)
        if known is not None:
            return known
        row = connection.execute("SELECT id FROM namespaces WHERE name = ?", (namespace,)).fetchone()
        if row is None:
            if not create:
                return None
            created = connection.execute("INSERT INTO namespaces (name) VALUES (?)", (namespace,)).lastrowid
            assert created is not None
            row = (created,)
        self._namespace_ids[namespace] = int(row[0])
        return int(row[0])

    def _lookup(self, table: KeyedTable, column: str, namespace: str, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._reading(f"reading {table}") as connection:
            namespace_id = self._namespace_id(connection, namespace, create=False)
            if namespace_id is None:
                return found
            for start in range(0, len(keys), LOOKUP_CHUNK):
                chunk = keys[start : start + LOOKUP_CHUNK]
                sql = (
                    f"SELECT key, {column} FROM {_TABLE_BY_KIND[table]} "  # noqa: S608 - names are constants
                    f"WHERE namespace_id = ? AND key IN ({_placeholders(len(chunk))})"
                )
                found.update(connection.execute(sql, (namespace_id, *chunk)).fetchall())
        return found

    def _upsert_keyed(
        self, table: KeyedTable, sql: str, namespace: str, rows: Iterable[tuple[Any, ...]]
    ) -> int:
        """Run ``sql`` (``namespace_id`` first) for every row, in sorted chunks, in one transaction."""
        written = 0
        with self._writing(f"saving {table}") as connection:
            namespace_id = self._namespace_id(connection, namespace, create=True)
            for chunk in chunked(rows, WRITE_CHUNK):
                chunk.sort(key=_first)
                written += connection.executemany(sql, ((namespace_id, *row) for row in chunk)).rowcount
        return written

    def _delete_keys(self, table: KeyedTable, namespace: str, keys: Iterable[str]) -> int:
        sql = f"DELETE FROM {_TABLE_BY_KIND[table]} WHERE namespace_id = ? AND key = ?"  # noqa: S608 - constant
        deleted = 0
        with self._writing(f"deleting {table}") as connection:
            namespace_id = self._namespace_id(connection, namespace, create=False)
            if namespace_id is None:
                return 0
            for chunk in chunked(keys, WRITE_CHUNK):
                deleted += connection.executemany(sql, ((namespace_id, key) for key in chunk)).rowcount
        return deleted

    def _iter_keys(self, table: KeyedTable, namespace: str) -> Iterator[str]:
        return (key for key, _ in self._iter_rows(table, namespace, "NULL"))

    def _iter_rows(self, table: KeyedTable, namespace: str, column: str) -> Iterator[tuple[str, Any]]:
        # Keyset pages, each read under the lock and none held open across a yield: memory stays
        # flat, other threads are not starved, and the caller may write to the namespace meanwhile.
        name = _TABLE_BY_KIND[table]
        first = f"SELECT key, {column} FROM {name} WHERE namespace_id = ? ORDER BY key LIMIT ?"  # noqa: S608 - constant
        after = f"SELECT key, {column} FROM {name} WHERE namespace_id = ? AND key > ? ORDER BY key LIMIT ?"  # noqa: S608
        with self._reading(f"reading {table}") as connection:
            namespace_id = self._namespace_id(connection, namespace, create=False)
        if namespace_id is None:
            return
        last: str | None = None
        while True:
            with self._reading(f"reading {table}") as connection:
                if last is None:
                    rows = connection.execute(first, (namespace_id, PAGE_SIZE)).fetchall()
                else:
                    rows = connection.execute(after, (namespace_id, last, PAGE_SIZE)).fetchall()
            yield from rows
            if len(rows) < PAGE_SIZE:
                return
            last = rows[-1][0]

    def _count(self, table: KeyedTable, namespace: str) -> int:
        sql = f"SELECT COUNT(*) FROM {_TABLE_BY_KIND[table]} WHERE namespace_id = ?"  # noqa: S608 - constant
        with self._reading(f"counting {table}") as connection:
            namespace_id = self._namespace_id(connection, namespace, create=False)
            if namespace_id is None:
                return 0
            return int(connection.execute(sql, (namespace_id,)).fetchone()[0])

    # ------------------------------------------------------------ fingerprints
    def get_fingerprints(self, namespace: str, keys: Sequence[str]) -> dict[str, str]:
        """Stored fingerprints of those ``keys`` that have one (missing keys are absent)."""
        return self._lookup("fingerprints", "fingerprint", namespace, keys)

    def put_fingerprints(self, namespace: str, items: Iterable[tuple[str, str]]) -> int:
        """Upsert ``(key, fingerprint)`` pairs in one transaction; returns how many were written."""
        return self._upsert_keyed(
            "fingerprints",
            "INSERT INTO fingerprints (namespace_id, key, fingerprint) VALUES (?, ?, ?) "
            "ON CONFLICT (namespace_id, key) DO UPDATE SET fingerprint = excluded.fingerprint",
            namespace,
            items,
        )

    def delete_fingerprints(self, namespace: str, keys: Iterable[str]) -> int:
        return self._delete_keys("fingerprints", namespace, keys)

    def iter_fingerprint_keys(self, namespace: str) -> Iterator[str]:
        """Every key of the namespace in key order, streamed page by page."""
        return self._iter_keys("fingerprints", namespace)

    def iter_fingerprints(self, namespace: str) -> Iterator[tuple[str, str]]:
        """Every (key, fingerprint) of the namespace in key order, streamed page by page."""
        return self._iter_rows("fingerprints", namespace, "fingerprint")

    def count_fingerprints(self, namespace: str) -> int:
        return self._count("fingerprints", namespace)

    # ------------------------------------------------------------ per-field values
    def get_field_values(self, namespace: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        found = self._lookup("field_values", "value", namespace, keys)
        return {key: dict(_loads(text)) for key, text in found.items()}

    def put_field_values(self, namespace: str, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Replace the stored field dict of each key."""
        self._upsert_keyed(
            "field_values",
            "INSERT INTO field_values (namespace_id, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (namespace_id, key) DO UPDATE SET value = excluded.value",
            namespace,
            ((key, _dumps(dict(values))) for key, values in items),
        )

    # ------------------------------------------------------------ set membership
    def add_members(self, namespace: str, keys: Iterable[str]) -> int:
        """Add keys to the set; returns how many were not members before."""
        return self._upsert_keyed(
            "members",
            "INSERT OR IGNORE INTO members (namespace_id, key) VALUES (?, ?)",
            namespace,
            ((key,) for key in keys),
        )

    def remove_members(self, namespace: str, keys: Iterable[str]) -> int:
        """Remove keys from the set; returns how many were members."""
        return self._delete_keys("members", namespace, keys)

    def iter_members(self, namespace: str) -> Iterator[str]:
        return self._iter_keys("members", namespace)

    def count_members(self, namespace: str) -> int:
        return self._count("members", namespace)

    # ------------------------------------------------------------ one-time setup records
    def get_value(self, key: str) -> Any | None:
        with self._reading("reading a setup record") as connection:
            row = connection.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else _loads(row[0])

    def set_value(self, key: str, value: Any) -> None:
        text = _dumps(value)
        with self._writing("saving a setup record") as connection:
            connection.execute(
                "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, text, self._now()),
            )

    def delete_value(self, key: str) -> None:
        with self._writing("deleting a setup record") as connection:
            connection.execute("DELETE FROM kv WHERE key = ?", (key,))

    # ------------------------------------------------------------ runs
    def start_run(self, kind: str, params: Mapping[str, Any]) -> int:
        """Record a run as 'running'; returns its id."""
        text = _dumps(dict(params))
        with self._writing("starting a run") as connection:
            cursor = connection.execute(
                "INSERT INTO runs (kind, status, started_at, params, pid) VALUES (?, 'running', ?, ?, ?)",
                (kind, self._now(), text, os.getpid()),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def finish_run(self, run_id: int, status: str, summary: Mapping[str, Any]) -> None:
        if status not in RUN_STATUSES:
            raise UsageError(
                f"Unknown run status {status!r}", fix=f"use one of {', '.join(sorted(RUN_STATUSES))}"
            )
        text = _dumps(dict(summary))
        with self._writing("finishing a run") as connection:
            cursor = connection.execute(
                "UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE id = ?",
                (status, self._now(), text, run_id),
            )
            if cursor.rowcount == 0:
                raise StateError(
                    f"Run {run_id} is not recorded in {self._path}", fix="finish a run started here"
                )

    def last_run(self, *, kind: str | None = None, status: str | None = None) -> RunRecord | None:
        runs = self._select_runs(kind=kind, status=status, limit=1)
        return runs[0] if runs else None

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        """Most recent first."""
        return self._select_runs(kind=None, status=None, limit=limit)

    def _select_runs(self, *, kind: str | None, status: str | None, limit: int) -> list[RunRecord]:
        with self._reading("reading runs") as connection:
            rows = connection.execute(
                "SELECT id, kind, status, started_at, finished_at, params, summary FROM runs "
                "WHERE (:kind IS NULL OR kind = :kind) AND (:status IS NULL OR status = :status) "
                "ORDER BY id DESC LIMIT :limit",
                {"kind": kind, "status": status, "limit": limit},
            ).fetchall()
        return [
            RunRecord(
                id=row[0],
                kind=row[1],
                status=row[2],
                started_at=row[3],
                finished_at=row[4],
                params=dict(_loads(row[5])),
                summary=dict(_loads(row[6])),
            )
            for row in rows
        ]

    # ------------------------------------------------------------ dead letters
    _DEAD_LETTER_UPSERT = (
        "INSERT INTO dead_letters (resource, key, reason, record, first_seen, last_seen, attempts, run_id) "
        "VALUES (?, ?, ?, ?, ?, ?, 1, ?) "
        "ON CONFLICT (resource, key) DO UPDATE SET reason = excluded.reason, record = excluded.record, "
        "last_seen = excluded.last_seen, attempts = dead_letters.attempts + 1, "
        "run_id = COALESCE(excluded.run_id, dead_letters.run_id)"
    )
    _DEAD_LETTER_COLUMNS = "id, resource, key, reason, record, first_seen, last_seen, attempts, run_id"

    def add_dead_letter(
        self, resource: str, key: str, reason: str, record: Mapping[str, Any], run_id: int | None = None
    ) -> None:
        """Record a rejected record; the same (resource, key) again bumps attempts and replaces the reason."""
        self.add_dead_letters([(resource, key, reason, record)], run_id=run_id)

    def add_dead_letters(
        self, items: Iterable[tuple[str, str, str, Mapping[str, Any]]], run_id: int | None = None
    ) -> int:
        now = self._now()
        written = 0
        with self._writing("saving dead letters") as connection:
            for chunk in chunked(items, WRITE_CHUNK):
                connection.executemany(
                    self._DEAD_LETTER_UPSERT,
                    [
                        (resource, key, reason, _dumps(dict(record)), now, now, run_id)
                        for resource, key, reason, record in chunk
                    ],
                )
                written += len(chunk)
        return written

    @staticmethod
    def _dead_letter(row: Sequence[Any]) -> DeadLetter:
        return DeadLetter(
            id=row[0],
            resource=row[1],
            key=row[2],
            reason=row[3],
            record=dict(_loads(row[4])),
            first_seen=row[5],
            last_seen=row[6],
            attempts=row[7],
            run_id=row[8],
        )

    def list_dead_letters(
        self, resource: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DeadLetter]:
        """Oldest first."""
        with self._reading("reading dead letters") as connection:
            rows = connection.execute(
                f"SELECT {self._DEAD_LETTER_COLUMNS} FROM dead_letters "  # noqa: S608 - constant columns
                "WHERE (:resource IS NULL OR resource = :resource) ORDER BY id LIMIT :limit OFFSET :offset",
                {"resource": resource, "limit": limit, "offset": offset},
            ).fetchall()
        return [self._dead_letter(row) for row in rows]

    def iter_dead_letters(self, resource: str | None = None) -> Iterator[DeadLetter]:
        """Every dead letter, oldest first, streamed; resolving them while iterating is safe."""
        sql = (
            f"SELECT {self._DEAD_LETTER_COLUMNS} FROM dead_letters "  # noqa: S608 - constant columns
            "WHERE (:resource IS NULL OR resource = :resource) AND id > :after ORDER BY id LIMIT :limit"
        )
        after = 0
        while True:
            with self._reading("reading dead letters") as connection:
                rows = connection.execute(
                    sql, {"resource": resource, "after": after, "limit": PAGE_SIZE}
                ).fetchall()
            for row in rows:
                yield self._dead_letter(row)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][0]

    def resolve_dead_letters(self, resource: str, keys: Iterable[str]) -> int:
        """Forget dead letters whose record was written after all; returns how many were removed."""
        removed = 0
        with self._writing("resolving dead letters") as connection:
            for chunk in chunked(keys, WRITE_CHUNK):
                removed += connection.executemany(
                    "DELETE FROM dead_letters WHERE resource = ? AND key = ?",
                    ((resource, key) for key in chunk),
                ).rowcount
        return removed

    def count_dead_letters(self, resource: str | None = None) -> int:
        with self._reading("counting dead letters") as connection:
            row = connection.execute(
                "SELECT COUNT(*) FROM dead_letters WHERE (:resource IS NULL OR resource = :resource)",
                {"resource": resource},
            ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------ webhook events (exactly once)
    def record_event(self, source: str, event_id: str, payload: Mapping[str, Any]) -> bool:
        """Remember an incoming event as pending; False (and no change) if it was seen before."""
        text = _dumps(dict(payload))
        now = self._now()
        with self._writing("recording an event") as connection:
            cursor = connection.execute(
                "INSERT OR IGNORE INTO events (source, event_id, payload, received_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (source, event_id, text, now, now),
            )
            return cursor.rowcount == 1

    def pending_events(self, source: str | None = None, limit: int = 500) -> list[PendingEvent]:
        """Events still to forward: new ones and failed ones (retried), oldest first."""
        with self._reading("reading events") as connection:
            rows = connection.execute(
                "SELECT id, source, event_id, payload, attempts, status FROM events "
                "WHERE status IN ('pending', 'failed') AND (:source IS NULL OR source = :source) "
                "ORDER BY id LIMIT :limit",
                {"source": source, "limit": limit},
            ).fetchall()
        return [
            PendingEvent(
                id=row[0],
                source=row[1],
                event_id=row[2],
                payload=dict(_loads(row[3])),
                attempts=row[4],
                status=row[5],
            )
            for row in rows
        ]

    def mark_events(self, ids: Iterable[int], status: str) -> None:
        """Set the outcome of events: forwarded | failed | ignored; failed also counts an attempt."""
        if status not in EVENT_STATUSES:
            raise UsageError(
                f"Unknown event status {status!r}", fix=f"use one of {', '.join(sorted(EVENT_STATUSES))}"
            )
        bump = 1 if status == "failed" else 0
        now = self._now()
        with self._writing("updating events") as connection:
            for chunk in chunked(ids, WRITE_CHUNK):
                connection.executemany(
                    "UPDATE events SET status = ?, attempts = attempts + ?, updated_at = ? WHERE id = ?",
                    [(status, bump, now, event_id) for event_id in chunk],
                )

    def count_events(self, status: str | None = None) -> int:
        with self._reading("counting events") as connection:
            row = connection.execute(
                "SELECT COUNT(*) FROM events WHERE (:status IS NULL OR status = :status)", {"status": status}
            ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------ purchase ledger
    def claim_purchase(self, purchase_id: str) -> bool:
        """Claim a purchase before sending it; False if it was claimed or sent before (never send twice)."""
        with self._writing("claiming a purchase") as connection:
            cursor = connection.execute(
                "INSERT OR IGNORE INTO purchases (purchase_id, status, claimed_at) VALUES (?, 'claimed', ?)",
                (purchase_id, self._now()),
            )
            return cursor.rowcount == 1

    def mark_purchases_sent(self, purchase_ids: Iterable[str]) -> None:
        now = self._now()
        with self._writing("marking purchases sent") as connection:
            for chunk in chunked(purchase_ids, WRITE_CHUNK):
                connection.executemany(
                    "INSERT INTO purchases (purchase_id, status, claimed_at, sent_at) VALUES (?, 'sent', ?, ?) "
                    "ON CONFLICT (purchase_id) DO UPDATE SET status = 'sent', sent_at = excluded.sent_at",
                    [(purchase_id, now, now) for purchase_id in chunk],
                )

    def unsent_purchases(self) -> list[str]:
        """Claimed but never confirmed sent: their outcome is unknown (a run stopped mid-request)."""
        with self._reading("reading purchases") as connection:
            rows = connection.execute(
                "SELECT purchase_id FROM purchases WHERE status = 'claimed' ORDER BY claimed_at, purchase_id"
            ).fetchall()
        return [row[0] for row in rows]

    def release_purchases(self, purchase_ids: Iterable[str]) -> int:
        """Drop claims whose send certainly did not land (refused, throttled, never connected), so
        they can be claimed again; a purchase confirmed sent is never released. Returns how many."""
        released = 0
        with self._writing("releasing purchase claims") as connection:
            for chunk in chunked(purchase_ids, WRITE_CHUNK):
                released += connection.executemany(
                    "DELETE FROM purchases WHERE purchase_id = ? AND status = 'claimed'",
                    [(purchase_id,) for purchase_id in chunk],
                ).rowcount
        return released

    # ------------------------------------------------------------ analytics
    def upsert_metrics(self, rows: Iterable[MetricRow]) -> int:
        """Write data-series points; a point already stored for the same day is replaced, never added to."""
        written = 0
        with self._writing("saving metrics") as connection:
            for chunk in chunked(rows, WRITE_CHUNK):
                for row in chunk:
                    _check_metric(row)
                connection.executemany(
                    "INSERT INTO metrics (kind, object_id, day, channel, variant, step, metric, value) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (kind, object_id, day, channel, variant, step, metric) DO UPDATE SET value = excluded.value",
                    [
                        (
                            row.kind,
                            row.object_id,
                            row.day,
                            row.channel,
                            row.variant,
                            row.step,
                            row.metric,
                            float(row.value),
                        )
                        for row in chunk
                    ],
                )
                written += len(chunk)
        return written

    def query_metrics(
        self, *, kind: str | None = None, object_id: str | None = None, since: str | None = None
    ) -> list[MetricRow]:
        """Stored points, filtered; ``since`` is an inclusive YYYY-MM-DD day."""
        with self._reading("reading metrics") as connection:
            rows = connection.execute(
                "SELECT kind, object_id, day, channel, variant, step, metric, value FROM metrics "
                "WHERE (:kind IS NULL OR kind = :kind) AND (:object_id IS NULL OR object_id = :object_id) "
                "AND (:since IS NULL OR day >= :since) "
                "ORDER BY kind, object_id, day, channel, variant, step, metric",
                {"kind": kind, "object_id": object_id, "since": since},
            ).fetchall()
        return [MetricRow(*row) for row in rows]

    def upsert_object(self, kind: str, object_id: str, name: str, meta: Mapping[str, Any]) -> None:
        """Remember a campaign/canvas/segment name and metadata (replaces what was stored)."""
        text = _dumps(dict(meta))
        with self._writing("saving an object") as connection:
            connection.execute(
                "INSERT INTO objects (kind, object_id, name, meta, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, object_id) DO UPDATE SET name = excluded.name, meta = excluded.meta, "
                "updated_at = excluded.updated_at",
                (kind, object_id, name, text, self._now()),
            )

    def objects(self, kind: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """``object_id -> (name, meta)`` for one kind."""
        with self._reading("reading objects") as connection:
            rows = connection.execute(
                "SELECT object_id, name, meta FROM objects WHERE kind = ? ORDER BY object_id", (kind,)
            ).fetchall()
        return {object_id: (name, dict(_loads(meta))) for object_id, name, meta in rows}

    # ------------------------------------------------------------ encrypted credentials
    def put_credential(self, name: str, ciphertext: bytes) -> None:
        """Store an already encrypted credential (the store never sees plaintext)."""
        with self._writing("saving a credential") as connection:
            connection.execute(
                "INSERT INTO credentials (name, ciphertext, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
                (name, bytes(ciphertext), self._now()),
            )

    def get_credential(self, name: str) -> bytes | None:
        with self._reading("reading a credential") as connection:
            row = connection.execute("SELECT ciphertext FROM credentials WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def credential_names(self) -> list[str]:
        with self._reading("reading credential names") as connection:
            return [row[0] for row in connection.execute("SELECT name FROM credentials ORDER BY name")]


def _check_metric(row: MetricRow) -> None:
    if row.kind not in METRIC_KINDS:
        raise UsageError(
            f"Unknown metric kind {row.kind!r}", fix=f"use one of {', '.join(sorted(METRIC_KINDS))}"
        )
    try:
        date.fromisoformat(row.day)
    except (TypeError, ValueError):
        raise UsageError(f"Metric day {row.day!r} is not a YYYY-MM-DD date") from None
    if len(row.day) != 10:
        raise UsageError(f"Metric day {row.day!r} is not a YYYY-MM-DD date")
