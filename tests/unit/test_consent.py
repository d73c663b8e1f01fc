from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tajo_braze.consent import ConsentRecord, braze_state_is_unsubscribed, decide

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rec(state: str, minutes: int, source: str = "brevo") -> ConsentRecord:
    return ConsentRecord(state, T0 + timedelta(minutes=minutes), source)  # type: ignore[arg-type]


def test_an_unsubscribe_always_crosses_once() -> None:
    assert decide(None, rec("unsubscribed", 0), allow_resubscribe=False).propagate
    assert decide(rec("subscribed", 5), rec("unsubscribed", 0), allow_resubscribe=False).propagate
    again = decide(rec("unsubscribed", 0), rec("unsubscribed", 9, "braze"), allow_resubscribe=False)
    assert not again.propagate and again.record is None


def test_a_stale_subscribe_never_undoes_an_unsubscribe() -> None:
    known = rec("unsubscribed", 10)
    assert not decide(known, rec("subscribed", 5, "braze"), allow_resubscribe=True).propagate
    assert not decide(known, rec("subscribed", 20, "braze"), allow_resubscribe=False).propagate


def test_a_newer_resubscribe_crosses_only_when_allowed() -> None:
    decision = decide(rec("unsubscribed", 10), rec("subscribed", 20, "braze"), allow_resubscribe=True)
    assert decision.propagate and decision.record == rec("subscribed", 20, "braze")


def test_round_trip_of_the_stored_value() -> None:
    record = rec("unsubscribed", 3)
    assert ConsentRecord.from_value(record.as_value()) == record
    assert ConsentRecord.from_value({"state": "maybe"}) is None
    assert ConsentRecord.from_value({"state": "subscribed", "at": "not a date"}) is None


def test_braze_states() -> None:
    assert braze_state_is_unsubscribed("unsubscribed") is True
    assert braze_state_is_unsubscribed("opted_in") is False
    assert braze_state_is_unsubscribed(None) is None


@given(st.lists(st.tuples(st.sampled_from(["unsubscribed", "subscribed"]), st.integers(0, 100)), max_size=30))
def test_without_resubscribe_nothing_ever_subscribes_after_an_unsubscribe(events: list[tuple[str, int]]) -> None:
    known = None
    unsubscribed = False
    for state, minute in events:
        decision = decide(known, rec(state, minute), allow_resubscribe=False)
        if decision.propagate:
            assert state == "unsubscribed"
            assert not unsubscribed
            unsubscribed = True
        if decision.record is not None:
            known = decision.record
        if unsubscribed:
            assert known is not None and known.state == "unsubscribed"
