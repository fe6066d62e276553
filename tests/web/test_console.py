"""Merchant console: access control (ORM and HTTP), catalog forms, docids, models, analytics,
quality. Feed uploads are in ``test_console_feeds.py``, the browser in
``test_console_browser.py``."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalog.models import Docid, FeedUpload, Merchant, Product
from learners import registry
from learners.aggregates import aggregate_hour
from learners.events.consumer import store_events
from learners.events.schema import parse_event
from learners.models import ModelVersion
from tests.conftest import make_category
from tests.learners import factories as f
from tests.web import console_support
from tests.web.console_support import PASSWORD, client_for
from web.console import access, charts
from web.console.views.models import HEADLINE_METRICS, chains, flatten
from web.console.views.quality import tables_of

pytestmark = pytest.mark.django_db
# fixtures shared by the console test modules
media_root = console_support.media_root
people = console_support.people


def url(view: str, merchant: Merchant | str, **kwargs) -> str:
    slug = merchant if isinstance(merchant, str) else merchant.slug
    return reverse(f"console:{view}", kwargs={"merchant_slug": slug, **kwargs})


@pytest.fixture(autouse=True)
def _clear_cache():
    """Login rate-limit buckets live in the cache; every test starts with full buckets."""
    cache.clear()
    yield
    cache.clear()


# -- access: ORM scoping -------------------------------------------------------------------


def test_merchants_for_scopes_by_membership(people, small_catalog):
    phones, grocery = small_catalog["phones"], small_catalog["grocery"]
    assert list(access.merchants_for(people["alice"])) == [phones]
    assert list(access.merchants_for(people["gina"])) == [grocery]
    assert set(access.merchants_for(people["staff"])) == {phones, grocery}
    assert not access.merchants_for(people["nobody"]).exists()
    from django.contrib.auth.models import AnonymousUser

    assert not access.merchants_for(AnonymousUser()).exists()
    skus = set(access.scoped(Product.objects.all(), people["gina"]).values_list("sku", flat=True))
    assert skus == {"G1", "G2"}
    people["alice"].is_active = False
    assert not access.merchants_for(people["alice"]).exists()


def test_can_edit_by_role(people, small_catalog):
    phones = small_catalog["phones"]
    assert access.can_edit(people["alice"], phones)
    assert not access.can_edit(people["victor"], phones)
    assert not access.can_edit(people["gina"], phones)
    assert access.can_edit(people["staff"], phones)


# -- access: HTTP --------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(small_catalog):
    response = Client().get(url("products", small_catalog["phones"]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("console:login"))


def test_other_merchants_pages_are_404(people, small_catalog):
    phones = small_catalog["phones"]
    gina = client_for(people["gina"])
    p1 = Product.objects.get(sku="P1")
    upload = FeedUpload.objects.create(
        merchant=phones, file="feeds/x.csv", original_name="x.csv", format="csv"
    )
    for name, kwargs in [
        ("overview", {}),
        ("products", {}),
        ("product", {"pk": p1.pk}),
        ("product-edit", {"pk": p1.pk}),
        ("feeds", {}),
        ("feed", {"pk": upload.pk}),
        ("feed-status", {"pk": upload.pk}),
        ("feed-report", {"pk": upload.pk}),
        ("docids", {}),
        ("models", {}),
        ("analytics", {}),
        ("quality", {}),
    ]:
        assert gina.get(url(name, phones, **kwargs)).status_code == 404, name
    # the phone shop's product or feed through gina's own store's URL: still not found
    grocery = small_catalog["grocery"]
    assert gina.get(url("product", grocery, pk=p1.pk)).status_code == 404
    assert gina.get(url("feed-status", grocery, pk=upload.pk)).status_code == 404
    assert gina.get(url("product-edit", grocery, pk=p1.pk)).status_code == 404


def test_other_merchants_product_cannot_be_changed(people, small_catalog):
    phones, grocery = small_catalog["phones"], small_catalog["grocery"]
    gina = client_for(people["gina"])
    p1 = Product.objects.get(sku="P1")
    data = {"sku": "P1", "title": "hacked", "popularity": 0, "attributes": "{}", "active": "on"}
    assert gina.post(url("product-edit", phones, pk=p1.pk), data).status_code == 404
    assert gina.post(url("product-edit", grocery, pk=p1.pk), data).status_code == 404
    assert gina.post(url("product-active", grocery, pk=p1.pk)).status_code == 404
    p1.refresh_from_db()
    assert p1.title.startswith("OtterBox") and p1.active


def test_viewer_reads_but_cannot_change(people, small_catalog):
    phones = small_catalog["phones"]
    victor = client_for(people["victor"])
    p1 = Product.objects.get(sku="P1")
    page = victor.get(url("product", phones, pk=p1.pk))
    assert page.status_code == 200
    assert b"Deactivate" not in page.content and b">Edit<" not in page.content
    assert victor.get(url("product-edit", phones, pk=p1.pk)).status_code == 403
    assert victor.get(url("product-new", phones)).status_code == 403
    assert victor.post(url("product-active", phones, pk=p1.pk)).status_code == 403
    feeds = victor.get(url("feeds", phones))
    assert feeds.status_code == 200 and b"Upload and import" not in feeds.content
    assert victor.post(url("feeds", phones), {"format": "csv"}).status_code == 403
    p1.refresh_from_db()
    assert p1.active


def test_user_without_store_is_told_so(people):
    response = client_for(people["nobody"]).get(reverse("console:home"))
    assert response.status_code == 403
    assert b"not a member of any store" in response.content


def test_home_redirects_to_own_store(people):
    gina = client_for(people["gina"])
    response = gina.get(reverse("console:home"))
    assert response.status_code == 302 and response["Location"] == url("overview", "grocer")
    # the store switcher cannot be used to reach another store
    switched = gina.get(reverse("console:home"), {"store": "phone-shop"})
    assert switched["Location"] == url("overview", "grocer")
    staff = client_for(people["staff"]).get(reverse("console:home"), {"store": "phone-shop"})
    assert staff["Location"] == url("overview", "phone-shop")


def test_staff_sees_every_store_with_a_switcher(people, small_catalog):
    staff = client_for(people["staff"])
    for merchant in small_catalog.values():
        page = staff.get(url("overview", merchant))
        assert page.status_code == 200
        assert b"data-store-switch" in page.content and b"Grocer" in page.content


def test_forms_require_csrf(people, small_catalog):
    phones = small_catalog["phones"]
    client = client_for(people["alice"], enforce_csrf_checks=True)
    p1 = Product.objects.get(sku="P1")
    assert client.post(url("product-active", phones, pk=p1.pk)).status_code == 403
    assert client.post(url("product-new", phones), {"sku": "Z", "title": "Z"}).status_code == 403
    assert (
        Client(enforce_csrf_checks=True)
        .post(reverse("console:login"), {"username": "alice", "password": PASSWORD})
        .status_code
        == 403
    )
    p1.refresh_from_db()
    assert p1.active


# -- login ---------------------------------------------------------------------------------


def test_login_logout(people):
    client = Client()
    page = client.get(reverse("console:login"))
    assert page.status_code == 200 and b"Sign in" in page.content
    bad = client.post(reverse("console:login"), {"username": "alice", "password": "nope"})
    assert bad.status_code == 200 and b"correct username and password" in bad.content
    ok = client.post(reverse("console:login"), {"username": "alice", "password": PASSWORD})
    assert ok.status_code == 302 and ok["Location"] == reverse("console:home")
    assert client.get(url("products", "phone-shop")).status_code == 200
    assert client.get(reverse("console:logout")).status_code == 405  # a link cannot log out
    client.post(reverse("console:logout"))
    assert client.get(url("products", "phone-shop")).status_code == 302


def test_login_is_rate_limited_per_ip_and_username(people, settings):
    settings.CONSOLE_LOGIN_ATTEMPTS_PER_MIN = 3
    client = Client()
    login = reverse("console:login")
    for _ in range(3):
        assert client.post(login, {"username": "alice", "password": "guess"}).status_code == 200
    blocked = client.post(login, {"username": "Alice", "password": PASSWORD})
    assert blocked.status_code == 429 and int(blocked["Retry-After"]) >= 1
    assert b"Too many sign-in attempts" in blocked.content
    assert "_auth_user_id" not in client.session  # even the right password is not tried
    # another account from the same address, or the same account from elsewhere, still works
    other = client.post(login, {"username": "gina", "password": PASSWORD})
    assert other.status_code == 302
    elsewhere = Client(REMOTE_ADDR="10.0.0.9")
    assert elsewhere.post(login, {"username": "alice", "password": PASSWORD}).status_code == 302


# -- catalog -------------------------------------------------------------------------------


def test_product_list_search_filter_and_paginate(people, small_catalog):
    phones = small_catalog["phones"]
    chargers = make_category(phones, ["Cell Phones", "Accessories", "Chargers"])
    for i in range(30):
        Product.objects.create(
            merchant=phones, sku=f"C{i:02d}", title=f"Wall charger {i}", category=chargers
        )
    alice = client_for(people["alice"])
    page = alice.get(url("products", phones))
    assert page.status_code == 200
    assert len(page.context["page"]) == 25 and page.context["page"].paginator.count == 34
    assert b"Organic Bananas" not in page.content  # the grocer's product
    second = alice.get(url("products", phones), {"page": 2})
    assert len(second.context["page"]) == 9

    def skus(**params) -> set[str]:
        return {p.sku for p in alice.get(url("products", phones), params).context["page"]}

    assert skus(q="otterbox") == {"P1"}
    assert skus(q="p3") == {"P3"}  # exact sku
    accessories = chargers.parent
    filtered = alice.get(url("products", phones), {"category": accessories.pk})
    assert filtered.context["page"].paginator.count == 32  # cases + chargers, not handsets
    Product.objects.filter(sku="P2").update(active=False)
    assert skus(status="inactive") == {"P2"}
    grocer_category = small_catalog["grocery"].categories.first()
    invalid = alice.get(url("products", phones), {"category": grocer_category.pk})
    assert not invalid.context["form"].is_valid()  # another store's category is no choice


def test_create_product_with_inline_validation(people, small_catalog):
    phones = small_catalog["phones"]
    alice = client_for(people["alice"])
    bad = alice.post(
        url("product-new", phones),
        {
            "sku": "P1",
            "title": "  ",
            "price": "-3",
            "popularity": "0",
            "attributes": "[1, 2]",
            "merchant": small_catalog["grocery"].pk,
        },
    )
    assert bad.status_code == 200
    errors = bad.context["form"].errors
    assert set(errors) == {"sku", "title", "price", "attributes"}
    assert "already has this sku" in errors["sku"][0]
    assert b'class="field has-error' in bad.content and b"Please fix" in bad.content
    good = alice.post(
        url("product-new", phones),
        {
            "sku": "NEW-1",
            "title": "Pixel 8 Case",
            "brand": "Spigen",
            "price": "12.50",
            "popularity": "3",
            "attributes": '{"color": "Blue"}',
            "active": "on",
            "merchant": small_catalog["grocery"].pk,  # ignored: the URL decides
        },
    )
    product = Product.objects.get(sku="NEW-1")
    assert good.status_code == 302 and good["Location"] == url("product", phones, pk=product.pk)
    assert product.merchant == phones and product.attributes == {"color": "Blue"}
    assert product.price == Decimal("12.50")
    # a grocer's sku may be reused by the phone shop
    alice.post(url("product-new", phones), {"sku": "G1", "title": "Phone G1", "popularity": 0})
    assert Product.objects.filter(sku="G1").count() == 2


def test_edit_and_deactivate_product(people, small_catalog):
    phones = small_catalog["phones"]
    alice = client_for(people["alice"])
    p1 = Product.objects.get(sku="P1")
    form = alice.get(url("product-edit", phones, pk=p1.pk))
    assert form.status_code == 200 and b"OtterBox Defender" in form.content
    clash = alice.post(
        url("product-edit", phones, pk=p1.pk), {"sku": "P2", "title": "x", "popularity": 0}
    )
    assert "sku" in clash.context["form"].errors
    saved = alice.post(
        url("product-edit", phones, pk=p1.pk),
        {"sku": "P1", "title": "OtterBox Symmetry", "popularity": 1, "active": "on"},
    )
    assert saved.status_code == 302
    p1.refresh_from_db()
    assert p1.title == "OtterBox Symmetry"
    assert alice.get(url("product-active", phones, pk=p1.pk)).status_code == 405
    alice.post(url("product-active", phones, pk=p1.pk))
    p1.refresh_from_db()
    assert not p1.active and Docid.objects.filter(product=p1).exists()  # kept, just hidden
    page = alice.get(url("product", phones, pk=p1.pk))
    assert b"hidden from search" in page.content and b"Reactivate" in page.content


# -- docids and the serving model ----------------------------------------------------------


def register_model(merchant: Merchant, learned: list[str], **kwargs) -> ModelVersion:
    name, path = registry.new_version_dir("base", merchant)
    (path / "docids.json").write_text(json.dumps(learned))
    return registry.register("base", name, path, merchant=merchant, **kwargs)


def test_docids_file_name_matches_the_model_package():
    from learners.generative.model import DOCIDS_FILE
    from web.console.serving import DOCIDS_FILE as console_name

    assert console_name == DOCIDS_FILE


def test_product_shows_docid_and_whether_the_model_learned_it(people, small_catalog):
    phones = small_catalog["phones"]
    alice = client_for(people["alice"])
    p1, p2 = Product.objects.get(sku="P1"), Product.objects.get(sku="P2")
    page = alice.get(url("product", phones, pk=p1.pk))
    assert p1.docid.path.encode() in page.content
    assert page.context["learned"] is None and b"no model yet" in page.content
    version = register_model(phones, [p1.docid.path], status="active")
    learned = alice.get(url("product", phones, pk=p1.pk))
    assert learned.context["learned"] is True and version.name.encode() in learned.content
    unlearned = alice.get(url("product", phones, pk=p2.pk))
    assert unlearned.context["learned"] is False and b"Not yet learned" in unlearned.content
    # an adapter trained on this base serves on top of it, with the base's docids
    adapter = registry.register(
        "adapter", "adapter-1", version.directory, merchant=phones, metrics={"base": version.name}
    )
    registry.activate(adapter)
    served = alice.get(url("product", phones, pk=p1.pk)).context["model"]
    assert served.version == adapter and served.learned(p1.docid.path)
    # one trained on an older base is not what serves
    ModelVersion.objects.filter(pk=adapter.pk).update(metrics={"base": "base-old"})
    assert alice.get(url("product", phones, pk=p1.pk)).context["model"].version == version


def test_docid_tree_counts_subtrees(people, small_catalog):
    phones = small_catalog["phones"]
    p1 = Product.objects.get(sku="P1")
    register_model(phones, [p1.docid.path], status="active")
    Product.objects.create(merchant=phones, sku="LOOSE", title="No category thing")
    page = client_for(people["alice"]).get(url("docids", phones))
    rows = {row.prefix: row for row in page.context["tree"]}
    assert rows["cell-phones"].products == 5 - 1  # P1-P4 below it
    assert rows["cell-phones/accessories/cases"].products == 2
    assert rows["cell-phones/accessories/cases"].learned == 1
    assert rows["cell-phones/unlocked-phones"].learned == 0
    assert rows["uncategorized"].products == 1
    assert page.context["learned"] == 1
    assert b"cell-phones/accessories/cases/" in page.content


# -- models --------------------------------------------------------------------------------


def test_models_page_groups_adapters_and_staff_can_promote_and_roll_back(people, small_catalog):
    phones = small_catalog["phones"]
    base = register_model(phones, [], status="active", metrics={"recall@10": 0.5})
    hour1 = registry.register("adapter", "adapter-h1", base.directory, merchant=phones, parent=base)
    registry.activate(hour1)
    hour2 = registry.register(
        "adapter",
        "adapter-h2",
        base.directory,
        merchant=phones,
        parent=hour1,
        metrics={"new": {"recall@10": 0.61}, "probe": {"recall@10": 0.48}},
    )
    ModelVersion.objects.filter(pk=hour2.pk).update(decision={"passed": True, "reason": "gate ok"})
    other = register_model(small_catalog["grocery"], [], status="active")

    alice = client_for(people["alice"])
    page = alice.get(url("models", phones))
    assert page.status_code == 200
    (chain,) = page.context["chains"]
    assert chain.base.version == base
    assert [row.version.name for row in chain.adapters] == ["adapter-h2", "adapter-h1"]
    assert other.name.encode() not in page.content
    assert b"probe.recall@10" in page.content and b"gate ok" in page.content
    assert b"more metrics</summary>" not in page.content  # two metrics: nothing to fold
    assert b"Promote" not in page.content  # only staff
    assert alice.post(url("model-activate", phones, pk=hour2.pk)).status_code == 403

    staff = client_for(people["staff"])
    assert b"Promote" in staff.get(url("models", phones)).content
    staff.post(url("model-activate", phones, pk=hour2.pk))
    assert registry.active("adapter", phones).name == "adapter-h2"
    staff.post(url("model-rollback", phones, pk=hour2.pk))
    assert registry.active("adapter", phones).name == "adapter-h1"
    # a version of another merchant cannot be reached through this store
    assert staff.post(url("model-activate", phones, pk=other.pk)).status_code == 404
    failed = staff.post(url("model-rollback", phones, pk=base.pk), follow=True)
    assert b"no retired base version" in failed.content


def test_a_version_row_shows_its_headline_and_folds_the_rest():
    """Regression: an adapter's thirty-odd training and gate numbers were all listed, each row
    a screen high; the gate's scores and the hour's size show, the rest is one click away."""
    metrics = {
        "events": 3835,
        "train_pairs": 302,
        "holdout_pairs": 156,
        "training": {"seconds": 149.5, "steps": 30, "probe_checkpoints": [{"step": 8}]},
        "gate": {"candidate": {"holdout_recall": 0.3048}, "serving": {"holdout_recall": 0.3036}},
    }
    decision = {"state": "promoted", "owner": "vm:1", "reason": "held-out recall@1 up"}
    adapter = ModelVersion(name="a1", kind="adapter", metrics=metrics, decision=decision)
    row = chains([adapter])[1][0]
    assert [k for k, _ in row.metrics] == list(HEADLINE_METRICS["adapter"])  # all present
    assert [k for k, _ in row.more_metrics] == ["training.steps", "training.probe_checkpoints"]
    assert row.decision == [("state", "promoted"), ("reason", "held-out recall@1 up")]
    assert row.more_decision == [("owner", "vm:1")]
    # a kind without a headline shows its first metrics and folds the others
    unknown = ModelVersion(name="x", kind="other", metrics={f"m{i}": i for i in range(8)})
    row = chains([unknown])[1][0]
    assert len(row.metrics) == 6 and [k for k, _ in row.more_metrics] == ["m6", "m7"]


def test_flatten_and_chains_without_a_base():
    assert flatten({"a": {"b": 0.123456}, "c": [1, 2], "d": "x"}) == [
        ("a.b", "0.1235"),
        ("c", "[1, 2]"),
        ("d", "x"),
    ]
    orphan = ModelVersion(pk=7, name="a1", kind="adapter", parent_id=99)
    bases, others = chains([orphan])
    assert bases == [] and [row.version for row in others] == [orphan]


# -- analytics -----------------------------------------------------------------------------


def test_analytics_counts_this_merchant_only(people, small_catalog):
    now = timezone.now()
    t = now - timedelta(minutes=20)
    events = [
        f.impression(ts=t, request_id="r1", session_id="s1", query="iPhone case"),
        f.click("P1", 1, ts=t, request_id="r1", session_id="s1"),
        f.purchase("P1", 2, "39.99", ts=t, request_id="r1", session_id="s1"),
        f.impression(ts=t, request_id="r2", session_id="s2", query="iphone  case"),
        f.impression(ts=t, request_id="r3", session_id="s3", query="zzqx", skus=()),
        f.impression(ts=t, request_id="r4", session_id="s4", query="bananas", merchant="grocer"),
        f.impression(
            ts=t, request_id="r5", session_id="s5", query="ghost", merchant="grocer", skus=()
        ),
    ]
    store_events(parse_event(e) for e in events)
    aggregate_hour(t)
    page = client_for(people["alice"]).get(url("analytics", "phone-shop"))
    assert page.status_code == 200
    summary = page.context["summary"]
    assert (summary.searches, summary.clicks, summary.purchases) == (3, 1, 1)
    assert summary.ctr == pytest.approx(1 / 3) and summary.conversion == pytest.approx(1 / 3)
    assert summary.revenue == Decimal("79.98")
    assert summary.zero_result_rate == pytest.approx(1 / 3)
    top = page.context["top_queries"][0]
    assert (top["query"], top["searches"], top["clicks"]) == ("iphone case", 2, 1)
    zero = page.context["zero_queries"]
    assert [z["query"] for z in zero] == ["zzqx"]
    assert zero[0]["url"] == "/?merchant=phone-shop&q=zzqx"
    assert [r["sku"] for r in page.context["top_clicked"]] == ["P1"]
    assert page.context["top_purchased"][0]["product"].sku == "P1"
    assert b"ghost" not in page.content and b"bananas" not in page.content
    assert page.content.count(b"<svg") >= 2
    week = client_for(people["alice"]).get(url("analytics", "phone-shop"), {"window": "30d"})
    assert week.context["summary"].searches == 3 and week.context["window"].bucket == "day"


def test_chart_scales_and_escapes():
    assert charts.nice_ceiling(7) == 10 and charts.nice_ceiling(0.23) == 0.25
    assert charts.nice_ceiling(0) == 1
    svg = charts.chart(["<b>9h</b>", "10h"], [charts.Series("<script>", [1, None])])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;9h" in svg
    assert "No data" in charts.chart([], [])


# -- quality -------------------------------------------------------------------------------


PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00"
    b"\x00\x00\x00IEND\xaeB`\x82"
)


def write_run(directory, stem: str, data: dict, plot: bool = False) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.json").write_text(json.dumps(data))
    if plot:
        (directory / f"{stem}.png").write_bytes(PNG)


def test_quality_shows_newest_runs_for_this_merchant(people, settings):
    bench = settings.DATA_DIR / "bench"
    base = {"benchmark": "relevance", "merchant": "phone-shop", "queries": 40}
    write_run(
        bench,
        "relevance-20260301T100000Z",
        {
            **base,
            "created": "2026-03-01T10:00:00+00:00",
            "model_version": "base-old",
            "pipelines": {"bm25": {"ndcg@10": 0.31}},
        },
    )
    write_run(
        bench,
        "relevance-20260302T100000Z",
        {
            **base,
            "created": "2026-03-02T10:00:00+00:00",
            "model_version": "base-new",
            "pipelines": {"bm25": {"ndcg@10": 0.35}, "hybrid": {"ndcg@10": 0.42}},
        },
    )
    write_run(
        bench,
        "learning-curve-20260302T110000Z",
        {
            "benchmark": "learning-curve",
            "created": "2026-03-02T11:00:00+00:00",
            "curve": [{"hours": 1, "ndcg@10": 0.30}, {"hours": 2, "ndcg@10": 0.33}],
        },
        plot=True,
    )
    write_run(
        bench,
        "relevance-20260303T100000Z",
        {
            **base,
            "merchant": "grocer",
            "created": "2026-03-03T10:00:00+00:00",
            "model_version": "grocer-secret",
            "pipelines": {"bm25": {"ndcg@10": 0.9}},
        },
        plot=True,
    )
    (bench / "broken-20260101T000000Z.json").write_text("{not json")

    alice = client_for(people["alice"])
    page = alice.get(url("quality", "phone-shop"))
    assert page.status_code == 200
    by_name = {b.name: b for b in page.context["benchmarks"]}
    assert set(by_name) == {"relevance", "learning-curve"}
    relevance = by_name["relevance"]
    assert relevance.latest.model_version == "base-new" and len(relevance.runs) == 2
    assert relevance.tables[0].rows == [("bm25", ["0.3500"]), ("hybrid", ["0.4200"])]
    assert ("queries", "40") in relevance.facts
    assert "<svg" in relevance.history
    assert b"base-new" in page.content and b"grocer-secret" not in page.content
    plot = by_name["learning-curve"].latest.plot
    image = alice.get(url("quality-plot", "phone-shop", name=plot))
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert b"".join(image.streaming_content) == PNG
    hidden = alice.get(url("quality-plot", "phone-shop", name="relevance-20260303T100000Z.png"))
    assert hidden.status_code == 404
    assert (
        alice.get(url("quality-plot", "phone-shop", name="..%2F..%2Fdb.sqlite3")).status_code == 404
    )


def test_quality_charts_latency_runs_by_pipeline_and_clients(people, settings):
    """Regression: two ``bench latency`` runs made the panel fail (500): their ``pipelines``
    nest one level deeper (pipeline -> clients -> metrics) and the history chart compared
    dicts."""
    for day, p50 in ((1, 15.0), (2, 14.0)):
        write_run(
            settings.DATA_DIR / "bench",
            f"latency-2026030{day}T100000Z",
            {
                "benchmark": "latency",
                "created": f"2026-03-0{day}T10:00:00+00:00",
                "pipelines": {"hybrid": {"1": {"p50_ms": p50}, "16": {"p50_ms": 8 * p50}}},
                "runs": [{"run": 1, "pipeline": "hybrid", "clients": "1", "client_cpu_ms": 0.74}],
                "decode": {"query": "iphone", "p50_ms": 7.0},
            },
        )
    page = client_for(people["alice"]).get(url("quality", "phone-shop"))
    assert page.status_code == 200
    [latency] = page.context["benchmarks"]
    assert latency.tables[0].rows == [("hybrid / 1", ["14.0"]), ("hybrid / 16", ["112.0"])]
    # milliseconds read as milliseconds however small, not as four-place scores
    assert latency.tables[1].rows == [("", ["1", "hybrid", "1", "0.7"])]
    assert ("decode p50_ms", "7.0") in latency.facts
    assert "<svg" in latency.history and "hybrid / 16 p50_ms" in latency.history


def test_quality_shows_what_bench_relevance_just_measured(people, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    queries = tmp_path / "queries.json"
    queries.write_text(json.dumps([{"qid": "q1", "query": "otterbox"}]))
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1 0 P1 2\n")
    call_command(
        "bench", "relevance", "--queries", str(queries), "--qrels", str(qrels), stdout=StringIO()
    )

    page = client_for(people["alice"]).get(url("quality", "phone-shop"))
    relevance = {b.name: b for b in page.context["benchmarks"]}["relevance"]
    assert relevance.tables[0].columns[-2:] == ["condensed_ndcg@10", "judged@10"]
    assert relevance.tables[0].rows == [("bm25", ["1.0000"] * 6)]
    assert ("queries", "1") in relevance.facts


def test_quality_reads_a_spread_in_the_unit_of_its_measurement():
    """``qps_min`` / ``p99_ms_max`` are QPS and milliseconds; a score named ``*_min`` is not."""
    row = {"qps_min": 9.25, "p99_ms_max": 8.5, "ndcg_min": 0.5}
    [table], _ = tables_of({"pipelines": {"hybrid": {"16": row}}})
    assert table.rows == [("hybrid / 16", ["9.2", "8.5", "0.5000"])]


def test_quality_tables_from_any_result_shape():
    tables, facts = tables_of({"benchmark": "x", "p95_ms": 12.5, "per_path": {"a": {"n": 3}}})
    assert facts == [("p95_ms", "12.5")]
    assert tables[0].columns == ["n"] and tables[0].rows == [("a", ["3"])]


def test_quality_shows_a_section_of_a_result_under_its_name():
    comparison = {
        "baseline": "bm25",
        "resamples": 10000,
        "pipelines": {"hybrid": {"delta": 0.06, "closed": 0.407}},
    }
    tables, facts = tables_of({"queries": 104, "comparison": comparison})
    assert [(t.title, t.columns, t.rows) for t in tables] == [
        ("comparison pipelines", ["delta", "closed"], [("hybrid", ["0.0600", "0.4070"])])
    ]
    assert facts == [
        ("queries", "104"),
        ("comparison baseline", "bm25"),
        ("comparison resamples", "10,000"),
    ]


def test_quality_shows_a_curve_hour_by_hour():
    """Regression: the learning curve's per-hour lists were dropped; only its base scores
    showed, not where the curve went."""
    curve = {
        "benchmark": "learning-curve",
        "base_eval_ndcg@10": 0.55,
        "hours": [1, 2],
        "eval_ndcg@10": [0.56, 0.58],
        "decisions": ["promoted", "rejected"],
        "adapter_train_s": [150.2, None],
        "probe_queries": 1600,
        "other": [1, 2, 3],  # no partner of its length: not a table
    }
    tables, facts = tables_of(curve)
    [hourly] = tables
    assert hourly.title == "hours"
    assert hourly.columns == ["hours", "eval_ndcg@10", "decisions", "adapter_train_s"]
    assert hourly.rows == [
        ("", ["1", "0.5600", "promoted", "150.2"]),
        ("", ["2", "0.5800", "rejected", "—"]),
    ]
    assert ("probe_queries", "1,600") in facts


def test_every_page_renders_for_an_empty_store(people, settings):
    empty = Merchant.objects.create(name="Empty Store")
    staff = client_for(people["staff"])
    for name in ("overview", "products", "feeds", "docids", "models", "analytics", "quality"):
        response = staff.get(url(name, empty))
        assert response.status_code == 200, name
