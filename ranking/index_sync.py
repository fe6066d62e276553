"""Keeps the search indexes current when the catalog changes."""

from __future__ import annotations

import logging

from ranking import inverted

logger = logging.getLogger(__name__)


def on_products_changed(sender, merchant_id: int, product_ids: list[int], **kwargs) -> None:
    """Receiver of ``catalog.signals.products_changed``: re-index the changed products.

    A failure is logged rather than raised: the catalog write already committed, and
    ``manage.py build_index`` repairs the index from the database.
    """
    try:
        inverted.sync_products(merchant_id, product_ids)
    except Exception:
        logger.exception(
            "index update failed for %d products of merchant %s; run `manage.py build_index`",
            len(product_ids),
            merchant_id,
        )
