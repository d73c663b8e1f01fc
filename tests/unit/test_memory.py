"""The allocator setting large users syncs make: taken on glibc, skipped quietly elsewhere."""

from __future__ import annotations

import platform
import sys

import pytest

from tajo_braze import memory


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), reason="glibc only"
)
def test_glibc_takes_the_setting() -> None:
    assert memory.map_large_blocks_apart() is True


def test_other_systems_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.map_large_blocks_apart() is False


def test_a_libc_that_cannot_be_loaded_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(memory.ctypes, "CDLL", missing)
    assert memory.map_large_blocks_apart() is False
