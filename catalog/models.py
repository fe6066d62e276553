"""Catalog data: merchants, their category trees, products and the products' semantic docids."""

from __future__ import annotations

from django.db import models
from django.utils.text import slugify


class Merchant(models.Model):
    """A shop on the platform. Everything a shopper or a merchant sees is scoped to one."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        if not self.slug:
            self.slug = slugify(self.name)
        super().save(*args, **kwargs)


class Category(models.Model):
    """A node of a merchant's taxonomy.

    ``path`` stores the whole ancestry as slugs joined by ``/`` so that "everything under
    Cell Phones > Accessories" is one indexed ``path__startswith`` query instead of a recursive
    walk, and so that the path can double as the coarse prefix of a docid.
    """

    SEPARATOR = "/"

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="categories")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200)
    path = models.CharField(max_length=1000, db_index=True)
    #: breadcrumb, e.g. ``Cell Phones > Cases``; stored because every search result shows one
    full_name = models.CharField(max_length=2000, blank=True, editable=False)
    depth = models.PositiveSmallIntegerField(default=0)

    class Meta:
        verbose_name_plural = "categories"
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "path"], name="category_unique_path"),
        ]

    def __str__(self) -> str:
        return self.full_name

    def save(self, *args, **kwargs) -> None:
        self.full_name = f"{self.parent.full_name} > {self.name}" if self.parent else self.name
        super().save(*args, **kwargs)
        for child in self.children.all():  # keep descendants' breadcrumbs in step on rename
            if child.full_name != f"{self.full_name} > {child.name}":
                child.save()


class Product(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="products")
    sku = models.CharField(max_length=64)
    title = models.CharField(max_length=500)
    brand = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    popularity = models.FloatField(default=0.0)
    image_url = models.URLField(max_length=500, blank=True)
    category = models.ForeignKey(
        Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="products"
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["merchant", "sku"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "sku"], name="product_unique_sku"),
        ]
        indexes = [models.Index(fields=["merchant", "active"])]

    def __str__(self) -> str:
        return f"{self.sku} {self.title}"


class Docid(models.Model):
    """A product's semantic id: a token path such as ``cell-phones/cases/c3/c7/0012``.

    Docids are stable: once assigned a row is never rewritten, except by an explicit re-derivation
    that also retrains the models that decode them (see ``catalog.docids``).
    """

    product = models.OneToOneField(Product, on_delete=models.CASCADE, related_name="docid")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="docids")
    path = models.CharField(max_length=1000)
    scheme = models.ForeignKey(
        "DocidScheme", null=True, blank=True, on_delete=models.SET_NULL, related_name="docids"
    )
    assigned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "path"], name="docid_unique_path"),
        ]

    def __str__(self) -> str:
        return self.path

    @property
    def tokens(self) -> list[str]:
        return self.path.split("/")


class DocidScheme(models.Model):
    """The learned part of a merchant's docids: text vectoriser and k-means centroids.

    Kept in the database (not on a local disk) so that any worker host can give a newly imported
    product the same codes the original clustering would have given it.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="docid_schemes")
    version = models.PositiveIntegerField()
    params = models.JSONField(default=dict)
    codebook = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["merchant", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "version"], name="docid_scheme_version"),
        ]

    def __str__(self) -> str:
        return f"{self.merchant} docid scheme v{self.version}"
