"""Run a predictor over images or a video, writing annotated output and JSON lines.

>>> import edgevision
>>> model = edgevision.load("nanodet-m")                                        # doctest: +SKIP
>>> predict(model.predictor, "vtest.avi", PredictOutputs(json_lines="-"))        # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgevision.annotate import draw, draw_banner
from edgevision.checks import annotated_output, json_lines_output, media_input
from edgevision.media import is_video, iter_frames, video_fps
from edgevision.models.base import Predictor
from edgevision.pipeline.sinks import ImageFolderSink, JsonLinesSink, VideoSink
from edgevision.types import Frame, Prediction

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS_BANNER = "RANDOM WEIGHTS - NOT REAL PREDICTIONS"


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


def check_predict(source: str, outputs: PredictOutputs) -> None:
    """Raise, before any work, when ``source`` cannot be read or an output cannot be written."""
    media_input(source)
    if outputs.annotated is not None:
        annotated_output(outputs.annotated, video=is_video(source))
    json_lines_output(outputs.json_lines)


def _open_sinks(source: str, outputs: PredictOutputs) -> tuple:
    annotated = None
    if outputs.annotated is not None:
        annotated = (
            VideoSink(outputs.annotated, video_fps(source)) if is_video(source) else ImageFolderSink(outputs.annotated)
        )
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
    check_predict(source, outputs)
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
