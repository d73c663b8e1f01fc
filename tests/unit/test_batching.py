from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tajo_braze.batching import InOrderSender, chunked, prefetched


def test_chunks_keep_order_and_the_last_one_is_short() -> None:
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []


def test_prefetched_items_arrive_in_order_from_another_thread() -> None:
    producers: set[str] = set()

    def items() -> Iterator[int]:
        for i in range(50):
            producers.add(threading.current_thread().name)
            yield i

    assert list(prefetched(items(), depth=3)) == list(range(50))
    assert producers == {"prefetch"}


def test_a_producer_error_is_raised_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("page 3 could not be read")

    seen: list[int] = []
    with pytest.raises(ValueError, match="page 3"):
        for item in prefetched(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_leaving_early_stops_the_producer() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(10_000):
            produced.append(i)
            yield i

    for item in prefetched(items(), depth=2):
        if item == 5:
            break
    # The producer got at most a few items ahead of the consumer, then stopped.
    assert len(produced) <= 5 + 1 + 2 + 2


def test_in_order_sender_does_the_work_in_order_and_runs_after_for_each() -> None:
    done: list[int] = []
    after: list[int] = []
    sender: InOrderSender[int] = InOrderSender(done.append, name="t", after=after.append)
    for i in range(50):
        sender.submit(i)
    sender.close()
    assert done == list(range(50)) and after == list(range(50)) and sender.held == 0


def test_in_order_sender_stops_at_the_first_error_and_raises_it_to_the_caller() -> None:
    done: list[int] = []
    after: list[int] = []
    release = threading.Event()

    def work(item: int) -> None:
        if item == 2:
            raise ValueError("boom")
        if item == 3:
            release.set()
        done.append(item)

    sender: InOrderSender[int] = InOrderSender(work, name="t", after=after.append)
    for i in range(5):
        sender.submit(i)
    with pytest.raises(ValueError, match="boom"):
        sender.close()
    assert done == [0, 1] and not release.is_set()
    assert after == [0, 1, 2, 3, 4] and sender.held == 2
    sender.close()  # the error is raised once


def test_in_order_sender_holds_back_work_while_asked_to() -> None:
    done: list[int] = []
    stop = threading.Event()

    def work(item: int) -> None:
        done.append(item)
        stop.set()  # as a stop request during the first item does

    sender: InOrderSender[int] = InOrderSender(work, name="t", hold=stop.is_set)
    for i in range(4):
        sender.submit(i)
    sender.close()
    assert done == [0] and sender.held == 3
