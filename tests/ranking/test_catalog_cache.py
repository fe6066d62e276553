"""``ranking.catalog_cache``: searches stop re-reading unchanged catalog rows, yet see an edit
at once in the process that made it, within a second in the other processes it announces the
edit to, and within the refresh interval for edits nobody announces."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Category, Merchant, Product
from ranking import SearchQueryError, catalog_cache, generations, search
from tests.conftest import make_category

PHONE = "phone-shop"


def table_reads(context: CaptureQueriesContext, table: str) -> int:
    return sum(f'FROM "{table}"' in q["sql"] for q in context.captured_queries)


def titles(query: str, merchant: str = PHONE) -> dict[str, str]:
    return {r.sku: r.title for r in search(query, merchant=merchant).results}


@pytest.fixture
def clock(monkeypatch):
    """The cache's monotonic clock, advanced by hand."""
    now = [1000.0]
    monkeypatch.setattr(catalog_cache.time, "monotonic", lambda: now[0])
    return now


def test_a_repeated_search_reads_no_catalog_rows(small_catalog):
    search("iphone", merchant=PHONE)
    with CaptureQueriesContext(connection) as context:
        again = search("iphone", merchant=PHONE)
    assert {r.sku for r in again.results} == {"P1", "P3"}
    for table in ("catalog_product", "catalog_merchant", "catalog_category"):
        assert table_reads(context, table) == 0, table


def test_rows_cached_at_different_moments_are_not_re_read_one_by_one(small_catalog, clock):
    """Regression: with a per-row age, rows loaded by different searches expired at different
    moments, and under steady traffic nearly every search paid a query for a few of them."""
    search("iphone", merchant=PHONE)
    clock[0] += 3.0
    search("case", merchant=PHONE)
    clock[0] += 3.0
    with CaptureQueriesContext(connection) as context:
        search("iphone", merchant=PHONE)
        search("case", merchant=PHONE)
    assert table_reads(context, "catalog_product") == 0


def test_an_edit_in_this_process_is_seen_by_the_next_search_and_announced(
    small_catalog, clock, django_capture_on_commit_callbacks
):
    marker = catalog_cache.generation_marker()
    before = generations.current(marker)
    assert titles("iphone")["P3"] == "Apple iPhone 7 128GB Unlocked - Black"
    product = Product.objects.get(sku="P3")
    product.title = "Apple iPhone 7 128GB Unlocked - Jet Black"
    with django_capture_on_commit_callbacks(execute=True):
        product.save()  # sends products_changed, which evicts the row
    assert titles("iphone")["P3"] == "Apple iPhone 7 128GB Unlocked - Jet Black"
    assert generations.current(marker) != before  # the other processes will start over


def test_an_edit_another_process_announces_is_seen_within_a_second(small_catalog, clock):
    assert titles("iphone")["P1"] == "OtterBox Defender Case for Apple iPhone 7"
    # what the other process does: write the row, then (its products_changed receiver) bump
    Product.objects.filter(sku="P1").update(title="OtterBox Commuter Case for Apple iPhone 7")
    generations.bump(catalog_cache.generation_marker())
    clock[0] += 0.5
    assert titles("iphone")["P1"] == "OtterBox Defender Case for Apple iPhone 7"
    clock[0] += catalog_cache.CHECK_SECONDS
    assert titles("iphone")["P1"] == "OtterBox Commuter Case for Apple iPhone 7"


def test_an_unannounced_edit_is_seen_after_the_refresh_interval(small_catalog, clock, settings):
    settings.SEARCH_CATALOG_CACHE_SECONDS = 5.0
    assert titles("iphone")["P1"] == "OtterBox Defender Case for Apple iPhone 7"
    # an UPDATE sends no signal: what an SQL edit, or one on another host, looks like
    Product.objects.filter(sku="P1").update(title="OtterBox Commuter Case for Apple iPhone 7")
    clock[0] += 4.0
    assert titles("iphone")["P1"] == "OtterBox Defender Case for Apple iPhone 7"
    clock[0] += 1.0
    assert titles("iphone")["P1"] == "OtterBox Commuter Case for Apple iPhone 7"


def test_refresh_interval_zero_reads_every_time(small_catalog, settings):
    settings.SEARCH_CATALOG_CACHE_SECONDS = 0
    search("iphone", merchant=PHONE)
    with CaptureQueriesContext(connection) as context:
        search("iphone", merchant=PHONE)
    assert table_reads(context, "catalog_product") == 1


def test_new_merchants_and_categories_are_found_at_once(small_catalog, clock):
    search("iphone", merchant=PHONE)  # both snapshots loaded
    with pytest.raises(SearchQueryError, match="unknown merchant"):
        search("tea", merchant="tea-house")
    shop = Merchant.objects.create(name="Tea House")
    assert search("tea", merchant=shop.slug).results == []

    phones = small_catalog["phones"]
    tablets = make_category(phones, ["Tablets"])
    assert catalog_cache.catalog.category_names([tablets.path], PHONE) == {tablets.path: "Tablets"}


def test_a_deleted_merchant_is_unknown_after_the_refresh_interval(small_catalog, clock):
    search("bananas", merchant="grocer")
    Merchant.objects.filter(slug="grocer").delete()
    clock[0] += catalog_cache.refresh_seconds()
    with pytest.raises(SearchQueryError, match="unknown merchant"):
        search("bananas", merchant="grocer")


def test_category_names_are_per_merchant(small_catalog):
    path = Category.objects.get(merchant__slug=PHONE, name="Cases").path
    assert catalog_cache.catalog.category_names([path], PHONE) == {
        path: "Cell Phones > Accessories > Cases"
    }
    assert catalog_cache.catalog.category_names([path], "grocer") == {}
