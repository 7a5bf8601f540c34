"""OpenVINO IR at fp32, fp16 (compressed weights) or int8 (NNCF post-training quantization).

>>> from edgevision.quantization import get_quantizer, QuantizeOptions
>>> q = get_quantizer("openvino")                                            # doctest: +SKIP
>>> q.quantize(Path("model.onnx"), Path("model-int8.xml"),
...            options=QuantizeOptions(precision="int8"), calibration=feeds)  # doctest: +SKIP

int8 runs ``nncf.quantize`` on the OpenVINO model read from the source ONNX, with the
MIXED preset by default (symmetric weights, asymmetric activations: on NanoDet-m it kept
0.964 agreement mAP where the default PERFORMANCE preset kept 0.852). The accuracy budget
tries PERFORMANCE first (symmetric activations need no zero-point compensation at run
time, so it is faster: yolox-nano 7.9 ms against 9.6 ms) and keeps it when the agreement
holds; ``extra={"preset": ...}`` fixes the preset. Calibration
methods are NNCF's range estimators: ``mean-minmax`` (the default, as in NNCF:
per-sample min/max, averaged; 0.951 on NanoDet-m where ``minmax`` kept 0.909 with the
same 64 video frames), ``minmax`` (global min/max), ``percentile`` (per-sample quantiles
averaged) and ``histogram`` (ranges minimising the quantization error over a histogram).
NNCF has no entropy/KL calibration, so ``entropy`` is refused. Backend options
(``QuantizeOptions.extra``): ``preset`` (mixed, performance), ``channel_alignment`` (True
turns on NNCF's channel alignment), ``bias_correction`` ("full": NNCF's slower full
bias correction instead of the fast one; on the SSD-MobileNetV2 and BlazePose landmark
models neither moved agreement up) and ``overflow_fix`` (``first_layer_only``, NNCF's
default; ``enable``; ``disable``). On x86 CPUs without VNNI, oneDNN's int8 convolutions
clamp each two neighbouring products to int16 (``edgevision.quantization.saturation``);
NNCF's default puts 7-bit weights in the first layer only. So when the default misses the
budget, ``enable`` (7-bit weights everywhere) with the full bias correction (each layer's
bias corrected for the error of all the quantized layers before it, where the fast one
sees the layer alone) is tried before any layer is kept float, with the PERFORMANCE preset
first, then MIXED: on an AVX2-only AMD EPYC that took BlazePose's landmark model from 0.76
to 0.99 agreement with every layer int8 (overflow fix alone: 0.95; full correction alone:
0.75), and PERFORMANCE ran 1.4x OpenVINO fp32 in single-thread CPU time where MIXED ran 1.3x.

Layers to keep in float are ONNX node names; OpenVINO renames a Conv ``X`` with bias to
``X/WithoutBiases`` plus an ``Add`` named ``X``, so names are mapped to the OpenVINO ops
that carry them and passed to NNCF with ``validate=True`` (unknown names are an error, not
silently dropped).

Post-processing inside the graph (NMS, TopK, loops: ``edgevision.quantization.postprocess``)
is kept out of int8 the same way, by the names OpenVINO kept for it: NNCF otherwise fails to
build its graph over some of it, and int8 there would change which boxes survive.

``int8-dynamic`` is refused: OpenVINO's CPU plugin applies dynamic quantization by itself
at run time (``DYNAMIC_QUANTIZATION_GROUP_SIZE``); it is not a property of the file.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

from edgevision.errors import EdgevisionError, cause
from edgevision.quantization import register_quantizer
from edgevision.quantization.base import Feeds, QuantizeOptions, Quantizer
from edgevision.quantization.postprocess import postprocessing_nodes

logger = logging.getLogger(__name__)

PRESETS = ("mixed", "performance")
# NNCF's overflow fix (weights in 7 bits where x86 without VNNI would clamp int16 pair sums):
# its default, the first layer only; every layer; none.
OVERFLOW_FIXES = ("first_layer_only", "enable", "disable")


def range_estimator(method: str, percentile: float):
    """NNCF's activation range estimator for ``method``; None keeps NNCF's default."""
    from nncf.quantization.range_estimator import (
        RangeEstimatorParameters,
        RangeEstimatorParametersSet,
        StatisticsCollectorParameters,
    )

    if method == "mean-minmax":
        return None
    if method == "minmax":
        return RangeEstimatorParametersSet.MINMAX
    if method == "histogram":
        return RangeEstimatorParametersSet.HISTOGRAM
    base = RangeEstimatorParametersSet.MEAN_QUANTILE
    outlier = (100.0 - percentile) / 100.0
    return RangeEstimatorParameters(
        min=StatisticsCollectorParameters(
            base.min.statistics_type, base.min.aggregator_type, quantile_outlier_prob=outlier
        ),
        max=StatisticsCollectorParameters(
            base.max.statistics_type, base.max.aggregator_type, quantile_outlier_prob=outlier
        ),
    )


def carried_names(names: Sequence[str], layer: str) -> list[str]:
    """The OpenVINO op names among ``names`` that carry ONNX node ``layer`` (``X`` and ``X/...``)."""
    return [n for n in names if n == layer or n.startswith(layer + "/")]


def present_names(model, layers: Sequence[str]) -> list[str]:
    """OpenVINO op names that carry any of ``layers``; layers OpenVINO folded away are skipped."""
    names = [op.get_friendly_name() for op in model.get_ordered_ops()]
    return sorted({n for layer in layers for n in carried_names(names, layer)})


def ignored_names(model, exclude: Sequence[str]) -> list[str]:
    """OpenVINO op names that carry the ONNX node names ``exclude`` (``X`` and ``X/...``)."""
    names = [op.get_friendly_name() for op in model.get_ordered_ops()]
    found, unknown = [], []
    for layer in exclude:
        matches = carried_names(names, layer)
        (found.extend(matches) if matches else unknown.append(layer))
    if unknown:
        raise EdgevisionError(
            f"layers {unknown} are not in the model; list the quantizable layers with Quantizer.layers()."
        )
    return sorted(set(found))


@register_quantizer
class OpenVinoQuantizer(Quantizer):
    """OpenVINO IR files; int8 through NNCF post-training quantization."""

    name = "openvino"
    runtime = "openvino"
    suffix = ".xml"
    precisions = ("fp32", "fp16", "int8")
    methods = ("minmax", "mean-minmax", "percentile", "histogram")
    default_method = "mean-minmax"
    extra = "quantize"  # NNCF beside OpenVINO
    faster_options = ({"preset": "performance"},)  # no zero-point compensation; MIXED stays the default
    # when the default misses: 7-bit weights everywhere (no int16 clamping without VNNI) and
    # bias correction measured through the quantized layers before each one; faster preset first
    repair_options = (
        {"preset": "performance", "overflow_fix": "enable", "bias_correction": "full"},
        {"overflow_fix": "enable", "bias_correction": "full"},
    )

    @classmethod
    def is_available(cls) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in ("openvino", "nncf"))

    def quantize(
        self, source: Path, output: Path, *, options: QuantizeOptions, calibration: Sequence[Feeds] = ()
    ) -> Path:
        """Write ``output`` (``.xml`` + ``.bin``) at ``options.precision``."""
        import onnx

        from edgevision.conversion.openvino import read_onnx, save_ir

        options = self.resolve(options)
        self.check(options, calibration)
        model = read_onnx(Path(source))
        self.kept_float = {}
        if options.precision == "int8":
            self.kept_float = postprocessing_nodes(onnx.load(str(source), load_external_data=False))
            model = self._nncf(model, options, calibration, name=Path(source).name)
        self.notes = self._notes(options, len(calibration))
        return save_ir(model, Path(output), compress_to_fp16=options.precision == "fp16")

    def float_candidates(self, source: Path) -> list[str]:
        """ONNX node names of ``source`` that OpenVINO keeps as ops (shape ops may be folded away)."""
        import onnx

        from edgevision.conversion.openvino import read_onnx

        names = {op.get_friendly_name() for op in read_onnx(Path(source)).get_ordered_ops()}
        prefixes = {name.split("/WithoutBiases")[0] for name in names}
        graph = onnx.load(str(source), load_external_data=False).graph
        return [n.name for n in graph.node if n.name in names or n.name in prefixes]

    def check(self, options: QuantizeOptions, calibration: Sequence[Feeds] | None = None) -> None:
        """Refuse what this backend cannot make; ``calibration`` None skips the data check."""
        if options.precision == "int8-dynamic":
            raise EdgevisionError(
                "OpenVINO has no int8-dynamic file format: its CPU plugin quantizes activations dynamically "
                "by itself at run time; use --precision int8 (NNCF) or fp16, or --backend ort for dynamic int8."
            )
        if options.precision not in self.precisions:
            raise EdgevisionError(f"openvino precisions are {', '.join(self.precisions)}, got {options.precision}.")
        if options.precision == "int8" and options.method not in self.methods:
            raise EdgevisionError(
                f"NNCF has no '{options.method}' calibration; choose one of {', '.join(self.methods)} "
                "(histogram picks ranges that minimise the quantization error)."
            )
        if options.precision == "int8" and calibration is not None and not calibration:
            raise EdgevisionError("int8 quantization needs calibration images (--calib).")

    def _nncf(self, model, options: QuantizeOptions, calibration: Sequence[Feeds], *, name: str):
        import nncf

        nncf.set_log_level(logging.ERROR)  # NNCF sets its own stdout logger to INFO when imported
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            OverflowFix,
            QuantizationParameters,
        )

        preset = str(options.extra.get("preset", "mixed")).lower()
        if preset not in PRESETS:
            raise EdgevisionError(f"NNCF presets are {', '.join(PRESETS)}, got {preset}.")
        overflow = str(options.extra.get("overflow_fix", OVERFLOW_FIXES[0])).lower()
        if overflow not in OVERFLOW_FIXES:
            raise EdgevisionError(f"NNCF overflow fixes are {', '.join(OVERFLOW_FIXES)}, got {overflow}.")
        advanced = AdvancedQuantizationParameters(
            overflow_fix=OverflowFix(overflow),
            activations_range_estimator_params=range_estimator(options.method, options.percentile),
            weights_quantization_params=None if options.per_channel else QuantizationParameters(per_channel=False),
            disable_channel_alignment=not options.extra.get("channel_alignment", False),
        )
        ignored = sorted({*ignored_names(model, options.exclude), *present_names(model, list(self.kept_float))})
        scope = nncf.IgnoredScope(names=ignored, validate=True) if ignored else None
        logger.info("NNCF: %d calibration inputs, preset %s, method %s", len(calibration), preset, options.method)
        try:
            return nncf.quantize(
                model,
                nncf.Dataset(list(calibration)),
                preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
                subset_size=len(calibration),
                fast_bias_correction=options.extra.get("bias_correction", "fast") != "full",
                ignored_scope=scope,
                advanced_parameters=advanced,
            )
        except Exception as exc:  # NNCF raises its own InternalError, ValidationError, RuntimeError ...
            raise EdgevisionError(
                f"NNCF could not quantize {name} ({cause(exc)}); keep the failing layers in float with --exclude, "
                "or try --backend ort."
            ) from None

    @staticmethod
    def _notes(options: QuantizeOptions, count: int) -> list[str]:
        if options.precision == "fp32":
            return ["OpenVINO IR with fp32 weights"]
        if options.precision == "fp16":
            return ["OpenVINO IR with fp16 weights (decompressed to the inference precision at load)"]
        preset = options.extra.get("preset", "mixed")
        overflow = options.extra.get("overflow_fix", OVERFLOW_FIXES[0])
        correction = options.extra.get("bias_correction", "fast")
        return [
            f"NNCF int8, preset {preset}, method {options.method}, {count} calibration inputs, "
            f"{'per-channel' if options.per_channel else 'per-tensor'} weights, overflow fix {overflow}, "
            f"{correction} bias correction"
        ]
