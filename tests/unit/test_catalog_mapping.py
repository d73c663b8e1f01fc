"""Braze catalog items -> Brevo products: option checks, field defaults, item mapping, the pass loop."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tajo_braze.batching import chunked
from tajo_braze.catalog_mapping import (
    META_MAX_KEYS,
    CatalogFieldMap,
    ProductPayload,
    SentProduct,
    deleted_at,
    deletion_body,
    item_to_product,
    option_problems,
    product_changes,
    product_digest,
    resolve_field_map,
)
from tajo_braze.clients.braze import CatalogInfo
from tajo_braze.errors import PermanentApiError
from tajo_braze.models import Rejection
from tajo_braze.state import StateStore
from tajo_braze.sync import catalogs as catalogs_sync
from tajo_braze.sync.catalogs import CatalogPass, CatalogPlan, catalog_counts, missing_from
from tajo_braze.sync.context import SyncContext

PRODUCT_FIELDS = ["id", "name", "price", "url", "image_url", "category", "in_stock"]
STORE_FIELDS = ["id", "name", "city", "country", "latitude", "longitude", "opened_at"]


def products_map(**options: Any) -> CatalogFieldMap:
    fields, problems = resolve_field_map("products", options, PRODUCT_FIELDS)
    assert problems == []
    return fields


def product(item: dict[str, Any], fields: CatalogFieldMap | None = None) -> ProductPayload:
    out = item_to_product(item, fields or products_map())
    assert isinstance(out, ProductPayload), out
    return out


def rejection(item: dict[str, Any], fields: CatalogFieldMap | None = None) -> Rejection:
    out = item_to_product(item, fields or products_map())
    assert isinstance(out, Rejection), out
    return out


SNEAKER = {
    "id": "prod-0001",
    "name": "Urban Sneaker",
    "price": 89.9,
    "url": "https://shop.example.com/p/prod-0001",
    "image_url": "https://cdn.example.com/img/prod-0001.jpg",
    "category": "shoes",
    "in_stock": True,
}


# ------------------------------------------------------------------ defaults and options
def test_defaults_come_from_the_catalogs_own_field_names() -> None:
    fields = products_map()
    assert fields.describe() == {
        "id": "id",
        "name": "name",
        "price": "price",
        "url": "url",
        "imageUrl": "image_url",
        "categories": "category",
        "metaInfo": ["in_stock"],
    }


def test_defaults_match_field_names_whatever_their_case() -> None:
    fields, problems = resolve_field_map("shop", {}, ["id", "Name", "Price", "Image", "Categories", "Colour"])
    assert problems == []
    assert fields.name_field == "Name" and fields.price_field == "Price"
    assert fields.image_field == "Image" and fields.categories_field == "Categories"
    assert fields.meta_fields == ("Colour",)


def test_a_catalog_without_product_fields_keeps_the_rest_as_meta_info() -> None:
    fields, problems = resolve_field_map("stores", {}, STORE_FIELDS)
    assert problems == []
    assert fields.role_fields() == {"name": "name"}
    assert fields.meta_fields == ("city", "country", "latitude", "longitude", "opened_at")


def test_configured_fields_win_and_null_turns_a_default_off() -> None:
    fields = products_map(name_field="url", url_field=None, meta_fields=[])
    assert fields.name_field == "url" and fields.url_field is None
    assert fields.meta_fields == ()
    out = product(SNEAKER, fields)
    assert out.body["name"] == SNEAKER["url"] and "url" not in out.body and "metaInfo" not in out.body


def test_unknown_options_and_wrong_types_are_all_reported_with_a_fix() -> None:
    problems = option_problems({"nmae_field": "title", "meta_fields": 3, "id_prefix": 5, "price_field": ""})
    by_path = {p.path: p for p in problems}
    assert set(by_path) == {"nmae_field", "meta_fields", "id_prefix", "price_field"}
    assert by_path["nmae_field"].fix == "did you mean `name_field`?"
    assert option_problems("products") and option_problems(None) == []


def test_a_field_the_catalog_does_not_declare_is_a_problem_with_a_suggestion() -> None:
    _, problems = resolve_field_map("products", {"price_field": "prise", "name_field": "NAME"}, PRODUCT_FIELDS)
    fixes = {p.path: p.fix for p in problems}
    assert fixes == {"price_field": "did you mean `price`?", "name_field": "did you mean `name`?"}
    assert all("catalog 'products' has no field" in p.message for p in problems)


def test_meta_info_keeps_twenty_fields_and_names_those_left_out() -> None:
    names = ["id", "name", *(f"extra_{i:02d}" for i in range(25))]
    fields, problems = resolve_field_map("wide", {}, names)
    assert problems == []
    assert len(fields.meta_fields) == META_MAX_KEYS
    assert fields.meta_dropped == tuple(f"extra_{i:02d}" for i in range(20, 25))
    too_many = option_problems({"meta_fields": [f"f{i}" for i in range(21)]})
    assert [p.path for p in too_many] == ["meta_fields"]


# ------------------------------------------------------------------ one item
def test_an_item_becomes_the_product_brevo_expects() -> None:
    out = product(SNEAKER)
    assert out.id == out.item_id == "prod-0001"
    assert dict(out.body) == {
        "id": "prod-0001",
        "name": "Urban Sneaker",
        "isDeleted": False,
        "price": 89.9,
        "url": "https://shop.example.com/p/prod-0001",
        "imageUrl": "https://cdn.example.com/img/prod-0001.jpg",
        "categories": ["shoes"],
        "metaInfo": {"in_stock": "true"},
    }


def test_values_are_coerced_to_brevos_types() -> None:
    fields, _ = resolve_field_map(
        "shop", {}, ["id", "title", "price", "stock", "categories", "sku", "rating", "tags", "dims", "launched"]
    )
    item = {
        "id": 42, "title": " Mug ", "price": "12.50", "stock": "7", "categories": ["home", "home", "", 3],
        "sku": 1234, "rating": 4.0, "tags": ["a", "b"], "dims": {"w": 1}, "launched": None,
    }  # fmt: skip
    body = product(item, fields).body
    assert body["id"] == "42" and body["name"] == "Mug"
    assert body["price"] == 12.5 and body["stock"] == 7
    assert body["categories"] == ["home", "3"]
    assert body["sku"] == "1234"
    assert body["metaInfo"] == {"rating": "4", "tags": "a, b", "dims": '{"w":1}'}


def test_empty_optional_fields_are_left_out() -> None:
    body = product({**SNEAKER, "price": None, "url": "", "category": [], "in_stock": None}).body
    assert not {"price", "url", "categories", "metaInfo"} & set(body)


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"name": ""}, "no product name: field `name` is empty or missing", "name"),
        ({"name": None}, "no product name: field `name` is empty or missing", "name"),
        ({"price": "twelve"}, 'field `price` holds "twelve", not a number', "price"),
        ({"price": True}, "field `price` holds true, not a number", "price"),
        ({"price": "1,5"}, 'field `price` holds "1,5", not a number', "price"),
        ({"price": float("nan")}, "not a number", "price"),
        ({"url": "/p/1"}, 'field `url` holds "/p/1", not an absolute http(s) URL', "url"),
        ({"image_url": {"src": "x"}}, "not text", "image_url"),
        ({"category": [{"id": 1}]}, "not text", "category"),
    ],
)
def test_a_bad_item_is_rejected_with_a_precise_reason(change: dict[str, Any], reason: str, field: str) -> None:
    out = rejection({**SNEAKER, **change})
    assert out.key == "products:prod-0001"
    assert reason in out.reason
    assert out.field == field


def test_an_item_without_a_usable_id_is_rejected_under_its_braze_id() -> None:
    fields = products_map(id_field="url")
    out = rejection({**SNEAKER, "url": None}, fields)
    assert out.key == "products:prod-0001" and out.field == "url"
    assert out.reason == "field `url` is missing; it is the product id"
    assert "not text or a whole number" in rejection({**SNEAKER, "id": 1.5}).reason


def test_id_prefix_and_id_field_make_the_product_id_but_the_item_id_is_kept() -> None:
    fields, _ = resolve_field_map("stores", {"id_prefix": "store:"}, STORE_FIELDS)
    out = product({"id": "store-01", "name": "Tajo Lisbon #1", "city": "Lisbon"}, fields)
    assert out.id == "store:store-01" and out.item_id == "store-01"


def test_meta_info_over_brevos_size_cap_is_rejected() -> None:
    out = rejection({**SNEAKER, "in_stock": "x" * 20_001})
    assert out.field == "meta_fields" and "Brevo accepts at most 20000" in out.reason


def test_an_integer_past_64_bits_is_rejected_with_its_value_not_an_exception() -> None:
    out = item_to_product({"id": 0, "name": 0, "url": -(2**63) - 1}, products_map())
    assert isinstance(out, Rejection)
    assert "-9223372036854775809" in out.reason


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(PRODUCT_FIELDS),
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
        | st.lists(st.text(max_size=5), max_size=3),
    )
)
def test_any_item_maps_to_a_valid_product_or_a_rejection_never_an_exception(item: dict[str, Any]) -> None:
    out = item_to_product(item, products_map())
    if isinstance(out, Rejection):
        assert out.reason and out.key.startswith("products:")
        return
    body = out.body
    assert isinstance(body["id"], str) and body["id"]
    assert isinstance(body["name"], str) and body["name"]
    assert body["isDeleted"] is False
    if "price" in body:
        assert isinstance(body["price"], int | float) and not isinstance(body["price"], bool)
    for key in ("url", "imageUrl"):
        if key in body:
            assert body[key].startswith(("http://", "https://"))
    if "categories" in body:
        assert body["categories"] and all(isinstance(c, str) and c for c in body["categories"])
    for value in body.get("metaInfo", {}).values():
        assert isinstance(value, str | int) and not isinstance(value, bool)


# ------------------------------------------------------------------ fingerprints and deletions
def test_the_digest_changes_with_any_field_and_ignores_key_order() -> None:
    a = product(SNEAKER)
    reordered = ProductPayload(a.id, a.item_id, dict(reversed(list(a.body.items()))))
    assert product_digest(a) == product_digest(reordered)
    assert product_digest(a) != product_digest(product({**SNEAKER, "price": 90.0}))
    assert product_digest(a) != product_digest(product({**SNEAKER, "in_stock": False}))


def test_sent_product_round_trips_through_its_fingerprint_text() -> None:
    sent = SentProduct.of(product({**SNEAKER, "name": "Tab\tName"}))
    assert SentProduct.decode(sent.encode()) == sent
    assert sent.name == "Tab Name" and sent.item_id == "prod-0001"
    assert SentProduct.decode("abc") == SentProduct("abc", "", "")


def test_a_deletion_marks_the_product_deleted_with_a_utc_time_and_its_last_name() -> None:
    at = deleted_at(1_700_000_000.1234)
    assert at == "2023-11-14T22:13:20.123Z"
    sent = SentProduct("d", "prod-9", "Old Lamp")
    assert deletion_body("prod-9", sent, at) == {
        "id": "prod-9", "isDeleted": True, "deletedAt": at, "name": "Old Lamp",
    }  # fmt: skip
    assert "name" not in deletion_body("prod-9", None, at)


def test_product_changes_show_only_what_differs() -> None:
    before = {"id": "p", "name": "Lamp", "price": 10, "isDeleted": False, "createdAt": "…"}
    after = {"id": "p", "name": "Lamp", "price": 12, "isDeleted": False}
    assert product_changes(before, after) == {"price": {"from": 10, "to": 12}}
    created = product_changes(None, after)
    assert set(created) == {"name", "price"}  # a create is not an "un-delete"
    assert product_changes({**before, "isDeleted": True}, after)["isDeleted"] == {"from": True, "to": False}


# ------------------------------------------------------------------ the pass: cursor, key streams, plan
@settings(max_examples=200, deadline=None)
@given(st.sets(st.text(max_size=4)), st.sets(st.text(max_size=4)))
def test_missing_from_is_a_sorted_set_difference(known: set[str], seen: set[str]) -> None:
    assert list(missing_from(sorted(known), sorted(seen))) == sorted(known - seen)


def test_chunked_keeps_order_and_size() -> None:
    assert list(chunked(iter("abcde"), 2)) == [["a", "b"], ["c", "d"], ["e"]]
    assert list(chunked([], 3)) == []


def test_a_pass_round_trips_through_its_saved_cursor() -> None:
    info = CatalogInfo("products", (("id", "string"),), 120, "2024-01-01T00:00:00.000Z")
    fresh = CatalogPass.fresh(info, full=True, now="2024-05-01T00:00:00+00:00", last_complete_at=None)
    assert fresh.phase == "reading" and fresh.page_cursor is None and fresh.under_way
    fresh.page_cursor, fresh.pages, fresh.items = "c2tpcDo1MA==", 1, 50
    assert CatalogPass.load(fresh.as_dict()) == fresh
    assert CatalogPass.load(None) is None and CatalogPass.load({"phase": "bogus"}) is None


def test_the_dry_run_plan_totals_every_catalog() -> None:
    plan = CatalogPlan()
    plan.bump("products", "create", 3)
    plan.bump("stores", "create")
    plan.bump("products", "delete", 2)
    summary = plan.as_dict()
    assert (summary["create"], summary["delete"], summary["update"]) == (4, 2, 0)
    assert summary["catalogs"]["products"]["delete"] == 2


# ------------------------------------------------------------------ the sync loop, against in-memory vendors
class FakeBraze:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def list_catalogs(self) -> list[CatalogInfo]:
        return [CatalogInfo("shop", (("id", "string"), ("name", "string")), len(self.items), "t0")]

    def iter_catalog_items(self, name: str, cursor: str | None = None) -> Iterator[tuple[list[Any], str | None]]:
        start = int(cursor or 0)
        for offset in range(start, len(self.items), 50):
            following = str(offset + 50) if offset + 50 < len(self.items) else None
            yield self.items[offset : offset + 50], following


class RefusingBrevo:
    """Refuses, as Brevo does, a whole batch that holds one product it will not take."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused
        self.calls: list[list[str]] = []
        self.products: dict[str, dict[str, Any]] = {}

    def upsert_products(self, products: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        ids = [str(p["id"]) for p in products]
        self.calls.append(ids)
        bad = sorted(self.refused.intersection(ids))
        if bad:
            raise PermanentApiError("Brevo refused the request.", api="brevo", status=400,
                                    body_excerpt=f'{{"code":"invalid_parameter","message":"bad product {bad[0]}"}}')
        created = sum(1 for i in ids if i not in self.products)
        self.products.update({str(p["id"]): dict(p) for p in products})
        return {"createdCount": created, "updatedCount": len(ids) - created}


def test_a_product_brevo_refuses_is_isolated_and_dead_lettered_while_its_batch_is_written(tmp_path: Path) -> None:
    items = [{"id": f"p{i}", "name": f"Item {i}"} for i in range(1, 8)]
    brevo = RefusingBrevo({"p3", "p6"})
    with StateStore(tmp_path / "state.db") as state:
        ctx = SyncContext(
            config=SimpleNamespace(catalogs={"shop": {}}, source="tajo.yaml"),  # type: ignore[arg-type]
            mapping=None,  # type: ignore[arg-type]
            state=state,
            braze=FakeBraze(items),  # type: ignore[arg-type]
            brevo=brevo,  # type: ignore[arg-type]
            braze_session=None,  # type: ignore[arg-type]
            logger=None,
            work_dir=tmp_path,
        )
        result = catalogs_sync.run(ctx)
        assert (result.created, result.failed) == (5, 2)
        assert sorted(brevo.products) == ["p1", "p2", "p4", "p5", "p7"]
        assert brevo.calls[0] == [f"p{i}" for i in range(1, 8)]  # one batch first, split only on refusal
        assert len(brevo.calls) == 11
        letters = {d.key: d.reason for d in state.list_dead_letters("catalogs")}
        assert set(letters) == {"shop:p3", "shop:p6"}
        assert "bad product p3" in letters["shop:p3"] and letters["shop:p3"].startswith("Brevo refused the product")
        assert catalog_counts(state) == {"shop": 5}

        # The refused products are not known as written, so a later pass does not mark them deleted.
        brevo.refused.clear()
        again = catalogs_sync.run(ctx)
        assert (again.created, again.unchanged, again.failed) == (2, 5, 0)
        assert state.count_dead_letters("catalogs") == 0
        assert not any(p.get("isDeleted") for p in brevo.products.values())
