"""``manage.py build_index``: rebuild the search index from the database."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand

from ranking import inverted


class Command(BaseCommand):
    help = (
        "Rebuild the inverted (BM25) index from every active product in the database. Day to "
        "day the index is kept current by imports and edits; run this after restoring a "
        "database or changing the index schema."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args, quiet: bool = False, **options) -> None:
        started = time.perf_counter()
        count = inverted.rebuild_index(progress=not quiet)
        self.stdout.write(
            self.style.SUCCESS(
                f"indexed {count} products in {time.perf_counter() - started:.1f}s "
                f"→ {settings.SEARCH_INDEX_DIR}"
            )
        )
