"""What the model-training commands share: which merchants to train, and the loop over them.

``train_dense`` and ``train_ranker`` are :class:`TrainingCommand` subclasses (``--merchant``,
``--candidate``, ``--if-missing``, ``--threads`` and the per-merchant report come from here);
``train_base_model`` has a resume/bootstrap flow of its own and uses :func:`merchants` only.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.models import Merchant
from learners import registry
from learners.models import ModelVersion


def merchants(slug: str | None) -> list[Merchant]:
    """The merchant ``--merchant`` names (an error if there is none), else every merchant."""
    found = Merchant.objects.order_by("pk")
    if slug:
        found = found.filter(slug=slug)
        if not found.exists():
            raise CommandError(f"unknown merchant {slug!r}")
    return list(found)


class TrainingCommand(BaseCommand):
    """Train one model ``kind`` per merchant and register it (active unless --candidate)."""

    #: registry kind of what the command trains ("encoder", "ranker")
    kind = ""
    #: printed when :meth:`train` returns None
    skipped_because = "nothing to train on"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", help="merchant slug (default: every merchant)")
        self.add_model_arguments(parser)
        parser.add_argument(
            "--candidate", action="store_true", help="register as a candidate, do not activate"
        )
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help=f"skip merchants that already have an active {self.kind} (for start-up scripts)",
        )
        parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")

    def add_model_arguments(self, parser: CommandParser) -> None:
        """Options of this model's training."""

    def train(self, merchant: str, activate: bool, options: dict[str, Any]) -> ModelVersion | None:
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        if options["threads"]:
            torch.set_num_threads(options["threads"])
        for merchant in merchants(options["merchant"]):
            slug = merchant.slug
            if options["if_missing"] and registry.active(self.kind, slug):
                self.stdout.write(f"{slug}: active {self.kind} exists, skipped")
                continue
            version = self.train(slug, not options["candidate"], options)
            if version is None:
                self.stdout.write(f"{slug}: {self.skipped_because}; skipped")
                continue
            self.stdout.write(
                f"{slug}: {version.name} ({version.status}) {json.dumps(version.metrics)}"
            )
