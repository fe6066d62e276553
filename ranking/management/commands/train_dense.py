"""``manage.py train_dense``: train the dense-recall encoder of one merchant (or all) and index
its products in Milvus."""

from __future__ import annotations

import json

import torch
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.models import Merchant
from learners import registry
from ranking.dense.train import DenseTrainConfig, train_merchant


class Command(BaseCommand):
    help = (
        "Train a bi-encoder on pseudo-queries of the catalog (in-batch + BM25 hard negatives), "
        "encode every product into a new Milvus collection and register the version "
        "(kind 'encoder') in the model registry, active unless --candidate. Stops after "
        "--epochs or --minutes, whichever comes first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", help="merchant slug (default: every merchant)")
        parser.add_argument(
            "--minutes", type=float, default=5.0, help="training time budget per merchant (5)"
        )
        parser.add_argument("--epochs", type=int, default=12, help="at most this many epochs (12)")
        parser.add_argument(
            "--no-hard-negatives",
            action="store_true",
            help="in-batch negatives only (no BM25 near misses; needs no inverted index)",
        )
        parser.add_argument(
            "--candidate",
            action="store_true",
            help="register as a candidate instead of activating it",
        )
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="skip merchants that already have an active encoder (for start-up scripts)",
        )
        parser.add_argument(
            "--threads", type=int, help="torch CPU threads (default: torch's choice)"
        )

    def handle(self, *args, **options) -> None:
        if options["threads"]:
            torch.set_num_threads(options["threads"])
        slugs = [options["merchant"]] if options["merchant"] else None
        if slugs is None:
            slugs = list(Merchant.objects.order_by("pk").values_list("slug", flat=True))
        elif not Merchant.objects.filter(slug=slugs[0]).exists():
            raise CommandError(f"unknown merchant {slugs[0]!r}")
        config = DenseTrainConfig(epochs=options["epochs"], minutes=options["minutes"])
        for slug in slugs:
            if options["if_missing"] and registry.active("encoder", slug):
                self.stdout.write(f"{slug}: active encoder exists, skipped")
                continue
            version = train_merchant(
                slug,
                config,
                hard=not options["no_hard_negatives"],
                activate=not options["candidate"],
                progress=True,
            )
            if version is None:
                self.stdout.write(f"{slug}: fewer than 2 products with docids; skipped")
                continue
            self.stdout.write(
                f"{slug}: {version.name} ({version.status}) {json.dumps(version.metrics)}"
            )
