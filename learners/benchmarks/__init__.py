"""Benchmarks of the learners app, registered in ``ranking.benchmarks.BENCHMARKS``."""
