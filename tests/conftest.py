"""Shared fixtures: every test gets its own data directory so indexes never leak between tests."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.models import Category, Merchant, Product


@pytest.fixture(autouse=True)
def isolated_data_dir(settings, tmp_path):
    """Per-process caches and clients are bound to a data directory, so each test starts and
    ends with none: the inverted index, catalog rows, dense serving state and Milvus Lite
    clients (an open one would be stopped at interpreter exit, after pytest closed its log)."""
    settings.DATA_DIR = tmp_path
    settings.SEARCH_INDEX_DIR = tmp_path / "index"
    from ranking import catalog_cache, inverted
    from ranking.dense.recall import reset_serving
    from ranking.dense.store import reset_clients

    inverted.reset_cache()
    catalog_cache.catalog.clear()
    reset_serving()
    yield tmp_path
    inverted.reset_cache()
    catalog_cache.catalog.clear()
    reset_serving()
    reset_clients()


def make_category(merchant: Merchant, names: list[str]) -> Category:
    """Create (or reuse) the category chain ``names`` under ``merchant``; return the leaf."""
    from catalog.categories import ensure_category_path

    return ensure_category_path(merchant, names)


@pytest.fixture
def small_catalog(db):
    """Two merchants with a handful of products each, indexed and with docids."""
    from catalog import docids
    from ranking import inverted

    phones = Merchant.objects.create(name="Phone Shop")
    grocery = Merchant.objects.create(name="Grocer")
    cases = make_category(phones, ["Cell Phones", "Accessories", "Cases"])
    handsets = make_category(phones, ["Cell Phones", "Unlocked Phones"])
    fruit = make_category(grocery, ["Produce", "Fresh Fruits"])
    rows = [
        (phones, "P1", "OtterBox Defender Case for Apple iPhone 7", "OtterBox", cases, "39.99"),
        (phones, "P2", "Speck Presidio Case for Samsung Galaxy S8", "Speck", cases, "29.99"),
        (phones, "P3", "Apple iPhone 7 128GB Unlocked - Black", "Apple", handsets, "649.00"),
        (
            phones,
            "P4",
            "Samsung Galaxy S8 64GB Unlocked - Midnight Black",
            "Samsung",
            handsets,
            "599.00",
        ),
        (grocery, "G1", "Organic Bananas", "", fruit, "0.99"),
        (grocery, "G2", "Honeycrisp Apple", "", fruit, "1.49"),
    ]
    for merchant, sku, title, brand, category, price in rows:
        Product.objects.create(
            merchant=merchant,
            sku=sku,
            title=title,
            brand=brand,
            category=category,
            price=Decimal(price),
            description=f"{title} description.",
        )
    for merchant in (phones, grocery):
        docids.assign(merchant)
    inverted.rebuild_index()
    return {"phones": phones, "grocery": grocery}
