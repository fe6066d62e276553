"""Catalog data: merchants, their category trees, products and the products' semantic docids."""

from __future__ import annotations

from django.conf import settings
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


class RetiredDocid(models.Model):
    """A docid whose product was deleted. Its leaf number is never handed out again: models
    trained while the product existed still decode the path, and a new product under it would
    inherit the old product's learned queries. A full re-derivation (``docids --rebuild``),
    which retrains the models anyway, clears these.

    No foreign-key constraint: rows are written while a cascade may be deleting the merchant.
    """

    merchant = models.ForeignKey(
        Merchant, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    path = models.CharField(max_length=1000)
    retired_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["merchant", "path"], name="retired_docid_path")]

    def __str__(self) -> str:
        return self.path


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


class MerchantMembership(models.Model):
    """Which console users work for which merchant, and whether they may change things.

    The console scopes every query through these rows (``web.console.access``), so a user with
    no membership sees no merchant at all; staff users see every merchant without one.
    """

    EDITOR, VIEWER = "editor", "viewer"
    ROLE_CHOICES = [(EDITOR, "Editor (manage catalog and feeds)"), (VIEWER, "Viewer (read only)")]

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=ROLE_CHOICES, default=EDITOR)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["merchant", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "merchant"], name="membership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.merchant} ({self.role})"

    @property
    def can_edit(self) -> bool:
        return self.role == self.EDITOR


def feed_upload_path(instance: FeedUpload, filename: str) -> str:
    """Uploads are grouped per merchant so an operator can find (and purge) one shop's files."""
    return f"feeds/{instance.merchant.slug}/{filename}"


class FeedUpload(models.Model):
    """A feed file a merchant uploaded in the console and its import, run by a Celery worker.

    The worker updates ``processed_rows`` while it imports, so the console can poll it for a
    progress bar; ``report`` is a CSV of the rejected rows (line, sku, reason) once done.
    """

    QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
    STATUS_CHOICES = [(s, s) for s in (QUEUED, RUNNING, DONE, FAILED)]
    #: feed formats a merchant can upload as a single file (instacart needs sidecar files)
    FORMAT_CHOICES = [
        ("csv", "CSV (header row: sku, title, brand, category, price, …)"),
        ("jsonl", "JSON lines (one product object per line)"),
        ("bestbuy", "BestBuy products JSON (array or lines)"),
    ]
    ON_ERROR_CHOICES = [
        ("skip", "Skip invalid rows, import the rest"),
        ("reject", "Reject the whole feed if any row is invalid"),
    ]

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="feed_uploads")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    file = models.FileField(upload_to=feed_upload_path, max_length=500)
    original_name = models.CharField(max_length=255)
    format = models.CharField(max_length=10, choices=FORMAT_CHOICES)
    on_error = models.CharField(max_length=6, choices=ON_ERROR_CHOICES, default="skip")
    status = models.CharField(max_length=8, choices=STATUS_CHOICES, default=QUEUED)
    total_rows = models.PositiveIntegerField(null=True, blank=True)
    processed_rows = models.PositiveIntegerField(default=0)
    #: {"created": n, "updated": n, "rejected": n, "aborted": bool} once the import finished
    counts = models.JSONField(default=dict, blank=True)
    report = models.FileField(upload_to="feed-reports/", max_length=500, blank=True)
    error = models.TextField(blank=True, help_text="why the feed as a whole failed")
    task_id = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["merchant", "-created"], name="feedupload_merchant")]

    def __str__(self) -> str:
        return f"{self.original_name} → {self.merchant} ({self.status})"

    @property
    def finished_ok(self) -> bool:
        return self.status == self.DONE

    @property
    def percent(self) -> int:
        """Progress for the bar: 100 once finished, else processed / total rows."""
        if self.status in (self.DONE, self.FAILED):
            return 100
        if not self.total_rows:
            return 0
        return min(99, int(100 * self.processed_rows / self.total_rows))
