"""``manage.py train_ranker``: train the multitask fusion ranker of one merchant (or all)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from learners.management.training import TrainingCommand
from learners.models import ModelVersion
from ranking.ranker.model import RankerConfig
from ranking.ranker.train import train_merchant_ranker


class Command(TrainingCommand):
    help = (
        "Train the fusion ranker (shared bottom + relevance/click/purchase heads) on "
        "pseudo-queries of the catalog (relevance from catalog structure) and on logged "
        "queries of the last 30 days (position-debiased clicks and purchases), with candidates "
        "from the hybrid pipeline's recall paths; register it (kind 'ranker'), active unless "
        "--candidate. Train the dense encoder first (train_dense) so its features are there."
    )
    kind = "ranker"
    skipped_because = "no training queries"

    def add_model_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queries", type=int, default=1500, help="pseudo-queries to sample (1500)"
        )
        parser.add_argument("--epochs", type=int, default=40, help="training epochs (40)")

    def train(self, merchant: str, activate: bool, options: dict[str, Any]) -> ModelVersion | None:
        return train_merchant_ranker(
            merchant,
            RankerConfig(epochs=options["epochs"]),
            queries=options["queries"],
            activate=activate,
            progress=True,
        )
