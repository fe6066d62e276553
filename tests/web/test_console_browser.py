"""A real browser (headless Debian chromium) against the live console: sign in, browse every
panel, edit a product with a validation error, upload a feed that a real Celery worker imports
while the page shows live progress, download the validation report, and promote a model as
staff. Screenshots of every page go to ``test-artifacts/screenshots/console-*.png``."""

from __future__ import annotations

import json
import os
import random
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from catalog.models import Product
from learners import registry
from learners.aggregates import aggregate_hour
from learners.events.consumer import store_events
from learners.events.schema import parse_event
from tests.conftest import make_category
from tests.learners import factories as f
from tests.web import console_support
from tests.web.console_support import PASSWORD, SMALL_CSV, make_user
from tests.web.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

console_support.use_file_backed_test_db()  # the worker subprocess shares the test database

media_root = console_support.media_root
redis_server = console_support.redis_server
celery_worker = console_support.celery_worker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing"),
]

QUERIES = ["iphone case", "galaxy s8", "charger", "otterbox", "usb c cable", "screen protector"]


def add_products(catalog: dict) -> None:
    phones = catalog["phones"]
    chargers = make_category(phones, ["Cell Phones", "Accessories", "Chargers"])
    for i in range(30):
        Product.objects.create(
            merchant=phones,
            sku=f"C{i:02d}",
            title=f"Anker PowerPort Wall Charger for iPhone, model {i}",
            brand="Anker",
            category=chargers,
            price=Decimal(f"{12 + i}.99"),
        )


def add_events(rng: random.Random) -> None:
    """A day of search traffic for the phone shop, stored and aggregated per hour."""
    now = timezone.now()
    events = []
    for hours_ago in range(23, -1, -1):
        for n in range(rng.randint(3, 12)):
            ts = now - timedelta(hours=hours_ago, minutes=rng.randint(0, 50))
            session, request = f"s{hours_ago}-{n}", f"r{hours_ago}-{n}"
            common = {"ts": ts, "session_id": session, "request_id": request}
            if rng.random() < 0.12:
                events.append(f.impression(query="pixel 9 pro fold", skus=(), **common))
                continue
            events.append(f.impression(query=rng.choice(QUERIES), **common))
            if rng.random() < 0.55:
                sku = rng.choice(["P1", "P2", "P3"])
                events.append(f.click(sku, 1, **common))
                if rng.random() < 0.4:
                    price = str(Product.objects.get(sku=sku).price)
                    events.append(f.purchase(sku, 1, price, **common))
    store_events(parse_event(e) for e in events)
    for hours_ago in range(24):
        aggregate_hour(now - timedelta(hours=hours_ago))


def add_models(phones) -> None:
    """A base model that learned P1-P3 (not P4), an adapter chain and one rejected adapter."""
    learned = [p.docid.path for p in Product.objects.filter(sku__in=["P1", "P2", "P3"])]
    name, path = registry.new_version_dir("base", phones)
    (path / "docids.json").write_text(json.dumps(learned))
    base = registry.register(
        "base",
        name,
        path,
        merchant=phones,
        status="active",
        metrics={"recall@10": 0.412, "mrr@10": 0.288, "train_minutes": 18.5},
    )
    parent = base
    for hour, (new, probe, passed) in enumerate(
        [(0.44, 0.405, True), (0.47, 0.401, True), (0.46, 0.35, False)], start=1
    ):
        adapter = registry.register(
            "adapter",
            f"adapter-phone-shop-h{hour:02d}",
            path,
            merchant=phones,
            parent=parent,
            metrics={"base": base.name, "new_recall@10": new, "probe_recall@10": probe},
        )
        if passed:
            adapter.decision = {"passed": True, "reason": "new data improved, probe within bound"}
            adapter.save(update_fields=["decision"])
            registry.activate(adapter)
            parent = adapter
        else:
            registry.reject(adapter, {"passed": False, "reason": "probe regressed 12.7%"})
    registry.register(
        "adapter",
        "adapter-phone-shop-h04",
        path,
        merchant=phones,
        parent=parent,
        metrics={"base": base.name, "new_recall@10": 0.49, "probe_recall@10": 0.404},
    )


def add_bench(data_dir, model: str) -> None:
    """Two relevance runs and a learning curve with its plot, as ``manage.py bench`` writes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    bench = data_dir / "bench"
    bench.mkdir(parents=True)
    for day, scores in [(1, (0.301, 0.33)), (2, (0.312, 0.371))]:
        run = {
            "benchmark": "relevance",
            "created": f"2026-11-2{day}T06:00:00+00:00",
            "merchant": "phone-shop",
            "model_version": model,
            "queries": 120,
            "pipelines": {
                "bm25": {"ndcg@10": scores[0], "mrr@10": 0.41, "recall@100": 0.72},
                "hybrid": {"ndcg@10": scores[1], "mrr@10": 0.45, "recall@100": 0.81},
            },
        }
        (bench / f"relevance-2026112{day}T060000Z.json").write_text(json.dumps(run))
    hours = list(range(0, 9))
    curve = [0.33 + 0.05 * (1 - 0.7**h) for h in hours]
    stem = "learning-curve-20261125T070000Z"
    (bench / f"{stem}.json").write_text(
        json.dumps(
            {
                "benchmark": "learning-curve",
                "created": "2026-11-25T07:00:00+00:00",
                "model_version": model,
                "merchant": "phone-shop",
                "base_eval_ndcg@10": curve[0],
                # per hour, as bench learning-curve --ranker writes it: a nine-column table
                "hours": hours[1:],
                "adapter_train_s": [136.14 + h for h in hours[1:]],
                "ranker_train_s": [85.6617 + h for h in hours[1:]],
                "events": [5169 + h for h in hours[1:]],
                "decisions": ["promoted", "rejected"] * 4,
                **{
                    name: [round(v, 4) for v in curve[1:]]
                    for name in (
                        "eval_ndcg@10",
                        "probe_ndcg@10",
                        "eval_hybrid_ndcg@10",
                        "traffic_hybrid_ndcg@10",
                    )
                },
            }
        )
    )
    fig, ax = plt.subplots(figsize=(7, 3), dpi=100)
    ax.plot(hours, curve, marker="o")
    ax.set_xlabel("hours of traffic")
    ax.set_ylabel("NDCG@10")
    ax.set_title("Learning curve")
    fig.tight_layout()
    fig.savefig(bench / f"{stem}.png")
    plt.close(fig)


@pytest.mark.django_db(transaction=True)
def test_merchant_works_in_the_console(
    live_server, small_catalog, settings, isolated_data_dir, celery_worker
):
    from playwright.sync_api import expect, sync_playwright

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # All database work happens before Playwright starts (its sync API runs an event loop in
    # this thread, and Django refuses ORM calls from such a thread).
    phones = small_catalog["phones"]
    make_user("alice", phones)
    make_user("sam", None, is_staff=True)
    add_products(small_catalog)
    add_events(random.Random(7))
    add_models(phones)
    add_bench(isolated_data_dir, registry.active("base", phones).name)
    p1_docid = Product.objects.get(sku="P1").docid.path
    p4 = Product.objects.get(sku="P4")
    feed = isolated_data_dir / "new-products.csv"
    feed.write_text(SMALL_CSV)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    base = f"{live_server.url}/console"

    def shot(page, name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"), full_page=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900}, accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            def nav(name: str) -> None:
                page.get_by_role("navigation", name="Console").get_by_role(
                    "link", name=name, exact=True
                ).click()

            def sign_in(username: str) -> None:
                page.goto(f"{base}/")
                expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
                page.get_by_label("Username").fill(username)
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()

            page.goto(f"{base}/")
            page.get_by_label("Username").fill("alice")
            page.get_by_label("Password").fill("wrong")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("correct username and password")
            shot(page, "login")
            sign_in("alice")
            expect(page.get_by_role("heading", level=1)).to_have_text("Phone Shop")
            expect(page.get_by_test_id("stat-products")).to_have_text("34")
            shot(page, "overview")

            nav("Products")
            expect(page.locator('[data-testid="product-table"] tbody tr')).to_have_count(25)
            expect(page.get_by_test_id("page-info")).to_have_text("1–25 of 34")
            shot(page, "products")
            page.get_by_role("searchbox", name="Search products").fill("otterbox")
            page.get_by_role("button", name="Filter").click()
            expect(page.locator('[data-testid="product-table"] tbody tr')).to_have_count(1)
            page.get_by_role("link", name="OtterBox Defender Case for Apple iPhone 7").click()
            expect(page.get_by_test_id("docid")).to_have_text(p1_docid)
            expect(page.get_by_test_id("learned")).to_have_text("Learned")
            shot(page, "product")

            page.get_by_role("link", name="Edit").click()
            page.get_by_label("Title").fill("")
            page.get_by_label("Price").fill("-5")
            page.get_by_role("button", name="Save changes").click()
            expect(page.locator(".errorlist").first).to_be_visible()
            expect(page.locator(".field.has-error")).to_have_count(2)
            shot(page, "product-edit-errors")
            page.get_by_label("Title").fill("OtterBox Defender Case for Apple iPhone 7 - Black")
            page.get_by_label("Price").fill("37.50")
            page.get_by_role("button", name="Save changes").click()
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "OtterBox Defender Case for Apple iPhone 7 - Black"
            )
            expect(page.locator(".messages")).to_contain_text("Saved P1")

            page.goto(f"{base}/phone-shop/products/{p4.pk}/")
            expect(page.get_by_test_id("learned")).to_contain_text("Not yet learned")

            nav("Feeds")
            page.get_by_label("Feed file").set_input_files(str(feed))
            page.get_by_label("Format").select_option("csv")
            page.get_by_role("button", name="Upload and import").click()
            progress = page.get_by_test_id("feed-progress")
            status = progress.locator("[data-field=status]")
            try:
                expect(status).to_have_text(re.compile("done|failed"), timeout=90_000)
            except AssertionError:
                print(celery_worker.read_text()[-5000:])
                raise
            assert status.inner_text() == "done", (
                progress.locator("[data-field=error]").inner_text(),
                celery_worker.read_text()[-3000:],
            )
            expect(progress.locator("[data-field=percent]")).to_have_text("100%")
            expect(progress.locator("[data-count=created]")).to_have_text("2")
            expect(progress.locator("[data-count=rejected]")).to_have_text("2")
            expect(page.get_by_test_id("rejected-rows")).to_contain_text("bad price")
            shot(page, "feed-done")
            with page.expect_download() as download_info:
                page.get_by_role("link", name="Download validation report (CSV)").click()
            report = download_info.value
            assert report.suggested_filename == "new-products-errors.csv"
            text = report.path().read_text(encoding="utf-8")
            assert text.splitlines()[0] == "row,sku,error" and "bad price" in text
            page.get_by_role("link", name="Back to feeds").click()
            expect(page.get_by_test_id("feed-table")).to_contain_text("new-products.csv")
            shot(page, "feeds")

            nav("Docids")
            expect(page.get_by_test_id("docid-tree")).to_contain_text("cell-phones/accessories")
            shot(page, "docids")

            nav("Analytics")
            expect(page.get_by_test_id("zero-queries")).to_contain_text("pixel 9 pro fold")
            expect(page.get_by_test_id("top-queries")).to_contain_text("iphone case")
            shot(page, "analytics")

            nav("Search quality")
            relevance = page.get_by_test_id("benchmark").filter(has_text="relevance")
            expect(relevance).to_contain_text("hybrid")
            expect(page.locator("img.plot")).to_be_visible()
            # decode() waits for the image (reading naturalWidth at once was flaky)
            plot_width = "img => img.decode().then(() => img.naturalWidth)"
            assert page.locator("img.plot").evaluate(plot_width) == 700
            curve = page.get_by_test_id("benchmark").filter(has_text="learning-curve")
            expect(curve).to_contain_text("traffic hybrid ndcg@10")
            # regression: the curve's table widened the whole page past the window
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            shot(page, "quality")

            nav("Models")
            expect(page.get_by_test_id("active-version").first).to_contain_text(
                "adapter-phone-shop-h02"
            )
            expect(page.get_by_role("button", name="Promote")).to_have_count(0)
            shot(page, "models")

            response = page.goto(f"{base}/grocer/")
            assert response is not None and response.status == 404

            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(f"{base}/phone-shop/products/")
            page.screenshot(path=str(SCREENSHOTS / "console-mobile-products.png"))
            page.set_viewport_size({"width": 1360, "height": 900})

            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            sign_in("sam")
            page.goto(f"{base}/phone-shop/models/")
            page.locator("tr", has_text="adapter-phone-shop-h04").get_by_role(
                "button", name="Promote"
            ).click()
            expect(page.locator(".messages")).to_contain_text(
                "adapter-phone-shop-h04 is now the active adapter model"
            )
            shot(page, "models-staff")
            page.get_by_label("Store").select_option(label="Grocer")
            page.wait_for_url("**/console/grocer/")
            expect(page.get_by_role("heading", level=1)).to_have_text("Grocer")
            assert errors == [], errors
        finally:
            browser.close()
    assert registry.active("adapter", phones).name == "adapter-phone-shop-h04"
    # the feed (uploaded after the manual edit) updated P1 by sku and created N1 with a docid
    assert Product.objects.get(sku="P1").price == Decimal("34.99")
    assert Product.objects.get(merchant=phones, sku="N1").docid.path.startswith("cell-phones/")
