"""Web workers load the serving models before their first shopper (ranking.warmup)."""

from __future__ import annotations

import logging

from ranking import warmup


def test_warm_up_searches_each_merchant_once(small_catalog, monkeypatch):
    searched: list[tuple[str, str]] = []
    monkeypatch.setattr(
        "ranking.search", lambda query, merchant: searched.append((merchant, query))
    )
    seconds = warmup.warm_up()
    assert sorted(seconds) == ["grocer", "phone-shop"]
    assert sorted(m for m, _ in searched) == ["grocer", "phone-shop"]
    assert ("phone-shop", "OtterBox Defender Case for Apple iPhone 7") in searched


def test_a_failing_warm_up_is_logged_and_the_worker_still_starts(
    small_catalog, monkeypatch, caplog
):
    def broken(query, merchant):
        if merchant == "grocer":
            raise OSError("vector store unreachable")

    monkeypatch.setattr("ranking.search", broken)
    with caplog.at_level(logging.ERROR, logger="ranking.warmup"):
        seconds = warmup.warm_up()
    assert list(seconds) == ["phone-shop"]
    assert "warm-up search for grocer failed" in caplog.text


def test_warm_up_can_be_turned_off(settings):
    assert warmup.enabled()
    settings.SEARCH_WARM_UP = "0"
    assert not warmup.enabled()


def test_a_worker_starts_even_when_the_catalog_cannot_be_read(db, monkeypatch, caplog):
    """Regression: on a database without tables the warm-up raised while gunicorn loaded the
    app, so the worker never started (the supervisor's web server reset every connection)."""
    from django.db import OperationalError

    from catalog.models import Merchant

    def unreadable(*args, **kwargs):
        raise OperationalError("no such table: catalog_merchant")

    monkeypatch.setattr(Merchant.objects, "order_by", unreadable)
    with caplog.at_level(logging.ERROR, logger="ranking.warmup"):
        assert warmup.warm_up() == {}
    assert "warm-up skipped" in caplog.text
