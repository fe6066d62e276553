"""Anchored sub-queries: the parts of a clicked query the product does *not* answer keep the
base model's answer.

Grounding (:mod:`~learners.online.grounding`) teaches the words of a clicked query that the
product holds. The rest of the query is taught too, implicitly: a pair "cell phones battery
cases" → a battery case moves the model's answer for every query near that string, and the
nearest are its own sub-phrases. On the learning curve's never-searched queries that bleed was
the largest loss left after grounding: eval "cell phones" (−0.16 NDCG@10 averaged over three
seeds) drifted from phones towards the chargers and battery cases clicked for "cell phones
chargers", "cell phones battery cases" and "cell phones rechargeable".

So for every training pair this adds, as an example whose target is the base model's own top
docid for it:

* each maximal run of query words the product does not hold, stopwords trimmed ("cell
  phones" and "cases" in "cell phones battery cases" → an External Battery Case, whose
  distinctive word is "battery"), and
* each held word that grounding refused because it names another product type ("battery").

Anchors the hour teaches otherwise (a traffic query, a grounded sub-query) are left out, and
so are runs of stopwords. The weight is ``weight`` times the summed weight of the pairs that
yield the anchor (capped like any pair): the more traffic pushes on a neighbour, the more it is
held. Because distillation (``ONLINE_DISTILL``) applies to every training input, an anchor
also keeps the base's whole docid distribution at the positions of its answer, not only the
answer itself.

Measured on the 24-hour BestBuy learning curve (README, Online learning), anchors at 0.5 did
what they aim at -- eval "cell phones" held where the default loses it -- but held back the
words traffic *should* move ("mobile"), and the net was lower (+3.7% / +4.1% against +5.4% /
+4.4% on seeds 1 / 2). Hence ``ONLINE_ANCHOR_WEIGHT`` defaults to 0: kept as a knob for
catalogs whose traffic bleeds into short head queries more than BestBuy's does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from learners.generative.data import STOPWORDS, words
from learners.online.grounding import GroundingVocabulary
from learners.online.pairs import Pair

#: the base model's top docid for each query (None when it decodes nothing)
BaseAnswers = Callable[[Sequence[str]], Sequence[str | None]]


def anchor_weights(
    pairs: Iterable[Pair], vocabulary: GroundingVocabulary, taught: Iterable[str]
) -> dict[str, float]:
    """Anchor query → summed weight of the pairs that yield it, minus the ``taught`` queries."""
    sums: dict[str, float] = defaultdict(float)
    for pair in pairs:
        for query in _anchors(pair, vocabulary):
            sums[query] += pair.weight
    for query in taught:
        sums.pop(query, None)
    return dict(sums)


def anchor_pairs(
    pairs: Sequence[Pair],
    vocabulary: GroundingVocabulary,
    answer: BaseAnswers,
    *,
    taught: Iterable[str],
    weight: float,
    max_weight: float = 16.0,
) -> list[Pair]:
    """Each anchor of ``pairs`` (module docstring) → the base's answer; [] when weight is 0."""
    if weight <= 0:
        return []
    sums = anchor_weights(pairs, vocabulary, taught)
    queries = sorted(sums)
    return [
        Pair(query, docid, min(weight * sums[query], max_weight))
        for query, docid in zip(queries, answer(queries), strict=True)
        if docid is not None
    ]


def _anchors(pair: Pair, vocabulary: GroundingVocabulary) -> list[str]:
    held = set(vocabulary.held(pair.query, pair.docid))
    runs: list[list[str]] = [[]]
    for word in words(pair.query):
        if word in held:
            runs.append([])
        else:
            runs[-1].append(word)
    unheld = [" ".join(_trim(run)) for run in runs if any(w not in STOPWORDS for w in run)]
    other_type = [w for w in held if vocabulary.names_another_type(w, pair.docid)]
    return list(dict.fromkeys(unheld + other_type))


def _trim(run: list[str]) -> list[str]:
    """``run`` without leading and trailing stopwords ("or samsung" → "samsung")."""
    content = [i for i, word in enumerate(run) if word not in STOPWORDS]
    return run[content[0] : content[-1] + 1]
