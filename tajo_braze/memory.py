"""Keeping large, short-lived buffers out of the allocator's heap (glibc only)."""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
LARGE_BLOCK_BYTES = 1 << 20


def map_large_blocks_apart() -> bool:
    """Have blocks of 1 MiB and more mapped on their own, so freeing one returns it to the system.

    By default glibc raises its mapping threshold to the size of the largest block freed (up to
    32 MiB): after the first multi-megabyte import body, every later one is carved from the heap,
    and the heap keeps the pages once it is freed. Over a million-row run that retention adds
    tens of megabytes to the resident size. Returns whether the allocator took the setting.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, LARGE_BLOCK_BYTES))
