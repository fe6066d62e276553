"""The event store write: idempotent on event_id, with honest counts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from learners.events.consumer import event_row, store_events
from learners.events.schema import parse_event
from learners.models import Event
from tests.learners import factories as f

pytestmark = pytest.mark.django_db


def test_store_is_idempotent_on_event_id():
    events = [parse_event(e) for e in f.session_events(3)]
    assert store_events(events) == (12, 0)
    assert store_events(events) == (0, 12)
    assert store_events([events[0], events[0], parse_event(f.click())]) == (1, 2)
    assert Event.objects.count() == 13


def test_row_columns_follow_the_type():
    purchase = event_row(parse_event(f.purchase(quantity=2, price="5.50", request_id=None)))
    assert (purchase.sku, purchase.quantity, str(purchase.price)) == ("P1", 2, "5.50")
    assert purchase.request_id == "" and purchase.position is None
    impression = event_row(parse_event(f.impression()))
    assert impression.sku == "" and impression.query == "iphone case"
    assert impression.payload["model_version"] == "bm25"


def test_stored_row_holds_the_validated_event():
    """The fast INSERT adapts values itself; reading the row back through the ORM must give
    what the event said, with the complete event as payload."""
    purchase = parse_event(f.purchase(quantity=3, price="12.50", request_id=None))
    impression = parse_event(f.impression(query="  usb cable "))
    assert store_events([purchase, impression]) == (2, 0)
    row = Event.objects.get(event_id=purchase.event_id)
    assert (row.type, row.merchant, row.session_id, row.ts) == (
        "purchase",
        purchase.merchant,
        purchase.session_id,
        purchase.ts,
    )
    assert (row.quantity, row.price, row.request_id, row.position) == (
        3,
        Decimal("12.50"),
        "",
        None,
    )
    assert row.payload == purchase.model_dump(mode="json")
    assert row.received_at is not None
    shown = Event.objects.get(event_id=impression.event_id)
    assert (shown.query, shown.sku, shown.request_id) == ("usb cable", "", "req-1")
    assert shown.payload["items"] == [
        {"sku": s, "position": n} for n, s in enumerate(["P1", "P2", "P3"], 1)
    ]
