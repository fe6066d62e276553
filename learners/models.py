"""The durable event store and the hourly aggregates derived from it.

Why a relational table and not files or the broker itself: the local broker keeps data in memory
only, so the store is the system of record; a table gives the consumer exactly-once *effects*
for free through a unique constraint on ``event_id`` (redelivered events are ignored on insert,
in the same transaction as the rest of the batch), serves the hourly jobs' range scans through
``(merchant, ts)`` / ``(type, ts)`` indexes, and moves from the embedded SQLite file to
PostgreSQL (``DATABASE_URL``) without code changes. At the volumes of one store a month of
events is tens of millions of narrow rows, well within either engine; older months can be
archived by ``ts`` range. The typed columns hold what the aggregations filter and join on;
``payload`` keeps the complete validated event so nothing is lost when a new consumer of the
data needs a field the columns do not carry.
"""

from __future__ import annotations

from pathlib import Path

from django.db import models

EVENT_TYPE_CHOICES = [
    ("impression", "impression"),
    ("click", "click"),
    ("add_to_cart", "add to cart"),
    ("purchase", "purchase"),
]


class Event(models.Model):
    """One shopper event as accepted by the consumer (see ``learners.events.schema``).

    ``merchant`` is the slug, not a foreign key: events are an append-only log that must
    survive catalog edits and be writable without a catalog lookup per row.
    """

    event_id = models.UUIDField(unique=True)
    type = models.CharField(max_length=16, choices=EVENT_TYPE_CHOICES)
    merchant = models.CharField(max_length=100)
    session_id = models.CharField(max_length=128)
    ts = models.DateTimeField(help_text="when it happened, as stated by the emitter")
    request_id = models.CharField(max_length=128, blank=True, db_index=True)
    query = models.CharField(max_length=256, blank=True, help_text="impressions only")
    sku = models.CharField(max_length=64, blank=True, help_text="empty for impressions")
    position = models.PositiveIntegerField(null=True, blank=True)
    quantity = models.PositiveIntegerField(null=True, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    payload = models.JSONField(help_text="the complete validated event")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["merchant", "ts"], name="event_merchant_ts"),
            models.Index(fields=["type", "ts"], name="event_type_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class HourlyAggregate(models.Model):
    """Counts of one hour of events for one key, the raw material of ranking features.

    ``level`` says which key a row aggregates:

    * ``query_sku`` -- (normalised query, sku): impressions of the sku for the query and the
      clicks, carts and purchases attributed to that query (via the impression's
      ``request_id``, or the session's last click on the sku);
    * ``sku`` -- the sku over all queries (``query`` empty): includes purchases that cannot be
      attributed to any query;
    * ``query`` -- the query itself (``sku`` empty): ``impressions`` counts searches.

    Counts are additive over hours, so a feature over any window is a ``SUM`` over rows.
    ``examination`` is the sum of a position-bias weight over impressions: clicks divided by it
    ("clicks over expected clicks") is a CTR that does not reward a sku merely for being shown
    at the top. One ``(hour, merchant)`` is always rewritten as a whole, so recomputing an hour
    (late events) replaces it.
    """

    LEVEL_CHOICES = [("query_sku", "query × sku"), ("sku", "sku"), ("query", "query")]

    hour = models.DateTimeField(help_text="start of the hour (UTC)")
    merchant = models.CharField(max_length=100)
    level = models.CharField(max_length=10, choices=LEVEL_CHOICES)
    query = models.CharField(max_length=256, blank=True)
    sku = models.CharField(max_length=64, blank=True)
    impressions = models.PositiveIntegerField(default=0)
    examination = models.FloatField(default=0.0)
    clicks = models.PositiveIntegerField(default=0)
    add_to_carts = models.PositiveIntegerField(default=0)
    purchases = models.PositiveIntegerField(default=0, help_text="purchase events")
    units = models.PositiveIntegerField(default=0, help_text="purchased quantity")
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "merchant", "level", "query", "sku"], name="hourly_aggregate_key"
            )
        ]
        indexes = [models.Index(fields=["merchant", "level", "hour"], name="hourly_merchant_level")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.merchant} {self.level} {self.query!r} {self.sku}"


MODEL_KIND_CHOICES = [
    ("base", "base model"),
    ("adapter", "adapter"),
    ("ranker", "ranker"),
    ("encoder", "encoder"),
]
MODEL_STATUS_CHOICES = [
    ("candidate", "candidate"),
    ("active", "active"),
    ("retired", "retired"),
    ("rejected", "rejected"),
]


class ModelVersion(models.Model):
    """One trained model in the registry (see ``learners.registry`` for the life cycle).

    Serving reads the ``active`` version of a ``(kind, merchant)``; at most one can be active,
    enforced by the database with two partial unique indexes (one for per-merchant models, one
    for global ones, because SQL treats NULL merchants as distinct in a plain unique index).
    ``path`` is the version directory, stored relative to the models directory when it lies
    under it, so a moved data directory does not orphan the registry.
    """

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=MODEL_KIND_CHOICES)
    merchant = models.ForeignKey(
        "catalog.Merchant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="model_versions",
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    path = models.CharField(max_length=1000)
    status = models.CharField(max_length=16, choices=MODEL_STATUS_CHOICES, default="candidate")
    metrics = models.JSONField(default=dict, blank=True)
    decision = models.JSONField(default=dict, blank=True, help_text="gate result / notes")
    created = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "merchant"],
                condition=models.Q(status="active", merchant__isnull=False),
                name="model_one_active_per_merchant",
            ),
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(status="active", merchant__isnull=True),
                name="model_one_active_global",
            ),
        ]
        indexes = [models.Index(fields=["kind", "merchant", "status"], name="model_kind_status")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.status})"

    @property
    def directory(self) -> Path:
        """The version directory as an absolute path."""
        from learners.registry import models_dir

        path = Path(self.path)
        return path if path.is_absolute() else models_dir() / path
