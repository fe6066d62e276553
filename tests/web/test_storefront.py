"""Storefront pages rendered through the Django test client against a small indexed catalog."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from catalog.models import Product
from tests.conftest import make_category

pytestmark = pytest.mark.django_db


def page(client, **params):
    return client.get(reverse("storefront"), params)


def titles(response) -> list[str]:
    html = response.content.decode()
    return re.findall(r'<h3 class="card-title"><a [^>]*>([^<]*)</a>', html)


def add_products(merchant, category, count: int, prefix: str = "Widget") -> None:
    for i in range(count):
        Product.objects.create(
            merchant=merchant,
            sku=f"W{i:03d}",
            title=f"{prefix} charger model {i}",
            brand="Acme",
            category=category,
            price=Decimal("9.99") + i,
        )


def reindex() -> None:
    from ranking import inverted

    inverted.rebuild_index()


def test_search_renders_results_for_the_chosen_merchant(client, small_catalog):
    response = page(client, q="iphone", merchant="phone-shop")
    assert response.status_code == 200
    html = response.content.decode()
    found = titles(response)
    assert "Apple iPhone 7 128GB Unlocked - Black" in found
    assert "OtterBox Defender Case for Apple iPhone 7" in found
    assert all("iPhone" in t for t in found)
    assert 'value="iphone"' in html  # the search box keeps the query
    assert "$649.00" in html and "$39.99" in html
    assert "Cell Phones" in html and "Cases" in html  # category breadcrumb on cards
    assert "of <strong>2</strong> results" in html
    assert re.search(r"\(\d+ ms\)", html)
    # results link through the click recorder, which lands on the product page
    click = re.search(r'href="(/r/[0-9a-f]{32}/\d/phone-shop/P3/\?q=iphone)"', html).group(1)
    product_url = reverse("product", kwargs={"merchant_slug": "phone-shop", "sku": "P3"})
    assert client.get(click)["Location"].startswith(product_url + "?q=iphone&rid=")
    # the store switcher marks the current merchant
    assert re.search(r'<option value="phone-shop" selected>Phone Shop</option>', html)


def test_search_is_scoped_to_the_merchant(client, small_catalog):
    response = page(client, q="apple", merchant="grocer")
    assert titles(response) == ["Honeycrisp Apple"]
    response = page(client, q="apple", merchant="phone-shop")
    assert "Honeycrisp Apple" not in titles(response)
    assert titles(response)


def test_default_merchant_is_the_first_and_unknown_falls_back(client, small_catalog):
    response = page(client, q="apple")
    assert titles(response) == ["Honeycrisp Apple"]  # "Grocer" sorts before "Phone Shop"
    response = page(client, q="apple", merchant="no-such-store")
    assert response.status_code == 200
    assert "That store doesn't exist" in response.content.decode()


def test_landing_page_shows_top_categories_and_popular_products(client, small_catalog):
    Product.objects.filter(sku="P3").update(popularity=10)
    response = page(client, merchant="phone-shop")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Shop by category" in html
    assert "category=cell-phones" in html
    assert "Popular right now" in html
    assert titles(response)[0] == "Apple iPhone 7 128GB Unlocked - Black"
    assert "Organic Bananas" not in html


def test_browse_category_without_query(client, small_catalog):
    response = page(client, merchant="phone-shop", category="cell-phones/accessories")
    html = response.content.decode()
    assert response.status_code == 200
    assert sorted(titles(response)) == [
        "OtterBox Defender Case for Apple iPhone 7",
        "Speck Presidio Case for Samsung Galaxy S8",
    ]
    assert "Subcategories" in html and "Cases" in html


def test_pagination(client, small_catalog):
    chargers = make_category(small_catalog["phones"], ["Cell Phones", "Accessories", "Chargers"])
    add_products(small_catalog["phones"], chargers, 45)
    reindex()

    first = page(client, q="charger", merchant="phone-shop")
    html = first.content.decode()
    assert len(titles(first)) == 20
    assert "Showing <strong>1–20</strong> of <strong>45</strong> results" in html
    assert 'aria-current="page">1</span>' in html
    assert "page=2" in html and "page=3" in html and "page=4" not in html
    assert "Next ›</a>" in html

    third = page(client, q="charger", merchant="phone-shop", page=3)
    html = third.content.decode()
    assert len(titles(third)) == 5
    assert "Showing <strong>41–45</strong> of <strong>45</strong>" in html
    assert 'class="page-link page-next disabled"' in html
    assert "‹ Previous</a>" in html

    seen = set(titles(first)) | set(
        titles(page(client, q="charger", merchant="phone-shop", page=2))
    )
    assert len(seen | set(titles(third))) == 45  # pages don't overlap

    past_end = page(client, q="charger", merchant="phone-shop", page=9)
    assert past_end.status_code == 200
    assert "no more results" in past_end.content.decode()
    assert page(client, q="charger", merchant="phone-shop", page="abc").status_code == 200


def test_category_facets_and_filter(client, small_catalog):
    response = page(client, q="galaxy", merchant="phone-shop")
    html = response.content.decode()
    assert len(titles(response)) == 2
    # facet list: one link per category, with counts, that filters via ?category=
    assert "category=cell-phones%2Faccessories%2Fcases" in html
    assert "category=cell-phones%2Funlocked-phones" in html
    assert re.search(r'facet-name">Cases</span>.*?facet-count">1<', html, re.S)

    filtered = page(
        client, q="galaxy", merchant="phone-shop", category="cell-phones/unlocked-phones"
    )
    html = filtered.content.decode()
    assert titles(filtered) == ["Samsung Galaxy S8 64GB Unlocked - Midnight Black"]
    assert "Filtered by:" in html
    assert "Cell Phones › Unlocked Phones" in html  # the active filter chip
    # the remove link keeps the query and the merchant and drops the category
    remove = re.search(r'class="clear-all" href="([^"]+)"', html).group(1)
    assert "category" not in remove and "q=galaxy" in remove and "merchant=phone-shop" in remove

    subtree = page(client, q="galaxy", merchant="phone-shop", category="cell-phones")
    assert len(titles(subtree)) == 2


def test_zero_results_page_is_helpful(client, small_catalog):
    response = page(client, q="zzzqqqxxx", merchant="phone-shop")
    assert response.status_code == 200
    html = response.content.decode()
    assert titles(response)[:0] == []
    assert 'data-testid="no-results"' in html
    assert "Nothing matched “zzzqqqxxx”" in html
    assert "Popular categories" in html
    assert "category=cell-phones" in html


def test_zero_results_inside_a_category_offers_searching_everything(client, small_catalog):
    response = page(
        client, q="otterbox", merchant="phone-shop", category="cell-phones/unlocked-phones"
    )
    html = response.content.decode()
    assert "Nothing matched “otterbox” in Cell Phones › Unlocked Phones" in html
    assert "Search all of Phone Shop" in html


def test_corrected_query_is_announced(client, small_catalog):
    response = page(client, q="iphnoe", merchant="phone-shop")
    html = response.content.decode()
    assert 'data-testid="corrected"' in html  # it skipped itself when nothing was corrected
    assert 'every word of “<span class="strike">iphnoe</span>”' in html
    assert "Showing results for" in html
    assert titles(response)


def test_too_long_query_shows_an_error(client, small_catalog):
    response = page(client, q="a" * 300, merchant="phone-shop")
    assert response.status_code == 400
    assert "too long" in response.content.decode()


def test_product_page(client, small_catalog):
    product = Product.objects.get(sku="P1")
    product.attributes = {"color": "Black", "compatible_models": ["iPhone 7", "iPhone 8"]}
    product.save()
    url = reverse("product", kwargs={"merchant_slug": "phone-shop", "sku": "P1"})
    response = client.get(url, {"q": "iphone"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "OtterBox Defender Case for Apple iPhone 7" in html
    assert "OtterBox" in html and "$39.99" in html
    assert "Cell Phones" in html and "Accessories" in html and "Cases" in html
    assert "OtterBox Defender Case for Apple iPhone 7 description." in html
    assert '<th scope="row">Compatible models</th><td>iPhone 7, iPhone 8</td>' in html
    assert product.docid.path in html
    assert "Back to results" in html and "q=iphone" in html
    assert '<button class="btn btn-primary" type="submit">Add to cart</button>' in html


def test_product_page_404s(client, small_catalog):
    missing = reverse("product", kwargs={"merchant_slug": "phone-shop", "sku": "NOPE"})
    assert client.get(missing).status_code == 404
    wrong_shop = reverse("product", kwargs={"merchant_slug": "grocer", "sku": "P1"})
    assert client.get(wrong_shop).status_code == 404
    Product.objects.filter(sku="P2").update(active=False)
    inactive = reverse("product", kwargs={"merchant_slug": "phone-shop", "sku": "P2"})
    assert client.get(inactive).status_code == 404


def test_product_text_is_escaped(client, small_catalog):
    phones = small_catalog["phones"]
    cases = make_category(phones, ["Cell Phones", "Accessories", "Cases"])
    Product.objects.create(
        merchant=phones,
        sku="XSS1",
        title="<script>alert(1)</script>",
        brand='<img src=x onerror="alert(2)">',
        description="<b>bold</b> claims",
        attributes={"<i>key</i>": "<script>alert(3)</script>"},
        category=cases,
        price=Decimal("1.00"),
    )
    reindex()

    response = page(client, q="alert", merchant="phone-shop")
    html = response.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" not in html
    assert '<img src=x onerror="alert(2)">' not in html

    url = reverse("product", kwargs={"merchant_slug": "phone-shop", "sku": "XSS1"})
    html = client.get(url).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<i>key</i>" not in html
