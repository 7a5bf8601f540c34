"""MoveNet: single-pose (Lightning 192, Thunder 256) and multi-pose Lightning, COCO-17 keypoints.

>>> from edgevision.zoo import get_spec
>>> get_spec("movenet-thunder").input_size
(256, 256)

The zoo runs MoveNet's network only up to its head maps (``HEADS``: keypoint heatmaps,
person centres, keypoint regression from a centre, keypoint offsets; multi-pose adds box
sizes and offsets), and decodes them here in numpy, step by step as the TF.js graph
decoded them inside the network (``decode_single_heads``, ``decode_multi_heads``). With
ArgMax, GatherND and the distance weighting outside it, the network quantizes to int8
like any other: quantized, the in-graph decoding picked other cells and other people.
The full graph's single output, ``(1, 1, 17, 3)`` or ``(1, N, 56)``, still decodes (files
made from it by earlier versions).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.models.coco import COCO17_EDGES, COCO17_KEYPOINTS
from edgevision.models.transforms import ImageTransform, letterbox
from edgevision.types import Poses

logger = logging.getLogger(__name__)

KEYPOINTS = len(COCO17_KEYPOINTS)
MULTIPOSE_WIDTH = KEYPOINTS * 3 + 5  # 17 x (y, x, score), then ymin, xmin, ymax, xmax, score

# The head maps the zoo's MoveNet files output, named after the graph's TF scopes, with their
# channels. Sigmoid is applied to heatmaps and centres; the others are the last convolution's.
HEADS = {"kpt_heatmap": KEYPOINTS, "center": 1, "kpt_regress": 2 * KEYPOINTS, "kpt_offset": 2 * KEYPOINTS}
MULTIPOSE_HEADS = {**HEADS, "box_scale": 2, "box_offset": 2}
STRIDE = 4  # input pixels per cell of the head maps
MAX_PEOPLE = 6  # the multi-pose graph's TopK


@dataclass
class MoveNetProcessor:
    """Pre-processing and decoding of MoveNet's int32 RGB NHWC input and normalised outputs.

    The image is fitted inside the input keeping its aspect ratio and padded with zeros
    (``tf.image.resize_with_pad``, as MoveNet expects). With ``multiple_of`` set (the
    multi-pose model takes any size that is a multiple of it), the input's long side follows
    the frame's: its long side rounded up to that multiple, kept between ``min_long_side`` and
    ``input_size``, and the short side is rounded up to that multiple instead of padded square.
    A small frame is thus not blown up to ``input_size``: a close person upscaled that much is
    no longer found.
    The outputs are the head maps (``HEADS``, or ``MULTIPOSE_HEADS`` with the box maps),
    decoded by ``decoded_output`` into the full graph's single output, or that output itself:
    ``(1, 1, 17, 3)`` single pose, ``(1, N, 56)`` multi-pose.
    """

    input_size: tuple[int, int] = (192, 192)  # (width, height); the long side with multiple_of
    multiple_of: int | None = None
    min_long_side: int = 256  # with multiple_of: smaller inputs miss the small people of a small frame
    score_threshold: float = 0.2  # a person's score: mean keypoint score, or the model's own
    min_extent: float = 0.08  # single pose: a skeleton spanning less of the input side scores 0
    task = "pose"

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        """Letterbox (zero padding) to the input size, RGB int32 ``(1, H, W, 3)``."""
        padded, transform = letterbox(image, self.target_size(image.shape[1], image.shape[0]), pad_value=0)
        return np.ascontiguousarray(padded[None, ..., ::-1], dtype=np.int32), transform

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """Input (width, height) for an image: fixed, or long side fixed and a multiple of ``multiple_of``.

        A very thin image (10 x 10000 px) still gets one ``multiple_of`` on its short side:
        the image is letterboxed into it, never squeezed to nothing.

        >>> MoveNetProcessor((256, 256), multiple_of=32).target_size(10, 10000)
        (32, 256)
        >>> MoveNetProcessor((448, 448), multiple_of=32).target_size(300, 200)
        (320, 224)
        """
        if self.multiple_of is None:
            return self.input_size
        scale = self.long_side(max(width, height)) / max(width, height)
        return tuple(_round_up(side * scale, self.multiple_of) for side in (width, height))

    def long_side(self, frame_long_side: int) -> int:
        """The input's long side: the frame's rounded up to ``multiple_of``, within the limits.

        >>> [MoveNetProcessor((448, 448), multiple_of=32).long_side(s) for s in (176, 300, 768)]
        [256, 320, 448]
        """
        largest = max(self.input_size)
        return min(largest, max(min(self.min_long_side, largest), _round_up(frame_long_side, self.multiple_of)))

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> Poses:
        """People in source pixels; below ``score_threshold`` they are dropped."""
        raw = decoded_output(outputs)
        input_size = self.target_size(*transform.source_size)
        if raw.shape[-2:] == (KEYPOINTS, 3):
            poses = decode_single_pose(raw, transform, input_size, min_extent=self.min_extent)
            return poses[poses.scores >= self.score_threshold]
        if raw.shape[-1] == MULTIPOSE_WIDTH:
            return decode_multi_pose(raw, transform, input_size, self.score_threshold)
        raise EdgevisionError(f"output of shape {raw.shape} is not a MoveNet output ([1,1,17,3] or [1,N,56]).")


def decoded_output(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The full graph's output for ``outputs``: decoded from the head maps, or the one output given.

    Head maps are found by name (``HEADS``, also as part of a longer name, as converters
    write them) in NCHW or NHWC layout; six outputs are multi-pose's, with its box maps.
    """
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    heads = head_maps(outputs, MULTIPOSE_HEADS if len(outputs) == len(MULTIPOSE_HEADS) else HEADS)
    return decode_multi_heads(heads) if "box_scale" in heads else decode_single_heads(heads)


def head_maps(outputs: dict[str, np.ndarray], names: dict[str, int]) -> dict[str, np.ndarray]:
    """``{head: (H, W, channels) float32}`` from the outputs named after ``names``."""
    found = {}
    for head, channels in names.items():
        matches = [key for key in outputs if key == head] or [key for key in outputs if head in key]
        if len(matches) != 1:
            raise EdgevisionError(
                f"cannot find MoveNet's {head} map among outputs {sorted(outputs)}; "
                f"a MoveNet file outputs {', '.join(names)} (or the full graph's one output)."
            )
        found[head] = _hwc(outputs[matches[0]], channels, head)
    return found


def _hwc(tensor: np.ndarray, channels: int, head: str) -> np.ndarray:
    """A ``(1, C, H, W)`` or ``(1, H, W, C)`` map as ``(H, W, C)`` float32."""
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        if tensor.shape[1] == channels:
            return np.ascontiguousarray(tensor[0].transpose(1, 2, 0), dtype=np.float32)
        if tensor.shape[3] == channels:
            return np.asarray(tensor[0], dtype=np.float32)
    raise EdgevisionError(f"MoveNet's {head} map has shape {tensor.shape}, not (1, {channels}, H, W) or NHWC.")


def to_float16_grid(values: np.ndarray) -> np.ndarray:
    """float32 ``values`` rounded to float16 precision, ties away from zero, kept as float32.

    MoveNet's TF.js weights are stored as float16 that way; its decoding constants too.

    >>> to_float16_grid(np.array([1.8, 0.3], np.float32)).tolist()
    [1.7998046875, 0.300048828125]
    """
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def _f16(value: float) -> np.float32:
    return to_float16_grid(np.array([value], np.float32))[0]


def centre_weights(height: int, width: int) -> np.ndarray:
    """``(H, W)`` float32: 1 / (distance to the map's centre + 1.8), the single-pose centre prior.

    The graph held this as a constant; computed here it is the same to the bit.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    distance = np.sqrt((y - height / 2) ** 2 + (x - width / 2) ** 2)
    return to_float16_grid((1.0 / (distance + 1.8)).astype(np.float32))


def _grids(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices as float32, shapes ``(H, 1)`` and ``(1, W)``."""
    return np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None, :]


def decode_single_heads(heads: dict[str, np.ndarray]) -> np.ndarray:
    """The single-pose graph's ``(1, 1, 17, 3)`` output (y, x in [0, 1], score) from its head maps.

    The person is the centre cell of highest centre score weighted by ``centre_weights``; its
    regression places 17 keypoints; each keypoint is the cell of its heatmap divided by the
    distance to that place (+ 1.8 cells), refined by its offset; its score is the heatmap there.
    """
    heat, regress, offsets = heads["kpt_heatmap"], heads["kpt_regress"], heads["kpt_offset"]
    centre = heads["center"][..., 0]
    height, width = centre.shape
    cy, cx = divmod(int(np.argmax(centre * centre_weights(height, width))), width)
    reg = regress[cy, cx].reshape(KEYPOINTS, 2)
    ys, xs = _grids(height, width)
    near = np.sqrt(
        (ys[..., None] - (np.float32(cy) + reg[:, 0])) ** 2 + (xs[..., None] - (np.float32(cx) + reg[:, 1])) ** 2
    )
    cell = np.argmax((heat / (near + _f16(1.8))).reshape(-1, KEYPOINTS), axis=0)
    ky, kx = np.divmod(cell, width)
    k = np.arange(KEYPOINTS)
    off = offsets[ky, kx].reshape(KEYPOINTS, KEYPOINTS, 2)[k, k]
    y = (ky.astype(np.float32) + off[:, 0]) * _f16(1.0 / height)
    x = (kx.astype(np.float32) + off[:, 1]) * _f16(1.0 / width)
    return np.stack([y, x, heat[ky, kx, k]], axis=-1).astype(np.float32).reshape(1, 1, KEYPOINTS, 3)


def _max_pool_same(values: np.ndarray, size: int) -> np.ndarray:
    """Max over a ``size`` x ``size`` window around each cell (stride 1, borders ignored)."""
    pad = size // 2
    padded = np.pad(values, pad, constant_values=-np.inf)
    return np.lib.stride_tricks.sliding_window_view(padded, (size, size)).max(axis=(-2, -1))


def decode_multi_heads(heads: dict[str, np.ndarray]) -> np.ndarray:
    """The multi-pose graph's ``(1, 6, 56)`` output from its head maps.

    People are the 6 highest local maxima (5 x 5) of the centre map. Each gets a box (its
    centre cell + box offset, +- half the box size) and 17 regressed keypoint places; each
    keypoint is the cell of the heatmap weighted by exp(-d^2 / (0.3 * min(H, W))) around its
    place, inside the box, refined by its offset. Its score is the highest such weighted value
    there over all people; a person's score is the centre score times the mean of its keypoint
    scores above 0.127.
    """
    heat, regress, offsets = heads["kpt_heatmap"], heads["kpt_regress"], heads["kpt_offset"]
    centre = heads["center"][..., 0]
    height, width = centre.shape
    in_h, in_w = np.float32(height * STRIDE), np.float32(width * STRIDE)
    peaks = centre * (np.abs(centre - _max_pool_same(centre, 5)) < _f16(1e-6)).astype(np.float32)
    order = np.argsort(-peaks.ravel(), kind="stable")[:MAX_PEOPLE]  # TopK: equal values, lower index first
    centre_scores = peaks.ravel()[order]
    cy, cx = np.divmod(order, width)
    fy, fx = cy.astype(np.float32), cx.astype(np.float32)
    reg = regress[cy, cx].reshape(MAX_PEOPLE, KEYPOINTS, 2)
    place_y, place_x = fy[:, None] + reg[..., 0], fx[:, None] + reg[..., 1]  # (6, 17)
    half = np.maximum(heads["box_scale"][cy, cx], np.float32(0)) * np.float32(0.5)
    box_offset = heads["box_offset"][cy, cx]
    mid_y, mid_x = fy + box_offset[:, 0], fx + box_offset[:, 1]
    ymin = np.clip(mid_y - half[:, 0], 0, np.float32(height))
    xmin = np.clip(mid_x - half[:, 1], 0, np.float32(width))
    ymax = np.clip(mid_y + half[:, 0], 0, np.float32(height))
    xmax = np.clip(mid_x + half[:, 1], 0, np.float32(width))
    cells = np.stack([ymin, xmin, ymax, xmax], axis=-1)  # (6, 4) in cells
    boxes = np.clip(cells * np.float32(STRIDE) / np.array([in_h, in_w, in_h, in_w], np.float32), 0, 1)
    spread = np.float32(min(height, width)) * _f16(0.3)
    ys, xs = _grids(height, width)
    rows = [np.flatnonzero((ys[:, 0] >= lo) & (ys[:, 0] < hi)) for lo, hi in zip(ymin, ymax)]
    cols = [np.flatnonzero((xs[0] >= lo) & (xs[0] < hi)) for lo, hi in zip(xmin, xmax)]
    cells = [_best_cells(heat, r, c, y, x, spread, width) for r, c, y, x in zip(rows, cols, place_y, place_x)]
    ky, kx = (np.concatenate(parts) for parts in zip(*cells))  # (6 * 17,) each
    k = np.tile(np.arange(KEYPOINTS), MAX_PEOPLE)
    # The score at each chosen cell: the highest weighted heatmap there over all people.
    fky, fkx = ky.astype(np.float32)[:, None], kx.astype(np.float32)[:, None]
    near = (fky - place_y[:, k].T) ** 2 + (fkx - place_x[:, k].T) ** 2  # (6 * 17, 6)
    inside = (fky >= ymin) & (fky < ymax) & (fkx >= xmin) & (fkx < xmax)
    weighted = heat[ky, kx, k][:, None] * np.exp(-near / spread) * inside.astype(np.float32)
    scores = weighted.max(axis=1).reshape(MAX_PEOPLE, KEYPOINTS)
    off = offsets.reshape(height, width, KEYPOINTS, 2)[ky, kx, k]  # (6 * 17, 2)
    y = (off[:, 0] + ky.astype(np.float32)) * (np.float32(STRIDE) / in_h)
    x = (off[:, 1] + kx.astype(np.float32)) * (np.float32(STRIDE) / in_w)
    keypoints = np.stack([y.reshape(MAX_PEOPLE, KEYPOINTS), x.reshape(MAX_PEOPLE, KEYPOINTS), scores], axis=-1)
    seen = scores > _f16(0.127)
    total = (centre_scores[:, None] * np.where(seen, scores, np.float32(0))).sum(axis=1)
    person = np.float32(1) / np.maximum(seen.sum(axis=1), 1).astype(np.float32) * total
    rows = np.concatenate([keypoints.reshape(MAX_PEOPLE, -1), boxes, person[:, None]], axis=1)
    return rows.astype(np.float32)[None]


def _best_cells(heat, rows, cols, place_y, place_x, spread, width) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each keypoint of one person: the highest heatmap value weighted by
    exp(-d^2 / spread) around its place, among the cells of its box (``rows`` x ``cols``).

    The graph weighs every cell and zeroes those outside the box; the first highest cell in
    row-major order is the same, and with nothing above 0 it is cell 0, as ArgMax picks it.
    """
    if rows.size == 0 or cols.size == 0:
        return np.zeros(KEYPOINTS, np.int64), np.zeros(KEYPOINTS, np.int64)
    ys = rows.astype(np.float32)[:, None, None]
    xs = cols.astype(np.float32)[None, :, None]
    squared = (ys - place_y) ** 2 + (xs - place_x) ** 2  # (rows, cols, 17)
    weighted = (heat[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] * np.exp(-squared / spread)).reshape(-1, KEYPOINTS)
    local = np.argmax(weighted, axis=0)
    found = weighted[local, np.arange(KEYPOINTS)] > 0
    ky, kx = rows[0] + local // cols.size, cols[0] + local % cols.size
    index = np.where(found, ky * width + kx, 0)
    return np.divmod(index, width)


def _round_up(value: float, step: int) -> int:
    """``value`` rounded up to a multiple of ``step``, at least ``step``."""
    return max(step, -(-round(value) // step) * step)


def keypoints_to_source(yxs: np.ndarray, transform: ImageTransform, input_size: tuple[int, int]) -> np.ndarray:
    """(..., 17, 3) normalised (y, x, score) to (..., 17, 3) source-pixel (x, y, score)."""
    xy = np.stack([yxs[..., 1] * input_size[0], yxs[..., 0] * input_size[1]], axis=-1)
    return np.concatenate([transform.points_to_source(xy), yxs[..., 2:3]], axis=-1).astype(np.float32)


def single_pose_score(raw: np.ndarray, *, min_extent: float, visible: float = 0.2) -> np.ndarray:
    """The person's score, shape (1,): the mean keypoint score, 0 when the skeleton is folded into a spot.

    The single-pose models always place 17 keypoints. On an image without a person (a dog)
    their scores stay near a real person's (0.3-0.4), but the keypoints above ``visible``
    gather within a few hundredths of the input side, where a person spans a tenth or more.

    >>> raw = np.zeros((1, 1, 17, 3), np.float32); raw[..., 2] = 0.5
    >>> single_pose_score(raw, min_extent=0.08)
    array([0.], dtype=float32)
    >>> raw[0, 0, :, 0] = np.linspace(0.2, 0.8, 17)
    >>> single_pose_score(raw, min_extent=0.08)
    array([0.5], dtype=float32)
    """
    yxs = raw.reshape(KEYPOINTS, 3)
    seen = yxs[yxs[:, 2] >= visible, :2]
    extent = float((seen.max(axis=0) - seen.min(axis=0)).max()) if len(seen) > 1 else 0.0
    return np.array([yxs[:, 2].mean() if extent >= min_extent else 0.0], np.float32)


def decode_single_pose(
    raw: np.ndarray, transform: ImageTransform, input_size: tuple[int, int], *, min_extent: float
) -> Poses:
    """One person from a ``(1, 1, 17, 3)`` output, scored by :func:`single_pose_score`."""
    keypoints = keypoints_to_source(raw.reshape(1, KEYPOINTS, 3), transform, input_size)
    return Poses(keypoints, single_pose_score(raw, min_extent=min_extent), COCO17_KEYPOINTS, COCO17_EDGES)


def decode_multi_pose(
    raw: np.ndarray, transform: ImageTransform, input_size: tuple[int, int], threshold: float
) -> Poses:
    """People from a ``(1, N, 56)`` output whose own score reaches ``threshold``, best first."""
    rows = raw.reshape(-1, MULTIPOSE_WIDTH)
    rows = rows[rows[:, -1] >= threshold]
    rows = rows[np.argsort(-rows[:, -1], kind="stable")]
    keypoints = keypoints_to_source(rows[:, : KEYPOINTS * 3].reshape(-1, KEYPOINTS, 3), transform, input_size)
    ymin, xmin, ymax, xmax = rows[:, -5:-1].T
    corners = np.stack([xmin * input_size[0], ymin * input_size[1], xmax * input_size[0], ymax * input_size[1]], 1)
    boxes = transform.boxes_to_source(corners)
    return Poses(keypoints, rows[:, -1], COCO17_KEYPOINTS, COCO17_EDGES, boxes)
