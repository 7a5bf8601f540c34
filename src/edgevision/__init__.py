"""edgevision: make image and video AI fast on CPU-only edge devices, and measure what it cost.

>>> import edgevision as ev
>>> model = ev.load("nanodet-m")                          # doctest: +SKIP
>>> detections = model.predict(image)                     # doctest: +SKIP

The public API is ``edgevision.api`` (load, convert, optimize, quantize, bench, run, ...),
re-exported here; the currency types are ``Detections``, ``Poses``, ``RawOutputs``, ``Frame``.
"""

from edgevision.api import (
    BenchOptions,
    BenchResult,
    BudgetNotMetError,
    ConversionResult,
    ExportOptions,
    ExportResult,
    Model,
    ModelCard,
    QuantizeOptions,
    QuantizeResult,
    RunConfig,
    RunOutputs,
    RunSummary,
    bench,
    convert,
    devices,
    export,
    list_models,
    load,
    optimize,
    pull,
    quantize,
    run,
)
from edgevision.errors import EdgevisionError
from edgevision.types import Detections, Frame, Poses, RawOutputs, TensorSpec

__version__ = "0.1.0"
__all__ = [
    "BenchOptions",
    "BenchResult",
    "BudgetNotMetError",
    "ConversionResult",
    "Detections",
    "EdgevisionError",
    "ExportOptions",
    "ExportResult",
    "Frame",
    "Model",
    "ModelCard",
    "Poses",
    "QuantizeOptions",
    "QuantizeResult",
    "RawOutputs",
    "RunConfig",
    "RunOutputs",
    "RunSummary",
    "TensorSpec",
    "__version__",
    "bench",
    "convert",
    "devices",
    "export",
    "list_models",
    "load",
    "optimize",
    "pull",
    "quantize",
    "run",
]
