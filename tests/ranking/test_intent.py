"""Query intent: the type noun of titles and queries, the product a query names, and the
partition of the fused ranking by them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ranking import search
from ranking.features import ProductInfo, content_words
from ranking.intent import names_product, query_type, read_query, type_noun
from ranking.types import Candidate


def info(pid: int, title: str, brand: str = "") -> ProductInfo:
    return ProductInfo(pid, f"S{pid}", title, brand, "c", ("Cell Phones",), "", 0.0, 0.0)


@pytest.mark.parametrize(
    ("title", "brand", "noun"),
    [
        ("Virgin Mobile - Samsung Galaxy J3 Prepaid Cell Phone - Gold", "Virgin Mobile", "phone"),
        ("OtterBox - Defender Series Case for Apple iPhone 7 - Black", "OtterBox", "case"),
        ("SmartLens - 8X Zoom Clip-On Camera Lenses - Black", "SmartLens", "lense"),
        ("Apple - iPhone 7 32GB - Black (Verizon)", "Apple", ""),  # a model, not a type
    ],
)
def test_type_noun_is_the_singular_head_of_the_product_phrase(title, brand, noun):
    assert type_noun(title, brand) == noun


PHONE = info(1, "Virgin Mobile - LG K3 Prepaid Cell Phone - Black", "Virgin Mobile")
CARD = info(2, "Virgin Mobile - $25 Top-Up Card", "Virgin Mobile")
LENS = info(3, "Olloclip - Camera Lens for Apple iPhone 7 - Black", "Olloclip")
CORD = info(4, "Metra - Phone Charging Cord - Black", "Metra")


@pytest.mark.parametrize(
    ("query", "noun"),
    [
        ("camera phones", "phone"),  # head-final: phones that have cameras
        ("phone cords", "cord"),  # ... and cords for phones
        ("cell phones virgin mobile", "phone"),  # trailing brand words are not the type
        ("virgin mobile cards", "card"),
        ("virgin mobile", None),  # a brand alone names no type
        ("samsung galaxy", None),  # no candidate is a "galaxy"
        ("iphone camera", None),  # a modifier of LENS's type, not a type
    ],
)
def test_query_type_is_the_last_word_naming_a_candidates_type(query, noun):
    assert query_type(query, [PHONE, CARD, LENS, CORD]) == noun


def candidates(*ids: int) -> list[Candidate]:
    return [Candidate(pid, 1.0 / rank, "fused", rank) for rank, pid in enumerate(ids, start=1)]


def test_a_named_type_leads_the_window_in_fused_order_and_ranks_are_renumbered():
    infos = {
        1: info(1, "Acme - Wall Charger - Black", "Acme"),
        2: info(2, "Acme - Smart Cell Phone - Black", "Acme"),
        3: info(3, "Acme - Car Charger - White", "Acme"),
        4: info(4, "Acme - Flip Cell Phone - Red", "Acme"),
        5: info(5, "Acme - Basic Cell Phone - Blue", "Acme"),
    }
    ranked, reading = read_query("acme phone", candidates(1, 2, 3, 4, 5), infos, window=4)
    assert reading == "type:phone"
    # phones 2 and 4 lead in their fused order; 5 lies below the window and stays there
    assert [c.product_id for c in ranked] == [2, 4, 1, 3, 5]
    assert [c.rank for c in ranked] == [1, 2, 3, 4, 5]


GALAXY = info(1, "Samsung - Galaxy S7 32GB - Black Onyx (Verizon)", "Samsung")
COVER = info(2, "Samsung - LED View Cover for Samsung Galaxy S7 - Gold", "Samsung")
CASE = info(3, "Spigen - Rugged Armor Case for Samsung Galaxy S7 - Black", "Spigen")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("samsung s7", [GALAXY]),  # the cover says "S7" only as what it fits
        ("samsung cover", [COVER]),
        ("galaxy s7 black", [GALAXY]),
        ("spigen black", [CASE]),  # the variant after the devices is the product's own
    ],
)
def test_names_product_reads_the_product_segment_and_brand_only(query, named):
    words = content_words(query)
    assert [i for i in (GALAXY, COVER, CASE) if names_product(words, i)] == named


def test_a_query_naming_no_type_puts_the_products_it_names_first():
    infos = {i.product_id: i for i in (COVER, CASE, GALAXY)}
    ranked, reading = read_query("samsung s7", candidates(2, 3, 1), infos, window=50)
    assert reading == "product" and [c.product_id for c in ranked] == [1, 2, 3]


def test_the_order_is_left_alone_when_nothing_is_asked_for_or_nothing_matches():
    infos = {i.product_id: i for i in (COVER, CASE, GALAXY)}
    for query in ("for the", "motorola"):  # only stopwords; no candidate names it
        ranked, reading = read_query(query, candidates(2, 3, 1), infos, window=50)
        assert reading is None and [c.product_id for c in ranked] == [2, 3, 1]


@pytest.fixture
def charger_and_phone(small_catalog):
    """A fast charger that BM25 prefers for "fast phone" over the phone the shopper wants."""
    from catalog import docids
    from catalog.models import Category, Product
    from ranking import inverted

    phones = small_catalog["phones"]
    category = Category.objects.get(merchant=phones, name="Unlocked Phones")
    for sku, title in [
        ("F1", "Acme - Fast Charge Fast Wall Charger for Phone - Black"),
        ("F2", "Acme - Zoom Cell Phone - Silver"),
    ]:
        Product.objects.create(
            merchant=phones, sku=sku, title=title, brand="Acme", category=category, price=Decimal(9)
        )
    docids.assign(phones)
    inverted.rebuild_index()


def test_hybrid_reads_the_query_and_bm25_is_untouched(charger_and_phone, settings):
    bm25 = search("fast phone", merchant="phone-shop", pipeline="bm25")
    assert [r.sku for r in bm25.results][:2] == ["F1", "F2"]  # the lexical order to correct
    hybrid = search("fast phone", merchant="phone-shop", pipeline="hybrid", debug=True)
    assert [r.sku for r in hybrid.results][:2] == ["F2", "F1"]
    assert hybrid.results[0].debug["query_intent"] == "type:phone"
    settings.SEARCH_INTENT_DEPTH = 0  # off: plain fusion again
    off = search("fast phone", merchant="phone-shop", pipeline="hybrid", debug=True)
    assert [r.sku for r in off.results][:2] == ["F1", "F2"]
    assert off.results[0].debug["query_intent"] is None


def test_the_generative_models_bm25_teacher_reads_the_query_too(charger_and_phone):
    from catalog.models import Product
    from learners.generative.base import lexical_teacher
    from learners.generative.data import load_products

    docid = dict(Product.objects.values_list("sku", "docid__path"))
    teacher = lexical_teacher("phone-shop", load_products("phone-shop"))
    assert teacher("fast phone", 2) == [docid["F2"], docid["F1"]]  # bm25 alone: F1, F2
