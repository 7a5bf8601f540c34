"""Model files of each format: one reader per format, and one sentence when a file is not what it says.

A file that is truncated, of another type, or an OpenVINO ``.xml`` or ncnn ``.param``
without its ``.bin`` is refused here, naming the file and the reader's own reason, before a runtime or a
converter meets it. ``load_failure`` tells a broken file from a runtime that cannot take
a sound one, so a runtime's refusal never blames the file.

>>> check_model_file("model.onnx")                                  # doctest: +SKIP
>>> model = read_onnx("model.onnx", external_data=False)           # doctest: +SKIP
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

from edgevision.checks import input_file
from edgevision.errors import EdgevisionError, MissingExtraError, cause
from edgevision.files import atomic_path, write_atomic

FORMATS = {".onnx": "ONNX", ".xml": "OpenVINO IR", ".tflite": "TFLite", ".pt2": "PyTorch export", ".param": "ncnn"}
TFLITE_MARK = b"TFL3"  # the FlatBuffers file identifier of a TFLite model, at bytes 4-8
NCNN_MAGIC = b"7767517"  # the first line of every ncnn text .param file
WEIGHTS_BESIDE = {".xml": "OpenVINO IR", ".param": "ncnn"}  # formats whose weights are a .bin beside the file
# ONNX metadata key under which a model file names nodes to keep float in every int8 variant:
# JSON {"reason": ..., "nodes": [...]} (edgevision.quantization.postprocess reads it)
FLOAT_NODES_KEY = "edgevision.float_nodes"


def not_valid(path: Path, fmt: str, reason: str) -> EdgevisionError:
    """The sentence for a file that its format's reader refuses."""
    return EdgevisionError(
        f"cannot load {path}: it is not a valid {fmt} file, perhaps corrupt or truncated ({reason}); "
        "export or download it again."
    )


def check_model_file(path: str | Path) -> Path:
    """``path`` when it is a readable model file whose content fits its suffix; else one sentence.

    ONNX files are parsed (without external data); the other formats are checked by their
    signature, and an ``.xml`` or ``.param`` needs its ``.bin`` beside it.
    """
    path = input_file(path, what="model file")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise EdgevisionError(f"{path} is not a model file edgevision reads; give one of {', '.join(FORMATS)}.")
    if path.stat().st_size == 0:
        raise EdgevisionError(f"model file {path} is empty; export or download it again.")
    head = _head(path)
    if suffix == ".onnx":
        read_onnx(path, external_data=False)
    elif suffix == ".xml":
        _check_ir(path, head)
    elif suffix == ".param":
        _check_ncnn(path, head)
    elif suffix == ".tflite" and head[4:8] != TFLITE_MARK:
        raise not_valid(path, "TFLite", f"no {TFLITE_MARK.decode()} mark at byte 4")
    elif suffix == ".pt2" and not zipfile.is_zipfile(path):
        raise not_valid(path, "PyTorch export", "not a zip archive")
    return path


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(64)


def weights_of_ir(xml: Path) -> Path:
    """The ``.bin`` that holds the weights of OpenVINO IR ``xml`` (or of ncnn ``.param``)."""
    return Path(xml).with_suffix(".bin")


def model_files(model: str | Path) -> list[Path]:
    """The files a model is made of: itself, and the ``.bin`` of an OpenVINO ``.xml`` or ncnn ``.param``.

    >>> [p.name for p in model_files("model.onnx")]
    ['model.onnx']
    """
    model = Path(model)
    weights = weights_of_ir(model)
    return [model, weights] if model.suffix.lower() in WEIGHTS_BESIDE and weights.is_file() else [model]


def _check_ir(path: Path, head: bytes) -> None:
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        raise not_valid(path, "OpenVINO IR", "it is not XML")
    _check_weights(path)


def _check_ncnn(path: Path, head: bytes) -> None:
    if not head.startswith(NCNN_MAGIC):
        raise not_valid(path, "ncnn", f"its first line is not the magic number {NCNN_MAGIC.decode()}")
    _check_weights(path)


def _check_weights(path: Path) -> None:
    weights = weights_of_ir(path)
    if not weights.is_file():
        fmt = WEIGHTS_BESIDE[path.suffix.lower()]
        raise EdgevisionError(
            f"{fmt} model {path} needs its weights file {weights} beside it; copy the .bin made with the {path.suffix}."
        )


def read_onnx(path: str | Path, *, external_data: bool = True):
    """The ``onnx.ModelProto`` in ``path``; one sentence when it is not a valid ONNX file."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:  # protobuf's DecodeError, OSError for missing external data, and others
        raise not_valid(Path(path), "ONNX", cause(exc)) from None


def read_openvino(path: str | Path):
    """The ``openvino.Model`` of IR ``path`` (or an ONNX file read by OpenVINO)."""
    try:
        import openvino as ov
    except ImportError:
        raise MissingExtraError("openvino", "openvino") from None
    path = check_model_file(path)
    try:
        return ov.Core().read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses for files it cannot parse
        raise not_valid(path, FORMATS[path.suffix.lower()], cause(exc)) from None


def open_tflite(path: str | Path, *, threads: int | None = None):
    """A LiteRT ``Interpreter`` for ``path`` (tensors not yet allocated)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise MissingExtraError("ai-edge-litert", "litert") from None
    path = check_model_file(path)
    try:
        return Interpreter(model_path=str(path), num_threads=threads)
    except Exception as exc:  # LiteRT raises ValueError/RuntimeError for bad files
        raise not_valid(path, "TFLite", cause(exc)) from None


def load_failure(path: str | Path, runtime: str, exc: Exception) -> EdgevisionError:
    """The sentence for ``runtime`` failing to load ``path``: the file's fault only if its reader agrees."""
    try:
        check_model_file(path)
        if Path(path).suffix.lower() == ".xml":
            read_openvino(path)  # the .bin's content is only read here
    except EdgevisionError as problem:
        return problem
    return EdgevisionError(f"{runtime} cannot load {path}: {cause(exc)}; try another --backend.")


def embed_metadata(path: Path, key: str, value: str) -> None:
    """Store ``key = value`` inside a model file: ONNX ``metadata_props``, OpenVINO IR ``rt_info``.

    The file is replaced atomically. Other formats are left alone (their sidecar carries
    it). OpenVINO: the IR's ``.xml`` is edited as text, because reading and saving it again
    through OpenVINO would rewrite (and by default recompress) the weights file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        _embed_onnx(path, key, value)
    elif suffix == ".xml":
        _embed_ir(path, key, value)


def _embed_onnx(path: Path, key: str, value: str) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    kept = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=key, value=value)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def _embed_ir(path: Path, key: str, value: str) -> None:

    text = path.read_text(encoding="utf-8")
    text = re.sub(rf"\s*<{re.escape(key)} value=\"[^\"]*\"\s*/>", "", text)
    entry = f"\n\t\t<{key} value={quoteattr(value)} />"
    end = text.rfind("</net>")
    block = text.rfind("</rt_info>", 0, end)
    if block != -1 and text.rfind("</edges>", 0, end) < block:  # the net's own rt_info, after its edges
        text = text[:block].rstrip() + entry + "\n\t" + text[block:]
    else:
        text = text[:end] + f"\t<rt_info>{entry}\n\t</rt_info>\n" + text[end:]
    write_atomic(path, text.encode("utf-8"))
