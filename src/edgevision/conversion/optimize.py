"""Graph simplification and fusion of an ONNX model, with a before/after op count and parity.

>>> from edgevision.conversion.optimize import optimize_model
>>> result = optimize_model("nanodet-m", output=Path("nanodet-opt.onnx"))  # doctest: +SKIP
>>> print(result.report.table())                                          # doctest: +SKIP

Two passes, both from libraries:

1. onnxslim: constant folding, dead-node and identity removal, shape-op simplification,
   and pattern fusions (Conv+BatchNorm, Conv+Add/Mul, Pad+Conv, Gemm, GELU).
2. ONNX Runtime's offline *basic* optimisations (constant folding, redundant-node
   elimination, Conv+Add/Mul/BatchNorm fusion, Relu+Clip fusion). They keep standard ONNX
   ops, so the file stays portable to OpenVINO and onnx2tf. ORT's *extended* level writes
   ``com.microsoft`` fused ops that only ONNX Runtime runs; it is not used. The pass is kept
   only when it leaves a standard-ops graph with fewer nodes.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgevision.checks import output_file
from edgevision.conversion.api import SourceModel
from edgevision.conversion.parity import Parity, ParityOptions, measure_parity, require
from edgevision.errors import MissingExtraError
from edgevision.files import write_atomic
from edgevision.modelfiles import read_onnx
from edgevision.variants import VariantMeta, write_meta

logger = logging.getLogger(__name__)

STANDARD_DOMAINS = ("", "ai.onnx")


@dataclass
class OptimizeReport:
    """Op counts before and after, the passes that were kept, and parity with the source."""

    before: Counter
    after: Counter
    passes: list[str] = field(default_factory=list)
    parity: Parity | None = None

    def rows(self) -> list[tuple[str, int, int]]:
        """(op type, before, after) for every op type, most frequent first, then the total."""
        ops = sorted(set(self.before) | set(self.after), key=lambda op: (-self.before[op], op))
        total = ("total", sum(self.before.values()), sum(self.after.values()))
        return [(op, self.before[op], self.after[op]) for op in ops] + [total]

    def table(self) -> str:
        """A plain-text table of ``rows`` with the passes applied."""
        lines = [f"{'op type':<24}{'before':>8}{'after':>8}"]
        lines += [f"{op:<24}{b:>8}{a:>8}" for op, b, a in self.rows()]
        lines.append("passes: " + (", ".join(self.passes) or "none changed the graph"))
        return "\n".join(lines)


def op_counts(model) -> Counter:
    """Number of nodes of each op type (custom domains prefixed) in the main graph."""
    return Counter(n.op_type if n.domain in STANDARD_DOMAINS else f"{n.domain}.{n.op_type}" for n in model.graph.node)


def slim(model):
    """``model`` after onnxslim's folding, dead-node removal and fusions."""
    try:
        import onnxslim
    except ImportError:
        raise MissingExtraError("onnxslim", "convert") from None
    return onnxslim.slim(model)


def ort_basic(model, folder: Path):
    """``model`` after ONNX Runtime's basic offline optimisations (written via a file)."""
    import onnx
    import onnxruntime as ort

    source, target = folder / "ort-in.onnx", folder / "ort-out.onnx"
    onnx.save(model, str(source))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(target))


def is_portable(model) -> bool:
    """True when every node is a standard ONNX op (no runtime-specific fused ops)."""
    return all(n.domain in STANDARD_DOMAINS for n in model.graph.node)


def simplify(model, folder: Path) -> tuple[object, list[str]]:
    """Run the passes; return the optimised model and the names of the passes kept."""
    passes = []
    slimmed = slim(model)
    if len(slimmed.graph.node) < len(model.graph.node):
        passes.append("onnxslim")
    model = slimmed if len(slimmed.graph.node) <= len(model.graph.node) else model
    fused = ort_basic(model, folder)
    if is_portable(fused) and len(fused.graph.node) < len(model.graph.node):
        model = fused
        passes.append("onnxruntime basic")
    return model, passes


def optimize_output(label: str, output: Path | None) -> Path:
    """Where optimizing ``label`` writes (``output`` or ``runs/optimize/<stem>.onnx``), checked before any work."""
    output = Path(output) if output else Path("runs/optimize") / f"{Path(label).stem}.onnx"
    return output_file(output, suffixes=(".onnx",), what="the optimized model")


@dataclass
class OptimizeResult:
    path: Path
    report: OptimizeReport
    meta: VariantMeta


def optimize_model(
    source: SourceModel, *, output: Path | None = None, parity: ParityOptions = ParityOptions()
) -> OptimizeResult:
    """Optimise ``source`` into ``output``; refused, with nothing written, if the numbers change."""
    import onnx

    path = optimize_output(source.label, output)
    with tempfile.TemporaryDirectory(prefix="edgevision-optimize-") as tmp:
        original = read_onnx(source.onnx)
        optimised, passes = simplify(original, Path(tmp))
        candidate = Path(tmp) / "candidate.onnx"
        onnx.save(optimised, str(candidate))
        checked = measure_parity(source.original or source.onnx, candidate, processor=source.processor, options=parity)
        require(checked, f"optimizing {source.label}")
        report = OptimizeReport(op_counts(original), op_counts(optimised), passes, checked)
        write_atomic(path, candidate.read_bytes())
    meta = _meta(source, report)
    write_meta(path, meta)
    return OptimizeResult(path, report, meta)


def _meta(source: SourceModel, report: OptimizeReport) -> VariantMeta:
    before, after = sum(report.before.values()), sum(report.after.values())
    return VariantMeta(
        source_model=source.label,
        source_sha256=source.sha256,
        runtime="onnxruntime",
        precision="fp32",
        step="optimize",
        parity=report.parity.to_dict() if report.parity else {},
        agreement=report.parity.agreement if report.parity else {},
        notes=[*source.notes, f"nodes {before} -> {after}; passes: {', '.join(report.passes) or 'none'}"],
        random_weights=source.random_weights,
        card=source.card,
    )
