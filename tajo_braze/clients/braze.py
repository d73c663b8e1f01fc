"""Braze REST API client: one method per endpoint, typed records out, no business rules.

Each method names its rate-limit bucket and the API-key permission it needs, so a 403 can say
which permission is missing. Batch limits are checked here, before a request is wasted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import orjson

from tajo_braze import jsonbytes
from tajo_braze.http import ApiResponse, ApiSession
from tajo_braze.models import (
    BrazeUser,
    Campaign,
    Canvas,
    EmailAddressEvent,
    Segment,
    SegmentExportJob,
    TrackError,
    TrackResult,
    UserExportIdsResult,
)
from tajo_braze.ratelimit import Bucket

TRACK_MAX_PER_ARRAY = 75
EXPORT_IDS_MAX = 50
DELETE_MAX = 50
EMAIL_STATUS_MAX = 50
SUBSCRIPTION_IDS_MAX = 50
LIST_PAGE_SIZE = 100
EMAIL_PAGE_MAX = 500
CAMPAIGN_SERIES_MAX_DAYS = 100
SEGMENT_SERIES_MAX_DAYS = 100
CANVAS_SERIES_MAX_DAYS = 14
CATALOG_PAGE_SIZE = 50
BODY_LIMIT_BYTES = 4 * 1024 * 1024

BUCKET_USERS_TRACK = "braze.users_track"
BUCKET_EXPORT_IDS = "braze.export_ids"
BUCKET_USER_LIFECYCLE = "braze.user_lifecycle"
BUCKET_SUBSCRIPTION = "braze.subscription"
BUCKET_CAMPAIGN_SERIES = "braze.campaign_series"
BUCKET_CATALOG_SYNC = "braze.catalog_sync"
BUCKET_EVENTS_LIST = "braze.events_list"
BUCKET_DEFAULT = "braze.default"

# Documented defaults (braze-docs _docs/_api/api_limits.md). Buckets are shared by every caller
# of the workspace; the limiter also learns lower limits from the response headers.
BRAZE_BUCKETS: tuple[Bucket, ...] = (
    Bucket(BUCKET_USERS_TRACK, 3000, 3.0),
    Bucket(BUCKET_EXPORT_IDS, 250, 60.0),  # workspaces onboarded since 2024-08-22
    Bucket(BUCKET_USER_LIFECYCLE, 20000, 60.0),  # delete, alias, identify, merge
    Bucket(BUCKET_SUBSCRIPTION, 5000, 60.0),
    Bucket(BUCKET_CAMPAIGN_SERIES, 50000, 60.0),
    Bucket(BUCKET_CATALOG_SYNC, 50, 60.0),
    Bucket(BUCKET_EVENTS_LIST, 1000, 3600.0),
    Bucket(BUCKET_DEFAULT, 250000, 3600.0),  # everything else
)

EMAIL_STATES = ("subscribed", "unsubscribed", "opted_in")
SUBSCRIPTION_GROUP_STATES = ("subscribed", "unsubscribed")


def _count_at_most(what: str, items: Sequence[Any], maximum: int) -> None:
    if len(items) > maximum:
        raise ValueError(f"{what}: at most {maximum} per request, got {len(items)}")


def _days_between(what: str, length: int, maximum: int) -> None:
    if not 1 <= length <= maximum:
        raise ValueError(f"{what}: length must be 1..{maximum} days, got {length}")


def _body(response: ApiResponse) -> Mapping[str, Any]:
    return response.data if isinstance(response.data, Mapping) else {}


def _items(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    return list(value) if isinstance(value, list) else []


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _tags(value: Any) -> tuple[str, ...]:
    return tuple(str(tag) for tag in value) if isinstance(value, list) else ()


def _flag(value: bool) -> str:
    # requests would send Python's "True"; Braze reads lowercase booleans.
    return "true" if value else "false"


def parse_track_errors(raw: Any) -> tuple[TrackError, ...]:
    """Per-object errors of a 2xx /users/track answer, in object or plain-string form."""
    if not isinstance(raw, list):
        return ()
    errors: list[TrackError] = []
    for item in raw:
        if isinstance(item, Mapping):
            message = item.get("type") or item.get("message") or orjson.dumps(item).decode()
            index = item.get("index")
            errors.append(
                TrackError(
                    message=str(message),
                    input_array=_str_or_none(item.get("input_array")),
                    index=index if isinstance(index, int) and not isinstance(index, bool) else None,
                )
            )
        else:
            errors.append(TrackError(message=str(item), input_array=None, index=None))
    return tuple(errors)


def _export_user(raw: Mapping[str, Any]) -> BrazeUser:
    return BrazeUser(
        external_id=_str_or_none(raw.get("external_id")),
        braze_id=_str_or_none(raw.get("braze_id")),
        email=_str_or_none(raw.get("email")),
        phone=_str_or_none(raw.get("phone")),
        data=dict(raw),
    )


_LINK_PART = re.compile(r"<(?P<url>[^>]*)>(?P<params>[^,<]*)")
_REL = re.compile(r""";\s*rel\s*=\s*(?:"(?P<quoted>[^"]*)"|(?P<bare>[^;,\s]+))""", re.IGNORECASE)


def next_link_cursor(link_header: str | None) -> str | None:
    """The `cursor` of the `rel="next"` URL in a `Link` header, or None.

    Tolerates any order of parts, extra parameters, unquoted or multi-valued rel, and spacing.
    """
    if not link_header:
        return None
    for part in _LINK_PART.finditer(link_header):
        rels: list[str] = []
        for rel in _REL.finditer(part.group("params")):
            rels.extend((rel.group("quoted") or rel.group("bare") or "").lower().split())
        if "next" in rels:
            cursors = parse_qs(urlsplit(part.group("url").strip()).query).get("cursor")
            return cursors[0] if cursors else None
    return None


@dataclass(frozen=True, slots=True)
class CatalogInfo:
    """One catalog of GET /catalogs: its declared fields (in order), size and last change."""

    name: str
    fields: tuple[tuple[str, str], ...]  # (field name, type) as the catalog defines them
    num_items: int
    updated_at: str | None


def parse_catalog(raw: Mapping[str, Any]) -> CatalogInfo:
    fields = tuple(
        (str(f["name"]), str(f.get("type") or ""))
        for f in _items(raw, "fields")
        if isinstance(f, Mapping) and f.get("name")
    )
    return CatalogInfo(
        name=str(raw.get("name") or ""),
        fields=fields,
        num_items=_int(raw.get("num_items")),
        updated_at=_str_or_none(raw.get("updated_at")),
    )


class BrazeClient:
    """Typed access to the Braze REST endpoints the connector uses."""

    def __init__(self, session: ApiSession) -> None:
        self._session = session

    @property
    def session(self) -> ApiSession:
        return self._session

    def _get(
        self, path: str, *, bucket: str, permission: str, params: Any = None, endpoint: str | None = None
    ) -> ApiResponse:
        return self._session.request(
            "GET", path, buckets=(bucket,), params=params, permission=permission, endpoint=endpoint
        )

    def _post(
        self,
        path: str,
        *,
        bucket: str,
        permission: str,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> ApiResponse:
        return self._session.request(
            "POST",
            path,
            buckets=(bucket,),
            json=json,
            data=data,
            headers=headers,
            permission=permission,
            idempotent=idempotent,
        )

    # ------------------------------------------------------------- users
    def probe_track_permission(self) -> None:
        """POST /users/track with nothing to write: proves the key may write without changing anyone.

        Braze checks the key and its permission before the body, so 401/403 surface as errors while
        an empty body's 201 or 400 both mean "allowed".
        """
        self._session.request(
            "POST",
            "/users/track",
            buckets=(BUCKET_USERS_TRACK,),
            permission="users.track",
            data=b'{"attributes":[]}',
            headers={"Content-Type": "application/json"},
            expected=(400,),
        )

    def track(
        self,
        *,
        attributes: Sequence[Mapping[str, Any]] = (),
        events: Sequence[Mapping[str, Any]] = (),
        purchases: Sequence[Mapping[str, Any]] = (),
    ) -> TrackResult:
        """POST /users/track. Events and purchases are not idempotent, so such calls are never
        replayed after an ambiguous failure (the caller's ledger decides)."""
        arrays = {"attributes": attributes, "events": events, "purchases": purchases}
        for name, items in arrays.items():
            _count_at_most(f"/users/track {name}", items, TRACK_MAX_PER_ARRAY)
        payload = {name: list(items) for name, items in arrays.items() if items}
        if not payload:
            return TrackResult(0, 0, 0)
        body = jsonbytes.dumps(payload)
        if len(body) > BODY_LIMIT_BYTES:
            raise ValueError(
                f"/users/track body is {len(body)} bytes; Braze accepts at most {BODY_LIMIT_BYTES}"
            )
        response = self._post(
            "/users/track",
            bucket=BUCKET_USERS_TRACK,
            permission="users.track",
            data=body,
            headers={"Content-Type": "application/json", "X-Braze-Batch": "true"},
            idempotent=not (events or purchases),
        )
        answer = _body(response)
        return TrackResult(
            attributes_processed=_int(answer.get("attributes_processed")),
            events_processed=_int(answer.get("events_processed")),
            purchases_processed=_int(answer.get("purchases_processed")),
            errors=parse_track_errors(answer.get("errors")),
        )

    def export_ids(
        self,
        *,
        external_ids: Sequence[str] = (),
        user_aliases: Sequence[Mapping[str, str]] = (),
        email: str | None = None,
        fields_to_export: Sequence[str],
    ) -> UserExportIdsResult:
        """POST /users/export/ids for up to 50 external ids and aliases (or one email)."""
        _count_at_most("/users/export/ids identifiers", [*external_ids, *user_aliases], EXPORT_IDS_MAX)
        if not (external_ids or user_aliases or email):
            raise ValueError("/users/export/ids needs external_ids, user_aliases or email")
        if not fields_to_export:
            raise ValueError("/users/export/ids needs fields_to_export")
        payload: dict[str, Any] = {"fields_to_export": list(fields_to_export)}
        if external_ids:
            payload["external_ids"] = list(external_ids)
        if user_aliases:
            payload["user_aliases"] = [dict(alias) for alias in user_aliases]
        if email is not None:
            payload["email_address"] = email
        response = self._post(
            "/users/export/ids", bucket=BUCKET_EXPORT_IDS, permission="users.export.ids", json=payload
        )
        answer = _body(response)
        return UserExportIdsResult(
            users=tuple(_export_user(u) for u in _items(answer, "users") if isinstance(u, Mapping)),
            invalid_user_ids=tuple(str(i) for i in _items(answer, "invalid_user_ids")),
        )

    def export_segment(
        self, segment_id: str, *, fields_to_export: Sequence[str], callback_endpoint: str | None = None
    ) -> SegmentExportJob:
        """POST /users/export/segment: starts a ZIP export; its URL becomes readable when done."""
        if not fields_to_export:
            raise ValueError("/users/export/segment needs fields_to_export")
        payload: dict[str, Any] = {
            "segment_id": segment_id,
            "fields_to_export": list(fields_to_export),
            "output_format": "zip",
        }
        if callback_endpoint:
            payload["callback_endpoint"] = callback_endpoint
        response = self._post(
            "/users/export/segment", bucket=BUCKET_DEFAULT, permission="users.export.segment", json=payload
        )
        answer = _body(response)
        return SegmentExportJob(
            segment_id=segment_id,
            url=_str_or_none(answer.get("url")),
            object_prefix=_str_or_none(answer.get("object_prefix")),
        )

    def delete_users(self, external_ids: Sequence[str]) -> int:
        """POST /users/delete; returns how many deletions Braze queued."""
        _count_at_most("/users/delete external_ids", external_ids, DELETE_MAX)
        if not external_ids:
            return 0
        response = self._post(
            "/users/delete",
            bucket=BUCKET_USER_LIFECYCLE,
            permission="users.delete",
            json={"external_ids": list(external_ids)},
        )
        return _int(_body(response).get("deleted"))

    def delete_users_by(
        self, *, user_aliases: Sequence[Mapping[str, str]] = (), braze_ids: Sequence[str] = ()
    ) -> int:
        """POST /users/delete by user aliases or by braze_ids (one kind per request, at most 50)."""
        if user_aliases and braze_ids:
            raise ValueError("/users/delete takes one identifier type per request")
        _count_at_most("/users/delete user_aliases", user_aliases, DELETE_MAX)
        _count_at_most("/users/delete braze_ids", braze_ids, DELETE_MAX)
        if user_aliases:
            payload: dict[str, Any] = {
                "user_aliases": [
                    {"alias_name": a["alias_name"], "alias_label": a["alias_label"]} for a in user_aliases
                ]
            }
        elif braze_ids:
            payload = {"braze_ids": list(braze_ids)}
        else:
            return 0
        response = self._post(
            "/users/delete", bucket=BUCKET_USER_LIFECYCLE, permission="users.delete", json=payload
        )
        return _int(_body(response).get("deleted"))

    # ------------------------------------------------------------- paged lists
    def _iter_pages(
        self, path: str, key: str, *, permission: str, params: Mapping[str, Any]
    ) -> Iterator[Mapping[str, Any]]:
        """0-based `page` paging of 100 items; stops on a short page or a page seen before."""
        seen_pages: set[tuple[str, ...]] = set()
        page = 0
        while True:
            response = self._get(
                path, bucket=BUCKET_DEFAULT, permission=permission, params={**params, "page": page}
            )
            items = [item for item in _items(_body(response), key) if isinstance(item, Mapping)]
            fingerprint = tuple(str(item.get("id")) for item in items)
            if items and fingerprint in seen_pages:
                return  # the server is repeating itself: stop rather than loop forever
            seen_pages.add(fingerprint)
            yield from items
            if len(items) < LIST_PAGE_SIZE:
                return
            page += 1

    def iter_segments(self) -> Iterator[Segment]:
        """GET /segments/list, every page, oldest first."""
        for raw in self._iter_pages(
            "/segments/list", "segments", permission="segments.list", params={"sort_direction": "asc"}
        ):
            yield Segment(
                id=str(raw.get("id")),
                name=str(raw.get("name") or ""),
                analytics_tracking_enabled=bool(raw.get("analytics_tracking_enabled", False)),
                tags=_tags(raw.get("tags")),
            )

    def segment_details(self, segment_id: str) -> dict[str, Any]:
        response = self._get(
            "/segments/details",
            bucket=BUCKET_DEFAULT,
            permission="segments.details",
            params={"segment_id": segment_id},
        )
        return dict(_body(response))

    def segment_data_series(
        self, segment_id: str, *, length: int, ending_at: str | None = None
    ) -> list[dict[str, Any]]:
        _days_between("/segments/data_series", length, SEGMENT_SERIES_MAX_DAYS)
        params: dict[str, Any] = {"segment_id": segment_id, "length": length}
        if ending_at:
            params["ending_at"] = ending_at
        response = self._get(
            "/segments/data_series", bucket=BUCKET_DEFAULT, permission="segments.data_series", params=params
        )
        return [dict(item) for item in _items(_body(response), "data") if isinstance(item, Mapping)]

    def _list_params(self, edited_after: str | None, include_archived: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"include_archived": _flag(include_archived), "sort_direction": "asc"}
        if edited_after:
            params["last_edit.time[gt]"] = edited_after
        return params

    def iter_campaigns(
        self, *, edited_after: str | None = None, include_archived: bool = False
    ) -> Iterator[Campaign]:
        """GET /campaigns/list, every page; `edited_after` filters on `last_edit.time[gt]`."""
        for raw in self._iter_pages(
            "/campaigns/list",
            "campaigns",
            permission="campaigns.list",
            params=self._list_params(edited_after, include_archived),
        ):
            yield Campaign(
                id=str(raw.get("id")),
                name=str(raw.get("name") or ""),
                last_edited=_str_or_none(raw.get("last_edited")),
                is_api_campaign=bool(raw.get("is_api_campaign", False)),
                tags=_tags(raw.get("tags")),
            )

    def campaign_details(self, campaign_id: str) -> dict[str, Any]:
        response = self._get(
            "/campaigns/details",
            bucket=BUCKET_DEFAULT,
            permission="campaigns.details",
            params={"campaign_id": campaign_id},
        )
        return dict(_body(response))

    def campaign_data_series(
        self, campaign_id: str, *, length: int, ending_at: str | None = None
    ) -> list[dict[str, Any]]:
        _days_between("/campaigns/data_series", length, CAMPAIGN_SERIES_MAX_DAYS)
        params: dict[str, Any] = {"campaign_id": campaign_id, "length": length}
        if ending_at:
            params["ending_at"] = ending_at
        response = self._get(
            "/campaigns/data_series",
            bucket=BUCKET_CAMPAIGN_SERIES,
            permission="campaigns.data_series",
            params=params,
        )
        return [dict(item) for item in _items(_body(response), "data") if isinstance(item, Mapping)]

    def iter_canvases(
        self, *, edited_after: str | None = None, include_archived: bool = False
    ) -> Iterator[Canvas]:
        """GET /canvas/list, every page; `edited_after` filters on `last_edit.time[gt]`."""
        for raw in self._iter_pages(
            "/canvas/list",
            "canvases",
            permission="canvas.list",
            params=self._list_params(edited_after, include_archived),
        ):
            yield Canvas(
                id=str(raw.get("id")),
                name=str(raw.get("name") or ""),
                last_edited=_str_or_none(raw.get("last_edited")),
                tags=_tags(raw.get("tags")),
            )

    def canvas_details(self, canvas_id: str) -> dict[str, Any]:
        response = self._get(
            "/canvas/details",
            bucket=BUCKET_DEFAULT,
            permission="canvas.details",
            params={"canvas_id": canvas_id},
        )
        return dict(_body(response))

    def canvas_data_series(
        self,
        canvas_id: str,
        *,
        ending_at: str,
        length: int,
        include_variant_breakdown: bool = True,
        include_step_breakdown: bool = True,
    ) -> dict[str, Any]:
        """GET /canvas/data_series; returns its `data` object (`name`, `stats`)."""
        _days_between("/canvas/data_series", length, CANVAS_SERIES_MAX_DAYS)
        params = {
            "canvas_id": canvas_id,
            "ending_at": ending_at,
            "length": length,
            "include_variant_breakdown": _flag(include_variant_breakdown),
            "include_step_breakdown": _flag(include_step_breakdown),
        }
        response = self._get(
            "/canvas/data_series", bucket=BUCKET_DEFAULT, permission="canvas.data_series", params=params
        )
        data = _body(response).get("data")
        return dict(data) if isinstance(data, Mapping) else {}

    # ------------------------------------------------------------- email and subscriptions
    def _email_events(
        self,
        path: str,
        *,
        permission: str,
        at_field: str,
        start_date: str,
        end_date: str,
        limit: int,
        offset: int,
    ) -> list[EmailAddressEvent]:
        if not 1 <= limit <= EMAIL_PAGE_MAX:
            raise ValueError(f"{path}: limit must be 1..{EMAIL_PAGE_MAX}, got {limit}")
        params = {"start_date": start_date, "end_date": end_date, "limit": limit, "offset": offset}
        response = self._get(path, bucket=BUCKET_DEFAULT, permission=permission, params=params)
        return [
            EmailAddressEvent(email=str(item["email"]), at=_str_or_none(item.get(at_field)))
            for item in _items(_body(response), "emails")
            if isinstance(item, Mapping) and item.get("email")
        ]

    def hard_bounces(
        self, *, start_date: str, end_date: str, limit: int = 100, offset: int = 0
    ) -> list[EmailAddressEvent]:
        """GET /email/hard_bounces (dates YYYY-MM-DD), newest first."""
        return self._email_events(
            "/email/hard_bounces",
            permission="email.hard_bounces",
            at_field="hard_bounced_at",
            start_date=start_date,
            end_date=end_date,
            limit=limit,
            offset=offset,
        )

    def unsubscribes(
        self, *, start_date: str, end_date: str, limit: int = 100, offset: int = 0
    ) -> list[EmailAddressEvent]:
        """GET /email/unsubscribes (dates YYYY-MM-DD)."""
        return self._email_events(
            "/email/unsubscribes",
            permission="email.unsubscribe",
            at_field="unsubscribed_at",
            start_date=start_date,
            end_date=end_date,
            limit=limit,
            offset=offset,
        )

    def _iter_email_events(self, fetch: Any, start_date: str, end_date: str) -> Iterator[EmailAddressEvent]:
        offset = 0
        previous: list[EmailAddressEvent] | None = None
        while True:
            page: list[EmailAddressEvent] = fetch(
                start_date=start_date, end_date=end_date, limit=EMAIL_PAGE_MAX, offset=offset
            )
            if page and page == previous:
                return  # offset ignored by the server: stop rather than loop forever
            yield from page
            if len(page) < EMAIL_PAGE_MAX:
                return
            previous = page
            offset += EMAIL_PAGE_MAX

    def iter_unsubscribes(self, start_date: str, end_date: str) -> Iterator[EmailAddressEvent]:
        """Every unsubscribe in the date range, 500 per call, until a short page."""
        return self._iter_email_events(self.unsubscribes, start_date, end_date)

    def iter_hard_bounces(self, start_date: str, end_date: str) -> Iterator[EmailAddressEvent]:
        """Every hard bounce in the date range, 500 per call, until a short page."""
        return self._iter_email_events(self.hard_bounces, start_date, end_date)

    def email_status(self, emails: Sequence[str], state: str) -> None:
        """POST /email/status: set the global email subscription state of up to 50 addresses."""
        if state not in EMAIL_STATES:
            raise ValueError(f"email subscription state must be one of {EMAIL_STATES}, got {state!r}")
        _count_at_most("/email/status emails", emails, EMAIL_STATUS_MAX)
        if not emails:
            return
        self._post(
            "/email/status",
            bucket=BUCKET_DEFAULT,
            permission="email.status",
            json={"email": list(emails), "subscription_state": state},
        )

    def subscription_status_set(
        self, group_id: str, state: str, *, external_ids: Sequence[str] = (), emails: Sequence[str] = ()
    ) -> None:
        """POST /subscription/status/set for one subscription group."""
        if state not in SUBSCRIPTION_GROUP_STATES:
            raise ValueError(
                f"subscription group state must be one of {SUBSCRIPTION_GROUP_STATES}, got {state!r}"
            )
        _count_at_most("/subscription/status/set external_ids", external_ids, SUBSCRIPTION_IDS_MAX)
        _count_at_most("/subscription/status/set emails", emails, SUBSCRIPTION_IDS_MAX)
        if not (external_ids or emails):
            return
        payload: dict[str, Any] = {"subscription_group_id": group_id, "subscription_state": state}
        if external_ids:
            payload["external_id"] = list(external_ids)
        if emails:
            payload["email"] = list(emails)
        self._post(
            "/subscription/status/set",
            bucket=BUCKET_SUBSCRIPTION,
            permission="subscription.status.set",
            json=payload,
        )

    # ------------------------------------------------------------- catalogs
    def iter_catalog_items(
        self, name: str, cursor: str | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """GET /catalogs/{name}/items page by page: yields (items, cursor of the next page).

        Resume an interrupted read by passing the last cursor yielded.
        """
        seen: set[str] = set()
        while True:
            response = self._get(
                f"/catalogs/{quote(name, safe='')}/items",
                bucket=BUCKET_CATALOG_SYNC,
                permission="catalogs.get_items",
                params={"cursor": cursor} if cursor else None,
                endpoint="/catalogs/{name}/items",
            )
            items = [dict(item) for item in _items(_body(response), "items") if isinstance(item, Mapping)]
            next_cursor = next_link_cursor(response.headers.get("Link"))
            if next_cursor is not None and (next_cursor in seen or next_cursor == cursor):
                next_cursor = None  # a repeated cursor would loop forever
            yield items, next_cursor
            if next_cursor is None:
                return
            if cursor is not None:
                seen.add(cursor)
            cursor = next_cursor

    def list_catalogs(self) -> list[CatalogInfo]:
        """GET /catalogs: every catalog of the workspace with its fields, size and last change."""
        response = self._get("/catalogs", bucket=BUCKET_CATALOG_SYNC, permission="catalogs.get")
        return [parse_catalog(raw) for raw in _items(_body(response), "catalogs") if isinstance(raw, Mapping)]

    def get_catalog_item(self, name: str, item_id: str) -> dict[str, Any] | None:
        """GET /catalogs/{name}/items/{id}; None when the catalog has no such item.

        A missing catalog is still an error: "no such item" must never be inferred from it.
        """
        response = self._session.request(
            "GET",
            f"/catalogs/{quote(name, safe='')}/items/{quote(item_id, safe='')}",
            buckets=(BUCKET_CATALOG_SYNC,),
            permission="catalogs.get_item",
            expected=(404,),
            endpoint="/catalogs/{name}/items/{id}",
        )
        body = _body(response)
        if response.status == 404:
            ids = {str(e.get("id")) for e in _items(body, "errors") if isinstance(e, Mapping)}
            if "item-not-found" in ids:
                return None
            raise self._session.error_from(response, permission="catalogs.get_item")
        items = [dict(item) for item in _items(body, "items") if isinstance(item, Mapping)]
        return items[0] if items else None
