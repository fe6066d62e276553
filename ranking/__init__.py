"""Search: recall paths, fusion and the ``search()`` entry point other apps call.

Only ``search`` and ``SearchQueryError`` are public. The implementation is imported lazily
because Django imports this package while loading apps, before models may be touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ranking.errors import SearchQueryError

if TYPE_CHECKING:
    from ranking.types import SearchResponse

__all__ = ["SearchQueryError", "search"]


def search(
    query: str,
    k: int = 10,
    merchant: str | None = None,
    category: str | None = None,
    offset: int = 0,
    debug: bool = False,
    pipeline: str = "default",
) -> SearchResponse:
    """Rank the catalog for ``query``; see :func:`ranking.service.search`."""
    from ranking.service import search as run_search

    return run_search(
        query,
        k=k,
        merchant=merchant,
        category=category,
        offset=offset,
        debug=debug,
        pipeline=pipeline,
    )
