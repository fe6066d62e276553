"""``manage.py train_base_model``: train the generative recall base model of merchants."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from catalog.models import Merchant
from learners import registry
from learners.management.training import merchants
from learners.precision import PRECISIONS


class Command(BaseCommand):
    help = (
        "Train the generative recall base model (a small T5 that decodes semantic docids) on a "
        "merchant's catalog, register it, and activate it when it memorised at least "
        "GENERATIVE_MIN_EXACT_MATCH (0.9) of product titles exactly; otherwise it stays a "
        "candidate and the reason is printed. Checkpoints every few minutes: after an "
        "interruption, run again with --resume. Examples: 'train_base_model --merchant bestbuy "
        "--max-minutes 20', 'train_base_model --if-missing --max-minutes 3'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--merchant", help="merchant slug (default: every merchant)")
        parser.add_argument("--epochs", type=float, help="epoch budget (optional)")
        parser.add_argument(
            "--max-minutes",
            type=float,
            help="training time budget per merchant (default: GENERATIVE_TRAIN_MINUTES or 20)",
        )
        parser.add_argument(
            "--resume",
            action="store_true",
            help="continue the newest interrupted run of the merchant, if there is one",
        )
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="skip merchants that already have a finished base model -- active, or a "
            "candidate below the gate -- and resume an interrupted run; a merchant's first "
            "model is served even below the memorisation gate (for start-up scripts)",
        )
        parser.add_argument(
            "--threads", type=int, default=2, help="torch threads (1 on a busy shared host)"
        )
        parser.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="auto",
            help="matrix products of training: bf16 (weights stay float32), fp32, or auto: "
            "bf16 where the CPU multiplies it natively (default)",
        )
        parser.add_argument(
            "--stem-input",
            action="store_true",
            help="the model reads English word stems, as the inverted index does: best "
            "generative-only NDCG@10 measured, but a lower hybrid one (README 'Generative "
            "recall'); off by default",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=0,
            help="seed of the initial weights, the pseudo-queries and their order (0)",
        )
        parser.add_argument(
            "--no-activate", action="store_true", help="register as a candidate only"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from learners.generative.base import default_minutes, train_base_model
        from learners.generative.model import ModelConfig
        from learners.generative.train import TrainConfig

        minutes = options["max_minutes"] or (None if options["epochs"] else default_minutes())
        config = TrainConfig(
            max_minutes=minutes,
            max_epochs=options["epochs"],
            threads=options["threads"],
            precision=options["precision"],
            seed=options["seed"],
        )
        model_config = ModelConfig(stem_input=options["stem_input"])
        for merchant in merchants(options["merchant"]):
            if options["if_missing"] and self._has_model(merchant):
                continue
            self.stdout.write(f"{merchant.slug}: training base model ({_budget(config)})")
            try:
                report = train_base_model(
                    merchant,
                    config=config,
                    model_config=model_config,
                    resume=options["resume"] or options["if_missing"],
                    activate=not options["no_activate"],
                    bootstrap=options["if_missing"],
                )
            except ValueError as error:
                self.stderr.write(f"{merchant.slug}: {error}")
                continue
            self._print(report)

    def _has_model(self, merchant: Merchant) -> bool:
        """Say why a merchant is skipped by --if-missing (True), if it is."""
        if registry.active("base", merchant):
            self.stdout.write(f"{merchant.slug}: active base model exists, skipped")
            return True
        candidates = [v for v in registry.versions("base", merchant) if v.status == "candidate"]
        if candidates:
            self.stdout.write(
                f"{merchant.slug}: skipped, candidate {candidates[0].name} did not pass the "
                f"memorisation gate; 'models activate {candidates[0].name}' serves it anyway, "
                "'train_base_model --merchant ... --max-minutes N' trains a better one"
            )
            return True
        return False

    def _print(self, report: Any) -> None:
        metrics = report.metrics
        self.stdout.write(
            f"{report.merchant}: {report.version} -> {report.status}"
            f"{' (resumed)' if report.resumed else ''}; "
            f"memorisation exact match {metrics.get('memorisation_exact_match', 0):.1%} "
            f"on {metrics.get('memorisation_sample')} titles, {metrics.get('epochs')} epochs in "
            f"{metrics.get('train_seconds')} s ({metrics.get('samples_per_second')} samples/s)"
        )
        self.stdout.write(f"  decision: {report.decision['reason']}")


def _budget(config: Any) -> str:
    parts = []
    if config.max_minutes:
        parts.append(f"≤ {config.max_minutes:g} min")
    if config.max_epochs:
        parts.append(f"≤ {config.max_epochs:g} epochs")
    return ", ".join(parts)
