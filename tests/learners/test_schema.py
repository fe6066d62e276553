"""The event schema: every type validates, and invalid events say clearly what is wrong."""

from __future__ import annotations

import json
from decimal import Decimal
from uuid import UUID

import pytest

from learners.events.schema import (
    MAX_EVENT_BYTES,
    MAX_QUERY_CHARS,
    MAX_SHOWN_ITEMS,
    AddToCart,
    Click,
    EventValidationError,
    Impression,
    Purchase,
    encode,
    parse_and_encode,
    parse_event,
    with_defaults,
)
from tests.learners import factories as f


def errors_of(data) -> list[str]:
    with pytest.raises(EventValidationError) as caught:
        parse_event(data)
    return caught.value.errors


@pytest.mark.parametrize(
    ("data", "cls"),
    [
        (f.impression(), Impression),
        (f.click(), Click),
        (f.add_to_cart(), AddToCart),
        (f.purchase(), Purchase),
        (f.add_to_cart(request_id=None), AddToCart),
        (f.impression(skus=(), query=""), Impression),  # a zero-result browse is still shown
    ],
)
def test_each_type_validates(data, cls):
    event = parse_event(data)
    assert isinstance(event, cls)
    assert isinstance(event.event_id, UUID)
    assert event.ts.utcoffset() is not None


def test_round_trip_through_the_wire_format():
    event = parse_event(f.purchase(price="19.90", quantity=3))
    again = parse_event(encode(event))
    assert again == event
    assert again.price == Decimal("19.90")


def test_json_text_and_bytes_are_accepted():
    text = json.dumps(f.click())
    assert parse_event(text) == parse_event(text.encode())


@pytest.mark.parametrize("data", [f.impression(), json.dumps(f.purchase())])
def test_parse_and_encode_returns_the_wire_form(data):
    event, wire = parse_and_encode(data)
    assert event == parse_event(data)
    assert wire == encode(event)


def test_parse_and_encode_bounds_the_wire_size():
    skus = tuple("€" * 60 + str(i) for i in range(MAX_SHOWN_ITEMS))  # 3 bytes per €
    with pytest.raises(EventValidationError, match=f"exceeds {MAX_EVENT_BYTES}"):
        parse_and_encode(f.impression(skus=skus))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (f.click(position=0), "position: Input should be greater than or equal to 1"),
        (f.click(position="3"), "position: Input should be a valid integer"),
        ({**f.click(), "type": "hover"}, "type: Input tag 'hover' found"),
        ({k: v for k, v in f.click().items() if k != "type"}, "type: Unable to extract tag"),
        (f.click(event_id="not-a-uuid"), "event_id: Input should be a valid UUID"),
        (f.click(ts="2026-03-01T10:00:00"), "ts: Input should have timezone info"),
        (f.click(schema_version=2), "schema_version: Input should be 1"),
        (f.click(merchant="a shop!"), "merchant: String should match pattern"),
        (f.click(session_id=""), "session_id: String should have at least 1 character"),
        (f.click(colour="red"), "colour: Extra inputs are not permitted"),
        (f.purchase(quantity=0), "quantity: Input should be greater than or equal to 1"),
        (f.purchase(price="-1"), "price: Input should be greater than or equal to 0"),
        (f.purchase(price="1.999"), "price: Decimal input should have no more than 2 decimal"),
        (f.add_to_cart(sku="x" * 65), "sku: String should have at most 64 characters"),
        (f.impression(query="q" * (MAX_QUERY_CHARS + 1)), "query: String should have at most"),
        (
            f.impression(
                skus=("A", "B"), items=[{"sku": "A", "position": 1}, {"sku": "B", "position": 1}]
            ),
            "items: positions must be unique",
        ),
        (f.impression(items=[{"sku": "A"}]), "items.0.position: Field required"),
    ],
)
def test_invalid_events_get_clear_messages(data, expected):
    errors = errors_of(data)
    assert any(e.startswith(expected) for e in errors), errors


def test_missing_fields_are_all_listed():
    errors = errors_of({"type": "purchase"})
    for name in ("event_id", "session_id", "merchant", "ts", "sku", "quantity", "price"):
        assert f"{name}: Field required" in errors


def test_too_many_shown_items():
    skus = tuple(f"S{i}" for i in range(MAX_SHOWN_ITEMS + 1))
    assert errors_of(f.impression(skus=skus)) == [
        f"items: List should have at most {MAX_SHOWN_ITEMS} items after validation, not 201"
    ]


def test_oversized_and_malformed_wire_payloads():
    assert "exceeds" in errors_of(b"{" + b" " * MAX_EVENT_BYTES + b"}")[0]
    assert (
        errors_of(b"{not json")[0].startswith("Invalid JSON")
        or "JSON" in errors_of(b"{not json")[0]
    )
    assert errors_of([1, 2]) == ["event: expected an object, got list"]


def test_defaults_fill_only_the_envelope():
    data = f.click()
    for name in ("event_id", "ts", "schema_version"):
        del data[name]
    event = parse_event(with_defaults(data))
    assert event.schema_version == 1
    # an explicit id is kept: retries must not mint new ones
    assert with_defaults({"event_id": "x"})["event_id"] == "x"


def test_impression_names_every_serving_model():
    """Regression: with the generative base and the ranker both serving, the comma-joined
    version (71 characters) was over a 64-character limit, so every live impression went to
    the dead-letter topic and no click could be tied to its search."""
    versions = ",".join(
        [
            "adapter-bestbuy-20300107T00-b2",
            "encoder-bestbuy-20261126T081743-b892",
            "ranker-bestbuy-20261126T081943-ebfe",
        ]
    )
    event = parse_event(f.impression(model_version=versions))
    assert event.model_version == versions
