"""LiteRT ``.tflite`` at fp32, fp16, int8-dynamic or int8, through onnx2tf and TensorFlow's converter.

>>> from edgevision.quantization import get_quantizer, QuantizeOptions
>>> q = get_quantizer("litert")                                              # doctest: +SKIP
>>> q.quantize(Path("model.onnx"), Path("model-int8.tflite"),
...            options=QuantizeOptions(precision="int8"), calibration=feeds)  # doctest: +SKIP

onnx2tf turns the ONNX model into a SavedModel (cached per model); TensorFlow's
``TFLiteConverter`` then writes the file:

* ``fp16``: fp16 weights, dequantized at load; float32 compute on CPU.
* ``int8-dynamic``: int8 weights, activations quantized on the fly (no calibration).
* ``int8``: int8 weights and activations, calibrated with ``representative_dataset`` fed
  the given calibration tensors (the model family's own pre-processing, not onnx2tf's
  ImageNet default); ops without int8 kernels stay float.

Inputs and outputs stay float32 (or the source's integer type) and keep the ONNX layout
and names, so the produced file is fed exactly like the source. TensorFlow's converter
offers only min/max calibration. ``exclude`` keeps ONNX nodes in float: each maps to the
TFLite ops onnx2tf made for it, which TensorFlow's ``QuantizationDebugger`` leaves out of
quantization (``edgevision.conversion.onnx_tflite``); the calibration is kept between
calls, so the accuracy budget's attempts re-quantize in seconds. The budget ranks layers
with ``rank_layers``: the noise each int8 op adds against its float twin in the same
debugger, not an ONNX Runtime stand-in whose noise falls elsewhere. Graphs with
control flow around their post-processing (a ``Loop`` around NMS, as TF Object Detection
API exports have) are refused up front: onnx2tf cannot convert a loop body that reads
tensors of the outer graph.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError, cause
from edgevision.quantization import register_quantizer
from edgevision.quantization.base import Feeds, QuantizeOptions, Quantizer
from edgevision.quantization.sensitivity import MAX_SQNR_DB, WEIGHTED_OPS, LayerSensitivity, output_head

logger = logging.getLogger(__name__)

# Calibration feeds the per-layer noise is measured on (the debug model runs in Python hooks).
RANK_FEEDS = 16


@register_quantizer
class LiteRtQuantizer(Quantizer):
    """TFLite files for LiteRT, from onnx2tf's SavedModel and TensorFlow's converter."""

    name = "litert"
    runtime = "litert"
    suffix = ".tflite"
    precisions = ("fp32", "fp16", "int8-dynamic", "int8")
    methods = ("minmax",)
    extra = "litert-convert"

    def __init__(self) -> None:
        self._calibrator = None  # onnx_tflite.Int8Calibrator, made on first int8 use

    @classmethod
    def is_available(cls) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in ("onnx2tf", "tensorflow", "ai_edge_litert"))

    def quantize(
        self, source: Path, output: Path, *, options: QuantizeOptions, calibration: Sequence[Feeds] = ()
    ) -> Path:
        """Write ``output`` at ``options.precision``; notes for the metadata go to ``self.notes``."""
        from edgevision.conversion.onnx_tflite import onnx_to_tflite

        options = self.resolve(options)
        self.check(options, calibration)
        refuse_control_flow(Path(source))
        self.kept_float = {}
        if options.precision == "int8":
            self.kept_float = self._declared_float(Path(source))
            options = replace(options, exclude=tuple(dict.fromkeys([*options.exclude, *self.kept_float])))
        tflite = self._tflite_options(options, calibration)
        try:
            self.notes = onnx_to_tflite(Path(source), Path(output), options=tflite, calibrator=self.calibrator())
        except EdgevisionError:
            raise
        except Exception as exc:  # TensorFlow's converter raises ConverterError, ValueError ...
            raise EdgevisionError(
                f"TensorFlow's TFLite converter failed on {Path(source).name} ({cause(exc)}); "
                "try --backend ort or openvino."
            ) from None
        logger.info("litert %s: %s", options.precision, output)
        return Path(output)

    def _declared_float(self, source: Path) -> dict[str, str]:
        """The nodes the model file asks to keep float (``postprocess.declared_float_nodes``) that
        have TFLite ops of their own."""
        import onnx

        from edgevision.quantization.postprocess import declared_float_nodes

        declared = declared_float_nodes(onnx.load(str(source), load_external_data=False))
        if not declared:
            return {}
        own = set(self.float_candidates(source))
        return {name: reason for name, reason in declared.items() if name in own}

    def calibrator(self):
        """The int8 calibration kept between calls (one calibration set at a time)."""
        from edgevision.conversion.onnx_tflite import Int8Calibrator

        if self._calibrator is None:
            self._calibrator = Int8Calibrator()
        return self._calibrator

    @staticmethod
    def _tflite_options(options: QuantizeOptions, calibration: Sequence[Feeds]):
        from edgevision.conversion.onnx_tflite import TfliteOptions

        int8 = options.precision == "int8"
        return TfliteOptions(
            options.precision,
            options.per_channel,
            tuple(calibration) if int8 else (),
            tuple(options.exclude) if int8 else (),
        )

    def float_candidates(self, source: Path) -> list[str]:
        """ONNX node names of ``source`` that have TFLite ops of their own (which can stay float)."""
        from edgevision.conversion.onnx_tflite import float_layers

        refuse_control_flow(Path(source))  # before onnx2tf fails on the loop with its own error
        return float_layers(Path(source))

    def rank_layers(
        self, source: Path, *, options: QuantizeOptions, calibration: Sequence[Feeds], exclude: Sequence[str] = ()
    ) -> list[LayerSensitivity]:
        """Layers of ``source`` by the noise their own int8 TFLite ops add, worst first.

        Measured by TensorFlow's ``QuantizationDebugger`` on the int8 model made with
        ``options`` and ``exclude`` kept float, on the first few ``calibration`` feeds (the
        calibration itself uses all of them). As in ``sensitivity.rank_layers``, the output
        head comes first, and outside it only weighted layers are candidates.
        """
        import onnx

        from edgevision.conversion.onnx_tflite import onnx_layer_noise

        options = replace(self.resolve(options), precision="int8", exclude=tuple(exclude))
        tflite = self._tflite_options(options, calibration)
        noise = onnx_layer_noise(Path(source), tflite, calibration[:RANK_FEEDS], calibrator=self.calibrator())
        graph = onnx.load(str(source), load_external_data=False).graph
        weights = {t.name: int(np.prod(t.dims)) * 4 for t in graph.initializer}
        head = output_head(graph)
        ranked = [
            _sensitivity(node, noise[node.name], weights)
            for node in graph.node
            if noise.get(node.name, 0.0) > 0
            and node.name not in set(exclude)
            and (node.name in head or node.op_type in WEIGHTED_OPS)
        ]
        return sorted(ranked, key=lambda r: (r.name not in head, -r.added_noise))

    def check(self, options: QuantizeOptions, calibration: Sequence[Feeds] | None = None) -> None:
        """Refuse what this backend cannot make; ``calibration`` None skips the data check."""
        if options.precision not in self.precisions:
            raise EdgevisionError(f"litert precisions are {', '.join(self.precisions)}, got {options.precision}.")
        if options.precision != "int8":
            if options.exclude:
                raise EdgevisionError("litert keeps named layers in float only at --precision int8 or auto.")
            return
        if options.method not in self.methods:
            raise EdgevisionError(
                f"TensorFlow's TFLite converter calibrates with min/max only, not '{options.method}'; "
                "use --method minmax, or --backend openvino / ort for other methods."
            )
        if calibration is not None and not calibration:
            raise EdgevisionError("int8 quantization needs calibration images (--calib).")


def _sensitivity(node, noise: float, weights: dict[str, int]) -> LayerSensitivity:
    """The ``LayerSensitivity`` record of ONNX ``node`` whose int8 ops add ``noise``."""
    sqnr = MAX_SQNR_DB if noise <= 10 ** (-MAX_SQNR_DB / 10) else -10 * float(np.log10(noise))
    return LayerSensitivity(node.name, node.op_type, sqnr, noise, sum(weights.get(i, 0) for i in node.input))


def refuse_control_flow(source: Path) -> None:
    """Refuse a graph with a Loop, If or Scan: onnx2tf cannot convert their bodies' outer-scope reads."""
    import onnx

    from edgevision.quantization.postprocess import CONTROL_FLOW_OPS

    model = onnx.load(str(source), load_external_data=False)
    loops = [n for n in model.graph.node if n.op_type in CONTROL_FLOW_OPS]
    if loops:
        raise EdgevisionError(
            f"{source.name} has {loops[0].op_type} node {loops[0].name} (control flow around its post-processing), "
            "which onnx2tf cannot convert to TFLite; use --backend ort or openvino, which keep it in float."
        )
