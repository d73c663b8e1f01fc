"""Segment export files: the NDJSON lines of seeded users, and the ZIP they are written to.

A million-user export spends nearly all its time drawing seeded profiles. Those depend on
nothing but the seed, so they are drawn outside the app's lock — by worker processes when
the world is big — and the app then applies, range by range under its lock, what changed
since seeding (stored and deleted users, event logs). Every way gives the same lines.

Workers are fresh interpreters, never forks: the sandbox serves from threads, and a fork
of a threaded process may copy a lock that another thread holds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import random
import signal
import subprocess
import sys
import threading
import zipfile
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from .seed import GENE_BYTES, SegmentDef, UserSeeds

log = logging.getLogger("tajo_braze.sandbox.segment_export")

SeededRange = tuple[int, int, list[int], list[bytes]]  # start, stop, member slots, their lines
_WORKER_TASKS_AHEAD = 2  # ranges queued per worker, so none waits while the app reads a result
_WRITE_QUEUE_RANGES = 8  # ranges drawn but not yet compressed: bounds the memory of a build


class ExportCancelled(Exception):
    """The app is closing: the build stops between two ranges."""


@dataclass(frozen=True)
class SeededExport:
    """What a build draws from the seed: picklable, so a worker rebuilds the same seeds from it."""

    seed: int
    n_users: int
    today: date
    segment: SegmentDef  # a copy of the rules taken when the export was asked for
    fields: tuple[str, ...]
    custom: tuple[str, ...] | None


class SeededLines:
    """The export lines of the seeded users of a range who are members by their seeded profile.

    Changes made since seeding are not looked at: the app applies them afterwards.
    Not thread-safe (it reuses one Random): one per thread or process.
    """

    def __init__(self, seeds: UserSeeds, spec: SeededExport) -> None:
        self.seeds = seeds
        self.fields = spec.fields
        self._drawer = seeds.profile_drawer(spec.fields, spec.custom)
        self._rng = random.Random()  # reseeded with each user's gene
        segment = spec.segment
        # Rule "all" with nobody removed takes everyone: no need to ask each user.
        self._everyone = segment.rule == "all" and not segment.removed
        self._segment = segment

    def lines(self, start: int, stop: int) -> tuple[list[int], list[bytes]]:
        seeds, fields, segment = self.seeds, self.fields, self._segment
        genes, head_of, external_id, everyone = seeds.genes, seeds.head, seeds.external_id, self._everyone
        draw, needs_rng, reseed = self._drawer.draw, self._drawer.needs_rng, self._rng.seed
        rng = self._rng
        dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        from_bytes = int.from_bytes
        slots: list[int] = []
        lines: list[bytes] = []
        for slot in range(start, stop):
            offset = slot * GENE_BYTES
            gene = from_bytes(genes[offset : offset + GENE_BYTES], "little")  # UserSeeds.gene, minus a call
            head = head_of(slot, gene)
            if not everyone:
                ext = external_id(slot, head)
                if not segment.matches(ext, head.email_subscribe, head.random_bucket, head.vip):
                    continue
            if needs_rng:
                reseed(gene)
            user = draw(slot, head, rng)
            # A drawn profile holds no empty value, so "present" is what the export's "not empty" means.
            slots.append(slot)
            lines.append(dumps({name: user[name] for name in fields if name in user}, option=newline))
        return slots, lines


def seeded_ranges(n_users: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n_users)) for start in range(0, n_users, size)]


def draw_in_thread(
    seeds: UserSeeds, spec: SeededExport, ranges: Sequence[tuple[int, int]]
) -> Iterator[SeededRange]:
    maker = SeededLines(seeds, spec)
    for start, stop in ranges:
        slots, lines = maker.lines(start, stop)
        yield start, stop, slots, lines


# ---------------------------------------------------------------------------- worker processes
# A fresh interpreter running only this: multiprocessing's spawn would also re-run the
# embedding program's main module, which may start a sandbox of its own. Like spawn, it
# first takes this process's sys.path, so it imports this very package.
_WORKER_CODE = (
    "import importlib, pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
    f"importlib.import_module({__name__!r}).worker_main()"
)


def worker_main() -> None:
    """A worker (once sys.path is set): a SeededExport, then (start, stop) ranges on stdin; lines on stdout."""
    # Ctrl-C reaches the whole process group: the app decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inbox, outbox = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but results may reach the pipe
    try:
        spec = pickle.load(inbox)  # noqa: S301 - written by the app that started this process
    except EOFError:
        return
    maker = SeededLines(UserSeeds(spec.seed, spec.n_users, spec.today), spec)
    while True:
        try:
            start, stop = pickle.load(inbox)  # noqa: S301 - as above
        except EOFError:
            return  # the app is done with us, or died
        try:
            result: tuple[str, Any] = ("ok", maker.lines(start, stop))
        except Exception as exc:  # reported to the app, which draws the range itself
            result = ("error", repr(exc))
        try:
            pickle.dump(result, outbox, protocol=pickle.HIGHEST_PROTOCOL)
            outbox.flush()
        except OSError:
            return


class WorkerFailed(Exception):
    """A worker died or could not draw a range."""


class ExportWorkers:
    """Worker processes drawing ranges, each fed through its own pipes; results come in order.

    Only this process holds the writing end of a worker's input, so a worker whose app dies,
    however it dies, reads end-of-file and exits.
    """

    def __init__(self, spec: SeededExport, processes: int) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._pending: deque[tuple[subprocess.Popen[bytes], tuple[int, int]]] = deque()
        self._turn = 0
        try:
            for _ in range(processes):
                proc = subprocess.Popen(  # noqa: S603 - this interpreter, running our own code
                    [sys.executable, "-c", _WORKER_CODE],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                self._procs.append(proc)
                self._send(proc, list(sys.path))
                self._send(proc, spec)
        except BaseException:
            self.close()
            raise

    def draw(self, ranges: Sequence[tuple[int, int]]) -> Iterator[SeededRange]:
        """Each range's lines, in order."""
        todo = deque(ranges)
        ahead = _WORKER_TASKS_AHEAD * len(self._procs)
        while todo or self._pending:
            while todo and len(self._pending) < ahead:
                task = todo.popleft()
                proc = self._procs[self._turn % len(self._procs)]
                self._turn += 1
                self._send(proc, task)
                self._pending.append((proc, task))
            proc, (start, stop) = self._pending.popleft()
            assert proc.stdout is not None
            try:
                kind, payload = pickle.load(proc.stdout)  # noqa: S301 - our own worker's answer
            except (EOFError, OSError, pickle.UnpicklingError) as exc:
                raise WorkerFailed(f"an export worker stopped (exit status {proc.poll()})") from exc
            if kind != "ok":
                raise WorkerFailed(f"an export worker failed: {payload}")
            slots, lines = payload
            yield start, stop, slots, lines

    def _send(self, proc: subprocess.Popen[bytes], message: object) -> None:
        assert proc.stdin is not None
        try:
            pickle.dump(message, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            proc.stdin.flush()
        except OSError as exc:
            raise WorkerFailed(f"an export worker is gone (exit status {proc.poll()})") from exc

    def close(self) -> None:
        """Stop every worker: end of input (and of output, should one be writing), then wait."""
        for proc in self._procs:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        self._pending.clear()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def draw_ranges(
    seeds: UserSeeds,
    spec: SeededExport,
    ranges: Sequence[tuple[int, int]],
    processes: int,
) -> Generator[SeededRange, None, None]:
    """The seeded lines of each range, in order: from `processes` workers, or this thread when 0.

    Workers that cannot start or fail midway leave the remaining ranges to this thread,
    so a build never fails for want of a process.
    """
    if processes <= 0 or not ranges:
        yield from draw_in_thread(seeds, spec, ranges)
        return
    try:
        workers = ExportWorkers(spec, processes)
    except Exception:
        log.warning("export workers could not start; drawing in-process", exc_info=True)
        yield from draw_in_thread(seeds, spec, ranges)
        return
    done = 0
    try:
        for item in workers.draw(ranges):
            done += 1
            yield item
    except WorkerFailed:
        log.warning("export workers failed; drawing the rest in-process", exc_info=True)
        workers.close()
        yield from draw_in_thread(seeds, spec, ranges[done:])
    finally:
        workers.close()


# ---------------------------------------------------------------------------- the ZIP
class ExportZipWriter:
    """NDJSON lines into ZIP members of `per_file` lines each, compressed on a thread of its own.

    zlib lets go of the GIL while it deflates, so lines are drawn while earlier ones are
    compressed. A member is written in one piece per range rather than line by line.
    """

    def __init__(self, path: str, prefix: str, per_file: int, compresslevel: int = 1) -> None:
        self.users = 0
        self.files = 0
        self._archive = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel)
        self._prefix = prefix
        self._per_file = per_file
        self._member: Any = None
        self._in_file = 0
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=_WRITE_QUEUE_RANGES)
        self._error: BaseException | None = None
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name="braze-export-zip", daemon=True)
        self._thread.start()

    def add(self, lines: list[bytes]) -> None:
        if self._error is not None:
            raise RuntimeError("the export file could not be written") from self._error
        if lines:
            self._queue.put(lines)

    def finish(self) -> None:
        """Write what is queued and close the file; raises what went wrong while writing."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise RuntimeError("the export file could not be written") from self._error

    def abandon(self) -> None:
        """Close the file without writing what is still queued (the caller deletes it)."""
        self._abandoned = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            while (lines := self._queue.get()) is not None:
                if self._error is None and not self._abandoned:
                    self._write(lines)
        except BaseException as exc:  # kept for the builder, which raises it
            self._error = exc
            while self._queue.get() is not None:  # keep draining so the builder never blocks
                pass
        finally:
            try:
                if self._member is not None:
                    self._member.close()
                self._archive.close()
            except BaseException as exc:
                self._error = self._error or exc

    def _write(self, lines: list[bytes]) -> None:
        at = 0
        while at < len(lines):
            if self._member is None:
                self.files += 1
                self._member = self._archive.open(f"{self._prefix}/{self.files}.txt", "w")
            take = min(len(lines) - at, self._per_file - self._in_file)
            self._member.write(b"".join(lines[at : at + take]))
            at += take
            self._in_file += take
            self.users += take
            if self._in_file == self._per_file:
                self._member.close()
                self._member, self._in_file = None, 0


def merge_lines(
    slots: list[int], lines: list[bytes], changed: Iterable[tuple[int, bytes | None]]
) -> list[bytes]:
    """The seeded lines with the changed users' own (None: not a member) in slot order."""
    by_slot: dict[int, bytes | None] = dict(zip(slots, lines, strict=True))
    by_slot.update(changed)
    return [line for _, line in sorted(by_slot.items()) if line is not None]
