"""Dense recall: a bi-encoder trained on the catalog (``encoder``, ``train``), product vectors in
Milvus (``store``) and the serving path that follows the model registry (``recall``).

This module stays import-light (it is loaded with the app): torch and pymilvus load only when a
merchant actually has an active encoder.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def on_products_changed(sender, merchant_id: int, product_ids: list[int], **kwargs) -> None:
    """Receiver of ``catalog.signals.products_changed``: upsert/delete the changed products'
    vectors. Failures are logged, not raised: the catalog write already committed, and
    ``train_dense`` rebuilds collections from the database."""
    from learners.models import ModelVersion

    if not ModelVersion.objects.filter(
        kind="encoder", status="active", merchant_id=merchant_id
    ).exists():
        return
    try:
        from ranking.dense.recall import sync_products

        sync_products(merchant_id, product_ids)
    except Exception:
        logger.exception("dense index update failed for merchant %s", merchant_id)
