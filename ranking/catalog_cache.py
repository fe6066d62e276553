"""Per-process caches of the catalog rows that every search reads.

Why: a hybrid search reads about 150 candidate product rows (ranker features, then the result
page), checks the merchant and names the facet categories. Through the ORM that cost about
6 ms of a 15 ms request, mostly query compilation and row conversion rather than SQLite,
while the rows change far less often than they are read.

Freshness:

* in the process that changes products, ``catalog.signals.products_changed`` evicts them at
  once (the console, feed imports run eagerly, tests);
* that receiver also bumps the catalog's generation marker (:mod:`ranking.generations`), and
  every other process on the host (the other gunicorn workers, a Celery worker's import) looks
  at the marker at most once a second (``CHECK_SECONDS``) and starts its caches over when it
  changed: an edit reaches every search worker within about a second;
* a change no signal announces (an SQL ``UPDATE``, a process on another host) is seen when the
  caches start over anyway, every ``SEARCH_CATALOG_CACHE_SECONDS`` (default 60 s; 0 turns the
  caches off). The search indexes drop a deleted or deactivated product on their own, so a
  stale row can at worst show an old title or price for that long;
* merchants and category names are small tables read whole and re-read at once when asked
  for a slug or path they lack, so a new merchant or category is never missed.

The caches start over *all at once* rather than expiring row by row: with a per-row age, rows
loaded at different moments expired at different moments, and under steady traffic nearly
every search found a few and paid a query for them (with a 5 s age, a profile of hybrid
searches showed 1.35 product queries per search and 12-14% of their time; README "Hybrid
retrieval").

Memory is bounded by ``MAX_ENTRIES`` products; past it the cache starts over (a rare, cheap
event compared to an LRU's bookkeeping on every read).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from catalog.models import Category, Merchant
from learners import conf
from ranking import generations
from ranking.features import ProductInfo, load_products

#: Rows kept per process (a ProductInfo is a few hundred bytes).
MAX_ENTRIES = 200_000
#: How often a process looks at the catalog's generation marker.
CHECK_SECONDS = 1.0


def refresh_seconds() -> float:
    return conf.get("SEARCH_CATALOG_CACHE_SECONDS", 60.0)


def generation_marker() -> Path:
    return generations.marker("generations", "catalog")


class ProductCache:
    def __init__(self) -> None:
        self._rows: dict[int, ProductInfo] = {}
        self._started: float | None = None  # when the first row since starting over came

    def get_many(self, product_ids: Iterable[int]) -> dict[int, ProductInfo]:
        """Rows of the existing ``product_ids`` (deleted ones are absent), one query for the
        ids not cached since the cache last started over."""
        ttl = refresh_seconds()
        ids = list(dict.fromkeys(product_ids))
        if ttl <= 0:
            return load_products(ids)
        now = time.monotonic()
        if self._started is not None and (
            now - self._started >= ttl or len(self._rows) > MAX_ENTRIES
        ):
            self.clear()
        if self._started is None:
            self._started = now
        found = {pid: self._rows[pid] for pid in ids if pid in self._rows}
        missing = [pid for pid in ids if pid not in found]
        if missing:
            fresh = load_products(missing)
            self._rows.update(fresh)
            found.update(fresh)
        return found

    def evict(self, product_ids: Iterable[int]) -> None:
        for pid in product_ids:
            self._rows.pop(pid, None)

    def clear(self) -> None:
        self._rows.clear()
        self._started = None


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
        self._watch: generations.Watch | None = None

    def product_rows(self, product_ids: Iterable[int]) -> dict[int, ProductInfo]:
        self._follow_changes()
        return self.products.get_many(product_ids)

    def merchant_exists(self, slug: str) -> bool:
        self._follow_changes()
        return slug in self._merchants.rows([slug])

    def category_names(self, paths: Iterable[str], merchant: str | None) -> dict[str, str]:
        """``{path: full name}`` for the known ``paths`` (of ``merchant``, or of any)."""
        self._follow_changes()
        wanted = list(paths)
        snapshot = self._categories.get(merchant)
        if snapshot is None:
            snapshot = self._categories[merchant] = Snapshot(lambda: _category_names(merchant))
        rows = snapshot.rows(wanted)
        return {path: rows[path] for path in wanted if path in rows}

    def _follow_changes(self) -> None:
        """Start over when another process announced a catalog change (module docstring)."""
        if self._watch is None:
            self._watch = generations.Watch(generation_marker(), CHECK_SECONDS)
        elif self._watch.changed():
            self._start_over()

    def _start_over(self) -> None:
        self.products.clear()
        self._merchants.clear()
        self._categories.clear()

    def clear(self) -> None:
        """Forget everything, the marker being watched included (its data directory may have
        changed: tests)."""
        self._start_over()
        self._watch = None


def _category_names(merchant: str | None) -> dict[str, str]:
    categories = Category.objects.all()
    if merchant:
        categories = categories.filter(merchant__slug=merchant)
    return dict(categories.values_list("path", "full_name"))


catalog = CatalogCache()


def on_products_changed(sender, merchant_id: int, product_ids: list[int], **kwargs) -> None:
    """Receiver of ``catalog.signals.products_changed``: this process reads them afresh, and
    the others are told to start over."""
    catalog.products.evict(product_ids)
    generations.bump(generation_marker())
