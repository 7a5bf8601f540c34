"""ONNX -> OpenVINO IR (``.xml`` + ``.bin``) with OpenVINO's own converter.

>>> from edgevision.conversion.openvino import onnx_to_openvino
>>> onnx_to_openvino(Path("model.onnx"), Path("model.xml"))  # doctest: +SKIP

``ov.save_model`` compresses weights to fp16 unless told not to: fp32 IR is written with
``compress_to_fp16=False``. Ops the ONNX frontend has no rule for are named in the error.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from edgevision.errors import EdgevisionError, MissingExtraError, UnsupportedOpsError, cause
from edgevision.files import copy_atomic

logger = logging.getLogger(__name__)

# The two lines of OpenVINO's unconverted-ops report that name op types.
_REPORTED = re.compile(r"(?:No conversion rule found for operations|Conversion is failed for):\s*(.+)")


def import_openvino():
    """The ``openvino`` module, or a clear error naming the extra that installs it."""
    try:
        import openvino
    except ImportError:
        raise MissingExtraError("openvino", "openvino") from None
    return openvino


def unsupported_ops(error_text: str) -> list[str]:
    """Op types (without their opset suffix) that OpenVINO's error says it cannot convert.

    >>> unsupported_ops("Summary:\\n-- No conversion rule found for operations: Det-18, Foo-1\\n")
    ['Det', 'Foo']
    """
    found: list[str] = []
    for line in error_text.splitlines():
        match = _REPORTED.search(line)
        if match:
            found += [re.sub(r"-\d+$", "", op.strip()) for op in match.group(1).split(",") if op.strip()]
    return sorted(set(found))


def read_onnx(source: Path):
    """``source`` as an ``ov.Model``; ``UnsupportedOpsError`` naming the ops it cannot take."""
    ov = import_openvino()
    try:
        return ov.convert_model(str(source))
    except Exception as exc:  # OpenVINO raises OpConversionFailure / RuntimeError subclasses
        ops = unsupported_ops(str(exc))
        if ops:
            raise UnsupportedOpsError("openvino", ops, f"OpenVINO cannot convert op(s) {', '.join(ops)}.") from None
        raise EdgevisionError(f"OpenVINO cannot convert {source.name}: {cause(exc)}.") from None


def save_ir(model, xml: Path, *, compress_to_fp16: bool) -> Path:
    """Write ``model`` as ``xml`` + ``.bin`` (fp32 weights unless ``compress_to_fp16``)."""
    ov = import_openvino()
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=compress_to_fp16)
    return xml


def onnx_to_openvino(source: Path, output: Path, *, compress_to_fp16: bool = False) -> Path:
    """Convert ONNX ``source`` to IR at ``output`` (``.xml``; the ``.bin`` goes beside it)."""
    if output.suffix != ".xml":
        raise EdgevisionError(f"OpenVINO IR files end in .xml, got {output.name}.")
    return save_ir(read_onnx(Path(source)), Path(output), compress_to_fp16=compress_to_fp16)


def ir_files(xml: Path) -> list[Path]:
    """The files of one IR model: ``.xml`` and ``.bin``."""
    return [xml, xml.with_suffix(".bin")]


def move_ir(xml: Path, target: Path) -> Path:
    """Move the IR pair ``xml``/``.bin`` to ``target``/``.bin``, each file atomically, weights first.

    An ``.xml`` at ``target`` then never names weights that are not completely there. An
    ncnn ``.param``/``.bin`` pair is moved the same way.
    """
    for src, dst in reversed(list(zip(ir_files(xml), ir_files(target)))):
        copy_atomic(src, dst)
        src.unlink()
    return target
