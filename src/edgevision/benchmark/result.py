"""What a benchmark measured, and how it is written as JSON (results.json, ``bench --json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevision.files import write_atomic


@dataclass
class BenchResult:
    """Everything a benchmark measured, and where it was written."""

    model: str
    records: list[dict]
    recommended: str | None
    machine: dict
    settings: dict
    peak: dict = field(default_factory=dict)
    overhead: dict = field(default_factory=dict)
    compute: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)
    showcase: dict = field(default_factory=dict)  # variant key -> {"prediction": ..., "heatmap": BGR | None}
    showcase_image: np.ndarray | None = None  # the real image every variant decoded, BGR
    paths: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        settings = {k: v for k, v in self.settings.items() if k != "versions"}
        return {
            "model": self.model,
            "recommended": self.recommended,
            "machine": self.machine,
            "versions": self.settings.get("versions", {}),
            "settings": settings,
            "peak": self.peak,
            "harness_overhead": self.overhead,
            "compute": self.compute,
            "failures": self.failures,
            "variants": self.records,
        }


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(path: Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON (numpy scalars and paths converted)."""
    write_atomic(path, json.dumps(payload, indent=2, default=_json_default, allow_nan=True).encode())
    return path
