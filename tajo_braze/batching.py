"""Cutting a stream into batches without holding more than one batch, reading ahead, sending behind."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
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
    """Items sent in order by one background thread, each committed in order once its gate opens.

    A reader that plans from state while earlier items are still being committed sees more or
    less of them depending on timing. Here an item carries a tag (the reader's chunk number) and
    its commit waits until the reader `allow`s that tag, so what the reader reads at a given point
    is fixed by the data alone: `wait_committed` waits for the commits it needs, and the commits
    it has not allowed yet cannot land in the middle of its reads. Sending never waits for the
    gate, so the network stays busy meanwhile.

    The first error stops the work on later items and is raised at the next `submit`, `wait_*`
    or `close`. Items not sent because `hold()` turned true (a stop request) are counted in `held`.
    """

    def __init__(
        self,
        send: Callable[[T], R],
        commit: Callable[[T, R], None],
        *,
        name: str,
        depth: int,
        hold: Callable[[], bool] | None = None,
    ) -> None:
        self._send = send
        self._commit = commit
        self._hold = hold
        self._name = name
        self._depth = max(1, depth)
        self._changed = threading.Condition()
        self._to_send: deque[tuple[int, T]] = deque()
        self._sending: tuple[int, T] | None = None
        self._answered: deque[tuple[int, T, R]] = deque()
        self._committing: int | None = None  # the tag of the item being committed
        self._allowed: float = float("-inf")
        self._closing = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._failed = False  # stays set once the error is handed over
        self.held = 0

    def submit(self, item: T, tag: int) -> None:
        """Queue an item (waits while `depth` items wait to be sent)."""
        with self._changed:
            self._raise_if_failed()
            if self._failed:
                raise RuntimeError(f"{self._name} stopped after an earlier error")
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            while len(self._to_send) >= self._depth and not self._failed:
                self._changed.wait()
            self._raise_if_failed()
            self._to_send.append((tag, item))
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
            while not self._failed and (self._to_send or self._sending is not None):
                self._changed.wait()
            self._raise_if_failed()

    def close(self) -> None:
        """Allow every commit, wait until all items are done; raise the worker's error if any."""
        with self._changed:
            thread = self._thread
            self._allowed = float("inf")
            self._closing = True
            self._changed.notify_all()
        if thread is not None:
            thread.join()
            self._thread = None
        with self._changed:
            self._raise_if_failed()

    def _oldest_uncommitted(self) -> float:
        tags = [tag for tag, _ in self._to_send]
        if self._sending is not None:
            tags.append(self._sending[0])
        if self._committing is not None:
            tags.append(self._committing)
        tags += [tag for tag, _, _ in self._answered]
        return min(tags, default=float("inf"))

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        changed = self._changed
        while True:
            with changed:
                commit: tuple[int, T, R] | None = None
                send: tuple[int, T] | None = None
                while commit is None and send is None:
                    if self._failed:
                        self.held += len(self._to_send)
                        self._to_send.clear()
                        self._answered.clear()
                        changed.notify_all()
                        return
                    if self._answered and self._answered[0][0] <= self._allowed:
                        commit = self._answered.popleft()
                        self._committing = commit[0]
                    elif self._to_send:
                        send = self._to_send.popleft()
                        changed.notify_all()  # room in the queue
                        if self._hold is not None and self._hold():
                            self.held += 1
                            send = None
                        else:
                            self._sending = send
                    elif self._closing:
                        return
                    else:
                        changed.wait()
            try:
                if commit is not None:
                    self._commit(commit[1], commit[2])
                    done: tuple[int, T, R] | None = None
                else:
                    assert send is not None
                    done = (send[0], send[1], self._send(send[1]))
            except BaseException as exc:  # handed to the caller's thread, which raises it
                with changed:
                    self._error, self._failed = exc, True
                    self._sending = None
                    self._committing = None
                    changed.notify_all()
                continue
            with changed:
                if done is not None:
                    self._answered.append(done)
                self._sending = None
                self._committing = None
                changed.notify_all()
