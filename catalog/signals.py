"""Catalog change notifications.

``products_changed`` is the one signal other apps listen to (the search indexes subscribe in
``ranking``), so the catalog never imports its consumers. Bulk imports send it once per batch;
single edits (admin, console) send it through the model signal handlers below.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from catalog.models import Docid, Product, RetiredDocid

#: Sent with ``merchant_id`` and ``product_ids`` (list[int]) after products were created,
#: updated or deleted. Receivers re-read the products: a missing or inactive one is removed.
products_changed = Signal()


def notify_products_changed(merchant_id: int, product_ids: list[int]) -> None:
    """Send ``products_changed`` once the surrounding transaction has committed."""
    if not product_ids:
        return
    transaction.on_commit(
        lambda: products_changed.send(
            sender=Product, merchant_id=merchant_id, product_ids=list(product_ids)
        )
    )


@receiver(post_save, sender=Product, dispatch_uid="catalog.product_saved")
def _product_saved(sender, instance: Product, created: bool, raw: bool = False, **kwargs) -> None:
    if raw:  # loaddata fixtures: nothing to sync yet
        return
    if created:
        from catalog import docids

        transaction.on_commit(lambda: docids.assign(instance.merchant, product_ids=[instance.pk]))
    notify_products_changed(instance.merchant_id, [instance.pk])


@receiver(post_delete, sender=Product, dispatch_uid="catalog.product_deleted")
def _product_deleted(sender, instance: Product, **kwargs) -> None:
    notify_products_changed(instance.merchant_id, [instance.pk])


@receiver(post_delete, sender=Docid, dispatch_uid="catalog.docid_retired")
def _docid_deleted(sender, instance: Docid, **kwargs) -> None:
    """Keep the path so ``docids.assign`` never reuses its leaf (see :class:`RetiredDocid`)."""
    RetiredDocid.objects.create(merchant_id=instance.merchant_id, path=instance.path)
