"""Benchmarks run by ``manage.py bench NAME``. Each module has ``add_arguments(parser)`` and
``run(options, out)``; ``BENCHMARKS`` names them so other apps can add their own."""

BENCHMARKS: dict[str, str] = {
    "relevance": "ranking.benchmarks.relevance",
    "latency": "ranking.benchmarks.latency",
    "ingest": "learners.benchmarks.ingest",
    "learning-curve": "learners.benchmarks.learning_curve",
}
