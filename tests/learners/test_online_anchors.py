"""Anchored sub-queries (learners/online/anchors.py): isolated, no database, no model -- the
base's answers come from a stand-in table (the training side is in test_online_hourly)."""

from __future__ import annotations

from collections.abc import Sequence

from learners.online.anchors import anchor_pairs, anchor_weights
from learners.online.grounding import GroundingVocabulary, grounded_pairs
from learners.online.pairs import Pair
from tests.learners.test_online_grounding import MOPHIE_CHARGER, VOCABULARY, battery_catalog

PHONE = "cell-phones/phones/c00/0900"


def base_answer(queries: Sequence[str]) -> list[str | None]:
    """What the base decodes: a phone for "cell phones", nothing for "nothing"."""
    table = {"cell phones": PHONE, "nothing": None}
    return [table.get(q, f"base/{q.replace(' ', '-')}") for q in queries]


def test_the_runs_of_words_the_product_lacks_are_anchored_to_the_base_answer():
    # the charger holds "mophie" and "charger"; "cell phones" (every product) and "cheap" not
    pairs = [Pair("cell phones mophie cheap charger", MOPHIE_CHARGER, 4.0)]
    anchors = anchor_pairs(pairs, VOCABULARY, base_answer, taught=[], weight=0.5)
    assert {(p.query, p.docid, p.weight) for p in anchors} == {
        ("cell phones", PHONE, 2.0),
        ("cheap", "base/cheap", 2.0),
    }


def test_stopwords_are_trimmed_and_a_run_of_stopwords_is_no_anchor():
    pairs = [Pair("mophie for the charger with cell phones", MOPHIE_CHARGER)]
    assert set(anchor_weights(pairs, VOCABULARY, taught=[])) == {"cell phones"}


def test_what_the_hour_teaches_is_never_anchored():
    pairs = [Pair("cell phones", PHONE), Pair("cell phones mophie charger", MOPHIE_CHARGER)]
    taught = {p.query for p in pairs} | {
        p.query for p in grounded_pairs(pairs, VOCABULARY, weight=0.5)
    }
    assert anchor_weights(pairs, VOCABULARY, taught=[]) == {"cell phones": 2.0}
    # but "cell phones" is itself a traffic query: shoppers' clicks say what it means
    assert anchor_weights(pairs, VOCABULARY, taught) == {}


def test_a_held_word_refused_as_another_type_is_anchored():
    vocabulary = GroundingVocabulary(battery_catalog(), generic_share=1.0)
    pairs = [Pair("iphone battery cases", "c/battery-cases/0000")]
    # "battery" alone asks for a battery: it keeps the base's answer; "cases" is not held
    assert set(anchor_weights(pairs, vocabulary, taught=[])) == {"battery", "cases"}


def test_weights_sum_over_pairs_and_are_capped_and_weight_zero_turns_anchors_off():
    pairs = [
        Pair("cell phones mophie charger", MOPHIE_CHARGER, 16.0),
        Pair("mophie cell phones", MOPHIE_CHARGER, 8.0),
    ]
    assert anchor_weights(pairs, VOCABULARY, taught=[]) == {"cell phones": 24.0}
    capped = anchor_pairs(pairs, VOCABULARY, base_answer, taught=[], weight=1.0)
    assert [(p.query, p.weight) for p in capped] == [("cell phones", 16.0)]
    assert anchor_pairs(pairs, VOCABULARY, base_answer, taught=[], weight=0.0) == []


def test_an_anchor_the_base_cannot_answer_is_dropped():
    pairs = [Pair("mophie nothing", MOPHIE_CHARGER)]
    assert anchor_weights(pairs, VOCABULARY, taught=[]) == {"nothing": 1.0}
    assert anchor_pairs(pairs, VOCABULARY, base_answer, taught=[], weight=1.0) == []
