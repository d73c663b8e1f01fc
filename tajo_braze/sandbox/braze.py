"""The Braze REST API emulator: the endpoints the connector uses, with Braze's rules and shapes.

It validates like Braze (batch sizes, identifiers, attribute types), answers with Braze's
status codes and bodies, keeps users, logs and exports in a seeded `BrazeWorld`, and reports
every request a real workspace would refuse to the server's violation log.

Users are addressed by slot (see seed.UserTable); every handler works under one RLock, and
segment exports are built by background threads that take the lock one range at a time, only
to apply what changed since seeding: seeded users are drawn outside it, by worker processes
in big worlds (see segment_export).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

import orjson

from .core import BucketSpec, Endpoint, HttpError, Request, Response, Router
from .seed import (
    DAY_S,
    GENDERS,
    SUBSCRIBE_STATES,
    BrazeWorld,
    SegmentDef,
    campaign_day,
    canvas_day,
    copy_json,
    email_key,
    email_problem,
    iso_offset,
    iso_z,
    midnight_epoch,
    scale_counts,
    seed_braze_world,
    segment_size_on,
    sends_on,
    utc_day,
)
from .segment_export import (
    ExportCancelled,
    ExportZipWriter,
    SeededExport,
    draw_ranges,
    merge_lines,
    seeded_ranges,
    usable_cpus,
)

log = logging.getLogger("tajo_braze.sandbox.braze")

MAX_BODY_BYTES = 4 * 1024 * 1024
TRACK_ARRAY_MAX = 75
IDS_PER_REQUEST_MAX = 50
USERS_PER_EXPORT_FILE = 5000
CONCURRENT_EXPORTS_MAX = 100
LIST_PAGE_SIZE = 100
EVENTS_PAGE_SIZE = 250
CATALOG_PAGE_SIZE = 50
SERIES_LENGTH_MAX = 100
CANVAS_WINDOW_MAX = 14
EMAIL_LIST_LIMIT_MAX = 500
STRING_MAX = 255
SIMPLE_ARRAY_MAX = 500
EXPORT_CHUNK_SLOTS = 2000  # created users examined per lock hold while an export is built
EXPORT_RANGE_SLOTS = 5000  # seeded users drawn per range (one worker task, one lock hold)
EXPORT_PROCESSES_MAX = 2
EXPORT_PROCESSES_MIN_USERS = 100_000  # below this, starting workers costs more than it saves
EXPORT_JOBS_KEPT = 1000

EXPORT_FIELDS = frozenset(
    {
        "apps", "attributed_campaign", "attributed_source", "attributed_adgroup", "attributed_ad",
        "braze_id", "campaigns_received", "canvases_received", "cards_clicked", "country", "created_at",
        "custom_attributes", "custom_events", "devices", "dob", "email", "email_subscribe", "external_id",
        "first_name", "gender", "home_city", "language", "last_coordinates", "last_name", "phone",
        "purchases", "push_subscribe", "push_tokens", "random_bucket", "time_zone", "total_revenue",
        "uninstalled_at", "user_aliases",
    }
)  # fmt: skip
_CONTROL_KEYS = frozenset({"_update_existing_only", "_merge_objects", "push_token_import", "app_id"})
_PRIMARY_IDS = ("external_id", "user_alias", "braze_id")
_TEXT_FIELDS = frozenset({"first_name", "last_name", "home_city"})
_STORED_AS_IS = frozenset(
    {
        "push_tokens", "current_location", "facebook", "twitter", "date_of_first_session",
        "date_of_last_session", "marked_email_as_spam_at", "email_open_tracking_disabled",
        "email_click_tracking_disabled", "image_url",
    }
)  # fmt: skip
_RESERVED_EVENT_PROPERTIES = frozenset({"time", "event_name"})
_GROUP_STATES = ("subscribed", "unsubscribed")
_CURSOR_PREFIX = "skip:"


# ---------------------------------------------------------------------------- small utilities
def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    out = {"Content-Type": "application/json"}
    out.update(headers or {})
    return Response(status, orjson.dumps(payload), out)


def _bad_request(message: str, *errors: str) -> HttpError:
    return HttpError(400, {"message": message, "errors": list(errors) or [message]})


def _s3_error(status: int, code: str, message: str) -> Response:
    request_id = uuid.uuid4().hex[:16].upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>tajo-sandbox</HostId></Error>"
    )
    return Response(status, body.encode(), {"Content-Type": "application/xml"})


def parse_time(value: Any) -> float | None:
    """Epoch seconds of a Braze-accepted date or datetime (no zone means UTC), or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    odd = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}):(\d{3})Z", text)  # yyyy-MM-ddTHH:mm:ss:SSSZ
    if odd:
        text = f"{odd.group(1)}.{odd.group(2)}+00:00"
    elif text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = datetime.strptime(text, "%m/%d/%Y")
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _parse_day(value: str | None, name: str) -> float:
    """A YYYY-MM-DD query parameter as midnight UTC."""
    if value is None or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise _bad_request(f"'{name}' must be a date in YYYY-MM-DD format")
    try:
        return midnight_epoch(date.fromisoformat(value))
    except ValueError:
        raise _bad_request(f"'{name}' is not a valid date") from None


def _int_arg(req: Request, name: str, default: int | None = None) -> int:
    raw = req.arg(name)
    if raw is None or raw == "":
        if default is None:
            raise _bad_request(f"'{name}' is required")
        return default
    try:
        return int(raw)
    except ValueError:
        raise _bad_request(f"'{name}' must be an integer") from None


def _bool_arg(req: Request, name: str) -> bool:
    raw = (req.arg(name) or "false").strip().lower()
    if raw not in ("true", "false", "1", "0"):
        raise _bad_request(f"'{name}' must be true or false")
    return raw in ("true", "1")


def _body_object(req: Request) -> dict[str, Any]:
    if not req.body:
        raise _bad_request("A JSON body is required")
    try:
        payload = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise _bad_request(f"Invalid JSON body: {exc}") from None
    if not isinstance(payload, dict):
        raise _bad_request("The JSON body must be an object")
    return payload


def _string_list(value: Any, name: str) -> list[str]:
    """A parameter Braze accepts as one string or an array of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _bad_request(f"'{name}' must be a string or an array of strings")


@lru_cache(maxsize=1)
def _known_time_zones() -> frozenset[str]:
    try:
        import zoneinfo

        return frozenset(zoneinfo.available_timezones())
    except Exception:  # no tz database on this machine: fall back to the shape check
        return frozenset()


def _valid_time_zone(value: str) -> bool:
    zones = _known_time_zones()
    if zones:
        return value in zones
    return value == "UTC" or re.fullmatch(r"[A-Z][A-Za-z_]+(/[A-Za-z0-9_+\-]+)+", value) is not None


def _fields_to_export(body: Mapping[str, Any]) -> list[str]:
    fields = body.get("fields_to_export")
    if fields is None:
        raise _bad_request(
            "'fields_to_export' is required", "fields_to_export is required for this workspace"
        )
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        raise _bad_request("'fields_to_export' must be a non-empty array of field names")
    unknown = sorted(set(fields) - EXPORT_FIELDS)
    if unknown:
        raise _bad_request(
            "Invalid 'fields_to_export'", *(f"'{f}' is not an exportable field" for f in unknown)
        )
    return list(dict.fromkeys(fields))


# ---------------------------------------------------------------------------- attribute semantics
class _Drop(Exception):
    """A nested-object update Braze drops silently (null inside, bad key, bad $time)."""


def _nested(value: Any) -> Any:
    if value is None:
        raise _Drop
    if isinstance(value, dict):
        if set(value) == {"$time"}:
            if parse_time(value["$time"]) is None:
                raise _Drop
            return value["$time"]
        out = {}
        for key, inner in value.items():
            if not isinstance(key, str) or not key or " " in key or "." in key or key.startswith("$"):
                raise _Drop
            if len(key) > STRING_MAX:
                raise _Drop
            out[key] = _nested(inner)
        return out
    if isinstance(value, list):
        return [_nested(v) for v in value]
    if isinstance(value, str) and len(value) > STRING_MAX:
        raise _Drop
    return value


def _deep_merge(current: Any, update: Any) -> Any:
    if isinstance(current, dict) and isinstance(update, dict):
        merged = dict(current)
        for key, value in update.items():
            merged[key] = _deep_merge(merged.get(key), value)
        return merged
    return update


def _simple_array(items: Iterable[Any]) -> list[Any]:
    """Unique values, the newest last, at most 500 (the oldest drop off first)."""
    out: list[Any] = []
    for item in items:
        if item in out:
            out.remove(item)
        out.append(item)
    return out[-SIMPLE_ARRAY_MAX:]


_REMOVE = object()


def _custom_value(name: str, current: Any, value: Any, merge: bool) -> Any:
    """The new value of one custom attribute (or _REMOVE); raises ValueError with Braze's reason."""
    if value is None:
        return _REMOVE
    if isinstance(value, dict):
        keys = set(value)
        if keys and keys <= {"add", "remove"}:
            if not all(isinstance(value.get(k, []), list) for k in keys):
                raise ValueError(f"'{name}': 'add' and 'remove' take arrays")
            items = list(current) if isinstance(current, list) else []
            for item in value.get("add", []):
                if isinstance(item, str) and len(item) > STRING_MAX:
                    raise ValueError(f"'{name}': array values are limited to 255 characters")
                items.append(item)
            items = _simple_array(items)
            return [i for i in items if i not in value.get("remove", [])]
        if keys == {"inc"}:
            step = value["inc"]
            if isinstance(step, bool) or not isinstance(step, int):
                raise ValueError(f"'{name}': 'inc' takes an integer")
            if current is None:
                return step
            if isinstance(current, bool) or not isinstance(current, int | float):
                raise ValueError(f"'{name}' cannot be incremented: its value is not a number")
            return current + step
        if keys and keys <= {"$add", "$remove", "$update"}:
            items = [dict(i) for i in current if isinstance(i, dict)] if isinstance(current, list) else []
            for wanted in value.get("$remove", []):
                key, target = wanted.get("$identifier_key"), wanted.get("$identifier_value")
                items = [i for i in items if i.get(key) != target]
            if value.get("$update"):
                if not merge:
                    raise ValueError(f"'{name}': '$update' needs '_merge_objects': true")
                for change in value["$update"]:
                    key, target = change.get("$identifier_key"), change.get("$identifier_value")
                    new = change.get("$new_object") or {}
                    items = [_deep_merge(i, new) if i.get(key) == target else i for i in items]
            for item in value.get("$add", []):
                if not isinstance(item, dict):
                    raise ValueError(f"'{name}': '$add' takes objects")
                items.append(item)
            return items
        if keys == {"$time"}:
            if parse_time(value["$time"]) is None:
                raise ValueError(f"'{name}': invalid '$time'")
            return value["$time"]
        nested = _nested(value)  # may raise _Drop
        return _deep_merge(current, nested) if merge and isinstance(current, dict) else nested
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return [_nested(v) for v in value]
        for item in value:
            if isinstance(item, str) and len(item) > STRING_MAX:
                raise ValueError(f"'{name}': array values are limited to 255 characters")
            if isinstance(item, dict | list):
                raise ValueError(f"'{name}': a simple array holds only strings, numbers and booleans")
        return _simple_array(value)
    if isinstance(value, str) and len(value) > STRING_MAX:
        raise ValueError(f"'{name}' is longer than 255 characters")
    return value


def apply_attributes(
    profile: dict[str, Any], obj: Mapping[str, Any], *, identifier: str, groups: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """Apply one /users/track attributes object to a profile (a copy); Braze semantics.

    Returns the subscription-group changes to make; raises ValueError when Braze would put
    the object in the response's `errors` (then nothing of it is applied).
    """
    merge = obj.get("_merge_objects") is True
    custom = dict(profile.get("custom_attributes") or {})
    group_changes: list[tuple[str, str]] = []
    nested_updates: dict[str, Any] = {}
    nested_dropped = False
    for key, value in obj.items():
        if key in _CONTROL_KEYS or key in _PRIMARY_IDS or key == identifier or key == "user_aliases":
            continue
        if key == "email":
            if value is None:
                profile.pop("email", None)
                continue
            if not isinstance(value, str):
                raise ValueError("'email' must be a string")
            problem = email_problem(value)
            if problem is not None:
                raise ValueError(f"'email' {problem}")
            profile["email"] = value
        elif key == "phone":
            if value is None:
                profile.pop("phone", None)
            elif not isinstance(value, str) or len(value) > STRING_MAX:
                raise ValueError("'phone' must be a string of at most 255 characters")
            else:
                profile["phone"] = value
        elif key in ("email_subscribe", "push_subscribe"):
            if value not in SUBSCRIBE_STATES:
                raise ValueError(f"'{key}' must be one of opted_in, subscribed, unsubscribed")
            profile[key] = value
        elif key in _TEXT_FIELDS:
            if value is None:
                profile.pop(key, None)
            elif not isinstance(value, str):
                raise ValueError(f"'{key}' must be a string")
            elif len(value) > STRING_MAX:
                raise ValueError(f"'{key}' is longer than 255 characters")
            else:
                profile[key] = value
        elif key == "dob":
            if value is None:
                profile.pop("dob", None)
            elif not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise ValueError("'dob' must be a date in YYYY-MM-DD format")
            else:
                try:
                    date.fromisoformat(value)
                except ValueError:
                    raise ValueError("'dob' is not a valid date") from None
                profile["dob"] = value
        elif key == "country":
            # Anything but an ISO-3166 alpha-2 code silently becomes NULL.
            if isinstance(value, str) and re.fullmatch(r"[A-Za-z]{2}", value):
                profile["country"] = value.upper()
            else:
                profile.pop("country", None)
        elif key == "language":
            if value is None:
                profile.pop("language", None)
            elif isinstance(value, str) and re.fullmatch(r"[A-Za-z]{2}", value):
                profile["language"] = value.lower()
        elif key == "time_zone":
            if value is None:
                profile.pop("time_zone", None)
            elif isinstance(value, str) and _valid_time_zone(value):
                profile["time_zone"] = value
        elif key == "gender":
            if value is None:
                profile.pop("gender", None)
            elif isinstance(value, str) and value.upper() in GENDERS:
                profile["gender"] = value.upper()
        elif key == "subscription_groups":
            if not isinstance(value, list):
                raise ValueError("'subscription_groups' must be an array")
            for item in value:
                gid = item.get("subscription_group_id") if isinstance(item, dict) else None
                state = item.get("subscription_state") if isinstance(item, dict) else None
                if gid not in groups:
                    raise ValueError(f"unknown subscription group '{gid}'")
                if state not in _GROUP_STATES:
                    raise ValueError("'subscription_state' must be subscribed or unsubscribed")
                group_changes.append((str(gid), str(state)))
        elif key in _STORED_AS_IS:
            if value is None:
                profile.pop(key, None)
            else:
                profile[key] = value
        else:
            if not isinstance(key, str) or not key or key.startswith("$") or len(key) > STRING_MAX:
                raise ValueError(f"invalid custom attribute name '{str(key)[:40]}'")
            is_nested = isinstance(value, dict) and not (
                set(value) <= {"add", "remove", "inc", "$add", "$remove", "$update", "$time"}
            )
            try:
                new = _custom_value(key, custom.get(key), value, merge)
            except _Drop:
                nested_dropped = True
                continue
            if is_nested:
                nested_updates[key] = new
            elif new is _REMOVE:
                custom.pop(key, None)
            else:
                custom[key] = new
    # One bad nested object drops every nested update of the request object, silently.
    if not nested_dropped:
        custom.update(nested_updates)
    profile["custom_attributes"] = custom
    return group_changes


def aggregate_events(log_entries: Iterable[Mapping[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The export's `custom_events` / `purchases`: per name, first and last time and count."""
    key = "name" if kind == "event" else "product_id"
    summary: dict[str, dict[str, Any]] = {}
    for entry in log_entries:
        if entry["type"] != kind:
            continue
        name = entry[key]
        count = int(entry.get("quantity", 1)) if kind == "purchase" else 1
        found = summary.get(name)
        if found is None:
            summary[name] = {"name": name, "first": entry["time"], "last": entry["time"], "count": count}
        else:
            found["first"] = min(found["first"], entry["time"])
            found["last"] = max(found["last"], entry["time"])
            found["count"] += count
    return list(summary.values())


def _nonempty(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


# ---------------------------------------------------------------------------- exports
@dataclass
class ExportJob:
    token: str
    segment_id: str
    object_prefix: str
    path: str
    requested_at: float
    built_at: float | None = None
    failed: bool = False
    expired: bool = False
    users: int = 0
    files: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "segment_id": self.segment_id,
            "object_prefix": self.object_prefix,
            "requested_at": self.requested_at,
            "built_at": self.built_at,
            "failed": self.failed,
            "expired": self.expired,
            "users": self.users,
            "files": self.files,
        }


@dataclass(frozen=True)
class BrazePrincipal:
    """Who called: a label safe to log (never the key) and the key's permissions (None = all)."""

    label: str
    permissions: frozenset[str] | None


# ---------------------------------------------------------------------------- the app
class BrazeApp:
    """A stateful Braze workspace behind the Braze REST API (see module docstring)."""

    name = "braze"

    def __init__(
        self,
        world: BrazeWorld,
        *,
        keys: Mapping[str, frozenset[str] | None],
        clock: Callable[[], float] = time.time,
        export_delay_s: float = 0.0,
        export_ttl_s: float = 14_400.0,
        export_dir: str | None = None,
        track_objects_cap: int | None = None,
    ) -> None:
        self.world = world
        self._keys = dict(keys)
        self._labels = {key: f"braze-key-{i + 1}" for i, key in enumerate(self._keys)}
        self._clock = clock
        self.export_delay_s = export_delay_s
        self.export_ttl_s = export_ttl_s
        self.track_objects_cap = track_objects_cap
        if export_dir is None:
            export_dir = tempfile.mkdtemp(prefix="braze-exports-")
            # Exports can be large: remove them with the app (or at exit at the latest).
            self._cleanup = weakref.finalize(self, shutil.rmtree, export_dir, True)
        else:
            os.makedirs(export_dir, exist_ok=True)
        self.export_dir = export_dir
        self.public_base = "http://127.0.0.1"  # set by the server; used in export URLs and Link headers
        self.base_path = "/braze"  # where the server mounts this app, for absolute Link URLs
        self.violation_hook: Callable[[str, str], None] | None = None
        self._lock = threading.RLock()
        self._exports: dict[str, ExportJob] = {}
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        # Drawing seeded users is nearly all of a big export: worker processes share it, one build
        # at a time (more would only contend for the same cores).
        cpus = usable_cpus()
        self.export_processes = min(EXPORT_PROCESSES_MAX, cpus) if cpus > 1 else 0
        self.export_processes_min_users = EXPORT_PROCESSES_MIN_USERS
        self._export_workers_free = threading.Lock()
        # Every campaign/Canvas data-series call with the days it asked for, so tests can check
        # windowing per object (request_counts() only counts per endpoint).
        self.series_requests: list[dict[str, Any]] = []
        self.buckets: dict[str, BucketSpec] = {
            spec.name: spec
            for spec in (
                BucketSpec("users_track", 3000, 3.0),
                BucketSpec("export_ids", 250, 60.0),
                BucketSpec("user_lifecycle", 20_000, 60.0),
                BucketSpec("subscription", 5000, 60.0),
                BucketSpec("campaign_series", 50_000, 60.0),
                BucketSpec("catalog_sync", 50, 60.0),
                BucketSpec("events_list", 1000, 3600.0),
                BucketSpec("default", 250_000, 3600.0),
            )
        }
        self.router = Router()
        self._routes()

    def _routes(self) -> None:
        # (method, path, handler, bucket, permission) — buckets and permissions per braze-api.md §1.3/§1.6
        routes: tuple[tuple[str, str, Callable[[Request, dict[str, str]], Response], str, str], ...] = (
            ("POST", "/users/track", self._users_track, "users_track", "users.track"),
            ("POST", "/users/export/ids", self._export_ids, "export_ids", "users.export.ids"),
            ("POST", "/users/export/segment", self._export_segment, "default", "users.export.segment"),
            ("POST", "/users/delete", self._users_delete, "user_lifecycle", "users.delete"),
            ("GET", "/segments/list", self._segments_list, "default", "segments.list"),
            ("GET", "/segments/details", self._segment_details, "default", "segments.details"),
            ("GET", "/segments/data_series", self._segment_series, "default", "segments.data_series"),
            ("GET", "/campaigns/list", self._campaigns_list, "default", "campaigns.list"),
            ("GET", "/campaigns/details", self._campaign_details, "default", "campaigns.details"),
            (
                "GET",
                "/campaigns/data_series",
                self._campaign_series,
                "campaign_series",
                "campaigns.data_series",
            ),
            ("GET", "/canvas/list", self._canvas_list, "default", "canvas.list"),
            ("GET", "/canvas/details", self._canvas_details, "default", "canvas.details"),
            ("GET", "/canvas/data_series", self._canvas_series, "default", "canvas.data_series"),
            ("POST", "/email/status", self._email_status, "default", "email.status"),
            ("GET", "/email/unsubscribes", self._email_unsubscribes, "default", "email.unsubscribe"),
            ("GET", "/email/hard_bounces", self._email_hard_bounces, "default", "email.hard_bounces"),
            (
                "POST",
                "/subscription/status/set",
                self._subscription_set,
                "subscription",
                "subscription.status.set",
            ),
            ("GET", "/subscription/status/get", self._subscription_get, "default", "subscription.status.get"),
            ("GET", "/catalogs", self._catalogs_list, "catalog_sync", "catalogs.get"),
            (
                "GET",
                "/catalogs/{catalog_name}/items",
                self._catalog_items,
                "catalog_sync",
                "catalogs.get_items",
            ),
            (
                "GET",
                "/catalogs/{catalog_name}/items/{item_id}",
                self._catalog_item,
                "catalog_sync",
                "catalogs.get_item",
            ),
            ("GET", "/events/list", self._events_list, "events_list", "events.list"),
        )
        for method, path, handler, bucket, permission in routes:
            self.router.add(method, path, handler, buckets=(bucket,), permission=permission)

    # ------------------------------------------------------------------ VendorApp
    def authenticate(self, req: Request) -> Response | None:
        header = req.headers.get("authorization", "")
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return _json(
                401, {"message": "Invalid API key: send the REST API key as 'Authorization: Bearer <key>'"}
            )
        if key[0] in "\"'" or key[-1] in "\"'":
            return _json(401, {"message": "Invalid API key: remove the quotes around the key"})
        if key not in self._keys:
            return _json(401, {"message": "Invalid API key: unknown to this workspace or instance"})
        req.principal = BrazePrincipal(self._labels[key], self._keys[key])
        return None

    def authorize(self, req: Request, endpoint: Endpoint) -> Response | None:
        principal = req.principal
        if endpoint.permission is None or not isinstance(principal, BrazePrincipal):
            return None
        if principal.permissions is not None and endpoint.permission not in principal.permissions:
            return _json(403, {"message": "Access Denied"})
        return None

    def rate_limit_headers(
        self, limit: int, remaining: int, reset_epoch: float, now: float
    ) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Reset": str(int(math.ceil(reset_epoch))),
        }

    def too_many_requests(self, headers: dict[str, str]) -> Response:
        return _json(429, {"message": "Rate Limit Exceeded"}, headers)

    # ------------------------------------------------------------------ shared plumbing
    def _violate(self, endpoint_name: str, detail: str) -> None:
        hook = self.violation_hook
        if hook is not None:
            hook(endpoint_name, detail)

    def _now(self) -> float:
        return self._clock()

    def _clock_day(self, now: float) -> date:
        return utc_day(now)

    def _series_days(self, end: date, length: int, now: float) -> list[date]:
        """`length` days ending at `end`, clipped to the days that exist (first series day .. today)."""
        last = min(end, self._clock_day(now))
        first = max(last - timedelta(days=length - 1), self.world.first_series_day)
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def _partial(self, day: date, stats: dict[str, Any], now: float) -> dict[str, Any]:
        """Today's numbers grow through the day: scale them by the fraction elapsed."""
        if day != self._clock_day(now):
            return stats
        fraction = (now - midnight_epoch(day)) / DAY_S
        scaled: dict[str, Any] = scale_counts(stats, fraction)
        return scaled

    # ------------------------------------------------------------------ users: lookup and writes
    def _best_of(self, slots: list[int]) -> int | None:
        """Braze's pick among profiles sharing an email/phone: most recently updated, identified first."""
        if not slots:
            return None
        users = self.world.users
        identified = [s for s in slots if users.profile(s).get("external_id") is not None]
        return max(identified or slots, key=lambda s: (users.updated_at(s), s))

    def _identify(self, obj: Mapping[str, Any]) -> tuple[str, Any]:
        present = [k for k in _PRIMARY_IDS if obj.get(k) is not None]
        if len(present) > 1:
            raise ValueError("only one of 'external_id', 'user_alias' or 'braze_id' may identify a user")
        if present:
            kind = present[0]
        elif obj.get("email") is not None:
            kind = "email"  # email wins over phone
        elif obj.get("phone") is not None:
            kind = "phone"
        else:
            raise ValueError("'external_id' or 'braze_id' or 'user_alias' or 'email' or 'phone' is required")
        value = obj[kind]
        if kind in ("external_id", "braze_id", "phone"):
            if not isinstance(value, str) or not value.strip() or len(value) > STRING_MAX:
                raise ValueError(f"'{kind}' must be a non-empty string")
        elif kind == "email":
            if not isinstance(value, str):
                raise ValueError("'email' must be a string")
            problem = email_problem(value)
            if problem is not None:
                raise ValueError(f"'email' {problem}")
        else:
            if not isinstance(value, dict) or not all(
                isinstance(value.get(k), str) and value.get(k) for k in ("alias_name", "alias_label")
            ):
                raise ValueError("'user_alias' must be an object with 'alias_name' and 'alias_label'")
        update_only = obj.get("_update_existing_only")
        if update_only is not None and not isinstance(update_only, bool):
            raise ValueError("'_update_existing_only' must be a boolean")
        return kind, value

    def _find(self, kind: str, value: Any) -> int | None:
        users = self.world.users
        if kind == "external_id":
            return users.slot_of_external_id(value)
        if kind == "braze_id":
            return users.slot_of_braze_id(value)
        if kind == "user_alias":
            return users.slot_of_alias(value["alias_label"], value["alias_name"])
        if kind == "email":
            return self._best_of(users.slots_with_email(value))
        return self._best_of(users.slots_with_phone(value))

    @staticmethod
    def _may_create(kind: str, obj: Mapping[str, Any]) -> bool:
        update_only = obj.get("_update_existing_only")
        if kind == "user_alias":
            return update_only is False  # alias writes are update-only unless told otherwise
        if kind == "braze_id":
            return False
        return update_only is not True

    @staticmethod
    def _skeleton(kind: str, value: Any) -> dict[str, Any]:
        profile: dict[str, Any] = {}
        if kind == "external_id":
            profile["external_id"] = value
        elif kind == "user_alias":
            profile["user_aliases"] = [
                {"alias_name": value["alias_name"], "alias_label": value["alias_label"]}
            ]
        elif kind == "email":
            profile["email"] = value
        elif kind == "phone":
            profile["phone"] = value
        profile["email_subscribe"] = "subscribed"
        profile["push_subscribe"] = "subscribed"
        profile["custom_attributes"] = {}
        return profile

    def _log_unsubscribe(self, now: float, email: str) -> None:
        world = self.world
        if email_problem(email) is not None or world.unsubscribes.last_time(email) == now:
            return
        world.unsubscribes.add(now, email)
        world.live_unsubscribes.append((now, email))

    def _store(self, slot: int, profile: dict[str, Any], now: float) -> bool:
        users = self.world.users
        before = users.profile(slot).get("email_subscribe")
        changed = users.store(slot, profile, now)
        email = profile.get("email")
        if changed and isinstance(email, str) and before != "unsubscribed" == profile.get("email_subscribe"):
            self._log_unsubscribe(now, email)
        return changed

    def _set_groups(self, slot: int, changes: Iterable[tuple[str, str]], now: float) -> None:
        users = self.world.users
        states = users.groups.setdefault(slot, {})
        changed = False
        for gid, state in changes:
            if states.get(gid) != state:
                states[gid] = state
                changed = True
        if changed:
            users.touch(slot, now)

    def _set_email_subscribe(self, slot: int, state: str, now: float) -> None:
        profile = copy_json(self.world.users.profile(slot))
        profile["email_subscribe"] = state
        self._store(slot, profile, now)

    def _apply_attribute_object(self, obj: Mapping[str, Any], now: float) -> str:
        """Apply one attributes object: 'created', 'updated', 'unchanged' or 'skipped'."""
        kind, value = self._identify(obj)
        world = self.world
        users = world.users
        slot = self._find(kind, value)
        if slot is None and not self._may_create(kind, obj):
            return "skipped"  # Braze drops update-only writes to unknown users silently
        base = self._skeleton(kind, value) if slot is None else copy_json(users.profile(slot))
        old_email = base.get("email") if slot is not None else None
        profile = base
        group_changes = apply_attributes(profile, obj, identifier=kind, groups=world.subscription_groups)
        email = profile.get("email")
        if isinstance(email, str) and (old_email is None or email_key(old_email) != email_key(email)):
            remembered = world.email_states.pop(email_key(email), None)
            if remembered is not None and "email_subscribe" not in obj:
                profile["email_subscribe"] = remembered  # set earlier by /email/status
        if slot is None:
            slot = users.create(profile, now)
            outcome = "created"
            if obj.get("email_subscribe") == "unsubscribed" and isinstance(email, str):
                self._log_unsubscribe(now, email)
        else:
            outcome = "updated" if self._store(slot, profile, now) else "unchanged"
        if group_changes:
            self._set_groups(slot, group_changes, now)
        # Subscription changes keyed by external_id or email reach every profile sharing the address.
        if kind in ("external_id", "email") and isinstance(email, str):
            others = [s for s in users.slots_with_email(email) if s != slot]
            for other in others:
                if "email_subscribe" in obj:
                    self._set_email_subscribe(other, profile["email_subscribe"], now)
                if group_changes:
                    self._set_groups(other, group_changes, now)
        return outcome

    def _event_common(self, obj: Mapping[str, Any], now: float, array: str) -> tuple[str, Any, float]:
        kind, value = self._identify(obj)
        at = parse_time(obj.get("time"))
        if at is None:
            raise ValueError("'time' is required and must be an ISO-8601 datetime")
        properties = obj.get("properties")
        if properties is not None:
            if not isinstance(properties, dict):
                raise ValueError("'properties' must be an object")
            for key, prop in properties.items():
                if not key or len(key) > STRING_MAX or key.startswith("$"):
                    raise ValueError(f"invalid property name '{key[:40]}'")
                if array == "events" and key in _RESERVED_EVENT_PROPERTIES:
                    raise ValueError(f"'{key}' is a reserved event property name")
                if isinstance(prop, str) and len(prop) > STRING_MAX:
                    raise ValueError(f"property '{key}' is longer than 255 characters")
        return kind, value, min(at, now)  # future times are clamped to now

    def _owner_for_event(self, kind: str, value: Any, obj: Mapping[str, Any], now: float) -> int | None:
        slot = self._find(kind, value)
        if slot is None and self._may_create(kind, obj):
            profile = self._skeleton(kind, value)
            if kind == "email":
                remembered = self.world.email_states.pop(email_key(value), None)
                if remembered is not None:
                    profile["email_subscribe"] = remembered
            slot = self.world.users.create(profile, now)
        return slot

    def _append(self, slot: int, entry: dict[str, Any], now: float) -> None:
        users = self.world.users
        users.events.setdefault(slot, []).append(entry)  # never deduplicated, like Braze
        users.touch(slot, now)

    def _apply_event_object(self, obj: Mapping[str, Any], now: float) -> None:
        kind, value, at = self._event_common(obj, now, "events")
        name = obj.get("name")
        if not isinstance(name, str) or not name or len(name) > STRING_MAX:
            raise ValueError("'name' is required and must be a string of at most 255 characters")
        slot = self._owner_for_event(kind, value, obj, now)
        if slot is None:
            return
        entry = {
            "type": "event",
            "name": name,
            "time": iso_z(at),
            "properties": copy_json(obj.get("properties") or {}),
        }
        if isinstance(obj.get("app_id"), str):
            entry["app_id"] = obj["app_id"]
        self._append(slot, entry, now)
        self.world.event_names.add(name)

    def _apply_purchase_object(self, obj: Mapping[str, Any], now: float) -> None:
        kind, value, at = self._event_common(obj, now, "purchases")
        product = obj.get("product_id")
        if not isinstance(product, str) or not product or len(product) > STRING_MAX:
            raise ValueError("'product_id' is required and must be a string of at most 255 characters")
        currency = obj.get("currency")
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency):
            raise ValueError("'currency' must be a three-letter ISO-4217 code")
        price = obj.get("price")
        if isinstance(price, bool) or not isinstance(price, int | float):
            raise ValueError("'price' is required and must be a number")
        quantity = obj.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 100:
            raise ValueError("'quantity' must be an integer from 1 to 100")
        slot = self._owner_for_event(kind, value, obj, now)
        if slot is None:
            return
        entry = {
            "type": "purchase",
            "product_id": product,
            "currency": currency.upper(),
            "price": price,
            "quantity": quantity,
            "time": iso_z(at),
            "properties": copy_json(obj.get("properties") or {}),
        }
        self._append(slot, entry, now)
        users = self.world.users
        profile = copy_json(users.profile(slot))
        profile["total_revenue"] = round(float(profile.get("total_revenue") or 0.0) + price * quantity, 2)
        self._store(slot, profile, now)

    # ------------------------------------------------------------------ POST /users/track
    def _users_track(self, req: Request, params: dict[str, str]) -> Response:
        endpoint = "POST /users/track"
        if len(req.body) > MAX_BODY_BYTES:
            self._violate(endpoint, f"request body of {len(req.body)} bytes is above the 4 MB limit")
            raise HttpError(
                413, {"message": "Request Entity Too Large", "errors": ["the body is above 4 MB"]}
            )
        body = _body_object(req)
        arrays: dict[str, list[Any]] = {}
        for key in ("attributes", "events", "purchases"):
            items = body.get(key)
            if items is None:
                continue
            if not isinstance(items, list):
                raise _bad_request(f"'{key}' must be an array")
            arrays[key] = items
        if not any(arrays.values()):
            raise _bad_request(
                "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
            )
        for key, items in arrays.items():
            if len(items) > TRACK_ARRAY_MAX:
                self._violate(endpoint, f"'{key}' holds {len(items)} objects; the limit is {TRACK_ARRAY_MAX}")
                raise _bad_request(
                    "Max Input Length Exceeded", f"'{key}' holds more than {TRACK_ARRAY_MAX} objects"
                )
        total = sum(len(items) for items in arrays.values())
        cap = self.track_objects_cap
        if cap is not None and total > cap:
            self._violate(endpoint, f"{total} objects combined; this contract allows {cap}")
            raise _bad_request(
                "Max Input Length Exceeded", f"more than {cap} attributes, events and purchases combined"
            )
        handlers: dict[str, Callable[[Mapping[str, Any], float], Any]] = {
            "attributes": self._apply_attribute_object,
            "events": self._apply_event_object,
            "purchases": self._apply_purchase_object,
        }
        payload: dict[str, Any] = {"message": "success"}
        errors: list[dict[str, Any]] = []
        with self._lock:
            now = self._now()
            for key, items in arrays.items():
                processed = 0
                for index, obj in enumerate(items):
                    try:
                        if not isinstance(obj, dict):
                            raise ValueError(f"each item of '{key}' must be an object")
                        handlers[key](obj, now)
                    except ValueError as exc:
                        errors.append({"type": str(exc), "input_array": key, "index": index})
                    else:
                        processed += 1
                payload[f"{key}_processed"] = processed
        if errors:
            payload["errors"] = errors
        return _json(201, payload)

    # ------------------------------------------------------------------ exports
    def _project(
        self, slot: int, profile: Mapping[str, Any], fields: list[str], custom: list[str] | None
    ) -> dict[str, Any]:
        """Only the requested fields, and (like Braze) none that is empty."""
        out: dict[str, Any] = {}
        for name in fields:
            if name == "custom_attributes":
                attrs = profile.get("custom_attributes") or {}
                if custom is not None:
                    attrs = {k: attrs[k] for k in custom if k in attrs}
                value: Any = attrs
            elif name == "custom_events":
                value = aggregate_events(self.world.users.events.get(slot, ()), "event")
            elif name == "purchases":
                value = aggregate_events(self.world.users.events.get(slot, ()), "purchase")
            else:
                value = profile.get(name)
            if _nonempty(value):
                out[name] = value
        return out

    def _export_ids(self, req: Request, params: dict[str, str]) -> Response:
        endpoint = "POST /users/export/ids"
        body = _body_object(req)
        external_ids = _string_list(body.get("external_ids"), "external_ids")
        aliases = body.get("user_aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, dict) for a in aliases):
            raise _bad_request("'user_aliases' must be an array of alias objects")
        if len(external_ids) + len(aliases) > IDS_PER_REQUEST_MAX:
            self._violate(
                endpoint, f"{len(external_ids) + len(aliases)} external_ids and aliases; the limit is 50"
            )
            raise _bad_request("The max number of external_ids and aliases per request was exceeded")
        singles = [k for k in ("email_address", "phone", "device_id") if body.get(k) is not None]
        if len(singles) > 1:
            raise _bad_request("Only one of 'email_address', 'phone' or 'device_id' may be given per request")
        braze_id = body.get("braze_id")
        if not (external_ids or aliases or singles or braze_id):
            raise _bad_request("No user identifiers were provided")
        fields = _fields_to_export(body)
        users_out: list[dict[str, Any]] = []
        invalid: list[str] = []
        with self._lock:
            users = self.world.users
            found: list[int] = []
            asked: list[tuple[str, int | None]] = [
                (ext, users.slot_of_external_id(ext)) for ext in external_ids
            ]
            asked += [
                (
                    str(a.get("alias_name")),
                    users.slot_of_alias(str(a.get("alias_label")), str(a.get("alias_name"))),
                )
                for a in aliases
            ]
            if isinstance(braze_id, str):
                asked.append((braze_id, users.slot_of_braze_id(braze_id)))
            for name, slot in asked:
                if slot is None:
                    invalid.append(name)
                else:
                    found.append(slot)
            if isinstance(body.get("email_address"), str):
                found.extend(users.slots_with_email(body["email_address"]))  # every profile with the address
            if isinstance(body.get("phone"), str):
                found.extend(users.slots_with_phone(body["phone"]))
            for slot in dict.fromkeys(found):
                users_out.append(self._project(slot, users.profile(slot), fields, None))
            payload: dict[str, Any] = {"users": users_out}
            if invalid:
                payload["invalid_user_ids"] = invalid
            payload["message"] = "success"
            return _json(201, payload)

    def _export_segment(self, req: Request, params: dict[str, str]) -> Response:
        endpoint = "POST /users/export/segment"
        body = _body_object(req)
        segment_id = body.get("segment_id")
        if not isinstance(segment_id, str) or not segment_id:
            raise _bad_request("'segment_id' is required")
        fields = _fields_to_export(body)
        custom = body.get("custom_attributes_to_export")
        if custom is not None:
            if (
                not isinstance(custom, list)
                or not all(isinstance(c, str) for c in custom)
                or len(custom) > 500
            ):
                raise _bad_request("'custom_attributes_to_export' must be an array of at most 500 names")
            if "custom_attributes" in fields:
                custom = None  # Braze ignores the list when every custom attribute is asked for
            else:
                fields.append("custom_attributes")
        output_format = body.get("output_format", "zip")
        if output_format not in ("zip", "gzip"):
            raise _bad_request("'output_format' must be zip or gzip")
        with self._lock:
            segment = self.world.segments.get(segment_id)
            if segment is None:
                raise _bad_request("Invalid 'segment_id'", f"no segment with id {segment_id}")
            now = self._now()
            running = [j for j in self._exports.values() if not self._ready(j, now) and not j.failed]
            if any(j.segment_id == segment_id for j in running):
                self._violate(endpoint, f"an export of segment {segment_id} is already running")
                raise HttpError(
                    429, {"message": "An export of this segment is already in progress", "errors": []}
                )
            if len(running) >= CONCURRENT_EXPORTS_MAX:
                self._violate(
                    endpoint, f"{len(running)} exports already running; the limit is {CONCURRENT_EXPORTS_MAX}"
                )
                raise HttpError(429, {"message": "Too many concurrent segment exports", "errors": []})
            token = uuid.uuid4().hex
            prefix = f"{uuid.uuid4()}-{int(now)}"
            job = ExportJob(token, segment_id, prefix, os.path.join(self.export_dir, f"{token}.zip"), now)
            self._exports[token] = job
            self._forget_old_jobs(now)
            # The membership rules as they are now: later admin overrides do not change this export.
            rules = dataclasses.replace(
                segment, members=set(segment.members), added=set(segment.added), removed=set(segment.removed)
            )
            thread = threading.Thread(
                target=self._build_export,
                args=(job, rules, fields, custom),
                name=f"braze-export-{token[:8]}",
                daemon=True,
            )
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return _json(
            201, {"message": "success", "object_prefix": prefix, "url": f"{self.public_base}/_s3/{token}"}
        )

    def _forget_old_jobs(self, now: float) -> None:
        """Delete files of expired exports (even never fetched ones) and keep at most EXPORT_JOBS_KEPT jobs."""
        for job in self._exports.values():
            ready_at = self._ready_at(job)
            if not job.expired and ready_at is not None and now >= ready_at + self.export_ttl_s:
                self._delete_file(job)
        while len(self._exports) > EXPORT_JOBS_KEPT:
            oldest = next(iter(self._exports))
            job = self._exports.pop(oldest)
            if job.built_at is not None:
                self._delete_file(job)

    def _changed_lines(
        self, segment: SegmentDef, fields: list[str], custom: list[str] | None, start: int, stop: int
    ) -> list[tuple[int, bytes | None]]:
        """The lines of the seeded range's users that are not as seeded (None: not exported).

        Called under the lock: stored users as they are now, deleted ones gone, and seeded
        ones with events (their `custom_events` and `purchases` come from the event log).
        """
        users = self.world.users
        seeds = users.seeds
        out: list[tuple[int, bytes | None]] = []
        changed = users.changed_slots(start, stop)
        for slot in changed:
            line = None
            if users.is_stored(slot):
                profile = users.profile(slot)
                if segment.contains(profile):
                    line = self._export_line(slot, profile, fields, custom)
            out.append((slot, line))
        if "custom_events" in fields or "purchases" in fields:
            skip = set(changed)
            for slot in users.slots_with_events(start, stop):
                if slot in skip:
                    continue
                head = seeds.head(slot)
                ext = seeds.external_id(slot, head)
                if segment.matches(ext, head.email_subscribe, head.random_bucket, head.vip):
                    out.append((slot, self._export_line(slot, seeds.profile(slot), fields, custom)))
        return out

    def _export_line(
        self, slot: int, profile: Mapping[str, Any], fields: list[str], custom: list[str] | None
    ) -> bytes:
        return orjson.dumps(self._project(slot, profile, fields, custom)) + b"\n"

    def _created_lines(
        self, segment: SegmentDef, fields: list[str], custom: list[str] | None, start: int
    ) -> tuple[list[bytes], int, bool]:
        """Members among the next EXPORT_CHUNK_SLOTS users created after seeding; (lines, next, done)."""
        lines: list[bytes] = []
        with self._lock:
            users = self.world.users
            stop = min(start + EXPORT_CHUNK_SLOTS, users.next_slot)
            for slot in range(start, stop):
                if users.alive(slot):
                    profile = users.profile(slot)
                    if segment.contains(profile):
                        lines.append(self._export_line(slot, profile, fields, custom))
            return lines, stop, stop >= users.next_slot

    def _export_processes(self, n_seeded: int) -> int:
        """Worker processes for a build: none for small worlds, or while another build has them."""
        if self.export_processes <= 0 or n_seeded < self.export_processes_min_users:
            return 0
        return self.export_processes if self._export_workers_free.acquire(blocking=False) else 0

    def _build_export(
        self, job: ExportJob, segment: SegmentDef, fields: list[str], custom: list[str] | None
    ) -> None:
        partial = job.path + ".part"
        users = self.world.users
        seeds = users.seeds
        frozen_custom = None if custom is None else tuple(custom)
        spec = SeededExport(seeds.seed, seeds.n, seeds.today, segment, tuple(fields), frozen_custom)
        processes = self._export_processes(seeds.n)
        try:
            writer = ExportZipWriter(partial, job.object_prefix, USERS_PER_EXPORT_FILE)
            try:
                ranges = seeded_ranges(seeds.n, EXPORT_RANGE_SLOTS)
                # Seeded users first, drawn outside the lock; what changed since is applied per range.
                with contextlib.closing(draw_ranges(seeds, spec, ranges, processes)) as drawn:
                    for start, stop, slots, lines in drawn:
                        if self._closing.is_set():
                            raise ExportCancelled
                        with self._lock:
                            changed = self._changed_lines(segment, fields, custom, start, stop)
                        writer.add(merge_lines(slots, lines, changed) if changed else lines)
                # Then users created since seeding, including those created while this runs.
                cursor, done = seeds.n, False
                while not done:
                    if self._closing.is_set():
                        raise ExportCancelled
                    lines, cursor, done = self._created_lines(segment, fields, custom, cursor)
                    writer.add(lines)
            except BaseException:
                writer.abandon()
                raise
            writer.finish()
            os.replace(partial, job.path)
            with self._lock:
                job.users, job.files = writer.users, writer.files
                job.built_at = self._now()
        except ExportCancelled:
            log.info("segment export %s stopped: the sandbox is closing", job.object_prefix)
            self._fail(job, partial)
        except Exception:  # Braze emails the user when an export fails; here the log says why
            log.exception("segment export %s failed", job.object_prefix)
            self._fail(job, partial)
        finally:
            if processes:
                self._export_workers_free.release()

    def _fail(self, job: ExportJob, partial: str) -> None:
        with self._lock:
            job.failed = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)

    def _ready_at(self, job: ExportJob) -> float | None:
        if job.built_at is None:
            return None
        return max(job.built_at, job.requested_at + self.export_delay_s)

    def _ready(self, job: ExportJob, now: float) -> bool:
        ready_at = self._ready_at(job)
        return ready_at is not None and now >= ready_at

    def _delete_file(self, job: ExportJob) -> None:
        job.expired = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(job.path)

    def export_file_response(self, token: str, *, head: bool = False) -> Response:
        """The presigned-style export URL: AccessDenied until ready, then the ZIP, then ExpiredToken."""
        with self._lock:
            job = self._exports.get(token)
            if job is None:
                return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
            now = self._now()
            ready_at = self._ready_at(job)
            if job.expired or (ready_at is not None and now >= ready_at + self.export_ttl_s):
                self._delete_file(job)
                return _s3_error(400, "ExpiredToken", "The provided token has expired.")
            if ready_at is None or now < ready_at:
                return _s3_error(403, "AccessDenied", "Access Denied")
            headers = {
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="{job.object_prefix}.zip"',
            }
            return Response(200, b"", headers, file_path=job.path)

    def wait_for_exports(self, timeout: float | None = None) -> bool:
        """Join the export builder threads (tests and demos); True when all have finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def close(self) -> None:
        """Stop running exports and remove the export files this app created."""
        self._closing.set()  # builds stop between two ranges: their files are about to go anyway
        self.wait_for_exports(timeout=30)
        self._closing.clear()
        cleanup = getattr(self, "_cleanup", None)
        if cleanup is not None:
            cleanup()

    # ------------------------------------------------------------------ POST /users/delete
    def _users_delete(self, req: Request, params: dict[str, str]) -> Response:
        endpoint = "POST /users/delete"
        body = _body_object(req)
        kinds = [
            k
            for k in ("external_ids", "user_aliases", "braze_ids", "email_addresses", "phone_numbers")
            if body.get(k)
        ]
        if len(kinds) != 1:
            raise _bad_request(
                "Provide exactly one identifier type: external_ids, user_aliases, braze_ids, email_addresses or phone_numbers"
            )
        kind = kinds[0]
        items = body[kind]
        if not isinstance(items, list):
            raise _bad_request(f"'{kind}' must be an array")
        if len(items) > IDS_PER_REQUEST_MAX:
            self._violate(endpoint, f"{len(items)} {kind}; the limit is {IDS_PER_REQUEST_MAX}")
            raise _bad_request("The max number of ids per request was exceeded")
        deleted = 0
        with self._lock:
            users = self.world.users
            for item in items:
                slots = self._slots_to_delete(kind, item)
                for slot in slots:
                    users.delete(slot)
                    deleted += 1
        return _json(201, {"deleted": deleted, "message": "success"})

    def _slots_to_delete(self, kind: str, item: Any) -> list[int]:
        users = self.world.users
        if kind == "external_ids" and isinstance(item, str):
            found = users.slot_of_external_id(item)
        elif kind == "braze_ids" and isinstance(item, str):
            found = users.slot_of_braze_id(item)
        elif kind == "user_aliases" and isinstance(item, dict):
            found = users.slot_of_alias(str(item.get("alias_label")), str(item.get("alias_name")))
        elif kind in ("email_addresses", "phone_numbers") and isinstance(item, dict):
            key = "email" if kind == "email_addresses" else "phone"
            if not isinstance(item.get(key), str):
                raise _bad_request(f"each of '{kind}' needs '{key}'")
            slots = users.slots_with_email(item[key]) if key == "email" else users.slots_with_phone(item[key])
            for rule in item.get("prioritization") or []:
                if len(slots) <= 1:
                    break
                if rule == "identified":
                    slots = [s for s in slots if users.profile(s).get("external_id") is not None]
                elif rule == "unidentified":
                    slots = [s for s in slots if users.profile(s).get("external_id") is None]
                elif rule == "most_recently_updated":
                    slots = [max(slots, key=lambda s: (users.updated_at(s), s))]
            return slots if len(slots) == 1 else []  # still ambiguous: Braze deletes nothing
        else:
            raise _bad_request(f"invalid item in '{kind}'")
        return [] if found is None else [found]

    # ------------------------------------------------------------------ segments
    @staticmethod
    def _page(req: Request) -> int:
        page = _int_arg(req, "page", 0)
        if page < 0:
            raise _bad_request("'page' must be 0 or more")
        return page

    @staticmethod
    def _descending(req: Request, default: str = "asc") -> bool:
        direction = (req.arg("sort_direction") or default).lower()
        if direction not in ("asc", "desc"):
            raise _bad_request("'sort_direction' must be asc or desc")
        return direction == "desc"

    def _segments_list(self, req: Request, params: dict[str, str]) -> Response:
        page, desc = self._page(req), self._descending(req)
        with self._lock:
            ordered = sorted(self.world.segments.values(), key=lambda s: (s.created_at, s.id), reverse=desc)
            chosen = ordered[page * LIST_PAGE_SIZE : (page + 1) * LIST_PAGE_SIZE]
            items = [
                {
                    "id": s.id,
                    "name": s.name,
                    "analytics_tracking_enabled": s.analytics_tracking_enabled,
                    "tags": list(s.tags),
                }
                for s in chosen
            ]
        return _json(200, {"message": "success", "segments": items})

    def _segment(self, req: Request) -> SegmentDef:
        segment_id = req.arg("segment_id")
        if not segment_id:
            raise _bad_request("'segment_id' is required")
        segment = self.world.segments.get(segment_id)
        if segment is None:
            raise _bad_request("Invalid 'segment_id'", f"no segment with id {segment_id}")
        return segment

    def _segment_details(self, req: Request, params: dict[str, str]) -> Response:
        with self._lock:
            s = self._segment(req)
            payload = {
                "message": "success",
                "created_at": iso_offset(s.created_at),
                "updated_at": iso_offset(s.updated_at),
                "name": s.name,
                "description": s.description,
                "text_description": s.description,
                "tags": list(s.tags),
                "teams": ["Marketing"],
            }
        return _json(200, payload)

    def _length(self, req: Request, endpoint: str, maximum: int) -> int:
        length = _int_arg(req, "length")
        if not 1 <= length <= maximum:
            self._violate(endpoint, f"length={length}; Braze accepts 1 to {maximum}")
            raise _bad_request(f"'length' must be between 1 and {maximum}")
        return length

    def _ending_at(self, req: Request, now: float, *, required: bool = False) -> date:
        raw = req.arg("ending_at")
        if raw is None or raw == "":
            if required:
                raise _bad_request("'ending_at' is required")
            return utc_day(now)
        parsed = parse_time(raw)
        if parsed is None:
            raise _bad_request("'ending_at' must be an ISO-8601 datetime")
        return utc_day(parsed)

    def _segment_series(self, req: Request, params: dict[str, str]) -> Response:
        length = self._length(req, "GET /segments/data_series", SERIES_LENGTH_MAX)
        with self._lock:
            segment = self._segment(req)
            now = self._now()
            days = self._series_days(self._ending_at(req, now), length, now)
            data = [{"time": d.isoformat(), "size": segment_size_on(self.world, segment, d)} for d in days]
        return _json(200, {"message": "success", "data": data})

    # ------------------------------------------------------------------ campaigns and Canvases
    def _edited_after(self, req: Request) -> float | None:
        raw = req.arg("last_edit.time[gt]")
        if raw is None or raw == "":
            return None
        parsed = parse_time(raw)
        if parsed is None:
            raise _bad_request("'last_edit.time[gt]' must look like yyyy-MM-DDTHH:mm:ss")
        return parsed

    def _listing(self, req: Request, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        page, desc = self._page(req), self._descending(req)
        include_archived = _bool_arg(req, "include_archived")
        after = self._edited_after(req)
        chosen = [
            item
            for item in items
            if (include_archived or not item["archived"])
            and (after is None or int(item["last_edited"]) > after)
        ]
        chosen.sort(key=lambda item: (item["created_at"], item["id"]), reverse=desc)
        return chosen[page * LIST_PAGE_SIZE : (page + 1) * LIST_PAGE_SIZE]

    def _campaigns_list(self, req: Request, params: dict[str, str]) -> Response:
        with self._lock:
            chosen = self._listing(req, self.world.campaigns.values())
            items = [
                {
                    "id": c["id"],
                    "last_edited": iso_offset(c["last_edited"]),
                    "name": c["name"],
                    "is_api_campaign": c["is_api_campaign"],
                    "tags": list(c["tags"]),
                }
                for c in chosen
            ]
        return _json(200, {"message": "success", "campaigns": items})

    def _campaign(self, req: Request) -> dict[str, Any]:
        campaign_id = req.arg("campaign_id")
        if not campaign_id:
            raise _bad_request("'campaign_id' is required")
        campaign = self.world.campaigns.get(campaign_id)
        if campaign is None:
            raise _bad_request("Invalid 'campaign_id'", f"no campaign with id {campaign_id}")
        return campaign

    def _last_sent(self, campaign: Mapping[str, Any], now: float) -> float | None:
        if not campaign["ongoing"]:
            last: float | None = campaign["last_sent"]
            return last
        day = utc_day(now)
        for back in range(14):  # an ongoing campaign last sent on its latest sending day, at 10:00
            candidate = day - timedelta(days=back)
            sent_at = midnight_epoch(candidate) + 10 * 3600.0
            if sends_on(campaign, candidate) and sent_at <= now:
                return sent_at
        first: float | None = campaign["first_sent"]
        return first

    def _campaign_details(self, req: Request, params: dict[str, str]) -> Response:
        with self._lock:
            c = self._campaign(req)
            now = self._now()
            last_sent = self._last_sent(c, now)
            payload = {
                "message": "success",
                "created_at": iso_offset(c["created_at"]),
                "updated_at": iso_offset(c["updated_at"]),
                "archived": c["archived"],
                "draft": c["draft"],
                "enabled": c["enabled"],
                "has_post_launch_draft": c["has_post_launch_draft"],
                "name": c["name"],
                "description": c["description"],
                "schedule_type": c["schedule_type"],
                "channels": list(c["channels"]),
                "first_sent": None if c["first_sent"] is None else iso_offset(c["first_sent"]),
                "last_sent": None if last_sent is None else iso_offset(last_sent),
                "tags": list(c["tags"]),
                "teams": list(c["teams"]),
                "messages": copy_json(c["messages"]),
                "conversion_behaviors": copy_json(c["conversion_behaviors"]),
            }
        return _json(200, payload)

    def _campaign_series(self, req: Request, params: dict[str, str]) -> Response:
        length = self._length(req, "GET /campaigns/data_series", SERIES_LENGTH_MAX)
        with self._lock:
            campaign = self._campaign(req)
            now = self._now()
            days = self._series_days(self._ending_at(req, now), length, now)
            world = self.world
            self._log_series("campaign", campaign["id"], length, days)
        data = [self._partial(d, campaign_day(world, campaign, d), now) for d in days]
        return _json(200, {"message": "success", "data": data})

    def _log_series(self, kind: str, object_id: str, length: int, days: list[date]) -> None:
        self.series_requests.append(
            {
                "kind": kind,
                "id": object_id,
                "length": length,
                "first_day": days[0].isoformat() if days else None,
                "last_day": days[-1].isoformat() if days else None,
            }
        )

    def _canvas_list(self, req: Request, params: dict[str, str]) -> Response:
        with self._lock:
            chosen = self._listing(req, self.world.canvases.values())
            items = [
                {
                    "id": c["id"],
                    "last_edited": iso_offset(c["last_edited"]),
                    "name": c["name"],
                    "tags": list(c["tags"]),
                }
                for c in chosen
            ]
        return _json(200, {"canvases": items, "message": "success"})

    def _canvas(self, req: Request) -> dict[str, Any]:
        canvas_id = req.arg("canvas_id")
        if not canvas_id:
            raise _bad_request("'canvas_id' is required")
        canvas = self.world.canvases.get(canvas_id)
        if canvas is None:
            raise _bad_request("Invalid 'canvas_id'", f"no Canvas with id {canvas_id}")
        return canvas

    def _canvas_details(self, req: Request, params: dict[str, str]) -> Response:
        with self._lock:
            c = self._canvas(req)
            now = self._now()
            last_entry = now - now % 3600 if c["ongoing"] else c["last_entry"]
            steps = [
                {k: copy_json(v) for k, v in step.items() if k != "deleted"}
                for step in c["steps"]
                if not step["deleted"]
            ]
            payload = {
                "created_at": iso_offset(c["created_at"]),
                "updated_at": iso_offset(c["updated_at"]),
                "name": c["name"],
                "description": c["description"],
                "archived": c["archived"],
                "draft": c["draft"],
                "enabled": c["enabled"],
                "has_post_launch_draft": c["has_post_launch_draft"],
                "schedule_type": c["schedule_type"],
                "first_entry": iso_offset(c["first_entry"]),
                "last_entry": None if last_entry is None else iso_offset(last_entry),
                "channels": list(c["channels"]),
                "variants": copy_json(c["variants"]),
                "tags": list(c["tags"]),
                "teams": list(c["teams"]),
                "steps": steps,
                "message": "success",
            }
        return _json(200, payload)

    def _canvas_series(self, req: Request, params: dict[str, str]) -> Response:
        endpoint = "GET /canvas/data_series"
        now = self._now()
        end = self._ending_at(req, now, required=True)
        if req.arg("length"):
            length = self._length(req, endpoint, CANVAS_WINDOW_MAX)
        elif req.arg("starting_at"):
            start_ts = parse_time(req.arg("starting_at"))
            if start_ts is None:
                raise _bad_request("'starting_at' must be an ISO-8601 datetime")
            length = (end - utc_day(start_ts)).days + 1
            if length < 1:
                raise _bad_request("'starting_at' must be before 'ending_at'")
            if length > CANVAS_WINDOW_MAX:
                self._violate(
                    endpoint, f"a window of {length} days; Braze accepts at most {CANVAS_WINDOW_MAX}"
                )
                raise _bad_request(
                    f"The window between 'starting_at' and 'ending_at' must be at most {CANVAS_WINDOW_MAX} days"
                )
        else:
            raise _bad_request("Either 'length' or 'starting_at' is required")
        flags = {
            "variant_breakdown": _bool_arg(req, "include_variant_breakdown"),
            "step_breakdown": _bool_arg(req, "include_step_breakdown"),
            "include_deleted_steps": _bool_arg(req, "include_deleted_step_data"),
        }
        with self._lock:
            canvas = self._canvas(req)
            days = self._series_days(end, length, now)
            world = self.world
            self._log_series("canvas", canvas["id"], length, days)
        stats = [self._partial(d, canvas_day(world, canvas, d, **flags), now) for d in days]
        return _json(200, {"data": {"name": canvas["name"], "stats": stats}, "message": "success"})

    # ------------------------------------------------------------------ email and subscriptions
    def _email_status(self, req: Request, params: dict[str, str]) -> Response:
        endpoint = "POST /email/status"
        body = _body_object(req)
        emails = _string_list(body.get("email"), "email")
        if not emails:
            raise _bad_request("'email' is required")
        if len(emails) > IDS_PER_REQUEST_MAX:
            self._violate(endpoint, f"{len(emails)} emails; the limit is {IDS_PER_REQUEST_MAX}")
            raise _bad_request("The max number of emails per request was exceeded")
        state = body.get("subscription_state")
        if state not in SUBSCRIBE_STATES:
            raise _bad_request("'subscription_state' must be one of opted_in, subscribed, unsubscribed")
        with self._lock:
            now = self._now()
            users = self.world.users
            for email in emails:
                slots = users.slots_with_email(email)
                if not slots:
                    # Remembered until a profile with this address appears.
                    self.world.email_states[email_key(email)] = state
                    if state == "unsubscribed":
                        self._log_unsubscribe(now, email)
                for slot in slots:
                    self._set_email_subscribe(slot, state, now)
        return _json(201, {"message": "success"})

    def _email_list(
        self, req: Request, endpoint: str, log_name: str, stamp: str, default_desc: bool
    ) -> Response:
        end_raw, start_raw, email = req.arg("end_date"), req.arg("start_date"), req.arg("email")
        if not end_raw:
            raise _bad_request("'end_date' is required")
        if not start_raw and not email:
            raise _bad_request("'start_date' or 'email' is required with 'end_date'")
        limit = _int_arg(req, "limit", 100)
        if limit > EMAIL_LIST_LIMIT_MAX:
            self._violate(endpoint, f"limit={limit}; Braze accepts at most {EMAIL_LIST_LIMIT_MAX}")
            raise _bad_request(f"'limit' must be at most {EMAIL_LIST_LIMIT_MAX}")
        if limit < 1:
            raise _bad_request("'limit' must be at least 1")
        offset = _int_arg(req, "offset", 0)
        if offset < 0:
            raise _bad_request("'offset' must be 0 or more")
        end = _parse_day(end_raw, "end_date")  # read as midnight UTC, like Braze
        desc = self._descending(req, "desc") if default_desc else True
        with self._lock:
            timelog = getattr(self.world, log_name)
            if email:
                entries = list(timelog.by_email.get(email_key(email), ()))  # dates are ignored with email
                if desc:
                    entries.reverse()
                chosen = entries[offset : offset + limit]
            else:
                start = _parse_day(start_raw, "start_date")
                lo, hi = timelog.between(start, end)
                if desc:
                    top = hi - offset
                    picked = range(top - 1, max(lo, top - limit) - 1, -1)
                else:
                    picked = range(lo + offset, min(hi, lo + offset + limit))
                chosen = [(timelog.times[i], timelog.emails[i]) for i in picked]
        return _json(
            200, {"emails": [{"email": e, stamp: iso_z(ts)} for ts, e in chosen], "message": "success"}
        )

    def _email_unsubscribes(self, req: Request, params: dict[str, str]) -> Response:
        return self._email_list(req, "GET /email/unsubscribes", "unsubscribes", "unsubscribed_at", True)

    def _email_hard_bounces(self, req: Request, params: dict[str, str]) -> Response:
        return self._email_list(req, "GET /email/hard_bounces", "hard_bounces", "hard_bounced_at", False)

    def _subscription_set(self, req: Request, params: dict[str, str]) -> Response:
        endpoint = "POST /subscription/status/set"
        body = _body_object(req)
        gid = body.get("subscription_group_id")
        if not isinstance(gid, str) or not gid:
            raise _bad_request("'subscription_group_id' is required")
        state = body.get("subscription_state")
        if state not in _GROUP_STATES:
            raise _bad_request("'subscription_state' must be subscribed or unsubscribed")
        external_ids = _string_list(body.get("external_id"), "external_id")
        emails = _string_list(body.get("email"), "email")
        phones = _string_list(body.get("phone"), "phone")
        if emails and phones:
            raise _bad_request("Either an email address or a phone number should be provided, but not both.")
        if not (external_ids or emails or phones):
            raise _bad_request("'external_id', 'email' or 'phone' is required")
        for name, values in (("external_id", external_ids), ("email", emails), ("phone", phones)):
            if len(values) > IDS_PER_REQUEST_MAX:
                self._violate(
                    endpoint, f"{len(values)} values in '{name}'; the limit is {IDS_PER_REQUEST_MAX}"
                )
                raise _bad_request(f"The max number of '{name}' per request was exceeded")
        with self._lock:
            group = self.world.subscription_groups.get(gid)
            if group is None:
                raise _bad_request("Invalid 'subscription_group_id'", f"no subscription group with id {gid}")
            if (group["channel"] == "email" and phones) or (group["channel"] != "email" and emails):
                raise _bad_request(
                    f"This {group['channel']} subscription group cannot be updated by that identifier"
                )
            users = self.world.users
            now = self._now()
            slots: list[int] = []
            for ext in external_ids:
                slot = users.slot_of_external_id(ext)
                if slot is not None:
                    slots.append(slot)
            for email in emails:
                slots.extend(users.slots_with_email(email))  # every profile sharing the address
            for phone in phones:
                slots.extend(users.slots_with_phone(phone))
            for slot in dict.fromkeys(slots):
                self._set_groups(slot, [(gid, state)], now)
        return _json(201, {"message": "success"})

    def _subscription_get(self, req: Request, params: dict[str, str]) -> Response:
        gid = req.arg("subscription_group_id")
        if not gid:
            raise _bad_request("'subscription_group_id' is required")
        external_ids, emails, phones = req.args("external_id"), req.args("email"), req.args("phone")
        if not external_ids and emails and phones:
            raise _bad_request("Either an email address or a phone number should be provided, but not both.")
        status: dict[str, str] = {}
        with self._lock:
            if gid not in self.world.subscription_groups:
                raise _bad_request("Invalid 'subscription_group_id'")
            users = self.world.users

            def state_of(slots: Iterable[int]) -> str:
                for slot in slots:
                    found = users.groups.get(slot, {}).get(gid)
                    if found is not None:
                        return found.capitalize()
                return "Unknown"

            if external_ids:
                for ext in external_ids:
                    slot = users.slot_of_external_id(ext)
                    status[ext] = state_of([] if slot is None else [slot])
            else:
                for email in emails:
                    status[email] = state_of(users.slots_with_email(email))
                for phone in phones:
                    status[phone] = state_of(users.slots_with_phone(phone))
        return _json(200, {"status": status, "message": "success"})

    # ------------------------------------------------------------------ catalogs and events
    def _catalogs_list(self, req: Request, params: dict[str, str]) -> Response:
        with self._lock:
            items = [
                {
                    "name": c["name"],
                    "description": c["description"],
                    "fields": copy_json(c["fields"]),
                    "num_items": len(c["items"]),
                    "updated_at": iso_z(c["updated_at"]),
                }
                for c in self.world.catalogs.values()
            ]
        return _json(200, {"catalogs": items, "message": "success"})

    @staticmethod
    def _catalog_error(status: int, error_id: str, message: str, parameter: str, value: str) -> HttpError:
        return HttpError(
            status,
            {
                "errors": [
                    {
                        "id": error_id,
                        "message": message,
                        "parameters": [parameter],
                        "parameter_values": [value],
                    }
                ],
                "message": "Invalid Request",
            },
        )

    def _catalog_items(self, req: Request, params: dict[str, str]) -> Response:
        name = unquote(params["catalog_name"])
        cursor = req.arg("cursor")
        skip = 0
        if cursor is not None:
            try:
                decoded = base64.b64decode(cursor, validate=True).decode()
                if not decoded.startswith(_CURSOR_PREFIX):
                    raise ValueError(decoded)
                skip = int(decoded[len(_CURSOR_PREFIX) :])
                if skip < 0:
                    raise ValueError(decoded)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise self._catalog_error(
                    400, "invalid-cursor", "'cursor' is not valid", "cursor", cursor
                ) from None
        with self._lock:
            catalog = self.world.catalogs.get(name)
            if catalog is None:
                raise self._catalog_error(
                    404, "catalog-not-found", "Could not find catalog", "catalog_name", name
                )
            all_items = list(catalog["items"].values())
            page = copy_json(all_items[skip : skip + CATALOG_PAGE_SIZE])
        headers = {}
        total = len(all_items)
        if total > CATALOG_PAGE_SIZE:
            links = []
            base = f"{self.public_base}{self.base_path}/catalogs/{name}/items?cursor="
            if skip > 0:
                links.append(f'<{base}{self._cursor(max(0, skip - CATALOG_PAGE_SIZE))}>; rel="prev"')
            if skip + CATALOG_PAGE_SIZE < total:
                links.append(f'<{base}{self._cursor(skip + CATALOG_PAGE_SIZE)}>; rel="next"')
            if links:
                headers["Link"] = ",".join(links)
        return _json(200, {"items": page, "message": "success"}, headers)

    def _catalog_item(self, req: Request, params: dict[str, str]) -> Response:
        name, item_id = unquote(params["catalog_name"]), unquote(params["item_id"])
        with self._lock:
            catalog = self.world.catalogs.get(name)
            if catalog is None:
                raise self._catalog_error(
                    404, "catalog-not-found", "Could not find catalog", "catalog_name", name
                )
            item = catalog["items"].get(item_id)
            if item is None:
                raise self._catalog_error(404, "item-not-found", "Could not find item", "item_id", item_id)
            found = copy_json(item)
        return _json(200, {"items": [found], "message": "success"})

    @staticmethod
    def _cursor(skip: int) -> str:
        return base64.b64encode(f"{_CURSOR_PREFIX}{skip}".encode()).decode()

    def _events_list(self, req: Request, params: dict[str, str]) -> Response:
        page = self._page(req)
        with self._lock:
            names = sorted(self.world.event_names)
        return _json(
            200,
            {"message": "success", "events": names[page * EVENTS_PAGE_SIZE : (page + 1) * EVENTS_PAGE_SIZE]},
        )

    # ------------------------------------------------------------------ seeding support for the server
    def overlap_identities(self, n: int) -> list[tuple[str | None, str | None]]:
        """(email, external_id) of the first n users with a valid email, to seed matching Brevo contacts."""
        out: list[tuple[str | None, str | None]] = []
        with self._lock:
            users = self.world.users
            seeds = users.seeds
            for slot in users.iter_slots():
                if len(out) >= n:
                    break
                if users.is_stored(slot) or slot >= seeds.n:
                    profile = users.profile(slot)
                    email, ext = profile.get("email"), profile.get("external_id")
                else:
                    head = seeds.head(slot)
                    email, ext = seeds.email(slot, head), seeds.external_id(slot, head)
                if isinstance(email, str) and email_problem(email) is None:
                    out.append((email, ext))
        return out

    # ------------------------------------------------------------------ admin
    def admin(self, req: Request, subpath: str) -> Response:
        """Inspection and test mutations under /_admin/braze/ (no auth; the server allows loopback only)."""
        parts = [unquote(p) for p in subpath.split("/") if p]
        try:
            with self._lock:
                return self._admin_route(req, parts)
        except HttpError as exc:
            return _json(exc.status, exc.payload, exc.headers)

    def _admin_route(self, req: Request, parts: list[str]) -> Response:
        world = self.world
        users = world.users
        now = self._now()
        match (req.method, parts):
            case ("GET", []) | ("GET", ["summary"]):
                return _json(200, self._summary())
            case ("GET", ["users"]):
                offset = max(0, _int_arg(req, "offset", 0))
                limit = max(1, _int_arg(req, "limit", 100))  # no cap: tests read small worlds whole
                chosen = []
                for index, slot in enumerate(users.iter_slots()):
                    if index >= offset + limit:
                        break
                    if index >= offset:
                        chosen.append(self._full_user(slot))
                return _json(200, {"users": chosen, "total": len(users), "offset": offset, "limit": limit})
            case ("GET", ["users", external_id]):
                return _json(200, self._full_user(self._admin_slot(external_id)))
            case ("POST", ["users"]):
                return _json(200, self._admin_change_users(_body_object(req), now))
            case ("DELETE", ["users", external_id]):
                users.delete(self._admin_slot(external_id))
                return _json(200, {"deleted": 1})
            case ("POST", ["segments", segment_id, "members"]):
                segment = self._admin_segment(segment_id)
                body = _body_object(req)
                add, remove = _string_list(body.get("add"), "add"), _string_list(body.get("remove"), "remove")
                segment.added.update(add)
                segment.removed.difference_update(add)
                segment.removed.update(remove)
                segment.added.difference_update(remove)
                segment.updated_at = now
                return _json(200, {"added": len(add), "removed": len(remove)})
            case ("POST", ["segments", segment_id, "rename"]):
                segment = self._admin_segment(segment_id)
                name = _body_object(req).get("name")
                if not isinstance(name, str) or not name:
                    raise _bad_request("'name' is required")
                segment.name, segment.updated_at = name, now
                return _json(200, {"id": segment.id, "name": name})
            case ("POST", ["campaigns", campaign_id, "edit"]):
                campaign = world.campaigns.get(campaign_id)
                if campaign is None:
                    raise HttpError(404, {"message": f"no campaign {campaign_id}"})
                changes = _body_object(req) if req.body else {}
                for key in ("name", "tags", "archived", "description"):
                    if key in changes:
                        campaign[key] = changes[key]
                campaign["last_edited"] = campaign["updated_at"] = float(
                    int(max(now, campaign["last_edited"]))
                )
                return _json(200, {"id": campaign_id, "last_edited": iso_offset(campaign["last_edited"])})
            case ("POST", ["catalogs", name, "items"]):
                catalog = self._admin_catalog(name)
                items = _body_object(req).get("items")
                if not isinstance(items, list) or not all(
                    isinstance(i, dict) and isinstance(i.get("id"), str) for i in items
                ):
                    raise _bad_request("'items' must be an array of objects with a string 'id'")
                for item in items:
                    catalog["items"][item["id"]] = {**catalog["items"].get(item["id"], {}), **item}
                catalog["updated_at"] = now
                return _json(200, {"upserted": len(items)})
            case ("DELETE", ["catalogs", name, "items", item_id]):
                catalog = self._admin_catalog(name)
                if catalog["items"].pop(item_id, None) is None:
                    raise HttpError(404, {"message": f"no item {item_id} in {name}"})
                catalog["updated_at"] = now
                return _json(200, {"deleted": 1})
            case ("GET", ["events"]):
                slot = self._admin_slot(req.arg("external_id") or "")
                entries = users.events.get(slot, [])
                return _json(
                    200,
                    {
                        "events": [e for e in entries if e["type"] == "event"],
                        "purchases": [e for e in entries if e["type"] == "purchase"],
                    },
                )
            case ("GET", ["subscriptions"]):
                slot = self._admin_slot(req.arg("external_id") or "")
                profile = users.profile(slot)
                return _json(
                    200,
                    {
                        "email_subscribe": profile.get("email_subscribe"),
                        "push_subscribe": profile.get("push_subscribe"),
                        "subscription_groups": dict(users.groups.get(slot, {})),
                    },
                )
            case ("GET", ["series_requests"]):
                return _json(200, {"requests": copy_json(self.series_requests)})
            case ("DELETE", ["series_requests"]):
                self.series_requests.clear()
                return _json(200, {"cleared": True})
            case ("GET", ["exports"]):
                return _json(200, {"exports": [job.describe() for job in self._exports.values()]})
        raise HttpError(404, {"message": f"no Braze admin route {req.method} /{'/'.join(parts)}"})

    def _summary(self) -> dict[str, Any]:
        world = self.world
        return {
            "users": len(world.users),
            "seeded_users": world.n_seeded,
            "seed": world.seed,
            "today": world.today.isoformat(),
            "segments": {s.id: s.name for s in world.segments.values()},
            "campaigns": len(world.campaigns),
            "canvases": len(world.canvases),
            "catalogs": {name: len(c["items"]) for name, c in world.catalogs.items()},
            "subscription_groups": copy_json(world.subscription_groups),
            "unsubscribes": len(world.unsubscribes),
            "hard_bounces": len(world.hard_bounces),
            "exports": len(self._exports),
        }

    def _admin_slot(self, external_id: str) -> int:
        slot = self.world.users.slot_of_external_id(external_id) if external_id else None
        if slot is None:
            raise HttpError(404, {"message": f"no user with external_id {external_id!r}"})
        return slot

    def _admin_segment(self, segment_id: str) -> SegmentDef:
        segment = self.world.segments.get(segment_id)
        if segment is None:
            raise HttpError(404, {"message": f"no segment {segment_id}"})
        return segment

    def _admin_catalog(self, name: str) -> dict[str, Any]:
        catalog = self.world.catalogs.get(name)
        if catalog is None:
            raise HttpError(404, {"message": f"no catalog {name}"})
        return catalog

    def _full_user(self, slot: int) -> dict[str, Any]:
        users = self.world.users
        profile: dict[str, Any] = copy_json(users.profile(slot))
        entries = users.events.get(slot, [])
        profile["updated_at"] = iso_z(users.updated_at(slot))
        profile["events"] = [e for e in entries if e["type"] == "event"]
        profile["purchases"] = [e for e in entries if e["type"] == "purchase"]
        profile["subscription_groups"] = dict(users.groups.get(slot, {}))
        return profile

    def _admin_change_users(self, body: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Direct changes, as the customer's app would make them (same rules as /users/track)."""
        items = body.get("users")
        if not isinstance(items, list):
            raise _bad_request("'users' must be an array of partial user objects")
        outcome = {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0}
        errors = []
        for index, obj in enumerate(items):
            try:
                if not isinstance(obj, dict) or not isinstance(obj.get("external_id"), str):
                    raise ValueError("each user needs an 'external_id'")
                outcome[self._apply_attribute_object(obj, now)] += 1
            except ValueError as exc:
                errors.append({"index": index, "type": str(exc)})
        return {**outcome, "errors": errors}

    # ------------------------------------------------------------------ state
    def dump_state(self) -> dict[str, Any]:
        """JSON-able: the seed plus everything that changed since (exports are not kept)."""
        with self._lock:
            world = self.world
            return {
                "version": 1,
                "seed": world.seed,
                "n_seeded": world.n_seeded,
                "today": world.today.isoformat(),
                "users": copy_json(world.users.dump()),
                "segments": [s.to_json() for s in world.segments.values()],
                "campaigns": copy_json(list(world.campaigns.values())),
                "canvases": copy_json(list(world.canvases.values())),
                "catalogs": [
                    {
                        **{k: v for k, v in c.items() if k != "items"},
                        "items": copy_json(list(c["items"].values())),
                    }
                    for c in world.catalogs.values()
                ],
                "email_states": dict(world.email_states),
                "live_unsubscribes": [[ts, email] for ts, email in world.live_unsubscribes],
                "event_names": sorted(world.event_names),
            }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Rebuild the world from its seed, then replay the changes of a dump_state()."""
        world = seed_braze_world(
            int(state["n_seeded"]), int(state["seed"]), today=date.fromisoformat(state["today"])
        )
        world.users.load(state.get("users", {}))
        if "segments" in state:
            world.segments = {s["id"]: SegmentDef.from_json(s) for s in state["segments"]}
        if "campaigns" in state:
            world.campaigns = {c["id"]: copy_json(c) for c in state["campaigns"]}
        if "canvases" in state:
            world.canvases = {c["id"]: copy_json(c) for c in state["canvases"]}
        if "catalogs" in state:
            world.catalogs = {
                c["name"]: {**copy_json(c), "items": {i["id"]: copy_json(i) for i in c["items"]}}
                for c in state["catalogs"]
            }
        world.email_states = dict(state.get("email_states", {}))
        for ts, email in state.get("live_unsubscribes", []):
            world.unsubscribes.add(float(ts), email)
            world.live_unsubscribes.append((float(ts), email))
        world.event_names.update(state.get("event_names", []))
        with self._lock:
            self.world = world
            self._exports.clear()
