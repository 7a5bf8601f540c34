"""YOLOX (Megvii, 2021): anchor-free detector, built in PyTorch with the official layout.

No registry package ships YOLOX weights, so the zoo entries build the network (random
weights, for size and speed studies) and load the official checkpoints users download
themselves with ``load_yolox_checkpoint``.

>>> from edgevision.zoo import get_spec
>>> get_spec("yolox-nano").input_size
(416, 416)
>>> proc = YoloxProcessor()
>>> proc.task, proc.score_threshold, proc.iou_threshold
('detection', 0.3, 0.45)

The exported graph has two outputs: ``boxes`` ``[1, N, 4]`` xyxy in input pixels (the
grid + stride decode is in the graph: it is linear, exports to a few ops and spares every
runtime the same numpy code) and ``scores`` ``[1, N, 80]`` = objectness x class
probability. Boxes and scores are separate because a single concatenated head collapses
under full-int8 quantization; objectness and class are multiplied in the graph so the
score output is one probability in [0, 1] that quantizes on one well-used scale, and
the decoder only thresholds, as the official demo does with the product.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.models.coco import COCO80_CLASSES
from edgevision.models.ops import nms
from edgevision.models.transforms import ImageTransform, letterbox, to_tensor
from edgevision.types import Detections

logger = logging.getLogger(__name__)

OUTPUT_NAMES = ("boxes", "scores")
RELEASE = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0"
HOMEPAGE = "https://github.com/Megvii-BaseDetection/YOLOX"
PAD_VALUE = 114


@dataclass(frozen=True)
class YoloxVariant:
    """Depth and width multipliers of one official experiment (``exps/default/*.py``)."""

    name: str
    depth: float
    width: float
    input_size: int
    depthwise: bool = False
    sha256: str = ""  # of the official release file, when a public record of it was found

    @property
    def filename(self) -> str:
        return self.name.replace("-", "_") + ".pth"


VARIANTS: dict[str, YoloxVariant] = {
    v.name: v
    for v in (
        # sha256 of yolox_nano.pth as recorded by two independent public download scripts.
        YoloxVariant(
            "yolox-nano",
            0.33,
            0.25,
            416,
            depthwise=True,
            sha256="cd28f55fbbc1829f99d9ac9b38a16d259a22889739c8728ea877610201feff7b",
        ),
        YoloxVariant("yolox-tiny", 0.33, 0.375, 416),
        YoloxVariant("yolox-s", 0.33, 0.50, 640),
        YoloxVariant("yolox-m", 0.67, 0.75, 640),
        YoloxVariant("yolox-l", 1.0, 1.0, 640),
        YoloxVariant("yolox-x", 1.33, 1.25, 640),
    )
}


def build_yolox(variant: str = "yolox-nano", *, num_classes: int = 80):
    """The YOLOX network of ``variant`` in eval mode with random weights (needs torch).

    >>> model = build_yolox("yolox-nano")                  # doctest: +SKIP
    >>> load_yolox_checkpoint(model, "yolox_nano.pth")     # doctest: +SKIP
    """
    spec = _variant(variant)
    from edgevision.models.nets.yolox import YOLOX

    return YOLOX(spec.depth, spec.width, depthwise=spec.depthwise, num_classes=num_classes).eval()


def _variant(name: str) -> YoloxVariant:
    if name not in VARIANTS:
        raise EdgevisionError(f"unknown YOLOX variant '{name}'; choose one of {', '.join(VARIANTS)}.")
    return VARIANTS[name]


def load_yolox_checkpoint(module, path: str | Path) -> None:
    """Load an official YOLOX checkpoint (a dict whose ``"model"`` entry is the state dict).

    A bare state dict is accepted too. Keys and shapes are checked strictly: a missing,
    unexpected or misshaped key raises ``EdgevisionError`` naming it.
    """
    from edgevision.models.nets.checkpoint import (
        is_state_dict,
        load_strict,
        read_checkpoint,
    )

    path = Path(path)
    content = read_checkpoint(path)
    state = content.get("model") if isinstance(content, dict) and "model" in content else content
    if not is_state_dict(state):
        raise EdgevisionError(
            f"{path} is not a YOLOX checkpoint: expected a dict with a 'model' state dict "
            f"(as in the official release files), found {_describe(content)}."
        )
    hint = "Is it a checkpoint of another YOLOX variant (nano, tiny, s, m, l, x) or of another model?"
    load_strict(module, state, source=path.name, hint=hint)
    logger.info("loaded %d tensors from %s", len(state), path)


def _describe(content: object) -> str:
    if isinstance(content, dict):
        return f"a dict with keys {sorted(map(str, content))[:5]}"
    return f"a {type(content).__name__}"


@dataclass
class YoloxProcessor:
    """Pre-processing and decoding of the two-output YOLOX export (``boxes``, ``scores``).

    Pre-processing as the official ``ValTransform`` (legacy=False): letterbox to the
    input size in the top-left corner, pad 114, BGR, float32 0..255, NCHW, no normalisation.
    Decoding keeps each cell's best class when its score passes ``score_threshold``, then
    class-aware NMS.
    """

    input_size: tuple[int, int] = (416, 416)  # (width, height)
    score_threshold: float = 0.3
    iou_threshold: float = 0.45
    max_detections: int = 300
    class_names: tuple[str, ...] = COCO80_CLASSES
    task = "detection"

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        """Top-left letterbox with pad 114, BGR float32 NCHW."""
        canvas, transform = letterbox(image, self.input_size, pad_value=PAD_VALUE, center=False)
        return to_tensor(canvas), transform

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> Detections:
        """Detections in source pixels from ``boxes`` ``[1, N, 4]`` and ``scores`` ``[1, N, C]``."""
        boxes, scores = self.split_outputs(outputs)
        class_ids = scores.argmax(axis=1)
        best = scores[np.arange(len(scores)), class_ids]
        keep = np.nonzero(best >= self.score_threshold)[0]
        boxes, best, class_ids = boxes[keep], best[keep], class_ids[keep]
        order = nms(boxes, best, class_ids, iou_threshold=self.iou_threshold, max_detections=self.max_detections)
        return Detections(transform.boxes_to_source(boxes[order]), best[order], class_ids[order], self.class_names)

    def split_outputs(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (N, 4), scores (N, C))`` by name, else by shape (runtimes may rename outputs)."""
        if all(name in outputs for name in OUTPUT_NAMES):
            boxes, scores = (outputs[name] for name in OUTPUT_NAMES)
        else:
            by_width = {t.shape[-1]: t for t in outputs.values() if t.ndim >= 2}
            if 4 not in by_width or len(self.class_names) not in by_width:
                raise EdgevisionError(
                    f"cannot find YOLOX boxes [1, N, 4] and scores [1, N, {len(self.class_names)}] among outputs "
                    f"{ {k: v.shape for k, v in outputs.items()} }; was the model exported by edgevision?"
                )
            boxes, scores = by_width[4], by_width[len(self.class_names)]
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        return boxes, np.asarray(scores, dtype=np.float32).reshape(len(boxes), -1)
