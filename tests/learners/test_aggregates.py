"""Hourly aggregates from stored events: counts, attribution, idempotent recomputation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from learners import aggregates
from learners.events.consumer import store_events
from learners.events.schema import parse_event
from learners.models import HourlyAggregate
from tests.learners import factories as f

T0 = f.T0  # 10:00 UTC
pytestmark = pytest.mark.django_db


def store(*events: dict) -> None:
    store_events(parse_event(e) for e in events)


def row(level: str, query: str = "", sku: str = "", merchant: str = "phone-shop"):
    return HourlyAggregate.objects.get(
        hour=T0, merchant=merchant, level=level, query=query, sku=sku
    )


def test_counts_per_query_sku_and_query():
    store(
        f.impression(skus=("P1", "P2", "P3"), query="  iPhone  Case ", ts=T0),
        f.impression(skus=("P2", "P1"), query="iphone case", request_id="req-2", ts=T0),
        f.click("P2", 2, ts=T0 + timedelta(minutes=1)),
        f.click("P2", 1, request_id="req-2", ts=T0 + timedelta(minutes=2)),
        f.add_to_cart("P2", request_id="req-1", ts=T0 + timedelta(minutes=3)),
        f.purchase("P2", 2, "29.99", request_id="req-1", ts=T0 + timedelta(minutes=4)),
    )
    report = aggregates.aggregate_hour(T0 + timedelta(minutes=30))
    assert report.events == 6 and report.hour == T0

    p2 = row("query_sku", "iphone case", "P2")
    assert (p2.impressions, p2.clicks, p2.add_to_carts, p2.purchases, p2.units) == (2, 2, 1, 1, 2)
    assert p2.revenue == Decimal("59.98")
    # shown at 2 and at 1: examination 1/log2(3) + 1
    assert p2.examination == pytest.approx(1 / aggregates.math.log2(3) + 1)
    assert row("query_sku", "iphone case", "P3").clicks == 0
    search = row("query", "iphone case")
    assert (search.impressions, search.clicks, search.purchases) == (2, 2, 1)
    assert row("sku", sku="P1").impressions == 2


def test_purchase_without_request_id_goes_to_last_click_of_session():
    store(
        f.impression(
            skus=("P1",), query="old query", request_id="r-old", ts=T0 - timedelta(hours=3)
        ),
        f.impression(skus=("P1",), query="case", request_id="r-new", ts=T0 - timedelta(minutes=5)),
        f.click("P1", request_id="r-old", ts=T0 - timedelta(hours=3)),
        f.click("P1", request_id="r-new", ts=T0 - timedelta(minutes=4)),
        f.purchase("P1", ts=T0 + timedelta(minutes=1), request_id=None),
        f.purchase("P9", ts=T0 + timedelta(minutes=1), request_id=None),  # never clicked
    )
    aggregates.aggregate_hour(T0)
    assert row("query_sku", "case", "P1").purchases == 1
    assert not HourlyAggregate.objects.filter(query="old query", hour=T0).exists()
    # unattributable purchases still count for the sku
    assert row("sku", sku="P9").purchases == 1
    # the impressions of earlier hours are not counted in this hour
    assert not HourlyAggregate.objects.filter(hour=T0, level="query").exclude(query="case")


def test_recomputing_an_hour_replaces_it():
    store(f.impression(ts=T0), f.click("P1", ts=T0))
    first = aggregates.aggregate_hour(T0)
    store(f.click("P1", ts=T0 + timedelta(minutes=59)))  # a late event
    second = aggregates.aggregate_hour(T0)
    third = aggregates.aggregate_hour(T0)
    assert first.rows == second.rows == third.rows
    assert row("query_sku", "iphone case", "P1").clicks == 2
    assert HourlyAggregate.objects.filter(hour=T0).count() == third.rows


def test_hours_and_merchants_are_separate():
    store(
        f.impression(ts=T0),
        f.impression(ts=T0 + timedelta(hours=1)),
        f.impression(merchant="grocer", ts=T0),
    )
    aggregates.aggregate_hour(T0, merchant="phone-shop")
    assert set(HourlyAggregate.objects.values_list("merchant", flat=True)) == {"phone-shop"}
    assert row("query", "iphone case").impressions == 1
    aggregates.aggregate_hour(T0)
    assert row("query", "iphone case", merchant="grocer").impressions == 1


def test_empty_hour_clears_old_rows():
    store(f.impression(ts=T0))
    aggregates.aggregate_hour(T0)
    from learners.models import Event

    Event.objects.all().delete()
    assert aggregates.aggregate_hour(T0).rows == 0
    assert not HourlyAggregate.objects.exists()


def test_smoothed_features():
    store(
        *[f.impression(skus=("P1", "P2"), request_id=f"r{i}", ts=T0) for i in range(50)],
        *[f.click("P1", 1, request_id=f"r{i}", ts=T0) for i in range(10)],
    )
    aggregates.aggregate_hour(T0)
    features = aggregates.ctr_features("phone-shop", since=T0, until=T0 + timedelta(hours=1))
    p1, p2 = features[("iphone case", "P1")], features[("iphone case", "P2")]
    assert (p1.impressions, p1.clicks) == (50, 10)
    prior = 10 / 100
    assert p1.ctr == pytest.approx((10 + prior * 20) / (50 + 20))
    assert 0 < p2.ctr < prior < p1.ctr < 10 / 50  # shrunk towards the prior from both sides
    # P1 sat at position 1 (weight 1) while P2 was shown lower and rarely examined, so the
    # position-debiased prior is higher and P1 gets no credit for its position
    assert p1.coec > p1.ctr
    sku_level = aggregates.ctr_features("phone-shop", since=T0, level="sku")
    assert set(sku_level) == {("", "P1"), ("", "P2")}


def test_smoothed_rate_limits():
    assert aggregates.smoothed_rate(0, 0, 0.1, 20) == 0.1
    assert aggregates.smoothed_rate(5000, 10000, 0.1, 20) == pytest.approx(0.5, abs=1e-3)


def test_previous_hour_and_floor():
    assert aggregates.previous_hour(T0 + timedelta(minutes=5)) == T0 - timedelta(hours=1)
    assert aggregates.hour_floor(T0.replace(tzinfo=None, minute=59)) == T0
