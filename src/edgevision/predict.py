"""Load a model by zoo name or file, and run it over images or a video.

>>> from edgevision.predict import load_predictor
>>> predictor = load_predictor("nanodet-m", backend="onnxruntime", threads=2)  # doctest: +SKIP
>>> detections = predictor(image)                                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgevision.annotate import draw, draw_banner
from edgevision.backends import create_backend
from edgevision.errors import EdgevisionError
from edgevision.media import is_video, iter_frames, video_fps
from edgevision.models.base import Predictor, RawPredictor, SingleStagePredictor
from edgevision.pipeline.sinks import ImageFolderSink, JsonLinesSink, VideoSink
from edgevision.types import Frame, Prediction
from edgevision.variants import read_meta
from edgevision.zoo import MANIFEST, ModelSpec, get_spec, list_models, pull
from edgevision.zoo.pytorch import export_torch_model, is_pytorch_family

logger = logging.getLogger(__name__)

MODEL_SUFFIXES = (".onnx", ".tflite", ".xml", ".pt2")
RANDOM_WEIGHTS_BANNER = "RANDOM WEIGHTS - NOT REAL PREDICTIONS"


def resolve_model(model: str) -> ModelSpec | Path:
    """The zoo entry or model file that ``model`` names; a clear error when it names neither."""
    if model in list_models():
        return get_spec(model)
    path = Path(model)
    if path.is_file():
        return path
    if path.is_dir():
        raise EdgevisionError(f"{model} is a folder; give a model file or a zoo name.")
    if path.suffix.lower() in MODEL_SUFFIXES or "/" in model:
        raise EdgevisionError(f"model file {model} does not exist.")
    return get_spec(model)  # raises, naming the closest zoo models


def load_predictor(
    model: str,
    *,
    backend: str | None = None,
    threads: int | None = None,
    weights: Path | None = None,
    random_weights: bool = False,
) -> Predictor:
    """A predictor for zoo model ``model`` or a model file.

    A file that edgevision produced (it has a metadata file beside it) is decoded as its
    source zoo model; any other file reports raw output tensors. PyTorch zoo families
    (YOLOX, OpenPose) need ``weights`` or ``random_weights``.
    """
    target = resolve_model(model)
    if isinstance(target, Path):
        return _file_predictor(target, backend=backend, threads=threads)
    if is_pytorch_family(target):
        return _pytorch_predictor(target, backend=backend, threads=threads, weights=weights, random_weights=random_weights)
    return target.predictor(target, pull(target.name), backend, threads)


def source_model_of(path: Path) -> str | None:
    """The zoo model a file decodes as: from its metadata file, or because it is a pulled zoo file."""
    meta = read_meta(path)
    if meta is not None:
        return meta.source_model if meta.source_model in list_models() else None
    manifest = path.parent / MANIFEST
    if manifest.exists():
        name = json.loads(manifest.read_text()).get("name")
        return name if name in list_models() and path.name in get_spec(name).files.values() else None
    return None


def _file_predictor(path: Path, *, backend: str | None, threads: int | None) -> Predictor:
    meta = read_meta(path)
    name = source_model_of(path)
    source = get_spec(name) if name else None
    runtime = backend or (meta.runtime if meta else None)
    if source is None or source.processor is None:
        return RawPredictor(create_backend(runtime, path, threads=threads))
    predictor = SingleStagePredictor(create_backend(runtime, path, threads=threads), source.processor())
    predictor.random_weights = bool(meta and meta.random_weights)
    return predictor


def _pytorch_predictor(
    spec: ModelSpec, *, backend: str | None, threads: int | None, weights: Path | None, random_weights: bool
) -> Predictor:
    runtime = backend or "onnxruntime"
    if runtime == "litert":
        raise EdgevisionError(
            f"{spec.name} has no .tflite file yet; make one with: edgevision convert {spec.name} --to tflite."
        )
    fmt = "pt2" if runtime == "torch" else "onnx"
    path = export_torch_model(spec, weights=weights, random_weights=random_weights, fmt=fmt)
    predictor = SingleStagePredictor(create_backend(runtime, path, threads=threads), spec.processor())
    predictor.random_weights = weights is None
    return predictor


@dataclass
class PredictOutputs:
    """Where ``predict`` writes: annotated video or image folder, and JSON lines."""

    annotated: Path | None = None
    json_lines: str | None = None


def frame_record(frame: Frame, prediction: Prediction) -> dict:
    """The JSON-lines record of one frame: source, index, task and objects."""
    key = "outputs" if prediction.task == "raw" else "objects"
    return {"source": frame.source, "frame": frame.index, "task": prediction.task, key: prediction.to_records()}


def random_weights_record(record: dict) -> dict:
    """Mark a record made by a network with random weights: its objects are not real."""
    return {**record, "random_weights": True}


def _open_sinks(source: str, outputs: PredictOutputs) -> tuple:
    annotated = None
    if outputs.annotated is not None:
        annotated = VideoSink(outputs.annotated, video_fps(source)) if is_video(source) else ImageFolderSink(outputs.annotated)
    json_sink = JsonLinesSink(outputs.json_lines) if outputs.json_lines else None
    return annotated, json_sink


def predict(
    predictor: Predictor,
    source: str,
    outputs: PredictOutputs,
    *,
    on_frame: Callable[[Frame, Prediction], None] | None = None,
) -> int:
    """Run ``predictor`` on every frame of ``source``, writing the requested outputs.

    Returns the number of frames processed. Outputs are moved into place only when the
    whole source was processed; on error nothing half-written is left.
    """
    annotated, json_sink = _open_sinks(source, outputs)
    count, ok = 0, False
    try:
        for frame, prediction in iter_predictions(predictor, source):
            if annotated is not None:
                image = draw(frame.image, prediction)
                if predictor.random_weights:
                    image = draw_banner(image, RANDOM_WEIGHTS_BANNER)
                annotated.write(image) if isinstance(annotated, VideoSink) else annotated.write(image, frame.source)
            if json_sink is not None:
                record = frame_record(frame, prediction)
                json_sink.write(random_weights_record(record) if predictor.random_weights else record)
            if on_frame is not None:
                on_frame(frame, prediction)
            count += 1
        ok = True
    finally:
        for sink in (annotated, json_sink):
            if sink is not None:
                sink.close(keep=ok)
    return count


def iter_predictions(predictor: Predictor, source: str) -> Iterator[tuple[Frame, Prediction]]:
    """(frame, prediction) for every frame of ``source``."""
    for frame in iter_frames(source):
        yield frame, predictor(frame.image)
