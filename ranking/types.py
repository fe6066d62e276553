"""Result types shared by every recall path, the fusion step and the HTTP layer."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any


@dataclass
class Candidate:
    """One product proposed by one recall path, before fusion."""

    product_id: int
    score: float
    path: str  # "bm25", "generative", "dense", ...
    rank: int  # 1-based rank within that path


@dataclass
class SearchResult:
    product_id: int
    sku: str
    merchant: str
    title: str
    brand: str
    price: Decimal | None
    category_path: str  # slugs joined by "/", e.g. "cell-phones/cases"
    category_name: str  # breadcrumb, e.g. "Cell Phones > Cases"
    docid: str | None
    score: float
    paths: list[str]  # recall paths that proposed this product
    image_url: str = ""
    #: False when a generative model is serving and this product was added after it was
    #: trained ("not yet learned"); None when no generative model is active.
    learned: bool | None = None
    debug: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        # by hand rather than dataclasses.asdict, which deep-copies every value (a tenth of
        # a bm25 API request's time); the debug dict is the caller's to keep
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["paths"] = list(self.paths)
        data["price"] = float(self.price) if self.price is not None else None
        if self.debug is None:
            data.pop("debug")
        return data


@dataclass
class FacetCount:
    path: str
    name: str
    count: int


@dataclass
class SearchResponse:
    request_id: str
    query: str
    results: list[SearchResult]
    total: int  # number of matching products (before k/offset)
    took_ms: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    facets: list[FacetCount] = field(default_factory=list)
    #: set when the literal query matched nothing and a spelling-tolerant retry was used
    corrected_query: str | None = None
    #: the learned-model version that served this response (registry name), if any; recorded
    #: in impressions so online learning can attribute events to a model.
    model_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "query": self.query,
            "total": self.total,
            "took_ms": round(self.took_ms, 2),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "corrected_query": self.corrected_query,
            "model_version": self.model_version,
            "facets": [{"path": f.path, "name": f.name, "count": f.count} for f in self.facets],
            "results": [r.to_json() for r in self.results],
        }
