"""Category tree helpers: turning a feed's category names into ``Category`` rows."""

from __future__ import annotations

from django.utils.text import slugify

from catalog.models import Category, Merchant


def category_slug(name: str) -> str:
    """Slug used in category paths and docids; never empty so that paths stay well-formed."""
    return slugify(name.replace("&", " and ")) or "unnamed"


class CategoryResolver:
    """Creates category chains on demand and caches them for the length of one import.

    Without the cache, a 10k-row feed would issue one query per row and level.
    """

    def __init__(self, merchant: Merchant, *, create: bool = True) -> None:
        self.merchant = merchant
        self.create = create
        self._by_path: dict[str, Category] = {
            c.path: c for c in Category.objects.filter(merchant=merchant)
        }

    def resolve(self, names: list[str]) -> Category | None:
        """Return the leaf category for ``names`` (root first); ``None`` if unknown and
        creation is disabled."""
        names = [n.strip() for n in names if n and n.strip()]
        if not names:
            return None
        parent: Category | None = None
        slugs: list[str] = []
        for depth, name in enumerate(names):
            slugs.append(category_slug(name))
            path = Category.SEPARATOR.join(slugs)
            node = self._by_path.get(path)
            if node is None:
                if not self.create:
                    return None
                node = Category.objects.create(
                    merchant=self.merchant,
                    parent=parent,
                    name=name[:200],
                    slug=slugs[-1][:200],
                    path=path,
                    depth=depth,
                )
                self._by_path[path] = node
            parent = node
        return parent


def ensure_category_path(merchant: Merchant, names: list[str]) -> Category:
    category = CategoryResolver(merchant).resolve(names)
    if category is None:
        raise ValueError("a category path needs at least one non-empty name")
    return category
