"""The currency every stage passes: frames, detections, poses, raw tensors and tensor specs.

Boxes are ``xyxy`` in pixels of the source image; keypoints are ``(x, y, score)`` in
pixels of the source image. Arrays are parallel: row ``i`` of every array is object ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output.

    Dynamic dimensions are ``None``. ``dtype`` is a numpy dtype name such as ``"float32"``.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def accepts(self, array: np.ndarray) -> str | None:
        """Return why ``array`` does not fit this spec, or None when it does."""
        if array.dtype != np.dtype(self.dtype):
            return f"input '{self.name}' must be {self.dtype}, got {array.dtype}"
        if len(array.shape) != len(self.shape) or any(
            want is not None and want != got for want, got in zip(self.shape, array.shape)
        ):
            return f"input '{self.name}' must have shape {_shape_text(self.shape)}, got {_shape_text(array.shape)}"
        return None

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def _shape_text(shape: tuple) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _empty(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


@dataclass
class Detections:
    """Objects found in one image.

    >>> d = Detections.empty()
    >>> len(d)
    0
    """

    xyxy: np.ndarray  # (N, 4) float32, source-image pixels
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64
    class_names: tuple[str, ...] = ()  # name of every class id the model knows
    tracker_ids: np.ndarray | None = None  # (N,) int64 when tracked

    task = "detection"

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        if not len(self.xyxy) == len(self.scores) == len(self.class_ids):
            raise ValueError("xyxy, scores and class_ids must have the same length")

    @classmethod
    def empty(cls, class_names: tuple[str, ...] = ()) -> Detections:
        return cls(_empty((0, 4)), _empty((0,)), _empty((0,), np.int64), class_names)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index) -> Detections:
        """Select objects with a boolean mask, index array or slice."""
        tracker_ids = None if self.tracker_ids is None else self.tracker_ids[index]
        return Detections(self.xyxy[index], self.scores[index], self.class_ids[index], self.class_names, tracker_ids)

    def __repr__(self) -> str:
        """``Detections(3: person 0.80 [412,211,448,310], ...)``: count, then each object."""
        shown = [
            f"{self.label(i)} {self.scores[i]:.2f} [{','.join(str(round(float(v))) for v in self.xyxy[i])}]"
            for i in range(min(len(self), 10))
        ]
        more = f", ... {len(self) - 10} more" if len(self) > 10 else ""
        return f"Detections({len(self)}" + (": " + ", ".join(shown) if shown else "") + more + ")"

    def label(self, i: int) -> str:
        cid = int(self.class_ids[i])
        return self.class_names[cid] if 0 <= cid < len(self.class_names) else str(cid)

    def to_records(self) -> list[dict]:
        """One JSON-ready dict per object: label, class id, score, box."""
        return [
            {
                "label": self.label(i),
                "class_id": int(self.class_ids[i]),
                "score": round(float(self.scores[i]), 4),
                "box": [round(float(v), 1) for v in self.xyxy[i]],
            }
            for i in range(len(self))
        ]


@dataclass
class Poses:
    """People (or other skeletons) found in one image.

    ``keypoints`` is ``(N, K, 3)``: x, y in source pixels and a score in [0, 1].
    ``edges`` are index pairs into ``keypoint_names`` that form the skeleton.
    """

    keypoints: np.ndarray  # (N, K, 3) float32
    scores: np.ndarray  # (N,) float32, one per person
    keypoint_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    xyxy: np.ndarray | None = None  # (N, 4) optional person boxes
    tracker_ids: np.ndarray | None = None

    task = "pose"

    def __post_init__(self) -> None:
        k = len(self.keypoint_names)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32).reshape(-1, k, 3)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.xyxy is not None:
            self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        if len(self.keypoints) != len(self.scores):
            raise ValueError("keypoints and scores must have the same length")

    @classmethod
    def empty(cls, keypoint_names: tuple[str, ...], edges: tuple[tuple[int, int], ...]) -> Poses:
        return cls(_empty((0, len(keypoint_names), 3)), _empty((0,)), keypoint_names, edges, _empty((0, 4)))

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index) -> Poses:
        xyxy = None if self.xyxy is None else self.xyxy[index]
        tracker_ids = None if self.tracker_ids is None else self.tracker_ids[index]
        return Poses(self.keypoints[index], self.scores[index], self.keypoint_names, self.edges, xyxy, tracker_ids)

    def __repr__(self) -> str:
        """``Poses(2 of 17 keypoints: 0.91, 0.55)``: count, keypoints per person, each person's score."""
        scores = ", ".join(f"{v:.2f}" for v in self.scores[:10]) + (", ..." if len(self) > 10 else "")
        return f"Poses({len(self)} of {len(self.keypoint_names)} keypoints" + (f": {scores}" if len(self) else "") + ")"

    def boxes(self) -> np.ndarray:
        """Person boxes: the given ones, or the extent of each person's visible keypoints."""
        if self.xyxy is not None:
            return self.xyxy
        out = np.zeros((len(self), 4), dtype=np.float32)
        for i, kps in enumerate(self.keypoints):
            seen = kps[kps[:, 2] > 0]
            if len(seen):
                out[i] = [seen[:, 0].min(), seen[:, 1].min(), seen[:, 0].max(), seen[:, 1].max()]
        return out

    def to_records(self) -> list[dict]:
        """One JSON-ready dict per person: label, score, box, named keypoints."""
        boxes = self.boxes()
        return [
            {
                "label": "person",
                "score": round(float(self.scores[i]), 4),
                "box": [round(float(v), 1) for v in boxes[i]],
                "keypoints": {
                    name: [round(float(x), 1), round(float(y), 1), round(float(s), 3)]
                    for name, (x, y, s) in zip(self.keypoint_names, self.keypoints[i])
                },
            }
            for i in range(len(self))
        ]


@dataclass
class RawOutputs:
    """Output tensors of a model with no known decoder."""

    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    task = "raw"

    def __len__(self) -> int:
        return len(self.tensors)

    def to_records(self) -> list[dict]:
        """Shape, dtype and summary statistics of each output (not the values)."""
        return [
            {
                "output": name,
                "shape": list(t.shape),
                "dtype": str(t.dtype),
                "min": float(t.min()) if t.size else None,
                "max": float(t.max()) if t.size else None,
                "mean": float(t.mean()) if t.size else None,
            }
            for name, t in self.tensors.items()
        ]


@dataclass
class Frame:
    """One image to run on: its pixels (BGR uint8), where it came from, and its index.

    ``time`` is the frame's time in the source in seconds; ``captured`` the
    ``time.perf_counter()`` moment it was read (for end-to-end latency).
    """

    image: np.ndarray
    source: str
    index: int = 0
    time: float = 0.0
    captured: float = 0.0


Prediction = Detections | Poses | RawOutputs
