"""TFLite -> ONNX with tf2onnx, refused unless ONNX Runtime reproduces LiteRT's numbers.

>>> from edgevision.conversion.tflite import tflite_to_onnx
>>> tflite_to_onnx(Path("model.tflite"), Path("model.onnx"))  # doctest: +SKIP

The steps: convert with tf2onnx's TFLite reader, fold any float16 weights left behind by
``DEQUANTIZE`` ops into float32, simplify with onnxslim, then run LiteRT and ONNX Runtime
on the same image-like input and compare every output.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np

from edgevision.compare import check_parity
from edgevision.errors import EdgevisionError, MissingExtraError, cause
from edgevision.files import write_atomic

logger = logging.getLogger(__name__)

# Largest allowed |LiteRT - ONNX| per output, relative to the output's magnitude when that
# exceeds 1. Converted MediaPipe models typically differ by ~5e-4 (fp32 summation order).
PARITY_TOLERANCE = 1e-3


def tflite_to_onnx(
    tflite: Path,
    out_onnx: Path,
    *,
    opset: int = 13,
    sample: np.ndarray | None = None,
    input_range: tuple[float, float] = (0.0, 1.0),
    tolerance: float = PARITY_TOLERANCE,
) -> None:
    """Convert ``tflite`` to ``out_onnx``; written only when outputs match LiteRT's.

    ``sample`` feeds the parity check; when None a smooth synthetic image scaled to
    ``input_range`` (the model's expected pixel range, e.g. ``(-1, 1)``) is used.
    """
    tf2onnx = import_tf2onnx()
    start = time.perf_counter()
    tflite = Path(tflite)
    model = _run_tf2onnx(tf2onnx, tflite, opset)
    folded = fold_fp16_initializers(model)
    model = _simplify(model)
    feeds = _parity_feeds(tflite, sample, input_range)
    check_parity(run_litert(tflite, feeds), run_onnx(model, feeds), tolerance=tolerance, reference="LiteRT")
    write_atomic(Path(out_onnx), model.SerializeToString())
    elapsed = time.perf_counter() - start
    logger.info("%s -> %s in %.1f s (%d fp16 weights folded)", tflite.name, out_onnx, elapsed, folded)


def import_tf2onnx():
    """tf2onnx, made importable under numpy 2; a clear error when the convert extra is missing."""
    try:
        import numpy

        if not hasattr(numpy, "product"):  # tf2onnx 1.17 still calls the alias numpy 2 removed
            numpy.product = numpy.prod
        import tf2onnx
    except ImportError:
        raise MissingExtraError("tf2onnx", "convert") from None
    return tf2onnx


def _run_tf2onnx(tf2onnx, tflite: Path, opset: int):
    if not tflite.exists():
        raise EdgevisionError(f"{tflite} does not exist.")
    try:
        with warnings.catch_warnings():  # tf2onnx reads the file with TF's deprecated tf.lite.Interpreter
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            model, _ = tf2onnx.convert.from_tflite(str(tflite), opset=opset)
    except Exception as exc:  # tf2onnx raises bare exceptions of many kinds
        raise EdgevisionError(
            f"tf2onnx could not convert {tflite.name} ({cause(exc)}); run the .tflite file on LiteRT instead."
        ) from None
    return model


def fold_fp16_initializers(model) -> int:
    """Replace ``Cast(float16 weight -> float32)`` by a float32 weight; returns the count.

    tf2onnx usually folds TFLite's fp16 ``DEQUANTIZE`` ops itself; this catches the rest so
    no runtime has to cast weights on every inference.
    """
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    weights = {t.name: t for t in graph.initializer if t.data_type == TensorProto.FLOAT16}
    casts = [n for n in graph.node if n.op_type == "Cast" and n.input[0] in weights]
    casts = [n for n in casts if _cast_to(n) == TensorProto.FLOAT]
    for node in casts:
        value = numpy_helper.to_array(weights[node.input[0]]).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        graph.node.remove(node)
    _drop_unused_initializers(graph)
    return len(casts)


def _cast_to(node) -> int:
    return next((a.i for a in node.attribute if a.name == "to"), -1)


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)


def _simplify(model):
    try:
        import onnxslim
    except ImportError:
        raise MissingExtraError("onnxslim", "convert") from None
    return onnxslim.slim(model)


# ----------------------------------------------------------------------------- parity


def synthetic_image(height: int, width: int, input_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """A seeded, smooth (H, W, 3) float32 image with hard-edged shapes, scaled to ``input_range``.

    Smooth regions and edges exercise a vision model more like a photo than uniform noise.
    """
    import cv2

    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(width // 10, width // 3), rng.integers(height // 10, height // 3)
        cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), rng.integers(0, 256, 3).tolist(), -1)
    low, high = input_range
    return (image.astype(np.float32) / 255.0 * (high - low) + low).astype(np.float32)


def _parity_feeds(tflite: Path, sample: np.ndarray | None, input_range: tuple[float, float]) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(tflite)).get_input_details()
    if sample is not None:
        if len(details) != 1:
            raise EdgevisionError(f"{tflite.name} has {len(details)} inputs; a single sample cannot feed them.")
        return {details[0]["name"]: np.asarray(sample, dtype=details[0]["dtype"])}
    return {d["name"]: _synthetic_input(tuple(d["shape"]), d["dtype"], input_range) for d in details}


def _synthetic_input(shape: tuple[int, ...], dtype, input_range: tuple[float, float]) -> np.ndarray:
    if len(shape) == 4 and shape[3] == 3:
        return np.broadcast_to(synthetic_image(shape[1], shape[2], input_range), shape).astype(dtype)
    return np.random.default_rng(0).uniform(*input_range, shape).astype(dtype)


def run_litert(tflite: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of ``tflite`` on LiteRT, by output name."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise MissingExtraError("ai-edge-litert", "litert") from None
    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], feeds[detail["name"]])
    interpreter.invoke()
    return {d["name"]: interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()}


def run_onnx(model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of an in-memory ONNX model on ONNX Runtime, by output name."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))
