"""Braze catalogs -> Brevo products, incrementally.

One pass per configured catalog: read its items page by page (the cursor comes from the `Link`
header) -> map each item to a product -> compare with the fingerprint of what was last written
-> upsert the changed products in batches of at most 100 -> store fingerprints, the ids seen and
the page cursor together, once Brevo acknowledged the batch. A pass survives a kill: the next
run resumes at the saved page. When the last page is read, products known from earlier runs
whose items were not seen are re-sent with `isDeleted: true`, and forgotten.

Braze's item cursors are offsets, so an item added or removed while a pass reads can shift
another item past the reader. Deletions are therefore applied only when the catalog did not
change during the pass (same `updated_at` and item count as when it started); otherwise each
missing item is confirmed with GET /catalogs/{name}/items/{id} first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from ..batching import chunked
from ..catalog_mapping import (
    CatalogFieldMap,
    OptionProblem,
    ProductPayload,
    SentProduct,
    deleted_at,
    deletion_body,
    item_key,
    item_to_product,
    option_problems,
    product_changes,
    product_id_of,
    resolve_field_map,
)
from ..clients.braze import CatalogInfo
from ..clients.brevo import PRODUCTS_BATCH_MAX
from ..errors import ConfigError, PermanentApiError, PermissionDenied, Problem, UsageError
from ..models import Rejection, ResourceResult
from ..state import StateStore
from ..yamlpos import render_path
from .context import SyncContext

RESOURCE = "catalogs"
DIRECTION = "braze_to_brevo"
SYNCED_CATALOGS = "catalogs:synced"  # names of the catalogs that have products in Brevo
# How many pages may be read before their cursor is saved when changes are few: a kill re-reads
# at most this many pages (about 12 s of the 50-per-minute catalog bucket).
COMMIT_EVERY_PAGES = 10
PLAN_SAMPLE = 5
DEAD_LETTER_RECORD_MAX = 4000  # characters of an item kept in its dead letter
# Brevo's answers for a payload it will not take: the batch is split to find the products at fault.
REFUSED_STATUSES = (400, 422)


def fingerprints_namespace(catalog: str) -> str:
    """Product id -> what was last written for it (see `SentProduct`)."""
    return f"catalog:{catalog}"


def seen_namespace(catalog: str) -> str:
    """Product ids seen by the pass under way: what is known and not in here is gone."""
    return f"catalog_seen:{catalog}"


def cursor_resource(catalog: str) -> str:
    return f"catalog:{catalog}"


def catalog_counts(state: StateStore) -> dict[str, int]:
    """Products currently synced to Brevo per catalog (deleted ones are not counted), for status()."""
    names = state.get_value(SYNCED_CATALOGS) or []
    return {str(name): state.count_fingerprints(fingerprints_namespace(str(name))) for name in names}


# ------------------------------------------------------------------ the pass, as saved in state
@dataclass
class CatalogPass:
    """One read of a whole catalog, saved as its cursor so a killed run resumes where it was."""

    phase: str  # reading | deleting | idle (no pass under way)
    page_cursor: str | None  # the next page to read; None with `reading` means the first page
    pages: int  # pages read and committed in this pass
    items: int  # items on those pages
    started_at: str
    catalog_updated_at: str | None  # the catalog's `updated_at` when the pass began
    full: bool  # every item is written, changed or not
    last_complete_at: str | None = None

    @classmethod
    def load(cls, value: Mapping[str, Any] | None) -> CatalogPass | None:
        if not value or value.get("phase") not in ("reading", "deleting", "idle"):
            return None
        return cls(
            phase=str(value["phase"]),
            page_cursor=value.get("page_cursor") or None,
            pages=int(value.get("pages") or 0),
            items=int(value.get("items") or 0),
            started_at=str(value.get("started_at") or ""),
            catalog_updated_at=value.get("catalog_updated_at"),
            full=bool(value.get("full")),
            last_complete_at=value.get("last_complete_at"),
        )

    @classmethod
    def fresh(cls, info: CatalogInfo, *, full: bool, now: str, last_complete_at: str | None) -> CatalogPass:
        return cls("reading", None, 0, 0, now, info.updated_at, full, last_complete_at)

    @property
    def under_way(self) -> bool:
        return self.phase in ("reading", "deleting")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ dry-run plan
@dataclass
class CatalogPlan:
    """What a dry run would do, per catalog, with a few samples showing field-level changes."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    product_calls: int = 0
    rejections: list[dict[str, str]] = field(default_factory=list)

    def bump(self, catalog: str, action: str, by: int = 1) -> None:
        row = self.counts.setdefault(
            catalog, {"create": 0, "update": 0, "delete": 0, "unchanged": 0, "reject": 0}
        )
        row[action] += by

    def as_dict(self) -> dict[str, Any]:
        total = {
            action: sum(row[action] for row in self.counts.values())
            for action in ("create", "update", "delete", "unchanged", "reject")
        }
        return {
            **total,
            "catalogs": self.counts,
            "brevo_calls": {"POST /products/batch": self.product_calls},
            "samples": self.samples,
            "rejection_samples": self.rejections,
        }


@dataclass(frozen=True, slots=True)
class PendingProduct:
    payload: ProductPayload
    sent: SentProduct
    created: bool  # no fingerprint: a product this connector never wrote


# ------------------------------------------------------------------ one catalog
class CatalogSync:
    def __init__(
        self,
        ctx: SyncContext,
        info: CatalogInfo,
        fields: CatalogFieldMap,
        result: ResourceResult,
        plan: CatalogPlan | None,
    ) -> None:
        self.ctx = ctx
        self.name = info.name
        self.info = info
        self.fields = fields
        self.result = result
        self.plan = plan
        self.max_batch = min(ctx.batch_size or PRODUCTS_BATCH_MAX, PRODUCTS_BATCH_MAX)
        self.fingerprints = fingerprints_namespace(self.name)
        self.seen = seen_namespace(self.name)
        # A dry run writes no state, so the ids it saw are kept in memory.
        self.seen_in_memory: set[str] = set()
        self.pending: dict[str, PendingProduct] = {}
        self.seen_buffer: list[str] = []
        self.valid_keys: list[str] = []
        self.dead: list[tuple[str, str, str, dict[str, Any]]] = []
        self.has_dead_letters = False if ctx.dry_run else ctx.state.count_dead_letters(RESOURCE) > 0
        self.pages_this_run = 0
        self.pages_uncommitted = 0
        self.deleted = 0
        self.kept = 0
        self.remembered = False

    # -- the pass
    def run(self) -> None:
        ctx = self.ctx
        saved = CatalogPass.load(ctx.state.get_cursor(cursor_resource(self.name), DIRECTION))
        if ctx.dry_run:
            # A dry run plans a whole pass from the first page, whatever a real one left behind.
            current = self._fresh(saved)
        elif saved is not None and saved.under_way and (saved.full or not ctx.full):
            current = saved
            where = f"page {saved.pages + 1}" if saved.phase == "reading" else "the deletions"
            self.result.notes.append(f"catalog '{self.name}': resumed the pass started {saved.started_at} at {where}")
        else:
            current = self._fresh(saved)
            self._clear_seen()
        if current.phase == "reading":
            current = self._read(current)
        self._delete_gone(current)
        self._finish(current)

    def _fresh(self, saved: CatalogPass | None) -> CatalogPass:
        return CatalogPass.fresh(
            self.info, full=self.ctx.full, now=self._now_iso(),
            last_complete_at=saved.last_complete_at if saved else None,
        )

    def _read(self, current: CatalogPass) -> CatalogPass:
        try:
            self._read_pages(current)
        except PermanentApiError as exc:
            # A saved cursor Braze no longer accepts: read the catalog again from the start.
            if not (current.page_cursor and self.pages_this_run == 0 and "invalid-cursor" in exc.body_excerpt):
                raise
            self.result.notes.append(
                f"catalog '{self.name}': Braze refused the saved page cursor; the pass starts again"
            )
            self._clear_seen()
            current = self._fresh(current)
            self._read_pages(current)
        return current

    def _read_pages(self, current: CatalogPass) -> None:
        for items, next_cursor in self.ctx.braze.iter_catalog_items(self.name, current.page_cursor):
            self.pages_this_run += 1
            self.pages_uncommitted += 1
            self._take_page(items, current)
            current.pages += 1
            current.items += len(items)
            current.page_cursor = next_cursor
            if next_cursor is None:
                current.phase = "deleting"
            if (
                not self.pending
                or len(self.pending) >= self.max_batch
                or self.pages_uncommitted >= COMMIT_EVERY_PAGES
                or next_cursor is None
            ):
                self._commit(current)
            if next_cursor is None:
                return
        # The client ends a read whose cursor repeats (a server bug) without a last page.
        current.phase = "deleting"
        self._commit(current)

    def _take_page(self, items: Sequence[Mapping[str, Any]], current: CatalogPass) -> None:
        mapped: list[ProductPayload] = []
        for item in items:
            self.result.read += 1
            out = item_to_product(item, self.fields)
            if isinstance(out, Rejection):
                # A bad item is still in the catalog: its product must not be marked deleted.
                product_id = product_id_of(item, self.fields)
                if product_id is not None:
                    self._saw(product_id)
                self._reject(out, item)
                continue
            self._saw(out.id)
            self.valid_keys.append(item_key(self.name, item))
            mapped.append(out)
        if not mapped:
            return
        before = self.ctx.state.get_fingerprints(self.fingerprints, [p.id for p in mapped])
        for payload in mapped:
            sent = SentProduct.of(payload)
            previous = before.get(payload.id)
            if previous is not None and SentProduct.decode(previous).digest == sent.digest and not current.full:
                self.result.unchanged += 1
                if self.plan is not None:
                    self.plan.bump(self.name, "unchanged")
                continue
            self.pending[payload.id] = PendingProduct(payload, sent, created=previous is None)

    def _saw(self, product_id: str) -> None:
        if self.ctx.dry_run:
            self.seen_in_memory.add(product_id)
        else:
            self.seen_buffer.append(product_id)

    def _reject(self, rejection: Rejection, item: Mapping[str, Any]) -> None:
        self.result.failed += 1
        if self.plan is not None:
            self.plan.bump(self.name, "reject")
            if len(self.plan.rejections) < PLAN_SAMPLE * 2:
                self.plan.rejections.append({"key": rejection.key, "reason": rejection.reason})
            return
        record: dict[str, Any] = {"catalog": self.name, "item": dict(item)}
        if len(orjson.dumps(record, default=str)) > DEAD_LETTER_RECORD_MAX:
            record = {"catalog": self.name, "item": {"id": item.get("id")}, "truncated": True}
        if rejection.field:
            record["_field"] = rejection.field
        self.dead.append((RESOURCE, rejection.key, rejection.reason, record))

    # -- writing
    def _commit(self, current: CatalogPass) -> None:
        """Write the pending products, then save fingerprints, ids seen and the cursor together."""
        ctx = self.ctx
        pending = list(self.pending.values())
        if ctx.dry_run:
            self._plan_writes(pending)
        else:
            accepted: list[PendingProduct] = []
            for start in range(0, len(pending), self.max_batch):
                accepted.extend(self._send(pending[start : start + self.max_batch]))
            with ctx.state.transaction():
                ctx.state.put_fingerprints(self.fingerprints, ((p.payload.id, p.sent.encode()) for p in accepted))
                if self.has_dead_letters and self.valid_keys:
                    ctx.state.resolve_dead_letters(RESOURCE, self.valid_keys)
                if self.dead:
                    ctx.state.add_dead_letters(self.dead, run_id=ctx.run_id)
                    self.has_dead_letters = True
                ctx.state.add_members(self.seen, self.seen_buffer)
                ctx.state.set_cursor(cursor_resource(self.name), DIRECTION, current.as_dict())
                self._remember_catalog()
        self.pending = {}
        self.seen_buffer, self.valid_keys, self.dead = [], [], []
        self.pages_uncommitted = 0
        ctx.progress.update(
            RESOURCE,
            read=self.result.read,
            written=self.result.created + self.result.updated,
            unchanged=self.result.unchanged,
            rejected=self.result.failed,
        )
        ctx.check_stop()

    def _send(self, batch: Sequence[PendingProduct]) -> list[PendingProduct]:
        """Upsert one batch; a batch Brevo refuses is split until the refused products are found."""
        if not batch:
            return []
        try:
            answer = self.ctx.brevo.upsert_products([p.payload.body for p in batch])
        except PermanentApiError as exc:
            if exc.status not in REFUSED_STATUSES:
                raise
            if len(batch) == 1:
                only = batch[0]
                self.result.failed += 1
                self.dead.append((
                    RESOURCE,
                    f"{self.name}:{only.payload.item_id}",
                    f"Brevo refused the product: {exc.body_excerpt or exc.user_message}",
                    {"catalog": self.name, "product": dict(only.payload.body)},
                ))
                return []
            middle = len(batch) // 2
            return self._send(batch[:middle]) + self._send(batch[middle:])
        created = answer.get("createdCount")
        updated = answer.get("updatedCount")
        if isinstance(created, int) and isinstance(updated, int) and created + updated == len(batch):
            self.result.created += created
            self.result.updated += updated
        else:
            fresh = sum(1 for p in batch if p.created)
            self.result.created += fresh
            self.result.updated += len(batch) - fresh
        return list(batch)

    def _plan_writes(self, pending: Sequence[PendingProduct]) -> None:
        assert self.plan is not None
        for start in range(0, len(pending), self.max_batch):
            self.plan.product_calls += 1
            for p in pending[start : start + self.max_batch]:
                action = "create" if p.created else "update"
                self.plan.bump(self.name, action)
                if action == "create":
                    self.result.created += 1
                else:
                    self.result.updated += 1
                if len(self.plan.samples) < PLAN_SAMPLE:
                    self.plan.samples.append(
                        {"catalog": self.name, "id": p.payload.id, "action": action, "body": dict(p.payload.body)}
                    )

    # -- deletions
    def _gone(self) -> Iterator[str]:
        known = self.ctx.state.iter_fingerprint_keys(self.fingerprints)
        if self.ctx.dry_run:
            return (key for key in known if key not in self.seen_in_memory)
        return missing_from(known, self.ctx.state.iter_members(self.seen))

    def _delete_gone(self, current: CatalogPass) -> None:
        ctx = self.ctx
        confirm: bool | None = None
        at = deleted_at(ctx.clock())
        for chunk in chunked(self._gone(), self.max_batch):
            known = ctx.state.get_fingerprints(self.fingerprints, chunk)
            sent = {pid: SentProduct.decode(known[pid]) if pid in known else None for pid in chunk}
            if confirm is None:
                # One listing per pass, and only when something is missing.
                confirm = not self._catalog_unchanged(current)
                if confirm:
                    self.result.notes.append(
                        f"catalog '{self.name}' changed while it was read: each missing item is confirmed "
                        "with Braze before its product is marked deleted"
                    )
            gone: list[str] | None = chunk
            if confirm:
                gone = self._confirmed_gone(chunk, sent)
                if gone is None:
                    return
            if not gone:
                continue
            bodies = [deletion_body(pid, sent[pid], at) for pid in gone]
            if ctx.dry_run:
                self._plan_deletions(bodies)
            else:
                self._send_deletions(bodies, sent)

    def _catalog_unchanged(self, current: CatalogPass) -> bool:
        now = {c.name: c for c in self.ctx.braze.list_catalogs()}.get(self.name)
        return (
            now is not None
            and now.updated_at == current.catalog_updated_at
            and now.num_items == current.items
        )

    def _confirmed_gone(self, candidates: list[str], sent: Mapping[str, SentProduct | None]) -> list[str] | None:
        """The candidates Braze confirms are gone; None when it may not be asked (deletions wait)."""
        gone: list[str] = []
        for pid in candidates:
            known = sent.get(pid)
            try:
                item = self.ctx.braze.get_catalog_item(self.name, known.item_id if known else pid)
            except PermissionDenied:
                self.result.notes.append(
                    f"catalog '{self.name}': deletions wait for a pass during which the catalog does not "
                    "change, because the Braze key may not read single items (catalogs.get_item)"
                )
                return None
            if item is None:
                gone.append(pid)
            else:
                self.kept += 1  # moved past the reader by a concurrent change; the next pass compares it
        return gone

    def _send_deletions(self, bodies: list[dict[str, Any]], sent: Mapping[str, SentProduct | None]) -> None:
        ctx = self.ctx
        try:
            ctx.brevo.upsert_products(bodies)
            done = [str(b["id"]) for b in bodies]
        except PermanentApiError as exc:
            if exc.status not in REFUSED_STATUSES:
                raise
            done = self._send_deletions_one_by_one(bodies, sent)
        keys = [f"{self.name}:{known.item_id}" for pid in done if (known := sent.get(pid)) is not None]
        with ctx.state.transaction():
            ctx.state.delete_fingerprints(self.fingerprints, done)
            if self.has_dead_letters:
                ctx.state.resolve_dead_letters(RESOURCE, keys)
        self.result.updated += len(done)
        self.deleted += len(done)
        ctx.check_stop()

    def _send_deletions_one_by_one(
        self, bodies: list[dict[str, Any]], sent: Mapping[str, SentProduct | None]
    ) -> list[str]:
        done: list[str] = []
        for body in bodies:
            pid = str(body["id"])
            try:
                self.ctx.brevo.upsert_products([body])
                done.append(pid)
            except PermanentApiError as exc:
                if exc.status not in REFUSED_STATUSES:
                    raise
                known = sent.get(pid)
                self.result.failed += 1
                self.has_dead_letters = True
                self.ctx.state.add_dead_letter(
                    RESOURCE,
                    f"{self.name}:{known.item_id if known else pid}",
                    f"Brevo refused to mark the product deleted: {exc.body_excerpt or exc.user_message}",
                    {"catalog": self.name, "product": body},
                    run_id=self.ctx.run_id,
                )
        return done

    def _plan_deletions(self, bodies: list[dict[str, Any]]) -> None:
        assert self.plan is not None
        self.plan.product_calls += 1
        self.plan.bump(self.name, "delete", len(bodies))
        self.result.updated += len(bodies)
        self.deleted += len(bodies)
        for body in bodies:
            if len(self.plan.samples) < PLAN_SAMPLE * 2:
                self.plan.samples.append({"catalog": self.name, "id": body["id"], "action": "delete", "body": body})

    # -- end of the pass
    def _finish(self, current: CatalogPass) -> None:
        ctx = self.ctx
        if self.kept:
            self.result.notes.append(
                f"catalog '{self.name}': {self.kept} item(s) missed by the read are still in Braze and kept"
            )
        if self.deleted:
            verb = "would mark" if ctx.dry_run else "marked"
            self.result.notes.append(
                f"catalog '{self.name}': {verb} {self.deleted} product(s) deleted in Brevo (gone from the catalog)"
            )
        if self.fields.meta_dropped:
            self.result.notes.append(
                f"catalog '{self.name}': metaInfo holds at most 20 fields; left out: "
                f"{', '.join(self.fields.meta_dropped)} (set meta_fields to choose)"
            )
        if ctx.dry_run:
            return
        idle = CatalogPass(
            phase="idle", page_cursor=None, pages=current.pages, items=current.items,
            started_at=current.started_at, catalog_updated_at=current.catalog_updated_at,
            full=current.full, last_complete_at=self._now_iso(),
        )
        with ctx.state.transaction():
            ctx.state.remove_members(self.seen, ctx.state.iter_members(self.seen))
            ctx.state.set_cursor(cursor_resource(self.name), DIRECTION, idle.as_dict())
            self._remember_catalog()

    def _clear_seen(self) -> None:
        state = self.ctx.state
        if state.count_members(self.seen):
            state.remove_members(self.seen, state.iter_members(self.seen))

    def _remember_catalog(self) -> None:
        if self.remembered:
            return
        names = list(self.ctx.state.get_value(SYNCED_CATALOGS) or [])
        if self.name not in names:
            self.ctx.state.set_value(SYNCED_CATALOGS, [*names, self.name])
        self.remembered = True

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self.ctx.clock(), UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------ streams and config problems
def missing_from(known: Iterable[str], seen: Iterable[str]) -> Iterator[str]:
    """Keys of `known` not in `seen`; both sorted ascending (as the state store streams them)."""
    seen_iter = iter(seen)
    current = next(seen_iter, None)
    for key in known:
        while current is not None and current < key:
            current = next(seen_iter, None)
        if current != key:
            yield key




def _config_problems(ctx: SyncContext, problems: Iterable[tuple[str, OptionProblem]]) -> list[Problem]:
    return [
        Problem(
            ctx.config.source,
            None,
            render_path(("connectors", "braze", "catalogs", catalog, *([p.path] if p.path else []))),
            p.message,
            p.fix,
        )
        for catalog, p in problems
    ]


def field_maps(ctx: SyncContext, listing: Mapping[str, CatalogInfo]) -> dict[str, CatalogFieldMap]:
    """The field map of every configured catalog; every problem at once, as one ConfigError."""
    problems: list[tuple[str, OptionProblem]] = []
    maps: dict[str, CatalogFieldMap] = {}
    for name, options in ctx.config.catalogs.items():
        info = listing.get(name)
        if info is None:
            problems.extend((name, p) for p in option_problems(options))
            available = ", ".join(sorted(listing)) or "none"
            problems.append((name, OptionProblem(
                "", f"Braze has no catalog named '{name}'",
                f"use one of the workspace's catalogs ({available}); names are case-sensitive",
            )))
            continue
        fields, found = resolve_field_map(name, options, [f for f, _ in info.fields])
        problems.extend((name, p) for p in found)
        maps[name] = fields
    if problems:
        raise ConfigError(_config_problems(ctx, problems))
    return maps


def run(ctx: SyncContext) -> ResourceResult:
    started = time.monotonic()
    result = ResourceResult(RESOURCE, direction=DIRECTION)
    if not ctx.config.catalogs:
        raise UsageError(
            "No Braze catalog is configured for the catalogs sync.",
            fix="Name the catalogs to sync under connectors.braze.catalogs, e.g. `catalogs: {products: {}}` "
            "(the field options are optional: the catalog's own field names are used by default).",
        )
    listing = {info.name: info for info in ctx.braze.list_catalogs()}
    maps = field_maps(ctx, listing)
    plan = CatalogPlan() if ctx.dry_run else None
    if ctx.since is not None:
        result.notes.append("--since does not apply to catalogs (items carry no change time); "
                            "fingerprints keep the sync incremental")
    for name, fields in maps.items():
        ctx.check_stop()
        CatalogSync(ctx, listing[name], fields, result, plan).run()
    if plan is not None:
        _add_sample_diffs(ctx, plan)
        result.plan = plan.as_dict()
    result.duration_s = time.monotonic() - started
    return result


def _add_sample_diffs(ctx: SyncContext, plan: CatalogPlan) -> None:
    """Field-level changes of the sampled products against what Brevo holds now (a read)."""
    ids = [str(s["id"]) for s in plan.samples]
    current = ctx.brevo.get_products(ids) if ids else {}
    for sample in plan.samples:
        body = sample.pop("body")
        sample["changes"] = product_changes(current.get(str(sample["id"])), body)
