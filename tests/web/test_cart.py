"""The cart: add from the product page, change quantities, check out; and the ``add_to_cart``
and ``purchase`` events that go with it (read back from the producer's spool)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client

from catalog.models import Product
from tests.web.conftest import spooled_events
from web.views.cart import MAX_LINE_QUANTITY

pytestmark = pytest.mark.django_db


def add(client: Client, sku: str, quantity: int = 1, merchant: str = "phone-shop", **extra):
    data = {"merchant": merchant, "sku": sku, "quantity": quantity, **extra}
    return client.post("/cart/add", data)


def cart_lines(client: Client) -> list[tuple[str, str]]:
    """``(title, quantity)`` of each line on the cart page."""
    html = client.get("/cart/").content.decode()
    titles = re.findall(r'class="cart-line-title" href="[^"]+">([^<]+)</a>', html)
    quantities = re.findall(r'type="number" name="quantity" value="(\d+)"', html)
    return list(zip(titles, quantities, strict=True))


def header_count(html: str) -> int:
    return int(re.search(r'data-testid="cart-count">(\d+)<', html).group(1))


def test_product_page_offers_add_to_cart_with_the_search_request(client, small_catalog):
    html = client.get("/product/phone-shop/P1/", {"rid": "req-9", "q": "iphone"}).content.decode()
    assert 'action="/cart/add"' in html and "csrfmiddlewaretoken" in html
    assert '<input type="hidden" name="rid" value="req-9">' in html
    # a malformed rid is not carried into events
    html = client.get("/product/phone-shop/P1/", {"rid": "<x>"}).content.decode()
    assert 'name="rid"' not in html


def test_product_without_a_price_cannot_be_added(client, small_catalog):
    Product.objects.filter(sku="P2").update(price=None)
    html = client.get("/product/phone-shop/P2/").content.decode()
    assert "can't be bought right now" in html and 'action="/cart/add"' not in html
    response = add(client, "P2")
    assert response.status_code == 302
    assert "can&#x27;t be bought right now" in client.get("/cart/").content.decode()
    assert spooled_events() == []


def test_add_to_cart_records_the_event_and_shows_the_cart(client, small_catalog):
    response = add(client, "P1", 2, rid="req-9")
    assert response.status_code == 302 and response["Location"] == "/cart/"
    (event,) = spooled_events("add_to_cart")
    assert (event["sku"], event["quantity"], event["request_id"]) == ("P1", 2, "req-9")
    assert event["merchant"] == "phone-shop"
    assert event["session_id"] == response.cookies["sid"].value

    page = client.get("/cart/")
    html = page.content.decode()
    assert "Added 2 × “OtterBox Defender Case for Apple iPhone 7” to your cart." in html
    assert cart_lines(client) == [("OtterBox Defender Case for Apple iPhone 7", "2")]
    assert "$79.98" in html  # 2 × 39.99
    assert header_count(html) == 2
    assert header_count(client.get("/", {"merchant": "phone-shop"}).content.decode()) == 2


def test_adding_again_adds_up_to_the_line_limit(client, small_catalog):
    add(client, "P1", MAX_LINE_QUANTITY - 1)
    add(client, "P1", 5)
    add(client, "P1", 1)
    assert cart_lines(client) == [("OtterBox Defender Case for Apple iPhone 7", "99")]
    assert [e["quantity"] for e in spooled_events("add_to_cart")] == [98, 1]  # what was added


def test_update_and_remove(client, small_catalog):
    add(client, "P1")
    add(client, "P3")
    client.post("/cart/update", {"merchant": "phone-shop", "sku": "P1", "quantity": 3})
    assert cart_lines(client) == [
        ("OtterBox Defender Case for Apple iPhone 7", "3"),
        ("Apple iPhone 7 128GB Unlocked - Black", "1"),
    ]
    html = client.get("/cart/").content.decode()
    assert "$768.97" in html  # 3 × 39.99 + 649.00
    client.post("/cart/update", {"merchant": "phone-shop", "sku": "P1", "quantity": 0})
    assert cart_lines(client) == [("Apple iPhone 7 128GB Unlocked - Black", "1")]


def test_unknown_products_and_wrong_methods(client, small_catalog):
    assert add(client, "NOPE").status_code == 302
    assert add(client, "G1", merchant="phone-shop").status_code == 302  # another store's sku
    assert cart_lines(client) == []
    assert client.get("/cart/add").status_code == 405
    assert client.get("/cart/checkout").status_code == 405
    assert spooled_events() == []


def test_cart_forms_need_the_csrf_token(small_catalog):
    strict = Client(enforce_csrf_checks=True)
    assert add(strict, "P1").status_code == 403
    assert strict.post("/cart/checkout").status_code == 403


def test_checkout_records_one_purchase_per_line_and_empties_the_cart(client, small_catalog):
    add(client, "P1", 2, rid="req-1")
    add(client, "P4")  # not from a search
    add(client, "G1", 3, merchant="grocer", rid="req-2")
    response = client.post("/cart/checkout")
    assert response.status_code == 302 and response["Location"] == "/cart/confirmation/"

    purchases = {p["sku"]: p for p in spooled_events("purchase")}
    assert set(purchases) == {"P1", "P4", "G1"}
    assert (purchases["P1"]["quantity"], purchases["P1"]["price"]) == (2, "39.99")
    assert purchases["P1"]["request_id"] == "req-1"
    assert purchases["P4"]["request_id"] is None and purchases["P4"]["price"] == "599.00"
    assert (purchases["G1"]["merchant"], purchases["G1"]["quantity"]) == ("grocer", 3)
    assert len({p["session_id"] for p in purchases.values()}) == 1

    html = client.get(response["Location"]).content.decode()
    assert "Thank you, your order is placed" in html
    assert re.search(r'data-testid="order-number">#[0-9A-F]{10}<', html)
    assert 'data-testid="order-total">$681.95<' in html  # 79.98 + 599.00 + 2.97
    assert header_count(html) == 0
    assert cart_lines(client) == []

    # nothing to buy twice: an empty cart does not check out
    again = client.post("/cart/checkout", follow=True)
    assert "Your cart is empty." in again.content.decode()
    assert len(spooled_events("purchase")) == 3


def test_prices_are_the_current_ones(client, small_catalog):
    add(client, "P1")
    Product.objects.filter(sku="P1").update(price=Decimal("35.00"))
    assert "$35.00" in client.get("/cart/").content.decode()
    client.post("/cart/checkout")
    (purchase,) = spooled_events("purchase")
    assert purchase["price"] == "35.00"


def test_confirmation_without_an_order_goes_to_the_cart(client, small_catalog):
    response = client.get("/cart/confirmation/")
    assert response.status_code == 302 and response["Location"] == "/cart/"
    empty = client.get("/cart/").content.decode()
    assert 'data-testid="empty-cart"' in empty and "Your cart is empty" in empty
