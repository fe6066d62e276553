"""Docids panel: the merchant's category tree as docid prefixes, with product, docid and
learned-by-the-serving-model counts per node, and the shape of the learned part of the tree.

Counts are rolled up to ancestors in Python from one pass over (category, docid) pairs: a
recursive query per node would be one query per category."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse

from catalog import docids
from catalog.models import Category, Merchant, Product
from web.console.access import merchant_view
from web.console.serving import ServingModel, serving_model
from web.console.views import render_panel


@dataclass
class TreeRow:
    """One category of the tree table."""

    category: Category | None  # None: products without a category
    prefix: str
    depth: int
    products: int = 0
    with_docid: int = 0
    learned: int = 0

    @property
    def name(self) -> str:
        return self.category.name if self.category else "Uncategorized"

    @property
    def coverage(self) -> int:
        """Percent of products whose docid the serving model has learned."""
        return round(100 * self.learned / self.products) if self.products else 0


def category_tree(merchant: Merchant, model: ServingModel | None) -> list[TreeRow]:
    """Rows in tree order (parents before children), each counting its whole subtree."""
    categories = list(Category.objects.filter(merchant=merchant).order_by("path"))
    rows = {c.path: TreeRow(c, c.path, c.depth) for c in categories}
    loose = TreeRow(None, docids.UNCATEGORIZED, 0)
    products = Product.objects.filter(merchant=merchant).values_list(
        "category__path", "docid__path"
    )
    for category_path, docid_path in products.iterator(2000):
        targets = _ancestors(rows, category_path) if category_path else [loose]
        for row in targets:
            row.products += 1
            row.with_docid += docid_path is not None
            row.learned += bool(model and model.learned(docid_path))
    ordered = [rows[c.path] for c in categories]
    return [*ordered, loose] if loose.products else ordered


def _ancestors(rows: dict[str, TreeRow], path: str) -> list[TreeRow]:
    parts = path.split(Category.SEPARATOR)
    prefixes = (Category.SEPARATOR.join(parts[: i + 1]) for i in range(len(parts)))
    return [rows[p] for p in prefixes if p in rows]


@merchant_view()
def docid_tree(request: HttpRequest, merchant: Merchant) -> HttpResponse:
    model = serving_model(merchant)
    tree = category_tree(merchant, model)
    shape = docids.stats(merchant)
    learned = sum(row.learned for row in tree if row.depth == 0)  # roots partition products
    return render_panel(
        request,
        "docids.html",
        "docids",
        {
            "tree": tree,
            "shape": shape,
            "model": model,
            "learned": learned,
            "learned_percent": round(100 * learned / shape["docids"]) if shape["docids"] else 0,
        },
    )
