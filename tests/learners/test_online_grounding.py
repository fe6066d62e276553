"""Grounded sub-queries (learners/online/grounding.py): isolated, no database."""

from __future__ import annotations

from learners.generative.data import ProductDoc
from learners.online.grounding import GroundingVocabulary, grounded_pairs
from learners.online.pairs import Pair

BRANDS = ["Mophie", "Incipio", "Belkin", "Speck"]
KINDS = ["Car Charger", "Defender Case", "Power Bank"]
DEVICES = ["iPhone 7", "Galaxy S8", "Pixel"]


def catalog() -> list[ProductDoc]:
    """36 products: every brand × kind × device; "cell phones" is in every one of them."""
    products = []
    for i, (brand, kind, device) in enumerate(
        (b, k, d) for b in BRANDS for k in KINDS for d in DEVICES
    ):
        products.append(
            ProductDoc(
                product_id=i,
                docid=f"cell-phones/{kind.lower().replace(' ', '-')}/c00/{i:04d}",
                title=f"{brand} - {kind} for {device}",
                brand=brand,
                categories=("Cell Phones", f"{kind}s"),
            )
        )
    return products


def battery_catalog() -> list[ProductDoc]:
    """A battery case and three batteries: "battery" is a type of its own here."""
    return [
        ProductDoc(0, "c/battery-cases/0000", "Mophie - Battery Case for iPhone 7", "Mophie"),
        ProductDoc(1, "c/batteries/0001", "Ultralast - Battery for iPhone 7", "Ultralast"),
        ProductDoc(2, "c/batteries/0002", "Ultralast - Battery for Galaxy S8", "Ultralast"),
        ProductDoc(3, "c/batteries/0003", "Lenmar - Battery for Pixel", "Lenmar"),
    ]


def docid_of(title: str) -> str:
    return next(p.docid for p in catalog() if p.title == title)


# 36 products, share 0.4: a brand (9 products) or a device (12) is distinctive, "cell" (36) not
VOCABULARY = GroundingVocabulary(catalog(), generic_share=0.4)
MOPHIE_CHARGER = docid_of("Mophie - Car Charger for Pixel")


def test_only_words_the_clicked_product_holds_become_sub_queries():
    pairs = [Pair("cheap mophie charger pixel", MOPHIE_CHARGER, 2.0)]
    grounded = grounded_pairs(pairs, VOCABULARY, weight=0.5)
    assert {(p.query, p.docid, p.weight) for p in grounded} == {
        ("mophie", MOPHIE_CHARGER, 1.0),
        ("charger", MOPHIE_CHARGER, 1.0),
        ("pixel", MOPHIE_CHARGER, 1.0),
        # "cheap" is not in the product: dropped from the reduced query too
        ("mophie charger pixel", MOPHIE_CHARGER, 1.0),
    }


def test_words_common_across_the_catalog_and_stopwords_are_never_grounded():
    pairs = [Pair("mophie cell phone charger for car", MOPHIE_CHARGER)]
    queries = {p.query for p in grounded_pairs(pairs, VOCABULARY, weight=1.0)}
    assert queries == {"mophie", "charger", "car", "mophie charger car"}
    # with a stricter share the brand (in 9 of 36 products) is generic too
    strict = GroundingVocabulary(catalog(), generic_share=0.2)
    assert "mophie" not in {p.query for p in grounded_pairs(pairs, strict, weight=1.0)}


def test_a_one_word_query_or_a_query_the_product_holds_whole_is_not_reduced():
    assert grounded_pairs([Pair("mophie", MOPHIE_CHARGER)], VOCABULARY, weight=1.0) == []
    whole = grounded_pairs([Pair("mophie pixel", MOPHIE_CHARGER)], VOCABULARY, weight=1.0)
    assert sorted(p.query for p in whole) == ["mophie", "pixel"]


def test_a_word_of_another_product_is_not_grounded_on_this_one():
    pairs = [Pair("incipio charger", MOPHIE_CHARGER)]  # clicked a Mophie after typing Incipio
    assert [p.query for p in grounded_pairs(pairs, VOCABULARY, weight=1.0)] == ["charger"]
    assert grounded_pairs(pairs, VOCABULARY, weight=1.0)[0].docid == MOPHIE_CHARGER


def test_weights_are_summed_over_the_pairs_that_yield_them_and_capped():
    pairs = [
        Pair("mophie charger", MOPHIE_CHARGER, 4.0),
        Pair("mophie pixel", MOPHIE_CHARGER, 8.0),
        Pair("mophie car", MOPHIE_CHARGER, 16.0),
    ]
    grounded = {p.query: p.weight for p in grounded_pairs(pairs, VOCABULARY, weight=0.5)}
    assert grounded["charger"] == 2.0 and grounded["pixel"] == 4.0
    assert grounded["mophie"] == 14.0  # 2 + 4 + 8
    capped = {p.query: p.weight for p in grounded_pairs(pairs, VOCABULARY, weight=1.0)}
    assert capped["mophie"] == 16.0  # 28, capped like any pair


def test_weight_zero_turns_grounding_off():
    pairs = [Pair("mophie charger pixel", MOPHIE_CHARGER, 2.0)]
    assert grounded_pairs(pairs, VOCABULARY, weight=0.0) == []


def test_an_unknown_docid_grounds_nothing():
    assert grounded_pairs([Pair("mophie charger", "x/y/c00/9999")], VOCABULARY, weight=1.0) == []


def test_a_sub_query_naming_another_product_type_is_not_grounded():
    # "battery" is a type of its own here (three batteries), and a modifier in "Battery Case":
    # a click on the case after "iphone battery cases" must not teach "battery" -> case
    vocabulary = GroundingVocabulary(battery_catalog(), generic_share=1.0)
    case, battery = "c/battery-cases/0000", "c/batteries/0001"
    from_case = grounded_pairs([Pair("mophie iphone battery cases", case)], vocabulary, weight=1)
    # the reduced query "mophie iphone battery" reads as a battery too
    assert {p.query for p in from_case} == {"mophie", "iphone"}
    # the same word grounds where it names the product's own type
    from_battery = grounded_pairs([Pair("iphone batteries", battery)], vocabulary, weight=1)
    assert {p.query for p in from_battery} == {"iphone"}
    from_battery = grounded_pairs([Pair("cheap iphone battery", battery)], vocabulary, weight=1)
    assert {p.query for p in from_battery} == {"iphone", "battery", "iphone battery"}


def test_a_type_needs_several_products_and_a_category_says_what_a_product_is():
    chargers = ("Wireless Chargers & Cases",)
    products = [
        ProductDoc(0, "c/pads/0000", "Belkin - Wireless Charger Pad", "Belkin", chargers),
        ProductDoc(1, "c/chargers/0001", "Anker - Wall Charger", "Anker"),
        ProductDoc(2, "c/chargers/0002", "Belkin - Car Charger", "Belkin"),
        ProductDoc(3, "c/chargers/0003", "Mophie - Charger", "Mophie"),
        ProductDoc(4, "c/mounts/0004", "Mophie - Charger Mount", "Mophie"),
        ProductDoc(5, "c/shields/0005", "ZAGG - Screen for Pebble", "ZAGG"),
    ]
    vocabulary = GroundingVocabulary(products, generic_share=1.0)
    # "charger" is a type (three titles end in it): not the mount's, the pad's by its category
    mount = grounded_pairs([Pair("mophie charger", "c/mounts/0004")], vocabulary, weight=1)
    assert {p.query for p in mount} == {"mophie"}
    pad = grounded_pairs([Pair("belkin wireless charger", "c/pads/0000")], vocabulary, weight=1)
    assert {p.query for p in pad} == {"belkin", "wireless", "charger"}
    # one title ending in "screen" does not make it a type
    assert not vocabulary.names_another_type("screen", "c/mounts/0004")
