"""Pure pieces of the Brevo -> Braze half: per-field diff, consent, lists, echo detection, packing."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tajo_braze.consent import ConsentRecord
from tajo_braze.mapping import CompiledMapping, load_mapping
from tajo_braze.models import BrevoContact, ResourceResult, TrackError, TrackResult
from tajo_braze.state import StateStore
from tajo_braze.sync.brevo_view import identity_key
from tajo_braze.sync.contacts import (
    FIELDS,
    ContactInputs,
    ContactMemory,
    Counters,
    PendingUpdate,
    PlanRules,
    TrackWriter,
    braze_identifier,
    braze_value,
    brevo_change_wins,
    changed_fields,
    choose_who,
    consent_step,
    list_operations,
    merge_missing,
    plan_contact,
    same_value,
    state_key,
    track_batch_size,
    unattributed_failures,
)
from tajo_braze.sync.context import SyncContext
from tajo_braze.sync.deletions import braze_delete_batches
from tajo_braze.sync.settle import BrevoCatchUp

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=1)


@pytest.fixture(scope="module")
def mapping() -> CompiledMapping:
    return load_mapping(str(ROOT / "mappings" / "default.yaml"), base_dir=ROOT)


def rules(mapping: CompiledMapping, **overrides: Any) -> PlanRules:
    conflicts = {r.braze: r.conflict for r in mapping.rules if r.to_braze}
    conflicts.update(overrides.pop("conflicts", {}))
    return PlanRules(
        conflicts=conflicts,
        sent_by_braze=frozenset(
            {"email", "phone"} | {r.braze for r in mapping.rules if r.to_brevo and r.braze != "external_id"}
        ),
        lists_attribute="brevo_lists",
        allow_resubscribe=overrides.pop("allow_resubscribe", False),
    )


def contact(
    *,
    cid: int = 42,
    email: str | None = "ann@example.com",
    ext_id: str | None = "u-1",
    blacklisted: bool = False,
    lists: tuple[int, ...] = (),
    modified: datetime = T0,
    **attributes: Any,
) -> BrevoContact:
    attrs = dict(attributes)
    if ext_id is not None:
        attrs["EXT_ID"] = ext_id
    return BrevoContact(
        id=cid,
        email=email,
        ext_id=ext_id,
        email_blacklisted=blacklisted,
        sms_blacklisted=False,
        created_at=T0 - timedelta(days=30),
        modified_at=modified,
        list_ids=lists,
        attributes=attrs,
    )


def inputs(
    mapping: CompiledMapping,
    brevo: BrevoContact,
    *,
    memory: ContactMemory | None = None,
    lists: tuple[str, ...] = (),
    echo: bool = False,
    braze_unsubscribed_by: str | None = None,
    consent: ConsentRecord | None = None,
    braze_now: Mapping[str, Any] | None = None,
) -> ContactInputs:
    who = choose_who(brevo, memory, None, "brevo_contact_id")
    return ContactInputs(
        contact=brevo,
        fields=mapping.to_braze(brevo),
        lists=lists,
        memory=memory,
        who=who,
        identity_key=identity_key(brevo),
        braze_echo=echo,
        braze_unsubscribed_by=braze_unsubscribed_by,
        consent=consent,
        braze_now=braze_now,
    )


# ------------------------------------------------------------------ values and fields
def test_values_compare_with_the_types_that_matter() -> None:
    assert same_value(5, 5.0)
    assert not same_value(True, 1)
    assert not same_value("5", 5)
    assert same_value(["a"], ["a"])
    assert same_value(None, None) and not same_value(None, "")
    assert same_value(1, 1.0) and same_value(2.5, 2.5) and not same_value(1, 1.5)
    assert not same_value(False, 0) and not same_value(0.0, False) and same_value(False, False)
    assert not same_value({"a": 1}, ["a"]) and same_value({"a": 1}, {"a": 1})


def test_only_news_for_braze_is_changed() -> None:
    current = {"first_name": "Ann", "last_name": "Lee", "loyalty_points": 10, "email": "ann@example.com"}
    read = {"first_name": "Ann", "last_name": "Li", "loyalty_points": 9}
    known = {"last_name": "Lee", "email": "old@example.com"}
    # first_name unchanged since the last read; last_name is what Braze holds (an echo).
    assert changed_fields(current, read, known) == {"loyalty_points": 10, "email": "ann@example.com"}


def test_conflict_policies() -> None:
    assert brevo_change_wins("brevo_wins", braze_changed=True)
    assert brevo_change_wins("latest", braze_changed=False)
    assert brevo_change_wins("braze_wins", braze_changed=False)
    assert not brevo_change_wins("braze_wins", braze_changed=True)


@given(
    st.lists(st.sampled_from("abcdefgh"), max_size=8, unique=True),
    st.lists(st.sampled_from("abcdefgh"), max_size=8, unique=True),
)
def test_list_operations_take_braze_from_last_to_current(current: list[str], last: list[str]) -> None:
    operations = list_operations(current, last)
    if set(current) == set(last):
        assert operations is None
        return
    assert operations is not None
    result = (set(last) | set(operations.get("add", []))) - set(operations.get("remove", []))
    assert result == set(current)
    assert all(operations[k] for k in operations)  # no empty add/remove arrays are sent


@given(
    st.lists(st.integers(0, 10**6), max_size=60, unique=True),
    st.lists(st.integers(0, 10**6), max_size=60, unique=True),
)
def test_merge_missing_is_a_sorted_set_difference(known: list[int], present: list[int]) -> None:
    known_keys = sorted(state_key(i) for i in known)
    present_keys = sorted(state_key(i) for i in present)
    assert list(merge_missing(known_keys, present_keys)) == sorted(set(known_keys) - set(present_keys))


def test_nested_custom_attribute_values_are_read_with_dots() -> None:
    data = {"first_name": "Ann", "custom_attributes": {"address": {"city": "Lyon"}, "plain": 3}}
    assert braze_value(data, "address.city", custom=True) == "Lyon"
    assert braze_value(data, "plain", custom=True) == 3
    assert braze_value(data, "first_name", custom=False) == "Ann"
    assert braze_value(data, "missing.key", custom=True) is None


# ------------------------------------------------------------------ identity
def test_identity_follows_ext_id_then_the_claimed_profile_then_an_alias() -> None:
    with_ext = contact()
    assert choose_who(with_ext, None, None, "lbl") == ("external_id", "u-1")
    bare = contact(ext_id=None)
    assert choose_who(bare, None, "ext:u-9", "lbl") == ("external_id", "u-9")
    assert choose_who(bare, None, "braze:abc", "lbl") == ("braze_id", "abc")
    assert choose_who(bare, None, None, "lbl") == ("user_alias", "42", "lbl")
    remembered = ContactMemory("email:ann@example.com", ("user_alias", "42", "old"), {}, {}, (), None)
    assert choose_who(bare, remembered, "ext:u-9", "lbl") == ("user_alias", "42", "old")
    assert identity_key(with_ext) == "ext:u-1"
    assert identity_key(contact(ext_id=None, email="Ann@Example.com")) == "email:ann@example.com"
    assert identity_key(contact(ext_id=None, email=None, SMS="33612345678")) == "sms:+33612345678"


def test_alias_writes_create_the_profile() -> None:
    assert braze_identifier(("external_id", "u-1")) == {"external_id": "u-1"}
    assert braze_identifier(("user_alias", "42", "brevo_contact_id")) == {
        "user_alias": {"alias_name": "42", "alias_label": "brevo_contact_id"},
        "_update_existing_only": False,
    }


def test_memory_round_trips_through_state() -> None:
    memory = ContactMemory("ext:u-1", ("external_id", "u-1"), {"first_name": "A"}, {"x": 1}, ("News",), True)
    assert ContactMemory.from_value(memory.as_value()) == memory
    assert ContactMemory.from_value({"nope": 1}) is None


# ------------------------------------------------------------------ consent
def record(state: str, at: datetime, source: str = "brevo") -> ConsentRecord:
    return ConsentRecord(state, at, source)  # type: ignore[arg-type]


def test_a_brevo_blocklisting_unsubscribes_braze_once() -> None:
    step = consent_step(
        blacklisted=True, previously_blacklisted=False, braze_unsubscribed_by=None, known=None,
        at=T0, allow_resubscribe=False,
    )  # fmt: skip
    assert step.write == "unsubscribed" and step.record == record("unsubscribed", T0)
    again = consent_step(
        blacklisted=True, previously_blacklisted=True, braze_unsubscribed_by="brevo",
        known=record("unsubscribed", T0), at=NOW, allow_resubscribe=False,
    )  # fmt: skip
    assert again.write is None and again.record is None


def test_a_blocklisting_that_came_from_braze_is_not_sent_back() -> None:
    step = consent_step(
        blacklisted=True, previously_blacklisted=None, braze_unsubscribed_by="braze", known=None,
        at=T0, allow_resubscribe=False,
    )  # fmt: skip
    assert step.write is None and step.record == record("unsubscribed", T0, "braze")


def test_a_stale_subscribe_never_resubscribes() -> None:
    known = record("unsubscribed", NOW)
    for allow in (False, True):
        step = consent_step(
            blacklisted=False, previously_blacklisted=True, braze_unsubscribed_by="brevo", known=known,
            at=T0, allow_resubscribe=allow,
        )  # fmt: skip
        assert step.write is None and step.record is None
    # Brevo never showed the unsubscribe (no transition): a "subscribed" there is not a re-subscribe.
    step = consent_step(
        blacklisted=False, previously_blacklisted=False, braze_unsubscribed_by="braze", known=known,
        at=NOW + timedelta(days=1), allow_resubscribe=True,
    )  # fmt: skip
    assert step.write is None


def test_a_newer_resubscribe_crosses_only_when_allowed() -> None:
    known = record("unsubscribed", T0)
    refused = consent_step(
        blacklisted=False, previously_blacklisted=True, braze_unsubscribed_by="brevo", known=known,
        at=NOW, allow_resubscribe=False,
    )  # fmt: skip
    assert refused.write is None
    allowed = consent_step(
        blacklisted=False, previously_blacklisted=True, braze_unsubscribed_by="brevo", known=known,
        at=NOW, allow_resubscribe=True,
    )  # fmt: skip
    assert allowed.write == "subscribed" and allowed.record == record("subscribed", NOW)


# ------------------------------------------------------------------ one contact's plan
def test_first_sight_sends_every_field_and_the_lists(mapping: CompiledMapping) -> None:
    brevo = contact(FIRSTNAME="Ann", LASTNAME="Lee", LOYALTY_POINTS=12)
    plan = plan_contact(inputs(mapping, brevo, lists=("Newsletter",)), rules(mapping), now=NOW)
    assert plan.first_sight
    assert plan.attributes == {
        "email": "ann@example.com",
        "first_name": "Ann",
        "last_name": "Lee",
        "loyalty_points": "12",  # a text attribute in the default mapping
        "brevo_lists": {"add": ["Newsletter"]},
    }
    assert plan.memory.read == mapping.to_braze(brevo)
    assert plan.memory.lists == ("Newsletter",)


def test_what_a_write_changes_is_described_only_when_asked(mapping: CompiledMapping) -> None:
    first = plan_contact(inputs(mapping, contact(FIRSTNAME="Ann")), rules(mapping), now=NOW)
    changed = inputs(mapping, contact(FIRSTNAME="Anna"), memory=first.memory)
    described = plan_contact(changed, rules(mapping), now=NOW)
    assert described.changes == {"first_name": {"from": "Ann", "to": "Anna"}}
    quiet_rules = dataclasses.replace(rules(mapping), describe_changes=False)
    plain = plan_contact(changed, quiet_rules, now=NOW)
    assert plain.changes == {}
    assert (plain.attributes, plain.memory) == (described.attributes, described.memory)


def test_an_echo_of_braze_is_remembered_and_not_sent(mapping: CompiledMapping) -> None:
    brevo = contact(FIRSTNAME="Ann", LASTNAME="Lee")
    plan = plan_contact(inputs(mapping, brevo, echo=True), rules(mapping), now=NOW)
    assert plan.attributes == {}
    assert plan.memory.known["first_name"] == "Ann"


def test_only_the_changed_attribute_is_sent(mapping: CompiledMapping) -> None:
    before = contact(FIRSTNAME="Ann", LASTNAME="Lee", lists=(3,))
    first = plan_contact(inputs(mapping, before, lists=("News",)), rules(mapping), now=NOW)
    after = contact(FIRSTNAME="Anna", LASTNAME="Lee", lists=(3, 4))
    second = plan_contact(
        inputs(mapping, after, memory=first.memory, lists=("News", "VIP")), rules(mapping), now=NOW
    )
    assert second.attributes == {"first_name": "Anna", "brevo_lists": {"add": ["VIP"]}}
    assert not second.first_sight
    third = plan_contact(
        inputs(mapping, after, memory=second.memory, lists=("VIP",)), rules(mapping), now=NOW
    )
    assert third.attributes == {"brevo_lists": {"remove": ["News"]}}
    # Touched again without a change (Brevo bumps modifiedAt for list changes and imports): nothing.
    fourth = plan_contact(
        inputs(mapping, after, memory=third.memory, lists=("VIP",)), rules(mapping), now=NOW
    )
    assert fourth.attributes == {}


def test_our_own_write_read_back_is_not_sent_again(mapping: CompiledMapping) -> None:
    first = plan_contact(inputs(mapping, contact(FIRSTNAME="Ann")), rules(mapping), now=NOW)
    # Brevo goes back and forth; a value Braze already holds from us is not written twice.
    away = plan_contact(
        inputs(mapping, contact(FIRSTNAME="Bo"), memory=first.memory), rules(mapping), now=NOW
    )
    back = plan_contact(
        inputs(mapping, contact(FIRSTNAME="Ann"), memory=away.memory), rules(mapping), now=NOW
    )
    assert away.attributes == {"first_name": "Bo"}
    assert back.attributes == {"first_name": "Ann"}  # Braze holds "Bo" now, so "Ann" is news again
    same = plan_contact(
        inputs(mapping, contact(FIRSTNAME="Ann"), memory=back.memory), rules(mapping), now=NOW
    )
    assert same.attributes == {}


def test_a_blocklisted_contact_unsubscribes_and_says_why(mapping: CompiledMapping) -> None:
    base = plan_contact(inputs(mapping, contact(FIRSTNAME="Ann"), echo=True), rules(mapping), now=NOW)
    plan = plan_contact(
        inputs(mapping, contact(FIRSTNAME="Ann", blacklisted=True, modified=NOW), memory=base.memory),
        rules(mapping),
        now=NOW,
    )
    assert plan.attributes == {"email_subscribe": "unsubscribed"}
    assert plan.consent == record("unsubscribed", NOW)
    assert plan.memory.known["email_subscribe"] == "unsubscribed"


def test_braze_wins_asks_braze_first_then_holds_back(mapping: CompiledMapping) -> None:
    policy = rules(mapping, conflicts={"first_name": "braze_wins"})
    base = plan_contact(inputs(mapping, contact(FIRSTNAME="Ann"), echo=True), policy, now=NOW)
    changed = contact(FIRSTNAME="Anna", LASTNAME="Lee")
    ask = plan_contact(inputs(mapping, changed, memory=base.memory), policy, now=NOW)
    assert ask.needs_lookup == ("first_name",) and ask.attributes == {}
    # Braze moved too: Braze wins, the rest of the contact still goes.
    held = plan_contact(
        inputs(mapping, changed, memory=base.memory, braze_now={"first_name": "Annie"}), policy, now=NOW
    )
    assert held.held_back == ("first_name",) and held.attributes == {"last_name": "Lee"}
    # Braze still holds what we knew: Brevo's change goes through.
    passed = plan_contact(
        inputs(mapping, changed, memory=base.memory, braze_now={"first_name": "Ann"}), policy, now=NOW
    )
    assert passed.attributes == {"first_name": "Anna", "last_name": "Lee"}


def test_a_new_braze_profile_starts_over(mapping: CompiledMapping) -> None:
    aliased = contact(ext_id=None, FIRSTNAME="Ann")
    first = plan_contact(inputs(mapping, aliased), rules(mapping), now=NOW)
    assert first.memory.who[0] == "user_alias"
    identified = contact(ext_id="u-7", FIRSTNAME="Ann")
    again = plan_contact(inputs(mapping, identified, memory=first.memory), rules(mapping), now=NOW)
    assert again.first_sight and again.attributes["first_name"] == "Ann"


# ------------------------------------------------------------------ packing and errors
def test_track_batches_respect_75_and_contract_caps() -> None:
    assert track_batch_size(75, None, None) == 75
    assert track_batch_size(200, None, None) == 75
    assert track_batch_size(75, 50, None) == 50
    assert track_batch_size(75, 50, 10) == 10
    assert track_batch_size(0, None, None) == 1


def test_partial_errors_map_back_to_their_objects() -> None:
    answer = TrackResult(
        3, 0, 0,
        (TrackError("'email' has an invalid local part", "attributes", 1), TrackError("bad event", "events", 0)),
    )  # fmt: skip
    assert unattributed_failures(answer, 4) == {
        1: "Braze refused the attributes: 'email' has an invalid local part"
    }
    vague = TrackResult(4, 0, 0, (TrackError("something went wrong", None, None),))
    assert set(unattributed_failures(vague, 4)) == {0, 1, 2, 3}


@given(st.integers(0, 400))
def test_deletion_calls_hold_at_most_50_of_one_kind(n: int) -> None:
    whos = [("external_id", f"u{i}") if i % 3 else ("user_alias", str(i), "lbl") for i in range(n)]
    batches = braze_delete_batches(whos)
    assert all(1 <= len(items) <= 50 for _, items in batches)
    assert sum(len(items) for _, items in batches) == n
    expected = math.ceil(sum(1 for w in whos if w[0] == "external_id") / 50) + math.ceil(
        sum(1 for w in whos if w[0] == "user_alias") / 50
    )
    assert len(batches) == expected


names = st.sampled_from(["Ann", "Bo", "Cy", ""])
lists = st.lists(st.sampled_from(["News", "VIP", "Customers"]), unique=True, max_size=3).map(tuple)


@given(
    first=names,
    last=names,
    points=st.integers(0, 50),
    blacklisted=st.booleans(),
    member_of=lists,
    echo=st.booleans(),
)
def test_a_contact_synced_once_has_nothing_left_to_send(
    mapping: CompiledMapping,
    first: str,
    last: str,
    points: int,
    blacklisted: bool,
    member_of: tuple[str, ...],
    echo: bool,
) -> None:
    brevo = contact(FIRSTNAME=first, LASTNAME=last, LOYALTY_POINTS=points, blacklisted=blacklisted)
    once = plan_contact(inputs(mapping, brevo, lists=member_of, echo=echo), rules(mapping), now=NOW)
    again = plan_contact(inputs(mapping, brevo, memory=once.memory, lists=member_of), rules(mapping), now=NOW)
    assert again.attributes == {}
    assert again.memory == once.memory
    if echo and not member_of and not blacklisted:
        assert once.attributes == {}  # all of it came from Braze


class RecordingBraze:
    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def track(self, *, attributes: list[dict[str, Any]]) -> TrackResult:
        self.calls.append(attributes)
        return TrackResult(len(attributes), 0, 0)


def test_two_writes_to_one_profile_in_one_track_call_are_both_committed(
    mapping: CompiledMapping, tmp_path: Path
) -> None:
    # Two Brevo contacts for one Braze person (one by ext_id, one by the email it claims).
    braze = RecordingBraze()
    ctx = SyncContext(
        config=SimpleNamespace(sync=SimpleNamespace(track_batch_size=75, track_objects_cap=None)),  # type: ignore[arg-type]
        mapping=mapping, state=StateStore(tmp_path / "state.db"), braze=braze,  # type: ignore[arg-type]
        brevo=None, braze_session=None, logger=None, work_dir=tmp_path,  # type: ignore[arg-type]
    )
    result = ResourceResult("users", direction="brevo_to_braze")
    writer = TrackWriter(ctx, result, Counters(), BrevoCatchUp(ctx, writes=False))
    writer.begin_chunk(0)
    updates = []
    for brevo in (contact(cid=1, email=None, FIRSTNAME="By ext_id"), contact(cid=2, ext_id=None, FIRSTNAME="By email")):
        item = dataclasses.replace(inputs(mapping, brevo), who=("external_id", "u-1"))
        plan = plan_contact(item, rules(mapping), now=NOW)
        updates.append(PendingUpdate(brevo, plan, {**braze_identifier(item.who), **plan.attributes}, None))
    writer.planned(0, last=True)
    for update in updates:
        writer.add(update)
    writer.flush()
    writer.close()
    assert [len(call) for call in braze.calls] == [2]
    assert result.created == 2 and result.failed == 0
    stored = ctx.state.get_field_values(FIELDS, [state_key(1), state_key(2)])
    assert sorted(stored) == [state_key(1), state_key(2)]
    writer.wait_for_writes_to([("external_id", "u-1")])  # nothing left unanswered: no wait
