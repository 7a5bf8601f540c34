"""The zoo entry of the blazepose family: pinned sources, licence, files and wiring.

A pull converts MediaPipe's landmark model to ONNX (``model.onnx``: all five outputs, kept as
the reference) and cuts it with ``onnx.utils.Extractor`` to the two outputs the decoding
reads (``LANDMARKS_FILE``): the 39 x 5 landmarks and the pose-presence flag. The heat map,
segmentation mask and world landmarks run on their own branches (a decoder up to 256 x 256
for the mask), so the cut file does the same landmark work in about half the time at every
precision. The cut is refused unless its outputs match the full graph's.

The cut file also names the nodes of its landmark regression head (everything at 4 x 4 and
below, down to the outputs) in its metadata (``edgevision.quantization.postprocess.
FLOAT_NODES_KEY``), and every quantizer keeps them in float: the head maps a sparse 2 x 2 x
192 feature map to pixel coordinates with weights up to 158, so one int8 step of a feature
(6 / 255) moves a landmark by about 4 pixels. The head is under 2% of the model's work.

One stem channel is rescaled too (``rescale_quiet_stem_channels``, exact): it never exceeds
0.054 and the depthwise filter after it multiplies it by up to 1294, so int8 steps of its
ReLU6 output are scaled up to whole landmarks' worth of noise unless the channel fills 0-6.

A cache pulled by an edgevision that ran ``model.onnx`` has no ``LANDMARKS_FILE`` in its
manifest, so it is rebuilt, never taken for the cut network.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgevision.backends import create_backend
from edgevision.bundles import companion_file
from edgevision.compare import check_parity
from edgevision.conversion.tflite import tflite_to_onnx
from edgevision.errors import EdgevisionError
from edgevision.files import write_atomic
from edgevision.modelfiles import FLOAT_NODES_KEY
from edgevision.models.base import Predictor
from edgevision.models.blazepose import DETECTOR_FILE, LANDMARK_COUNT, BlazePosePredictor, LandmarkStageProcessor
from edgevision.zoo.pull import pulled_dir
from edgevision.zoo.registry import register_model
from edgevision.zoo.spec import Artifact, ModelSpec

_PACKAGE, _VERSION = "@mediapipe/pose", "0.5.1675469404"
_CDN = f"https://cdn.jsdelivr.net/npm/{_PACKAGE}@{_VERSION}"
# The detector is the whole of pose_solution_packed_assets.data (offsets 0..2962288 in
# package/pose_solution_packed_assets_loader.js). PyPI mediapipe==0.10.21 carries the same
# network as mediapipe/modules/pose_detection/pose_detection.tflite (a different flatbuffer
# layout with metadata, sha256 9ba9dd3d..., bit-identical outputs).
_DETECTOR = Artifact(
    DETECTOR_FILE,
    "npm",
    _PACKAGE,
    _VERSION,
    "package/pose_solution_packed_assets.data",
    "a63c614bef30d35947f13be361820b1e4e3bec9cfeebf4d11216a18373108e85",
    f"{_CDN}/pose_solution_packed_assets.data",
    offset=0,
    size=2962288,
)
_LANDMARKS = Artifact(
    "model.tflite",
    "npm",
    _PACKAGE,
    _VERSION,
    "package/pose_landmark_lite.tflite",
    "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61",
    f"{_CDN}/pose_landmark_lite.tflite",
)


FULL_FILE = "model.onnx"  # the converted landmark model, all five outputs; kept as the cut's reference
LANDMARKS_FILE = "landmarks.onnx"  # what the zoo runs and quantizes: landmarks and presence only
HEAD_SIDE = 4  # nodes whose outputs are this small (or flat) form the regression head kept float
PARITY_TOLERANCE = 1e-2  # a hundredth of a crop pixel (rescaling the stem moves float rounding by ~1e-3)


def landmark_outputs(graph) -> list[str]:
    """The outputs the decoding reads: the (1, 195) landmarks, then the (1, 1) presence flag."""
    sizes = {o.name: int(np.prod([d.dim_value for d in o.type.tensor_type.shape.dim])) for o in graph.output}
    found = [[n for n, size in sizes.items() if size == want] for want in (LANDMARK_COUNT * 5, 1)]
    if any(len(names) != 1 for names in found):
        raise EdgevisionError(f"expected BlazePose landmark outputs of 195 values and 1 value, got {sizes}.")
    return [names[0] for names in found]


def regression_head(model) -> list[str]:
    """Names of the nodes of the landmark regression head: every node whose outputs are at most
    ``HEAD_SIDE`` x ``HEAD_SIDE`` (or not images at all: the final reshapes)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*inferred.value_info, *inferred.output]
    }

    def small(name: str) -> bool:  # the converted graph runs NCHW after its input transpose
        shape = shapes.get(name)
        return shape is not None and (len(shape) != 4 or 0 < shape[2] * shape[3] <= HEAD_SIDE * HEAD_SIDE)

    return [n.name for n in model.graph.node if n.output and all(small(o) for o in n.output)]


def rescale_quiet_stem_channels(model, input_range: tuple[float, float] = (0.0, 1.0)) -> dict[int, float]:
    """Scale up, exactly, the stem channels whose ReLU6 output can never exceed a fraction of 6;
    returns ``{channel: factor}``.

    The stem (the first Conv, on the [0, 1] input) feeds a ReLU6 (``Clip`` 0-6) and a
    depthwise Conv. In MediaPipe's landmark model channel 10 of the stem has weights near 0.01
    and reaches at most 0.054 on real crops, and the depthwise filter after it has weights up
    to 1294 (a batch norm folded in): one int8 step of the ReLU6 output (6 / 255) is half the
    channel's whole range, times 1294. Since the input is bounded, so is each channel:
    ``z <= bias + sum(max(w, 0)) * input_max + sum(min(w, 0)) * input_min``. A channel whose bound ``b`` is below 4 is
    multiplied by ``6 / b`` (weights and bias) and the depthwise weights reading it divided by
    as much; the ReLU6's upper clip never acts on it before or after, so the network computes
    the same function, and int8 gets the whole 0-6 range for it.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    stem = next((n for n in graph.node if n.op_type == "Conv"), None)
    after = readers.get(stem.output[0], []) if stem is not None else []
    if len(after) != 1 or after[0].op_type != "Clip" or len(stem.input) < 3:
        return {}
    low, high = (float(numpy_helper.to_array(inits[n])) if n in inits else None for n in after[0].input[1:3])
    depthwise = readers.get(after[0].output[0], [])
    weights = numpy_helper.to_array(inits[stem.input[1]]).astype(np.float64)
    if low != 0.0 or high is None or not depthwise or not all(_is_depthwise(n, inits, len(weights)) for n in depthwise):
        return {}
    bias = numpy_helper.to_array(inits[stem.input[2]]).astype(np.float64)
    flat = weights.reshape(len(weights), -1)
    lo, hi = input_range
    bound = bias + np.clip(flat, 0.0, None).sum(axis=1) * hi + np.clip(flat, None, 0.0).sum(axis=1) * lo
    factor = np.where((bound > 0) & (bound < high / 1.5), high / np.maximum(bound, 1e-12), 1.0)
    if not (factor > 1).any():
        return {}
    _set(inits[stem.input[1]], weights * factor[:, None, None, None])
    _set(inits[stem.input[2]], bias * factor)
    for node in depthwise:
        reader = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        _set(inits[node.input[1]], reader / factor[:, None, None, None])
    return {int(c): float(factor[c]) for c in np.nonzero(factor > 1)[0]}


def _is_depthwise(node, inits, channels: int) -> bool:
    from onnx import numpy_helper

    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return (
        node.op_type == "Conv"
        and node.input[1] in inits
        and group == channels > 1
        and (numpy_helper.to_array(inits[node.input[1]]).shape[:2] == (channels, 1))
    )


def _set(tensor, values: np.ndarray) -> None:
    from onnx import numpy_helper

    tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float32), tensor.name))


def cut_landmarks(full: Path, out: Path) -> list[str]:
    """Write ``full`` cut to its landmark and presence outputs to ``out`` (its quiet stem channels
    rescaled, ``rescale_quiet_stem_channels``), its regression head named in the metadata as
    the nodes to keep float; returns the outputs."""
    import onnx
    import onnx.utils

    model = onnx.load(str(full))
    outputs = landmark_outputs(model.graph)
    cut = onnx.utils.Extractor(model).extract_model([i.name for i in model.graph.input], outputs)
    rescaled = rescale_quiet_stem_channels(cut)
    head = regression_head(cut)
    if not any(n.op_type == "Conv" and n.name in set(head) for n in cut.graph.node):
        raise EdgevisionError(f"{full.name}: no regression head at {HEAD_SIDE}x{HEAD_SIDE} or below was found.")
    reason = "BlazePose's landmark regression head: pixel coordinates from a sparse 2x2 map, kept float"
    onnx.helper.set_model_props(cut, {FLOAT_NODES_KEY: json.dumps({"reason": reason, "nodes": head})})
    scaled = ", ".join(f"{c} x{f:.0f}" for c, f in rescaled.items()) or "none"
    cut.producer_name = "edgevision"
    cut.doc_string = f"{full.name} cut to its outputs {', '.join(outputs)}; stem channels rescaled: {scaled}"
    onnx.checker.check_model(cut)
    write_atomic(out, cut.SerializeToString())
    return outputs


def synthetic_crops(count: int = 3) -> list[np.ndarray]:
    """Smooth, seeded (1, 256, 256, 3) inputs in [0, 1]: the pull-time parity inputs."""
    import cv2

    rng = np.random.default_rng(0)
    crops = [cv2.resize(rng.random((8, 8, 3)), (256, 256), interpolation=cv2.INTER_CUBIC) for _ in range(count)]
    return [np.clip(c, 0.0, 1.0).astype(np.float32)[None] for c in crops]


def check_landmarks(full: Path, cut: Path, inputs: list[np.ndarray]) -> float:
    """The largest difference between the cut file's outputs and the full graph's same outputs;
    raises above ``PARITY_TOLERANCE``."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (full, cut)]
    names = [o.name for o in sessions[1].get_outputs()]
    worst = 0.0
    for tensor in inputs:
        want, got = (s.run(names, {s.get_inputs()[0].name: tensor}) for s in sessions)
        report = check_parity(
            dict(zip(names, want)), dict(zip(names, got)), tolerance=PARITY_TOLERANCE, reference=full.name
        )
        worst = max(worst, *(o.max_abs_diff for o in report.outputs))
    return worst


def prepare(folder: Path) -> None:
    """Convert the landmark model to ``model.onnx`` (the detector stays .tflite: tf2onnx fails on it),
    cut it to the outputs the decoding reads (``LANDMARKS_FILE``), checked against the full graph."""
    tflite_to_onnx(folder / "model.tflite", folder / FULL_FILE, input_range=(0.0, 1.0))
    cut_landmarks(folder / FULL_FILE, folder / LANDMARKS_FILE)
    check_landmarks(folder / FULL_FILE, folder / LANDMARKS_FILE, synthetic_crops())


def predictor(spec: ModelSpec, folder: Path, backend: str | None = None, threads: int | None = None) -> Predictor:
    """BlazePose: detector on LiteRT; landmarks on ``backend`` (ONNX Runtime by default)."""
    runtime = backend or "onnxruntime"
    landmark_file = folder / spec.files["tflite" if runtime == "litert" else "onnx"]
    detector = create_backend("litert", folder / DETECTOR_FILE, threads=threads)
    return BlazePosePredictor(detector, create_backend(runtime, landmark_file, threads=threads))


def landmark_processor() -> LandmarkStageProcessor:
    """The landmark model as one stage (the person detector runs on LiteRT inside its pre-processing),
    for quantizing the landmark model and decoding files made from it."""
    detector = companion_file(DETECTOR_FILE) or pulled_dir("blazepose-lite") / DETECTOR_FILE  # a bundle's first
    return LandmarkStageProcessor(create_backend("litert", detector))


register_model(
    ModelSpec(
        name="blazepose-lite",
        task="pose",
        family="blazepose",
        input_size=(256, 256),
        license="Apache-2.0",
        summary=(
            "BlazePose lite, 33 keypoints, single person by default: MediaPipe's person detector "
            "(224x224, always on LiteRT: tf2onnx cannot convert it) then the landmark model on a "
            "rotated 256x256 crop (ONNX Runtime, OpenVINO or LiteRT)."
        ),
        preprocessing=(
            "detector: letterbox to 224x224 (black bars), RGB, x / 127.5 - 1; landmarks: rotated square "
            "crop (1.25x the body circle) warped to 256x256, RGB, x / 255; NHWC float32"
        ),
        artifacts=(_LANDMARKS, _DETECTOR),
        predictor=predictor,
        processor=landmark_processor,
        prepare=prepare,
        files={"onnx": LANDMARKS_FILE, "tflite": "model.tflite"},
        companions={DETECTOR_FILE: "litert"},
        needs_extra="convert",
        homepage="https://github.com/google-ai-edge/mediapipe",
    )
)
