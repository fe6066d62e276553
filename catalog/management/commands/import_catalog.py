"""``manage.py import_catalog``: load a product feed into a merchant's catalog."""

from __future__ import annotations

import csv
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from catalog.importers import READERS, ImportReport, import_feed, read_feed
from catalog.importers.base import FeedError
from catalog.models import Merchant


class Command(BaseCommand):
    help = (
        "Import a product feed into a merchant's catalog. Re-importing updates products by sku "
        "(never duplicates). Invalid rows are listed with file, line and reason; by default they "
        "are skipped, with --on-error reject the whole feed is rolled back instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="feed file (for instacart: products.csv)")
        parser.add_argument("--merchant", required=True, help="merchant name (created if new)")
        parser.add_argument("--format", required=True, choices=sorted(READERS), dest="fmt")
        parser.add_argument(
            "--on-error",
            choices=["skip", "reject"],
            default="skip",
            help="skip invalid rows (default) or reject the whole feed if any row is invalid",
        )
        parser.add_argument(
            "--no-new-categories",
            action="store_true",
            help="reject rows whose category does not exist yet instead of creating it",
        )
        parser.add_argument("--report", type=Path, help="write rejected rows to this CSV file")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(
        self,
        *args,
        path: Path,
        merchant: str,
        fmt: str,
        on_error: str,
        no_new_categories: bool,
        report: Path | None,
        quiet: bool,
        **options,
    ) -> None:
        if not path.exists():
            raise CommandError(f"feed file not found: {path}")
        shop, created = Merchant.objects.get_or_create(name=merchant)
        if created:
            self.stdout.write(f"created merchant {shop.name!r} (slug {shop.slug})")
        bar = tqdm(desc=f"importing {path.name}", unit="row", disable=quiet)
        try:
            result = import_feed(
                shop,
                read_feed(fmt, path),
                source=path.name,
                on_error=on_error,
                create_categories=not no_new_categories,
                progress=bar.update,
            )
        except FeedError as error:
            self._forget_new_merchant(shop, created)
            raise CommandError(str(error)) from error
        finally:
            bar.close()
        self._print_report(result)
        if report:
            write_rejections(result, report)
            self.stdout.write(f"rejected rows written to {report}")
        if result.aborted:
            self._forget_new_merchant(shop, created)
            raise CommandError(
                f"feed rejected: {len(result.rejected)} invalid row(s); nothing was imported"
            )

    def _forget_new_merchant(self, shop: Merchant, created: bool) -> None:
        """A rejected first feed must not leave an empty merchant behind."""
        if created and not shop.products.exists():
            shop.delete()

    def _print_report(self, result: ImportReport) -> None:
        style = self.style.WARNING if result.rejected else self.style.SUCCESS
        self.stdout.write(style(result.summary()))
        shown = result.rejected[:20]
        for error in shown:
            self.stdout.write(f"  rejected {error}")
        if len(result.rejected) > len(shown):
            self.stdout.write(
                f"  … and {len(result.rejected) - len(shown)} more (use --report FILE for all)"
            )


def write_rejections(result: ImportReport, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "line", "sku", "reason"])
        for error in result.rejected:
            writer.writerow([error.source, error.line, error.sku, error.reason])
