"""Cutting a stream into batches without holding more than one batch, reading ahead, sending behind."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


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
