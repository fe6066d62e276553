"""``ranking.search``: results, merchant isolation, filters, facets, paging, validation,
fallbacks, and the index following catalog edits."""

from __future__ import annotations

import shutil
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Merchant, Product
from ranking import SearchQueryError, inverted, search, service

PHONE = "phone-shop"
GROCER = "grocer"


def skus(response) -> list[str]:
    return [r.sku for r in response.results]


# --- results ----------------------------------------------------------------------------------
def test_iphone_in_phone_shop(small_catalog):
    response = search("iphone", merchant=PHONE)

    assert set(skus(response)) == {"P1", "P3"}
    assert response.total == 2
    assert response.query == "iphone"
    assert response.corrected_query is None
    assert response.took_ms > 0
    for result in response.results:
        assert result.merchant == PHONE
        assert "iPhone" in result.title
        assert result.docid is not None
        assert result.paths == ["bm25"]
        assert result.score > 0
    by_sku = {r.sku: r for r in response.results}
    assert by_sku["P1"].category_path == "cell-phones/accessories/cases"
    assert by_sku["P1"].category_name == "Cell Phones > Accessories > Cases"
    assert str(by_sku["P3"].price) == "649.00"
    assert by_sku["P1"].docid == Product.objects.get(sku="P1").docid.path
    assert [r.score for r in response.results] == sorted(
        (r.score for r in response.results), reverse=True
    )


def product_queries(context: CaptureQueriesContext) -> int:
    return sum('FROM "catalog_product"' in q["sql"] for q in context.captured_queries)


def test_results_reuse_rows_already_loaded_and_read_only_the_missing_ones(small_catalog):
    from ranking.features import load_products
    from ranking.service import hydrate
    from ranking.types import Candidate

    ids = dict(Product.objects.values_list("sku", "pk"))
    rows = load_products([ids["P1"], ids["P3"]])
    page = [Candidate(ids["P3"], 2.0, "bm25+dense", 1), Candidate(ids["P1"], 1.0, "bm25", 2)]
    with CaptureQueriesContext(connection) as context:  # the ranker's rows cover the page
        hits = hydrate(page, products=rows)
    assert product_queries(context) == 0
    assert [h.sku for h in hits] == ["P3", "P1"] and hits[0].paths == ["bm25", "dense"]
    page.append(Candidate(ids["P2"], 0.5, "bm25", 3))
    with CaptureQueriesContext(connection) as context:
        hits = hydrate(page, products=rows)
    assert product_queries(context) == 1
    assert [h.sku for h in hits] == ["P3", "P1", "P2"]
    assert hits[2].category_name == Product.objects.get(sku="P2").category.full_name
    assert hits[2].price == Product.objects.get(sku="P2").price


def test_request_id_unique_per_call(small_catalog):
    ids = {search("iphone", merchant=PHONE).request_id for _ in range(5)}
    assert len(ids) == 5
    assert all(ids)


def test_default_pipeline_is_bm25(small_catalog):
    assert skus(search("iphone", merchant=PHONE)) == skus(
        search("iphone", merchant=PHONE, pipeline="bm25")
    )


def test_to_json_shape(small_catalog):
    data = search("iphone", merchant=PHONE).to_json()
    assert data["total"] == 2
    assert {r["sku"] for r in data["results"]} == {"P1", "P3"}
    assert all(isinstance(r["price"], float) for r in data["results"])
    assert "debug" not in data["results"][0]


# --- merchants --------------------------------------------------------------------------------
def test_merchant_isolation(small_catalog):
    scoped = search("apple", merchant=PHONE)
    assert "G2" not in skus(scoped)
    assert set(skus(scoped)) == {"P1", "P3"}
    assert all(r.merchant == PHONE for r in scoped.results)

    grocer = search("apple", merchant=GROCER)
    assert skus(grocer) == ["G2"]

    everywhere = search("apple", merchant=None)
    assert set(skus(everywhere)) == {"P1", "P3", "G2"}
    assert everywhere.total == 3
    assert {r.merchant for r in everywhere.results} == {PHONE, GROCER}


def test_grocer_words_never_leak_into_phone_shop(small_catalog):
    assert search("bananas", merchant=PHONE).results == []
    assert skus(search("bananas", merchant=None)) == ["G1"]


# --- filters, facets, paging ------------------------------------------------------------------
def test_category_filter_by_path_prefix(small_catalog):
    response = search("iphone", merchant=PHONE, category="cell-phones/accessories")
    assert skus(response) == ["P1"]
    assert response.total == 1

    cases = search("case", merchant=PHONE, category="cell-phones/accessories")
    assert set(skus(cases)) == {"P1", "P2"}
    assert all(r.category_path.startswith("cell-phones/accessories/") for r in cases.results)

    whole_tree = search("iphone", merchant=PHONE, category="cell-phones")
    assert set(skus(whole_tree)) == {"P1", "P3"}

    assert search("iphone", merchant=PHONE, category="produce").results == []


def test_facet_counts_sum_to_total(small_catalog):
    for merchant in (PHONE, None):
        response = search("apple", merchant=merchant)
        assert sum(f.count for f in response.facets) == response.total
    response = search("cell", merchant=PHONE)
    assert response.total == 4
    facets = {f.path: (f.name, f.count) for f in response.facets}
    assert facets == {
        "cell-phones/accessories/cases": ("Cell Phones > Accessories > Cases", 2),
        "cell-phones/unlocked-phones": ("Cell Phones > Unlocked Phones", 2),
    }


def test_facets_count_the_products_that_match_every_word(small_catalog):
    """Regression: "phones" is in every product's category names, so the any-word facets of
    "unlocked phones" listed as many cases as phones (on BestBuy, cases came first)."""
    response = search("unlocked phones", merchant=PHONE, pipeline="bm25")
    assert {f.path: f.count for f in response.facets} == {"cell-phones/unlocked-phones": 2}
    assert response.total == 4  # the any-word matches can still be paged through
    assert set(skus(response)[:2]) == {"P3", "P4"}
    # no product holds both words: the any-word counts, rather than no facets at all
    neither = search("otterbox galaxy", merchant=PHONE, pipeline="bm25")
    assert {f.path: f.count for f in neither.facets} == {
        "cell-phones/accessories/cases": 2,
        "cell-phones/unlocked-phones": 1,
    }


def test_pagination_is_consistent(small_catalog):
    everything = skus(search("cell", merchant=PHONE, k=10))
    assert len(everything) == 4
    page1 = search("cell", merchant=PHONE, k=2, offset=0)
    page2 = search("cell", merchant=PHONE, k=2, offset=2)
    assert skus(page1) + skus(page2) == everything
    assert not set(skus(page1)) & set(skus(page2))
    assert page1.total == page2.total == 4
    beyond = search("cell", merchant=PHONE, k=2, offset=4)
    assert beyond.results == [] and beyond.total == 4


def test_pages_past_the_recall_depth_ask_the_paths_for_more(small_catalog, monkeypatch):
    """Each path proposes ``RECALL_DEPTH`` candidates, but a page past them asks for deeper."""
    everything = skus(search("cell", merchant=PHONE, k=10))
    monkeypatch.setattr(service, "RECALL_DEPTH", 1)
    pages = [skus(search("cell", merchant=PHONE, k=1, offset=i)) for i in range(4)]
    assert [sku for page in pages for sku in page] == everything


# --- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"query": ""}, "empty"),
        ({"query": "   "}, "empty"),
        ({"query": "a" * 257}, "too long"),
        ({"query": "iphone", "k": 0}, "k must be between 1 and 200"),
        ({"query": "iphone", "k": 201}, "k must be between 1 and 200"),
        ({"query": "iphone", "offset": -1}, "offset"),
        ({"query": "iphone", "merchant": "no-such-shop"}, "unknown merchant"),
        ({"query": "iphone", "pipeline": "quantum"}, "unknown pipeline"),
    ],
)
def test_invalid_requests_raise_search_query_error(small_catalog, kwargs, message):
    with pytest.raises(SearchQueryError, match=message):
        search(**kwargs)


def test_limits_are_inclusive(small_catalog):
    assert search("a" * 256, merchant=PHONE).results == []
    assert len(search("cell", merchant=PHONE, k=200).results) == 4
    assert len(search("cell", merchant=PHONE, k=1).results) == 1


@pytest.mark.parametrize(
    "query", ['case: "iphone', "iphone AND", "(iphone", "title:iphone", "+iphone -case", "!!!"]
)
def test_query_syntax_characters_do_not_raise(small_catalog, query):
    response = search(query, merchant=PHONE)
    assert response.total >= 0
    if "iphone" in query:
        assert {"P1", "P3"} <= set(skus(response))


# --- fallbacks --------------------------------------------------------------------------------
def test_description_fallback(small_catalog, django_capture_on_commit_callbacks):
    product = Product.objects.get(sku="P4")
    product.description = "Ships with a complimentary snorkelling pouch."
    with django_capture_on_commit_callbacks(execute=True):
        product.save()

    response = search("snorkelling", merchant=PHONE)
    assert skus(response) == ["P4"]
    assert response.corrected_query is None
    # the description is only a fallback: a title match is never outranked by it
    assert "P4" not in skus(search("pouch otterbox", merchant=PHONE))


def test_spelling_fallback(small_catalog):
    response = search("otterbx", merchant=PHONE)
    assert response.corrected_query is not None
    assert "otterbox" in response.corrected_query
    assert skus(response) == ["P1"]
    assert response.query == "otterbx"

    everywhere = search("otterbx", merchant=None)
    assert everywhere.corrected_query == "otterbox"
    assert skus(everywhere) == ["P1"]


def test_a_misspelt_word_is_corrected_even_when_other_words_match(small_catalog):
    """Regression: "otterbx case" matched the cases by "case" alone and never corrected
    "otterbx" (on BestBuy, "chargr for samsng" ranked whatever held "for")."""
    response = search("otterbx case", merchant=PHONE, pipeline="bm25")
    assert response.corrected_query == "otterbox case"
    assert skus(response)[0] == "P1"
    # words some product holds are never "corrected": plural of a title word, description word
    assert search("defenders", merchant=PHONE).corrected_query is None
    assert search("description otterbox", merchant=PHONE).corrected_query is None


def test_no_match_no_correction(small_catalog):
    response = search("zzqxv", merchant=PHONE)
    assert response.results == [] and response.total == 0
    assert response.corrected_query is None
    assert response.facets == []


# --- index follows the catalog ----------------------------------------------------------------
def test_title_edit_is_searchable_at_once(small_catalog, django_capture_on_commit_callbacks):
    product = Product.objects.get(sku="P2")
    product.title = "Speck Gemstone Case for Samsung Galaxy S8"
    product.description = "Sparkly."  # the old title is in the description (fallback field)
    with django_capture_on_commit_callbacks(execute=True):
        product.save()

    assert skus(search("gemstone", merchant=PHONE)) == ["P2"]
    assert search("presidio", merchant=PHONE).results == []


def test_deactivating_removes_from_results(small_catalog, django_capture_on_commit_callbacks):
    product = Product.objects.get(sku="P1")
    product.active = False
    with django_capture_on_commit_callbacks(execute=True):
        product.save()

    assert skus(search("iphone", merchant=PHONE)) == ["P3"]
    assert search("iphone", merchant=PHONE).total == 1
    assert "P1" not in skus(search("otterbox", merchant=PHONE))

    product.active = True
    with django_capture_on_commit_callbacks(execute=True):
        product.save()
    assert set(skus(search("iphone", merchant=PHONE))) == {"P1", "P3"}


def test_deleting_removes_from_results(small_catalog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        Product.objects.get(sku="P3").delete()

    response = search("iphone", merchant=PHONE)
    assert skus(response) == ["P1"]
    assert response.total == 1


def test_new_product_is_searchable(small_catalog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        Product.objects.create(
            merchant=small_catalog["phones"], sku="P9", title="Nokia Lumia Flip Phone"
        )
    response = search("lumia", merchant=PHONE)
    assert skus(response) == ["P9"]
    assert response.results[0].docid is not None


def test_no_correction_towards_deleted_words(small_catalog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        Product.objects.get(sku="P2").delete()  # the only Speck product

    assert search("specks", merchant=None).corrected_query is None
    response = search("specks", merchant=PHONE)
    assert response.total == 0
    assert response.corrected_query is None


# --- build_index ------------------------------------------------------------------------------
def test_build_index_rebuilds_from_database(small_catalog, settings):
    shutil.rmtree(settings.SEARCH_INDEX_DIR)
    inverted.reset_cache()  # as a fresh `manage.py build_index` process would start

    out = StringIO()
    call_command("build_index", "--quiet", stdout=out)

    assert "indexed 6 products" in out.getvalue()
    assert (settings.SEARCH_INDEX_DIR / PHONE).is_dir()
    assert set(skus(search("iphone", merchant=PHONE))) == {"P1", "P3"}
    assert skus(search("bananas", merchant=GROCER)) == ["G1"]
    assert search("otterbx", merchant=PHONE).corrected_query == "otterbox"  # vocabulary too


def test_build_index_repairs_missed_updates(small_catalog):
    # changes made without the on_commit sync (a raw queryset update) are repaired by a rebuild
    Product.objects.filter(sku="P3").update(title="Apple Refurbished Handset")
    Product.objects.filter(sku="P1").update(active=False)
    assert search("refurbished", merchant=PHONE).results == []  # stale until rebuilt

    call_command("build_index", "--quiet", stdout=StringIO())

    assert skus(search("refurbished", merchant=PHONE)) == ["P3"]
    response = search("otterbox", merchant=PHONE)
    assert response.results == [] and response.total == 0  # inactive P1 is not indexed


def test_build_index_in_process_after_index_dir_removed(small_catalog, settings, monkeypatch):
    # keep the failure fast: the real default is 30 s of retrying
    monkeypatch.setattr(inverted._WriterSession.__init__, "__defaults__", (0.2,))
    search("iphone", merchant=PHONE)  # this process has the index open
    shutil.rmtree(settings.SEARCH_INDEX_DIR)

    call_command("build_index", "--quiet", stdout=StringIO())
    assert set(skus(search("iphone", merchant=PHONE))) == {"P1", "P3"}


def test_unscoped_search_covers_every_merchant(small_catalog):
    Merchant.objects.create(name="Empty Shop")  # no products, no index yet
    response = search("apple", merchant=None)
    assert set(skus(response)) == {"P1", "P3", "G2"}
