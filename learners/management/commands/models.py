"""``manage.py models``: list the model registry, activate a version, roll back."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.console import Console
from rich.table import Table

from learners import registry
from learners.models import ModelVersion

#: metrics shown in the listing when a version has them (the rest stay in the JSON)
SHOWN_METRICS = ("memorisation_exact_match", "ndcg@10", "recall_new", "products", "train_seconds")


class Command(BaseCommand):
    help = (
        "Inspect and change which model versions serve. 'models list [--kind K] [--merchant M]' "
        "shows the registry (newest first); 'models activate NAME' makes a version the serving "
        "one of its kind and merchant (the previous one is retired); 'models rollback --kind K "
        "[--merchant M]' rejects the active version and re-activates the most recently retired "
        "one. Serving picks changes up within seconds, without a restart."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["list", "activate", "rollback"])
        parser.add_argument("name", nargs="?", help="version name (for activate)")
        parser.add_argument("--kind", choices=registry.KINDS, help="model kind")
        parser.add_argument("--merchant", help="merchant slug (omit for global models)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["action"] == "list":
                self._list(options["kind"], options["merchant"])
            elif options["action"] == "activate":
                if not options["name"]:
                    raise CommandError("activate needs a version NAME (see 'models list')")
                version = registry.activate(options["name"])
                self.stdout.write(f"activated {version.name} ({_owner(version)})")
            else:
                if not options["kind"]:
                    raise CommandError("rollback needs --kind (and --merchant for a merchant's)")
                version = registry.rollback(options["kind"], options["merchant"])
                self.stdout.write(
                    f"rolled back: {version.name} is active again ({_owner(version)})"
                )
        except registry.RegistryError as error:
            raise CommandError(str(error)) from error

    def _list(self, kind: str | None, merchant: str | None) -> None:
        rows = registry.versions(kind, merchant)
        if not rows:
            self.stdout.write("no model versions registered")
            return
        table = Table(title="model versions (newest first)")
        for column in ("name", "kind", "merchant", "status", "created", "metrics", "decision"):
            table.add_column(column, overflow="fold")
        for version in rows:
            table.add_row(
                version.name,
                version.kind,
                _owner(version),
                version.status,
                f"{version.created:%Y-%m-%d %H:%M}",
                _metrics(version),
                str(version.decision.get("reason", "")),
            )
        Console(file=self.stdout, width=160).print(table)


def _owner(version: ModelVersion) -> str:
    return version.merchant.slug if version.merchant else "global"


def _metrics(version: ModelVersion) -> str:
    shown = []
    for key in SHOWN_METRICS:
        value = version.metrics.get(key)
        if value is not None:
            shown.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(shown)
