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
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevision.compare import (
    FP32_TOLERANCE,
    OutputParity,
    ParityReport,
    compare_outputs,
)
from edgevision.errors import EdgevisionError, MissingExtraError, cause
from edgevision.files import atomic_path

logger = logging.getLogger(__name__)


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
    try:
        with atomic_path(out_path) as candidate:
            _torch_export(
                module, candidate, _Export(input_name, tuple(output_names), input_shape, opset, dynamic_batch)
            )
            _simplify_in_place(candidate)
            report = _check(module, candidate, input_name, output_names, parity_inputs, tolerance)
            report.file_bytes = candidate.stat().st_size
            if not report.passed:
                raise _Refused
        report.path = out_path
    except _Refused:
        pass  # nothing written; the report says why (see ``require_parity``)
    report.seconds = time.perf_counter() - start
    logger.info("%s: %s", out_path.name, report.table().replace("\n", "; "))
    return report


class _Refused(Exception):
    """The export did not match PyTorch: leave nothing at the output path."""


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
        try:
            torch.onnx.export(
                module,
                (torch.zeros(how.input_shape),),
                str(path),
                input_names=[how.input],
                output_names=list(how.outputs),
                opset_version=how.opset,
                dynamic_axes=axes,
                dynamo=False,
            )
        except Exception as exc:  # the exporter raises RuntimeError, SymbolicValueError and others
            raise EdgevisionError(
                f"PyTorch could not export {type(module).__name__} to ONNX at opset {how.opset}: {cause(exc)}."
            ) from None
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
    with atomic_path(out_path) as tmp:
        torch.export.save(program, str(tmp))
    return out_path
