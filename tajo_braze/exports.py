"""Braze segment exports: wait for the URL, download it guarded, read every NDJSON member line by line.

Braze answers /users/export/segment with a URL at once; the URL answers AccessDenied until the export
is done, then serves a ZIP of several newline-delimited JSON files for about four hours. Nothing here
trusts the archive: size, member count, compression ratio and member names are all checked.
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

from .errors import PermanentApiError, TransientApiError

EXPORT_URL_LIFETIME_S = 4 * 3600
# Resume an export only while its URL has comfortably more than an hour left.
EXPORT_REUSE_MAX_AGE_S = 3 * 3600


READ_BLOCK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ExportLimits:
    max_download_bytes: int = 20 * 1024**3
    max_members: int = 100_000
    max_uncompressed_bytes: int = 200 * 1024**3
    max_compression_ratio: float = 200.0
    max_line_bytes: int = 16 * 1024**2


@dataclass(frozen=True, slots=True)
class ExportLine:
    member: int
    line: int
    raw: bytes


class UnsafeExport(PermanentApiError):
    """The archive Braze served breaks a safety limit; nothing from it is trusted."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"The segment export archive was refused: {why}.",
            api="braze",
            fix="Retry the sync; if it happens again, export a smaller segment (split by random_bucket).",
        )


class ExportDownloader(Protocol):
    def probe_url(self, url: str) -> int: ...

    def stream_get(self, url: str, *, max_bytes: int, chunk_size: int = ...) -> Iterator[bytes]: ...


def wait_until_ready(
    session: ExportDownloader,
    url: str,
    *,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    first_delay_s: float = 0.05,
    max_delay_s: float = 1.0,
) -> int:
    """Poll the export URL with capped exponential backoff until it stops answering AccessDenied.

    The cap is short (1 s) because every second polled past readiness is a second of the run lost,
    while a poll is one GET of a not-yet-existing object at the storage host, not a Braze API call:
    an hour-long export costs 3,600 of them.

    Returns the number of polls. There is no status endpoint: a 403/404 means "not ready yet".
    """
    deadline = clock() + timeout_s
    delay = first_delay_s
    polls = 0
    while True:
        polls += 1
        try:
            status = session.probe_url(url)
        except ValueError as exc:  # a URL we refuse to call (plain http off loopback, not a URL)
            raise UnsafeExport(str(exc)) from None
        if 200 <= status < 300:
            return polls
        if status not in (403, 404):
            raise TransientApiError(
                f"The segment export URL answered {status} while waiting for it to become ready.",
                api="braze",
                status=status,
                fix="Retry the sync; the export may have expired or failed (Braze reports failures by email).",
            )
        if clock() + delay > deadline:
            raise TransientApiError(
                f"The segment export was not ready after {timeout_s:.0f} s.",
                api="braze",
                status=status,
                fix="Large segments can take an hour or more: raise sync.export_timeout_s, or retry later; "
                "the run resumes the same export while its URL is valid.",
            )
        sleep(delay)
        delay = min(delay * 2, max_delay_s)


def download_export(
    session: ExportDownloader, url: str, dest: Path, *, limits: ExportLimits = ExportLimits()
) -> Path:
    """Stream the archive to `dest` (via a temporary name, so a partial file is never mistaken for whole)."""
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = dest.with_suffix(dest.suffix + ".part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        try:
            for chunk in session.stream_get(url, max_bytes=limits.max_download_bytes):
                out.write(chunk)
        except ValueError as exc:
            raise UnsafeExport(str(exc)) from None
    os.replace(partial, dest)
    return dest


def _check_member_name(name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (len(name) > 1 and name[1] == ":"):
        raise UnsafeExport(f"member name {name[:80]!r} points outside the archive")


def export_members(archive: zipfile.ZipFile, limits: ExportLimits) -> list[zipfile.ZipInfo]:
    """The data members of the archive, in archive order, after the safety checks."""
    infos = [i for i in archive.infolist() if not i.is_dir()]
    if len(infos) > limits.max_members:
        raise UnsafeExport(f"{len(infos)} members exceed the limit of {limits.max_members}")
    total = 0
    for info in infos:
        _check_member_name(info.filename)
        total += info.file_size
        if info.compress_size and info.file_size / info.compress_size > limits.max_compression_ratio:
            raise UnsafeExport(
                f"member {info.filename[:80]!r} expands {info.file_size / info.compress_size:.0f}x "
                f"(limit {limits.max_compression_ratio:.0f}x)"
            )
    if total > limits.max_uncompressed_bytes:
        raise UnsafeExport(f"{total} uncompressed bytes exceed the limit of {limits.max_uncompressed_bytes}")
    return infos


def export_size(path: Path, *, limits: ExportLimits = ExportLimits()) -> int:
    """Uncompressed bytes of the archive's data members (after the safety checks)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(info.file_size for info in export_members(archive, limits))
    except zipfile.BadZipFile as exc:
        raise UnsafeExport(f"not a ZIP archive ({exc})") from exc


def iter_export_lines(
    path: Path, *, start_member: int = 0, start_line: int = 0, limits: ExportLimits = ExportLimits()
) -> Iterator[ExportLine]:
    """Yield every non-empty line of every member, in order, from (start_member, start_line) on.

    Memory stays flat: members are decompressed as streams, one line at a time. A line longer than
    `max_line_bytes` is yielded truncated to an empty payload so the caller can dead-letter it.
    """
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise UnsafeExport(f"not a ZIP archive ({exc})") from exc
    with archive:
        members = export_members(archive, limits)
        for member_index in range(start_member, len(members)):
            info = members[member_index]
            first = start_line if member_index == start_member else 0
            with archive.open(info) as stream:
                yield from _member_lines(stream, info, member_index, first, limits)


def _member_lines(
    stream: IO[bytes], info: zipfile.ZipInfo, member_index: int, first: int, limits: ExportLimits
) -> Iterator[ExportLine]:
    # Read in large blocks and split: a readline() per line costs more than the rest of the read.
    budget = info.file_size + 1
    longest = limits.max_line_bytes
    line_index = 0
    tail = b""
    too_long = False  # inside a line already known to be over the limit
    while True:
        block = stream.read(READ_BLOCK_BYTES)
        if not block:
            break
        budget -= len(block)
        if budget < 0:
            raise UnsafeExport(f"member {info.filename[:80]!r} is larger than it declares")
        parts = (tail + block if tail else block).split(b"\n")
        tail = parts.pop()
        for part in parts:
            if too_long or len(part) + 1 > longest:
                too_long = False
                if line_index >= first:
                    yield ExportLine(member_index, line_index, b"")  # the caller dead-letters it
            elif line_index >= first and part.strip():
                yield ExportLine(member_index, line_index, part + b"\n")
            line_index += 1
        if len(tail) > longest:
            # Drop the over-long line's bytes as they come instead of holding them.
            too_long, tail = True, b""
    if too_long or len(tail) > longest:
        if line_index >= first:
            yield ExportLine(member_index, line_index, b"")
    elif tail and line_index >= first and tail.strip():
        yield ExportLine(member_index, line_index, tail)
