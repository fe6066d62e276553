"""``manage.py simulate_traffic``: simulated shoppers against the running site."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from learners import aggregates


class Command(BaseCommand):
    help = (
        "Send simulated shopper traffic to a running site: real HTTP searches (GET /api/search) "
        "and the resulting impressions, clicks, add-to-carts and purchases (POST /api/events, "
        "through Kafka into the event store). Shoppers follow a position-biased cascade click "
        "model whose attractiveness and purchase probabilities come from the judged labels "
        "(E=2 > S=1 > C/I=0). Event times follow a simulated clock: simulated hour h is "
        "START + h hours, so a day of traffic takes minutes; train each hour afterwards with "
        "'train_adapter --hour'. Reproducible: the same --seed sends the same events. Example: "
        "'simulate_traffic --queries train_queries.json --qrels qrels_dev.tsv --hours 6 "
        "--sessions-per-hour 500 --seed 1'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--queries", type=Path, required=True, help="JSON list of {qid, query}")
        parser.add_argument("--qrels", type=Path, required=True, help="TREC qrels: qid 0 sku gain")
        parser.add_argument("--hours", type=int, default=1, help="simulated hours (default 1)")
        parser.add_argument("--sessions-per-hour", type=int, default=500)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="site root (default: %(default)s)"
        )
        parser.add_argument("--merchant", help="merchant slug (default: owner of the judged skus)")
        parser.add_argument(
            "--start",
            help="first simulated hour, ISO-8601 (default: HOURS hours before the current hour, "
            "so every simulated hour is complete and trainable right away)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from learners.online.simulator import HttpStorefront, Simulator
        from ranking.benchmarks.relevance import load_qrels, load_queries, owning_merchant

        try:
            queries, qrels = load_queries(options["queries"]), load_qrels(options["qrels"])
            merchant = options["merchant"] or owning_merchant(qrels)
            simulator = Simulator(
                HttpStorefront(options["url"]), queries, qrels, merchant, seed=options["seed"]
            )
        except (FileNotFoundError, ValueError) as error:
            raise CommandError(str(error)) from error
        start = first_hour(options["start"], options["hours"])
        for h in tqdm(range(options["hours"]), desc="simulated hours", unit="h"):
            traffic = simulator.run_hour(start + timedelta(hours=h), options["sessions_per_hour"])
            self.stdout.write(
                f"{traffic.hour.isoformat()}: {traffic.sessions} sessions, {traffic.events} "
                f"events ({traffic.accepted} accepted) {traffic.counts}"
            )


def first_hour(start: str | None, hours: int) -> datetime:
    if start:
        return aggregates.hour_floor(datetime.fromisoformat(start))
    return aggregates.hour_floor(datetime.now(UTC)) - timedelta(hours=hours)
