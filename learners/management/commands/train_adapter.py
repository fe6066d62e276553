"""``manage.py train_adapter``: train, gate and record the hourly LoRA adapter of an hour."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from learners import aggregates


class Command(BaseCommand):
    help = (
        "Turn one hour of shopper events into a LoRA adapter on each merchant's active "
        "generative base model: build weighted (query → docid) pairs, mix in replay, train "
        "(starting from the serving adapter), gate it on the hour's held-out slice and the "
        "replay probe, and promote (hot-swapped by serving) or reject it. The same code as the "
        "Celery task learners.tasks.train_hourly_adapter; idempotent and locked per hour, so "
        "re-running an hour prints its recorded outcome. Knobs: ONLINE_* settings "
        "(learners/online/config.py). Undo a promotion with 'manage.py models rollback'. "
        "Example: 'train_adapter --hour 2026-03-01T10:00 --merchant bestbuy'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--hour",
            help="ISO-8601 time inside the hour, UTC if no offset (default: the previous hour)",
        )
        parser.add_argument("--merchant", help="merchant slug (default: every merchant)")
        parser.add_argument("--json", action="store_true", help="print the results as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        from learners.online.hourly import train_hourly_adapter

        try:
            hour = (
                datetime.fromisoformat(options["hour"])
                if options["hour"]
                else aggregates.previous_hour()
            )
        except ValueError as error:
            raise CommandError(f"--hour: {error}") from error
        results = [r.as_dict() for r in train_hourly_adapter(hour, options["merchant"])]
        if options["json"]:
            self.stdout.write(json.dumps(results, indent=2, default=str))
            return
        if not results:
            self.stdout.write("no merchant to train")
        for r in results:
            reason = r.get("reason") or r.get("decision", {}).get("reason", "")
            version = f" {r['version']}" if r.get("version") else ""
            because = f" — {reason}" if reason else ""
            self.stdout.write(f"{r['merchant']} {r['hour']}: {r['status']}{version}{because}")
