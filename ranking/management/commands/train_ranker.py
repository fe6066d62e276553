"""``manage.py train_ranker``: train the multitask fusion ranker of one merchant (or all)."""

from __future__ import annotations

import json

import torch
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.models import Merchant
from learners import registry
from ranking.ranker.model import RankerConfig
from ranking.ranker.train import train_merchant_ranker


class Command(BaseCommand):
    help = (
        "Train the fusion ranker (shared bottom + relevance/click/purchase heads) on "
        "pseudo-queries of the catalog (relevance from catalog structure) and on logged "
        "queries of the last 30 days (position-debiased clicks and purchases), with candidates "
        "from the hybrid pipeline's recall paths; register it (kind 'ranker'), active unless "
        "--candidate. Train the dense encoder first (train_dense) so its features are there."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", help="merchant slug (default: every merchant)")
        parser.add_argument(
            "--queries", type=int, default=1500, help="pseudo-queries to sample (1500)"
        )
        parser.add_argument("--epochs", type=int, default=40, help="training epochs (40)")
        parser.add_argument(
            "--candidate", action="store_true", help="register as a candidate, do not activate"
        )
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="skip merchants that already have an active ranker (for start-up scripts)",
        )
        parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")

    def handle(self, *args, **options) -> None:
        if options["threads"]:
            torch.set_num_threads(options["threads"])
        slug = options["merchant"]
        if slug and not Merchant.objects.filter(slug=slug).exists():
            raise CommandError(f"unknown merchant {slug!r}")
        slugs = [slug] if slug else list(Merchant.objects.values_list("slug", flat=True))
        for merchant in slugs:
            if options["if_missing"] and registry.active("ranker", merchant):
                self.stdout.write(f"{merchant}: active ranker exists, skipped")
                continue
            version = train_merchant_ranker(
                merchant,
                RankerConfig(epochs=options["epochs"]),
                queries=options["queries"],
                activate=not options["candidate"],
                progress=True,
            )
            if version is None:
                self.stdout.write(f"{merchant}: no training queries; skipped")
                continue
            self.stdout.write(
                f"{merchant}: {version.name} ({version.status}) {json.dumps(version.metrics)}"
            )
