"""Export lines -> what the users sync may write: parse, skip what is unchanged, map, serialise.

The work per line is pure (plus one read of the fingerprints), so it runs either in the run's own
process or in worker processes (`line_workers`) that take chunks of raw lines and answer with plain
tuples: the run's process keeps what must be sequential (claims, the diff against state, the import
writer). Both paths run the same `LineReader`, so they give the same outcomes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from .. import jsonbytes
from ..errors import RecordRejected
from ..mapping import CompiledMapping, FieldRule
from ..models import BrazeUser, ContactPayload
from ..state import READER_CACHE_KIB, StateStore

# Outcome kinds. Outcomes are tuples, (kind, index in chunk, ...), because they cross processes.
REJECTED = 0  # (REJECTED, i, key or None for the line's own key, reason, field, detail)
SKIPPED = 1  # (SKIPPED, i): not active since `since`
UNCHANGED = 2  # (UNCHANGED, i): byte-identical to the line last written
MAPPED = 3  # (MAPPED, i, source, external_id, braze_id, raw email, raw phone, key, email, ext_id,
#             sms, blacklisted, digest, row)

Outcome = tuple[Any, ...]
Fingerprints = Callable[[list[str]], Mapping[str, str]]

LONG_LINE = "export line is longer than the line limit"


@dataclass(frozen=True)
class LineRules:
    """Everything the per-line work depends on; picklable, so workers are built from it."""

    rules: tuple[FieldRule, ...]
    mapping_tag: bytes
    fingerprint_namespace: str
    since: date | None = None
    check_unchanged: bool = True  # a line identical to the one last written is skipped unmapped
    state_path: str | None = None  # workers read fingerprints from here (read-only)
    connector_id: str = "braze"


# ------------------------------------------------------------------ shared with the users sync
def payload_digest(payload: ContactPayload) -> str:
    body = jsonbytes.dumps(
        [payload.email, payload.ext_id, payload.attributes, payload.email_blacklisted], sort_keys=True
    )
    return hashlib.blake2b(body, digest_size=10).hexdigest()


def import_row(payload: ContactPayload) -> dict[str, Any]:
    attributes = dict(payload.attributes)
    if payload.ext_id is not None:
        attributes["EXT_ID"] = payload.ext_id
    row: dict[str, Any] = {"attributes": attributes}
    if payload.email:
        row["email"] = payload.email
    return row


def user_from_line(raw: bytes) -> BrazeUser:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RecordRejected(f"export line is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RecordRejected(f"export line is a JSON {type(data).__name__}, not an object")

    def text(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) and value else None

    return BrazeUser(text("external_id"), text("braze_id"), text("email"), text("phone"), data)


def identity_of(user: BrazeUser) -> dict[str, Any]:
    return {
        "external_id": user.external_id,
        "braze_id": user.braze_id,
        "email": user.email,
        "phone": user.phone,
    }


def _user_activity_dates(user: BrazeUser) -> Iterator[str]:
    created = user.data.get("created_at")
    if isinstance(created, str):
        yield created
    for group in ("apps", "custom_events", "purchases"):
        items = user.data.get(group)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict):
                    for name in ("last_used", "last"):
                        value = item.get(name)
                        if isinstance(value, str):
                            yield value


def active_since(user: BrazeUser, since: date) -> bool:
    floor = since.isoformat()
    return any(value[:10] >= floor for value in _user_activity_dates(user))


# ------------------------------------------------------------------ the per-line work
class LineReader:
    """Turns raw export lines into outcomes, in order, one per line."""

    def __init__(self, rules: LineRules, mapping: CompiledMapping, fingerprints: Fingerprints | None) -> None:
        self.rules = rules
        self.mapping = mapping
        self.fingerprints = fingerprints if rules.check_unchanged else None

    def read(self, raws: Sequence[bytes]) -> list[Outcome]:
        rules = self.rules
        outcomes: list[Outcome | None] = [None] * len(raws)
        parsed: list[tuple[int, str, BrazeUser]] = []
        for i, raw in enumerate(raws):
            if not raw:
                outcomes[i] = (REJECTED, i, None, LONG_LINE, None, {})
                continue
            try:
                user = user_from_line(raw)
            except RecordRejected as exc:
                outcomes[i] = (REJECTED, i, None, exc.reason, None, {"raw": raw[:500].decode("utf-8", "replace")})
                continue
            if rules.since is not None and not active_since(user, rules.since):
                outcomes[i] = (SKIPPED, i)
                continue
            source = hashlib.blake2b(raw.strip() + rules.mapping_tag, digest_size=10).hexdigest()
            parsed.append((i, source, user))
        known = self._known(parsed)
        mapping = self.mapping
        # orjson leaves each output in a 4 KiB block: rows are gathered in one buffer and cut out
        # at their own size, or a chunk's rows would hold ten times their bytes.
        rows = bytearray()
        spans: list[tuple[int, int, int]] = []
        for i, source, user in parsed:
            if known:
                record = known.get(f"ext:{user.external_id}") if user.external_id else None
                if record is not None and record.endswith("\t" + source):
                    outcomes[i] = (UNCHANGED, i)
                    continue
            out = mapping.to_brevo(user)
            if not isinstance(out, ContactPayload):
                outcomes[i] = (REJECTED, i, out.key, out.reason, out.field, identity_of(user))
                continue
            sms = out.attributes.get("SMS")  # the attribute Brevo keeps unique
            start = len(rows)
            rows += jsonbytes.dumps(import_row(out))
            spans.append((i, start, len(rows)))
            outcomes[i] = (
                MAPPED, i, source, user.external_id, user.braze_id, user.email, user.phone,
                out.key, out.email, out.ext_id, sms if isinstance(sms, str) else None,
                out.email_blacklisted, payload_digest(out),
            )  # fmt: skip
        if spans:
            joined = bytes(rows)
            for i, start, end in spans:
                outcomes[i] = (*outcomes[i], joined[start:end])  # type: ignore[misc]
        return [o for o in outcomes if o is not None]

    def _known(self, parsed: Sequence[tuple[int, str, BrazeUser]]) -> Mapping[str, str]:
        if self.fingerprints is None:
            return {}
        quick = [f"ext:{u.external_id}" for _, _, u in parsed if u.external_id]
        return self.fingerprints(quick) if quick else {}


def local_reader(rules: LineRules, mapping: CompiledMapping, state: StateStore | None) -> LineReader:
    lookup = None
    if state is not None:
        namespace = rules.fingerprint_namespace

        def lookup(keys: list[str]) -> Mapping[str, str]:
            return state.get_fingerprints(namespace, keys)

    return LineReader(rules, mapping, lookup)


def reader_for(rules: LineRules) -> LineReader:
    """A reader built from the rules alone (in a worker process): fingerprints read-only from the file."""
    state = None
    if rules.check_unchanged and rules.state_path:
        state = StateStore(
            rules.state_path, readonly=True, connector_id=rules.connector_id, cache_kib=READER_CACHE_KIB
        )
    return local_reader(rules, CompiledMapping(rules.rules), state)
