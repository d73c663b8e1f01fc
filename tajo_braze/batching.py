"""Cutting a stream into batches without holding more than one batch, reading ahead, sending behind."""

from __future__ import annotations

import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items; the last one may be shorter."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def with_last(items: Iterable[T]) -> Iterator[tuple[T, bool]]:
    """Each item with whether it is the last one (known by reading one item ahead)."""
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current, False
        current = following
    yield current, True


_DONE = object()


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced ahead by a background thread (at most `depth` waiting).

    For reads that wait on the network or a rate limit while the consumer computes: the next
    pages are on their way while this one is processed. An error in the producer is raised
    here, in order; leaving the loop early stops the producer at its next item.
    """
    waiting: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        waiting.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            outcome: Any = _DONE
        except BaseException as exc:  # handed to the consumer, which raises it
            outcome = exc
        while not stop.is_set():
            try:
                waiting.put(outcome, timeout=0.1)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = waiting.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class InOrderSender(Generic[T]):
    """Work handed over item by item and done by one background thread, in the order given.

    The first error stops the work on later items and is raised to the caller at its next
    `submit` or at `close`. Items left undone (after an error, or while `hold()` is true, e.g.
    a stop request) are counted in `held`; `after` runs for every item, done or not.
    """

    def __init__(
        self,
        work: Callable[[T], None],
        *,
        name: str,
        depth: int = 0,
        hold: Callable[[], bool] | None = None,
        after: Callable[[T], None] | None = None,
    ) -> None:
        self._work = work
        self._hold = hold
        self._after = after
        self._name = name
        self._queue: queue.Queue[tuple[T] | None] = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.held = 0

    def submit(self, item: T) -> None:
        self.raise_if_failed()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put((item,))

    def close(self) -> None:
        """Wait until every item handed over is done; raise the worker's error if any."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            boxed = self._queue.get()
            if boxed is None:
                return
            (item,) = boxed
            if self._error is None and not (self._hold is not None and self._hold()):
                try:
                    self._work(item)
                except BaseException as exc:  # handed to the caller's thread, which raises it
                    self._error = exc
            else:
                self.held += 1
            if self._after is not None:
                self._after(item)


class GatedCommits(Generic[T, R]):
    """Items sent by background threads and committed in order, each once its gate opens.

    A reader that plans from state while earlier items are still being committed sees more or
    less of them depending on timing. Here an item carries a tag (the reader's chunk number) and
    its commit waits until the reader `allow`s that tag, so what the reader reads at a given point
    is fixed by the data alone: `wait_committed` waits for the commits it needs, and the commits
    it has not allowed yet cannot land in the middle of its reads. Sending never waits for the
    gate, so the network stays busy meanwhile.

    Up to `senders` items are in flight at once, started in the order given; an item whose
    `touches` (the records it writes) meet those of an item in flight waits for that one's answer,
    so two writes to one record still land in order. Commits are made one at a time, in the
    order the items were given, whichever thread makes them: every answered item its gate lets
    through, in one `commit` call (one transaction instead of one per item).

    The first error stops the work on later items (answers still arriving are not committed) and
    is raised at the next `submit`, `wait_*` or `close`. Items not sent because `hold()` turned
    true (a stop request) are counted in `held`.
    """

    def __init__(
        self,
        send: Callable[[T], R],
        commit: Callable[[Sequence[tuple[T, R]]], None],
        *,
        name: str,
        depth: int,
        senders: int = 1,
        touches: Callable[[T], Collection[Hashable]] | None = None,
        hold: Callable[[], bool] | None = None,
    ) -> None:
        self._send = send
        self._commit = commit
        self._touches = touches
        self._hold = hold
        self._name = name
        self._depth = max(1, depth)
        self._senders = max(1, senders)
        self._changed = threading.Condition()
        self._given = 0  # sequence number of the next item given
        self._to_send: deque[_Given[T]] = deque()
        self._in_flight: dict[int, _Given[T]] = {}
        self._busy: Counter[Hashable] = Counter()  # what the items in flight touch
        self._answered: dict[int, tuple[_Given[T], R] | None] = {}  # None: held back, nothing to commit
        self._next_commit = 0
        self._committing: int | None = None  # the lowest tag of the items being committed
        self._allowed: float = float("-inf")
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._failed = False  # stays set once the error is handed over
        self.held = 0

    def submit(self, item: T, tag: int) -> None:
        """Queue an item (waits while `depth` items wait to be sent)."""
        touched = frozenset(self._touches(item)) if self._touches is not None else frozenset()
        with self._changed:
            self._raise_if_failed()
            if self._failed:
                raise RuntimeError(f"{self._name} stopped after an earlier error")
            if not self._threads:
                self._closing = False
                self._threads = [
                    threading.Thread(target=self._run, name=f"{self._name}-{i}", daemon=True)
                    for i in range(self._senders)
                ]
                for thread in self._threads:
                    thread.start()
            while len(self._to_send) >= self._depth and not self._failed:
                self._changed.wait()
            self._raise_if_failed()
            self._to_send.append(_Given(self._given, tag, item, touched))
            self._given += 1
            self._changed.notify_all()

    def allow(self, tag: float) -> None:
        """Let the items tagged `tag` or lower be committed."""
        with self._changed:
            if tag > self._allowed:
                self._allowed = tag
                self._changed.notify_all()

    def wait_committed(self, tag: int) -> None:
        """Wait until every item tagged `tag` or lower is committed (or held back)."""
        with self._changed:
            while not self._failed and self._oldest_uncommitted() <= tag:
                self._changed.wait()
            self._raise_if_failed()

    def wait_sent(self) -> None:
        """Wait until every item submitted so far has been sent (answered), committed or not."""
        with self._changed:
            while not self._failed and (self._to_send or self._in_flight):
                self._changed.wait()
            self._raise_if_failed()

    def wait_sent_touching(self, keys: Collection[Hashable]) -> None:
        """Wait until no item submitted so far that touches one of `keys` is waiting or in flight
        (every item, without `touches`)."""
        if self._touches is None:
            self.wait_sent()
            return
        wanted = frozenset(keys)
        with self._changed:
            while not self._failed and any(
                not wanted.isdisjoint(given.touched) for given in (*self._to_send, *self._in_flight.values())
            ):
                self._changed.wait()
            self._raise_if_failed()

    def close(self) -> None:
        """Allow every commit, wait until all items are done; raise the worker's error if any."""
        with self._changed:
            threads = self._threads
            self._allowed = float("inf")
            self._closing = True
            self._changed.notify_all()
        for thread in threads:
            thread.join()
        with self._changed:
            self._threads = []
            self._raise_if_failed()

    def _oldest_uncommitted(self) -> float:
        tags = [given.tag for given in self._to_send]
        tags += [given.tag for given in self._in_flight.values()]
        if self._committing is not None:
            tags.append(self._committing)
        tags += [entry[0].tag for entry in self._answered.values() if entry is not None]
        return min(tags, default=float("inf"))

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _next_action(self) -> list[tuple[_Given[T], R]] | _Given[T] | None:
        """Under the lock: the commits that may be made, else an item that may be sent, else None."""
        commits: list[tuple[_Given[T], R]] = []
        while self._next_commit in self._answered and self._committing is None:
            entry = self._answered[self._next_commit]
            if entry is not None and entry[0].tag > self._allowed:
                break
            del self._answered[self._next_commit]
            self._next_commit += 1
            if entry is not None:
                commits.append(entry)
        if commits:
            self._committing = commits[0][0].tag
            return commits
        if self._to_send and len(self._in_flight) < self._senders:
            given = self._to_send[0]
            if given.touched and any(key in self._busy for key in given.touched):
                return None
            self._to_send.popleft()
            self._changed.notify_all()  # room in the queue
            if self._hold is not None and self._hold():
                self.held += 1
                self._answered[given.number] = None
                return self._next_action()
            self._in_flight[given.number] = given
            self._busy.update(given.touched)
            return given
        return None

    def _run(self) -> None:
        changed = self._changed
        while True:
            with changed:
                while True:
                    if self._failed:
                        self.held += len(self._to_send)
                        self._to_send.clear()
                        self._answered.clear()
                        changed.notify_all()
                        return
                    action = self._next_action()
                    if action is not None:
                        break
                    if self._closing and not self._to_send and self._committing is None:
                        return  # what is still in flight is committed by the thread sending it
                    changed.wait()
            answer: tuple[_Given[T], R] | None = None
            try:
                if isinstance(action, _Given):
                    answer = (action, self._send(action.item))
                else:
                    self._commit([(given.item, result) for given, result in action])
            except BaseException as exc:  # handed to the caller's thread, which raises it
                with changed:
                    self._error, self._failed = exc, True
                    self._finished(action)
                    changed.notify_all()
                continue
            with changed:
                self._finished(action)
                if answer is not None and not self._failed:
                    self._answered[answer[0].number] = answer
                changed.notify_all()

    def _finished(self, action: list[tuple[_Given[T], R]] | _Given[T]) -> None:
        if isinstance(action, _Given):
            del self._in_flight[action.number]
            self._busy.subtract(action.touched)
            for key in action.touched:
                if self._busy[key] <= 0:
                    del self._busy[key]
        else:
            self._committing = None


@dataclass(frozen=True, slots=True)
class _Given(Generic[T]):
    number: int  # the order it was given in: the order of commits
    tag: int
    item: T
    touched: frozenset[Hashable]
