"""The small interface every quantization backend implements, one file per runtime."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgevision.compare import DEFAULT_MAX_DROP

Feeds = dict[str, np.ndarray]


PRECISIONS = ("fp16", "int8-dynamic", "int8", "auto")


@dataclass(frozen=True)
class QuantizeOptions:
    """Everything a quantization run can be told; every field has a sensible default.

    ``precision`` is fp16, int8-dynamic, int8, or auto: int8 with layers kept in float until
    the agreement with float drops by at most ``max_drop``. ``max_drop`` None means no
    budget (agreement is still measured when there are held-out images); for plain int8 a
    budget is only reported, and ``strict`` turns a missed budget into an error (the best
    variant is kept either way). Agreement is measured on images of ``calib`` held apart
    from calibration, plus the sample photos (``default_holdout``) and the images of
    ``holdout``.

    ``method`` is the calibration method (``minmax``, ``percentile``, ``entropy`` ...; None:
    the backend's ``default_method``) and is refused by backends that do not really
    implement it. ``exclude`` names layers (nodes of the source ONNX graph) to keep in float.

    >>> QuantizeOptions(precision="auto").max_drop
    0.02
    """

    precision: str = "int8"
    max_drop: float | None = DEFAULT_MAX_DROP
    strict: bool = False
    calib: str | None = None  # folder, glob or video
    calib_count: int = 64
    holdout: str | None = None
    default_holdout: bool = True
    threads: int = 2  # of the agreement and latency checks
    method: str | None = None
    per_channel: bool = True
    exclude: tuple[str, ...] = ()
    percentile: float = 99.999
    extra: dict = field(default_factory=dict)


class Quantizer(ABC):
    """Turns a source ONNX model into a smaller/faster file for one runtime.

    Subclasses set ``name`` (the ``--backend`` value), ``runtime`` (the edgevision backend
    that runs the produced file), ``suffix`` of the produced file, ``precisions`` and
    ``methods`` they support, ``default_method`` and ``extra`` (pip extra). After
    ``quantize`` they leave short sentences on ``self.notes`` for the metadata file.
    """

    name: ClassVar[str]
    runtime: ClassVar[str]
    suffix: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    methods: ClassVar[tuple[str, ...]] = ("minmax",)
    default_method: ClassVar[str] = "minmax"
    extra: ClassVar[str | None] = None
    can_exclude: ClassVar[bool] = True  # can keep named layers in float (the budget loop needs it)
    # extra options that make faster int8 but may agree less; the budget loop tries them first
    faster_options: ClassVar[tuple[dict, ...]] = ()
    # extra options to try when the default misses the budget, before keeping layers float
    repair_options: ClassVar[tuple[dict, ...]] = ()
    notes: list[str]  # set by ``quantize``: what was done, for the metadata file
    # Set by ``quantize``: post-processing nodes kept in float automatically, with why
    # (``edgevision.quantization.postprocess``), for the metadata file's ``excluded``.
    kept_float: dict[str, str]

    def resolve(self, options: QuantizeOptions) -> QuantizeOptions:
        """``options`` with the calibration method filled in (``default_method`` when None)."""
        return options if options.method else replace(options, method=self.default_method)

    @classmethod
    def is_available(cls) -> bool:
        return True

    @abstractmethod
    def check(self, options: QuantizeOptions, calibration: Sequence[Feeds] | None = None) -> None:
        """Raise ``EdgevisionError`` for a precision, method or option this backend cannot do.

        With ``calibration`` None only the options are checked (before any expensive work).
        """

    @abstractmethod
    def quantize(
        self, source: Path, output: Path, *, options: QuantizeOptions, calibration: Sequence[Feeds] = ()
    ) -> Path:
        """Write the quantized model to ``output`` and return its path."""

    def layers(self, source: Path) -> list[str]:
        """Names of the source graph's quantizable layers, usable in ``options.exclude``."""
        import onnx

        quantizable = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
        model = onnx.load(str(source), load_external_data=False)
        return [n.name for n in model.graph.node if n.op_type in quantizable]

    def float_candidates(self, source: Path) -> list[str]:
        """Node names of the source that an exclusion list may name (the budget loop's choices)."""
        return self.layers(source)
