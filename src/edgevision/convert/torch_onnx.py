"""PyTorch -> ONNX (checked against PyTorch with ONNX Runtime) and PyTorch -> ``.pt2``.

>>> from edgevision.models.yolox import build_yolox
>>> report = export_onnx(build_yolox("yolox-nano"), Path("yolox_nano.onnx"),
...                      input_shape=(1, 3, 416, 416), output_names=("boxes", "scores"),
...                      parity_inputs=[x])                         # doctest: +SKIP
>>> print(report.table())                                           # doctest: +SKIP
>>> require_parity(report)                                          # doctest: +SKIP

The exporter is TorchScript's (``dynamo=False``): the dynamo exporter needs
``onnxscript``, which is not a dependency, and writes weights to a separate ``.onnx.data``
file by default. The TorchScript exporter writes one self-contained file for models under
the 2 GB protobuf limit (the 209 MB OpenPose body included); onnxslim then simplifies it
and the result is saved again as one file.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError, MissingExtraError

logger = logging.getLogger(__name__)

FP32_TOLERANCE = 1e-4


@dataclass(frozen=True)
class OutputParity:
    """How one output of the converted model compares with the reference."""

    name: str
    shape: tuple[int, ...]
    max_abs_diff: float
    cosine: float
    scale: float  # largest magnitude in the reference output

    def passes(self, tolerance: float) -> bool:
        """Max abs diff within ``tolerance``, relative to the output's magnitude when over 1."""
        return self.max_abs_diff <= tolerance * max(1.0, self.scale)


@dataclass
class ParityReport:
    """Per-output agreement of an exported file with the PyTorch module it came from."""

    outputs: list[OutputParity]
    tolerance: float = FP32_TOLERANCE
    path: Path | None = None  # the written file; None when parity failed and nothing was written
    seconds: float = 0.0  # export + simplify + check
    file_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(o.passes(self.tolerance) for o in self.outputs)

    def to_dict(self) -> dict:
        """JSON-ready summary: verdict, tolerance and per-output numbers."""
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "seconds": round(self.seconds, 2),
            "file_bytes": self.file_bytes,
            "outputs": [
                {"name": o.name, "shape": list(o.shape), "max_abs_diff": o.max_abs_diff, "cosine": o.cosine,
                 "scale": o.scale}  # fmt: skip
                for o in self.outputs
            ],
        }

    def lines(self) -> list[str]:
        """One line per output: name, shape, max abs diff, cosine, verdict."""
        return [
            f"{o.name:<12} {str(list(o.shape)):<18} max|diff| {o.max_abs_diff:.3e}  cosine {o.cosine:.8f}  "
            f"{'ok' if o.passes(self.tolerance) else 'FAIL'}"
            for o in self.outputs
        ]

    def table(self) -> str:
        """The lines under a header with the tolerance, verdict, time and size."""
        verdict = "passed" if self.passed else "FAILED"
        head = (
            f"parity {verdict} (tolerance {self.tolerance:.0e} x max(1, |ref|)), "
            f"{self.seconds:.1f} s, {self.file_bytes / 1e6:.1f} MB"
        )
        return "\n".join([head, *self.lines(), *self.notes])


def compare_outputs(
    names: Sequence[str], expected: Sequence[np.ndarray], got: Sequence[np.ndarray]
) -> list[OutputParity]:
    """Max abs diff and cosine similarity of each pair of outputs."""
    if len(expected) != len(got):
        raise EdgevisionError(f"the converted model has {len(got)} outputs, the reference {len(expected)}.")
    return [_compare(name, np.asarray(e), np.asarray(g)) for name, e, g in zip(names, expected, got)]


def _compare(name: str, want: np.ndarray, have: np.ndarray) -> OutputParity:
    if want.shape != have.shape:
        raise EdgevisionError(f"output '{name}' has shape {have.shape} after conversion, {want.shape} before.")
    a, b = want.astype(np.float64).ravel(), have.astype(np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
    diff = float(np.abs(a - b).max(initial=0.0))
    return OutputParity(name, tuple(want.shape), diff, cosine, float(np.abs(a).max(initial=0.0)))


def require_parity(report: ParityReport) -> None:
    """Raise ``EdgevisionError`` with the numbers when ``report`` did not pass."""
    if not report.passed:
        failed = [o for o in report.outputs if not o.passes(report.tolerance)] or report.outputs
        worst = ", ".join(f"{o.name} max|diff| {o.max_abs_diff:.2e} cosine {o.cosine:.6f}" for o in failed)
        raise EdgevisionError(
            f"converted model differs from PyTorch beyond {report.tolerance:.0e} ({worst or 'no outputs'}); "
            "the file was not written."
        )


def export_onnx(
    module,
    out_path: str | Path,
    *,
    input_shape: tuple[int, ...],
    parity_inputs: Sequence[np.ndarray],
    input_name: str = "images",
    output_names: Sequence[str] = ("output",),
    opset: int = 17,
    dynamic_batch: bool = False,
    tolerance: float = FP32_TOLERANCE,
) -> ParityReport:
    """Export ``module`` to ``out_path`` as one simplified ONNX file, checked against PyTorch.

    The file is built in a temporary folder beside ``out_path`` and moved there only when
    every output on every ``parity_inputs`` array matches PyTorch within ``tolerance``;
    otherwise nothing is written and the report says why (see ``require_parity``).
    """
    out_path = Path(out_path)
    if not parity_inputs:
        raise EdgevisionError("export_onnx needs at least one parity input to check the exported model.")
    start = time.perf_counter()
    module = module.eval()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}-", dir=out_path.parent))
    try:
        candidate = tmp_dir / out_path.name
        _torch_export(module, candidate, _Export(input_name, tuple(output_names), input_shape, opset, dynamic_batch))
        _simplify_in_place(candidate)
        report = _check(module, candidate, input_name, output_names, parity_inputs, tolerance)
        report.file_bytes = candidate.stat().st_size
        if report.passed:
            os.replace(candidate, out_path)
            report.path = out_path
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    report.seconds = time.perf_counter() - start
    logger.info("%s: %s", out_path.name, report.table().replace("\n", "; "))
    return report


@dataclass(frozen=True)
class _Export:
    input: str
    outputs: tuple[str, ...]
    input_shape: tuple[int, ...]
    opset: int
    dynamic_batch: bool


def _torch_export(module, path: Path, how: _Export) -> None:
    import torch

    axes = {name: {0: "batch"} for name in (how.input, *how.outputs)} if how.dynamic_batch else None
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module, (torch.zeros(how.input_shape),), str(path), input_names=[how.input],
            output_names=list(how.outputs), opset_version=how.opset, dynamic_axes=axes, dynamo=False,
        )  # fmt: skip
    if any(p.suffix == ".data" for p in path.parent.iterdir()):
        raise EdgevisionError(
            f"{path.name}: the exporter wrote external weight data; models over 2 GB are not supported."
        )


def _simplify_in_place(path: Path) -> None:
    """onnxslim the file and save it back as one file (no external data)."""
    import onnx

    try:
        import onnxslim
    except ImportError:
        raise MissingExtraError("onnxslim", "convert") from None
    model = onnxslim.slim(onnx.load(str(path)))
    onnx.save(model, str(path), save_as_external_data=False)


def _check(module, path: Path, input_name: str, output_names, inputs, tolerance: float) -> ParityReport:
    """Run PyTorch and ONNX Runtime on every input; keep each output's worst comparison."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    worst: dict[str, OutputParity] = {}
    for x in inputs:
        with torch.inference_mode():
            expected = _as_tuple(module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))))
        got = session.run(None, {input_name: np.ascontiguousarray(x, dtype=np.float32)})
        for item in compare_outputs(names, [t.numpy() for t in expected], got):
            if item.name not in worst or item.max_abs_diff > worst[item.name].max_abs_diff:
                worst[item.name] = item
    return ParityReport([worst[n] for n in names], tolerance)


def _as_tuple(result) -> tuple:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def export_pt2(module, out_path: str | Path, input_shape: tuple[int, ...]) -> Path:
    """Save ``module`` as a ``torch.export`` program (``.pt2``) for the torch backend."""
    import torch

    out_path = Path(out_path)
    program = torch.export.export(module.eval(), (torch.zeros(input_shape),))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}-", suffix=".pt2", dir=out_path.parent)
    os.close(fd)
    try:
        torch.export.save(program, tmp)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_path
