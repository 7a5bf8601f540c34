"""The process that runs one model variant and times it when told to.

``python -m edgevision.benchmark.worker`` reads one JSON command per line on stdin and answers
one JSON line on its own copy of stdout (anything runtimes print goes to stderr). Running
only one variant per process keeps other runtimes' idle thread pools off the cores, and a
persistent worker can be told "run N iterations now" round after round, so variants are
interleaved without paying their load time again.

Commands (``{"cmd": name, ...}``):

* ``load``: path, runtime, threads, source_model, image (a ``.npy`` BGR image), precision
  (the backend's option, or None) -> load and first-inference times, the worker's process
  id and the inference precision the runtime reports
* ``run`` / ``bare`` / ``pipeline``: at least ``n`` iterations and ``seconds`` -> per
  iteration milliseconds of ``backend.run``, of a bare ``session.run`` (ONNX Runtime only)
  and of pre-processing + run + decoding
* ``memory`` -> peak resident memory so far
* ``predict``: images (a pickle of BGR images), out (pickle path) -> predictions written
* ``quit``
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable

import numpy as np

from edgevision.benchmark.memory import peak_rss_mb


class VariantRunner:
    """One loaded variant: its backend, its family's processor, and the image it times on."""

    def __init__(self) -> None:
        self.backend = None
        self.processor = None
        self.predictor = None
        self.feeds: dict[str, np.ndarray] = {}
        self.image: np.ndarray | None = None

    def load(
        self,
        *,
        path: str,
        runtime: str,
        threads: int,
        source_model: str | None,
        image: str,
        card: dict | None = None,
        precision: str | None = None,
    ) -> dict:
        """Load the file, prepare the feeds from the image, run once."""
        from edgevision.backends import create_backend

        start = time.perf_counter()
        self.backend = create_backend(runtime, path, threads=threads, precision=precision)
        load_s = time.perf_counter() - start
        self.image = np.load(image)
        self._prepare(source_model, card)
        start = time.perf_counter()
        self.backend.run(self.feeds)
        first_ms = (time.perf_counter() - start) * 1e3
        return {
            "load_s": load_s,
            "first_ms": first_ms,
            "pid": os.getpid(),
            "inference_precision": self.backend.inference_precision,
            "settings": self.backend.settings,
        }

    def _prepare(self, source_model: str | None, card: dict | None) -> None:
        from edgevision.models.card import CardProcessor, card_from_dict, resolve_card
        from edgevision.zoo.assemble import (
            RawPredictor,
            SingleStagePredictor,
            processor_for,
        )

        self.processor = processor_for(source_model)
        if self.processor is None and card:
            self.processor = CardProcessor(resolve_card(card_from_dict(card, "the bench task"), self.backend.inputs[0]))
        if self.processor is not None and self.processor.task == "raw":
            self.processor = None
        self.predictor = (
            RawPredictor(self.backend) if self.processor is None else SingleStagePredictor(self.backend, self.processor)
        )
        self.feeds = self.predictor.feeds(self.image)[0]

    def timed(self, step: Callable[[], object], n: int, seconds: float) -> dict:
        """Milliseconds of each of at least ``n`` calls of ``step`` lasting at least ``seconds``."""
        times: list[float] = []
        end = time.perf_counter() + seconds
        while len(times) < n or time.perf_counter() < end:
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1e3)
        return {"ms": times}

    def run(self, n: int, seconds: float) -> dict:
        return self.timed(lambda: self.backend.run(self.feeds), n, seconds)

    def bare(self, n: int, seconds: float) -> dict:
        """A bare ``session.run`` loop on the same session (ONNX Runtime only)."""
        session = getattr(self.backend, "session", None)
        if session is None:
            return {"error": f"bare loop needs an ONNX Runtime session, not {self.backend.name}"}
        feeds = dict(self.feeds)
        return self.timed(lambda: session.run(None, feeds), n, seconds)

    def pipeline(self, n: int, seconds: float) -> dict:
        return self.timed(lambda: self.predictor(self.image), n, seconds)

    def predict(self, images: str, out: str) -> dict:
        """Predictions on every image, raw outputs, and the showcase (first) image's renderings."""
        from edgevision.compare import evaluation_processor

        with open(images, "rb") as f:
            frames = pickle.load(f)
        scored = evaluation_processor(self.processor)
        result = {"task": getattr(self.processor, "task", "raw"), "predictions": [], "outputs": [], "showcase": None}
        for image in frames:
            outputs, transform = self._infer(image)
            result["outputs"].append(outputs)
            if scored is not None:
                result["predictions"].append(scored.decode(outputs, transform))
        if frames:
            result["showcase"] = self._showcase(frames[0])
        with open(out, "wb") as f:
            pickle.dump(result, f)
        return {"images": len(frames)}

    def _infer(self, image: np.ndarray):
        feeds, transform = self.predictor.feeds(image)
        return self.backend.run(feeds), transform

    def _showcase(self, image: np.ndarray) -> dict:
        """The deployment-threshold prediction and, for heatmap models, a heatmap overlay."""
        outputs, transform = self._infer(image)
        shown = {"prediction": self.processor.decode(outputs, transform) if self.processor else None, "heatmap": None}
        if hasattr(self.processor, "input_scale_maps"):
            shown["heatmap"] = heatmap_overlay(image, self.processor.input_scale_maps(outputs, transform)[0])
        return shown


def heatmap_overlay(image: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """The image with the per-pixel maximum over keypoint heatmaps (background channel dropped) in colour.

    The map is scaled to its own maximum, so weak maps (random weights, int8 noise) still show their shape.
    """
    import cv2

    strongest = np.clip(heatmaps[..., :-1].max(axis=-1), 0, None)
    strongest = strongest / max(float(strongest.max()), 1e-6)
    h, w = image.shape[:2]
    area = cv2.resize(strongest, (w, h))  # the maps cover exactly the image area
    colour = cv2.applyColorMap((area * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(image, 0.4, colour, 0.6, 0)


def _handle(runner: VariantRunner, command: dict) -> dict:
    name = command.pop("cmd")
    if name == "load":
        return runner.load(**command)
    if name in ("run", "bare", "pipeline"):
        return getattr(runner, name)(int(command["n"]), float(command["seconds"]))
    if name == "memory":
        return {"peak_rss_mb": peak_rss_mb()}
    if name == "predict":
        return runner.predict(command["images"], command["out"])
    return {"error": f"unknown command {name}"}


def main() -> None:
    """Serve commands until ``quit`` or end of input; an exception becomes ``{"error": ...}``."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # runtimes' prints must not corrupt replies
    runner = VariantRunner()
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("cmd") == "quit":
            break
        try:
            reply = _handle(runner, command)
        except Exception as exc:  # reported to the parent, which records the variant as failed
            traceback.print_exc()
            reply = {"error": str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
