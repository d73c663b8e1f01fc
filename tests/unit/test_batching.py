from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import pytest

from tajo_braze.batching import GatedCommits, InOrderSender, chunked, prefetched, with_last


def test_chunks_keep_order_and_the_last_one_is_short() -> None:
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked([], 3)) == []


def test_with_last_flags_only_the_last_item() -> None:
    assert list(with_last("abc")) == [("a", False), ("b", False), ("c", True)]
    assert list(with_last([])) == []


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


class GateLog:
    """A GatedCommits whose sends and commits are logged, and whose sends wait for a go-ahead."""

    def __init__(
        self,
        *,
        depth: int = 8,
        hold: threading.Event | None = None,
        senders: int = 1,
        touches: Callable[[int], list[str]] | None = None,
    ) -> None:
        self.events: list[str] = []
        self.started: list[int] = []
        self.commit_calls: list[list[int]] = []
        self.seen_at_start: dict[int, list[str]] = {}  # the events logged when each send began
        self.lock = threading.Lock()
        self.go: dict[int, threading.Event] = {}
        self.answered = threading.Semaphore(0)
        self.sending = threading.Semaphore(0)
        self.sender: GatedCommits[int, str] = GatedCommits(
            self.send,
            self.commit,
            name="t",
            depth=depth,
            senders=senders,
            touches=touches,
            hold=hold.is_set if hold else None,
        )

    def send(self, item: int) -> str:
        with self.lock:
            self.started.append(item)
            self.seen_at_start[item] = list(self.events)
        self.sending.release()
        self.go.setdefault(item, threading.Event()).wait(timeout=30)
        self.log(f"sent {item}")
        self.answered.release()
        if item < 0:
            raise ValueError(f"item {item} refused")
        return f"answer {item}"

    def commit(self, answered: Sequence[tuple[int, str]]) -> None:
        self.commit_calls.append([item for item, _ in answered])
        for item, answer in answered:
            self.log(f"committed {item} ({answer})")

    def log(self, event: str) -> None:
        with self.lock:
            self.events.append(event)

    def release(self, *items: int) -> None:
        for item in items:
            self.go.setdefault(item, threading.Event()).set()


def test_gated_commits_send_ahead_but_commit_only_what_was_allowed() -> None:
    gate = GateLog()
    gate.release(1, 2, 3)
    gate.sender.submit(1, tag=0)
    gate.sender.submit(2, tag=1)
    gate.sender.submit(3, tag=1)
    for _ in range(3):
        assert gate.answered.acquire(timeout=30)
    gate.sender.wait_sent()
    assert gate.events == ["sent 1", "sent 2", "sent 3"]  # answered, none committed yet

    gate.sender.allow(0)
    gate.sender.wait_committed(0)
    assert gate.events[3:] == ["committed 1 (answer 1)"]
    gate.sender.close()  # closing allows everything left
    assert gate.events[4:] == ["committed 2 (answer 2)", "committed 3 (answer 3)"]
    assert gate.commit_calls == [[1], [2, 3]]  # what a gate lets through at once is committed at once
    assert gate.sender.held == 0


def test_waiting_for_a_tag_waits_for_its_send_and_commit_only() -> None:
    gate = GateLog()
    gate.sender.allow(5)
    gate.sender.submit(1, tag=0)
    gate.sender.submit(2, tag=3)  # not released until the wait below has returned

    def wait() -> None:
        gate.sender.wait_committed(0)
        gate.log("wait returned")

    waiting = threading.Thread(target=wait)
    waiting.start()
    gate.release(1)
    waiting.join(timeout=30)
    assert gate.events == ["sent 1", "committed 1 (answer 1)", "wait returned"]
    gate.release(2)
    gate.sender.close()
    assert gate.events[3:] == ["sent 2", "committed 2 (answer 2)"]


def test_gated_commits_stop_at_the_first_error_and_raise_it_once() -> None:
    gate = GateLog()
    gate.release(1, -2, 3)
    gate.sender.allow(9)
    for item in (1, -2, 3):
        gate.sender.submit(item, tag=0)
    with pytest.raises(ValueError, match="item -2 refused"):
        gate.sender.wait_committed(0)
    assert gate.events == ["sent 1", "committed 1 (answer 1)", "sent -2"]
    assert gate.sender.held == 1
    gate.sender.close()  # the error was raised once
    with pytest.raises(RuntimeError, match="earlier error"):
        gate.sender.submit(4, tag=1)


def test_gated_commits_hold_back_unsent_items_on_a_stop_but_commit_what_was_answered() -> None:
    stop = threading.Event()
    gate = GateLog(hold=stop)
    gate.release(1)
    gate.sender.submit(1, tag=0)
    assert gate.answered.acquire(timeout=30)
    gate.sender.wait_sent()
    stop.set()
    gate.sender.submit(2, tag=0)
    gate.sender.close()
    assert gate.events == ["sent 1", "committed 1 (answer 1)"] and gate.sender.held == 1


def test_several_senders_send_at_once_and_commit_in_the_order_given() -> None:
    gate = GateLog(senders=3)
    gate.sender.allow(0)
    for item in (1, 2, 3):
        gate.sender.submit(item, tag=0)
    for _ in range(3):
        assert gate.sending.acquire(timeout=30)
    assert sorted(gate.started) == [1, 2, 3]  # all three in flight, none answered
    gate.release(3)
    assert gate.answered.acquire(timeout=30)
    gate.release(2)
    assert gate.answered.acquire(timeout=30)
    assert gate.events == ["sent 3", "sent 2"]  # answered out of order, nothing committed before 1
    gate.release(1)
    gate.sender.close()
    assert gate.events[2:] == ["sent 1", "committed 1 (answer 1)", "committed 2 (answer 2)", "committed 3 (answer 3)"]


def test_an_item_touching_what_an_item_in_flight_touches_waits_for_its_answer() -> None:
    gate = GateLog(senders=3, touches=lambda item: ["profile-a"] if item in (1, 2) else [f"profile-{item}"])
    gate.sender.allow(0)
    for item in (1, 2, 3):
        gate.sender.submit(item, tag=0)
    gate.release(1, 2, 3)
    gate.sender.close()
    # 2 writes what 1 writes: it began only once 1 was answered, and 3 (given after it) too.
    assert gate.started[0] == 1 and sorted(gate.started) == [1, 2, 3]
    assert "sent 1" in gate.seen_at_start[2] and "sent 1" in gate.seen_at_start[3]
    commits = [event for event in gate.events if event.startswith("committed")]
    assert commits == ["committed 1 (answer 1)", "committed 2 (answer 2)", "committed 3 (answer 3)"]


def test_answers_arriving_after_an_error_are_not_committed() -> None:
    gate = GateLog(senders=2)
    gate.sender.allow(9)
    gate.sender.submit(-1, tag=0)
    gate.sender.submit(2, tag=0)
    for _ in range(2):
        assert gate.sending.acquire(timeout=30)
    gate.release(-1)
    with pytest.raises(ValueError, match="item -1 refused"):
        gate.sender.wait_committed(0)
    gate.release(2)
    gate.sender.close()
    assert "committed 2 (answer 2)" not in gate.events


def test_waiting_for_writes_to_some_records_waits_only_for_the_items_touching_them() -> None:
    gate = GateLog(senders=2, touches=lambda item: [f"profile-{item}"])
    gate.sender.allow(9)
    gate.sender.submit(1, tag=0)
    gate.sender.submit(2, tag=0)
    for _ in range(2):
        assert gate.sending.acquire(timeout=30)

    def wait() -> None:
        gate.sender.wait_sent_touching(["profile-2"])
        gate.log("wait returned")

    waiting = threading.Thread(target=wait)
    waiting.start()
    gate.release(2)
    waiting.join(timeout=30)
    assert not waiting.is_alive()
    assert gate.events[:1] == ["sent 2"] and "wait returned" in gate.events and "sent 1" not in gate.events
    gate.release(1)
    gate.sender.close()
    gate.sender.wait_sent_touching(["profile-1", "profile-2"])  # nothing in flight: returns at once
    assert [e for e in gate.events if e.startswith("committed")] == ["committed 1 (answer 1)", "committed 2 (answer 2)"]
