from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tajo_braze import exports
from tajo_braze.errors import TransientApiError
from tajo_braze.exports import (
    ExportLimits,
    UnsafeExport,
    download_export,
    iter_export_lines,
    wait_until_ready,
)


def make_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def lines(n: int, start: int = 0) -> bytes:
    return b"".join(b'{"external_id":"u%d"}\n' % i for i in range(start, start + n))


def test_reads_every_member_in_order(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"p/1.txt": lines(3), "p/2.json": lines(2, 3), "p/": b""})
    got = [(line.member, line.line, line.raw.strip()) for line in iter_export_lines(archive)]
    assert [g[:2] for g in got] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert got[-1][2] == b'{"external_id":"u4"}'


def test_resumes_at_member_and_line(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"1.txt": lines(3), "2.txt": lines(3, 3)})
    got = [line.raw for line in iter_export_lines(archive, start_member=1, start_line=1)]
    assert got == [b'{"external_id":"u4"}\n', b'{"external_id":"u5"}\n']


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"1.txt": b'{"a":1}\n\n{"a":2}\n'})
    assert [(line.line, line.raw) for line in iter_export_lines(archive)] == [
        (0, b'{"a":1}\n'),
        (2, b'{"a":2}\n'),
    ]


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/passwd", "a/../../b.txt", "C:/x.txt"])
def test_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    archive = make_zip(tmp_path / "a.zip", {name: lines(1)})
    with pytest.raises(UnsafeExport, match="outside the archive"):
        list(iter_export_lines(archive))


def test_zip_bomb_ratio_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bomb.zip", {"1.txt": b"0" * 5_000_000})
    with pytest.raises(UnsafeExport, match="expands"):
        list(iter_export_lines(archive))


def test_too_many_members_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {f"{i}.txt": lines(1) for i in range(5)})
    with pytest.raises(UnsafeExport, match="members exceed"):
        list(iter_export_lines(archive, limits=ExportLimits(max_members=4)))


def test_total_uncompressed_limit(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"1.txt": lines(100)})
    with pytest.raises(UnsafeExport, match="uncompressed bytes"):
        list(iter_export_lines(archive, limits=ExportLimits(max_uncompressed_bytes=100)))


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"<Error><Code>AccessDenied</Code></Error>")
    with pytest.raises(UnsafeExport, match="not a ZIP"):
        list(iter_export_lines(path))


def test_overlong_line_becomes_an_empty_marker(tmp_path: Path) -> None:
    big = b'{"x":"' + b"a" * 300 + b'"}\n'
    archive = make_zip(tmp_path / "a.zip", {"1.txt": b'{"a":1}\n' + big + b'{"a":2}\n'}, zipfile.ZIP_STORED)
    got = [
        (line.line, line.raw) for line in iter_export_lines(archive, limits=ExportLimits(max_line_bytes=100))
    ]
    assert got == [(0, b'{"a":1}\n'), (1, b""), (2, b'{"a":2}\n')]


def reference_lines(data: bytes, max_line: int, start_line: int = 0) -> list[tuple[int, bytes]]:
    """What a line-by-line reader yields: the behaviour the block reader must keep."""
    out: list[tuple[int, bytes]] = []
    pieces = data.split(b"\n")
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        if last and not piece:
            break
        raw = piece if last else piece + b"\n"
        if index >= start_line:
            if len(raw) > max_line:
                out.append((index, b""))
            elif raw.strip():
                out.append((index, raw))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pieces=st.lists(st.sampled_from([b"a", b"bb", b"\n", b" ", b"xyzxyzxyz", b"\n\n", b"0123456789" * 3]),
                    max_size=80),
    max_line=st.integers(min_value=2, max_value=40),
    block=st.integers(min_value=1, max_value=17),
    start_line=st.integers(min_value=0, max_value=5),
)
def test_block_reads_yield_what_reading_line_by_line_would(
    tmp_path: Path, pieces: list[bytes], max_line: int, block: int, start_line: int
) -> None:
    data = b"".join(pieces)
    archive = make_zip(tmp_path / "p.zip", {"1.txt": data})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exports, "READ_BLOCK_BYTES", block)
        got = [
            (line.line, line.raw)
            for line in iter_export_lines(
                archive, start_line=start_line, limits=ExportLimits(max_line_bytes=max_line)
            )
        ]
    assert got == reference_lines(data, max_line, start_line)


class FakeExportHost:
    def __init__(self, statuses: list[int], body: bytes = b"") -> None:
        self.statuses = statuses
        self.body = body
        self.probes = 0

    def probe_url(self, url: str) -> int:
        self.probes += 1
        return self.statuses.pop(0) if self.statuses else 200

    def stream_get(self, url: str, *, max_bytes: int, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        yield self.body[:10]
        yield self.body[10:]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def test_waits_with_backoff_until_the_url_is_ready() -> None:
    host, clock = FakeExportHost([403, 403, 403, 200]), FakeClock()
    polls = wait_until_ready(host, "https://x", timeout_s=60, sleep=clock.sleep, clock=clock)
    assert polls == 4
    assert clock.sleeps == [0.05, 0.1, 0.2]


def test_the_backoff_is_capped_at_one_second_so_readiness_is_seen_soon() -> None:
    host, clock = FakeExportHost([403] * 12 + [200]), FakeClock()
    wait_until_ready(host, "https://x", timeout_s=600, sleep=clock.sleep, clock=clock)
    assert max(clock.sleeps) == 1.0
    assert clock.sleeps[-5:] == [1.0] * 5


def test_gives_up_at_the_deadline() -> None:
    host, clock = FakeExportHost([403] * 100), FakeClock()
    with pytest.raises(TransientApiError, match="not ready after 5 s"):
        wait_until_ready(host, "https://x", timeout_s=5, sleep=clock.sleep, clock=clock)
    assert clock.now <= 5


def test_unexpected_status_while_waiting_is_an_error() -> None:
    with pytest.raises(TransientApiError, match="answered 500"):
        wait_until_ready(FakeExportHost([500]), "https://x", timeout_s=5, sleep=lambda s: None)


def test_download_writes_atomically_with_private_mode(tmp_path: Path) -> None:
    body = b"PK" + b"x" * 50
    dest = download_export(FakeExportHost([], body), "https://x", tmp_path / "sub" / "e.zip")
    assert dest.read_bytes() == body
    assert dest.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "sub" / "e.zip.part").exists()
