"""``manage.py load_demo_data``: fill an empty store with the two shared demo catalogs."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from catalog.models import Product

#: merchant name → (feed format, path under the datasets directory)
DEMO_FEEDS = {
    "BestBuy": ("bestbuy", Path("bestbuy/products.jsonl")),
    "Instacart": ("instacart", Path("instacart/products.csv")),
}


class Command(BaseCommand):
    help = (
        "Import the BestBuy and Instacart demo catalogs from the shared datasets directory "
        "(SEARCH_DATASETS_DIR, default ../shared/datasets) into two merchants — only when the "
        "store has no products yet, unless --force."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--datasets",
            type=Path,
            default=settings.DATASETS_DIR,
            help="datasets directory (default: %(default)s)",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="import even if products exist (updates them by sku)",
        )

    def handle(self, *args, datasets: Path, force: bool, **options) -> None:
        if Product.objects.exists() and not force:
            self.stdout.write(
                f"store already has {Product.objects.count()} products; "
                "not importing demo data (use --force to re-import)"
            )
            return
        if not datasets.is_dir():
            raise CommandError(
                f"datasets directory not found: {datasets} (set SEARCH_DATASETS_DIR or "
                "pass --datasets)"
            )
        for merchant, (fmt, relative) in DEMO_FEEDS.items():
            path = datasets / relative
            if not path.exists():
                raise CommandError(f"demo feed missing: {path}")
            call_command(
                "import_catalog",
                str(path),
                merchant=merchant,
                fmt=fmt,
                stdout=self.stdout,
                stderr=self.stderr,
            )
