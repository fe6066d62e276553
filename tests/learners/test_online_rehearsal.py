"""Clicked-product rehearsal: the base pool's queries of the products an hour's pairs teach."""

from __future__ import annotations

import pytest

from learners.online.pairs import Pair
from learners.online.rehearsal import clicked_views

POOL = [
    Pair("otterbox case", "cases/c1/0001"),
    Pair("defender series", "cases/c1/0001"),
    Pair("rugged cases", "cases/c1/0001", prefix_only=True),
    Pair("black case", "cases/c1/0001"),
    Pair("car charger", "chargers/0007"),
    Pair("fast car charger", "chargers/0007"),
    Pair("galaxy s7", "phones/0003"),
]


def rehearse(train, *, weight=0.5, per_product=2, max_weight=16.0, taught=(), seed="0:h1"):
    return clicked_views(
        train,
        POOL,
        weight=weight,
        per_product=per_product,
        max_weight=max_weight,
        taught=set(taught),
        seed=seed,
    )


def test_only_the_taught_products_are_rehearsed_at_most_per_product_each():
    train = [Pair("iphone case", "cases/c1/0001", 2.0), Pair("car charger usb", "chargers/0007")]
    rehearsed = rehearse(train)
    docids = [p.docid for p in rehearsed]
    assert sorted(set(docids)) == ["cases/c1/0001", "chargers/0007"]
    assert docids.count("cases/c1/0001") == 2 and docids.count("chargers/0007") == 2
    pool = {(p.query, p.docid, p.prefix_only) for p in POOL}
    assert all((p.query, p.docid, p.prefix_only) in pool for p in rehearsed)


def test_a_product_s_weight_is_its_pairs_summed_capped_and_split_over_its_views():
    train = [Pair("iphone case", "cases/c1/0001", 3.0), Pair("otter", "cases/c1/0001", 1.0)]
    weights = [p.weight for p in rehearse(train, weight=0.5, per_product=2)]
    assert weights == pytest.approx([0.5 * 4.0 / 2] * 2)
    capped = [p.weight for p in rehearse(train, weight=0.5, per_product=2, max_weight=2.0)]
    assert capped == pytest.approx([0.5 * 2.0 / 2] * 2)


def test_queries_the_hour_teaches_anyway_are_left_out():
    train = [Pair("car charger", "chargers/0007")]
    rehearsed = rehearse(train, per_product=5, taught={"car charger"})
    assert [p.query for p in rehearsed] == ["fast car charger"]


def test_hours_draw_different_views_and_a_draw_is_reproducible():
    train = [Pair("iphone case", "cases/c1/0001")]
    draws = {
        tuple(p.query for p in rehearse(train, per_product=1, seed=f"0:h{h}")) for h in range(12)
    }
    assert len(draws) > 1
    assert rehearse(train, per_product=1, seed="0:h3") == rehearse(
        train, per_product=1, seed="0:h3"
    )


def test_prefix_only_pool_pairs_stay_prefix_only():
    train = [Pair("iphone case", "cases/c1/0001")]
    rehearsed = rehearse(train, per_product=4)
    assert {p.query: p.prefix_only for p in rehearsed}["rugged cases"] is True


def test_weight_or_count_zero_turns_it_off():
    train = [Pair("iphone case", "cases/c1/0001")]
    assert rehearse(train, weight=0.0) == [] and rehearse(train, per_product=0) == []
