"""Benchmark every variant of a model: build, time in worker processes, score, report."""
