"""Recall paths: each proposes candidate products for a query, independently of the others.

A path is anything with a ``name`` and a ``recall()`` method; pipelines combine them. The
generative and dense paths register here when their models exist (see later issues).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ranking import inverted, spelling
from ranking.types import Candidate


@dataclass
class RecallRequest:
    query: str
    terms: list[str]
    limit: int
    merchant: str | None = None
    category: str | None = None


@dataclass
class RecallResult:
    candidates: list[Candidate]
    total: int  # matches in this path (may exceed len(candidates))
    facets: dict[str, int] = field(default_factory=dict)
    corrected_query: str | None = None


class RecallPath(Protocol):
    name: str

    def recall(self, request: RecallRequest) -> RecallResult: ...


class InvertedRecall:
    """BM25 over the tantivy index.

    A query word that no product holds -- in a title, brand, category or description -- is a
    typo or a word the shop does not use, and leaves the query to its other words ("chargr for
    samsng" ranked whatever holds "for"). Such words are replaced by close, frequent catalog
    words first, and the corrected query is reported (``corrected_query``). Otherwise, when
    the query matches nothing in the primary field, it retries on product descriptions.
    """

    name = "bm25"

    def __init__(self, with_facets: bool = True) -> None:
        self.with_facets = with_facets

    def recall(self, request: RecallRequest) -> RecallResult:
        if request.merchant:
            return self._recall_one(inverted.get_index(request.merchant), request)
        per_merchant = [self._recall_one(ix, request) for ix in inverted.merchant_indexes()]
        return merge_results(per_merchant, request.limit)

    def _recall_one(self, index: inverted.InvertedIndex, request: RecallRequest) -> RecallResult:
        corrected = self._corrected(index, request)
        if corrected:
            result = self._run(index, request, corrected, inverted.PRIMARY_FIELD)
            if result.total:
                result.corrected_query = " ".join(corrected)
                return result
        result = self._run(index, request, request.terms, inverted.PRIMARY_FIELD)
        if result.total == 0:
            result = self._run(index, request, request.terms, inverted.FALLBACK_FIELD)
        return result

    @staticmethod
    def _corrected(index: inverted.InvertedIndex, request: RecallRequest) -> list[str] | None:
        """The query with its words that no product holds corrected, or None. A word of the
        spelling vocabulary is known at once; any other is looked up in both fields (stemmed,
        so "chargers" is known where titles say "charger")."""
        vocabulary = index.vocabulary.counts

        def held(term: str) -> bool:
            return term in vocabulary or any(
                index.count([term], merchant=request.merchant, category=None, field=field)
                for field in (inverted.PRIMARY_FIELD, inverted.FALLBACK_FIELD)
            )

        return spelling.correct_terms(request.terms, vocabulary, known=held)

    def _run(
        self, index: inverted.InvertedIndex, request: RecallRequest, terms: list[str], field: str
    ) -> RecallResult:
        hits, total = index.search(
            terms,
            limit=request.limit,
            merchant=request.merchant,
            category=request.category,
            field=field,
        )
        candidates = [
            Candidate(product_id=hit.product_id, score=hit.score, path=self.name, rank=rank)
            for rank, hit in enumerate(hits, start=1)
        ]
        facets = {}
        if self.with_facets and total:
            facets, total = self._facets(index, request, terms, field, total)
        return RecallResult(candidates=candidates, total=total, facets=facets)

    @staticmethod
    def _facets(
        index: inverted.InvertedIndex,
        request: RecallRequest,
        terms: list[str],
        field: str,
        total: int,
    ) -> tuple[dict[str, int], int]:
        """Category counts and the match count over the products holding *every* query word
        when some do, else over those holding any (as Algolia counts its hits).

        The ranking itself stays any-word BM25, but counted that way a word every product
        carries drowns the facets: "phones" is in each product's category names in a phone
        shop, so "unlocked phones" counted 3,291 matches with cases as the largest category.
        """
        scope = {"merchant": request.merchant, "category": request.category, "field": field}
        if len(set(terms)) > 1:
            strict = index.count(terms, every_word=True, **scope)
            if strict:
                return index.category_counts(terms, every_word=True, **scope), strict
        return index.category_counts(terms, **scope), total


def merge_results(results: list[RecallResult], limit: int) -> RecallResult:
    """Combine one path's results from several merchants' indexes by score."""
    candidates = sorted((c for r in results for c in r.candidates), key=lambda c: -c.score)[:limit]
    for rank, candidate in enumerate(candidates, start=1):
        candidate.rank = rank
    facets: dict[str, int] = {}
    for result in results:
        for path, count in result.facets.items():
            facets[path] = facets.get(path, 0) + count
    corrections = [r.corrected_query for r in results if r.corrected_query and r.total]
    return RecallResult(
        candidates=candidates,
        total=sum(r.total for r in results),
        facets=facets,
        corrected_query=corrections[0] if corrections else None,
    )
