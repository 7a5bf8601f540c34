"""Run a predictor over images or a video, writing annotated output and JSON lines.

>>> import edgevision
>>> model = edgevision.load("nanodet-m")                                        # doctest: +SKIP
>>> predict(model.predictor, "vtest.avi", PredictOutputs(json_lines="-"))        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgevision.annotate import draw, draw_banner
from edgevision.checks import annotated_output, json_lines_output, media_input
from edgevision.media import Frames, is_video, video_fps
from edgevision.models.base import Predictor
from edgevision.pipeline.sinks import ImageFolderSink, JsonLinesSink, VideoSink, close_all
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


@dataclass(frozen=True)
class PredictSummary:
    """What ``predict`` did: frames processed, and undecodable video frames skipped."""

    frames: int
    corrupt: int = 0


@contextlib.contextmanager
def _open_sinks(source: str, outputs: PredictOutputs) -> Iterator[tuple]:
    """The requested sinks, as (annotated, json lines).

    Finished when the block ends, or is stopped by Ctrl-C or another stop signal (what was
    done is kept); on any error everything they made is removed.
    """
    opened: list = []
    keep = False
    try:
        if outputs.annotated is not None:
            is_clip = is_video(source)
            opened.append(
                VideoSink(outputs.annotated, video_fps(source)) if is_clip else ImageFolderSink(outputs.annotated)
            )
        else:
            opened.append(None)
        opened.append(JsonLinesSink(outputs.json_lines) if outputs.json_lines else None)
        yield tuple(opened)
        keep = True
    except KeyboardInterrupt:
        keep = True
        raise
    finally:
        close_all(opened, keep=keep)


def check_predict(source: str, outputs: PredictOutputs) -> None:
    """Raise, before any work, when ``source`` cannot be read or an output cannot be written."""
    media_input(source)
    if outputs.annotated is not None:
        annotated_output(outputs.annotated, video=is_video(source))
    json_lines_output(outputs.json_lines)


def predict(
    predictor: Predictor,
    source: str,
    outputs: PredictOutputs,
    *,
    on_frame: Callable[[Frame, Prediction], None] | None = None,
) -> PredictSummary:
    """Run ``predictor`` on every frame of ``source``, writing the requested outputs.

    Outputs are moved into place when the whole source was processed, or when Ctrl-C (or
    SIGTERM, SIGHUP inside ``edgevision.signals.stop_on_signals``) stops it: then they hold
    the frames done so far and the interrupt is raised again. On an error nothing
    half-written is left. Video frames that cannot be decoded are skipped and counted.
    """
    check_predict(source, outputs)
    frames = Frames(source)
    count = 0
    with _open_sinks(source, outputs) as (annotated, json_sink):
        for frame in frames:
            prediction = predictor(frame.image)
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
    return PredictSummary(count, frames.corrupt)
