"""Semantic docids: format, learned splits, stability, reserved space, trie, management command."""

from __future__ import annotations

import random
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog import docids
from catalog.docids import DocidTrie, SchemeParams, tokens_of
from catalog.models import Category, Docid, DocidScheme, Merchant, Product

CASES_PATH = "cell-phones/cell-phone-accessories/cases"

THEMES = {
    "leather": "leather wallet folio flip cover card slots stitched",
    "rugged": "rugged armor shockproof military drop tested heavy duty",
    "clear": "clear transparent crystal slim tpu bumper yellowing",
    "silicone": "silicone liquid soft touch microfiber lining matte",
    "battery": "battery charging power bank mah extended juice",
    "glitter": "glitter sparkle bling cute girls floral pattern",
    "wood": "wood bamboo walnut engraved natural eco",
    "waterproof": "waterproof underwater dustproof sealed swimming diving",
    "kickstand": "kickstand holster belt clip ring holder stand",
    "magsafe": "magsafe magnetic wireless charging compatible ring",
}
PHONES = ["iphone 13", "iphone 14", "galaxy s22", "pixel 7", "galaxy a53", "moto g"]
BRANDS = ["Otterbox", "Spigen", "Case-Mate", "Speck", "Incipio", "Caseology"]


def _category(merchant: Merchant, names: list[str]) -> Category:
    parent = None
    for depth, name in enumerate(names):
        slug = name.lower().replace(" ", "-")
        path = slug if parent is None else f"{parent.path}/{slug}"
        parent, _ = Category.objects.get_or_create(
            merchant=merchant,
            path=path,
            defaults={"parent": parent, "name": name, "slug": slug, "depth": depth},
        )
    assert parent is not None
    return parent


def _case_text(rng: random.Random) -> dict:
    theme = rng.choice(sorted(THEMES))
    words = THEMES[theme].split()
    phone = rng.choice(PHONES)
    return {
        "title": f"{rng.choice(BRANDS)} {' '.join(rng.sample(words, 3))} case for {phone}",
        "brand": rng.choice(BRANDS),
        "description": " ".join(rng.choices(words, k=12)) + f" fits {phone}",
        "attributes": {"material": theme, "compatible": phone},
    }


def _add_products(merchant, category, n, prefix, rng, start=0) -> list[Product]:
    objs = [
        Product(merchant=merchant, sku=f"{prefix}{start + i:04d}", category=category, **fields)
        for i, fields in enumerate(_case_text(rng) for _ in range(n))
    ]
    return Product.objects.bulk_create(objs)


@pytest.fixture
def catalog_data(db):
    """Merchant A: 250 cases (splits), 12 chargers, 3 uncategorised; merchant B: 5 fruits."""
    rng = random.Random(42)
    a = Merchant.objects.create(name="Phone Shop")
    b = Merchant.objects.create(name="Grocer")
    cases = _category(a, ["Cell Phones", "Cell Phone Accessories", "Cases"])
    chargers = _category(a, ["Cell Phones", "Cell Phone Accessories", "Chargers"])
    fruit = _category(b, ["Produce", "Fresh Fruits"])
    _add_products(a, cases, 250, "CASE", rng)
    _add_products(a, chargers, 12, "CHG", rng)
    _add_products(a, None, 3, "MISC", rng)
    Product.objects.bulk_create(
        Product(merchant=b, sku=f"F{i}", title=f"Organic fruit {i}", category=fruit)
        for i in range(5)
    )
    return {"a": a, "b": b, "cases": cases, "chargers": chargers, "rng": rng}


def _docid_map(merchant) -> dict[int, str]:
    return dict(Docid.objects.filter(merchant=merchant).values_list("product_id", "path"))


def _is_code(tok: str) -> bool:
    return tok.startswith("c") and tok[1:].isdigit()


@pytest.mark.django_db
def test_assign_gives_unique_docids_with_category_prefix(catalog_data):
    a, b = catalog_data["a"], catalog_data["b"]
    report = docids.assign(a)
    assert (report.assigned, report.kept, report.scheme_version) == (265, 0, 1)
    assert docids.assign(b).assigned == 5

    for merchant in (a, b):
        paths = _docid_map(merchant)
        assert len(paths) == Product.objects.filter(merchant=merchant).count()
        assert len(set(paths.values())) == len(paths)
    products = Product.objects.filter(merchant__in=[a, b]).select_related("category", "docid")
    for p in products:
        prefix = p.category.path if p.category else docids.UNCATEGORIZED
        assert p.docid.path.startswith(prefix + "/")
        leaf = tokens_of(p.docid.path)[-1]
        assert len(leaf) == 4 and leaf.isdigit()
        middle = tokens_of(p.docid.path)[len(tokens_of(prefix)) : -1]
        assert all(_is_code(t) for t in middle)


@pytest.mark.django_db
def test_split_codes_only_for_large_nodes(catalog_data):
    a = catalog_data["a"]
    docids.assign(a)
    paths = _docid_map(a).values()
    case_paths = [p for p in paths if p.startswith(CASES_PATH + "/")]
    assert all(_is_code(tokens_of(p)[3]) for p in case_paths)  # 250 > max_leaf: split
    for p in paths:
        if not p.startswith(CASES_PATH + "/"):  # small nodes: category + leaf only
            assert not any(_is_code(t) for t in tokens_of(p))
    # hierarchical k-means recursed until every sibling group fits max_leaf
    trie = docids.prefix_tree(a)
    assert max(trie.leaf_parents().values()) <= SchemeParams().max_leaf
    assert len({tokens_of(p)[3] for p in case_paths}) > 1
    assert DocidScheme.objects.get(merchant=a).params["split_nodes"] >= 1


@pytest.mark.django_db
def test_recursive_split_respects_small_max_leaf(catalog_data):
    a = catalog_data["a"]
    params = SchemeParams(k=3, max_leaf=20, max_depth=4)
    docids.assign(a, params=params)
    leaf_parents = docids.prefix_tree(a).leaf_parents()
    assert max(leaf_parents.values()) <= 20
    assert max(len(tokens_of(p)) for p in _docid_map(a).values()) >= len(tokens_of(CASES_PATH)) + 3
    scheme = DocidScheme.objects.get(merchant=a)
    assert scheme.params["k"] == 3 and scheme.params["max_leaf"] == 20
    assert scheme.params["split_nodes"] > 1


@pytest.mark.django_db
def test_assign_is_deterministic(catalog_data):
    a = catalog_data["a"]
    docids.assign(a)
    first = _docid_map(a)
    docids.assign(a, rebuild=True)
    assert _docid_map(a) == first


@pytest.mark.django_db
def test_rerun_keeps_every_docid(catalog_data):
    a = catalog_data["a"]
    docids.assign(a)
    before = _docid_map(a)
    report = docids.assign(a)
    assert (report.assigned, report.kept, report.scheme_version) == (0, 265, 1)
    assert _docid_map(a) == before
    assert DocidScheme.objects.filter(merchant=a).count() == 1


@pytest.mark.django_db
def test_new_products_get_fresh_docids_and_nothing_else_changes(catalog_data):
    a, chargers = catalog_data["a"], catalog_data["chargers"]
    docids.assign(a)
    before = _docid_map(a)
    max_charger_leaf = max(
        int(tokens_of(p)[-1]) for p in before.values() if p.startswith(chargers.path + "/")
    )
    new = Product.objects.create(
        merchant=a, sku="CHG-NEW", title="USB-C charger", category=chargers
    )
    report = docids.assign(a, product_ids=[new.pk])
    assert (report.assigned, report.kept) == (1, 0)
    after = _docid_map(a)
    assert {k: v for k, v in after.items() if k != new.pk} == before
    assert after[new.pk] == f"{chargers.path}/{max_charger_leaf + 1:04d}"
    assert after[new.pk] not in before.values()
    assert Docid.objects.get(product=new).scheme.version == 1


@pytest.mark.django_db
def test_new_product_in_split_node_follows_nearest_centroid(catalog_data):
    a, cases = catalog_data["a"], catalog_data["cases"]
    docids.assign(a)
    before = _docid_map(a)
    for original in Product.objects.filter(merchant=a, category=cases).order_by("pk")[:15]:
        twin = Product.objects.create(
            merchant=a,
            sku=f"TWIN-{original.sku}",
            category=cases,
            title=original.title,
            brand=original.brand,
            description=original.description,
            attributes=original.attributes,
        )
        assert docids.assign(a, product_ids=[twin.pk]).assigned == 1
        twin_path = Docid.objects.get(product=twin).path
        orig_parent = before[original.pk].rpartition("/")[0]
        assert twin_path.rpartition("/")[0] == orig_parent
        siblings = [p for p in _docid_map(a).values() if p.rpartition("/")[0] == orig_parent]
        assert int(tokens_of(twin_path)[-1]) == max(int(tokens_of(p)[-1]) for p in siblings)
    after = _docid_map(a)
    assert {k: after[k] for k in before} == before


@pytest.mark.django_db
def test_new_category_after_fit_gets_path_and_leaf_only(catalog_data):
    a, rng = catalog_data["a"], catalog_data["rng"]
    docids.assign(a)
    screens = _category(a, ["Cell Phones", "Cell Phone Accessories", "Screen Protectors"])
    created = _add_products(a, screens, 150, "SCR", rng)  # > max_leaf, but unknown to scheme
    report = docids.assign(a)
    assert (report.assigned, report.kept) == (150, 265)
    paths = [Docid.objects.get(product=p).path for p in created]
    assert sorted(paths) == [f"{screens.path}/{i:04d}" for i in range(1, 151)]


@pytest.mark.django_db
def test_leaves_are_not_reused_within_parent(catalog_data):
    a, chargers = catalog_data["a"], catalog_data["chargers"]
    docids.assign(a)
    new = [
        Product.objects.create(merchant=a, sku=f"N{i}", title=f"charger {i}", category=chargers)
        for i in range(3)
    ]
    docids.assign(a, product_ids=[p.pk for p in new])
    leaves = [int(tokens_of(Docid.objects.get(product=p).path)[-1]) for p in new]
    assert leaves == [13, 14, 15]


@pytest.mark.django_db
def test_a_deleted_products_leaf_is_never_handed_out_again(catalog_data):
    """Regression: deleting the newest product under a parent freed its leaf, so the next new
    product inherited a docid the models had learned for the deleted one."""
    a, chargers = catalog_data["a"], catalog_data["chargers"]
    docids.assign(a)
    old = Product.objects.create(merchant=a, sku="OLD", title="old charger", category=chargers)
    docids.assign(a, product_ids=[old.pk])
    old_path = Docid.objects.get(product=old).path
    old.delete()
    new = Product.objects.create(merchant=a, sku="NEW", title="new charger", category=chargers)
    docids.assign(a, product_ids=[new.pk])

    new_path = Docid.objects.get(product=new).path
    assert new_path != old_path
    assert int(tokens_of(new_path)[-1]) == int(tokens_of(old_path)[-1]) + 1


@pytest.mark.django_db
def test_rebuild_forgets_retired_docids(catalog_data):
    from catalog.models import RetiredDocid

    a = catalog_data["a"]
    docids.assign(a)
    Product.objects.filter(merchant=a).first().delete()
    assert RetiredDocid.objects.filter(merchant=a).count() == 1
    docids.assign(a, rebuild=True)
    assert not RetiredDocid.objects.filter(merchant=a).exists()


@pytest.mark.django_db
def test_deleting_a_merchant_with_docids_works(catalog_data):
    a = catalog_data["a"]
    docids.assign(a)
    a.delete()  # the retired-docid rows written during the cascade must not break it
    assert not Docid.objects.filter(merchant_id=a.pk).exists()


@pytest.mark.django_db
def test_rebuild_creates_new_scheme_version(catalog_data):
    a, chargers = catalog_data["a"], catalog_data["chargers"]
    docids.assign(a)
    Product.objects.create(merchant=a, sku="LATE", title="late charger", category=chargers)
    docids.assign(a)
    report = docids.assign(a, rebuild=True)
    assert report.scheme_version == 2 and report.assigned == 266 and report.kept == 0
    assert set(DocidScheme.objects.filter(merchant=a).values_list("version", flat=True)) == {1, 2}
    assert set(Docid.objects.filter(merchant=a).values_list("scheme__version", flat=True)) == {2}
    with pytest.raises(ValueError):
        docids.assign(a, rebuild=True, product_ids=[1])


@pytest.mark.django_db
def test_assign_with_product_ids_fits_scheme_on_whole_catalog(catalog_data):
    a = catalog_data["a"]
    one = Product.objects.filter(merchant=a, category=catalog_data["cases"]).first()
    report = docids.assign(a, product_ids=[one.pk])
    assert (report.assigned, report.scheme_version) == (1, 1)
    assert _is_code(tokens_of(Docid.objects.get(product=one).path)[3])
    assert docids.assign(a).assigned == 264


@pytest.mark.django_db
def test_empty_merchant_has_no_scheme():
    m = Merchant.objects.create(name="Empty")
    assert docids.assign(m) == docids.AssignReport(0, 0, None)
    assert docids.stats(m)["docids"] == 0


@pytest.mark.django_db
def test_stats(catalog_data):
    a = catalog_data["a"]
    docids.assign(a)
    s = docids.stats(a)
    assert s["docids"] == 265 and s["without_docid"] == 0
    assert s["scheme_version"] == 1 and s["split_nodes"] >= 1
    assert s["max_depth"] >= 5 and 2 <= s["mean_depth"] <= s["max_depth"]
    assert s["levels"][0]["level"] == 0 and s["levels"][0]["nodes"] == 1
    assert len(s["largest_nodes"]) <= 10
    top_prefix, top_count = s["largest_nodes"][0]
    assert top_count <= 100 and top_prefix.startswith(("cell-phones", "uncategorized"))


# -- DocidTrie --------------------------------------------------------------------------------

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=6)
paths_strategy = st.lists(st.lists(token, min_size=1, max_size=5), max_size=40)


@settings(max_examples=150, deadline=None)
@given(paths_strategy)
def test_trie_properties(paths):
    trie = DocidTrie.from_paths(paths)
    distinct = {tuple(p) for p in paths}
    assert len(trie) == len(distinct)
    for p in distinct:
        assert trie.is_docid(p) and list(p) in trie and "/".join(p) in trie
    prefixes = {()} | {p[:i] for p in distinct for i in range(1, len(p) + 1)}
    # walking children() from the root reaches exactly the prefixes of inserted paths
    seen, frontier = set(), [()]
    while frontier:
        prefix = frontier.pop()
        assert prefix in prefixes
        seen.add(prefix)
        nxt = trie.children(prefix)
        assert len(nxt) == len(set(nxt))
        frontier.extend((*prefix, tok) for tok in nxt)
        if trie.is_docid(prefix):
            assert prefix in distinct
    assert seen == prefixes
    assert trie.children(("no-such-token",) * 2) == []
    assert sorted(trie) == sorted("/".join(p) for p in distinct)
    clone = DocidTrie.from_json(trie.to_json())
    assert len(clone) == len(trie) and sorted(clone) == sorted(trie)
    assert clone.to_json() == trie.to_json()


def test_trie_basics():
    trie = DocidTrie.from_paths(["a/b/0001", "a/b/0002", "a/c3/0001", "uncategorized/0001"])
    assert trie.children([]) == ["a", "uncategorized"]
    assert trie.children(["a"]) == ["b", "c3"]
    assert trie.children(["a", "b", "0001"]) == []  # complete
    assert trie.children(["x"]) == []  # invalid
    assert trie.is_docid(["a", "b", "0002"]) and not trie.is_docid(["a", "b"])
    assert "a/b" not in trie and 42 not in trie
    assert trie.leaf_parents() == {"a/b": 2, "a/c3": 1, "uncategorized": 1}
    ds = trie.depth_stats()
    assert ds["max_depth"] == 3 and ds["levels"][0]["max_branching"] == 2
    assert not trie.add("a/b/0001") and len(trie) == 4
    with pytest.raises(ValueError):
        trie.add("")
    assert tokens_of("/a//b/") == ["a", "b"]


# -- management command -----------------------------------------------------------------------


@pytest.mark.django_db
def test_command_stats_and_show(catalog_data):
    a = catalog_data["a"]
    docids.assign(a)
    out = StringIO()
    call_command("docids", "--stats", "--merchant", "phone-shop", stdout=out)
    text = out.getvalue()
    assert "Phone Shop" in text and "265" in text and "scheme version" in text
    assert "Branching per level" in text and CASES_PATH in text

    product = Product.objects.get(merchant=a, sku="CHG0000")
    out = StringIO()
    call_command("docids", "--show", "CHG0000", "--merchant", "Phone Shop", stdout=out)
    text = out.getvalue()
    assert product.docid.path in text
    assert "siblings: 11" in text


@pytest.mark.django_db
def test_command_assign_and_rebuild(catalog_data):
    out = StringIO()
    call_command("docids", "--assign", stdout=out)
    assert "Phone Shop: assigned 265" in out.getvalue()
    assert "Grocer: assigned 5" in out.getvalue()
    with pytest.raises(CommandError, match="--yes"):
        call_command("docids", "--rebuild", stdout=StringIO())
    out = StringIO()
    call_command("docids", "--rebuild", "--yes", "--merchant", "grocer", stdout=out)
    assert "scheme v2" in out.getvalue()


@pytest.mark.django_db
def test_command_errors(catalog_data):
    with pytest.raises(CommandError, match="No product with SKU 'NOPE'"):
        call_command("docids", "--show", "NOPE", stdout=StringIO())
    with pytest.raises(CommandError, match="Unknown merchant 'nobody'"):
        call_command("docids", "--merchant", "nobody", "--stats", stdout=StringIO())
