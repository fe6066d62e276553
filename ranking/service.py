"""The search entry point: validate, recall, fuse, hydrate products, time every stage."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping

from django.conf import settings

from ranking import catalog_cache, generative, intent
from ranking.dense.recall import DenseRecall, dense_rrf_weight
from ranking.errors import SearchQueryError
from ranking.features import ProductInfo
from ranking.generative import GenerativeServingRecall
from ranking.inverted import query_terms
from ranking.ranker.serving import explain_hits, rerank
from ranking.recall import InvertedRecall, RecallPath, RecallRequest, RecallResult
from ranking.types import Candidate, FacetCount, SearchResponse, SearchResult

log = logging.getLogger(__name__)

#: How many candidates each recall path proposes before fusion cuts to the requested page
#: (deeper pages ask for more). The ranker scores each path's top 50 (``CANDIDATE_DEPTH``); the
#: rest follow in RRF order. 200 -> 100 on the BestBuy dev set: hybrid NDCG@10 0.9119 -> 0.9122,
#: Recall@100 0.8713 -> 0.8708, and a hybrid search's bm25 + dense + fuse stages 1.3-1.5 ms
#: (~10%) cheaper in process (README, "Hybrid retrieval" latency notes).
RECALL_DEPTH = 100

#: pipeline name → factory of its recall paths. A single-path pipeline ranks by that path's
#: own score; later issues add "generative", "dense" and the fused "hybrid" pipeline.
PIPELINES: dict[str, Callable[[], list[RecallPath]]] = {
    "bm25": lambda: [InvertedRecall()],
    "generative": lambda: [GenerativeServingRecall()],
    "dense": lambda: [DenseRecall()],
    "hybrid": lambda: [InvertedRecall(), GenerativeServingRecall(), DenseRecall()],
}
DEFAULT_PIPELINE = "bm25"

#: Reciprocal-rank-fusion weight of a recall path (1.0 when not listed). Generative at 0.1
#: (GENERATIVE_RRF_WEIGHT): on the BestBuy dev set, bm25 alone scored NDCG@10 0.852, equal-weight
#: RRF with generative 0.624 (its top-10 pushes bm25's good hits down), weights 0.1-0.2
#: 0.864-0.867 (it reorders and adds where bm25 is unsure), 0.3 0.851, 0.5 0.776. With the
#: teacher-trained base, the ranker and query intent, 0.1 beat 0.2 again (0.908 against 0.899,
#: README "Benchmarks"). Dense gets 0.2
#: (DENSE_RRF_WEIGHT): bm25 + generative + dense scored 0.876 at 0.2 against 0.799 at 1.0, and
#: 0.1 / 0.3 scored lower than 0.2 with the later models. The weights were chosen on the dev set
#: itself, so treat the gain as optimistic. The learned ranker corrects this fused order
#: (ranking.ranker.serving).
RRF_WEIGHTS: dict[str, Callable[[], float]] = {
    "generative": generative.rrf_weight,
    "dense": dense_rrf_weight,
}


def available_pipelines() -> list[str]:
    return sorted(PIPELINES)


def search(
    query: str,
    *,
    k: int = 10,
    merchant: str | None = None,
    category: str | None = None,
    offset: int = 0,
    debug: bool = False,
    pipeline: str = "default",
) -> SearchResponse:
    started = time.perf_counter()
    query = validate_query(query)
    k, offset = validate_paging(k, offset)
    if merchant and not catalog_cache.catalog.merchant_exists(merchant):
        raise SearchQueryError(f"unknown merchant {merchant!r}")
    paths = resolve_pipeline(pipeline)

    request = RecallRequest(
        query=query,
        terms=query_terms(query),
        limit=max(RECALL_DEPTH, offset + k),
        merchant=merchant or None,
        category=category or None,
    )
    timings: dict[str, float] = {}
    results: dict[str, RecallResult] = {}
    for path in paths:
        path_started = time.perf_counter()
        results[path.name] = recall_or_degrade(path, request, alone=len(paths) == 1)
        timings[path.name] = (time.perf_counter() - path_started) * 1000

    fuse_started = time.perf_counter()
    ranked = fuse(results)
    query_intent = None
    if len(results) > 1:
        ranked, query_intent = read_intent(query, ranked)
    # several paths: the merchant's learned ranker (+ MMR) when one is active, else RRF
    reranked = rerank(request, results, ranked, debug=debug) if len(results) > 1 else None
    if reranked is not None:
        ranked = reranked.candidates
    timings["fuse"] = (time.perf_counter() - fuse_started) * 1000
    page = ranked[offset : offset + k]
    hydrate_started = time.perf_counter()
    hits = hydrate(page, debug=debug, products=reranked.products if reranked else None)
    if debug:
        explain_hits(hits, reranked, query_intent)
    timings["hydrate"] = (time.perf_counter() - hydrate_started) * 1000

    primary = results[paths[0].name]
    return SearchResponse(
        request_id=uuid.uuid4().hex,
        query=query,
        results=hits,
        total=max(primary.total, len(ranked)),
        took_ms=(time.perf_counter() - started) * 1000,
        timings_ms=timings,
        facets=facet_counts(primary.facets, merchant),
        corrected_query=primary.corrected_query,
        model_version=served_by(paths, reranked.version if reranked else None),
    )


def recall_or_degrade(path: RecallPath, request: RecallRequest, *, alone: bool) -> RecallResult:
    """One path's candidates. In a fused pipeline a failing path (vector store down, model
    file unreadable) is logged and left out, so shoppers still get the other paths' results;
    a single-path pipeline (benchmarks, debugging) lets the error through."""
    if alone:
        return path.recall(request)
    try:
        return path.recall(request)
    except Exception:
        log.exception("recall path %s failed; serving without it", path.name)
        return RecallResult(candidates=[], total=0)


def served_by(paths: list[RecallPath], ranker: str | None = None) -> str | None:
    """The learned-model version(s) that served a response (recorded in impressions)."""
    versions = [v for v in (getattr(p, "model_version", None) for p in paths) if v]
    return ",".join([*versions, *([ranker] if ranker else [])]) or None


def validate_query(query: str | None) -> str:
    query = (query or "").strip()
    if not query:
        raise SearchQueryError("the query is empty: type what you are looking for")
    limit = settings.SEARCH_MAX_QUERY_CHARS
    if len(query) > limit:
        raise SearchQueryError(f"the query is too long ({len(query)} characters, at most {limit})")
    return query


def validate_paging(k: int, offset: int) -> tuple[int, int]:
    if not 1 <= k <= settings.SEARCH_MAX_K:
        raise SearchQueryError(f"k must be between 1 and {settings.SEARCH_MAX_K}, got {k}")
    if offset < 0:
        raise SearchQueryError(f"offset must not be negative, got {offset}")
    return k, offset


def default_pipeline() -> str:
    """``hybrid`` while some merchant has a generative model serving (weighted RRF beat bm25's
    NDCG@10 on the BestBuy dev set, see RRF_WEIGHTS), else ``DEFAULT_PIPELINE``."""
    return "hybrid" if generative.any_active() else DEFAULT_PIPELINE


def resolve_pipeline(name: str) -> list[RecallPath]:
    name = default_pipeline() if name == "default" else name
    factory = PIPELINES.get(name)
    if factory is None:
        raise SearchQueryError(
            f"unknown pipeline {name!r}; available: {', '.join(available_pipelines())}"
        )
    return factory()


def fuse(results: dict[str, RecallResult]) -> list[Candidate]:
    """Merge the paths' candidates into one ranking.

    With one path this is that path's order. With several it is reciprocal-rank fusion, the
    fallback the multitask ranker replaces once trained; every candidate remembers which
    paths found it.
    """
    if len(results) == 1:
        return next(iter(results.values())).candidates
    fused: dict[int, Candidate] = {}
    found_by: dict[int, list[str]] = {}
    for name, result in results.items():
        weight = RRF_WEIGHTS[name]() if name in RRF_WEIGHTS else 1.0
        for candidate in result.candidates:
            found_by.setdefault(candidate.product_id, []).append(name)
            score = weight / (60 + candidate.rank)
            current = fused.get(candidate.product_id)
            if current is None:
                fused[candidate.product_id] = Candidate(candidate.product_id, score, "fused", 0)
            else:
                current.score += score
    ranked = sorted(fused.values(), key=lambda c: -c.score)
    for rank, candidate in enumerate(ranked, start=1):
        candidate.rank = rank
        candidate.path = "+".join(found_by[candidate.product_id])
    return ranked


def read_intent(query: str, ranked: list[Candidate]) -> tuple[list[Candidate], str | None]:
    """The fused order with what the query asks for first (ranking.intent), and the reading."""
    window = intent.depth()
    if not window:
        return ranked, None
    infos = catalog_cache.catalog.product_rows(c.product_id for c in ranked[:window])
    return intent.read_query(query, ranked, infos, window)


def hydrate(
    candidates: list[Candidate],
    *,
    debug: bool = False,
    products: Mapping[int, ProductInfo] | None = None,
) -> list[SearchResult]:
    """Results for ``candidates`` in ranked order, from ``products`` (the rows the ranker read
    for its features) plus one query for any candidate they lack."""
    known = products or {}
    missing = [c.product_id for c in candidates if c.product_id not in known]
    infos = {**known, **catalog_cache.catalog.product_rows(missing)} if missing else known
    learned = generative.learned_flags()
    results = []
    for candidate in candidates:
        info = infos.get(candidate.product_id)
        if info is None or not info.active:  # deleted since it was indexed
            continue
        results.append(
            SearchResult(
                product_id=info.product_id,
                sku=info.sku,
                merchant=info.merchant,
                title=info.title,
                brand=info.brand,
                price=info.list_price,
                category_path=info.category_path,
                category_name=" > ".join(info.category_names),
                docid=info.docid or None,
                score=candidate.score,
                paths=candidate.path.split("+"),
                image_url=info.image_url,
                learned=learned(info.merchant, info.docid or None),
                debug={"rank": candidate.rank, "score": candidate.score} if debug else None,
            )
        )
    return results


def facet_counts(counts: dict[str, int], merchant: str | None) -> list[FacetCount]:
    if not counts:
        return []
    names = catalog_cache.catalog.category_names(counts, merchant)
    facets = [FacetCount(path, names.get(path, path), n) for path, n in counts.items()]
    return sorted(facets, key=lambda f: (-f.count, f.name))
