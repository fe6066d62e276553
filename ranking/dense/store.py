"""Product vectors in Milvus: one collection per encoder version.

Why a collection per encoder version: vectors of two encoders live in different spaces, so a new
encoder needs every product re-encoded. Building the new collection beside the serving one and
switching when the registry activates the new encoder means search never sees a half-built
index, and a rollback finds the old collection still there.

Where: ``MILVUS_URI`` (a Milvus server, e.g. ``http://milvus:19530``, or a ``milvus-lite
server`` shared by several local processes) or, by default, a Milvus Lite directory
``<SEARCH_DATA_DIR>/milvus.db`` opened in-process. Milvus Lite locks its directory to one
process, so a deployment with several web workers plus training jobs sets ``MILVUS_URI``.

Each row: product id (primary key), unit vector (inner product = cosine), merchant slug and
category path, so searches filter by merchant and by category subtree.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from pymilvus import DataType, MilvusClient

from learners import conf
from ranking import generations

VECTOR, MERCHANT, CATEGORY = "vector", "merchant", "category"
#: Exact (FLAT) search by default: one shop's catalog is small enough and no neighbour is missed.
#: ``MILVUS_INDEX_TYPE=HNSW`` builds an HNSW graph instead (FAISS in Milvus Lite, native in a
#: Milvus server). Measured in Milvus Lite 3.2.2 at 100k vectors on 2 busy cores: 0.13-2.7 s
#: per query with either index (``bench latency --catalog-multiplier 30``: ~27 µs per row).
#: The cost is not the index: Milvus Lite's pure-Python engine
#: rebuilds a per-row visibility mask (dedup by sequence number, tombstones) in Python loops on
#: every search (``milvus_lite/search/executor_indexed.py``), O(rows) per query. Large catalogs
#: therefore need a Milvus server (``MILVUS_URI``).
HNSW_PARAMS = {"M": 16, "efConstruction": 200}
#: HNSW search breadth: at least the requested depth, so deep candidate lists stay accurate
MIN_EF = 64
INSERT_BATCH = 5000

# Milvus Lite lacks AllocTimestamp, so pymilvus's query iterator (every replica load) warns that
# it falls back to a client-side timestamp -- which is right for an embedded store. Set here, not
# in LOGGING: importing pymilvus runs its own dictConfig, which resets its child loggers.
logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)

_clients: dict[str, MilvusClient] = {}
_clients_lock = threading.Lock()


def milvus_uri() -> str:
    configured = conf.get("MILVUS_URI", "")
    return configured or str(Path(settings.DATA_DIR) / "milvus.db")


def client(uri: str | None = None) -> MilvusClient:
    """One client per URI per process (a Milvus Lite directory can only be opened once)."""
    uri = uri or milvus_uri()
    with _clients_lock:
        if uri not in _clients:
            _clients[uri] = MilvusClient(uri)
        return _clients[uri]


def reset_clients() -> None:
    """Close every client and stop in-process Milvus Lite servers (tests move
    ``SEARCH_DATA_DIR``; a Lite server otherwise lives, holding its lock, until exit)."""
    with _clients_lock:
        for uri, c in _clients.items():
            c.close()
            if uri.endswith(".db"):
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(uri)
        _clients.clear()


def index_type() -> str:
    return conf.get("MILVUS_INDEX_TYPE", "FLAT").upper()


def collection_name(version: str) -> str:
    """Milvus names allow letters, digits and underscores only."""
    return "dense_" + re.sub(r"[^0-9A-Za-z_]", "_", version)


def generation_marker(collection: str) -> Path:
    """The collection's generation marker (:mod:`ranking.generations`): replaced by every
    write, so the in-memory replicas of other processes (``ranking.dense.replica``) know when
    to reload."""
    return generations.marker("vector-generations", collection)


@dataclass(frozen=True)
class VectorHit:
    product_id: int
    score: float


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def filter_expression(merchant: str | None, category: str | None) -> str:
    """Milvus boolean expression for a merchant and a category subtree (path prefix)."""
    clauses = []
    if merchant:
        clauses.append(f"{MERCHANT} == {_quote(merchant)}")
    if category:
        prefix = category.rstrip("/").replace("%", "\\%").replace("_", "\\_")
        clauses.append(
            f"({CATEGORY} == {_quote(category)} or {CATEGORY} like {_quote(prefix + '/%')})"
        )
    return " and ".join(clauses)


class VectorStore:
    """One encoder version's collection."""

    def __init__(self, version: str, dim: int, uri: str | None = None) -> None:
        self.name = collection_name(version)
        self.dim = dim
        self.client = client(uri)
        #: fixed here, so the store and its replica agree even if settings change later
        self.generation_marker = generation_marker(self.name)

    def exists(self) -> bool:
        return self.client.has_collection(self.name)

    def create(self) -> None:
        """Create the (empty) collection, replacing a half-built one."""
        if self.exists():
            self.client.drop_collection(self.name)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field(MERCHANT, DataType.VARCHAR, max_length=100)
        schema.add_field(CATEGORY, DataType.VARCHAR, max_length=1000)
        index = self.client.prepare_index_params()
        kind = index_type()
        params = HNSW_PARAMS if kind == "HNSW" else {}
        index.add_index(VECTOR, index_type=kind, metric_type="IP", params=params)
        self.client.create_collection(self.name, schema=schema, index_params=index)
        self._changed()

    def load(self) -> None:
        """Load the collection into memory: a process opening an existing collection finds it
        released, and Milvus refuses searches until it is loaded."""
        self.client.load_collection(self.name)

    def upsert(
        self,
        ids: Sequence[int],
        vectors: np.ndarray,
        merchants: Sequence[str],
        categories: Sequence[str],
    ) -> int:
        for start in range(0, len(ids), INSERT_BATCH):
            rows = [
                {"id": int(i), VECTOR: v.tolist(), MERCHANT: m, CATEGORY: c}
                for i, v, m, c in zip(
                    ids[start : start + INSERT_BATCH],
                    vectors[start : start + INSERT_BATCH],
                    merchants[start : start + INSERT_BATCH],
                    categories[start : start + INSERT_BATCH],
                    strict=True,
                )
            ]
            self.client.upsert(self.name, rows)
        self._changed()
        return len(ids)

    def delete(self, ids: Sequence[int]) -> None:
        if ids:
            self.client.delete(self.name, ids=[int(i) for i in ids])
            self._changed()

    def count(self) -> int:
        stats = self.client.get_collection_stats(self.name)
        return int(stats.get("row_count", 0))

    def search(
        self,
        vector: np.ndarray,
        limit: int,
        *,
        merchant: str | None = None,
        category: str | None = None,
    ) -> list[VectorHit]:
        result = self.client.search(
            self.name,
            data=[vector.tolist()],
            limit=limit,
            filter=filter_expression(merchant, category),
            anns_field=VECTOR,
            search_params={"metric_type": "IP", "params": {"ef": max(limit, MIN_EF)}},
        )
        return [VectorHit(int(hit["id"]), float(hit["distance"])) for hit in result[0]]

    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored vectors of ``ids`` (for MMR similarity)."""
        if not ids:
            return {}
        rows = self.client.get(self.name, ids=[int(i) for i in ids], output_fields=[VECTOR])
        return {int(r["id"]): np.asarray(r[VECTOR], dtype=np.float32) for r in rows}

    def drop(self) -> None:
        if self.exists():
            self.client.drop_collection(self.name)
            self._changed()

    def _changed(self) -> None:
        """Every write tells in-memory replicas to reload (``ranking.dense.replica``)."""
        generations.bump(self.generation_marker)
