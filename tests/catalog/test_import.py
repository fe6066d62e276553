"""Feed import: every format, idempotent upserts, validation reports, the management command,
docids and immediate searchability of imported products."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from catalog.importers import import_feed, read_feed
from catalog.models import Category, Docid, Merchant, Product

pytestmark = pytest.mark.django_db


# --- helpers ----------------------------------------------------------------------------------
@pytest.fixture
def feeds(tmp_path) -> Path:
    directory = tmp_path / "feeds"
    directory.mkdir()
    return directory


@pytest.fixture
def shop(db) -> Merchant:
    return Merchant.objects.create(name="Acme Store")


def write_jsonl(path: Path, records: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_import(merchant: Merchant, fmt: str, path: Path, **kwargs):
    return import_feed(merchant, read_feed(fmt, path), source=path.name, **kwargs)


def products(merchant: Merchant) -> dict[str, Product]:
    return {
        p.sku: p
        for p in Product.objects.filter(merchant=merchant).select_related("category", "docid")
    }


def rejections(report) -> dict[int, str]:
    """line → reason, asserting every rejection names the feed file."""
    assert all(error.source == report.source for error in report.rejected)
    return {error.line: error.reason for error in report.rejected}


def instacart_files(directory: Path, products_csv: str) -> Path:
    (directory / "aisles.csv").write_text(
        '"aisle_id","aisle"\n1,"frozen pizza"\n2,"fresh fruits"\n', encoding="utf-8"
    )
    (directory / "departments.csv").write_text(
        '"department_id","department"\n1,"frozen"\n4,"produce"\n', encoding="utf-8"
    )
    path = directory / "products.csv"
    path.write_text(products_csv, encoding="utf-8")
    return path


BESTBUY_ARRAY = [
    {
        "name": "OtterBox Defender Series Case for Apple iPhone 7",
        "description": "Rugged protection with a built-in screen protector.",
        "brand": "OtterBox",
        "categories": ["Cell Phones", "Cell Phone Accessories", "Cases"],
        "price": 49.99,
        "image": "https://cdn-demo.algolia.com/bestbuy-0118/5005671_sb.jpg",
        "popularity": 1200,
    },
    {
        "name": "Samsung Galaxy S8 64GB Unlocked",
        "description": "Infinity display.",
        "brand": "Samsung",
        "categories": ["Cell Phones", "Unlocked Phones"],
        "price": "724.99",
        "image": "https://cdn-demo.algolia.com/bestbuy-0118/5770600_rb.jpg",
        "popularity": 300,
    },
]


# --- formats ----------------------------------------------------------------------------------
def test_bestbuy_json_array_derives_sku_from_image_url(shop, feeds):
    path = feeds / "products.json"
    path.write_text(json.dumps(BESTBUY_ARRAY, indent=2), encoding="utf-8")

    report = run_import(shop, "bestbuy", path)

    assert (report.created, report.updated, report.rejected) == (2, 0, [])
    items = products(shop)
    assert set(items) == {"5005671", "5770600"}
    case = items["5005671"]
    assert case.title == "OtterBox Defender Series Case for Apple iPhone 7"
    assert case.brand == "OtterBox"
    assert case.price == Decimal("49.99")
    assert case.popularity == 1200.0
    assert case.image_url.endswith("/5005671_sb.jpg")
    assert case.category.path == "cell-phones/cell-phone-accessories/cases"
    assert case.category.full_name == "Cell Phones > Cell Phone Accessories > Cases"
    assert items["5770600"].price == Decimal("724.99")
    assert items["5770600"].category.path == "cell-phones/unlocked-phones"


def test_bestbuy_jsonl_uses_sku_field(shop, feeds):
    records = [
        {**BESTBUY_ARRAY[0], "sku": "111"},  # explicit sku wins over the image number
        {**BESTBUY_ARRAY[1], "sku": "222"},
    ]
    path = write_jsonl(feeds / "products.jsonl", records)

    report = run_import(shop, "bestbuy", path)

    assert (report.created, len(report.rejected)) == (2, 0)
    items = products(shop)
    assert set(items) == {"111", "222"}
    assert items["222"].title == "Samsung Galaxy S8 64GB Unlocked"
    assert items["111"].description.startswith("Rugged protection")


def test_generic_jsonl(shop, feeds):
    path = write_jsonl(
        feeds / "feed.jsonl",
        [
            {
                "sku": "M-1",
                "title": "Ceramic Mug",
                "brand": "Acme",
                "description": "Holds coffee.",
                "category": "Home > Kitchen > Mugs",
                "price": "$1,234.50",
                "popularity": "7",
                "attributes": {"color": "blue", "capacity_ml": 350},
                "image_url": "https://example.com/m1.jpg",
            },
            {
                "sku": "M-2",
                "title": "Old Mug",
                "category": ["Home", "Kitchen"],
                "active": False,
            },
        ],
    )

    report = run_import(shop, "jsonl", path)

    assert (report.created, report.rejected) == (2, [])
    items = products(shop)
    mug = items["M-1"]
    assert mug.price == Decimal("1234.50")
    assert mug.popularity == 7.0
    assert mug.attributes == {"color": "blue", "capacity_ml": 350}
    assert mug.category.path == "home/kitchen/mugs"
    assert mug.category.parent.path == "home/kitchen"
    assert mug.image_url == "https://example.com/m1.jpg"
    old = items["M-2"]
    assert old.active is False
    assert old.price is None
    assert old.category == mug.category.parent  # the existing "Home > Kitchen" node is reused


def test_generic_csv_with_attr_columns_and_attributes_json(shop, feeds):
    path = feeds / "feed.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["sku", "title", "brand", "category", "price", "attributes", "attr:color", "active"]
        )
        writer.writerow(
            [
                "C-1",
                "Red Mug",
                "Acme",
                "Home > Kitchen",
                "12.5",
                '{"material": "ceramic"}',
                "red",
                "",
            ]
        )
        writer.writerow(["C-2", "Plain Mug", "", "Home|Kitchen", "", "", "", "false"])

    report = run_import(shop, "csv", path)

    assert (report.created, report.rejected) == (2, [])
    items = products(shop)
    assert items["C-1"].attributes == {"material": "ceramic", "color": "red"}
    assert items["C-1"].price == Decimal("12.50")
    assert items["C-1"].active is True
    assert items["C-1"].category.path == "home/kitchen"
    assert items["C-2"].attributes == {}
    assert items["C-2"].active is False
    assert items["C-2"].category == items["C-1"].category


def test_csv_missing_required_column_is_a_feed_error(shop, feeds):
    from catalog.importers.base import FeedError

    path = feeds / "feed.csv"
    path.write_text("sku,name\n1,Mug\n", encoding="utf-8")
    with pytest.raises(FeedError, match=r"feed\.csv.*title"):
        run_import(shop, "csv", path)


def test_instacart_with_aisles_and_departments(shop, feeds):
    path = instacart_files(
        feeds,
        '"product_id","product_name","aisle_id","department_id"\n'
        '10,"Margherita Pizza",1,1\n'
        '20,"Organic Bananas",2,4\n',
    )

    report = run_import(shop, "instacart", path)

    assert (report.created, report.rejected) == (2, [])
    items = products(shop)
    assert items["10"].title == "Margherita Pizza"
    assert items["10"].category.path == "frozen/frozen-pizza"
    assert items["10"].category.full_name == "Frozen > Frozen Pizza"
    assert items["20"].category.path == "produce/fresh-fruits"


def test_instacart_accepts_the_directory(shop, feeds):
    instacart_files(
        feeds, '"product_id","product_name","aisle_id","department_id"\n10,"Pizza",1,1\n'
    )
    report = run_import(shop, "instacart", feeds)
    assert report.created == 1


def test_instacart_unknown_aisle_is_reported(shop, feeds):
    path = instacart_files(
        feeds,
        '"product_id","product_name","aisle_id","department_id"\n'
        '10,"Margherita Pizza",1,1\n'
        '11,"Mystery Item",999,1\n',
    )

    report = run_import(shop, "instacart", path)

    assert report.created == 1
    assert [(e.source, e.line, e.sku) for e in report.rejected] == [("products.csv", 3, "11")]
    reason = report.rejected[0].reason
    assert "unknown category" in reason and "999" in reason
    assert str(report.rejected[0]).startswith("products.csv:3 sku=11: unknown category")
    assert set(products(shop)) == {"10"}


# --- idempotency ------------------------------------------------------------------------------
def test_reimport_updates_instead_of_duplicating(shop, feeds):
    records = [
        {"sku": "A", "title": "Alpha Widget", "price": "10.00", "category": "Tools"},
        {"sku": "B", "title": "Beta Widget", "price": "20.00", "category": "Tools"},
    ]
    path = write_jsonl(feeds / "feed.jsonl", records)
    first = run_import(shop, "jsonl", path)
    assert (first.created, first.updated) == (2, 0)
    docids_before = dict(Docid.objects.filter(merchant=shop).values_list("product__sku", "path"))
    ids_before = dict(Product.objects.filter(merchant=shop).values_list("sku", "pk"))
    assert set(docids_before) == {"A", "B"}

    records[0]["price"] = "12.34"
    records[1]["title"] = "Beta Widget Deluxe"
    write_jsonl(path, records)
    second = run_import(shop, "jsonl", path)

    assert (second.created, second.updated, second.rejected) == (0, 2, [])
    assert Product.objects.filter(merchant=shop).count() == 2
    assert Category.objects.filter(merchant=shop).count() == 1
    items = products(shop)
    assert items["A"].price == Decimal("12.34")
    assert items["B"].title == "Beta Widget Deluxe"
    assert dict(Product.objects.filter(merchant=shop).values_list("sku", "pk")) == ids_before
    docids_after = dict(Docid.objects.filter(merchant=shop).values_list("product__sku", "path"))
    assert docids_after == docids_before


def test_imported_products_get_docids(shop, feeds):
    path = write_jsonl(
        feeds / "feed.jsonl",
        [{"sku": str(i), "title": f"Widget number {i}", "category": "Tools"} for i in range(5)],
    )
    run_import(shop, "jsonl", path)
    paths = list(Docid.objects.filter(merchant=shop).values_list("path", flat=True))
    assert len(paths) == 5 and len(set(paths)) == 5
    assert all(p.startswith("tools/") for p in paths)


# --- validation -------------------------------------------------------------------------------
BAD_JSONL = [
    {"sku": "OK-1", "title": "Valid Widget", "price": "9.99"},  # 1
    {"title": "No Sku Widget"},  # 2
    {"sku": "NT", "title": "   "},  # 3
    {"sku": "P-ABC", "title": "Priced In Letters", "price": "abc"},  # 4
    {"sku": "P-NEG", "title": "Negative Price", "price": "-5"},  # 5
    '{"sku": "BROKEN", "title": ',  # 6: broken JSON
    {"sku": "OK-1", "title": "Duplicate Widget"},  # 7
    {"sku": "ATTR", "title": "Listy", "attributes": ["red", "blue"]},  # 8
    {"sku": "OK-2", "title": "Another Valid Widget"},  # 9
]


def test_validation_report_names_file_line_and_reason(shop, feeds):
    path = write_jsonl(feeds / "bad.jsonl", BAD_JSONL)

    report = run_import(shop, "jsonl", path)

    reasons = rejections(report)
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8]
    assert reasons[2] == "missing sku"
    assert reasons[3] == "missing title"
    assert "bad price 'abc'" in reasons[4] and "not a number" in reasons[4]
    assert "bad price '-5'" in reasons[5] and "non-negative" in reasons[5]
    assert "duplicate sku" in reasons[7] and "line 1" in reasons[7]
    assert "attributes must be an object" in reasons[8]
    by_line = {e.line: e for e in report.rejected}
    assert by_line[4].sku == "P-ABC"
    assert str(by_line[4]).startswith("bad.jsonl:4 sku=P-ABC: bad price")
    assert str(by_line[2]) == "bad.jsonl:2: missing sku"
    # skip mode: the valid rows are still imported, once
    assert (report.created, report.updated, report.aborted) == (2, 0, False)
    assert set(products(shop)) == {"OK-1", "OK-2"}
    assert products(shop)["OK-1"].title == "Valid Widget"  # the duplicate did not overwrite it
    assert report.total_rows == 9


def test_broken_json_line_reason_says_json(shop, feeds):
    path = write_jsonl(feeds / "bad.jsonl", [{"sku": "1", "title": "Ok"}, '{"sku": "2", '])
    report = run_import(shop, "jsonl", path)
    assert [e.line for e in report.rejected] == [2]
    assert "json" in report.rejected[0].reason.lower()


def test_duplicate_sku_detected_across_batches(shop, feeds, monkeypatch):
    from catalog.importers import base

    monkeypatch.setattr(base, "BATCH_SIZE", 2)
    path = write_jsonl(
        feeds / "feed.jsonl",
        [
            {"sku": "A", "title": "First"},
            {"sku": "B", "title": "Second"},
            {"sku": "C", "title": "Third"},
            {"sku": " A ", "title": "First again"},
        ],
    )
    report = run_import(shop, "jsonl", path)
    assert report.created == 3
    assert rejections(report) == {4: "duplicate sku (first seen on line 1)"}
    assert products(shop)["A"].title == "First"


def test_csv_attributes_not_an_object_or_not_json(shop, feeds):
    path = feeds / "feed.csv"
    path.write_text(
        "sku,title,attributes\n"
        'X1,Good,"{""size"": ""L""}"\n'
        'X2,List Attributes,"[1, 2]"\n'
        "X3,Broken Attributes,{oops\n",
        encoding="utf-8",
    )
    report = run_import(shop, "csv", path)
    reasons = rejections(report)
    assert sorted(reasons) == [3, 4]
    assert "attributes must be an object" in reasons[3]
    assert "attributes is not valid JSON" in reasons[4]
    assert set(products(shop)) == {"X1"}


def test_csv_attributes_list_with_attr_column_is_rejected_not_crashing(shop, feeds):
    path = feeds / "feed.csv"
    path.write_text(
        'sku,title,attributes,attr:color\nX1,Good,,red\nX2,Bad,"[1, 2]",blue\n',
        encoding="utf-8",
    )
    report = run_import(shop, "csv", path)
    assert set(products(shop)) == {"X1"}
    assert [e.line for e in report.rejected] == [3]
    assert "object" in report.rejected[0].reason


def test_reject_mode_writes_nothing(shop, feeds):
    path = write_jsonl(
        feeds / "feed.jsonl",
        [
            {"sku": "A", "title": "Alpha", "category": "New Category"},
            {"sku": "B", "title": "Beta", "price": "abc"},
        ],
    )
    report = run_import(shop, "jsonl", path, on_error="reject")
    assert report.aborted is True
    assert (report.created, report.updated, report.product_ids) == (0, 0, [])
    assert rejections(report) == {2: "bad price 'abc': not a number"}
    assert "ABORTED" in report.summary()
    assert Product.objects.filter(merchant=shop).count() == 0
    assert Category.objects.filter(merchant=shop).count() == 0
    assert Docid.objects.filter(merchant=shop).count() == 0


def test_reject_mode_imports_a_clean_feed(shop, feeds):
    path = write_jsonl(feeds / "feed.jsonl", [{"sku": "A", "title": "Alpha"}])
    report = run_import(shop, "jsonl", path, on_error="reject")
    assert (report.aborted, report.created) == (False, 1)
    assert set(products(shop)) == {"A"}


def test_on_error_must_be_skip_or_reject(shop, feeds):
    path = write_jsonl(feeds / "feed.jsonl", [{"sku": "A", "title": "Alpha"}])
    with pytest.raises(ValueError, match="on_error"):
        run_import(shop, "jsonl", path, on_error="ignore")


def test_no_new_categories_rejects_unknown_category(shop, feeds):
    from catalog.categories import ensure_category_path

    ensure_category_path(shop, ["Home", "Kitchen"])
    path = write_jsonl(
        feeds / "feed.jsonl",
        [
            {"sku": "A", "title": "Known", "category": "Home > Kitchen"},
            {"sku": "B", "title": "Unknown", "category": "Garden > Tools"},
            {"sku": "C", "title": "Uncategorised"},
        ],
    )
    report = run_import(shop, "jsonl", path, create_categories=False)
    assert rejections(report) == {2: "unknown category 'Garden > Tools'"}
    assert set(products(shop)) == {"A", "C"}
    assert not Category.objects.filter(merchant=shop, path__startswith="garden").exists()


# --- management command -----------------------------------------------------------------------
def test_command_prints_summary_and_rejections(feeds):
    path = write_jsonl(
        feeds / "feed.jsonl",
        [
            {"sku": "A", "title": "Alpha"},
            {"sku": "B", "title": "Beta"},
            {"sku": "C"},
        ],
    )
    out = StringIO()
    call_command(
        "import_catalog", str(path), "--merchant", "New Shop", "--format", "jsonl", "--quiet",
        stdout=out,
    )  # fmt: skip
    text = out.getvalue()
    assert "created merchant 'New Shop' (slug new-shop)" in text
    assert "feed.jsonl → New Shop: 2 created, 0 updated, 1 rejected (ok)" in text
    assert "rejected feed.jsonl:3 sku=C: missing title" in text
    assert Product.objects.filter(merchant__slug="new-shop").count() == 2

    out = StringIO()
    call_command(
        "import_catalog", str(path), "--merchant", "New Shop", "--format", "jsonl", "--quiet",
        stdout=out,
    )  # fmt: skip
    assert "created merchant" not in out.getvalue()
    assert "0 created, 2 updated, 1 rejected" in out.getvalue()
    assert Product.objects.filter(merchant__slug="new-shop").count() == 2


def test_command_writes_report_csv(feeds, tmp_path):
    path = write_jsonl(feeds / "bad.jsonl", BAD_JSONL)
    report_path = tmp_path / "rejections.csv"
    out = StringIO()
    call_command(
        "import_catalog", str(path), "--merchant", "Acme", "--format", "jsonl", "--quiet",
        "--report", str(report_path), stdout=out,
    )  # fmt: skip
    assert f"rejected rows written to {report_path}" in out.getvalue()
    with report_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file", "line", "sku", "reason"]
    body = rows[1:]
    assert [int(r[1]) for r in body] == [2, 3, 4, 5, 6, 7, 8]
    assert {r[0] for r in body} == {"bad.jsonl"}
    by_line = {int(r[1]): r for r in body}
    assert by_line[2][2:] == ["", "missing sku"]
    assert by_line[4][2] == "P-ABC" and "bad price" in by_line[4][3]
    assert by_line[7][2] == "OK-1" and "duplicate sku" in by_line[7][3]


def test_command_missing_file(tmp_path):
    with pytest.raises(CommandError, match="feed file not found"):
        call_command(
            "import_catalog", str(tmp_path / "nope.jsonl"), "--merchant", "Acme",
            "--format", "jsonl", "--quiet",
        )  # fmt: skip


def test_command_feed_error_becomes_command_error(feeds):
    path = feeds / "feed.csv"
    path.write_text("id,name\n1,Mug\n", encoding="utf-8")
    with pytest.raises(CommandError, match="header lacks required column"):
        call_command(
            "import_catalog", str(path), "--merchant", "Acme", "--format", "csv", "--quiet"
        )


def test_command_reject_mode_with_bad_rows(feeds, tmp_path):
    path = write_jsonl(
        feeds / "feed.jsonl", [{"sku": "A", "title": "Alpha"}, {"sku": "B", "price": "1"}]
    )
    report_path = tmp_path / "rejections.csv"
    out = StringIO()
    with pytest.raises(CommandError, match=r"feed rejected: 1 invalid row\(s\)"):
        call_command(
            "import_catalog", str(path), "--merchant", "Acme", "--format", "jsonl", "--quiet",
            "--on-error", "reject", "--report", str(report_path), stdout=out,
        )  # fmt: skip
    assert "ABORTED, nothing written" in out.getvalue()
    assert Product.objects.count() == 0
    rows = list(csv.reader(report_path.open(encoding="utf-8", newline="")))
    assert rows[1] == ["feed.jsonl", "2", "B", "missing title"]


def test_command_no_new_categories(feeds):
    path = write_jsonl(feeds / "feed.jsonl", [{"sku": "A", "title": "Alpha", "category": "X"}])
    out = StringIO()
    call_command(
        "import_catalog", str(path), "--merchant", "Acme", "--format", "jsonl", "--quiet",
        "--no-new-categories", stdout=out,
    )  # fmt: skip
    assert "0 created, 0 updated, 1 rejected" in out.getvalue()
    assert "unknown category 'X'" in out.getvalue()
    assert Product.objects.count() == 0 and Category.objects.count() == 0


def test_command_non_utf8_feed_is_a_command_error(feeds):
    path = feeds / "feed.csv"
    path.write_bytes("sku,title\n1,Café crème\n".encode("latin-1"))
    with pytest.raises(CommandError):
        call_command(
            "import_catalog", str(path), "--merchant", "Acme", "--format", "csv", "--quiet"
        )


# --- search sync ------------------------------------------------------------------------------
def test_imported_products_are_searchable_immediately(
    shop, feeds, django_capture_on_commit_callbacks
):
    from ranking import search

    path = write_jsonl(
        feeds / "feed.jsonl",
        [
            {"sku": "Z1", "title": "Zephyrine Kettle", "category": "Home > Kitchen"},
            {"sku": "Z2", "title": "Quokka Toaster", "category": "Home > Kitchen"},
            {"sku": "Z3", "title": "Zephyrine Teapot", "active": False},
        ],
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        report = run_import(shop, "jsonl", path)
    assert report.created == 3
    assert callbacks, "the import must schedule an index update on commit"

    response = search("zephyrine", merchant=shop.slug)
    assert [r.sku for r in response.results] == ["Z1"]  # inactive Z3 is not indexed
    hit = response.results[0]
    assert hit.docid is not None and hit.docid.startswith("home/kitchen/")
    assert hit.category_name == "Home > Kitchen"
    assert [r.sku for r in search("quokka", merchant=shop.slug).results] == ["Z2"]

    # a re-import with a new title re-indexes the product
    write_jsonl(path, [{"sku": "Z2", "title": "Wombat Toaster", "category": "Home > Kitchen"}])
    with django_capture_on_commit_callbacks(execute=True):
        run_import(shop, "jsonl", path)
    assert [r.sku for r in search("wombat", merchant=shop.slug).results] == ["Z2"]
    assert search("quokka", merchant=shop.slug).results == []


# --- shared datasets --------------------------------------------------------------------------
@pytest.mark.dataset
def test_import_shared_datasets_into_two_merchants():
    bestbuy = Path(settings.DATASETS_DIR) / "bestbuy" / "products.jsonl"
    instacart = Path(settings.DATASETS_DIR) / "instacart" / "products.csv"
    if not (bestbuy.is_file() and instacart.is_file()):
        pytest.skip(f"shared datasets not found under {settings.DATASETS_DIR}")

    out = StringIO()
    call_command(
        "import_catalog", str(bestbuy), "--merchant", "BestBuy", "--format", "bestbuy",
        "--quiet", stdout=out,
    )  # fmt: skip
    call_command(
        "import_catalog", str(instacart), "--merchant", "Instacart", "--format", "instacart",
        "--quiet", stdout=out,
    )  # fmt: skip

    text = out.getvalue()
    assert "products.jsonl → BestBuy: 3291 created, 0 updated, 0 rejected (ok)" in text
    assert "products.csv → Instacart: 9288 created, 0 updated, 0 rejected (ok)" in text
    assert Product.objects.filter(merchant__slug="bestbuy").count() == 3291
    assert Product.objects.filter(merchant__slug="instacart").count() == 9288
    assert Docid.objects.filter(merchant__slug="bestbuy").count() == 3291
    assert Docid.objects.filter(merchant__slug="instacart").count() == 9288
    # the two taxonomies stay separate: Instacart is department → aisle, two levels deep
    assert set(
        Category.objects.filter(merchant__slug="instacart").values_list("depth", flat=True)
    ) == {0, 1}
    assert not Category.objects.filter(merchant__slug="instacart", path__startswith="cell-phones")


def test_rejected_first_feed_leaves_no_empty_merchant(db, tmp_path):
    """Regression: the merchant named on the command line was created even when its feed was
    rejected."""
    path = tmp_path / "feed.jsonl"
    path.write_text('{"sku": "A", "title": "Fine"}\n{"sku": "", "title": "No sku"}\n')
    with pytest.raises(CommandError):
        call_command(
            "import_catalog",
            str(path),
            merchant="Brand New Shop",
            fmt="jsonl",
            on_error="reject",
            quiet=True,
            stdout=StringIO(),
        )
    assert not Merchant.objects.filter(name="Brand New Shop").exists()
