"""Worker processes that read export lines (`user_lines.LineReader`) for a run, in order.

Each worker is `python -m tajo_braze.sync.line_workers`, talking over its stdin and stdout in
length-prefixed pickle frames: the rules first, then one chunk of raw lines at a time, each
answered by that chunk's outcomes. Plain subprocesses rather than `multiprocessing`: spawning
through it re-imports the host's main module, which a host without a `__main__` guard cannot
survive, and a worker whose run is killed sees its stdin close and leaves.
"""

from __future__ import annotations

import os
import pickle
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import ConnectorError
from .user_lines import LineRules, Outcome, reader_for

_HEADER = struct.Struct("!Q")
START_TIMEOUT_S = 60.0


class MappingWorkerFailed(ConnectorError):
    """A worker process that maps export lines could not start, or stopped (killed, out of memory)."""


def _send(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    """The next frame's value; None when the other side closed the pipe."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    # Both ends are this package's own processes over private pipes: nothing else can write here.
    return pickle.loads(data)  # noqa: S301


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ------------------------------------------------------------------ the worker side
def worker_main() -> int:
    inbox, outbox = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing printed by accident may corrupt a frame
    # Ctrl-C reaches the whole process group: the run decides how to stop, and closes our stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        reader = reader_for(_receive(inbox))
    except Exception as exc:  # noqa: BLE001 - reported to the run, which says why it maps alone
        _send(outbox, ("error", f"{type(exc).__name__}: {exc}"))
        return 1
    _send(outbox, ("ready", os.getpid()))
    while True:
        chunk = _receive(inbox)
        if chunk is None:  # the run finished, or died
            return 0
        try:
            answer: tuple[str, Any] = ("ok", reader.read(chunk))
        except Exception as exc:  # noqa: BLE001 - one chunk's failure ends the run with its cause
            answer = ("error", f"{type(exc).__name__}: {exc}")
        try:
            _send(outbox, answer)
        except BrokenPipeError:
            return 0


# ------------------------------------------------------------------ the run's side
class _Worker:
    def __init__(self, rules: LineRules) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        if not sys.executable:  # an embedded interpreter may not know its own executable
            raise self._failed("could not start: no Python executable is known to this process")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tajo_braze.sync.line_workers"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            raise self._failed(f"could not start: {exc.strerror or type(exc).__name__}") from None
        assert self.process.stdin is not None and self.process.stdout is not None
        self.inbox: IO[bytes] = self.process.stdin
        self.outbox: IO[bytes] = self.process.stdout
        self.tasks: queue.Queue[list[bytes] | None] = queue.Queue()
        self.feeder = threading.Thread(target=self._feed, name="line-worker-feed", daemon=True)
        try:
            self._greet(rules)
        except BaseException:
            self.process.kill()  # whatever it is doing, it is not a worker of this run
            self.process.wait()
            raise
        self.feeder.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _greet(self, rules: LineRules) -> None:
        try:
            _send(self.inbox, rules)
        except OSError:
            raise self._failed("could not start") from None
        try:
            ready, _, _ = select.select([self.outbox], [], [], START_TIMEOUT_S)
        except (OSError, ValueError):  # pipes cannot be waited on here (Windows): map in process
            raise self._failed("could not start on this platform") from None
        answer = _receive(self.outbox) if ready else None
        if not (isinstance(answer, tuple) and answer[0] == "ready"):
            detail = f": {answer[1]}" if isinstance(answer, tuple) and answer[0] == "error" else ""
            raise self._failed(f"could not start{detail}")

    def _feed(self) -> None:
        # Chunks are written from this thread so the run's thread, reading answers, never waits on
        # a full pipe to a worker that is itself waiting to hand back an answer.
        while True:
            chunk = self.tasks.get()
            try:
                if chunk is None:
                    self.inbox.close()
                    return
                _send(self.inbox, chunk)
            except OSError:  # the worker is gone; reading its answer says so
                return

    def answer(self) -> list[Outcome]:
        reply = _receive(self.outbox)
        if isinstance(reply, tuple) and reply[0] == "ok":
            result: list[Outcome] = reply[1]
            return result
        if isinstance(reply, tuple) and reply[0] == "error":
            raise self._failed(f"failed: {reply[1]}")
        raise self._failed("stopped unexpectedly")

    def _failed(self, what: str) -> MappingWorkerFailed:
        return MappingWorkerFailed(
            f"A worker process mapping export lines {what}.",
            fix="Check the machine's memory (the system log names a killed process), or set "
            "connectors.braze.sync.map_workers: 0 to map in the run's own process; then retry (the run "
            "resumes at its checkpoint).",
        )

    def stop(self) -> None:
        self.tasks.put(None)
        self.outbox.close()  # a worker still writing an answer gets a broken pipe and leaves
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.feeder.join(timeout=10)


class WorkerPool:
    """Worker processes reading chunks round-robin; answers come back in the chunks' order."""

    def __init__(self, rules: LineRules, workers: int) -> None:
        self._workers: list[_Worker] = []
        try:
            for _ in range(workers):
                self._workers.append(_Worker(rules))
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    def read(self, chunks: Iterable[list[bytes]], *, ahead: int | None = None) -> Iterator[list[Outcome]]:
        workers = self._workers
        depth = max(1, ahead if ahead is not None else 2 * len(workers))
        waiting: deque[_Worker] = deque()
        for index, chunk in enumerate(chunks):
            worker = workers[index % len(workers)]
            worker.tasks.put(chunk)
            waiting.append(worker)
            if len(waiting) >= depth:
                yield waiting.popleft().answer()
        while waiting:
            yield waiting.popleft().answer()

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(worker_main())
