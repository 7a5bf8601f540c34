"""``convert_model``: a source model (as ONNX) to ONNX, OpenVINO IR, TFLite or ncnn, parity-checked.

>>> import edgevision
>>> result = edgevision.convert("nanodet-m", to="openvino", output="nanodet.xml")  # doctest: +SKIP
>>> print(result.parity.table())                                                 # doctest: +SKIP

Every conversion goes through ONNX: zoo models give their pulled ONNX file (PyTorch
families are exported first), ``.tflite`` files are converted with tf2onnx. The result is
built in a temporary folder, compared with the source on the sample photos, and moved to
its place with a metadata file only when the numbers agree.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgevision.checks import output_file
from edgevision.conversion.parity import (
    Parity,
    ParityOptions,
    measure_parity,
    require,
)
from edgevision.errors import EdgevisionError, UnsupportedOpsError
from edgevision.files import copy_atomic
from edgevision.modelfiles import weights_of_ir
from edgevision.models.base import Processor
from edgevision.variants import VariantMeta, write_meta

logger = logging.getLogger(__name__)

SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "tflite": ".tflite", "ncnn": ".param"}
RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "litert", "ncnn": "ncnn"}


@dataclass
class SourceModel:
    """The model to convert, as an ONNX file, and what is known about it."""

    label: str  # zoo name or the user's path
    onnx: Path
    sha256: str
    processor: Processor | None = None
    original: Path | None = None  # the user's file when it was not ONNX (e.g. .tflite)
    random_weights: bool = False
    notes: list[str] = field(default_factory=list)
    export_parity: dict = field(default_factory=dict)  # PyTorch -> ONNX, for PyTorch zoo models
    card: dict = field(default_factory=dict)  # the model card of a file that has one, carried into every output


OPSETS = range(7, 21)  # the opsets PyTorch's TorchScript exporter writes


@dataclass(frozen=True)
class ExportOptions:
    """How PyTorch zoo models are exported to ONNX (opset 7 to 20)."""

    opset: int = 17
    dynamic_batch: bool = False

    def __post_init__(self) -> None:
        if self.opset not in OPSETS:
            raise EdgevisionError(
                f"the ONNX exporter writes opsets {OPSETS.start} to {OPSETS.stop - 1}, not {self.opset}; "
                "give --opset in that range (17 is the default)."
            )


@dataclass
class ConversionResult:
    """The written file, its parity with the source and its metadata."""

    path: Path
    parity: Parity
    meta: VariantMeta
    export_parity: dict = field(default_factory=dict)

    def export_lines(self) -> list[str]:
        """PyTorch -> ONNX parity of the export, one line per output (empty for other sources)."""
        if not self.export_parity:
            return []
        p = self.export_parity
        head = f"PyTorch -> ONNX parity {'passed' if p['passed'] else 'FAILED'} (tolerance {p['tolerance']:.0e})"
        rows = [
            f"{o['name']:<12} {str(o['shape']):<18} max|diff| {o['max_abs_diff']:.3e}  cosine {o['cosine']:.8f}"
            for o in p["outputs"]
        ]
        return [head, *rows]


# ----------------------------------------------------------------------------- conversion


def default_output(label: str, to: str) -> Path:
    """``runs/convert/<model><suffix>`` for zoo name or model file ``label``."""
    stem = Path(label).stem if "/" in label or "." in label else label
    return Path("runs/convert") / f"{stem}{SUFFIXES[to]}"


def conversion_output(label: str, to: str, output: Path | None) -> Path:
    """Where converting ``label`` to ``to`` writes (``output`` or the default), checked before any work."""
    if to not in SUFFIXES:
        raise EdgevisionError(f"unknown target '{to}'; choose one of {', '.join(SUFFIXES)}.")
    output = Path(output) if output else default_output(label, to)
    output_file(output, suffixes=(SUFFIXES[to],), what=f"a {to} model file")
    if to in ("openvino", "ncnn"):
        output_file(weights_of_ir(output), suffixes=(".bin",), what=f"the {to} model's weights file")
    return output


def write_candidate(source: SourceModel, to: str, folder: Path) -> tuple[Path, list[str]]:
    """Convert ``source`` into ``folder``; return the file and notes for the metadata."""
    candidate = folder / f"candidate{SUFFIXES[to]}"
    try:
        if to == "onnx":
            shutil.copyfile(source.onnx, candidate)
            return candidate, []
        if to == "openvino":
            from edgevision.conversion.openvino import onnx_to_openvino

            return onnx_to_openvino(source.onnx, candidate), ["OpenVINO IR with fp32 weights"]
        if to == "ncnn":
            from edgevision.conversion.ncnn import onnx_to_ncnn

            return onnx_to_ncnn(source.onnx, candidate), ["ncnn .param + .bin with fp32 weights, made by pnnx"]
        from edgevision.conversion.onnx_tflite import onnx_to_tflite

        return candidate, onnx_to_tflite(source.onnx, candidate)
    except UnsupportedOpsError as exc:
        raise EdgevisionError(unsupported_sentence(exc, source.onnx)) from None


def place(candidate: Path, output: Path) -> Path:
    """Move ``candidate`` (and the ``.bin`` of IR or ncnn) to ``output``; each file appears there complete."""
    if candidate.suffix in (".xml", ".param"):
        from edgevision.conversion.openvino import move_ir

        return move_ir(candidate, output)
    copy_atomic(candidate, output)
    candidate.unlink()
    return output


def convert_model(
    source: SourceModel, *, to: str, output: Path | None = None, parity: ParityOptions = ParityOptions()
) -> ConversionResult:
    """Convert ``source`` to ``to`` (onnx, openvino, tflite, ncnn) at ``output``.

    Refused, with nothing written, when the result's outputs differ from the source's
    beyond ``parity.tolerance`` or its task-level agreement is below ``parity.min_agreement``.
    ``edgevision.zoo.assemble.resolve_source`` makes the source from a zoo name or a file.
    """
    output = conversion_output(source.label, to, output)
    with tempfile.TemporaryDirectory(prefix="edgevision-convert-") as tmp:
        candidate, notes = write_candidate(source, to, Path(tmp))
        reference = source.original or source.onnx
        # Decoded objects of a random-weight network are noise: hold it to raw-output parity only.
        processor = None if source.random_weights else source.processor
        checked = measure_parity(reference, candidate, processor=processor, options=parity)
        require(checked, f"converting {source.label} to {to}")
        path = place(candidate, output)
    meta = _meta(source, to, checked, notes)
    write_meta(path, meta)
    return ConversionResult(path, checked, meta, source.export_parity)


def _meta(source: SourceModel, to: str, parity: Parity, notes: list[str]) -> VariantMeta:
    return VariantMeta(
        source_model=source.label,
        source_sha256=source.sha256,
        runtime=RUNTIMES[to],
        precision="fp32",
        step="convert",
        parity={**parity.to_dict(), **({"pytorch_to_onnx": source.export_parity} if source.export_parity else {})},
        agreement=parity.agreement,
        notes=[*source.notes, *notes],
        random_weights=source.random_weights,
        card=source.card,
    )


# ----------------------------------------------------------------------------- unsupported ops


def runtimes_that_take(onnx: Path) -> list[str]:
    """The runtimes that can run (or convert) ``onnx``: onnxruntime, openvino, litert."""
    return [name for name, check in _RUNTIME_CHECKS.items() if _quietly(check, onnx)]


def _quietly(check, onnx: Path) -> bool:
    try:
        return bool(check(onnx))
    except Exception:  # any failure means "cannot take it"
        return False


def _ort_takes(onnx: Path) -> bool:
    import onnxruntime as ort

    ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    return True


def _openvino_takes(onnx: Path) -> bool:
    from edgevision.conversion.openvino import read_onnx

    read_onnx(onnx)
    return True


def _litert_takes(onnx: Path) -> bool:
    import onnx as onnx_lib

    from edgevision.conversion.onnx_tflite import onnx2tf_available, unsupported_ops

    return onnx2tf_available() and not unsupported_ops(onnx_lib.load(str(onnx), load_external_data=False))


_RUNTIME_CHECKS = {"onnxruntime": _ort_takes, "openvino": _openvino_takes, "litert": _litert_takes}


def unsupported_sentence(error: UnsupportedOpsError, onnx: Path) -> str:
    """One sentence: the ops a runtime cannot take, and the runtimes that can take the model."""
    others = [r for r in runtimes_that_take(onnx) if r != error.runtime]
    where = f"runtimes that can take this model: {', '.join(others)}" if others else "no installed runtime takes it"
    return f"{str(error).rstrip('.')}; {where}."
