"""Fewer garbage collections while a read streams records through the interpreter.

A first Brevo -> Braze read allocates tens of millions of short-lived objects while tens of
thousands more (pages read ahead, batches in flight) live for seconds. At CPython's default
thresholds (a young collection every 700 net allocations) those survivors are promoted again and
again, and the full collections that follow traverse every object of the process with the
interpreter stopped: at 1M contacts, 223 full collections took 9.0 s of the read and all
collections 14.7 s. Raised thresholds let the short-lived objects die young first.

The thresholds are process-wide: they are raised for the read and put back afterwards, and a
host that chose its own (higher ones, or no automatic collection) keeps them.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

READ_THRESHOLDS = (10_000, 10, 10)


@contextlib.contextmanager
def fewer_collections(thresholds: tuple[int, int, int] = READ_THRESHOLDS) -> Iterator[None]:
    before = gc.get_threshold()
    if not gc.isenabled() or before[0] == 0 or before[0] >= thresholds[0]:
        yield  # the host's own policy, or a read already under way in another thread
        return
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        if gc.get_threshold() == thresholds:  # not changed by anyone else meanwhile
            gc.set_threshold(*before)
