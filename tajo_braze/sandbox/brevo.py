"""The Brevo REST API v3 emulator: contacts, attributes, lists, folders, imports, processes,
events, webhooks and products, with Brevo's status codes, error bodies and quirks.

Quirks kept on purpose, because a connector has to live with them in production:
`modifiedAt` moves on every write and on list adds even when nothing else changed; imports
are asynchronous and lossy (invalid e-mails and wrong-typed values dropped, collisions only
counted); add-to-list answers 400 when nothing was added; `/contacts/batch` is gone;
`/events/batch` wants `{"events": [...]}`; a `+` in a path or query must be sent as `%2B`.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

import orjson

from .brevo_seed import (
    IDENTIFIER_ATTRIBUTES,
    AttributeDef,
    BrevoWorld,
    Contact,
    ContactList,
    Folder,
    Process,
    Webhook,
    format_ts,
    is_iso_date,
    is_valid_email,
    now_ms,
    parse_ts,
    sms_key,
    zero_import_counters,
)
from .core import BucketSpec, Endpoint, Handler, HttpError, Request, Response, Router

# Documented limits (brevo-api.md); going over one is refused and logged as a violation.
MAX_IMPORT_BODY_BYTES = 10 * 1024 * 1024
MAX_CONTACTS_PAGE = 1000
MAX_LIST_CONTACTS_PAGE = 500
MAX_SMALL_PAGE = 50  # lists, folders, processes
MAX_LIST_MEMBERSHIP_ITEMS = 150
MAX_EVENT_PROPERTIES_BYTES = 50 * 1024
MAX_PRODUCTS_BATCH = 100
MAX_PRODUCTS_PAGE = 1000
MAX_PRODUCT_META_KEYS = 20

READONLY_KEY_NAME = "readonly"
EVENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
EVENT_IDENTIFIERS = ("contact_id", "email_id", "ext_id", "phone_id", "whatsapp_id", "landline_number_id")
ATTRIBUTE_CATEGORIES = ("normal", "transactional", "category", "calculated", "global")
ATTRIBUTE_TYPES = ("text", "date", "float", "boolean", "id", "category", "multiple-choice", "user")
WEBHOOK_TYPES = ("transactional", "marketing", "inbound")

CONTACTS = ("contacts_s", "contacts_h")
EVENTS = ("events_s", "events_h")
PRODUCTS = ("products_s", "products_h")
OTHER = ("other",)
BUCKETS: Mapping[str, BucketSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            BucketSpec("contacts_s", 10, 1.0),
            BucketSpec("contacts_h", 36_000, 3600.0),
            BucketSpec("events_s", 10, 1.0),
            BucketSpec("events_h", 36_000, 3600.0),
            BucketSpec("products_s", 2, 1.0),
            BucketSpec("products_h", 7_200, 3600.0),
            BucketSpec("other", 100, 3600.0),
        )
    }
)

_QUERY_CACHE_SIZE = 16
_READ_METHODS = ("GET", "HEAD")


# --------------------------------------------------------------------------- small helpers


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    out = {"Content-Type": "application/json"}
    out.update(headers or {})
    return Response(status, orjson.dumps(payload), out)


def _error(status: int, code: str, message: str, metadata: Mapping[str, Any] | None = None) -> HttpError:
    payload: dict[str, Any] = {"code": code, "message": message}
    if metadata:
        payload["metadata"] = dict(metadata)
    return HttpError(status, payload)


def _bad(message: str, code: str = "invalid_parameter") -> HttpError:
    return _error(400, code, message)


def _missing(message: str) -> HttpError:
    return _error(400, "missing_parameter", message)


def _gone(message: str) -> HttpError:
    return _error(404, "document_not_found", message)


def _body(req: Request) -> Any:
    if not req.body:
        return None
    try:
        return orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"Invalid JSON in the request body: {exc}", "bad_request") from None


def _object_body(req: Request) -> dict[str, Any]:
    payload = _body(req)
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise _bad("The request body must be a JSON object")
    return payload


def _path_value(raw: str) -> str:
    # Brevo reads a bare `+` in a path as a space, like a form value: e-mails with plus-addressing
    # must be sent as %2B (brevo-api.md, traps 9). Keeping that makes a client's missing encoding fail here.
    return unquote(raw.replace("+", " "))


def _int_arg(req: Request, name: str, default: int) -> int:
    raw = req.arg(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise _bad(f"{name} must not be negative", "out_of_range")
    return value


def _sort_arg(req: Request) -> str:
    sort = req.arg("sort") or "desc"
    if sort not in ("asc", "desc"):
        raise _bad(f"sort must be asc or desc, got {sort!r}")
    return sort


def _time_arg(req: Request, name: str) -> int | None:
    raw = req.arg(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_ts(raw)
    except ValueError as exc:
        hint = " (a '+' in a query string must be sent as %2B)" if " " in raw else ""
        raise _bad(f"{name}: {exc}{hint}") from None


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_ts(value)
    except ValueError:
        return False
    return True


def _int_list(values: Iterable[str], name: str) -> list[int]:
    out: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(int(part))
            except ValueError:
                raise _bad(f"{name} must hold integers, got {part!r}") from None
    return out


def _page(ids: list[int], offset: int, limit: int, sort: str) -> list[int]:
    """One page of ids kept in ascending creation order, read in `sort` order."""
    if sort == "asc":
        return ids[offset : offset + limit]
    end = len(ids) - offset
    if end <= 0:
        return []
    return ids[max(0, end - limit) : end][::-1]


def _as_id(raw: str) -> int | None:
    """A numeric id from a path segment (ASCII digits only), or None."""
    return int(raw) if raw.isascii() and raw.isdigit() else None


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def coerce_attribute(attr: AttributeDef, value: Any) -> tuple[bool, Any]:
    """(accepted, stored value) for a value written to `attr`; Brevo drops wrong types silently."""
    if attr.category == "category":
        if isinstance(value, int) and not isinstance(value, bool):
            return any(v == value for v, _ in attr.enumeration), value
        if isinstance(value, str):
            for v, label in attr.enumeration:
                if label == value:
                    return True, v
        return False, None
    kind = attr.type
    if kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return ok, value
    if kind == "boolean":
        return isinstance(value, bool), value
    if kind == "date":
        return isinstance(value, str) and is_iso_date(value), value
    if kind == "multiple-choice":
        ok = isinstance(value, list) and all(isinstance(v, str) and v in attr.options for v in value)
        return ok, value
    if isinstance(value, str):
        return True, value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True, str(value)
    return False, None


@dataclass
class ContactEdit:
    """One write to a contact, already validated against the account's attributes."""

    email: str | None = None
    ext_id: str | None = None
    sms: str | None = None
    clear_ext_id: bool = False
    clear_sms: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    erase: set[str] = field(default_factory=set)
    email_blacklisted: bool | None = None
    sms_blacklisted: bool | None = None
    add_lists: tuple[int, ...] = ()
    remove_lists: tuple[int, ...] = ()

    @property
    def has_identifier(self) -> bool:
        return self.email is not None or self.ext_id is not None or self.sms is not None


# --------------------------------------------------------------------------- the app


class BrevoApp:
    """The Brevo vendor app served under `/brevo/v3` (implements core.VendorApp)."""

    name = "brevo"

    def __init__(
        self,
        world: BrevoWorld,
        *,
        keys: Mapping[str, str],
        clock: Callable[[], float] = time.time,
        import_delay_s: float = 0.0,
    ) -> None:
        self.world = world
        self._key_names = dict(keys)  # API key -> key name; never logged or dumped
        self._clock = clock
        self.import_delay_s = import_delay_s  # the server may change it at runtime (faults)
        self.public_base = ""
        self.violation_hook: Callable[[str, str], None] | None = None
        self.buckets: Mapping[str, BucketSpec] = BUCKETS
        self._lock = threading.RLock()
        self._appliers: list[threading.Thread] = []
        self._pending: list[int] = self._pending_imports()
        self._query_cache: dict[tuple[Any, ...], list[int]] = {}
        self._query_cache_version = -1
        self.router = Router()
        self._add_routes()

    def __repr__(self) -> str:
        return f"BrevoApp(contacts={len(self.world.contacts)}, keys={len(self._key_names)})"

    # ------------------------------------------------------------------ VendorApp protocol

    def authenticate(self, req: Request) -> Response | None:
        key = req.headers.get("api-key", "")
        if not key:
            return self._reply(
                _json(401, {"code": "unauthorized", "message": "authentication not found in headers"})
            )
        name = self._key_names.get(key)
        if name is None:
            return self._reply(_json(401, {"code": "unauthorized", "message": "Key not found"}))
        req.principal = name
        return None

    def authorize(self, req: Request, endpoint: Endpoint) -> Response | None:
        # Brevo keys carry no scopes; a key named "readonly" stands in for a restricted key.
        if req.principal == READONLY_KEY_NAME and endpoint.permission == "write":
            return self._reply(
                _json(403, {"code": "permission_denied", "message": "This API key is not allowed to write"})
            )
        return None

    def rate_limit_headers(
        self, limit: int, remaining: int, reset_epoch: float, now: float
    ) -> dict[str, str]:
        return {
            "x-sib-ratelimit-limit": str(limit),
            "x-sib-ratelimit-remaining": str(max(0, remaining)),
            # Seconds left in the window, not an epoch (unlike Braze).
            "x-sib-ratelimit-reset": str(max(0, math.ceil(reset_epoch - now))),
        }

    def too_many_requests(self, headers: dict[str, str]) -> Response:
        body = {"code": "too_many_requests", "message": "The expected rate limit is exceeded."}
        return self._reply(_json(429, body, headers))

    def not_found(self, req: Request) -> Response:
        return self._reply(
            _json(404, {"code": "not_found", "message": f"Invalid route {req.method} {req.path}"})
        )

    def dump_state(self) -> dict[str, Any]:
        with self._lock:
            return self.world.to_state()

    def load_state(self, state: Mapping[str, Any]) -> None:
        world = BrevoWorld.from_state(state)
        with self._lock:
            self.world = world
            self._pending = self._pending_imports()
            self._query_cache.clear()
            self._query_cache_version = -1

    # ------------------------------------------------------------------ plumbing

    def _add_routes(self) -> None:
        add = self._route
        add("GET", "/account", self._get_account, OTHER)
        add("GET", "/contacts/attributes", self._list_attributes, CONTACTS)
        add("POST", "/contacts/attributes/{category}/{name}", self._create_attribute, CONTACTS)
        add("GET", "/contacts/lists", self._list_lists, CONTACTS)
        add("POST", "/contacts/lists", self._create_list, CONTACTS)
        add("GET", "/contacts/lists/{list_id}", self._get_list, CONTACTS)
        add("PUT", "/contacts/lists/{list_id}", self._update_list, CONTACTS)
        add("DELETE", "/contacts/lists/{list_id}", self._delete_list, CONTACTS)
        add("GET", "/contacts/lists/{list_id}/contacts", self._list_members, CONTACTS)
        add("POST", "/contacts/lists/{list_id}/contacts/add", self._add_to_list, CONTACTS)
        add("POST", "/contacts/lists/{list_id}/contacts/remove", self._remove_from_list, CONTACTS)
        add("GET", "/contacts/folders", self._list_folders, CONTACTS)
        add("POST", "/contacts/folders", self._create_folder, CONTACTS)
        add("GET", "/contacts/folders/{folder_id}", self._get_folder, CONTACTS)
        add("PUT", "/contacts/folders/{folder_id}", self._update_folder, CONTACTS)
        add("DELETE", "/contacts/folders/{folder_id}", self._delete_folder, CONTACTS)
        add("GET", "/contacts/folders/{folder_id}/lists", self._folder_lists, CONTACTS)
        add("POST", "/contacts/import", self._import_contacts, CONTACTS)
        add("POST", "/contacts/batch", self._batch_update_deprecated, CONTACTS)
        add("GET", "/contacts", self._list_contacts, CONTACTS)
        add("POST", "/contacts", self._create_contact, CONTACTS)
        add("GET", "/contacts/{identifier}", self._get_contact, CONTACTS)
        add("PUT", "/contacts/{identifier}", self._update_contact, CONTACTS)
        add("DELETE", "/contacts/{identifier}", self._delete_contact, CONTACTS)
        add("GET", "/processes", self._list_processes, OTHER)
        add("GET", "/processes/{process_id}", self._get_process, OTHER)
        add("POST", "/events", self._create_event, EVENTS)
        add("POST", "/events/batch", self._create_events_batch, EVENTS)
        add("GET", "/webhooks", self._list_webhooks, OTHER)
        add("POST", "/webhooks", self._create_webhook, OTHER)
        add("GET", "/webhooks/{webhook_id}", self._get_webhook, OTHER)
        add("DELETE", "/webhooks/{webhook_id}", self._delete_webhook, OTHER)
        add("POST", "/products/batch", self._products_batch, PRODUCTS)
        add("GET", "/products", self._list_products, PRODUCTS)

    def _route(self, method: str, pattern: str, handler: Handler, buckets: tuple[str, ...]) -> None:
        def serve(req: Request, params: dict[str, str]) -> Response:
            with self._lock:
                self._apply_due_imports()
                try:
                    response = handler(req, params)
                except HttpError as exc:
                    response = _json(exc.status, exc.payload, exc.headers)
            return self._reply(response)

        permission = None if method in _READ_METHODS else "write"
        self.router.add(method, pattern, serve, buckets=buckets, permission=permission)

    @staticmethod
    def _reply(response: Response) -> Response:
        response.headers.setdefault("sib-request-id", str(uuid.uuid4()))
        return response

    def _now(self) -> int:
        return now_ms(self._clock())

    def _ts(self, ms: int) -> str:
        return format_ts(ms, self.world.utc_offset_minutes)

    def _violation(self, endpoint_name: str, detail: str) -> None:
        hook = self.violation_hook
        if hook is not None:
            hook(endpoint_name, detail)

    def _limit_arg(self, req: Request, endpoint_name: str, default: int, maximum: int) -> int:
        limit = _int_arg(req, "limit", default)
        if limit > maximum:
            self._violation(endpoint_name, f"limit={limit} is above the maximum of {maximum}")
            raise _bad(f"limit must be between 0 and {maximum}", "out_of_range")
        return limit

    # ------------------------------------------------------------------ rendering

    def contact_json(self, contact: Contact) -> dict[str, Any]:
        out: dict[str, Any] = {"id": contact.id}
        if contact.email is not None:
            out["email"] = contact.email
        out["emailBlacklisted"] = contact.email_blacklisted
        out["smsBlacklisted"] = contact.sms_blacklisted
        out["createdAt"] = self._ts(contact.created_ms)
        out["modifiedAt"] = self._ts(contact.modified_ms)
        out["listIds"] = sorted(contact.list_ids)
        out["listUnsubscribed"] = list(contact.list_unsubscribed)
        out["attributes"] = dict(contact.attributes)
        return out

    def _list_totals(self, list_ids: Iterable[int]) -> dict[str, int]:
        members: set[int] = set()
        for list_id in list_ids:
            members |= self.world.list_members.get(list_id, set())
        contacts = self.world.contacts
        blocked = sum(1 for cid in members if contacts[cid].email_blacklisted)
        return {
            "totalSubscribers": len(members) - blocked,
            "totalBlacklisted": blocked,
            "uniqueSubscribers": len(members),
        }

    def _list_json(self, lst: ContactList, *, detail: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"id": lst.id, "name": lst.name, "folderId": lst.folder_id}
        out.update(self._list_totals((lst.id,)))
        if detail:
            out["createdAt"] = self._ts(lst.created_ms)
            out["dynamicList"] = False
            out["campaignStats"] = []
        return out

    def _folder_json(self, folder: Folder) -> dict[str, Any]:
        lists = [li.id for li in self.world.lists.values() if li.folder_id == folder.id]
        return {"id": folder.id, "name": folder.name, **self._list_totals(lists)}

    def _process_json(self, process: Process) -> dict[str, Any]:
        now = self._now()
        if process.completed_ms is not None:
            status = "completed"
        elif now >= process.created_ms + (process.due_ms - process.created_ms) / 2:
            status = "in_process"
        else:
            status = "queued"
        out: dict[str, Any] = {"id": process.id, "name": process.name, "status": status}
        if process.completed_ms is not None and process.name == "IMPORTUSER":
            counters: dict[str, Any] = dict(process.counters)
            if counters.get("duplicate_email_id"):
                # Brevo reports duplicate e-mails as a link to a CSV, the other counters as numbers.
                counters["duplicate_email_id"] = self._duplicates_url(process.id)
            out["info"] = {"import": counters}
        out["export_url"] = None
        out["error"] = None
        out["created_at"] = self._ts(process.created_ms)
        out["completed_at"] = None if process.completed_ms is None else self._ts(process.completed_ms)
        return out

    def _duplicates_url(self, process_id: int) -> str:
        return f"{self.public_base}/_admin/brevo/imports/{process_id}/duplicate_emails.csv"

    def _webhook_json(self, hook: Webhook) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": hook.id,
            "url": hook.url,
            "description": hook.description,
            "events": list(hook.events),
            "type": hook.type,
            "channel": hook.channel,
            "batched": hook.batched,
            "createdAt": self._ts(hook.created_ms),
            "modifiedAt": self._ts(hook.modified_ms),
        }
        if hook.auth:
            out["auth"] = dict(hook.auth)
        if hook.headers:
            out["headers"] = [dict(h) for h in hook.headers]
        return out

    def _product_json(self, product: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in product.items() if k not in ("created_ms", "modified_ms")}
        out["createdAt"] = self._ts(int(product["created_ms"]))
        out["modifiedAt"] = self._ts(int(product["modified_ms"]))
        return out

    # ------------------------------------------------------------------ lookups

    def find_contact(self, raw_identifier: str, identifier_type: str | None) -> Contact:
        """The contact a path identifier names, as Brevo reads it; 404 when there is none."""
        ident = _path_value(raw_identifier)
        world = self.world
        contact: Contact | None = None
        kind = identifier_type or ""
        if kind == "":
            if "@" in ident:
                kind = "email_id"
            elif _as_id(ident) is not None:
                kind = "contact_id"
            elif ident.startswith("+"):
                kind = "phone_id"
        if kind == "email_id":
            contact = world.contact_by_email(ident)
        elif kind == "contact_id":
            number = _as_id(ident)
            contact = None if number is None else world.contacts.get(number)
        elif kind == "ext_id":
            contact = world.contact_by_ext_id(ident)
        elif kind == "phone_id":
            contact = world.contact_by_sms(ident)
        elif kind in ("whatsapp_id", "landline_number_id", ""):
            contact = None
        else:
            raise _bad(
                f"identifierType must be one of email_id, phone_id, contact_id, ext_id, whatsapp_id, "
                f"landline_number_id; got {identifier_type!r}"
            )
        if contact is None:
            raise _gone("Contact does not exist")
        return contact

    def _primary(self, edit: ContactEdit) -> Contact | None:
        """The existing contact an upsert or import row addresses.

        The e-mail decides when there is one (a new e-mail means a new contact, whose other
        identifiers may then collide); otherwise ext_id, then SMS.
        """
        world = self.world
        if edit.email is not None:
            return world.contact_by_email(edit.email)
        if edit.ext_id is not None:
            return world.contact_by_ext_id(edit.ext_id)
        if edit.sms is not None:
            return world.contact_by_sms(edit.sms)
        return None

    def _duplicates(self, edit: ContactEdit, contact: Contact | None) -> list[str]:
        """Identifiers of `edit` that already belong to a contact other than `contact`."""
        world = self.world
        mine = None if contact is None else contact.id
        found: list[str] = []
        if edit.email is not None and world.by_email.get(edit.email.lower(), mine) != mine:
            found.append("email")
        if edit.ext_id is not None and world.by_ext_id.get(edit.ext_id, mine) != mine:
            found.append("ext_id")
        if edit.sms is not None:
            key = sms_key(edit.sms)
            if key is not None and world.by_sms.get(key, mine) != mine:
                found.append("SMS")
        return found

    def _list_ids_arg(self, value: Any, name: str) -> tuple[int, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise _bad(f"{name} must be an array of list ids")
        unknown = [v for v in value if v not in self.world.lists]
        if unknown:
            raise _gone(f"List ID does not exist: {', '.join(str(v) for v in unknown)}")
        return tuple(dict.fromkeys(value))

    def _list(self, raw: str) -> ContactList:
        number = _as_id(raw)
        found = None if number is None else self.world.lists.get(number)
        if found is None:
            raise _gone("List ID does not exist")
        return found

    def _folder(self, raw: str) -> Folder:
        number = _as_id(raw)
        found = None if number is None else self.world.folders.get(number)
        if found is None:
            raise _gone("Folder ID does not exist")
        return found

    # ------------------------------------------------------------------ contact edits

    def edit_from_api(self, body: Mapping[str, Any], *, allow_email_field: bool) -> ContactEdit:
        """Validate a create/update body the way the API does: bad identifiers are errors,
        unknown attributes are ignored, wrong-typed values dropped, empty values erase."""
        edit = ContactEdit()
        attrs = body.get("attributes", {})
        if attrs is None:
            attrs = {}
        if not isinstance(attrs, dict):
            raise _bad("attributes must be an object")
        for key, value in attrs.items():
            upper = str(key).upper()
            if upper == "EMAIL":
                if not _is_empty(value):
                    edit.email = self._valid_email(value)
            elif upper == "EXT_ID":
                if _is_empty(value):
                    edit.clear_ext_id = True
                else:
                    edit.ext_id = self._text_identifier(value, "EXT_ID")
            elif upper == "SMS":
                if _is_empty(value):
                    edit.clear_sms = True
                else:
                    edit.sms = self._valid_sms(value)
            else:
                self._set_attribute(edit, upper, value, erase_empty=True)
        if allow_email_field and not _is_empty(body.get("email")):
            edit.email = self._valid_email(body.get("email"))
        if not _is_empty(body.get("ext_id")):
            edit.ext_id = self._text_identifier(body.get("ext_id"), "ext_id")
        for name in ("emailBlacklisted", "smsBlacklisted"):
            value = body.get(name)
            if value is not None and not isinstance(value, bool):
                raise _bad(f"{name} must be a boolean")
        edit.email_blacklisted = body.get("emailBlacklisted")
        edit.sms_blacklisted = body.get("smsBlacklisted")
        edit.add_lists = self._list_ids_arg(body.get("listIds"), "listIds")
        edit.remove_lists = self._list_ids_arg(body.get("unlinkListIds"), "unlinkListIds")
        return edit

    def _set_attribute(self, edit: ContactEdit, name: str, value: Any, *, erase_empty: bool) -> None:
        attr = self.world.attribute(name)
        if attr is None or attr.name.upper() in IDENTIFIER_ATTRIBUTES:
            return  # unknown to the account: ignored without a word, like Brevo
        if attr.category in ("calculated", "global"):
            return  # computed by Brevo, not writable on a contact
        if _is_empty(value):
            if erase_empty:
                edit.erase.add(attr.name)
            return
        ok, stored = coerce_attribute(attr, value)
        if ok:
            edit.attributes[attr.name] = stored

    @staticmethod
    def _valid_email(value: Any) -> str:
        if not isinstance(value, str) or not is_valid_email(value.strip()):
            raise _bad("Invalid email address")
        return value.strip().lower()

    @staticmethod
    def _valid_sms(value: Any) -> str:
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or sms_key(text) is None:
            raise _bad("Invalid phone number")
        return text.strip()

    @staticmethod
    def _text_identifier(value: Any, name: str) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise _bad(f"{name} must be a string")
        return value

    def apply_edit(self, contact: Contact, edit: ContactEdit, at_ms: int) -> None:
        """Write `edit` to `contact` (identifiers already checked) and bump its modifiedAt."""
        world = self.world
        if edit.email is not None and edit.email != contact.email:
            world.set_email(contact, edit.email)
            # Changing a blocklisted contact's e-mail resubscribes it (Brevo's documented behaviour).
            if contact.email_blacklisted and edit.email_blacklisted is None:
                contact.email_blacklisted = False
        if edit.clear_ext_id and edit.ext_id is None:
            world.set_ext_id(contact, None)
        elif edit.ext_id is not None and edit.ext_id != contact.ext_id:
            world.set_ext_id(contact, edit.ext_id)
        if edit.clear_sms and edit.sms is None:
            world.set_sms(contact, None)
        elif edit.sms is not None and edit.sms != contact.sms:
            world.set_sms(contact, edit.sms)
        for name in edit.erase:
            contact.attributes.pop(name, None)
        contact.attributes.update(edit.attributes)
        if edit.email_blacklisted is not None:
            contact.email_blacklisted = edit.email_blacklisted
        if edit.sms_blacklisted is not None:
            contact.sms_blacklisted = edit.sms_blacklisted
        for list_id in edit.add_lists:
            world.add_to_list(contact, list_id)
        for list_id in edit.remove_lists:
            world.remove_from_list(contact, list_id)
        world.touch(contact, at_ms)

    def create_contact(self, edit: ContactEdit, at_ms: int) -> Contact:
        world = self.world
        contact = Contact(
            id=world.next_contact_id, email=None, attributes={}, created_ms=at_ms, modified_ms=at_ms
        )
        world.add_contact(contact)
        self.apply_edit(contact, edit, at_ms)
        return contact

    # ------------------------------------------------------------------ account

    def _get_account(self, req: Request, params: dict[str, str]) -> Response:
        return _json(200, self.world.account)

    # ------------------------------------------------------------------ contacts

    def _create_contact(self, req: Request, params: dict[str, str]) -> Response:
        body = _object_body(req)
        edit = self.edit_from_api(body, allow_email_field=True)
        if not edit.has_identifier:
            raise _missing("A contact needs an email, an ext_id or an SMS attribute")
        update_enabled = body.get("updateEnabled") is True
        primary = self._primary(edit)
        if primary is not None and not update_enabled:
            owned = self._duplicates(edit, None)
            raise _error(
                400, "duplicate_parameter", "Contact already exist", {"duplicate_identifiers": owned}
            )
        owned = self._duplicates(edit, primary)
        if owned:
            verb = "create" if primary is None else "update"
            raise _error(
                400,
                "duplicate_parameter",
                f"Unable to {verb} contact, {' and '.join(owned)} is already associated with another Contact",
                {"duplicate_identifiers": owned},
            )
        if primary is None:
            return _json(201, {"id": self.create_contact(edit, self._now()).id})
        self.apply_edit(primary, edit, self._now())
        return Response.empty(204)

    def _get_contact(self, req: Request, params: dict[str, str]) -> Response:
        contact = self.find_contact(params["identifier"], req.arg("identifierType"))
        out = self.contact_json(contact)
        out["statistics"] = {}
        return _json(200, out)

    def _update_contact(self, req: Request, params: dict[str, str]) -> Response:
        contact = self.find_contact(params["identifier"], req.arg("identifierType"))
        edit = self.edit_from_api(_object_body(req), allow_email_field=False)
        owned = self._duplicates(edit, contact)
        if owned:
            raise _error(
                400,
                "duplicate_parameter",
                f"Unable to update contact, {' and '.join(owned)} is already associated with another Contact",
                {"duplicate_identifiers": owned},
            )
        self.apply_edit(contact, edit, self._now())
        return Response.empty(204)

    def _delete_contact(self, req: Request, params: dict[str, str]) -> Response:
        contact = self.find_contact(params["identifier"], req.arg("identifierType"))
        self.world.remove_contact(contact)
        return Response.empty(204)

    def _list_contacts(self, req: Request, params: dict[str, str]) -> Response:
        limit = self._limit_arg(req, "GET /contacts", 50, MAX_CONTACTS_PAGE)
        offset = _int_arg(req, "offset", 0)
        sort = _sort_arg(req)
        modified_since = _time_arg(req, "modifiedSince")
        created_since = _time_arg(req, "createdSince")
        if req.arg("segmentId"):
            raise _bad("segmentId is not supported by the sandbox: it has no segments; use listIds")
        list_ids = _int_list(req.args("listIds"), "listIds")
        for list_id in list_ids:
            if list_id not in self.world.lists:
                raise _gone("List ID does not exist")
        ids = self._matching_ids(modified_since, created_since, tuple(sorted(set(list_ids))))
        contacts = self.world.contacts
        page = [self.contact_json(contacts[cid]) for cid in _page(ids, offset, limit, sort)]
        return _json(200, {"contacts": page, "count": len(ids)})

    def _matching_ids(
        self, modified_since: int | None, created_since: int | None, list_ids: tuple[int, ...]
    ) -> list[int]:
        """Ids of matching contacts in creation order, cached until the account changes.

        Paging through a million contacts then costs one scan, not one per page.
        """
        world = self.world
        if modified_since is None and created_since is None and not list_ids:
            return world.roster()
        if self._query_cache_version != world.version:
            self._query_cache.clear()
            self._query_cache_version = world.version
        key = (modified_since, created_since, list_ids)
        cached = self._query_cache.get(key)
        if cached is not None:
            return cached
        contacts = world.contacts
        candidates: Iterable[int]
        if modified_since is not None and world.modified_since_bound(modified_since) * 4 < len(contacts):
            candidates = world.modified_since(modified_since)  # a few recent changes: straight from the log
        elif list_ids:
            candidates = set().union(*(world.list_members.get(li, set()) for li in list_ids))
        else:
            candidates = world.roster()  # most contacts match: scanning beats sorting
        wanted = set(list_ids)
        found = [
            cid
            for cid in candidates
            if (modified_since is None or contacts[cid].modified_ms >= modified_since)
            and (created_since is None or contacts[cid].created_ms >= created_since)
            and (not wanted or not wanted.isdisjoint(contacts[cid].list_ids))
        ]
        if not isinstance(candidates, list):
            found.sort()
        if len(self._query_cache) >= _QUERY_CACHE_SIZE:
            self._query_cache.clear()
        self._query_cache[key] = found
        return found

    def _batch_update_deprecated(self, req: Request, params: dict[str, str]) -> Response:
        self._violation("POST /contacts/batch", "deprecated endpoint (sunset 2026-10-30) called")
        raise _bad(
            "POST /contacts/batch was deprecated on 2026-10-30; use POST /contacts/import",
            "method_not_allowed",
        )

    # ------------------------------------------------------------------ imports and processes

    def _import_contacts(self, req: Request, params: dict[str, str]) -> Response:
        if len(req.body) > MAX_IMPORT_BODY_BYTES:
            self._violation("POST /contacts/import", f"body of {len(req.body)} bytes is above 10 MB")
            raise _bad("The import body is larger than 10 MB: send fewer rows per import", "out_of_range")
        body = _object_body(req)
        if "fileBody" in body or "fileUrl" in body:
            raise _bad(
                "fileBody and fileUrl imports are not supported by the sandbox; send the rows as jsonBody"
            )
        rows = body.get("jsonBody")
        if rows is None:
            raise _missing("One of jsonBody, fileBody or fileUrl is required")
        if not isinstance(rows, list):
            raise _bad("jsonBody must be an array of contacts")
        if not rows:
            raise _bad("jsonBody is empty")
        options: dict[str, bool] = {}
        for name, default in (
            ("updateExistingContacts", True),
            ("emptyContactsAttributes", False),
            ("emailBlacklist", False),
            ("smsBlacklist", False),
            ("disableNotification", False),
        ):
            value = body.get(name, default)
            if not isinstance(value, bool):
                raise _bad(f"{name} must be a boolean")
            options[name] = value
        notify = body.get("notifyUrl")
        if notify is not None and not isinstance(notify, str):
            raise _bad("notifyUrl must be a URL")
        list_ids = list(self._list_ids_arg(body.get("listIds"), "listIds"))
        new_list = body.get("newList")
        if new_list is not None:
            list_ids.append(self._new_list_from(new_list).id)
        if not list_ids:
            raise _missing("listIds is required unless newList is given")
        now = self._now()
        world = self.world
        process = Process(
            id=world.next_process_id,
            name="IMPORTUSER",
            created_ms=now,
            due_ms=now + max(0, int(self.import_delay_s * 1000)),
            payload={"rows": rows, "listIds": list_ids, **options},
        )
        world.next_process_id += 1
        world.processes[process.id] = process
        self._pending.append(process.id)
        # Brevo answers 202 at once and imports on its side while the client goes on: the rows are
        # applied on a thread of the sandbox's own, or by the next request, whichever comes first.
        applier = threading.Thread(target=self._apply_in_background, name=f"brevo-import-{process.id}", daemon=True)
        self._appliers = [t for t in self._appliers if t.is_alive()] + [applier]
        applier.start()
        return _json(202, {"processId": process.id})

    def _apply_in_background(self) -> None:
        with self._lock:
            self._apply_due_imports()

    def close(self) -> None:
        """Let imports being applied finish (the state file is written after)."""
        for applier in self._appliers:
            applier.join(timeout=30)
        self._appliers = []

    def _new_list_from(self, spec: Any) -> ContactList:
        if not isinstance(spec, dict) or not isinstance(spec.get("listName"), str) or not spec["listName"]:
            raise _bad("newList needs a listName and a folderId")
        folder_id = spec.get("folderId")
        if not isinstance(folder_id, int) or folder_id not in self.world.folders:
            raise _gone("Folder ID does not exist")
        return self._make_list(spec["listName"], folder_id)

    def _pending_imports(self) -> list[int]:
        return sorted(p.id for p in self.world.processes.values() if p.payload is not None)

    def _apply_due_imports(self) -> None:
        if not self._pending:
            return
        now = self._now()
        still: list[int] = []
        for pid in self._pending:
            process = self.world.processes.get(pid)
            if process is None or process.payload is None:
                continue
            if process.due_ms <= now:
                self._run_import(process, now)
            else:
                still.append(pid)
        self._pending = still

    def _run_import(self, process: Process, now: int) -> None:
        payload = process.payload or {}
        rows: list[Any] = payload.get("rows", [])
        list_ids = tuple(li for li in payload.get("listIds", []) if li in self.world.lists)
        update_existing = bool(payload.get("updateExistingContacts", True))
        erase_empty = bool(payload.get("emptyContactsAttributes", False))
        counters = zero_import_counters()
        stats: dict[str, Any] = {
            "rows_received": len(rows),
            "created": 0,
            "updated": 0,
            "skipped_existing": 0,
            "no_identifier": 0,
            "not_an_object": 0,
            "list_ids": list(list_ids),
        }
        seen: dict[str, set[str]] = {"email": set(), "ext_id": set(), "SMS": set()}
        duplicate_counter = {
            "email": "duplicate_email_id",
            "ext_id": "duplicate_ext_id",
            "SMS": "duplicate_phone_id",
        }
        for row in rows:
            if not isinstance(row, dict):
                stats["not_an_object"] += 1
                continue
            edit = self._edit_from_import_row(row, erase_empty=erase_empty)
            if edit is None:
                counters["invalid_emails"] += 1
                continue
            if not edit.has_identifier:
                stats["no_identifier"] += 1
                continue
            # The same identifier twice in one file: Brevo keeps the first row and counts the rest.
            repeated = self._repeated_in_file(edit, seen)
            if repeated is not None:
                counters[duplicate_counter[repeated]] += 1
                if repeated == "email" and edit.email is not None:
                    process.duplicate_emails.append(edit.email)
                continue
            primary = self._primary(edit)
            owned = self._duplicates(edit, primary)
            if owned:
                counters[duplicate_counter[owned[0]]] += 1
                continue
            if primary is not None and not update_existing:
                stats["skipped_existing"] += 1
                continue
            edit.add_lists = list_ids
            if payload.get("emailBlacklist"):
                edit.email_blacklisted = True
            if payload.get("smsBlacklist"):
                edit.sms_blacklisted = True
            if primary is None:
                self.create_contact(edit, now)
                stats["created"] += 1
            else:
                self.apply_edit(primary, edit, now)
                stats["updated"] += 1
        process.counters = counters
        process.stats = stats
        process.completed_ms = now
        process.payload = None

    @staticmethod
    def _repeated_in_file(edit: ContactEdit, seen: dict[str, set[str]]) -> str | None:
        keys = {
            "email": edit.email,
            "ext_id": edit.ext_id,
            "SMS": None if edit.sms is None else sms_key(edit.sms),
        }
        for kind, value in keys.items():
            if value is not None and value in seen[kind]:
                return kind
        for kind, value in keys.items():
            if value is not None:
                seen[kind].add(value)
        return None

    def _edit_from_import_row(self, row: Mapping[str, Any], *, erase_empty: bool) -> ContactEdit | None:
        """An import row as Brevo reads it: lenient, lossy. None when its e-mail is invalid."""
        edit = ContactEdit()
        attrs = row.get("attributes")
        if not isinstance(attrs, dict):
            attrs = {}
        email = row.get("email")
        for key, value in attrs.items():
            upper = str(key).upper()
            if upper == "EMAIL":
                email = value if _is_empty(email) else email
            elif upper == "EXT_ID":
                if (isinstance(value, str) and value) or (
                    isinstance(value, int) and not isinstance(value, bool)
                ):
                    edit.ext_id = str(value)
            elif upper == "SMS":
                text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
                if isinstance(text, str) and sms_key(text) is not None:
                    edit.sms = text.strip()
            else:
                self._set_attribute(edit, upper, value, erase_empty=erase_empty)
        if not _is_empty(email):
            if not isinstance(email, str) or not is_valid_email(email.strip()):
                return None
            edit.email = email.strip().lower()
        return edit

    def _list_processes(self, req: Request, params: dict[str, str]) -> Response:
        limit = self._limit_arg(req, "GET /processes", 10, MAX_SMALL_PAGE)
        offset = _int_arg(req, "offset", 0)
        sort = _sort_arg(req)
        ids = sorted(self.world.processes)
        page = [self._process_json(self.world.processes[pid]) for pid in _page(ids, offset, limit, sort)]
        return _json(200, {"count": len(ids), "processes": page})

    def _get_process(self, req: Request, params: dict[str, str]) -> Response:
        number = _as_id(params["process_id"])
        process = None if number is None else self.world.processes.get(number)
        if process is None:
            raise _gone("Process does not exist")
        return _json(200, self._process_json(process))

    def _completed_process(self, name: str, stats: dict[str, Any]) -> Process:
        now = self._now()
        world = self.world
        process = Process(
            id=world.next_process_id, name=name, created_ms=now, due_ms=now, completed_ms=now, stats=stats
        )
        world.next_process_id += 1
        world.processes[process.id] = process
        return process

    # ------------------------------------------------------------------ attributes

    def _list_attributes(self, req: Request, params: dict[str, str]) -> Response:
        return _json(200, {"attributes": [a.as_json() for a in self.world.attributes.values()]})

    def _create_attribute(self, req: Request, params: dict[str, str]) -> Response:
        category = _path_value(params["category"])
        name = _path_value(params["name"])
        if category not in ATTRIBUTE_CATEGORIES:
            raise _bad(f"attributeCategory must be one of {', '.join(ATTRIBUTE_CATEGORIES)}")
        if not name.strip():
            raise _missing("attributeName is required")
        if self.world.attribute(name) is not None:
            raise _bad("Attribute name already exists")
        body = _object_body(req)
        kind = body.get("type")
        enumeration: tuple[tuple[int, str], ...] = ()
        options: tuple[str, ...] = ()
        if category in ("calculated", "global"):
            if not isinstance(body.get("value"), str):
                raise _missing("value is required for calculated and global attributes")
            kind = None
        elif category == "category" or kind == "category":
            category = "category"  # an enumerated attribute, however it was asked for
            raw = body.get("enumeration")
            if not isinstance(raw, list) or not raw:
                raise _missing("enumeration is required for category attributes")
            try:
                enumeration = tuple((int(e["value"]), str(e["label"])) for e in raw)
            except (TypeError, KeyError, ValueError):
                raise _bad("enumeration items need an integer value and a label") from None
            kind = "text"
        else:
            kind = "text" if kind is None else kind
            if kind not in ATTRIBUTE_TYPES:
                raise _bad(f"type must be one of {', '.join(ATTRIBUTE_TYPES)}")
            if kind == "id" and category != "transactional":
                raise _bad("type id is only allowed for transactional attributes")
            if kind == "multiple-choice":
                raw_options = body.get("multiCategoryOptions")
                if not isinstance(raw_options, list) or not all(isinstance(o, str) for o in raw_options):
                    raise _missing("multiCategoryOptions is required for multiple-choice attributes")
                options = tuple(raw_options)
        attr = AttributeDef(name=name, category=category, type=kind, enumeration=enumeration, options=options)
        self.world.attributes[name.upper()] = attr
        self.world.version += 1
        return Response.empty(201)

    # ------------------------------------------------------------------ lists and folders

    def _make_list(self, name: str, folder_id: int) -> ContactList:
        world = self.world
        lst = ContactList(world.next_list_id, name, folder_id, self._now())
        world.next_list_id += 1
        world.lists[lst.id] = lst
        world.list_members[lst.id] = set()
        world.version += 1
        return lst

    def _list_lists(self, req: Request, params: dict[str, str]) -> Response:
        limit = self._limit_arg(req, "GET /contacts/lists", 10, MAX_SMALL_PAGE)
        offset = _int_arg(req, "offset", 0)
        ids = sorted(self.world.lists)
        page = [self._list_json(self.world.lists[i]) for i in _page(ids, offset, limit, _sort_arg(req))]
        return _json(200, {"count": len(ids), "lists": page})

    def _create_list(self, req: Request, params: dict[str, str]) -> Response:
        body = _object_body(req)
        name = body.get("name")
        folder_id = body.get("folderId")
        if not isinstance(name, str) or not name.strip():
            raise _missing("name is required")
        if folder_id is None:
            raise _missing("folderId is required")
        if not isinstance(folder_id, int) or folder_id not in self.world.folders:
            raise _gone("Folder ID does not exist")
        return _json(201, {"id": self._make_list(name, folder_id).id})

    def _get_list(self, req: Request, params: dict[str, str]) -> Response:
        return _json(200, self._list_json(self._list(params["list_id"]), detail=True))

    def _update_list(self, req: Request, params: dict[str, str]) -> Response:
        lst = self._list(params["list_id"])
        body = _object_body(req)
        given = [k for k in ("name", "folderId") if k in body]
        if len(given) != 1:
            raise _bad("Send either name or folderId, one at a time")
        if given[0] == "name":
            if not isinstance(body["name"], str) or not body["name"].strip():
                raise _bad("name must be a non-empty string")
            lst.name = body["name"]
        else:
            if not isinstance(body["folderId"], int) or body["folderId"] not in self.world.folders:
                raise _gone("Folder ID does not exist")
            lst.folder_id = body["folderId"]
        self.world.version += 1
        return Response.empty(204)

    def _delete_list(self, req: Request, params: dict[str, str]) -> Response:
        self.world.delete_list(self._list(params["list_id"]).id)
        return Response.empty(204)

    def _list_members(self, req: Request, params: dict[str, str]) -> Response:
        lst = self._list(params["list_id"])
        limit = self._limit_arg(req, "GET /contacts/lists/{list_id}/contacts", 50, MAX_LIST_CONTACTS_PAGE)
        offset = _int_arg(req, "offset", 0)
        sort = _sort_arg(req)
        ids = self._matching_ids(_time_arg(req, "modifiedSince"), None, (lst.id,))
        contacts = self.world.contacts
        page = [self.contact_json(contacts[cid]) for cid in _page(ids, offset, limit, sort)]
        return _json(200, {"contacts": page, "count": len(ids)})

    def _membership_targets(self, body: Mapping[str, Any], endpoint_name: str) -> tuple[str, list[Any]]:
        given = [k for k in ("emails", "ids", "extIds") if k in body]
        if len(given) != 1:
            raise _bad("Send exactly one of emails, ids or extIds")
        kind = given[0]
        values = body[kind]
        if not isinstance(values, list) or not values:
            raise _bad(f"{kind} must be a non-empty array")
        if len(values) > MAX_LIST_MEMBERSHIP_ITEMS:
            self._violation(endpoint_name, f"{len(values)} {kind} in one call; the maximum is 150")
            raise _bad(f"At most {MAX_LIST_MEMBERSHIP_ITEMS} {kind} per call", "out_of_range")
        return kind, values

    def _member(self, kind: str, value: Any) -> Contact | None:
        world = self.world
        if kind == "emails":
            return world.contact_by_email(value) if isinstance(value, str) else None
        if kind == "extIds":
            return world.contact_by_ext_id(str(value)) if isinstance(value, str | int) else None
        if isinstance(value, int) and not isinstance(value, bool):
            return world.contacts.get(value)
        return None

    def _add_to_list(self, req: Request, params: dict[str, str]) -> Response:
        lst = self._list(params["list_id"])
        kind, values = self._membership_targets(
            _object_body(req), "POST /contacts/lists/{list_id}/contacts/add"
        )
        now = self._now()
        success: list[Any] = []
        failure: list[Any] = []
        for value in values:
            contact = self._member(kind, value)
            if contact is not None and self.world.add_to_list(contact, lst.id):
                self.world.touch(contact, now)  # a list add moves modifiedAt, like Brevo
                success.append(value)
            else:
                failure.append(value)
        if not success:
            raise _bad("Contact already in list and/or does not exist")
        return _json(201, {"contacts": {"success": success, "failure": failure}})

    def _remove_from_list(self, req: Request, params: dict[str, str]) -> Response:
        lst = self._list(params["list_id"])
        body = _object_body(req)
        now = self._now()
        world = self.world
        if body.get("all") is True:
            if any(k in body for k in ("emails", "ids", "extIds")):
                raise _bad("Send either all or a list of contacts, not both")
            members = sorted(world.list_members.get(lst.id, set()))
            for cid in members:
                member = world.contacts[cid]
                world.remove_from_list(member, lst.id)
                world.touch(member, now)
            process = self._completed_process(
                "REMOVE_LIST_CONTACTS", {"list_id": lst.id, "removed": len(members)}
            )
            return _json(201, {"contacts": {"processId": process.id, "total": len(members)}})
        kind, values = self._membership_targets(body, "POST /contacts/lists/{list_id}/contacts/remove")
        success: list[Any] = []
        failure: list[Any] = []
        for value in values:
            contact = self._member(kind, value)
            if contact is not None and world.remove_from_list(contact, lst.id):
                world.touch(contact, now)
                success.append(value)
            else:
                failure.append(value)
        if not success:
            raise _bad("Contact already removed from list and/or does not exist")
        return _json(201, {"contacts": {"success": success, "failure": failure}})

    def _list_folders(self, req: Request, params: dict[str, str]) -> Response:
        limit = self._limit_arg(req, "GET /contacts/folders", 10, MAX_SMALL_PAGE)
        offset = _int_arg(req, "offset", 0)
        ids = sorted(self.world.folders)
        page = [self._folder_json(self.world.folders[i]) for i in _page(ids, offset, limit, _sort_arg(req))]
        return _json(200, {"count": len(ids), "folders": page})

    def _create_folder(self, req: Request, params: dict[str, str]) -> Response:
        name = _object_body(req).get("name")
        if not isinstance(name, str) or not name.strip():
            raise _missing("name is required")
        world = self.world
        folder = Folder(world.next_folder_id, name)
        world.next_folder_id += 1
        world.folders[folder.id] = folder
        world.version += 1
        return _json(201, {"id": folder.id})

    def _get_folder(self, req: Request, params: dict[str, str]) -> Response:
        return _json(200, self._folder_json(self._folder(params["folder_id"])))

    def _update_folder(self, req: Request, params: dict[str, str]) -> Response:
        folder = self._folder(params["folder_id"])
        name = _object_body(req).get("name")
        if not isinstance(name, str) or not name.strip():
            raise _missing("name is required")
        folder.name = name
        self.world.version += 1
        return Response.empty(204)

    def _delete_folder(self, req: Request, params: dict[str, str]) -> Response:
        folder = self._folder(params["folder_id"])
        world = self.world
        for list_id in [li.id for li in world.lists.values() if li.folder_id == folder.id]:
            world.delete_list(list_id)  # deleting a folder deletes its lists, as in Brevo
        del world.folders[folder.id]
        world.version += 1
        return Response.empty(204)

    def _folder_lists(self, req: Request, params: dict[str, str]) -> Response:
        folder = self._folder(params["folder_id"])
        limit = self._limit_arg(req, "GET /contacts/folders/{folder_id}/lists", 10, MAX_SMALL_PAGE)
        offset = _int_arg(req, "offset", 0)
        ids = sorted(li.id for li in self.world.lists.values() if li.folder_id == folder.id)
        page = [self._list_json(self.world.lists[i]) for i in _page(ids, offset, limit, _sort_arg(req))]
        return _json(200, {"count": len(ids), "lists": page})

    # ------------------------------------------------------------------ events

    def _record_event(self, item: Any, principal: Any) -> tuple[str | None, str | None]:
        """Validate and store one event: (error message, violation detail)."""
        if not isinstance(item, dict):
            return "An event must be an object", None
        name = item.get("event_name")
        if not isinstance(name, str) or not EVENT_NAME.match(name):
            return "event_name must be 1 to 255 characters among letters, digits, '_' and '-'", None
        identifiers = item.get("identifiers")
        if not isinstance(identifiers, dict) or not any(
            not _is_empty(identifiers.get(k)) for k in EVENT_IDENTIFIERS
        ):
            return "identifiers must hold at least one of " + ", ".join(EVENT_IDENTIFIERS), None
        event_date = item.get("event_date")
        now = self._now()
        if event_date is not None and not _is_timestamp(event_date):
            return "event_date must be an ISO 8601 date-time with a time zone", None
        properties = item.get("event_properties")
        if properties is not None:
            if not isinstance(properties, dict):
                return "event_properties must be an object", None
            size = len(orjson.dumps(properties))
            if size > MAX_EVENT_PROPERTIES_BYTES:
                detail = f"event_properties of {size} bytes is above 50 KB"
                return "event_properties must not exceed 50 KB", detail
        contact_properties = item.get("contact_properties")
        if contact_properties is not None and not isinstance(contact_properties, dict):
            return "contact_properties must be an object", None
        contact = self._event_contact(identifiers)
        if contact is not None and contact_properties:
            edit = ContactEdit()
            for key, value in contact_properties.items():
                if not isinstance(value, dict | list):
                    self._set_attribute(edit, str(key).upper(), value, erase_empty=False)
            if edit.attributes:
                self.apply_edit(contact, edit, now)
        self.world.events.append(
            {
                "event_name": name,
                "event_date": event_date if isinstance(event_date, str) else self._ts(now),
                "identifiers": identifiers,
                "contact_id": None if contact is None else contact.id,
                "event_properties": properties or {},
                "contact_properties": contact_properties or {},
                "object": item.get("object"),
                "received_at": self._ts(now),
                "api_key_name": principal if isinstance(principal, str) else "",
            }
        )
        return None, None

    def _event_contact(self, identifiers: Mapping[str, Any]) -> Contact | None:
        world = self.world
        contact_id = identifiers.get("contact_id")
        if isinstance(contact_id, int) and not isinstance(contact_id, bool):
            return world.contacts.get(contact_id)  # contact_id wins over the other identifiers
        found: Contact | None = None
        email = identifiers.get("email_id")
        if isinstance(email, str):
            found = world.contact_by_email(email)
        ext_id = identifiers.get("ext_id")
        if found is None and isinstance(ext_id, str):
            found = world.contact_by_ext_id(ext_id)
        phone = identifiers.get("phone_id")
        if found is None and isinstance(phone, str):
            found = world.contact_by_sms(phone)
        return found

    def _create_event(self, req: Request, params: dict[str, str]) -> Response:
        error, violation = self._record_event(_object_body(req), req.principal)
        if violation is not None:
            self._violation("POST /events", violation)
        if error is not None:
            raise _bad(error)
        return Response.empty(204)

    def _create_events_batch(self, req: Request, params: dict[str, str]) -> Response:
        payload = _body(req)
        if isinstance(payload, list):
            self._violation("POST /events/batch", "bare JSON array body (refused since 2026-04-21)")
            raise _bad('The body must be an object {"events": [...]} since 2026-04-21, not a bare array')
        if not isinstance(payload, dict) or "events" not in payload:
            raise _missing("events is required")
        events = payload["events"]
        if not isinstance(events, list) or not events:
            raise _bad("events must be a non-empty array")
        failures: dict[str, list[int]] = {}
        violations: list[str] = []
        for index, item in enumerate(events):
            error, violation = self._record_event(item, req.principal)
            if violation is not None:
                violations.append(f"event {index}: {violation}")
            if error is not None:
                failures.setdefault(error, []).append(index)
        if violations:
            self._violation("POST /events/batch", "; ".join(violations))
        failed = sum(len(v) for v in failures.values())
        if not failed:
            return _json(202, {"message": "Events queued for processing", "count": len(events)})
        return _json(
            207,
            {
                "status": "partial_success" if failed < len(events) else "failed",
                "total_events": len(events),
                "successful_events": len(events) - failed,
                "failed_events": failed,
                "errors": [{"eventIndex": idx, "message": msg} for msg, idx in failures.items()],
            },
        )

    # ------------------------------------------------------------------ webhooks

    def _list_webhooks(self, req: Request, params: dict[str, str]) -> Response:
        kind = req.arg("type")
        if kind is not None and kind not in WEBHOOK_TYPES:
            raise _bad(f"type must be one of {', '.join(WEBHOOK_TYPES)}")
        hooks = [h for h in self.world.webhooks.values() if kind is None or h.type == kind]
        if req.arg("sort", "desc") == "desc":
            hooks.reverse()
        return _json(200, {"webhooks": [self._webhook_json(h) for h in hooks]})

    def _create_webhook(self, req: Request, params: dict[str, str]) -> Response:
        body = _object_body(req)
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _missing("url is required and must be an http(s) URL")
        events = body.get("events")
        if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
            raise _missing("events is required: a non-empty array of event names")
        kind = body.get("type", "transactional")
        if kind not in WEBHOOK_TYPES:
            raise _bad(f"type must be one of {', '.join(WEBHOOK_TYPES)}")
        auth = body.get("auth")
        headers = body.get("headers")
        now = self._now()
        world = self.world
        hook = Webhook(
            id=world.next_webhook_id,
            url=url,
            events=list(events),
            type=kind,
            description=str(body.get("description", "")),
            channel=str(body.get("channel", "email")),
            batched=body.get("batched") is True,
            created_ms=now,
            modified_ms=now,
            # Only the shape is kept: the sandbox never calls webhooks, so it has no use for their secrets.
            auth={"type": auth.get("type")} if isinstance(auth, dict) else None,
            headers=[{"key": h.get("key")} for h in headers if isinstance(h, dict)]
            if isinstance(headers, list)
            else [],
        )
        world.next_webhook_id += 1
        world.webhooks[hook.id] = hook
        return _json(201, {"id": hook.id})

    def _webhook(self, raw: str) -> Webhook:
        number = _as_id(raw)
        hook = None if number is None else self.world.webhooks.get(number)
        if hook is None:
            raise _gone("Webhook does not exist")
        return hook

    def _get_webhook(self, req: Request, params: dict[str, str]) -> Response:
        return _json(200, self._webhook_json(self._webhook(params["webhook_id"])))

    def _delete_webhook(self, req: Request, params: dict[str, str]) -> Response:
        del self.world.webhooks[self._webhook(params["webhook_id"]).id]
        return Response.empty(204)

    # ------------------------------------------------------------------ products

    def _products_batch(self, req: Request, params: dict[str, str]) -> Response:
        body = _object_body(req)
        products = body.get("products")
        if not isinstance(products, list) or not products:
            raise _missing("products is required: a non-empty array")
        if len(products) > MAX_PRODUCTS_BATCH:
            self._violation(
                "POST /products/batch", f"{len(products)} products in one call; the maximum is 100"
            )
            raise _bad(f"At most {MAX_PRODUCTS_BATCH} products per call", "out_of_range")
        update_enabled = body.get("updateEnabled") is True
        ids: list[str] = []
        for product in products:
            if not isinstance(product, dict) or not isinstance(product.get("id"), str) or not product["id"]:
                raise _bad("Every product needs a string id")
            meta = product.get("metaInfo")
            if meta is not None and (not isinstance(meta, dict) or len(meta) > MAX_PRODUCT_META_KEYS):
                raise _bad("metaInfo must be an object of at most 20 keys")
            ids.append(product["id"])
        repeated = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
        if repeated:
            raise _bad(f"Duplicate product ids in the payload: {', '.join(repeated)}")
        existing = [i for i in ids if i in self.world.products]
        if existing and not update_enabled:
            raise _bad(f"Product already exists: {', '.join(existing)}; send updateEnabled to update it")
        missing_name = [p["id"] for p in products if p["id"] not in self.world.products and not p.get("name")]
        if missing_name:
            raise _missing(f"name is required to create a product: {', '.join(missing_name)}")
        now = self._now()
        created = 0
        for product in products:
            fields = {k: v for k, v in product.items() if k not in ("createdAt", "modifiedAt")}
            current = self.world.products.get(product["id"])
            if current is None:
                self.world.products[product["id"]] = {
                    "isDeleted": False,
                    **fields,
                    "created_ms": now,
                    "modified_ms": now,
                }
                created += 1
            else:
                current.update(fields)
                current["modified_ms"] = now
        return _json(201, {"createdCount": created, "updatedCount": len(products) - created})

    def _list_products(self, req: Request, params: dict[str, str]) -> Response:
        limit = self._limit_arg(req, "GET /products", 50, MAX_PRODUCTS_PAGE)
        offset = _int_arg(req, "offset", 0)
        wanted = {p.strip() for raw in req.args("ids") for p in raw.split(",") if p.strip()}
        deleted = req.arg("isDeleted")
        if deleted not in (None, "", "true", "false"):
            raise _bad("isDeleted must be true or false")
        found = [
            p
            for p in self.world.products.values()
            if (not wanted or p["id"] in wanted)
            and (deleted in (None, "") or bool(p.get("isDeleted")) == (deleted == "true"))
        ]
        page = [self._product_json(p) for p in found[offset : offset + limit]]
        return _json(200, {"count": len(found), "products": page})

    # ------------------------------------------------------------------ admin (loopback, no auth)

    def admin(self, req: Request, subpath: str) -> Response:
        """Inspection and marketer-side changes for tests and the demo: `/_admin/brevo/<subpath>`."""
        parts = [p for p in subpath.strip("/").split("/") if p]
        with self._lock:
            self._apply_due_imports()
            try:
                return self._admin(req, parts)
            except HttpError as exc:
                return _json(exc.status, exc.payload, exc.headers)

    def _admin(self, req: Request, parts: list[str]) -> Response:
        method = req.method
        head = parts[0] if parts else ""
        if head == "contacts" and len(parts) == 1:
            if method == "GET":
                return self._admin_contacts(req)
            if method == "POST":
                edit = self.edit_from_api(_object_body(req), allow_email_field=True)
                if not edit.has_identifier:
                    raise _missing("A contact needs an email, an ext_id or an SMS attribute")
                owned = self._duplicates(edit, None)
                if owned:
                    raise _error(
                        400, "duplicate_parameter", "Contact already exist", {"duplicate_identifiers": owned}
                    )
                return _json(201, self.contact_json(self.create_contact(edit, self._now())))
        if head == "contacts" and len(parts) == 2:
            contact = self.find_contact(parts[1], req.arg("identifierType"))
            if method == "GET":
                return _json(200, self.contact_json(contact))
            if method == "POST":
                edit = self.edit_from_api(_object_body(req), allow_email_field=False)
                owned = self._duplicates(edit, contact)
                if owned:
                    raise _error(
                        400,
                        "duplicate_parameter",
                        "Identifier already used",
                        {"duplicate_identifiers": owned},
                    )
                self.apply_edit(contact, edit, self._now())
                return _json(200, self.contact_json(contact))
            if method == "DELETE":
                self.world.remove_contact(contact)
                return Response.empty(204)
        if head == "events" and len(parts) == 1 and method == "GET":
            offset = _int_arg(req, "offset", 0)
            limit = _int_arg(req, "limit", 1000)
            events = self.world.events
            return _json(200, {"events": events[offset : offset + limit], "count": len(events)})
        if head == "imports" and method == "GET":
            if len(parts) == 1:
                return _json(200, {"imports": [self._import_summary(p) for p in self._imports()]})
            number = _as_id(parts[1]) if len(parts) == 3 and parts[2] == "duplicate_emails.csv" else None
            if number is not None:
                process = self.world.processes.get(number)
                if process is None:
                    raise _gone("Process does not exist")
                text = "email\n" + "".join(f"{e}\n" for e in process.duplicate_emails)
                return Response(200, text.encode(), {"Content-Type": "text/csv"})
        raise _gone(f"No admin route {method} /{'/'.join(parts)}")

    def _admin_contacts(self, req: Request) -> Response:
        offset = _int_arg(req, "offset", 0)
        limit = min(_int_arg(req, "limit", 100), 10_000)
        ids = self.world.roster()
        page = [self.contact_json(self.world.contacts[cid]) for cid in ids[offset : offset + limit]]
        return _json(200, {"contacts": page, "count": len(ids)})

    def _imports(self) -> list[Process]:
        return [p for p in self.world.processes.values() if p.name == "IMPORTUSER"]

    def _import_summary(self, process: Process) -> dict[str, Any]:
        rendered = self._process_json(process)
        waiting = process.payload or {}
        return {
            "processId": process.id,
            "status": rendered["status"],
            "counters": dict(process.counters),
            "rows_received": len(waiting.get("rows", ())),  # until applied: then from its stats
            **process.stats,
        }
