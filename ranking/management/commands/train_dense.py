"""``manage.py train_dense``: train the dense-recall encoder of one merchant (or all) and index
its products in Milvus."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from learners.management.training import TrainingCommand
from learners.models import ModelVersion
from ranking.dense.train import DenseTrainConfig, train_merchant


class Command(TrainingCommand):
    help = (
        "Train a bi-encoder on pseudo-queries of the catalog (in-batch + BM25 hard negatives), "
        "encode every product into a new Milvus collection and register the version "
        "(kind 'encoder') in the model registry, active unless --candidate. Stops after "
        "--epochs or --minutes, whichever comes first."
    )
    kind = "encoder"
    skipped_because = "fewer than 2 products with docids"

    def add_model_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--minutes",
            type=float,
            default=DenseTrainConfig.minutes,
            help="training time budget per merchant (%(default)s)",
        )
        parser.add_argument(
            "--epochs",
            type=int,
            default=DenseTrainConfig.epochs,
            help="at most this many epochs (%(default)s)",
        )
        parser.add_argument(
            "--no-hard-negatives",
            action="store_true",
            help="in-batch negatives only (no BM25 near misses; needs no inverted index)",
        )

    def train(self, merchant: str, activate: bool, options: dict[str, Any]) -> ModelVersion | None:
        return train_merchant(
            merchant,
            DenseTrainConfig(epochs=options["epochs"], minutes=options["minutes"]),
            hard=not options["no_hard_negatives"],
            activate=activate,
            progress=True,
        )
