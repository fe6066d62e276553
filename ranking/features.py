"""Features of (query, candidate) pairs for the fusion ranker.

The ranker sees the union of the recall paths' candidates and, for each, what every path said
about it plus what the catalog and the shoppers say:

* per path (bm25, generative, dense): found it, 1/rank, score scaled within that path's list
  (1 = its top hit, 0 = its last) -- a missing path or a product it did not propose is all zeros,
  so the ranker works with any subset of paths;
* lexical overlap: share of the query's content words in the title / brand / category names,
  whether the title holds all of them;
* category agreement: the share of each path's top hits in the candidate's category (the
  query's "intent" as the paths see it) and, when the generative path contributed, the share of
  its decoded docids whose prefix is the candidate's category path;
* popularity and price (log, and relative to the other candidates);
* smoothed CTR, position-debiased CTR (clicks over expected clicks) and purchase rate of the
  (query, sku) pair and of the sku, from the hourly aggregates.

Position is deliberately *not* a feature: it would only teach the ranker its own past order.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from learners.generative.data import STOPWORDS, category_names, singular, words
from ranking.recall import RecallResult

if TYPE_CHECKING:
    from learners.aggregates import CtrFeature

PATHS = ("bm25", "generative", "dense")
#: How many top hits of each path describe the query's category intent.
INTENT_DEPTH = 10
#: Distinct texts (titles, brands, category names) whose content words stay memoised.
CONTENT_WORDS_CACHE = 200_000
CTR_WINDOW = timedelta(days=30)
CTR_CACHE_SECONDS = 300.0
#: Impressions of a (query, product) pair at which its shopper evidence counts half
#: (``ShopperSignals.evidence``).
EVIDENCE_IMPRESSIONS = 50.0

PATH_FEATURES = [f"{p}_{f}" for p in PATHS for f in ("found", "rr", "score")]
FEATURES = [
    *PATH_FEATURES,
    "paths_found",
    "title_overlap",
    "brand_overlap",
    "category_overlap",
    "title_all_words",
    "intent_share",
    "docid_prefix_share",
    "log_popularity",
    "popularity_rel",
    "log_price",
    "price_rel",
    "ctr",
    "coec",
    "purchase_rate",
    "sku_ctr",
    "sku_purchase_rate",
]


@dataclass(frozen=True)
class ProductInfo:
    """What ranking features and result pages read about a product (one query loads a search's
    candidates; the page's results reuse the rows)."""

    product_id: int
    sku: str
    title: str
    brand: str
    category_path: str
    category_names: tuple[str, ...]
    docid: str
    popularity: float
    #: for features: 0.0 when unknown
    price: float
    merchant: str = ""
    image_url: str = ""
    active: bool = True
    #: as shown to shoppers: exact, None when unknown
    list_price: Decimal | None = None


@dataclass(frozen=True)
class Rates:
    """Smoothed shopper signals; the defaults are what a product without events gets."""

    ctr: float = 0.0
    coec: float = 0.0
    purchase_rate: float = 0.0
    impressions: int = 0


#: The rates of a product or pair without events (shared: building one per lookup was a tenth
#: of the ranker's feature time).
NO_RATES = Rates()
#: Path features of a candidate the path did not propose.
NOT_FOUND = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class ShopperSignals:
    """What shoppers did over the window: smoothed rates per (normalised query, sku) and per
    sku."""

    pairs: dict[tuple[str, str], Rates] = field(default_factory=dict)
    skus: dict[str, Rates] = field(default_factory=dict)

    def evidence(self, query: str, skus: Sequence[str]) -> np.ndarray:
        """How much shoppers have seen of each product for this query, in [0, 1):
        ``impressions / (impressions + EVIDENCE_IMPRESSIONS)`` of the (query, sku) pair, 0 for
        a pair never shown. The ranker's click and purchase heads may only move products with
        evidence (``FusionRanker.score``): on anything else they extrapolate from catalog
        features, and that lost hybrid NDCG@10 on never-searched queries (0.9318 -> 0.8965
        after the first hour's ranker) and on the searched ones too, where never-shown
        products rose above shown ones (0.8848 -> 0.8531 after 6 hours)."""
        from learners.aggregates import normalize_query

        query = normalize_query(query)
        shown = np.array(
            [self.pairs.get((query, sku), NO_RATES).impressions for sku in skus], dtype=np.float32
        )
        return shown / (shown + EVIDENCE_IMPRESSIONS)


@lru_cache(maxsize=CONTENT_WORDS_CACHE)
def content_words(text: str) -> frozenset[str]:
    """Singular content words (so "cases" matches "case"). Memoised by text: every search
    compares the query with the same few thousand titles, brands and category names, and
    tokenising them again was a third of the ranker's time; an edited product has a new text,
    hence a new entry."""
    return frozenset(singular(w) for w in words(text) if w not in STOPWORDS)


def load_products(product_ids: Sequence[int]) -> dict[int, ProductInfo]:
    """Read as plain tuples: hundreds of candidates per search, and building ORM instances
    for them cost more than the query."""
    from catalog.models import Product

    rows = Product.objects.filter(pk__in=list(product_ids)).values_list(*_INFO_COLUMNS)
    return {row[0]: _info(*row) for row in rows}


_INFO_COLUMNS = (
    "pk",
    "sku",
    "title",
    "brand",
    "category__path",
    "category__full_name",
    "docid__path",
    "popularity",
    "price",
    "merchant__slug",
    "image_url",
    "active",
)


def _info(
    pk: int,
    sku: str,
    title: str,
    brand: str | None,
    category_path: str | None,
    full_name: str | None,
    docid: str | None,
    popularity: float | None,
    price: Decimal | None,
    merchant: str,
    image_url: str | None,
    active: bool,
) -> ProductInfo:
    return ProductInfo(
        product_id=pk,
        sku=sku,
        title=title,
        brand=brand or "",
        category_path=category_path or "",
        category_names=tuple(full_name.split(" > ")) if full_name else (),
        docid=docid or "",
        popularity=float(popularity or 0),
        price=float(price or 0),
        merchant=merchant,
        image_url=image_url or "",
        active=active,
        list_price=price,
    )


# -- shopper signals ---------------------------------------------------------------------------


class SignalCache:
    """Per-merchant smoothed rates from ``learners.aggregates.ctr_features``, recomputed at most
    every ``CTR_CACHE_SECONDS`` (a window sum over the aggregates is too slow per request)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[float, ShopperSignals]] = {}

    def rates(self, merchant: str) -> ShopperSignals:
        now = time.monotonic()
        with self.lock:
            entry = self.entries.get(merchant)
        if entry is None or now - entry[0] > CTR_CACHE_SECONDS:
            entry = (now, load_rates(merchant))
            with self.lock:
                self.entries[merchant] = entry
        return entry[1]

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


def load_rates(merchant: str, now: datetime | None = None) -> ShopperSignals:
    """The merchant's shopper signals over the last ``CTR_WINDOW``."""
    from learners.aggregates import SKU, ctr_features

    since = (now or datetime.now(UTC)) - CTR_WINDOW
    return ShopperSignals(
        pairs={key: _rates(f) for key, f in ctr_features(merchant, since).items()},
        skus={sku: _rates(f) for (_, sku), f in ctr_features(merchant, since, level=SKU).items()},
    )


def _rates(feature: CtrFeature) -> Rates:
    return Rates(feature.ctr, feature.coec, feature.purchase_rate, feature.impressions)


signals = SignalCache()


# -- features ----------------------------------------------------------------------------------


def _path_features(result: RecallResult | None) -> dict[int, tuple[float, float, float]]:
    """product id -> (found, 1/rank, score scaled to [0, 1] within the list)."""
    if result is None or not result.candidates:
        return {}
    scores = [c.score for c in result.candidates]
    top, bottom = max(scores), min(scores)
    span = top - bottom
    return {
        c.product_id: (1.0, 1.0 / c.rank, (c.score - bottom) / span if span > 0 else 1.0)
        for c in result.candidates
    }


def _overlap(query: frozenset[str], text: str) -> float:
    return len(query & content_words(text)) / len(query) if query else 0.0


@lru_cache(maxsize=CONTENT_WORDS_CACHE)
def category_text(names: tuple[str, ...]) -> str:
    """The cleaned leaf and parent category names as one text (memoised like
    :func:`content_words`: a shop has a few hundred category chains)."""
    return " ".join(category_names(names))


def _intent(
    results: dict[str, RecallResult], products: dict[int, ProductInfo]
) -> tuple[Counter[str], Counter[str], int, int]:
    """Category counts among the paths' top hits, and among generated docid prefixes."""
    shares: Counter[str] = Counter()
    depth = 0
    for result in results.values():
        top = [
            products[c.product_id]
            for c in result.candidates[:INTENT_DEPTH]
            if c.product_id in products
        ]
        shares.update(p.category_path for p in top)
        depth += len(top)
    generated: Counter[str] = Counter()
    generative = results.get("generative")
    decoded = 0
    if generative is not None:
        for c in generative.candidates[:INTENT_DEPTH]:
            info = products.get(c.product_id)
            if info is not None:
                generated[info.docid.rsplit("/", 1)[0]] += 1
                decoded += 1
    return shares, generated, depth, decoded


def candidate_features(
    query: str,
    results: dict[str, RecallResult],
    products: dict[int, ProductInfo],
    shoppers: ShopperSignals | None = None,
) -> tuple[list[int], np.ndarray]:
    """(candidate ids, feature matrix in ``FEATURES`` order) for the union of ``results``.

    Candidates whose product is missing from ``products`` (deleted since indexing) are dropped.
    """
    from learners.aggregates import normalize_query

    ids = list(dict.fromkeys(c.product_id for r in results.values() for c in r.candidates))
    ids = [i for i in ids if i in products]
    per_path = {name: _path_features(results.get(name)) for name in PATHS}
    qwords = content_words(query)
    shares, generated, depth, decoded = _intent(results, products)
    pops = [products[i].popularity for i in ids]
    prices = [products[i].price for i in ids if products[i].price > 0]
    max_pop = max(pops, default=0.0)
    median_price = statistics.median(prices) if prices else 0.0
    shoppers = shoppers or ShopperSignals()
    normalised = normalize_query(query)
    path_rows = [per_path[name] for name in PATHS]
    rows = []
    for pid in ids:
        info = products[pid]
        row: list[float] = []
        for found in path_rows:
            row.extend(found.get(pid, NOT_FOUND))
        pair = shoppers.pairs.get((normalised, info.sku), NO_RATES)
        sku = shoppers.skus.get(info.sku, NO_RATES)
        prefix = info.docid.rsplit("/", 1)[0] if info.docid else ""
        row += [
            sum(row[0 : len(PATH_FEATURES) : 3]),  # the paths' "found" flags
            _overlap(qwords, info.title),
            _overlap(qwords, info.brand),
            _overlap(qwords, category_text(info.category_names)),
            float(bool(qwords) and qwords <= content_words(info.title)),
            shares[info.category_path] / depth if depth else 0.0,
            generated[prefix] / decoded if decoded and prefix else 0.0,
            math.log1p(info.popularity),
            info.popularity / max_pop if max_pop > 0 else 0.0,
            math.log1p(info.price),
            math.log((info.price + 1) / (median_price + 1)),
            pair.ctr,
            pair.coec,
            pair.purchase_rate,
            sku.ctr,
            sku.purchase_rate,
        ]
        rows.append(row)
    matrix = np.asarray(rows, dtype=np.float32).reshape(len(ids), len(FEATURES))
    return ids, matrix
