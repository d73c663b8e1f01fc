"""Braze catalog items -> Brevo products: pure functions, no HTTP, no state.

A catalog's configuration names which item field fills which product field. What it leaves out
is found among the catalog's own field names (`name`/`Name`, `price`, `url`, `image_url`,
`category` …); the item's remaining fields go to the product's `metaInfo` so templates can
personalise with them.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from .models import Rejection

# Product fields filled from one item field each: option name -> (Brevo product key, defaults
# looked up among the catalog's field names, first match wins, case-insensitively).
FIELD_ROLES: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "name_field": ("name", ("name", "title", "product_name", "item_name")),
    "price_field": ("price", ("price", "unit_price", "amount")),
    "url_field": ("url", ("url", "product_url", "link", "web_url")),
    "image_field": ("imageUrl", ("image_url", "imageurl", "image", "img_url", "picture_url")),
    "categories_field": ("categories", ("categories", "category", "category_ids")),
    "sku_field": ("sku", ("sku",)),
    "description_field": ("description", ("description",)),
    "brand_field": ("brand", ("brand",)),
    "stock_field": ("stock", ("stock", "stock_level", "inventory")),
    "parent_id_field": ("parentId", ("parent_id", "parentid")),
}
OPTION_KEYS = ("id_field", *FIELD_ROLES, "meta_fields", "id_prefix")
META_AUTO = "auto"
# Brevo: metaInfo holds at most 20 keys of string or integer values; its size cap is given as
# 1000 KB in the spec and 20,000 characters in the SDK changelog, so the smaller one is kept.
META_MAX_KEYS = 20
META_MAX_CHARS = 20_000
PRODUCT_ID_MAX = 255


@dataclass(frozen=True, slots=True)
class OptionProblem:
    """One wrong catalog option: where it is under `catalogs.<name>`, what is wrong, the fix."""

    path: str
    message: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class CatalogFieldMap:
    """Which item field fills which product field, for one catalog (None: not sent)."""

    catalog: str
    id_field: str = "id"
    name_field: str | None = None
    price_field: str | None = None
    url_field: str | None = None
    image_field: str | None = None
    categories_field: str | None = None
    sku_field: str | None = None
    description_field: str | None = None
    brand_field: str | None = None
    stock_field: str | None = None
    parent_id_field: str | None = None
    meta_fields: tuple[str, ...] = ()
    meta_dropped: tuple[str, ...] = ()  # catalog fields left out of metaInfo by its 20-key cap
    id_prefix: str = ""

    def role_fields(self) -> dict[str, str]:
        """Brevo product key -> item field, for the roles that are filled."""
        out: dict[str, str] = {}
        for option, (product_key, _) in FIELD_ROLES.items():
            field = getattr(self, option)
            if field:
                out[product_key] = field
        return out

    def describe(self) -> dict[str, Any]:
        return {"id": self.id_field, **self.role_fields(), "metaInfo": list(self.meta_fields)}


@dataclass(frozen=True, slots=True)
class ProductPayload:
    """One catalog item as the Brevo product it becomes. `body` is what /products/batch receives."""

    id: str  # the Brevo product id
    item_id: str  # the Braze catalog item id
    body: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.body.get("name") or "")


# ------------------------------------------------------------------ options
def option_problems(options: Any) -> list[OptionProblem]:
    """What is wrong with one catalog's options, without knowing the catalog's fields."""
    if options is None:
        return []
    if not isinstance(options, Mapping):
        return [OptionProblem("", f"must be a mapping of field options, not {type(options).__name__}",
                              "write e.g. `products: {name_field: title}`, or `products: {}` for the defaults")]
    problems: list[OptionProblem] = []
    for key, value in options.items():
        if key not in OPTION_KEYS:
            close = difflib.get_close_matches(str(key), OPTION_KEYS, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"known options: {', '.join(OPTION_KEYS)}"
            problems.append(OptionProblem(str(key), f"unknown catalog option `{key}`", hint))
        elif key == "meta_fields":
            if value == META_AUTO or value is None:
                continue
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
                problems.append(OptionProblem(key, "must be `auto` or a list of item field names",
                                              "e.g. `meta_fields: [in_stock, colour]`, or `[]` for none"))
            elif len(value) > META_MAX_KEYS:
                problems.append(OptionProblem(key, f"names {len(value)} fields; Brevo's metaInfo holds at most "
                                                   f"{META_MAX_KEYS}", "keep the 20 a template needs"))
        elif key == "id_prefix":
            if not isinstance(value, str):
                problems.append(OptionProblem(key, "must be a string", "e.g. `id_prefix: 'store-'`"))
        elif key == "id_field":
            if not isinstance(value, str) or not value:
                problems.append(OptionProblem(key, "must be an item field name", "the default is `id`"))
        elif value is not None and (not isinstance(value, str) or not value):
            problems.append(OptionProblem(key, "must be an item field name, or null to send nothing",
                                          f"e.g. `{key}: {FIELD_ROLES[key][1][0]}`"))
    return problems


def resolve_field_map(catalog: str, options: Mapping[str, Any] | None, catalog_fields: Sequence[str]
                      ) -> tuple[CatalogFieldMap, list[OptionProblem]]:
    """The field map of one catalog: configured fields first, then defaults from its own field names.

    `catalog_fields` are the field names the catalog declares (GET /catalogs), in order. A
    configured field the catalog does not declare is a problem (with a "did you mean").
    """
    problems = option_problems(options)
    if options is not None and not isinstance(options, Mapping):
        return CatalogFieldMap(catalog), problems
    # The options that are well formed are still resolved, so every problem is reported at once.
    wrong = {p.path for p in problems}
    options = {k: v for k, v in (options or {}).items() if k not in wrong}
    by_folded: dict[str, str] = {}
    for name in catalog_fields:
        by_folded.setdefault(name.casefold(), name)

    def check(option: str, field: str) -> str:
        if catalog_fields and field not in catalog_fields:
            close = difflib.get_close_matches(field, list(catalog_fields), n=1)
            folded = by_folded.get(field.casefold())
            hint = f"did you mean `{folded or close[0]}`?" if (folded or close) else (
                f"the catalog's fields are: {', '.join(catalog_fields)}")
            problems.append(OptionProblem(option, f"catalog '{catalog}' has no field `{field}`", hint))
        return field

    id_field = check("id_field", str(options.get("id_field") or "id"))
    chosen: dict[str, str | None] = {}
    for option, (_, defaults) in FIELD_ROLES.items():
        if option in options:
            value = options[option]
            chosen[option] = None if value is None else check(option, str(value))
            continue
        chosen[option] = next((by_folded[d] for d in defaults if d in by_folded), None)

    used = {id_field, "id", *(f for f in chosen.values() if f)}
    meta_option = options.get("meta_fields", META_AUTO)
    dropped: tuple[str, ...] = ()
    if meta_option == META_AUTO or meta_option is None:
        rest = [name for name in catalog_fields if name not in used]
        meta, dropped = tuple(rest[:META_MAX_KEYS]), tuple(rest[META_MAX_KEYS:])
    else:
        meta = tuple(check("meta_fields", str(name)) for name in meta_option)
    field_map = CatalogFieldMap(
        catalog,
        id_field=id_field,
        name_field=chosen["name_field"],
        price_field=chosen["price_field"],
        url_field=chosen["url_field"],
        image_field=chosen["image_field"],
        categories_field=chosen["categories_field"],
        sku_field=chosen["sku_field"],
        description_field=chosen["description_field"],
        brand_field=chosen["brand_field"],
        stock_field=chosen["stock_field"],
        parent_id_field=chosen["parent_id_field"],
        meta_fields=meta,
        meta_dropped=dropped,
        id_prefix=str(options.get("id_prefix") or ""),
    )
    return field_map, problems


# ------------------------------------------------------------------ one item
class _Reject(Exception):
    def __init__(self, reason: str, field: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def _shown(value: Any) -> str:
    """A value as a reason shows it: JSON-like, and short (reasons are read by people)."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
    except TypeError:  # an integer past 64 bits, which orjson refuses: the reason still names it
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _text(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _Reject(f"field `{field}` holds {_shown(value)}, not text", field)


def _number(value: Any, field: str) -> int | float:
    if isinstance(value, bool):
        raise _Reject(f"field `{field}` holds {_shown(value)}, not a number", field)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
    elif isinstance(value, str):
        text = value.strip()
        try:
            # Whole numbers stay integers; "1,5" is refused rather than guessed at.
            return int(text) if text.lstrip("+-").isdigit() else _finite(float(text))
        except ValueError:
            pass
    raise _Reject(f"field `{field}` holds {_shown(value)}, not a number", field)


def _finite(number: float) -> float:
    if not math.isfinite(number):
        raise ValueError(number)
    return number


def _url(value: Any, field: str) -> str:
    text = _text(value, field)
    if not text.lower().startswith(("http://", "https://")) or len(text) <= len("https://"):
        raise _Reject(f"field `{field}` holds {_shown(value)}, not an absolute http(s) URL", field)
    return text


def _categories(value: Any, field: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    out: list[str] = []
    for entry in values:
        if not _present(entry):
            continue
        text = _text(entry, field)
        if text not in out:
            out.append(text)
    return out


def _meta_value(value: Any) -> str | int:
    """Brevo's metaInfo takes strings and integers: everything else is written as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
        return ", ".join(str(v) for v in value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def item_key(catalog: str, item: Mapping[str, Any]) -> str:
    """The key an item's dead letter is filed under: `<catalog>:<Braze item id>`."""
    raw = item.get("id")
    return f"{catalog}:{raw if isinstance(raw, str | int) and not isinstance(raw, bool) else '?'}"


def product_id_of(item: Mapping[str, Any], fields: CatalogFieldMap) -> str | None:
    """The Brevo product id an item maps to, or None when its id field is unusable."""
    raw = item.get(fields.id_field)
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    text = str(raw).strip()
    if not text:
        return None
    return f"{fields.id_prefix}{text}"


def item_to_product(item: Mapping[str, Any], fields: CatalogFieldMap) -> ProductPayload | Rejection:
    """Map one catalog item to a Brevo product, or say precisely why it cannot be one."""
    key = item_key(fields.catalog, item)
    product_id = product_id_of(item, fields)
    if product_id is None:
        value = item.get(fields.id_field)
        what = "is missing" if not _present(value) else f"holds {_shown(value)}, not text or a whole number"
        return Rejection(key, f"field `{fields.id_field}` {what}; it is the product id", fields.id_field)
    if len(product_id) > PRODUCT_ID_MAX:
        return Rejection(key, f"product id is {len(product_id)} characters; the limit kept is {PRODUCT_ID_MAX}",
                         fields.id_field)
    try:
        body = _product_body(item, fields, product_id)
    except _Reject as exc:
        return Rejection(key, exc.reason, exc.field)
    return ProductPayload(product_id, str(item.get("id", product_id)), body)


def _product_body(item: Mapping[str, Any], fields: CatalogFieldMap, product_id: str) -> dict[str, Any]:
    name_field = fields.name_field
    name = item.get(name_field) if name_field else None
    if not name_field or not _present(name):
        where = f"field `{name_field}` is empty or missing" if name_field else (
            "the catalog has no name-like field; set `name_field`")
        raise _Reject(f"no product name: {where}; Brevo needs a name to create a product", name_field)
    # Re-sending isDeleted=false revives a product that was marked deleted and came back.
    body: dict[str, Any] = {"id": product_id, "name": _text(name, name_field), "isDeleted": False}
    converters: dict[str, Callable[[Any, str], Any]] = {
        "price": _number,
        "stock": _number,
        "url": _url,
        "imageUrl": _url,
        "categories": _categories,
    }
    for product_key, field in fields.role_fields().items():
        if product_key == "name":
            continue
        value = item.get(field)
        if not _present(value):
            continue
        convert: Callable[[Any, str], Any] = converters.get(product_key, _text)
        converted = convert(value, field)
        if converted != []:
            body[product_key] = converted
    meta: dict[str, str | int] = {}
    for field in fields.meta_fields:
        value = item.get(field)
        if _present(value):
            meta[field] = _meta_value(value)
    if meta:
        size = sum(len(k) + len(str(v)) for k, v in meta.items())
        if size > META_MAX_CHARS:
            raise _Reject(f"metaInfo would be {size} characters; Brevo accepts at most {META_MAX_CHARS}",
                          "meta_fields")
        body["metaInfo"] = meta
    return body


# ------------------------------------------------------------------ what we remember
def product_digest(payload: ProductPayload) -> str:
    """A short digest of everything sent for a product: a different digest means "write it again"."""
    return hashlib.blake2b(orjson.dumps(payload.body, option=orjson.OPT_SORT_KEYS), digest_size=10).hexdigest()


@dataclass(frozen=True, slots=True)
class SentProduct:
    """What was last written for one product, packed into its fingerprint.

    The item id and name are kept so a deletion can be confirmed against Braze and re-sent with
    a name (an upsert of a product Brevo lost needs one).
    """

    digest: str
    item_id: str
    name: str

    def encode(self) -> str:
        return f"{self.digest}\t{self.item_id}\t{self.name}"

    @classmethod
    def decode(cls, text: str) -> SentProduct:
        digest, item_id, name = (text.split("\t", 2) + ["", ""])[:3]
        return cls(digest, item_id, name)

    @classmethod
    def of(cls, payload: ProductPayload) -> SentProduct:
        return cls(product_digest(payload), payload.item_id, payload.name.replace("\t", " "))


def deleted_at(epoch_s: float) -> str:
    """Brevo's `deletedAt`: UTC with milliseconds, e.g. `2024-05-01T10:00:00.000Z`."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def deletion_body(product_id: str, sent: SentProduct | None, at: str) -> dict[str, Any]:
    """The upsert that marks a product deleted in Brevo."""
    body: dict[str, Any] = {"id": product_id, "isDeleted": True, "deletedAt": at}
    if sent is not None and sent.name:
        body["name"] = sent.name
    return body


def product_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Field-level differences between what Brevo holds and what would be sent (for dry runs)."""
    old = dict(before or {})
    # A product Brevo does not have is not "un-deleted" by a create: leave that flag out of its diff.
    old.setdefault("isDeleted", False)
    return {
        key: {"from": old.get(key), "to": value}
        for key, value in sorted(after.items())
        if key != "id" and old.get(key) != value
    }
