"""Grounded sub-queries: the words of a clicked query that the clicked product itself holds.

A shopper who searched "samsung incipio case" and bought an Incipio case for a Samsung phone
says more than "this query, this product": the product answers "incipio" and "samsung case"
too. The hour's pairs alone teach an adapter whole queries, and the queries nobody searched
(what the learning curve measures, and most of a real store's long tail) share words with the
searched ones, not whole strings. So for every training pair this adds

* each query word the product's title, brand or category names hold, as a one-word query, and
* the query cut down to those words, when that leaves at least two and drops at least one,

at ``weight`` times the pair's weight (summed over the pairs that yield the same example, then
capped like any pair). Only words the product holds are used: a word the shopper typed that the
product lacks ("cheap", a misspelling, a competitor's brand) would teach a wrong association.
Words in more than ``generic_share`` of the catalog ("black", "case" in a phone-accessory
store) and stopwords are left out: alone they name hundreds of products, so one click cannot
say which of them the word means.

A sub-query whose last word names a product type the product is not of is left out as well.
Noun compounds are head-final (see :mod:`ranking.intent`): a click on an "External Battery
Case" after "cell phones battery cases" says the case answers "battery cases", not that it
answers "battery" — alone that word asks for batteries, a type of its own in the catalog. On
the learning curve's never-searched queries, grounding "battery" to the cases clicked for the
searched ones had cost the eval query "battery" 0.41 of its NDCG@10; with this rule the curve
ended at +5.4% / +4.4% on two seeds against +4.8% / +1.8% (README "Online learning").
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from learners.generative.data import STOPWORDS, ProductDoc, singular, words
from learners.online.pairs import Pair
from ranking.intent import type_noun

#: a head noun names a product type once this many titles end in it (one "High-Definition
#: Screen" among the screen protectors does not make "screen" a type)
MIN_TYPE_PRODUCTS = 3
_CONJUNCTION = re.compile(r"\s*(?:&|,|\band\b)\s*")


class GroundingVocabulary:
    """The distinctive words of each product (title, brand, categories), by docid."""

    def __init__(self, products: Sequence[ProductDoc], generic_share: float = 0.1) -> None:
        held = {p.docid: frozenset(_product_words(p)) for p in products}
        document_frequency = Counter(word for ws in held.values() for word in ws)
        limit = generic_share * max(len(products), 1)
        generic = {w for w, df in document_frequency.items() if df > limit} | STOPWORDS
        self.words_of: dict[str, frozenset[str]] = {d: ws - generic for d, ws in held.items()}
        self.types_of = {p.docid: _types(p) for p in products}
        brand_words = {w for p in products for w in words(p.brand)}
        title_types = Counter(type_noun(p.title, p.brand) for p in products)
        types = {t for t, n in title_types.items() if n >= MIN_TYPE_PRODUCTS}
        self.type_nouns = frozenset(types - brand_words - {""})

    def held(self, query: str, docid: str) -> list[str]:
        """The query's distinctive words that the product holds, in query order, once each."""
        product = self.words_of.get(docid, frozenset())
        return list(dict.fromkeys(w for w in words(query) if w in product))

    def names_another_type(self, query: str, docid: str) -> bool:
        """Whether ``query``'s last word, singular, is a catalog type noun (a title's head noun,
        not a brand) that the product is not: neither its own head noun nor its categories'."""
        head = singular(words(query)[-1])
        return head in self.type_nouns and head not in self.types_of.get(docid, ())


def grounded_pairs(
    pairs: Iterable[Pair],
    vocabulary: GroundingVocabulary,
    *,
    weight: float,
    max_weight: float = 16.0,
) -> list[Pair]:
    """The grounded sub-queries of ``pairs`` (see the module docstring); [] when weight is 0."""
    if weight <= 0:
        return []
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for pair in pairs:
        query_words = words(pair.query)
        if len(query_words) < 2:
            continue  # a one-word query is its own only sub-query
        held = vocabulary.held(pair.query, pair.docid)
        sub_queries = list(held)
        if 2 <= len(held) < len(query_words):
            sub_queries.append(" ".join(held))
        for query in sub_queries:
            if not vocabulary.names_another_type(query, pair.docid):
                sums[(query, pair.docid)] += weight * pair.weight
    return [Pair(q, d, min(w, max_weight)) for (q, d), w in sorted(sums.items())]


def _product_words(product: ProductDoc) -> list[str]:
    return words(" ".join([product.title, product.brand, *product.categories]))


def _types(product: ProductDoc) -> frozenset[str]:
    """What the product is: its title's head noun and its categories' ("Wireless Chargers &
    Cases": a charging stand is a charger)."""
    parts = (part for name in product.categories for part in _CONJUNCTION.split(name))
    heads = [singular(part_words[-1]) for part_words in map(words, parts) if part_words]
    return frozenset([type_noun(product.title, product.brand), *heads]) - {""}
