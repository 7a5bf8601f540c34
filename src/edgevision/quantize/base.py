"""The small interface every quantization backend implements, one file per runtime."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class QuantizeOptions:
    """Rare knobs of a quantization run; every field has a sensible default.

    ``method`` is the calibration method (``minmax``, ``percentile``, ``entropy`` ...; None:
    the backend's ``default_method``) and is refused by backends that do not really
    implement it. ``exclude`` names layers (nodes of
    the source ONNX graph) to keep in float.
    """

    precision: str = "int8"  # fp16, int8-dynamic, int8
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
    notes: list[str]  # set by ``quantize``: what was done, for the metadata file

    def resolve(self, options: QuantizeOptions) -> QuantizeOptions:
        """``options`` with the calibration method filled in (``default_method`` when None)."""
        return options if options.method else replace(options, method=self.default_method)

    @classmethod
    def is_available(cls) -> bool:
        return True

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
