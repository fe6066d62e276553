"""Serving side of dense recall: the active encoder of each merchant, its Milvus collection, and
keeping that collection in line with the catalog.

Serving follows the model registry (``ranking.active_models``): activating a new encoder version
(or rolling back) switches search over within seconds, without a restart. A version
whose collection is missing (a fresh Milvus server) gets it rebuilt from the database on first
use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tqdm import tqdm

from catalog.models import Merchant, Product
from learners import conf, registry
from learners.generative.data import product_doc
from learners.models import ModelVersion
from ranking.active_models import ActiveModels
from ranking.dense.encoder import DenseEncoder
from ranking.dense.replica import ExactReplica, VectorIndex
from ranking.dense.store import VectorStore, collection_name
from ranking.recall import RecallRequest, RecallResult, merge_results
from ranking.types import Candidate

ENCODE_CHUNK = 2000


@dataclass(frozen=True)
class ServingEncoder:
    version: str
    encoder: DenseEncoder
    #: where writes go (the system of record)
    store: VectorStore
    #: where searches go: the store itself, or its in-memory replica (``DENSE_SERVING``)
    index: VectorIndex


def serving_mode() -> str:
    """``replica`` (default: exact search over an in-memory copy, see ``ranking.dense.replica``)
    or ``milvus`` (every search asks Milvus: the choice for a Milvus server shared by hosts)."""
    mode = conf.get("DENSE_SERVING", "replica").lower()
    if mode not in ("replica", "milvus"):
        raise ValueError(f"DENSE_SERVING must be 'replica' or 'milvus', not {mode!r}")
    return mode


def load_serving(version: ModelVersion, merchant: str) -> ServingEncoder:
    encoder = DenseEncoder.load(version.directory)
    store = VectorStore(version.name, encoder.dim)
    if store.exists():
        store.load()
    else:
        build_collection(encoder, store, merchant)
    index = ExactReplica(store, background=True) if serving_mode() == "replica" else store
    return ServingEncoder(version.name, encoder, store, index)


_serving: ActiveModels[ServingEncoder] = ActiveModels("encoder", load_serving)


def serving(merchant: str) -> ServingEncoder | None:
    """The merchant's active encoder with its collection, or None when it has none."""
    found = _serving.get(merchant)
    return found[1] if found else None


def reset_serving() -> None:
    """Forget loaded encoders (tests; a registry change is otherwise picked up by polling)."""
    _serving.clear()


def indexable(merchant: str, product_ids: Iterable[int] | None = None):
    """Products that get a vector: active, with a docid (assigned on import before signals)."""
    rows = Product.objects.filter(merchant__slug=merchant, active=True, docid__isnull=False)
    if product_ids is not None:
        rows = rows.filter(pk__in=list(product_ids))
    return rows.select_related("docid", "category").order_by("pk")


def upsert_vectors(encoder: DenseEncoder, store: VectorStore, merchant: str, products: list) -> int:
    """Encode ``products`` and write their vectors (catalog sync, rebuilds, the scale bench)."""
    vectors = encoder.encode_products([product_doc(p) for p in products])
    categories = [p.category.path if p.category else "" for p in products]
    return store.upsert([p.pk for p in products], vectors, [merchant] * len(products), categories)


def build_collection(
    encoder: DenseEncoder, store: VectorStore, merchant: str, progress: bool = False
) -> int:
    """(Re)create ``store``'s collection with every indexable product of ``merchant``."""
    store.create()
    rows = indexable(merchant)
    bar = tqdm(total=rows.count(), desc=f"vectors {merchant}", unit="product", disable=not progress)
    chunk: list[Product] = []
    total = 0
    for product in rows.iterator(ENCODE_CHUNK):
        chunk.append(product)
        if len(chunk) == ENCODE_CHUNK:
            total += upsert_vectors(encoder, store, merchant, chunk)
            bar.update(len(chunk))
            chunk = []
    if chunk:
        total += upsert_vectors(encoder, store, merchant, chunk)
        bar.update(len(chunk))
    bar.close()
    return total


def sync_products(merchant_id: int, product_ids: list[int]) -> int:
    """Upsert changed products into the serving collection; remove deleted/inactive ones."""
    slug = Merchant.objects.filter(pk=merchant_id).values_list("slug", flat=True).first()
    current = serving(slug) if slug else None
    if current is None:
        return 0
    present = list(indexable(slug, product_ids))
    current.store.delete(sorted(set(product_ids) - {p.pk for p in present}))
    return upsert_vectors(current.encoder, current.store, slug, present) if present else 0


def prune_collections(merchant: str) -> list[str]:
    """Drop collections of encoder versions that can no longer serve: everything but the
    active version and the most recently retired one (the rollback target)."""
    versions = registry.versions("encoder", merchant)
    retired = [v for v in versions if v.status == "retired"]
    retired.sort(key=lambda v: (v.retired_at is not None, v.retired_at), reverse=True)
    keep = {v.name for v in versions if v.status == "active"} | {v.name for v in retired[:1]}
    dropped = []
    for version in versions:
        if version.name not in keep:
            store = VectorStore(version.name, 1)
            if store.exists():
                store.drop()
                dropped.append(collection_name(version.name))
    return dropped


class DenseRecall:
    """A :class:`ranking.recall.RecallPath`: nearest products to the query's vector.

    Merchants without an active encoder contribute nothing, so the path degrades to empty
    rather than failing a search.
    """

    name = "dense"

    def recall(self, request: RecallRequest) -> RecallResult:
        if request.merchant:
            merchants = [request.merchant]
        else:
            merchants = list(Merchant.objects.values_list("slug", flat=True))
        results = [self._recall_one(slug, request) for slug in merchants]
        return merge_results(results, request.limit)

    def _recall_one(self, merchant: str, request: RecallRequest) -> RecallResult:
        current = serving(merchant)
        if current is None:
            return RecallResult(candidates=[], total=0)
        vector = current.encoder.encode([request.query])[0]
        hits = current.index.search(
            vector, request.limit, merchant=merchant, category=request.category
        )
        candidates = [
            Candidate(product_id=h.product_id, score=h.score, path=self.name, rank=rank)
            for rank, h in enumerate(hits, start=1)
        ]
        return RecallResult(candidates=candidates, total=len(candidates))


def dense_rrf_weight() -> float:
    """Weight of dense candidates in the hybrid pipeline's rank fusion (``DENSE_RRF_WEIGHT``;
    see ``ranking.service.RRF_WEIGHTS`` for the measurements behind the default)."""
    return float(conf.get("DENSE_RRF_WEIGHT", 0.2))
