"""A real browser against the live storefront: search, paginate, filter, open a product, buy.

Screenshots go to ``test-artifacts/screenshots/`` (gitignored) so that a person can look at the
pages. Needs Debian's chromium at /usr/bin/chromium (``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from catalog.models import Merchant, Product
from tests.conftest import make_category
from tests.web.conftest import spooled_events

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`",
    ),
]


def build_catalog() -> None:
    """A small two-store catalog, committed (the live server reads it from another thread)."""
    from catalog import docids
    from ranking import inverted

    phones = Merchant.objects.create(name="Phone Shop")
    grocery = Merchant.objects.create(name="Grocer")
    cases = make_category(phones, ["Cell Phones", "Accessories", "Cases"])
    chargers = make_category(phones, ["Cell Phones", "Accessories", "Chargers"])
    handsets = make_category(phones, ["Cell Phones", "Unlocked Phones"])
    fruit = make_category(grocery, ["Produce", "Fresh Fruits"])
    rows = [
        ("P1", "OtterBox Defender Case for Apple iPhone 7", "OtterBox", cases, "39.99"),
        ("P2", "Speck Presidio Case for Samsung Galaxy S8", "Speck", cases, "29.99"),
        ("P3", "Apple iPhone 7 128GB Unlocked - Black", "Apple", handsets, "649.00"),
        ("P4", "Samsung Galaxy S8 64GB Unlocked - Midnight Black", "Samsung", handsets, "599.00"),
        ("P5", "<script>alert(1)</script> Clear Case for iPhone 7", "Evil", cases, "5.00"),
    ]
    for i in range(30):
        rows.append(
            (
                f"C{i:02d}",
                f"Anker PowerPort Wall Charger for iPhone, model {i}",
                "Anker",
                chargers,
                f"{12 + i}.99",
            )
        )
    for sku, title, brand, category, price in rows:
        Product.objects.create(
            merchant=phones,
            sku=sku,
            title=title,
            brand=brand,
            category=category,
            price=Decimal(price),
            popularity=float(len(title)),
            description=f"{title}. Ships in one business day.\n\nOne-year warranty.",
            attributes=(
                {"color": "Black", "compatible_models": ["iPhone 7", "iPhone 8"]}
                if sku == "P1"
                else {}
            ),
        )
    Product.objects.create(
        merchant=grocery, sku="G1", title="Organic Bananas", category=fruit, price=Decimal("0.99")
    )
    for merchant in (phones, grocery):
        docids.assign(merchant)
    inverted.rebuild_index()


@pytest.mark.django_db(transaction=True)
def test_shopper_searches_and_opens_a_product(live_server):
    from playwright.sync_api import expect, sync_playwright

    # All database work happens before Playwright starts: its sync API runs an event loop in
    # this thread, and Django refuses ORM calls from a thread with a running loop.
    build_catalog()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            page.goto(f"{live_server.url}/?merchant=phone-shop")
            expect(page.get_by_role("heading", name="Shop by category")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "01-landing.png"), full_page=True)

            box = page.get_by_role("searchbox", name="Search products")
            box.fill("iphone")
            box.press("Enter")
            page.wait_for_url("**q=iphone**")
            results = page.locator('[data-testid="results"] .card')
            expect(results.first).to_be_visible()
            assert results.count() == 20
            expect(page.locator('[data-testid="result-count"]')).to_contain_text("of 33 results")
            expect(box).to_have_value("iphone")
            page.screenshot(path=str(SCREENSHOTS / "02-results.png"), full_page=True)

            page.get_by_role("link", name="Next ›").click()
            page.wait_for_url("**page=2**")
            expect(page.locator('[data-testid="result-count"]')).to_contain_text("21–33 of 33")
            page.screenshot(path=str(SCREENSHOTS / "03-page-2.png"), full_page=True)

            page.locator(".facet a", has_text="Cases").click()
            page.wait_for_url("**category=**")
            expect(page.locator(".chip")).to_contain_text("Cases")
            assert page.locator('[data-testid="results"] .card').count() == 2
            page.screenshot(path=str(SCREENSHOTS / "04-filtered.png"), full_page=True)

            page.locator(".card-title a", has_text="OtterBox Defender").click()
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "OtterBox Defender Case for Apple iPhone 7"
            )
            expect(page.locator(".product-price")).to_have_text("$39.99")
            expect(page.locator(".attributes")).to_contain_text("iPhone 7, iPhone 8")
            page.screenshot(path=str(SCREENSHOTS / "05-product.png"), full_page=True)

            page.get_by_role("link", name="‹ Back to results").click()
            expect(page.get_by_role("searchbox", name="Search products")).to_have_value("iphone")

            # a script-tag title is shown as text, never executed
            page.goto(f"{live_server.url}/?merchant=phone-shop&q=alert")
            expect(page.get_by_text("<script>alert(1)</script> Clear Case")).to_be_visible()

            page.goto(f"{live_server.url}/?merchant=phone-shop&q=zzzqqqxxx")
            expect(page.locator('[data-testid="no-results"]')).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "06-no-results.png"), full_page=True)

            page.goto(f"{live_server.url}/?merchant=phone-shop&q=chargr")
            expect(page.locator(".card").first).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "07-corrected.png"), full_page=True)

            page.goto(f"{live_server.url}/?merchant=phone-shop")
            page.get_by_role("link", name="Accessories").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Accessories")
            expect(page.locator(".facet a", has_text="Chargers")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "09-browse-category.png"), full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(f"{live_server.url}/?merchant=phone-shop&q=iphone")
            page.screenshot(path=str(SCREENSHOTS / "08-mobile-results.png"), full_page=False)

            assert dialogs == [], f"a script ran: {dialogs}"
        finally:
            browser.close()


@pytest.mark.django_db(transaction=True)
def test_shopper_buys_from_search_results(live_server):
    """Search → click a result → add to cart → check out, and the events that flow records."""
    from playwright.sync_api import expect, sync_playwright

    build_catalog()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{live_server.url}/?merchant=phone-shop&q=otterbox")
            expect(page.locator('[data-testid="cart-count"]')).to_have_text("0")
            page.locator(".card-title a", has_text="OtterBox Defender").click()
            page.wait_for_url("**/product/phone-shop/P1/?q=otterbox&rid=*")
            expect(page.get_by_role("heading", level=1)).to_contain_text("OtterBox Defender")
            page.get_by_label("Qty").fill("2")
            page.screenshot(path=str(SCREENSHOTS / "10-product-add-to-cart.png"), full_page=True)

            page.get_by_role("button", name="Add to cart").click()
            page.wait_for_url("**/cart/")
            expect(page.get_by_role("status")).to_contain_text("Added 2 × “OtterBox Defender")
            expect(page.locator('[data-testid="cart-count"]')).to_have_text("2")
            expect(page.locator('[data-testid="cart-total"]')).to_have_text("$79.98")

            # a second item, straight from its product page (no search: no request id)
            page.goto(f"{live_server.url}/product/phone-shop/P3/")
            page.get_by_role("button", name="Add to cart").click()
            page.wait_for_url("**/cart/")
            lines = page.locator('[data-testid="cart-line"]')
            expect(lines).to_have_count(2)
            expect(page.locator('[data-testid="cart-total"]')).to_have_text("$728.98")
            page.screenshot(path=str(SCREENSHOTS / "11-cart.png"), full_page=True)

            page.get_by_role("button", name="Place order").click()
            page.wait_for_url("**/cart/confirmation/")
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Thank you, your order is placed"
            )
            expect(page.locator('[data-testid="order-total"]')).to_have_text("$728.98")
            expect(page.locator('[data-testid="cart-count"]')).to_have_text("0")
            page.screenshot(path=str(SCREENSHOTS / "12-order-confirmation.png"), full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(f"{live_server.url}/product/phone-shop/P2/")
            page.get_by_role("button", name="Add to cart").click()
            page.wait_for_url("**/cart/")
            page.screenshot(path=str(SCREENSHOTS / "13-mobile-cart.png"), full_page=True)
        finally:
            browser.close()

    # what the live server published (into the spool: no broker in this test)
    kinds = [(e["type"], e.get("sku"), e.get("request_id")) for e in spooled_events()]
    impression, click, *rest = kinds
    assert impression[0] == "impression" and click == ("click", "P1", impression[2])
    assert rest == [
        ("add_to_cart", "P1", impression[2]),
        ("add_to_cart", "P3", None),
        ("purchase", "P1", impression[2]),
        ("purchase", "P3", None),
        ("add_to_cart", "P2", None),
    ]
    assert len({e["session_id"] for e in spooled_events()}) == 1
