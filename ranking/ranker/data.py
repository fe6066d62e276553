"""Training queries for the fusion ranker, built without any human judgments.

*Pseudo-queries* (relevance head): queries generated from product fields by the generative
model's query generator (``learners.generative.data``), run through the same recall paths as a
shopper's query. Each candidate gets a graded label from the catalog's structure alone:

* 2 -- the product the query was generated from, or a product that holds every content word of
  the query (title, brand, category names) and at least one of them names the product itself
  (its title before " for ", its brand or its category) -- "iphone" for an iPhone;
* 1 -- a product holding every word only through what it is *for* ("Case for Apple iPhone 6"
  for the query "iphone"): an accessory of the thing asked for, not the thing;
* 0 -- otherwise.

No label depends on the source product's category: most products of a shop are accessories, so
"same category as the source" would teach that a query for a phone wants cases.

*Logged queries* (click and purchase heads): the (query, sku) rows of the hourly aggregates --
impressions, expected examinations, clicks, purchases -- for the candidates the paths propose for
that query today.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from django.db.models import Sum
from tqdm import tqdm

from learners.generative.data import DataConfig, TrainingData, load_products
from ranking.features import (
    CTR_WINDOW,
    ProductInfo,
    candidate_features,
    category_text,
    content_words,
    load_rates,
)
from ranking.features import load_products as load_infos
from ranking.inverted import query_terms
from ranking.ranker.model import QueryGroup
from ranking.recall import RecallPath, RecallRequest, RecallResult

#: Candidates each path proposes to the ranker (training and serving alike).
CANDIDATE_DEPTH = 50
#: Indexing views of the generative data: product texts, not queries.
NOT_QUERIES = frozenset({"title", "title_brand", "category_brand", "description"})


def recall_all(paths: Sequence[RecallPath], query: str, merchant: str) -> dict[str, RecallResult]:
    request = RecallRequest(
        query=query, terms=query_terms(query), limit=CANDIDATE_DEPTH, merchant=merchant
    )
    return {path.name: path.recall(request) for path in paths}


def pseudo_label(query: frozenset[str], source: ProductInfo, candidate: ProductInfo) -> int:
    """Graded relevance from catalog structure (see the module docstring)."""
    if candidate.product_id == source.product_id:
        return 2
    product, _, device = candidate.title.partition(" for ")
    main = content_words(f"{product} {candidate.brand}")
    target = content_words(device)
    categories = content_words(category_text(candidate.category_names))
    if not query or not query <= main | target | categories:
        return 0
    return 2 if query & (main | (categories - target)) else 1


def pseudo_query_groups(
    merchant: str,
    paths: Sequence[RecallPath],
    queries: int = 1500,
    seed: int = 0,
    progress: bool = False,
) -> list[QueryGroup]:
    """Relevance-labelled groups from ``queries`` sampled pseudo-queries of the catalog."""
    products = load_products(merchant)
    if not products:
        return []
    examples = [
        e
        for e in TrainingData(products, DataConfig(seed=seed)).epoch(0)
        if e.kind not in NOT_QUERIES
    ]
    examples = random.Random(seed).sample(examples, min(queries, len(examples)))
    source_of = {p.docid: p.product_id for p in products}
    groups = []
    for example in tqdm(examples, desc="pseudo-queries", unit="query", disable=not progress):
        results = recall_all(paths, example.text, merchant)
        ids = {c.product_id for r in results.values() for c in r.candidates}
        source_id = source_of[example.docid]
        infos = load_infos([*ids, source_id])
        if source_id not in infos:
            continue
        pids, features = candidate_features(example.text, results, infos)
        if len(pids) < 2:
            continue
        query = content_words(example.text)
        labels = np.array([pseudo_label(query, infos[source_id], infos[p]) for p in pids])
        groups.append(QueryGroup(example.text, features, relevance=labels, product_ids=pids))
    return groups


def logged_query_groups(
    merchant: str, paths: Sequence[RecallPath], now: datetime | None = None, limit: int = 2000
) -> list[QueryGroup]:
    """Click/purchase-labelled groups for the most searched logged queries of the window."""
    from learners.aggregates import QUERY_SKU
    from learners.models import HourlyAggregate

    since = (now or datetime.now(UTC)) - CTR_WINDOW
    rows = (
        HourlyAggregate.objects.filter(merchant=merchant, level=QUERY_SKU, hour__gte=since)
        .values("query", "sku")
        .annotate(e=Sum("examination"), c=Sum("clicks"), p=Sum("purchases"))
    )
    by_query: dict[str, dict[str, tuple[float, int, int]]] = defaultdict(dict)
    for r in rows:
        by_query[r["query"]][r["sku"]] = (r["e"], r["c"], r["p"])
    busiest = sorted(by_query, key=lambda q: -sum(v[0] for v in by_query[q].values()))[:limit]
    shoppers = load_rates(merchant, now)
    groups = []
    for query in busiest:
        results = recall_all(paths, query, merchant)
        infos = load_infos([c.product_id for r in results.values() for c in r.candidates])
        pids, features = candidate_features(query, results, infos, shoppers)
        if not pids:
            continue
        logged = [by_query[query].get(infos[p].sku, (0.0, 0, 0)) for p in pids]
        exam, clicks, purchases = (
            np.array(col, dtype=np.float32) for col in zip(*logged, strict=True)
        )
        groups.append(
            QueryGroup(
                query,
                features,
                clicks=clicks,
                purchases=purchases,
                examination=exam,
                product_ids=pids,
            )
        )
    return groups
