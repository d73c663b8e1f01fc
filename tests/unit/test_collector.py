"""The collector's thresholds are raised for a sync and put back, and a host's own choice is kept."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tajo_braze.collector import SYNC_THRESHOLDS, fewer_collections


@pytest.fixture(autouse=True)
def host_defaults() -> Iterator[None]:
    before, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(700, 10, 10)
    gc.enable()
    yield
    gc.set_threshold(*before)
    if not enabled:
        gc.disable()


def test_thresholds_are_raised_for_the_sync_and_put_back() -> None:
    with fewer_collections():
        assert gc.get_threshold() == SYNC_THRESHOLDS
    assert gc.get_threshold() == (700, 10, 10)


def test_they_are_put_back_when_the_sync_fails() -> None:
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("the sync failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_hosts_own_policy_is_kept() -> None:
    gc.set_threshold(50_000, 20, 20)
    with fewer_collections():
        assert gc.get_threshold() == (50_000, 20, 20)
    assert gc.get_threshold() == (50_000, 20, 20)
    gc.disable()
    gc.set_threshold(700, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == (700, 10, 10)


def test_a_change_made_during_the_sync_is_not_undone() -> None:
    with fewer_collections():
        gc.set_threshold(2_000, 10, 10)  # the host changed its mind meanwhile
    assert gc.get_threshold() == (2_000, 10, 10)


def test_overlapping_syncs_leave_the_hosts_thresholds() -> None:
    outer = fewer_collections()
    outer.__enter__()
    with fewer_collections():
        assert gc.get_threshold() == SYNC_THRESHOLDS
    outer.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)
