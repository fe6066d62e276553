"""Load every merchant's serving models before the first shopper arrives.

Serving loads what a search needs on first use: the generative model (base or adapter) and its
docid trie, the dense encoder with its in-memory vector replica, the fusion ranker, the catalog
caches. On BestBuy that made the first search of each web worker take 7-9 s. A worker calls
:func:`warm_up` once as it starts (``web/wsgi.py``), so a deploy or a restarted worker is ready
before traffic reaches it. ``SEARCH_WARM_UP=0`` turns it off.
"""

from __future__ import annotations

import logging
import time

from learners import conf

log = logging.getLogger(__name__)

#: Characters of a product title used as the warm-up query (titles are short; the API's limit
#: on query length must never be what fails).
QUERY_CHARS = 100


def enabled() -> bool:
    return bool(conf.get("SEARCH_WARM_UP", 1))


def warm_up() -> dict[str, float]:
    """One search per merchant through the default pipeline; seconds each. A failure is logged
    and skipped: a worker that cannot warm up still serves, loading on first use as before
    (gunicorn gives up on a worker whose start raises, so nothing here may)."""
    from django.db import DatabaseError

    from catalog.models import Merchant

    try:
        slugs = list(Merchant.objects.order_by("slug").values_list("slug", flat=True))
    except DatabaseError:
        log.exception("warm-up skipped: the catalog cannot be read (is the database migrated?)")
        return {}
    seconds: dict[str, float] = {}
    for slug in slugs:
        started = time.perf_counter()
        try:
            searched = _search_once(slug)
        except Exception:
            log.exception("warm-up search for %s failed; its models load on first use", slug)
            continue
        if searched:
            seconds[slug] = time.perf_counter() - started
    if seconds:
        log.info("warm: %s", ", ".join(f"{m} {s:.1f} s" for m, s in seconds.items()))
    return seconds


def _search_once(merchant: str) -> bool:
    """Search the merchant's first product title; False when it has no active product."""
    from catalog.models import Product
    from ranking import search

    products = Product.objects.filter(merchant__slug=merchant, active=True).order_by("pk")
    title = products.values_list("title", flat=True).first()
    if not title:
        return False
    search(title[:QUERY_CHARS], merchant=merchant)
    return True
