"""The zoo entry of the blazepose family: pinned sources, licence, files and wiring."""

from __future__ import annotations

from pathlib import Path

from edgevision.backends import create_backend
from edgevision.conversion.tflite import tflite_to_onnx
from edgevision.models.base import Predictor
from edgevision.models.blazepose import DETECTOR_FILE, BlazePosePredictor, LandmarkStageProcessor
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


def prepare(folder: Path) -> None:
    """Convert the landmark model to ``model.onnx`` (the detector stays .tflite: tf2onnx fails on it)."""
    tflite_to_onnx(folder / "model.tflite", folder / "model.onnx", input_range=(0.0, 1.0))


def predictor(spec: ModelSpec, folder: Path, backend: str | None = None, threads: int | None = None) -> Predictor:
    """BlazePose: detector on LiteRT; landmarks on ``backend`` (ONNX Runtime by default)."""
    runtime = backend or "onnxruntime"
    landmark_file = folder / spec.files["tflite" if runtime == "litert" else "onnx"]
    detector = create_backend("litert", folder / DETECTOR_FILE, threads=threads)
    return BlazePosePredictor(detector, create_backend(runtime, landmark_file, threads=threads))


def landmark_processor() -> LandmarkStageProcessor:
    """The landmark model as one stage (the person detector runs on LiteRT inside its pre-processing),
    for quantizing the landmark model and decoding files made from it."""
    return LandmarkStageProcessor(create_backend("litert", pulled_dir("blazepose-lite") / DETECTOR_FILE))


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
        files={"onnx": "model.onnx", "tflite": "model.tflite"},
        needs_extra="convert",
        homepage="https://github.com/google-ai-edge/mediapipe",
    )
)
