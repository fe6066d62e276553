"""The paired bootstrap behind ``bench relevance``'s comparison table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ranking.benchmarks.significance import paired_bootstrap, shortfall_closed


def scores(values) -> dict[str, float]:
    return {f"q{i}": float(v) for i, v in enumerate(values)}


def test_a_pipeline_against_itself_differs_by_nothing():
    same = scores(np.linspace(0.1, 0.9, 40))
    c = paired_bootstrap(same, same, resamples=500)
    assert c.delta == c.delta_low == c.delta_high == 0.0
    assert c.closed == pytest.approx(0.0) and c.better_share == 0.0


def test_better_on_every_query_is_better_in_every_resample():
    base = np.random.default_rng(1).uniform(0.2, 0.8, 50)
    c = paired_bootstrap(scores(base), scores(base + 0.1), resamples=500)
    assert c.delta == pytest.approx(0.1)
    assert 0.1 - 1e-9 <= c.delta_low <= c.delta_high <= 0.1 + 1e-9
    assert c.better_share == 1.0
    assert c.closed == pytest.approx(1 - (1 - base.mean() - 0.1) / (1 - base.mean()))


def test_one_lucky_query_leaves_the_interval_around_zero():
    # the mean difference comes from one query out of forty: resamples without it show none
    base = np.full(40, 0.5)
    lucky = base.copy()
    lucky[0] = 1.0
    c = paired_bootstrap(scores(base), scores(lucky), resamples=2000)
    assert c.delta == pytest.approx(0.5 / 40)
    assert c.delta_low == 0.0 < c.delta_high
    assert 0.5 < c.better_share < 0.8  # P(q0 drawn at least once) = 1 - (39/40)^40 ~ 0.64


def test_only_shared_queries_count_and_resampling_is_reproducible():
    base = scores([0.2, 0.4, 0.6, 0.8])
    other = {**scores([0.3, 0.4, 0.9, 0.8]), "extra": 0.0}
    first = paired_bootstrap(base, other, resamples=300, seed=7)
    assert first == paired_bootstrap(base, other, resamples=300, seed=7)
    assert first.delta == pytest.approx(0.1)
    with pytest.raises(ValueError, match="share no scored query"):
        paired_bootstrap(base, {"other": 1.0})
    with pytest.raises(ValueError, match="at least 1"):
        paired_bootstrap(base, other, resamples=0)


def test_shortfall_closed_is_undefined_for_a_perfect_baseline():
    closed = shortfall_closed(np.array([0.8, 1.0]), np.array([0.9, 1.0]))
    assert closed[0] == pytest.approx(0.5) and math.isnan(closed[1])
