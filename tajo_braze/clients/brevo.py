"""Brevo API v3 client on plain HTTP: one method per endpoint, typed records out, no business rules.

No vendor SDK: the SDKs retry non-idempotent calls and ignore `x-sib-ratelimit-*`, and our
`ApiSession` owns both concerns.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from tajo_braze import jsonbytes
from tajo_braze.http import ApiResponse, ApiSession
from tajo_braze.models import (
    BrevoAccount,
    BrevoAttribute,
    BrevoContact,
    BrevoContactPage,
    BrevoFolder,
    BrevoList,
    ImportProcess,
    ListMembershipResult,
)
from tajo_braze.ratelimit import Bucket

CONTACTS_PAGE_MAX = 1000
LIST_MEMBERS_MAX = 150
LIST_MEMBERS_PAGE_MAX = 500
LISTS_PAGE_MAX = 50
PROCESSES_PAGE_MAX = 50
IMPORT_BODY_SAFE_BYTES = 8 * 1024 * 1024
IMPORT_BODY_MAX_BYTES = 10 * 1024 * 1024
PRODUCTS_BATCH_MAX = 100
PRODUCTS_PAGE_MAX = 1000
# GET /contacts requests out at once. Brevo allows a call every 100 ms; whenever a page of 1,000
# contacts takes longer than that to arrive and parse, one reader alone falls behind the limit.
CONTACTS_IN_FLIGHT = 2
# Offset paging by creation date shifts when contacts change mid-crawl; remembering this many
# recent ids catches the duplicates a shift causes while keeping memory flat.
DEDUPE_WINDOW = 20_000

BUCKET_CONTACTS_S = "brevo.contacts_s"
BUCKET_CONTACTS_H = "brevo.contacts_h"
BUCKET_EVENTS_S = "brevo.events_s"
BUCKET_EVENTS_H = "brevo.events_h"
BUCKET_PRODUCTS_S = "brevo.products_s"
BUCKET_PRODUCTS_H = "brevo.products_h"
BUCKET_OTHER = "brevo.other"

# General-tier limits (developers.brevo.com/docs/api-limits). Every /contacts/* call draws on
# both contacts buckets. Headers can lower a limit but never raise it, so accounts on a higher
# tier are paced at general-tier speed.
BREVO_BUCKETS: tuple[Bucket, ...] = (
    Bucket(BUCKET_CONTACTS_S, 10, 1.0),
    Bucket(BUCKET_CONTACTS_H, 36000, 3600.0),
    Bucket(BUCKET_EVENTS_S, 10, 1.0),
    Bucket(BUCKET_EVENTS_H, 36000, 3600.0),
    Bucket(BUCKET_PRODUCTS_S, 2, 1.0),
    Bucket(BUCKET_PRODUCTS_H, 7200, 3600.0),
    Bucket(BUCKET_OTHER, 100, 3600.0),  # /account, /processes, /webhooks, everything else
)
CONTACTS = (BUCKET_CONTACTS_S, BUCKET_CONTACTS_H)
EVENTS = (BUCKET_EVENTS_S, BUCKET_EVENTS_H)
PRODUCTS = (BUCKET_PRODUCTS_S, BUCKET_PRODUCTS_H)
OTHER = (BUCKET_OTHER,)

# Names used in 403 messages: Brevo keys are restricted per area, not per endpoint.
PERM_CONTACTS = "contacts"
PERM_EVENTS = "events"
PERM_ACCOUNT = "account"
PERM_WEBHOOKS = "webhooks"
PERM_ECOMMERCE = "ecommerce"

# Brevo: "Contact already in list and/or does not exist" when nothing was added or removed.
_NOTHING_CHANGED = re.compile(
    r"already in list|contacts? .*does not exist|not in (?:the )?list", re.IGNORECASE
)
_ALREADY_EXISTS = re.compile(r"already exist", re.IGNORECASE)
_TIMESTAMP = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)"
    r"(?:[.,](?P<fraction>\d+))?\s*(?P<zone>Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?$"
)


# ----------------------------------------------------------------- parsing
def parse_timestamp(value: Any) -> datetime | None:
    """An aware datetime from Brevo's timestamps: `Z`, `+02:00`, `+0200`, any fraction length.

    Values without a zone are read as UTC. Unreadable values give None rather than an error:
    a vendor's odd timestamp must not stop a sync.
    """
    if not isinstance(value, str):
        return None
    if len(value) >= 19 and value[10] == "T" and value[-1] != " ":
        # Brevo's usual form (`2024-05-01T10:00:00.123+02:00`): the standard parser, twice as fast.
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    match = _TIMESTAMP.match(value.strip())
    if match is None:
        return None
    clock = match.group("time")
    if clock.count(":") == 1:
        clock += ":00"
    fraction = (match.group("fraction") or "")[:6].ljust(6, "0")
    try:
        naive = datetime.fromisoformat(f"{match.group('date')}T{clock}.{fraction}")
    except ValueError:
        return None
    zone = match.group("zone")
    if zone is None or zone in ("Z", "z", "UTC"):
        return naive.replace(tzinfo=UTC)
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        return None
    return naive.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))


def format_since(moment: datetime) -> str:
    """`modifiedSince` with an explicit offset, e.g. `2024-01-01T00:00:00.000+00:00`.

    A naive datetime is taken as UTC.
    """
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    utc = aware.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+00:00"


def _body(response: ApiResponse) -> Mapping[str, Any]:
    return response.data if isinstance(response.data, Mapping) else {}


def _items(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    return list(value) if isinstance(value, list) else []


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _str_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def parse_contact(raw: Mapping[str, Any]) -> BrevoContact:
    """A BrevoContact from a GET /contacts item (ext_id lives in `attributes.EXT_ID`)."""
    # A full read parses a million of these: the JSON's own types (dict, list, int) are tried first.
    attributes = raw.get("attributes")
    attributes = dict(attributes) if type(attributes) is dict or isinstance(attributes, Mapping) else {}
    contact_id = raw.get("id")
    list_ids = raw.get("listIds")
    return BrevoContact(
        id=(contact_id if type(contact_id) is int else _int_or_none(contact_id)) or 0,
        email=_str_or_none(raw.get("email")),
        ext_id=_str_or_none(attributes.get("EXT_ID")),
        email_blacklisted=bool(raw.get("emailBlacklisted", False)),
        sms_blacklisted=bool(raw.get("smsBlacklisted", False)),
        created_at=parse_timestamp(raw.get("createdAt")),
        modified_at=parse_timestamp(raw.get("modifiedAt")),
        list_ids=tuple(i for i in map(_int_or_none, list_ids) if i is not None)
        if type(list_ids) is list and list_ids
        else (),
        attributes=attributes,
    )


def parse_process(raw: Mapping[str, Any]) -> ImportProcess:
    info = raw.get("info")
    counters: Mapping[str, Any] = {}
    if isinstance(info, Mapping):
        nested = info.get("import")
        counters = dict(nested) if isinstance(nested, Mapping) else dict(info)
    return ImportProcess(
        id=_int_or_none(raw.get("id")) or 0,
        name=str(raw.get("name") or ""),
        status=str(raw.get("status") or ""),
        counters=counters,
        error=_str_or_none(raw.get("error")),
    )


def _membership(body: Mapping[str, Any]) -> ListMembershipResult:
    # Brevo's schema wraps the result in "contacts"; its own example does not.
    inner = body.get("contacts")
    source = inner if isinstance(inner, Mapping) else body
    return ListMembershipResult(
        success=tuple(str(x) for x in _items(source, "success")),
        failure=tuple(str(x) for x in _items(source, "failure")),
    )


def _vendor_message(response: ApiResponse) -> str:
    body = _body(response)
    return str(body.get("message") or response.text or "")


class _RecentIds:
    """A bounded memory of recently yielded ids (see DEDUPE_WINDOW)."""

    def __init__(self, capacity: int = DEDUPE_WINDOW) -> None:
        self._order: deque[int] = deque()
        self._ids: set[int] = set()
        self._capacity = capacity

    def add(self, contact_id: int) -> bool:
        """Remember `contact_id`; False when it was already remembered."""
        if contact_id in self._ids:
            return False
        self._ids.add(contact_id)
        self._order.append(contact_id)
        if len(self._order) > self._capacity:
            self._ids.discard(self._order.popleft())
        return True


class BrevoClient:
    """Typed access to the Brevo v3 endpoints the connector uses."""

    def __init__(self, session: ApiSession) -> None:
        self._session = session

    @property
    def session(self) -> ApiSession:
        return self._session

    def _call(
        self,
        method: str,
        path: str,
        *,
        buckets: Sequence[str],
        permission: str,
        params: Any = None,
        json: Any = None,
        data: bytes | None = None,
        idempotent: bool = True,
        expected: Sequence[int] = (),
        endpoint: str | None = None,
    ) -> ApiResponse:
        return self._session.request(
            method,
            path,
            buckets=buckets,
            params=params,
            json=json,
            data=data,
            permission=permission,
            idempotent=idempotent,
            expected=expected,
            endpoint=endpoint,
        )

    # ------------------------------------------------------------- account
    def get_account(self) -> BrevoAccount:
        """GET /account (100 calls/hour bucket: cache the answer)."""
        body = _body(self._call("GET", "/account", buckets=OTHER, permission=PERM_ACCOUNT))
        prefs = body.get("dateTimePreferences")
        return BrevoAccount(
            email=_str_or_none(body.get("email")),
            company_name=_str_or_none(body.get("companyName")),
            plan_types=tuple(
                str(plan["type"])
                for plan in _items(body, "plan")
                if isinstance(plan, Mapping) and plan.get("type")
            ),
            timezone=_str_or_none(prefs.get("timezone")) if isinstance(prefs, Mapping) else None,
        )

    # ------------------------------------------------------------- contacts
    def get_contacts_page(
        self,
        *,
        limit: int = CONTACTS_PAGE_MAX,
        offset: int = 0,
        modified_since: datetime | None = None,
        sort: str = "asc",
    ) -> BrevoContactPage:
        """GET /contacts: one page, sorted by creation date."""
        if not 1 <= limit <= CONTACTS_PAGE_MAX:
            raise ValueError(f"GET /contacts: limit must be 1..{CONTACTS_PAGE_MAX}, got {limit}")
        params: dict[str, Any] = {"limit": limit, "offset": offset, "sort": sort}
        if modified_since is not None:
            params["modifiedSince"] = format_since(modified_since)
        body = _body(
            self._call("GET", "/contacts", buckets=CONTACTS, permission=PERM_CONTACTS, params=params)
        )
        contacts = tuple(
            parse_contact(c) for c in _items(body, "contacts") if type(c) is dict or isinstance(c, Mapping)
        )
        return BrevoContactPage(contacts=contacts, count=_int_or_none(body.get("count")) or 0)

    def iter_contacts(
        self, *, modified_since: datetime | None = None, limit: int = CONTACTS_PAGE_MAX
    ) -> Iterator[BrevoContact]:
        """Every contact (modified since a moment), oldest first, each id once.

        Closing the iterator early waits for the pages still being fetched and sends no more.
        """
        recent = _RecentIds()
        previous: tuple[int, ...] | None = None
        pages = self._contact_pages(limit=limit, modified_since=modified_since)
        try:
            for page in pages:
                ids = tuple(c.id for c in page.contacts)
                if ids and ids == previous:
                    return  # offset ignored by the server: stop rather than loop forever
                for contact in page.contacts:
                    if recent.add(contact.id):
                        yield contact
                previous = ids
        finally:
            # Not left to garbage collection: the pages' fetch threads must be gone when this returns.
            pages.close()

    def _contact_pages(
        self, *, limit: int, modified_since: datetime | None
    ) -> Generator[BrevoContactPage, None, None]:
        """GET /contacts pages in offset order, up to and including the first short one.

        Up to CONTACTS_IN_FLIGHT pages are requested at once, each through the session (limiter,
        retries, errors) like any call. A page is requested ahead of need only when the `count`
        of the latest answer says it holds contacts, so the read costs no call more than reading
        page after page: the first page goes out alone, and the page after a full one is read
        even when the count says nothing is left (contacts created mid-read are not missed).
        """

        def fetch(offset: int) -> BrevoContactPage:
            return self.get_contacts_page(
                limit=limit, offset=offset, modified_since=modified_since, sort="asc"
            )

        page = fetch(0)
        if len(page.contacts) < limit:
            yield page
            return
        pool = ThreadPoolExecutor(max_workers=CONTACTS_IN_FLIGHT, thread_name_prefix="brevo-contacts")
        in_flight: deque[Future[BrevoContactPage]] = deque()
        offset = 0  # of `page`, which is full
        requested = 0  # offset of the last page requested
        try:
            while True:
                while len(in_flight) < CONTACTS_IN_FLIGHT and (
                    requested == offset or requested + limit < page.count
                ):
                    requested += limit
                    in_flight.append(pool.submit(fetch, requested))
                yield page
                page = in_flight.popleft().result()
                offset += limit
                if len(page.contacts) < limit:
                    yield page
                    return  # a page requested ahead is past the end: dropped unread
        finally:
            # An error or an early close must not leave a request running behind the caller.
            pool.shutdown(wait=True, cancel_futures=True)

    def count_contacts(
        self, *, list_ids: Sequence[int] = (), created_since: datetime | None = None
    ) -> int:
        """GET /contacts with limit 1: how many contacts match (in all `list_ids`, created since a moment)."""
        params: list[tuple[str, Any]] = [("limit", 1), ("offset", 0)]
        params.extend(("listIds", int(list_id)) for list_id in list_ids)
        if created_since is not None:
            params.append(("createdSince", format_since(created_since)))
        body = _body(
            self._call("GET", "/contacts", buckets=CONTACTS, permission=PERM_CONTACTS, params=params)
        )
        return _int_or_none(body.get("count")) or 0

    def _contact_path(self, identifier: str) -> str:
        # '+' in an email must reach Brevo as %2B, '@' and '/' encoded too.
        return f"/contacts/{quote(str(identifier), safe='')}"

    @staticmethod
    def _identifier_params(identifier_type: str | None) -> dict[str, str] | None:
        return {"identifierType": identifier_type} if identifier_type else None

    def get_contact(self, identifier: str, *, identifier_type: str | None = None) -> BrevoContact | None:
        """GET /contacts/{identifier}; None when no such contact exists."""
        response = self._call(
            "GET",
            self._contact_path(identifier),
            buckets=CONTACTS,
            permission=PERM_CONTACTS,
            params=self._identifier_params(identifier_type),
            expected=(404,),
            endpoint="/contacts/{identifier}",
        )
        if response.status == 404:
            return None
        return parse_contact(_body(response))

    def create_contact(
        self,
        *,
        email: str | None = None,
        ext_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        email_blacklisted: bool | None = None,
        sms_blacklisted: bool | None = None,
        list_ids: Sequence[int] | None = None,
        update_enabled: bool = False,
    ) -> int | None:
        """POST /contacts; the new id, or None when an existing contact was updated (204)."""
        payload: dict[str, Any] = {"updateEnabled": update_enabled}
        optional = {
            "email": email,
            "ext_id": ext_id,
            "attributes": dict(attributes) if attributes is not None else None,
            "emailBlacklisted": email_blacklisted,
            "smsBlacklisted": sms_blacklisted,
            "listIds": list(list_ids) if list_ids is not None else None,
        }
        payload.update({key: value for key, value in optional.items() if value is not None})
        # Identifiers are unique in Brevo, so a replay cannot create a second contact.
        response = self._call("POST", "/contacts", buckets=CONTACTS, permission=PERM_CONTACTS, json=payload)
        return _int_or_none(_body(response).get("id"))

    def update_contact(
        self,
        identifier: str,
        *,
        identifier_type: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        ext_id: str | None = None,
        email_blacklisted: bool | None = None,
        sms_blacklisted: bool | None = None,
        list_ids: Sequence[int] | None = None,
        unlink_list_ids: Sequence[int] | None = None,
    ) -> None:
        """PUT /contacts/{identifier}, sending only the keys given (None means "leave as is")."""
        optional = {
            "attributes": dict(attributes) if attributes is not None else None,
            "ext_id": ext_id,
            "emailBlacklisted": email_blacklisted,
            "smsBlacklisted": sms_blacklisted,
            "listIds": list(list_ids) if list_ids is not None else None,
            "unlinkListIds": list(unlink_list_ids) if unlink_list_ids is not None else None,
        }
        payload = {key: value for key, value in optional.items() if value is not None}
        self._call(
            "PUT",
            self._contact_path(identifier),
            buckets=CONTACTS,
            permission=PERM_CONTACTS,
            params=self._identifier_params(identifier_type),
            json=payload,
            endpoint="/contacts/{identifier}",
        )

    def delete_contact(self, identifier: str, *, identifier_type: str | None = None) -> bool:
        """DELETE /contacts/{identifier}; False when it was already gone (404 counts as done)."""
        response = self._call(
            "DELETE",
            self._contact_path(identifier),
            buckets=CONTACTS,
            permission=PERM_CONTACTS,
            params=self._identifier_params(identifier_type),
            expected=(404,),
            endpoint="/contacts/{identifier}",
        )
        return response.status != 404

    # ------------------------------------------------------------- attributes
    def list_attributes(self) -> list[BrevoAttribute]:
        body = _body(self._call("GET", "/contacts/attributes", buckets=CONTACTS, permission=PERM_CONTACTS))
        return [
            BrevoAttribute(
                name=str(item["name"]),
                category=str(item.get("category") or ""),
                type=_str_or_none(item.get("type")),
            )
            for item in _items(body, "attributes")
            if isinstance(item, Mapping) and item.get("name")
        ]

    def create_attribute(self, name: str, *, type: str, category: str = "normal") -> None:
        """POST /contacts/attributes/{category}/{name}; an attribute that already exists is fine."""
        response = self._call(
            "POST",
            f"/contacts/attributes/{quote(category, safe='')}/{quote(name, safe='')}",
            buckets=CONTACTS,
            permission=PERM_CONTACTS,
            json={"type": type},
            expected=(400,),
            endpoint="/contacts/attributes/{category}/{name}",
        )
        if response.status == 400 and not _ALREADY_EXISTS.search(_vendor_message(response)):
            raise self._session.error_from(response, permission=PERM_CONTACTS)

    # ------------------------------------------------------------- lists and folders
    def _iter_offset(
        self,
        path: str,
        key: str,
        *,
        limit: int,
        params: Mapping[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> Iterator[Any]:
        """Offset paging of /contacts/* collections until a short page (or a repeated one)."""
        offset = 0
        previous: list[Any] | None = None
        while True:
            body = _body(
                self._call(
                    "GET",
                    path,
                    buckets=CONTACTS,
                    permission=PERM_CONTACTS,
                    params={**(params or {}), "limit": limit, "offset": offset},
                    endpoint=endpoint,
                )
            )
            items = [item for item in _items(body, key) if isinstance(item, Mapping)]
            if items and items == previous:
                return  # offset ignored by the server: stop rather than loop forever
            yield from items
            if len(items) < limit:
                return
            previous = items
            offset += limit

    def iter_lists(self) -> Iterator[BrevoList]:
        for raw in self._iter_offset(
            "/contacts/lists", "lists", limit=LISTS_PAGE_MAX, params={"sort": "asc"}
        ):
            yield BrevoList(
                id=_int_or_none(raw.get("id")) or 0,
                name=str(raw.get("name") or ""),
                folder_id=_int_or_none(raw.get("folderId")),
            )

    def create_list(self, name: str, *, folder_id: int) -> int:
        """POST /contacts/lists. Not replayed after an ambiguous failure: names are not unique."""
        response = self._call(
            "POST",
            "/contacts/lists",
            buckets=CONTACTS,
            permission=PERM_CONTACTS,
            json={"name": name, "folderId": folder_id},
            idempotent=False,
        )
        return _int_or_none(_body(response).get("id")) or 0

    def iter_folders(self) -> Iterator[BrevoFolder]:
        for raw in self._iter_offset(
            "/contacts/folders", "folders", limit=LISTS_PAGE_MAX, params={"sort": "asc"}
        ):
            yield BrevoFolder(id=_int_or_none(raw.get("id")) or 0, name=str(raw.get("name") or ""))

    def create_folder(self, name: str) -> int:
        """POST /contacts/folders. Not replayed after an ambiguous failure: names are not unique."""
        response = self._call(
            "POST",
            "/contacts/folders",
            buckets=CONTACTS,
            permission=PERM_CONTACTS,
            json={"name": name},
            idempotent=False,
        )
        return _int_or_none(_body(response).get("id")) or 0

    def iter_list_members(
        self, list_id: int, *, limit: int = LIST_MEMBERS_PAGE_MAX
    ) -> Iterator[BrevoContact]:
        """GET /contacts/lists/{id}/contacts, every page, each contact once."""
        if not 1 <= limit <= LIST_MEMBERS_PAGE_MAX:
            raise ValueError(f"list members: limit must be 1..{LIST_MEMBERS_PAGE_MAX}, got {limit}")
        recent = _RecentIds()
        for raw in self._iter_offset(
            f"/contacts/lists/{int(list_id)}/contacts",
            "contacts",
            limit=limit,
            params={"sort": "asc"},
            endpoint="/contacts/lists/{id}/contacts",
        ):
            contact = parse_contact(raw)
            if recent.add(contact.id):
                yield contact

    def _change_membership(
        self,
        action: str,
        list_id: int,
        *,
        emails: Sequence[str],
        ids: Sequence[int],
        ext_ids: Sequence[str],
    ) -> ListMembershipResult:
        kinds: dict[str, list[Any]] = {"emails": list(emails), "ids": list(ids), "extIds": list(ext_ids)}
        given = {key: values for key, values in kinds.items() if values}
        if len(given) != 1:
            raise ValueError(f"list {action}: give exactly one of emails, ids or ext_ids")
        ((kind, values),) = given.items()
        if len(values) > LIST_MEMBERS_MAX:
            raise ValueError(
                f"list {action}: at most {LIST_MEMBERS_MAX} contacts per call, got {len(values)}"
            )
        response = self._call(
            "POST",
            f"/contacts/lists/{int(list_id)}/contacts/{action}",
            buckets=CONTACTS,
            permission=PERM_CONTACTS,
            json={kind: values},
            expected=(400,),
            endpoint=f"/contacts/lists/{{id}}/contacts/{action}",
        )
        if response.status == 400:
            # "Contact already in list and/or does not exist": nothing changed, not a failure of the call.
            if _NOTHING_CHANGED.search(_vendor_message(response)):
                return ListMembershipResult(success=(), failure=tuple(str(v) for v in values))
            raise self._session.error_from(response, permission=PERM_CONTACTS)
        return _membership(_body(response))

    def add_to_list(
        self,
        list_id: int,
        *,
        emails: Sequence[str] = (),
        ids: Sequence[int] = (),
        ext_ids: Sequence[str] = (),
    ) -> ListMembershipResult:
        """POST /contacts/lists/{id}/contacts/add (existing contacts only, at most 150)."""
        return self._change_membership("add", list_id, emails=emails, ids=ids, ext_ids=ext_ids)

    def remove_from_list(
        self,
        list_id: int,
        *,
        emails: Sequence[str] = (),
        ids: Sequence[int] = (),
        ext_ids: Sequence[str] = (),
    ) -> ListMembershipResult:
        """POST /contacts/lists/{id}/contacts/remove (at most 150)."""
        return self._change_membership("remove", list_id, emails=emails, ids=ids, ext_ids=ext_ids)

    # ------------------------------------------------------------- import and processes
    def import_contacts(
        self,
        rows: Sequence[Mapping[str, Any]] | bytes,
        *,
        list_ids: Sequence[int] = (),
        update_existing: bool = True,
        empty_attributes: bool = False,
        email_blacklist: bool = False,
        sms_blacklist: bool = False,
        notify_url: str | None = None,
        disable_notification: bool = True,
    ) -> int:
        """POST /contacts/import with a `jsonBody`; returns the processId to poll.

        `rows` may be the whole request body already serialised to JSON bytes (the fast path of
        a caller that sized its batch in bytes); the other arguments are then ignored.
        An upsert replays safely, so this call is retried like a read.
        """
        if isinstance(rows, bytes | bytearray):
            body = bytes(rows)
        else:
            payload: dict[str, Any] = {
                "jsonBody": [dict(row) for row in rows],
                "updateExistingContacts": update_existing,
                "emptyContactsAttributes": empty_attributes,
                "emailBlacklist": email_blacklist,
                "smsBlacklist": sms_blacklist,
                "disableNotification": disable_notification,
            }
            if list_ids:
                payload["listIds"] = [int(i) for i in list_ids]
            if notify_url:
                payload["notifyUrl"] = notify_url
            body = jsonbytes.dumps(payload)
        if len(body) > IMPORT_BODY_MAX_BYTES:
            raise ValueError(
                f"/contacts/import body is {len(body)} bytes; Brevo accepts at most {IMPORT_BODY_MAX_BYTES}"
            )
        response = self._call(
            "POST", "/contacts/import", buckets=CONTACTS, permission=PERM_CONTACTS, data=body
        )
        return _int_or_none(_body(response).get("processId")) or 0

    def get_process(self, process_id: int) -> ImportProcess:
        response = self._call(
            "GET",
            f"/processes/{int(process_id)}",
            buckets=OTHER,
            permission=PERM_CONTACTS,
            endpoint="/processes/{id}",
        )
        return parse_process(_body(response))

    def list_processes(
        self, *, limit: int = PROCESSES_PAGE_MAX, offset: int = 0, sort: str = "desc"
    ) -> list[ImportProcess]:
        if not 1 <= limit <= PROCESSES_PAGE_MAX:
            raise ValueError(f"GET /processes: limit must be 1..{PROCESSES_PAGE_MAX}, got {limit}")
        body = _body(
            self._call(
                "GET",
                "/processes",
                buckets=OTHER,
                permission=PERM_CONTACTS,
                params={"limit": limit, "offset": offset, "sort": sort},
            )
        )
        return [parse_process(p) for p in _items(body, "processes") if isinstance(p, Mapping)]

    # ------------------------------------------------------------- events, webhooks, products
    def create_events_batch(self, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """POST /events/batch; the parsed answer (202 all queued, 207 with errors[].eventIndex).

        Events have no idempotency key, so an ambiguous failure is raised, never replayed.
        """
        if not events:
            return {}
        response = self._call(
            "POST",
            "/events/batch",
            buckets=EVENTS,
            permission=PERM_EVENTS,
            json={"events": [dict(e) for e in events]},
            idempotent=False,
        )
        return dict(_body(response))

    def create_event(self, event: Mapping[str, Any]) -> None:
        """POST /events (one event; not replayed after an ambiguous failure)."""
        self._call(
            "POST", "/events", buckets=EVENTS, permission=PERM_EVENTS, json=dict(event), idempotent=False
        )

    def list_webhooks(self) -> list[dict[str, Any]]:
        body = _body(self._call("GET", "/webhooks", buckets=OTHER, permission=PERM_WEBHOOKS))
        return [dict(w) for w in _items(body, "webhooks") if isinstance(w, Mapping)]

    def upsert_products(self, products: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """POST /products/batch with updateEnabled (an upsert, so replay-safe); at most 100."""
        if len(products) > PRODUCTS_BATCH_MAX:
            raise ValueError(f"/products/batch: at most {PRODUCTS_BATCH_MAX} products, got {len(products)}")
        if not products:
            return {}
        response = self._call(
            "POST",
            "/products/batch",
            buckets=PRODUCTS,
            permission=PERM_ECOMMERCE,
            json={"products": [dict(p) for p in products], "updateEnabled": True},
        )
        return dict(_body(response))

    def get_products(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """GET /products?ids=…: the products Brevo holds among `ids` (deleted ones included), by id."""
        if len(ids) > PRODUCTS_PAGE_MAX:
            raise ValueError(f"GET /products: at most {PRODUCTS_PAGE_MAX} ids, got {len(ids)}")
        if not ids:
            return {}
        body = _body(
            self._call(
                "GET",
                "/products",
                buckets=PRODUCTS,
                permission=PERM_ECOMMERCE,
                params={"ids": ",".join(ids), "limit": PRODUCTS_PAGE_MAX, "offset": 0},
            )
        )
        return {
            str(p["id"]): dict(p) for p in _items(body, "products") if isinstance(p, Mapping) and p.get("id")
        }
