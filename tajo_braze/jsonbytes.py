"""JSON to bytes: orjson for speed, the standard library for what orjson refuses.

orjson stops at 64-bit integers; user data can hold larger ones (a phone typed as a number, an
order id), and a run must not crash on one record's odd value.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except TypeError:
        text = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False, default=str)
        return text.encode("utf-8")
