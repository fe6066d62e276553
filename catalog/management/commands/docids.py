"""``manage.py docids``: inspect, assign and re-derive semantic docids."""

from __future__ import annotations

import io
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from rich.console import Console
from rich.table import Table

from catalog import docids
from catalog.models import Docid, Merchant, Product


class Command(BaseCommand):
    help = (
        "Inspect and maintain semantic docids (category path / k-means codes / leaf). "
        "Without an action, prints --stats. Examples: "
        "'docids --stats', 'docids --merchant phone-shop --show SKU123', "
        "'docids --assign', 'docids --merchant phone-shop --rebuild --yes'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--merchant",
            metavar="NAME_OR_SLUG",
            help="Only this merchant (name or slug, case-insensitive). Default: all merchants.",
        )
        parser.add_argument(
            "--stats",
            action="store_true",
            help="Print docid tree statistics: size, depth, branching per level, largest "
            "sibling groups, scheme version.",
        )
        parser.add_argument(
            "--show",
            metavar="SKU",
            help="Print the docid of the product with this SKU and how many siblings share "
            "its parent prefix.",
        )
        parser.add_argument(
            "--assign",
            action="store_true",
            help="Assign docids to products that have none (existing docids are never changed).",
        )
        parser.add_argument(
            "--rebuild",
            action="store_true",
            help="Delete and re-derive ALL docids with a newly fitted scheme (new version). "
            "Invalidates models trained on the old docids; requires --yes.",
        )
        parser.add_argument("--yes", action="store_true", help="Confirm --rebuild.")

    def handle(self, *args: Any, **options: Any) -> None:
        merchants = self._merchants(options["merchant"])
        if options["rebuild"] and not options["yes"]:
            raise CommandError(
                "--rebuild replaces every docid of the selected merchant(s) and invalidates "
                "models trained on them; re-run with --yes to confirm."
            )
        acted = False
        if options["rebuild"] or options["assign"]:
            acted = True
            for merchant in merchants:
                report = docids.assign(merchant, rebuild=options["rebuild"], progress=True)
                verb = "rebuilt" if options["rebuild"] else "assigned"
                self.stdout.write(
                    f"{merchant.name}: {verb} {report.assigned} docids, kept {report.kept}, "
                    f"scheme v{report.scheme_version}"
                )
        if options["show"]:
            acted = True
            self._show(options["show"], merchants)
        if options["stats"] or not acted:
            for merchant in merchants:
                self._print_stats(docids.stats(merchant))

    def _merchants(self, name_or_slug: str | None) -> list[Merchant]:
        if name_or_slug is None:
            return list(Merchant.objects.order_by("name"))
        merchant = Merchant.objects.filter(
            Q(slug__iexact=name_or_slug) | Q(name__iexact=name_or_slug)
        ).first()
        if merchant is None:
            known = ", ".join(Merchant.objects.values_list("slug", flat=True)[:20]) or "none"
            raise CommandError(f"Unknown merchant {name_or_slug!r} (known slugs: {known}).")
        return [merchant]

    def _show(self, sku: str, merchants: list[Merchant]) -> None:
        products = list(
            Product.objects.filter(sku=sku, merchant__in=merchants).select_related("merchant")
        )
        if not products:
            scope = merchants[0].name if len(merchants) == 1 else "any merchant"
            raise CommandError(f"No product with SKU {sku!r} in {scope}.")
        for product in products:
            docid = Docid.objects.filter(product=product).first()
            if docid is None:
                self.stdout.write(
                    f"{product.merchant.name} {product.sku}: no docid yet "
                    "(run 'manage.py docids --assign')"
                )
                continue
            parent = docid.path.rpartition(docids.SEPARATOR)[0]
            under = Docid.objects.filter(
                merchant=product.merchant, path__startswith=parent + docids.SEPARATOR
            ).values_list("path", flat=True)
            depth = len(docids.tokens_of(docid.path))
            siblings = sum(1 for p in under if len(docids.tokens_of(p)) == depth) - 1
            version = docid.scheme.version if docid.scheme else "-"
            self.stdout.write(
                f"{product.merchant.name} {product.sku}: {product.title}\n"
                f"  docid:    {docid.path}\n"
                f"  parent:   {parent}\n"
                f"  siblings: {siblings}\n"
                f"  scheme:   v{version}"
            )

    def _print_stats(self, st: dict[str, Any]) -> None:
        buf = io.StringIO()
        console = Console(file=buf, width=110, force_terminal=False, color_system=None)
        summary = Table(title=f"Docids — {st['merchant']}", show_header=False)
        summary.add_column("metric", style="bold")
        summary.add_column("value", justify="right")
        summary.add_row("products", str(st["products"]))
        summary.add_row("docids", str(st["docids"]))
        summary.add_row("without docid", str(st["without_docid"]))
        summary.add_row("max depth", str(st["max_depth"]))
        summary.add_row("mean depth", f"{st['mean_depth']:.2f}")
        summary.add_row("split (k-means) nodes", str(st["split_nodes"]))
        summary.add_row("scheme version", str(st["scheme_version"] or "-"))
        console.print(summary)

        if st["levels"]:
            levels = Table(title="Branching per level")
            for col in ("level", "nodes", "mean branching", "max branching"):
                levels.add_column(col, justify="right")
            for lv in st["levels"]:
                levels.add_row(
                    str(lv["level"]),
                    str(lv["nodes"]),
                    f"{lv['mean_branching']:.2f}",
                    str(lv["max_branching"]),
                )
            console.print(levels)

        if st["largest_nodes"]:
            largest = Table(title="Largest sibling groups (leaf parents)")
            largest.add_column("prefix")
            largest.add_column("docids", justify="right")
            for prefix, count in st["largest_nodes"]:
                largest.add_row(prefix or "(root)", str(count))
            console.print(largest)
        self.stdout.write(buf.getvalue(), ending="")
