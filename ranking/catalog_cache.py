"""Per-process caches of the catalog rows that every search reads.

Why: a hybrid search reads about 150 candidate product rows (ranker features, then the result
page), checks the merchant and names the facet categories. Through the ORM that cost about
6 ms of a 15 ms request, mostly query compilation and row conversion rather than SQLite,
while the rows change far less often than they are read.

Freshness:

* in the process that changes products, ``catalog.signals.products_changed`` evicts them at
  once (the console, feed imports run eagerly, tests);
* every other process (the other gunicorn workers, a Celery worker's import) sees a change
  within ``SEARCH_CATALOG_CACHE_SECONDS`` (default 5 s; 0 turns the caches off), the same
  kind of refresh interval a search engine's index has. The search indexes drop a deleted or
  deactivated product on their own, so a stale row can at worst show an old title or price
  for those seconds;
* merchants and category names are small tables read whole and re-read at once when asked
  for a slug or path they lack, so a new merchant or category is never missed; only renames
  and deletions wait for the interval.

Memory is bounded by ``MAX_ENTRIES`` products; past it the cache starts over (a rare, cheap
event compared to an LRU's bookkeeping on every read).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from catalog.models import Category, Merchant
from learners import conf
from ranking.features import ProductInfo, load_products

#: Rows kept per process (a ProductInfo is a few hundred bytes).
MAX_ENTRIES = 200_000


def refresh_seconds() -> float:
    return conf.get("SEARCH_CATALOG_CACHE_SECONDS", 5.0)


class ProductCache:
    def __init__(self) -> None:
        self._rows: dict[int, tuple[float, ProductInfo]] = {}

    def get_many(self, product_ids: Iterable[int]) -> dict[int, ProductInfo]:
        """Rows of the existing ``product_ids`` (deleted ones are absent), one query for the
        ids that are missing or older than the refresh interval."""
        ttl = refresh_seconds()
        ids = list(dict.fromkeys(product_ids))
        if ttl <= 0:
            return load_products(ids)
        now = time.monotonic()
        found: dict[int, ProductInfo] = {}
        stale: list[int] = []
        for pid in ids:
            entry = self._rows.get(pid)
            if entry is not None and now - entry[0] < ttl:
                found[pid] = entry[1]
            else:
                stale.append(pid)
        if stale:
            fresh = load_products(stale)
            if len(self._rows) + len(fresh) > MAX_ENTRIES:
                self._rows.clear()
            for pid in stale:
                self._rows.pop(pid, None)  # deleted since: forget it
            self._rows.update((pid, (now, info)) for pid, info in fresh.items())
            found.update(fresh)
        return found

    def evict(self, product_ids: Iterable[int]) -> None:
        for pid in product_ids:
            self._rows.pop(pid, None)

    def clear(self) -> None:
        self._rows.clear()


class Snapshot:
    """A small table read whole by ``load`` and kept for the refresh interval, re-read early
    when asked for a key it lacks."""

    def __init__(self, load: Callable[[], dict[str, str]]) -> None:
        self._load = load
        self._loaded_at = 0.0
        self._rows: dict[str, str] | None = None

    def rows(self, wanted: Iterable[str] = ()) -> dict[str, str]:
        now = time.monotonic()
        rows = self._rows
        if (
            rows is None
            or now - self._loaded_at >= refresh_seconds()
            or not all(key in rows for key in wanted)
        ):
            rows = self._rows = self._load()
            self._loaded_at = now
        return rows

    def clear(self) -> None:
        self._rows = None


class CatalogCache:
    """Products by id, merchant slugs, and category names per merchant."""

    def __init__(self) -> None:
        self.products = ProductCache()
        self._merchants = Snapshot(lambda: dict(Merchant.objects.values_list("slug", "name")))
        self._categories: dict[str | None, Snapshot] = {}

    def merchant_exists(self, slug: str) -> bool:
        return slug in self._merchants.rows([slug])

    def category_names(self, paths: Iterable[str], merchant: str | None) -> dict[str, str]:
        """``{path: full name}`` for the known ``paths`` (of ``merchant``, or of any)."""
        wanted = list(paths)
        snapshot = self._categories.get(merchant)
        if snapshot is None:
            snapshot = self._categories[merchant] = Snapshot(lambda: _category_names(merchant))
        rows = snapshot.rows(wanted)
        return {path: rows[path] for path in wanted if path in rows}

    def clear(self) -> None:
        self.products.clear()
        self._merchants.clear()
        self._categories.clear()


def _category_names(merchant: str | None) -> dict[str, str]:
    categories = Category.objects.all()
    if merchant:
        categories = categories.filter(merchant__slug=merchant)
    return dict(categories.values_list("path", "full_name"))


catalog = CatalogCache()


def on_products_changed(sender, merchant_id: int, product_ids: list[int], **kwargs) -> None:
    """Receiver of ``catalog.signals.products_changed``: this process reads them afresh."""
    catalog.products.evict(product_ids)
