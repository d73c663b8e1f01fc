from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tajo_braze.batching import chunked, prefetched


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
