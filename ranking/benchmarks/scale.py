"""Recall latency at catalog scale: ``bench latency --catalog-multiplier M``.

A shop's real catalog (BestBuy: 3.3k products) says little about how search behaves at 100k or
1M products, so this builds a synthetic catalog of ``M`` variants of every real product of the
merchant -- variant 0 is the product itself, the others add a colour and a size token to the
title and shuffle the attribute values -- and times the two recall paths that grow with the
catalog, BM25 (tantivy) and dense (Milvus), in this process over the queries file.

Why no database rows: bulk-creating and re-reading 1M rows in SQLite costs more than building
both indexes, and a query never touches them. Variants are unsaved ``Product`` instances fed to
the same functions that index real products (``InvertedIndex.rebuild``, the dense upsert), so
the documents and vectors are exactly what serving would hold.

Everything written goes to a temporary directory (the tantivy index under an overridden
``SEARCH_INDEX_DIR``, a Milvus Lite database beside it) that is deleted afterwards; the
caller's database is only read, and its indexes and Milvus are never opened for writing.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from django.test import override_settings
from tqdm import tqdm

from catalog.iterables import batched
from catalog.models import Docid, Merchant, Product
from ranking.benchmarks.latency import percentiles

#: Tokens that make a variant's title differ from its siblings' the way real listings do.
COLOURS = ("black", "white", "silver", "blue", "red", "gold", "green", "purple", "graphite")
SIZES = ("16gb", "32gb", "64gb", "128gb", "256gb", "mini", "plus", "max", "xl")
#: Queries searched before timing (index open, encoder and Milvus warm-up).
WARMUP_QUERIES = 5
CHUNK = 2000
#: Queries timed against Milvus Lite directly (seconds each at 100k rows).
MILVUS_DIRECT_QUERIES = 20


@dataclass(frozen=True)
class ScaleCatalog:
    """``multiplier`` deterministic variants of each of ``sources`` (generated lazily)."""

    merchant: Merchant
    sources: list[Product]
    multiplier: int

    def __len__(self) -> int:
        return len(self.sources) * self.multiplier

    def products(self) -> Iterator[Product]:
        """Every variant, with synthetic primary keys 1..len(self): streamed, because 1M model
        instances would not fit in memory."""
        for i in range(self.multiplier):
            for n, source in enumerate(self.sources):
                yield variant(source, i, pk=i * len(self.sources) + n + 1)


def load_catalog(merchant_slug: str, multiplier: int) -> ScaleCatalog:
    """The merchant's active products (read from the caller's database) times ``multiplier``."""
    from ranking.inverted import indexable_products

    if multiplier < 1:
        raise ValueError(f"--catalog-multiplier must be at least 1, not {multiplier}")
    merchant = Merchant.objects.filter(slug=merchant_slug).first()
    if merchant is None:
        raise ValueError(f"no merchant {merchant_slug!r} to multiply (import its catalog first)")
    sources = list(indexable_products().filter(merchant=merchant))
    if not sources:
        raise ValueError(f"merchant {merchant_slug!r} has no active products to multiply")
    return ScaleCatalog(merchant, sources, multiplier)


def variant(source: Product, i: int, pk: int) -> Product:
    """Variant ``i`` of ``source`` as an unsaved product (with an unsaved docid, which the dense
    document reads). Seeded by sku and ``i``, so every run builds the same catalog."""
    title, attributes = source.title, dict(source.attributes or {})
    if i:
        rng = random.Random(f"{source.sku}/{i}")
        colour, size = rng.choice(COLOURS), rng.choice(SIZES)
        values = list(attributes.values())
        rng.shuffle(values)
        attributes = {**dict(zip(attributes, values, strict=True)), "colour": colour, "size": size}
        title = f"{title} {colour} {size}"
    product = Product(
        pk=pk,
        merchant=source.merchant,
        sku=f"{source.sku}-v{i}",
        title=title,
        brand=source.brand,
        description=source.description,
        attributes=attributes,
        price=source.price,
        popularity=source.popularity,
        category=source.category,
    )
    Docid(product=product, merchant=source.merchant, path=f"scale/{pk}")
    return product


def measure_scale(
    merchant_slug: str, multiplier: int, queries: list[str], progress: bool = True
) -> dict[str, Any]:
    """Build both indexes of the multiplied catalog in a temporary directory and time them."""
    from ranking.dense.store import reset_clients

    catalog = load_catalog(merchant_slug, multiplier)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as workdir:
        try:
            return {
                "products": len(catalog),
                "bm25": _bm25(catalog, Path(workdir), queries, progress),
                "dense": _dense(catalog, Path(workdir), queries, progress),
            }
        finally:
            # stops the scratch Milvus Lite server before its directory is deleted (this also
            # closes the caller's clients; they reconnect on next use)
            reset_clients()


def _bm25(
    catalog: ScaleCatalog, workdir: Path, queries: list[str], progress: bool
) -> dict[str, Any]:
    """Index the catalog with tantivy and time the serving BM25 path (with its facet counts
    and fallbacks) on it."""
    from ranking import inverted
    from ranking.recall import InvertedRecall, RecallRequest
    from ranking.service import RECALL_DEPTH

    slug = catalog.merchant.slug
    with override_settings(SEARCH_INDEX_DIR=workdir / "index"):
        inverted.reset_cache()
        try:
            started = time.perf_counter()
            products = tqdm(
                catalog.products(), total=len(catalog), desc="bm25 index", disable=not progress
            )
            indexed = inverted.get_index(slug).rebuild(products)
            build_s = time.perf_counter() - started
            path = InvertedRecall()

            def search(query: str) -> int:
                terms = inverted.query_terms(query)
                request = RecallRequest(query, terms, RECALL_DEPTH, merchant=slug)
                return len(path.recall(request).candidates)

            return {"indexed": indexed, "build_s": round(build_s, 1), **_time(search, queries)}
        finally:
            inverted.reset_cache()  # the caller's indexes reopen from its own directory


def _dense(
    catalog: ScaleCatalog, workdir: Path, queries: list[str], progress: bool
) -> dict[str, Any]:
    """Encode the catalog into a Milvus Lite collection and time what ``DenseRecall`` does per
    query -- encode the query, search the merchant's vectors -- once through the serving
    replica (the default, ``ranking.dense.replica``) and once asking Milvus Lite directly
    (``DENSE_SERVING=milvus``; O(rows) per query, so on the first ``MILVUS_DIRECT_QUERIES``)."""
    from ranking.dense.recall import upsert_vectors
    from ranking.dense.replica import ExactReplica
    from ranking.dense.store import VectorStore
    from ranking.service import RECALL_DEPTH

    slug = catalog.merchant.slug
    encoder, label = _encoder(catalog)
    with override_settings(DATA_DIR=workdir):  # the replica's generation marker goes there too
        store = VectorStore(f"scale_{slug}", encoder.dim, uri=str(workdir / "milvus.db"))
        store.create()
        started = time.perf_counter()
        bar = tqdm(total=len(catalog), desc="dense vectors", disable=not progress)
        for chunk in batched(catalog.products(), CHUNK):
            bar.update(upsert_vectors(encoder, store, slug, chunk))
        bar.close()
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        replica = ExactReplica(store)
        load_s = time.perf_counter() - started

    def searcher(index):  # -> Callable[[str], int]
        def search(query: str) -> int:
            vector = encoder.encode([query])[0]
            return len(index.search(vector, RECALL_DEPTH, merchant=slug))

        return search

    return {
        "encoder": label,
        "indexed": store.count(),
        "build_s": round(build_s, 1),
        "replica": {"load_s": round(load_s, 1), **_time(searcher(replica), queries)},
        "milvus": _time(searcher(store), queries[:MILVUS_DIRECT_QUERIES]),
    }


def _encoder(catalog: ScaleCatalog):  # -> tuple[DenseEncoder, str]
    """The merchant's active encoder, or an untrained one of the same shape: encoding and
    search cost do not depend on the weights, so latency is comparable (relevance is not)."""
    from learners import registry
    from learners.generative.data import product_doc
    from ranking.dense.encoder import DenseEncoder, EncoderConfig, product_text

    version = registry.active("encoder", catalog.merchant)
    if version is not None:
        return DenseEncoder.load(version.directory), version.name
    config = EncoderConfig()
    originals = islice(catalog.products(), len(catalog.sources))
    texts = [product_text(product_doc(p), config.description_words) for p in originals]
    return DenseEncoder.new(texts, config), "untrained (random weights; latency only)"


def _time(search: Callable[[str], int], queries: list[str]) -> dict[str, Any]:
    """Per-query milliseconds of ``search`` after a warm-up, and how many queries found
    anything."""
    for query in queries[:WARMUP_QUERIES]:
        search(query)
    timings, answered = [], 0
    for query in queries:
        started = time.perf_counter()
        found = search(query)
        timings.append((time.perf_counter() - started) * 1000)
        answered += found > 0
    return {**percentiles(timings), "queries": len(queries), "with_results": answered}
