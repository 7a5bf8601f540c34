"""Measuring variants: task-level agreement and fidelity metrics (``edgevision.bench.metrics``)."""
