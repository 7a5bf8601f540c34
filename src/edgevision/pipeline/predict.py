"""Run a predictor over images, folders, globs and videos, writing annotated output and JSON lines.

>>> import edgevision
>>> model = edgevision.load("nanodet-m")                                        # doctest: +SKIP
>>> predict(model.predictor, ["a.jpg", "frames/", "clip.mp4"], PredictOutputs(json_lines="-"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevision.annotate import draw, draw_banner
from edgevision.checks import annotated_output, json_lines_output, media_input, output_file
from edgevision.errors import EdgevisionError
from edgevision.files import PendingFile
from edgevision.media import Frames, MediaFile, count_frames, expand_sources, open_video, video_fps
from edgevision.models.base import Predictor
from edgevision.pipeline.sinks import ImageFolderSink, JsonLinesSink, VideoSink, close_all
from edgevision.types import Frame, Prediction, RawOutputs

logger = logging.getLogger(__name__)

RANDOM_WEIGHTS_BANNER = "RANDOM WEIGHTS - NOT REAL PREDICTIONS"
RAW_BANNER = "RAW OUTPUTS: NO DECODER - ADD A MODEL CARD"
MAX_JSON_VALUES = 1000  # a raw output up to this many values is written whole into its JSON record
FIRST_VALUES = 20  # of a larger one, the JSON record holds these first values (flattened)
RAW_OUT = (".npz",)

Sources = str | Path | Sequence[str | Path]


@dataclass
class PredictOutputs:
    """Where ``predict`` writes: annotated video or image folder, JSON lines, raw outputs (.npz)."""

    annotated: Path | None = None
    json_lines: str | None = None
    raw: Path | None = None


@dataclass(frozen=True)
class FrameSelection:
    """Which frames of each video ``predict`` runs on: every ``every``-th, at most ``max_frames``.

    Images are always all read; the default is every frame of every video.
    """

    every: int = 1
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise EdgevisionError(f"every must be 1 or more (1 = every frame), got {self.every}.")
        if self.max_frames is not None and self.max_frames < 1:
            raise EdgevisionError(f"max_frames must be 1 or more, got {self.max_frames}.")


def raw_output_record(summary: dict, tensor: np.ndarray, *, max_values: int = MAX_JSON_VALUES) -> dict:
    """``summary`` of one raw output with its values: all of them (nested as the shape) up to
    ``max_values``, else the first ``FIRST_VALUES`` (flattened) and a note saying so."""
    if tensor.size <= max_values:
        return {**summary, "values": tensor.tolist()}
    note = (
        f"{tensor.size} values, more than the {max_values} written to JSON: "
        f"the first {FIRST_VALUES} are here; --raw-out FILE.npz writes them all."
    )
    return {**summary, "first_values": tensor.reshape(-1)[:FIRST_VALUES].tolist(), "note": note}


def prediction_records(prediction: Prediction) -> list[dict]:
    """The JSON-ready objects of a prediction; for raw outputs, each tensor with its values."""
    if isinstance(prediction, RawOutputs):
        summaries = prediction.to_records()
        return [raw_output_record(s, t) for s, t in zip(summaries, prediction.tensors.values())]
    return prediction.to_records()


def frame_record(frame: Frame, prediction: Prediction) -> dict:
    """The JSON-lines record of one frame: source, index, task and objects (or raw outputs)."""
    key = "outputs" if prediction.task == "raw" else "objects"
    return {"source": frame.source, "frame": frame.index, "task": prediction.task, key: prediction_records(prediction)}


def random_weights_record(record: dict) -> dict:
    """Mark a record made by a network with random weights: its objects are not real."""
    return {**record, "random_weights": True}


@dataclass(frozen=True)
class PredictSummary:
    """What ``predict`` did: frames processed, undecodable video frames skipped, files read."""

    frames: int
    corrupt: int = 0
    files: int = 1


def is_single_video(files: list[MediaFile]) -> bool:
    """True when the only file is a video: its annotated output is then one video file."""
    return len(files) == 1 and files[0].video


def annotated_video_name(name: str) -> str:
    """The file an annotated video is written as inside the output folder (mp4v unless .avi)."""
    return name if Path(name).suffix.lower() in (".mp4", ".avi") else f"{name}.mp4"


def frame_key(file: MediaFile, frame: Frame) -> str:
    """The name of a frame's outputs in ``--raw-out``: the image's name, or ``<video>/<frame index>``."""
    return f"{file.name}/{frame.index}" if file.video else file.name


class RawArchive:
    """Every raw output tensor of every frame in one ``.npz`` (keys ``<frame key>/<output name>``).

    Written as frames come (nothing held in memory) to a hidden file that is moved into
    place on ``close``; ``numpy.load`` reads it back exactly.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._pending = PendingFile(self.path)
        self._zip = zipfile.ZipFile(self._pending.tmp, "w", allowZip64=True)

    @property
    def made(self) -> list[Path]:
        return self._pending.made

    def write(self, key: str, outputs: RawOutputs) -> None:
        for name, tensor in outputs.tensors.items():
            with self._zip.open(f"{key}/{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(tensor), allow_pickle=False)

    def close(self, *, keep: bool = True) -> None:
        self._zip.close()
        if keep:
            self._pending.commit()
        else:
            self._pending.discard()


class _Writers:
    """The outputs of one ``predict``: annotated images and videos, JSON lines, raw archive."""

    def __init__(self, files: list[MediaFile], outputs: PredictOutputs, predictor: Predictor, *, every: int) -> None:
        self.target = outputs.annotated
        self.every = every  # video frames kept: the annotated video plays at the source's pace
        self.single_video = is_single_video(files)
        self.random_weights = predictor.random_weights
        self.sinks: list = []
        self.images = self._add(ImageFolderSink(self.target)) if self.target and not self.single_video else None
        self.json = self._add(JsonLinesSink(outputs.json_lines)) if outputs.json_lines else None
        self.raw = self._add(RawArchive(outputs.raw)) if outputs.raw is not None else None
        self.video: VideoSink | None = None

    def _add(self, sink):
        self.sinks.append(sink)
        return sink

    def start(self, file: MediaFile) -> None:
        """Open the annotated video of ``file`` when it is a video."""
        self.video = None
        if file.video and self.target is not None:
            path = self.target if self.single_video else self.target / annotated_video_name(file.name)
            self.video = self._add(VideoSink(path, video_fps(str(file.path)) / self.every))

    def write(self, file: MediaFile, frame: Frame, prediction: Prediction) -> None:
        if self.video is not None:
            self.video.write(self.annotate(frame, prediction))
        elif self.images is not None:
            self.images.write(self.annotate(frame, prediction), file.name)
        if self.json is not None:
            record = {**frame_record(frame, prediction), "name": file.name}
            self.json.write(random_weights_record(record) if self.random_weights else record)
        if self.raw is not None:
            self.raw.write(frame_key(file, frame), prediction)

    def annotate(self, frame: Frame, prediction: Prediction) -> np.ndarray:
        image = draw(frame.image, prediction)
        if prediction.task == "raw":
            image = draw_banner(image, RAW_BANNER)
        return draw_banner(image, RANDOM_WEIGHTS_BANNER) if self.random_weights else image


@contextlib.contextmanager
def _open_writers(
    files: list[MediaFile], outputs: PredictOutputs, predictor: Predictor, *, every: int
) -> Iterator[_Writers]:
    """The requested outputs, finished when the block ends or is stopped by Ctrl-C or another
    stop signal (what was done is kept); on any error everything they made is removed."""
    writers = None
    keep = False
    try:
        writers = _Writers(files, outputs, predictor, every=every)
        yield writers
        keep = True
    except KeyboardInterrupt:
        keep = True
        raise
    finally:
        close_all(writers.sinks if writers else [], keep=keep)


def check_predict(sources: Sources, outputs: PredictOutputs) -> list[MediaFile]:
    """The files to read, each once; raise, before any work, when a source cannot be read or an
    output cannot be written."""
    for source in [sources] if isinstance(sources, (str, Path)) else sources:
        media_input(source)
    files = expand_sources(sources)
    for file in files:
        if file.video:
            open_video(str(file.path)).release()  # one OpenCV cannot decode is refused before the model loads
    if outputs.annotated is not None:
        annotated_output(outputs.annotated, video=is_single_video(files))
    json_lines_output(outputs.json_lines)
    if outputs.raw is not None:
        output_file(outputs.raw, suffixes=RAW_OUT, what="the raw outputs file")
    return files


def check_raw_out(predictor: Predictor, outputs: PredictOutputs) -> None:
    """Raise when raw outputs are asked of a model that decodes its outputs."""
    if outputs.raw is not None and predictor.task != "raw":
        raise EdgevisionError(
            f"the raw outputs file {outputs.raw} is for models with no decoder, but this model gives "
            f"{predictor.task} results; leave out --raw-out and use --json for them."
        )


def frames_to_predict(sources: Sources, selection: FrameSelection = FrameSelection()) -> int | None:
    """How many frames ``predict`` will run on, when known in advance (for a progress bar)."""
    counts = [
        count_frames(str(f.path), every=selection.every, max_frames=selection.max_frames)
        for f in expand_sources(sources)
    ]
    return None if None in counts else sum(counts)


def predict(
    predictor: Predictor,
    sources: Sources,
    outputs: PredictOutputs,
    *,
    frames: FrameSelection = FrameSelection(),
    on_frame: Callable[[Frame, Prediction], None] | None = None,
) -> PredictSummary:
    """Run ``predictor`` on every image and the chosen video frames of ``sources``.

    ``sources``: image files, folders or globs of images, and video files; a file named
    twice is read once. Annotated output is one video file when the only source is a
    video, else a folder: each image under its file name (with as many parent folders as
    it takes to tell two apart: ``day/a.jpg``, ``night/a.jpg``), each video as its own
    annotated video. Outputs are moved into place when
    everything was processed, or when Ctrl-C (or SIGTERM, SIGHUP inside
    ``edgevision.signals.stop_on_signals``) stops it: then they hold the frames done so
    far and the interrupt is raised again. On an error nothing half-written is left.
    Video frames that cannot be decoded are skipped and counted.
    """
    files = check_predict(sources, outputs)
    check_raw_out(predictor, outputs)
    count = corrupt = 0
    with _open_writers(files, outputs, predictor, every=frames.every) as writers:
        for file in files:
            reader = Frames(str(file.path), every=frames.every, max_frames=frames.max_frames)
            writers.start(file)
            for frame in reader:
                prediction = predictor(frame.image)
                writers.write(file, frame, prediction)
                if on_frame is not None:
                    on_frame(frame, prediction)
                count += 1
            corrupt += reader.corrupt
    return PredictSummary(count, corrupt, len(files))


__all__ = [
    "FrameSelection",
    "PredictOutputs",
    "PredictSummary",
    "RawArchive",
    "check_predict",
    "frame_record",
    "frames_to_predict",
    "predict",
]
