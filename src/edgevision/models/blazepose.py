"""BlazePose: a person detector finds an aligned region, a landmark model reads 33 keypoints.

>>> from edgevision.zoo import get_spec
>>> get_spec("blazepose-lite").input_size
(256, 256)

The two stages follow MediaPipe's pose graphs (the option values below are the ones in the
graph configs shipped inside npm ``@mediapipe/pose``): the detector's keypoint 0 (hip centre)
and keypoint 1 (a point on the circle around the whole body) give a square region rotated so
the body stands upright, enlarged 1.25x; that region is warped to 256x256 for the landmark
model, and its landmarks are mapped back through the inverse warp.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from edgevision.backends import Backend
from edgevision.errors import EdgevisionError
from edgevision.models.base import Predictor
from edgevision.models.ops import nms, sigmoid
from edgevision.models.ssd import (
    BoxCoding,
    SsdAnchorOptions,
    decode_boxes,
    decode_keypoints,
    ssd_anchors,
)
from edgevision.models.transforms import ImageTransform, letterbox
from edgevision.types import Poses

logger = logging.getLogger(__name__)

BLAZEPOSE_KEYPOINTS: tuple[str, ...] = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)

# MediaPipe's POSE_CONNECTIONS.
BLAZEPOSE_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 7),
    (0, 4),
    (4, 5),
    (5, 6),
    (6, 8),
    (9, 10),  # face
    (11, 12),
    (11, 13),
    (13, 15),
    (15, 17),
    (15, 19),
    (15, 21),
    (17, 19),  # left arm
    (12, 14),
    (14, 16),
    (16, 18),
    (16, 20),
    (16, 22),
    (18, 20),  # right arm
    (11, 23),
    (12, 24),
    (23, 24),  # torso
    (23, 25),
    (24, 26),
    (25, 27),
    (26, 28),
    (27, 29),
    (28, 30),
    (29, 31),
    (30, 32),
    (27, 31),
    (28, 32),  # legs
)

# pose_detection subgraph: 224x224 letterboxed input, 2254 anchors of fixed unit size.
POSE_DETECTION_ANCHORS = SsdAnchorOptions(
    input_size=(224, 224),
    strides=(8, 16, 32, 32, 32),
    min_scale=0.1484375,
    max_scale=0.75,
    fixed_anchor_size=True,
)
# 12 regressors per anchor: box (x, y, w, h) then 4 keypoints (x, y), all in 224-pixel units.
POSE_DETECTION_CODING = BoxCoding(scales=(224.0,) * 4, reverse_output_order=True, keypoints=4, keypoint_offset=4)
LANDMARK_COUNT = 39  # 33 body landmarks + 6 auxiliary ones (region of interest helpers)
DETECTOR_FILE = "pose_detection.tflite"


@dataclass(frozen=True)
class Roi:
    """A square, rotated region of the source image: centre and side in pixels, rotation in radians."""

    center: tuple[float, float]
    size: float
    rotation: float

    def to_roi_matrix(self, out_size: int) -> np.ndarray:
        """2x3 affine matrix mapping source pixels into the ``out_size`` square crop."""
        scale = out_size / self.size
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        linear = scale * np.array([[c, s], [-s, c]], dtype=np.float64)  # scaled inverse rotation
        shift = out_size / 2.0 - linear @ np.asarray(self.center, dtype=np.float64)
        return np.hstack([linear, shift[:, None]])

    def to_source(self, xy: np.ndarray, out_size: int) -> np.ndarray:
        """(..., 2) points of the ``out_size`` crop back to source pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        rel = (np.asarray(xy, dtype=np.float64) - out_size / 2.0) * (self.size / out_size)
        x = c * rel[..., 0] - s * rel[..., 1] + self.center[0]
        y = s * rel[..., 0] + c * rel[..., 1] + self.center[1]
        return np.stack([x, y], axis=-1).astype(np.float32)

    def from_source(self, xy: np.ndarray, out_size: int) -> np.ndarray:
        """(..., 2) source pixels into the ``out_size`` crop (the inverse of ``to_source``)."""
        m = self.to_roi_matrix(out_size)
        return (np.asarray(xy, dtype=np.float64) @ m[:, :2].T + m[:, 2]).astype(np.float32)


def normalize_radians(angle: float) -> float:
    """``angle`` wrapped into [-pi, pi)."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def roi_from_keypoints(hip_center: np.ndarray, body_point: np.ndarray, *, scale: float = 1.25) -> Roi:
    """The upright square region around a person, from two detector keypoints in source pixels.

    As MediaPipe's ``AlignmentPointsRectsCalculator`` (rotation target 90 degrees) followed by
    ``RectTransformationCalculator`` (``square_long``, scale 1.25).
    """
    (x0, y0), (x1, y1) = np.asarray(hip_center, float), np.asarray(body_point, float)
    side = 2.0 * math.hypot(x1 - x0, y1 - y0) * scale
    rotation = normalize_radians(math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0))
    return Roi((float(x0), float(y0)), side, rotation)


def crop_roi(image: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    """The region warped into an ``out_size`` square; outside the image is black."""
    matrix = roi.to_roi_matrix(out_size)
    return cv2.warpAffine(image, matrix, (out_size, out_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


# ----------------------------------------------------------------------------- detector


@dataclass
class PersonDetections:
    """People found by the detector, in source pixels."""

    xyxy: np.ndarray  # (N, 4) face boxes: MediaPipe's pose detector finds people by their face
    scores: np.ndarray  # (N,)
    keypoints: np.ndarray  # (N, 4, 2): hip centre, body circle point, shoulder centre, upper-body point


@dataclass
class PoseDetectorProcessor:
    """Pre-processing and decoding of MediaPipe's ``pose_detection.tflite``."""

    input_size: tuple[int, int] = (224, 224)
    score_threshold: float = 0.5
    iou_threshold: float = 0.3
    max_people: int = 1

    def __post_init__(self) -> None:
        self.anchors = ssd_anchors(POSE_DETECTION_ANCHORS)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        """Letterbox to 224x224 with black bars, BGR -> RGB, scale to [-1, 1], NHWC float32."""
        boxed, transform = letterbox(image, self.input_size, pad_value=0)
        rgb = cv2.cvtColor(boxed, cv2.COLOR_BGR2RGB).astype(np.float32)
        return np.ascontiguousarray((rgb / 127.5 - 1.0)[None]), transform

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> PersonDetections:
        """People above the score threshold after NMS, best first, at most ``max_people``."""
        raw, logits = self.split_outputs(outputs)
        scores = sigmoid(np.clip(logits.astype(np.float64), -100.0, 100.0)).astype(np.float32)
        keep = np.nonzero(scores >= self.score_threshold)[0]
        size = np.array(self.input_size, dtype=np.float32)
        boxes = decode_boxes(raw[keep], self.anchors[keep], POSE_DETECTION_CODING) * np.tile(size, 2)
        order = keep_best(boxes, scores[keep], self.iou_threshold, self.max_people)
        chosen = keep[order]
        points = decode_keypoints(raw[chosen], self.anchors[chosen], POSE_DETECTION_CODING) * size
        return PersonDetections(
            transform.boxes_to_source(boxes[order]), scores[chosen], transform.points_to_source(points)
        )

    def split_outputs(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(regressors (A, 12), logits (A,))`` picked by shape."""
        count = len(self.anchors)
        raw = [t.reshape(count, -1) for t in outputs.values() if t.size == count * 12]
        logits = [t.reshape(count) for t in outputs.values() if t.size == count]
        if len(raw) != 1 or len(logits) != 1:
            raise EdgevisionError(
                f"expected pose detector outputs (1, {count}, 12) and (1, {count}, 1), got "
                f"{[t.shape for t in outputs.values()]}; is this MediaPipe's pose_detection.tflite?"
            )
        return raw[0], logits[0].astype(np.float32)


def keep_best(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int) -> np.ndarray:
    """Indices of the best ``limit`` boxes that survive NMS (empty input gives empty output)."""
    return nms(boxes, scores, iou_threshold=iou_threshold, max_detections=limit)


# ----------------------------------------------------------------------------- landmarks


@dataclass
class LandmarkResult:
    """One person from the landmark model: 33 keypoints in crop pixels and the presence score."""

    xy: np.ndarray  # (33, 2) in crop pixels
    visibility: np.ndarray  # (33,) in [0, 1]
    presence: float


def split_landmark_outputs(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    """``(landmarks (39, 5), pose presence)`` picked by size from the landmark model's outputs.

    The presence flag leaves the model already through a sigmoid (the graph ends in LOGISTIC).
    """
    landmarks = [t for t in outputs.values() if t.size == LANDMARK_COUNT * 5]
    flags = [t for t in outputs.values() if t.size == 1]
    if len(landmarks) != 1 or len(flags) != 1:
        raise EdgevisionError(
            f"expected BlazePose landmark outputs of 195 values and a presence flag, got "
            f"{[t.shape for t in outputs.values()]}; is this a BlazePose landmark model?"
        )
    return landmarks[0].reshape(LANDMARK_COUNT, 5).astype(np.float32), float(flags[0].reshape(-1)[0])


def decode_landmarks(outputs: dict[str, np.ndarray]) -> LandmarkResult:
    """Body landmarks ``(x, y)`` in crop pixels with sigmoid visibilities."""
    raw, presence = split_landmark_outputs(outputs)
    body = raw[: len(BLAZEPOSE_KEYPOINTS)]
    return LandmarkResult(body[:, :2], sigmoid(body[:, 3].astype(np.float64)).astype(np.float32), presence)


@dataclass(frozen=True)
class BlazePoseOptions:
    """Thresholds of the two stages."""

    detector_threshold: float = 0.5
    detector_iou: float = 0.3
    presence_threshold: float = 0.5
    max_people: int = 1
    roi_scale: float = 1.25
    landmark_size: int = 256


def landmark_boxes(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 4) person boxes: the extent of all 33 landmarks, clipped to the image.

    The detector's own box covers only the face, so it is not a person box.
    """
    xy = keypoints[..., :2]
    boxes = np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1)
    return np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)


@dataclass(frozen=True)
class LandmarkCrop:
    """How a landmark-model input was made: the person's region (None: nobody was found)."""

    roi: Roi | None
    out_size: int
    source_size: tuple[int, int]  # (width, height)


def whole_image_roi(width: int, height: int) -> Roi:
    """An upright square around the whole image (the crop when the detector finds nobody)."""
    return Roi((width / 2.0, height / 2.0), float(max(width, height)), 0.0)


def landmark_input(image: np.ndarray, roi: Roi, size: int) -> np.ndarray:
    """The landmark model's (1, size, size, 3) RGB / 255 input for ``roi`` of ``image``."""
    rgb = cv2.cvtColor(crop_roi(image, roi, size), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return np.ascontiguousarray(rgb[None])


def landmark_poses(result: LandmarkResult, crop: LandmarkCrop, threshold: float) -> Poses:
    """The person of one landmark result in source pixels (empty below ``threshold`` or without a person)."""
    if crop.roi is None or result.presence < threshold:
        return Poses.empty(BLAZEPOSE_KEYPOINTS, BLAZEPOSE_EDGES)
    xy = crop.roi.to_source(result.xy, crop.out_size)
    keypoints = np.concatenate([xy, result.visibility[:, None]], axis=1)[None].astype(np.float32)
    boxes = landmark_boxes(keypoints, *crop.source_size)
    scores = np.array([result.presence], dtype=np.float32)
    return Poses(keypoints, scores, BLAZEPOSE_KEYPOINTS, BLAZEPOSE_EDGES, boxes)


@dataclass
class LandmarkStageProcessor:
    """The landmark model as a single-stage model: pre-processing runs the person detector.

    ``preprocess`` finds the best person with ``detector`` (a backend running
    ``pose_detection.tflite``, which stays float) and returns the rotated 256x256 crop;
    ``decode`` maps that person's 33 landmarks back to source pixels. Quantizing or
    converting the landmark model is then measured on real people, with the same crops
    fed to float and to the variant. ``score_threshold`` is the pose-presence threshold.
    """

    detector: Backend
    score_threshold: float = 0.5
    options: BlazePoseOptions = field(default_factory=BlazePoseOptions)
    task = "pose"

    def __post_init__(self) -> None:
        self._people = PoseDetectorProcessor(
            score_threshold=self.options.detector_threshold, iou_threshold=self.options.detector_iou, max_people=1
        )

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, LandmarkCrop]:
        """The crop around the best person (the whole image when nobody is found) and how it was made."""
        tensor, transform = self._people.preprocess(image)
        people = self._people.decode(self.detector.run({self.detector.inputs[0].name: tensor}), transform)
        height, width = image.shape[:2]
        found = len(people.scores) > 0
        roi = roi_from_keypoints(*people.keypoints[0, :2], scale=self.options.roi_scale) if found else None
        size = self.options.landmark_size
        crop = landmark_input(image, roi or whole_image_roi(width, height), size)
        return crop, LandmarkCrop(roi, size, (width, height))

    def decode(self, outputs: dict[str, np.ndarray], transform: LandmarkCrop) -> Poses:
        """The person's keypoints in source pixels, score = pose presence."""
        return landmark_poses(decode_landmarks(outputs), transform, self.score_threshold)


class BlazePosePredictor(Predictor):
    """Person detector (LiteRT) then landmark model on the rotated person crop.

    ``backends`` is ``(detector, landmarks)``. Returns ``Poses`` with the 33 BlazePose
    keypoints in source pixels, score = the landmark model's pose-presence flag, keypoint
    score = visibility; people whose presence is below ``presence_threshold`` are dropped.
    """

    task = "pose"

    def __init__(self, detector: Backend, landmarks: Backend, options: BlazePoseOptions | None = None) -> None:
        self.options = options or BlazePoseOptions()
        self.backends = (detector, landmarks)
        self.detector = PoseDetectorProcessor(
            score_threshold=self.options.detector_threshold,
            iou_threshold=self.options.detector_iou,
            max_people=self.options.max_people,
        )

    def __call__(self, image: np.ndarray) -> Poses:
        people = self.detect(image)
        found = [self._landmarks(image, people, i) for i in range(len(people.scores))]
        kept = [(i, r) for i, r in enumerate(found) if r[1] >= self.options.presence_threshold]
        if not kept:
            return Poses.empty(BLAZEPOSE_KEYPOINTS, BLAZEPOSE_EDGES)
        keypoints = np.stack([r[0] for _, r in kept])
        scores = np.array([r[1] for _, r in kept], dtype=np.float32)
        boxes = landmark_boxes(keypoints, image.shape[1], image.shape[0])
        return Poses(keypoints, scores, BLAZEPOSE_KEYPOINTS, BLAZEPOSE_EDGES, boxes)

    def detect(self, image: np.ndarray) -> PersonDetections:
        """Stage one: people with their alignment keypoints, in source pixels."""
        detector = self.backends[0]
        tensor, transform = self.detector.preprocess(image)
        return self.detector.decode(detector.run({detector.inputs[0].name: tensor}), transform)

    def _landmarks(self, image: np.ndarray, people: PersonDetections, i: int) -> tuple[np.ndarray, float]:
        """Stage two for person ``i``: (33, 3) source-pixel keypoints and the presence score."""
        size = self.options.landmark_size
        roi = roi_from_keypoints(people.keypoints[i, 0], people.keypoints[i, 1], scale=self.options.roi_scale)
        landmarks = self.backends[1]
        result = decode_landmarks(landmarks.run({landmarks.inputs[0].name: landmark_input(image, roi, size)}))
        xy = roi.to_source(result.xy, size)
        return np.concatenate([xy, result.visibility[:, None]], axis=1), result.presence
