"""Query intent from the catalog's own text: what kind of thing a query asks for.

Fused rankings put what the query asks for first, read in one of two ways (no judgments, no
logs):

*A product type.* In a department's catalog the word that names the type carries the intent
but has the lowest IDF. Every product of a "Cell Phones" store says "phone" somewhere, so BM25
ranks by the modifiers: "camera phones" returns camera lenses, "cell phones virgin mobile"
Virgin Mobile top-up cards. English noun compounds are head-final: the last noun names the
type and the words before it qualify it ("phone cords" are cords, "camera phones" phones),
which is what e-commerce query classifiers learn from logs. Here:

* a product's *type noun* is the head of its title's product phrase (the phrase before
  " for ", qualifiers such as "unlocked" dropped): "Samsung - Galaxy J3 Prepaid Cell Phone -
  Gold" is a ``phone``, "Otterbox - Defender Series Case for iPhone 7" a ``case``;
* a query names a type when its last word, singular, after trailing brand words ("cell
  phones tracfone" -> "cell phones") is the type noun of some candidate.

*The product itself.* A query that names no type ("samsung s7", "nexus") names a product
line, and shoppers want the product, not what fits it: products whose title's product
segment (before " for ") and brand hold every query word come before those that only name it
as what they fit ("Cover for Samsung Galaxy S7").

Either way the fused top ``depth`` is stably partitioned: the wanted products move ahead, each
group keeps its fused order, so fusion and the ranker still order the products within it.

Measured on the BestBuy dev set (``bench relevance``, same models, generative fusion weight
0.2 as then; README): hybrid NDCG@10 0.8594 without either rule, 0.8863 with the type rule
alone, 0.8959 with both. Among the queries it lowers, the largest losses lift products
nobody judged ("cell phones battery cases": mophie battery cases; "go protection": "Dual Layer
Protection" cases).
``SEARCH_INTENT_DEPTH`` (default 50, 0 turns it off) bounds how far down a product may be
lifted from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Protocol

from learners import conf
from learners.generative.data import singular, split_title, words
from ranking.features import content_words
from ranking.types import Candidate


class Described(Protocol):
    """What intent reads about a product: ``ProductInfo`` at search time, the training
    data's ``ProductDoc`` when BM25 teaches the generative model."""

    @property
    def title(self) -> str: ...

    @property
    def brand(self) -> str: ...


DEFAULT_DEPTH = 50
TYPE_NOUN_CACHE = 200_000


def depth() -> int:
    value = conf.get("SEARCH_INTENT_DEPTH", DEFAULT_DEPTH)
    if value < 0:
        raise ValueError(f"SEARCH_INTENT_DEPTH must not be negative, got {value}")
    return value


@lru_cache(maxsize=TYPE_NOUN_CACHE)
def type_noun(title: str, brand: str) -> str:
    """The singular head noun of a title's product phrase, "" when the title has none
    ("Apple - iPhone 7 32GB - Black" names a model, not a type). Memoised like
    ``features.content_words``: searches keep asking about the same titles."""
    phrase = split_title(title, brand).product_type
    return singular(phrase.split()[-1]) if phrase else ""


def product_type(info: Described) -> str:
    return type_noun(info.title, info.brand)


def query_type(query: str, infos: Iterable[Described]) -> str | None:
    """The type noun ``query`` names among the candidates ``infos``, or None."""
    infos = list(infos)
    nouns = {product_type(i) for i in infos} - {""}
    if not nouns:
        return None
    brand_words = {w for i in infos for w in _brand_words(i.brand)}
    terms = [singular(w) for w in words(query)]
    while terms and terms[-1] in brand_words and terms[-1] not in nouns:
        terms.pop()
    return terms[-1] if terms and terms[-1] in nouns else None


@lru_cache(maxsize=TYPE_NOUN_CACHE)
def _brand_words(brand: str) -> tuple[str, ...]:
    """A brand's words, memoised: every search reads the brands of its top 50 candidates,
    and a shop has a few hundred brands."""
    return tuple(words(brand))


@lru_cache(maxsize=TYPE_NOUN_CACHE)
def own_words(title: str, brand: str) -> frozenset[str]:
    """The words a title says about the product itself: brand, product segment up to " for ",
    variant ("Spigen - Rugged Armor Case for Galaxy S7 - Black" -> spigen rugged armor case
    black); not the devices it fits."""
    parts = split_title(title, brand)
    product = parts.main.partition(" for ")[0]
    return content_words(f"{brand} {product} {parts.variant}")


def names_product(query_words: frozenset[str], info: Described) -> bool:
    """Whether every query word is one of the product's own words: "samsung s7" names the
    Galaxy S7 itself, not a "Cover for Samsung Galaxy S7"."""
    return query_words <= own_words(info.title, info.brand)


def read_query(
    query: str,
    ranked: Sequence[Candidate],
    infos: Mapping[int, Described],
    window: int | None = None,
) -> tuple[list[Candidate], str | None]:
    """``ranked`` with its top ``window`` stably partitioned by what the query asks for, and
    that reading: ``"type:<noun>"`` (products of that type first), ``"product"`` (a query
    naming no type: products it names first) or None (order unchanged). Ranks are
    renumbered; scores are left as fusion gave them."""
    window = depth() if window is None else window
    top = list(ranked[:window])
    described = {c.product_id: infos[c.product_id] for c in top if c.product_id in infos}
    wanted, reading = _wanted(query, described)
    if not wanted:
        return list(ranked), None
    reordered = [c for c in top if c.product_id in wanted]
    reordered += [c for c in top if c.product_id not in wanted] + list(ranked[window:])
    for rank, candidate in enumerate(reordered, start=1):
        candidate.rank = rank
    return reordered, reading


def _wanted(query: str, described: Mapping[int, Described]) -> tuple[set[int], str | None]:
    """The ids of ``described`` the query asks for first, and the reading (empty, None: none)."""
    noun = query_type(query, described.values())
    if noun is not None:
        return {pid for pid, d in described.items() if product_type(d) == noun}, f"type:{noun}"
    query_words = content_words(query)
    if not query_words:
        return set(), None
    return {pid for pid, d in described.items() if names_product(query_words, d)}, "product"
