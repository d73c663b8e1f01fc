"""Braze catalogs -> Brevo products against the sandbox over loopback."""

from __future__ import annotations

import functools
import io
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

import tajo_braze.connector as connector_module
from tajo_braze.catalog_mapping import ProductPayload, item_to_product, resolve_field_map
from tajo_braze.connector import BrazeConnector
from tajo_braze.errors import ConfigError, Interrupted, UsageError
from tajo_braze.ratelimit import RateLimiter
from tajo_braze.sandbox import Sandbox
from tajo_braze.sync.catalogs import COMMIT_EVERY_PAGES, catalog_counts

from .conftest import FakeClock, admin_post, config_for, env_for
from .processes import sync_process, wait_for

PAGES = "braze GET /catalogs/{catalog_name}/items"
ITEM = "braze GET /catalogs/{catalog_name}/items/{item_id}"
LISTING = "braze GET /catalogs"
UPSERT = "brevo POST /products/batch"
BOTH = {"products": {}, "stores": {}}


class StopAfterCommits:
    """A progress display that asks the run to stop after its n-th commit (a Ctrl-C at a known point)."""

    def __init__(self, commits: int) -> None:
        self.commits = commits
        self.seen = 0
        self.stop: threading.Event | None = None

    def update(self, resource: str, **counters: int) -> None:
        self.seen += 1
        if self.seen >= self.commits and self.stop is not None:
            self.stop.set()

    def close(self) -> None:
        return None


@pytest.fixture
def world(make_world: Callable[..., Sandbox], clock: FakeClock) -> Sandbox:
    return make_world(users=50, contacts=10, clock=clock.time, sleep=clock.sleep)


@pytest.fixture
def make_catalog_connector(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., BrazeConnector]]:
    # The connector builds its rate limiters on the monotonic clock; here they run on the fake one,
    # so a full minute of the 50-per-minute catalog bucket passes in milliseconds.
    monkeypatch.setattr(connector_module, "RateLimiter", functools.partial(RateLimiter, clock=clock.time))
    made: list[BrazeConnector] = []

    def make(
        sandbox: Sandbox, catalogs: dict[str, Any] | None = None, progress: StopAfterCommits | None = None
    ) -> BrazeConnector:
        config = catalog_config(sandbox, tmp_path, BOTH if catalogs is None else catalogs)
        connector = BrazeConnector(
            config, env=env_for(sandbox), log_stream=io.StringIO(), sleep=clock.sleep, clock=clock.time,
            progress=(lambda: progress) if progress is not None else None,
        )
        if progress is not None:
            progress.stop = connector.stop
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


def catalog_config(sandbox: Sandbox, state_dir: Path, catalogs: dict[str, Any]) -> dict[str, Any]:
    config = config_for(sandbox, state_dir)
    config["connectors"]["braze"]["catalogs"] = catalogs
    return config


def catalog_items(sandbox: Sandbox, name: str) -> list[dict[str, Any]]:
    catalogs = {c["name"]: c for c in sandbox.braze.dump_state()["catalogs"]}
    return list(catalogs[name]["items"])


def brevo_products(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in sandbox.brevo.dump_state()["products"]}


def expected_products(sandbox: Sandbox, name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    catalog = {c["name"]: c for c in sandbox.braze.dump_state()["catalogs"]}[name]
    fields, problems = resolve_field_map(name, options or {}, [f["name"] for f in catalog["fields"]])
    assert problems == []
    out: dict[str, Any] = {}
    for item in catalog["items"]:
        mapped = item_to_product(item, fields)
        assert isinstance(mapped, ProductPayload)
        out[mapped.id] = dict(mapped.body)
    return out


def without_times(products: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        pid: {k: v for k, v in p.items() if k not in ("created_ms", "modified_ms", "deletedAt")}
        for pid, p in products.items()
    }


def upsert_items(sandbox: Sandbox, name: str, items: list[dict[str, Any]]) -> None:
    admin_post(sandbox, f"braze/catalogs/{name}/items", {"items": items})


def delete_item(sandbox: Sandbox, name: str, item_id: str) -> None:
    response = requests.delete(f"{sandbox.admin_url}/braze/catalogs/{name}/items/{item_id}", timeout=30)
    response.raise_for_status()


def catalog_result(summary: dict[str, Any]) -> dict[str, Any]:
    (result,) = [r for r in summary["resources"] if r["resource"] == "catalogs"]
    return result


def more_products(first: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"prod-{i:04d}", "name": f"Extra Item {i}", "price": round(5 + i * 0.25, 2),
            "url": f"https://shop.example.com/p/prod-{i:04d}", "image_url": f"https://cdn.example.com/{i}.jpg",
            "category": "extras", "in_stock": i % 2 == 0,
        }
        for i in range(first, first + count)
    ]  # fmt: skip


# ------------------------------------------------------------------ the incremental contract
def test_first_run_writes_every_item_and_a_second_writes_none(
    world: Sandbox, make_catalog_connector: Callable[..., BrazeConnector]
) -> None:
    connector = make_catalog_connector(world)
    first = catalog_result(connector.sync(resources=["catalogs"]))
    assert first["read"] == 150 and first["created"] == 150 and first["failed"] == 0

    expected = {**expected_products(world, "products"), **expected_products(world, "stores")}
    held = brevo_products(world)
    assert set(held) == set(expected)
    for pid, body in expected.items():
        assert {k: held[pid].get(k) for k in body} == body, pid
    assert held["prod-0001"]["categories"] and held["prod-0001"]["metaInfo"]["in_stock"] in ("true", "false")
    assert held["store-01"]["metaInfo"]["city"]  # a catalog with no product fields keeps them as metaInfo
    upserts = world.request_counts()[UPSERT]
    assert upserts == 3  # 100 + 20 products, 30 stores: batches are filled across pages

    second = catalog_result(connector.sync(resources=["catalogs"]))
    assert second["created"] + second["updated"] == 0 and second["unchanged"] == 150
    assert world.request_counts()[UPSERT] == upserts
    assert catalog_counts(connector.state) == {"products": 120, "stores": 30}
    cursors = connector.status()["cursors"]
    assert cursors["catalog:products/braze_to_brevo"]["phase"] == "idle"
    assert cursors["catalog:products/braze_to_brevo"]["last_complete_at"]
    assert world.violations() == []


def test_five_changed_items_write_five_and_only_those(
    world: Sandbox, make_catalog_connector: Callable[..., BrazeConnector]
) -> None:
    connector = make_catalog_connector(world)
    connector.sync(resources=["catalogs"])
    upserts = world.request_counts()[UPSERT]
    changed = {f"prod-{i:04d}": 1000.0 + i for i in (3, 44, 51, 99, 118)}
    upsert_items(world, "products", [{"id": pid, "price": price} for pid, price in changed.items()])
    before = brevo_products(world)

    result = catalog_result(connector.sync(resources=["catalogs"]))
    assert (result["updated"], result["created"], result["unchanged"]) == (5, 0, 145)
    assert world.request_counts()[UPSERT] == upserts + 1
    after = brevo_products(world)
    for pid, product in after.items():
        if pid in changed:
            assert product["price"] == changed[pid]
        else:
            assert product["modified_ms"] == before[pid]["modified_ms"], pid  # untouched
    assert world.violations() == []


def test_a_removed_item_is_marked_deleted_and_comes_back_when_added_again(
    world: Sandbox, make_catalog_connector: Callable[..., BrazeConnector], clock: FakeClock
) -> None:
    connector = make_catalog_connector(world)
    connector.sync(resources=["catalogs"])
    gone = catalog_items(world, "products")[6]
    clock.sleep(5)
    delete_item(world, "products", gone["id"])

    result = catalog_result(connector.sync(resources=["catalogs"]))
    assert result["updated"] == 1 and result["created"] == 0
    assert any("marked 1 product(s) deleted" in note for note in result["notes"])
    product = brevo_products(world)[gone["id"]]
    assert product["isDeleted"] is True and product["deletedAt"].endswith("Z")
    assert sum(1 for p in brevo_products(world).values() if p.get("isDeleted")) == 1
    assert catalog_counts(connector.state)["products"] == 119
    # The catalog did not change while it was read: no item had to be confirmed one by one.
    assert world.request_counts().get(ITEM, 0) == 0

    again = catalog_result(connector.sync(resources=["catalogs"]))
    assert again["created"] + again["updated"] == 0

    upsert_items(world, "products", [gone])
    back = catalog_result(connector.sync(resources=["catalogs"]))
    assert back["created"] + back["updated"] == 1
    assert brevo_products(world)[gone["id"]]["isDeleted"] is False
    assert catalog_counts(connector.state)["products"] == 120
    assert world.violations() == []


def test_full_sync_writes_every_item_again(
    world: Sandbox, make_catalog_connector: Callable[..., BrazeConnector]
) -> None:
    connector = make_catalog_connector(world, {"stores": {}})
    connector.sync(resources=["catalogs"])
    result = catalog_result(connector.sync(type="full", resources=["catalogs"]))
    assert result["updated"] == 30 and result["unchanged"] == 0
    assert world.violations() == []


# ------------------------------------------------------------------ limits
def test_the_catalog_limiter_never_exceeds_its_bucket(
    world: Sandbox, make_catalog_connector: Callable[..., BrazeConnector], clock: FakeClock
) -> None:
    upsert_items(world, "products", more_products(121, 2_630))  # 2,750 items: 55 pages at 50 per page
    connector = make_catalog_connector(world, {"products": {}})
    started = clock.time()
    result = catalog_result(connector.sync(resources=["catalogs"]))

    assert result["created"] == 2_750 and result["failed"] == 0
    counts = world.request_counts()
    assert counts[PAGES] == 55
    assert counts[PAGES] + counts[LISTING] > 50  # more than one bucket's worth of catalog calls
    assert clock.time() - started >= 60.0  # so the limiter had to hold calls back for a window
    assert world.limiter.throttled == 0  # and held them back before the server had to refuse one
    assert world.violations() == []
    assert len(brevo_products(world)) == 2_750


# ------------------------------------------------------------------ interruption and resume
def test_an_interrupted_pass_resumes_at_its_saved_page(
    world: Sandbox, make_catalog_connector: Callable[..., BrazeConnector]
) -> None:
    stopper = StopAfterCommits(1)
    connector = make_catalog_connector(world, {"products": {}}, progress=stopper)
    with pytest.raises(Interrupted):
        connector.sync(resources=["catalogs"])
    assert world.request_counts()[PAGES] == 2  # the first batch filled up on page 2, then the stop
    assert len(brevo_products(world)) == 100
    saved = connector.status()["cursors"]["catalog:products/braze_to_brevo"]
    assert saved["phase"] == "reading" and saved["pages"] == 2 and saved["page_cursor"]
    assert connector.state.last_run(kind="sync").status == "interrupted"

    stopper.commits = 10**9  # no stop this time
    connector.stop.clear()
    resumed = catalog_result(connector.sync(resources=["catalogs"]))
    assert world.request_counts()[PAGES] == 3  # only the page left
    assert resumed["read"] == 20 and resumed["created"] == 20
    assert any("resumed the pass" in note for note in resumed["notes"])
    assert set(brevo_products(world)) == set(expected_products(world, "products"))
    assert catalog_counts(connector.state) == {"products": 120}
    assert world.violations() == []


def test_items_shifted_past_the_reader_are_confirmed_not_deleted(
    world: Sandbox, make_catalog_connector: Callable[..., BrazeConnector], clock: FakeClock
) -> None:
    connector = make_catalog_connector(world, {"products": {}})
    connector.sync(resources=["catalogs"])
    stopper = StopAfterCommits(1)
    interrupted = make_catalog_connector(world, {"products": {}}, progress=stopper)
    with pytest.raises(Interrupted):
        interrupted.sync(resources=["catalogs"])  # page 1 read and saved, nothing to write
    interrupted.close()

    items = catalog_items(world, "products")
    read_already, shifted, not_read_yet = items[2]["id"], items[50]["id"], items[110]["id"]
    clock.sleep(5)
    # Braze cursors are offsets: removing an item of page 1 moves the first item of page 2 onto
    # page 1, which this pass has already read, so the pass never sees that item.
    delete_item(world, "products", read_already)
    delete_item(world, "products", not_read_yet)
    result = catalog_result(connector.sync(resources=["catalogs"]))

    assert any("changed while it was read" in note for note in result["notes"])
    assert world.request_counts()[ITEM] == 2  # the two items the pass missed, confirmed one by one
    products = brevo_products(world)
    assert products[not_read_yet]["isDeleted"] is True
    assert products[shifted]["isDeleted"] is False
    assert any("1 item(s) missed by the read are still in Braze" in note for note in result["notes"])
    # Seen before it was removed, so this pass cannot know; the next pass, reading it all, does.
    assert products[read_already]["isDeleted"] is False
    settled = catalog_result(connector.sync(resources=["catalogs"]))
    assert settled["updated"] == 1 and settled["created"] == 0 and settled["unchanged"] == 118
    assert brevo_products(world)[read_already]["isDeleted"] is True
    assert world.request_counts()[ITEM] == 2  # the catalog did not change during that pass
    assert catalog_counts(connector.state) == {"products": 118}
    assert world.violations() == []


def test_sigkill_mid_pass_then_resume_gives_the_clean_end_state(
    make_world: Callable[..., Sandbox], tmp_path: Path
) -> None:
    extra = more_products(121, 380)  # 500 items: 10 pages
    clean = make_world(users=50, contacts=10, seed=4)
    upsert_items(clean, "products", extra)
    reference = BrazeConnector(
        catalog_config(clean, tmp_path / "clean", {"products": {}}), env=env_for(clean), log_stream=io.StringIO()
    )
    with reference:
        reference.sync(resources=["catalogs"])

    # Slow page reads a little so the kill lands in the middle of the pass.
    world = make_world(users=50, contacts=10, seed=4, faults="braze:/catalogs:latency=60")
    upsert_items(world, "products", extra)
    state_dir = tmp_path / "killed"
    state_dir.mkdir()
    config = state_dir / "tajo.yaml"
    config.write_text(yaml.safe_dump(catalog_config(world, state_dir, {"products": {}})), encoding="utf-8")

    process = sync_process(config, world, resources="catalogs")
    wait_for(lambda: world.request_counts().get(PAGES, 0) >= 5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    killed_at = time.monotonic()
    read_before_kill = world.request_counts()[PAGES]
    assert read_before_kill < 10, "the pass finished before the kill"

    # A new process cannot know what the killed one sent in its last second, and Brevo's product
    # bucket allows 2 calls per second: a supervisor restarts a killed run later than that.
    wait_for(lambda: time.monotonic() - killed_at > 1.1)
    resumed = sync_process(config, world, resources="catalogs")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    result = catalog_result(json.loads(out))
    assert any("resumed the pass" in note for note in result["notes"])
    # Resuming re-reads at most the pages read after the last saved cursor, never the whole catalog.
    assert world.request_counts()[PAGES] - read_before_kill <= 10 - read_before_kill + COMMIT_EVERY_PAGES
    assert world.request_counts()[PAGES] < 20
    assert without_times(brevo_products(world)) == without_times(brevo_products(clean))
    assert world.violations() == [] and clean.violations() == []


# ------------------------------------------------------------------ dry run
def test_dry_run_shows_creates_updates_deletes_and_writes_nothing(
    world: Sandbox, make_catalog_connector: Callable[..., BrazeConnector], clock: FakeClock
) -> None:
    connector = make_catalog_connector(world)
    connector.sync(resources=["catalogs"])
    clock.sleep(5)
    upsert_items(world, "products", [{"id": "prod-0010", "price": 1.0}, {"id": "prod-0020", "name": "Renamed"}])
    upsert_items(world, "stores", [{"id": "store-99", "name": "Tajo Pop-up", "city": "Porto"}])
    delete_item(world, "products", "prod-0030")
    products_before, cursors_before = brevo_products(world), connector.status()["cursors"]
    upserts = world.request_counts()[UPSERT]

    summary = connector.sync(resources=["catalogs"], dry_run=True)
    result = catalog_result(summary)
    plan = result["plan"]
    assert (plan["create"], plan["update"], plan["delete"], plan["unchanged"]) == (1, 2, 1, 147)
    assert plan["catalogs"]["stores"]["create"] == 1 and plan["catalogs"]["products"]["delete"] == 1
    assert plan["brevo_calls"]["POST /products/batch"] == 3  # one batch each, and one for the deletion
    by_id = {s["id"]: s for s in plan["samples"]}
    assert by_id["prod-0010"]["action"] == "update"
    assert by_id["prod-0010"]["changes"] == {
        "price": {"from": products_before["prod-0010"]["price"], "to": 1.0}
    }
    assert by_id["prod-0030"]["action"] == "delete"
    assert by_id["prod-0030"]["changes"]["isDeleted"] == {"from": False, "to": True}
    assert by_id["store-99"]["action"] == "create" and by_id["store-99"]["changes"]["name"]["to"] == "Tajo Pop-up"

    assert world.request_counts()[UPSERT] == upserts
    assert brevo_products(world) == products_before
    assert connector.status()["cursors"] == cursors_before
    assert catalog_counts(connector.state) == {"products": 120, "stores": 30}

    real = catalog_result(connector.sync(resources=["catalogs"]))
    assert (real["created"], real["updated"]) == (1, 3)  # the two updates and the deletion
    assert world.violations() == []


# ------------------------------------------------------------------ bad records and bad config
def test_bad_items_are_dead_lettered_and_the_run_goes_on(
    world: Sandbox, make_catalog_connector: Callable[..., BrazeConnector]
) -> None:
    upsert_items(world, "products", [{"id": "prod-0005", "price": "free"}, {"id": "prod-0006", "name": ""}])
    connector = make_catalog_connector(world, {"products": {}})
    summary = connector.sync(resources=["catalogs"])
    result = catalog_result(summary)
    assert result["failed"] == 2 and result["created"] == 118
    assert summary["status"] == "partial"
    letters = {d["key"]: d for d in connector.dead_letters(resource="catalogs")}
    assert letters["products:prod-0005"]["reason"] == 'field `price` holds "free", not a number'
    assert "no product name" in letters["products:prod-0006"]["reason"]
    assert letters["products:prod-0005"]["record"]["item"]["price"] == "free"
    assert "prod-0005" not in brevo_products(world)

    upsert_items(world, "products", [{"id": "prod-0005", "price": 9.5}, {"id": "prod-0006", "name": "Mended"}])
    fixed = catalog_result(connector.sync(resources=["catalogs"]))
    assert fixed["created"] == 2 and fixed["failed"] == 0
    assert connector.dead_letters(resource="catalogs") == []
    assert brevo_products(world)["prod-0005"]["price"] == 9.5
    assert world.violations() == []


def test_configured_field_options_shape_the_products(
    world: Sandbox, make_catalog_connector: Callable[..., BrazeConnector]
) -> None:
    options = {"id_prefix": "store:", "categories_field": "country", "meta_fields": ["city"]}
    connector = make_catalog_connector(world, {"stores": options})
    connector.sync(resources=["catalogs"])
    held = brevo_products(world)
    expected = expected_products(world, "stores", options)
    assert set(held) == set(expected) and all(pid.startswith("store:") for pid in held)
    some = next(iter(expected))
    assert held[some]["categories"] == expected[some]["categories"]
    assert set(held[some]["metaInfo"]) == {"city"}
    assert world.violations() == []


def test_unknown_catalogs_and_misspelt_options_are_all_reported(
    world: Sandbox, make_catalog_connector: Callable[..., BrazeConnector]
) -> None:
    connector = make_catalog_connector(world, {"prodcts": {}, "stores": {"nmae_field": "x", "url_field": "web"}})
    with pytest.raises(ConfigError) as caught:
        connector.sync(resources=["catalogs"])
    paths = {p.path: p for p in caught.value.problems}
    assert set(paths) == {
        "connectors.braze.catalogs.prodcts",
        "connectors.braze.catalogs.stores.nmae_field",
        "connectors.braze.catalogs.stores.url_field",
    }
    assert "products" in paths["connectors.braze.catalogs.prodcts"].fix
    assert paths["connectors.braze.catalogs.stores.nmae_field"].fix == "did you mean `name_field`?"

    nothing = make_catalog_connector(world, {})
    with pytest.raises(UsageError, match="No Braze catalog is configured"):
        nothing.sync(resources=["catalogs"])
    assert world.request_counts().get(UPSERT, 0) == 0
