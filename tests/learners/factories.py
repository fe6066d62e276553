"""Valid event dicts for tests; keyword arguments override any field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _envelope(kind: str, **fields: Any) -> dict[str, Any]:
    event = {
        "type": kind,
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "session_id": "sess-1",
        "merchant": "phone-shop",
        "ts": T0.isoformat(),
    }
    event.update(fields)
    if isinstance(event["ts"], datetime):
        event["ts"] = event["ts"].isoformat()
    return event


def impression(skus: tuple[str, ...] = ("P1", "P2", "P3"), **fields: Any) -> dict[str, Any]:
    items = [{"sku": sku, "position": n} for n, sku in enumerate(skus, 1)]
    defaults = {
        "request_id": "req-1",
        "query": "iphone case",
        "items": items,
        "model_version": "bm25",
    }
    return _envelope("impression", **{**defaults, **fields})


def click(sku: str = "P1", position: int = 1, **fields: Any) -> dict[str, Any]:
    return _envelope("click", **{"request_id": "req-1", "sku": sku, "position": position, **fields})


def add_to_cart(sku: str = "P1", **fields: Any) -> dict[str, Any]:
    return _envelope("add_to_cart", **{"sku": sku, "quantity": 1, **fields})


def purchase(sku: str = "P1", quantity: int = 1, price: str = "39.99", **fields: Any) -> dict:
    return _envelope("purchase", **{"sku": sku, "quantity": quantity, "price": price, **fields})


def session_events(n_sessions: int, prefix: str = "s") -> list[dict[str, Any]]:
    """A realistic mix: per session one impression, a click, a cart add and a purchase."""
    events = []
    for i in range(n_sessions):
        session, request = f"{prefix}{i}", f"{prefix}-req-{i}"
        common = {"session_id": session, "request_id": request}
        events += [
            impression(**common),
            click("P2", 2, **common),
            add_to_cart("P2", **common),
            purchase("P2", 1, "29.99", **common),
        ]
    return events
