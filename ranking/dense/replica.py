"""In-memory exact-search replica of a Milvus collection: how serving reads dense vectors.

Why a replica: Milvus Lite, the embedded default, evaluates every search in Python with O(rows)
work per query before it touches the index (a per-row dedup/tombstone mask, see
``ranking.dense.store``): ~27 µs per row, so 0.1-2.7 s per query at 100k products whatever the
index type. A Milvus server does not have that cost; ``DENSE_SERVING=milvus`` searches it
directly. With the default ``DENSE_SERVING=replica`` each serving process keeps the collection
as one numpy matrix and searches it exactly: a matrix-vector product plus ``argpartition``,
a few milliseconds at 100k x 128 and no neighbour ever missed.

Milvus stays the system of record: every write goes to it through ``VectorStore`` and bumps the
collection's *generation* marker (a small file under ``<SEARCH_DATA_DIR>/vector-generations``
shared by the processes of one host). A replica looks at the marker at most once per
``REFRESH_CHECK_S`` and, when it changed, reloads the collection in a background thread while
searches go on against the previous snapshot, then swaps -- a catalog edit reaches search within
seconds, the way an Elasticsearch refresh interval does. Scaling out across hosts means a Milvus
server and ``DENSE_SERVING=milvus``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ranking import generations
from ranking.dense.store import (
    CATEGORY,
    MERCHANT,
    VECTOR,
    VectorHit,
    VectorStore,
)

logger = logging.getLogger(__name__)

#: How often a replica looks at its collection's generation marker.
REFRESH_CHECK_S = 1.0
#: Rows per page when reading a collection out of Milvus.
READ_BATCH = 5000


class VectorIndex(Protocol):
    """What serving asks of dense vectors (``VectorStore`` and ``ExactReplica`` both answer)."""

    def search(
        self,
        vector: np.ndarray,
        limit: int,
        *,
        merchant: str | None = None,
        category: str | None = None,
    ) -> list[VectorHit]: ...

    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]: ...


# --------------------------------------------------------------------------------------------
# Snapshot: one immutable copy of a collection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    ids: np.ndarray  # (n,) int64
    matrix: np.ndarray  # (n, dim) float32, unit rows
    merchant_codes: np.ndarray  # (n,) int32 index into merchants
    merchants: tuple[str, ...]
    category_codes: np.ndarray  # (n,) int32 index into categories
    categories: tuple[str, ...]
    row_of: dict[int, int]

    @classmethod
    def build(cls, pages: Iterable[list[dict]], dim: int) -> Snapshot:
        """Assemble from pages of Milvus rows, converting page by page (a million rows as
        Python dicts of float lists would need gigabytes; as arrays, 0.5 GB)."""
        merchants: dict[str, int] = {}
        categories: dict[str, int] = {}
        ids, matrices, merchant_codes, category_codes = [], [], [], []
        for page in pages:
            ids.append(np.fromiter((r["id"] for r in page), np.int64, len(page)))
            matrices.append(np.asarray([r[VECTOR] for r in page], np.float32).reshape(-1, dim))
            merchant_codes.append(_codes((r[MERCHANT] for r in page), merchants, len(page)))
            category_codes.append(_codes((r[CATEGORY] for r in page), categories, len(page)))
        all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        return cls(
            ids=all_ids,
            matrix=np.concatenate(matrices) if matrices else np.zeros((0, dim), np.float32),
            merchant_codes=np.concatenate(merchant_codes) if ids else np.zeros(0, np.int32),
            merchants=tuple(merchants),
            category_codes=np.concatenate(category_codes) if ids else np.zeros(0, np.int32),
            categories=tuple(categories),
            row_of={pk: row for row, pk in enumerate(all_ids.tolist())},
        )

    def mask(self, merchant: str | None, category: str | None) -> np.ndarray | None:
        """Rows passing the filter (None: all rows), the same semantics as
        ``store.filter_expression``: merchant equality, category subtree by path prefix."""
        mask = None
        if merchant:
            code = self.merchants.index(merchant) if merchant in self.merchants else -1
            mask = self.merchant_codes == code
        if category:
            prefix = category.rstrip("/") + "/"
            codes = [
                i
                for i, path in enumerate(self.categories)
                if path == category or path.startswith(prefix)
            ]
            in_category = np.isin(self.category_codes, codes)
            mask = in_category if mask is None else mask & in_category
        return mask

    def search(
        self, vector: np.ndarray, limit: int, merchant: str | None, category: str | None
    ) -> list[VectorHit]:
        if limit <= 0 or not len(self.ids):
            return []
        scores = self.matrix @ np.asarray(vector, dtype=np.float32)
        mask = self.mask(merchant, category)
        if mask is not None:
            rows = np.flatnonzero(mask)
            scores = scores[rows]
        else:
            rows = np.arange(len(self.ids))
        k = min(limit, len(rows))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
        # best first; equal scores by product id so results are reproducible
        order = top[np.lexsort((self.ids[rows[top]], -scores[top]))]
        return [VectorHit(int(self.ids[rows[i]]), float(scores[i])) for i in order]


def _codes(values: Iterable[str], table: dict[str, int], count: int) -> np.ndarray:
    """Small-integer code of each value, growing ``table`` (value -> code) as new ones appear."""
    return np.fromiter((table.setdefault(v, len(table)) for v in values), np.int32, count)


def read_snapshot(store: VectorStore) -> Snapshot:
    """Every row of ``store``'s collection (Milvus resolves upserts and deletes)."""
    pages = store.client.query_iterator(
        store.name, batch_size=READ_BATCH, output_fields=["id", VECTOR, MERCHANT, CATEGORY]
    )

    def each_page() -> Iterator[list[dict]]:
        try:
            while page := pages.next():
                yield page
        finally:
            pages.close()

    return Snapshot.build(each_page(), store.dim)


# --------------------------------------------------------------------------------------------
# The replica
# --------------------------------------------------------------------------------------------


class ExactReplica:
    """A ``VectorIndex`` answering from a snapshot of ``store`` that follows its generation.

    With ``background=True`` (serving) even the first load happens in a thread, and searches go
    to Milvus itself until it is done: reading 100k rows out of Milvus Lite takes about a
    minute, longer than a web worker may spend on one request.
    """

    def __init__(self, store: VectorStore, *, background: bool = False) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._generation = ""
        self._checked_at = time.monotonic()
        self._refreshing = False
        if background:
            self._start_refresh()
        else:
            self.refresh()

    def search(
        self,
        vector: np.ndarray,
        limit: int,
        *,
        merchant: str | None = None,
        category: str | None = None,
    ) -> list[VectorHit]:
        snapshot = self._current()
        if snapshot is None:
            return self.store.search(vector, limit, merchant=merchant, category=category)
        return snapshot.search(vector, limit, merchant, category)

    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        snapshot = self._current()
        if snapshot is None:
            return self.store.vectors(ids)
        rows = {int(i): snapshot.row_of.get(int(i)) for i in ids}
        return {i: snapshot.matrix[row] for i, row in rows.items() if row is not None}

    @property
    def loaded(self) -> bool:
        return self._snapshot is not None

    def __len__(self) -> int:
        return len(self._snapshot.ids) if self._snapshot is not None else 0

    def refresh(self) -> None:
        """Load now if never loaded or the collection changed (what the background check does)."""
        generation = generations.current(self.store.generation_marker)
        if self._snapshot is not None and generation == self._generation:
            return
        snapshot = read_snapshot(self.store)
        with self._lock:
            self._snapshot, self._generation = snapshot, generation

    def _current(self) -> Snapshot | None:
        now = time.monotonic()
        if now - self._checked_at >= REFRESH_CHECK_S:
            self._checked_at = now
            changed = generations.current(self.store.generation_marker) != self._generation
            if changed or self._snapshot is None:  # None: a failed first load is retried
                self._start_refresh()
        return self._snapshot

    def _start_refresh(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True
        threading.Thread(target=self._refresh_in_background, daemon=True).start()

    def _refresh_in_background(self) -> None:
        try:
            self.refresh()
        except Exception:
            logger.exception(
                "dense replica of %s: reload failed, serving the old snapshot", self.store.name
            )
        finally:
            with self._lock:
                self._refreshing = False
