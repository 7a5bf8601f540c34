"""OpenPose body (Cao et al., CVPR 2017): 18 COCO keypoints grouped by part affinity fields.

The network (VGG-19 front end, six two-branch stages, 52.3 M parameters) is built in
PyTorch with the layer names of the Caffe model as converted by the PyTorch port
(``body_pose_model.pth``); users download that file themselves and load it with
``load_openpose_checkpoint``.

>>> from edgevision.zoo import get_spec
>>> get_spec("openpose-body").input_size
(368, 368)
>>> len(KEYPOINT_NAMES), len(LIMBS), len(EDGES)
(18, 19, 17)

Decoding follows the reference post-processing of the CMU release and the PyTorch port:
upsample the stride-8 maps to input scale, Gaussian-smooth each heatmap, take 4-neighbour
peaks over 0.1, score every candidate limb by the PAF line integral over 10 samples, match
limbs greedily, and assemble people limb by limb. No maintained library does PAF grouping,
so it is written here as small numpy functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.models.transforms import ImageTransform, letterbox, to_tensor
from edgevision.types import Poses

logger = logging.getLogger(__name__)

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)
# The 19 limbs the PAFs encode, as part indices, in the order the reference assembles them.
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
    (2, 16),
    (5, 17),
)
# PAF channels (x, y) of each limb in the 38-channel output.
LIMB_PAF_CHANNELS: tuple[tuple[int, int], ...] = (
    (12, 13),
    (20, 21),
    (14, 15),
    (16, 17),
    (22, 23),
    (24, 25),
    (0, 1),
    (2, 3),
    (4, 5),
    (6, 7),
    (8, 9),
    (10, 11),
    (28, 29),
    (30, 31),
    (34, 35),
    (32, 33),
    (36, 37),
    (18, 19),
    (26, 27),
)
# The skeleton drawn: every limb but the two ear-shoulder ones.
EDGES: tuple[tuple[int, int], ...] = LIMBS[:17]
STRIDE = 8
PAD_VALUE = 128
OUTPUT_NAMES = ("pafs", "heatmaps")


def build_openpose():
    """The OpenPose body network in eval mode with random weights (needs torch)."""
    from edgevision.models.nets.openpose import OpenPoseBody

    return OpenPoseBody().eval()


def he_scaled_init(module) -> None:
    """He-normal conv weights and small biases, seeded by the caller.

    PyTorch's default initialisation shrinks OpenPose's activations towards a constant over
    its ~60 plain convolutions, so random-weight outputs would compare as near-identical
    whatever a conversion or quantization did to them. He scaling keeps activations of
    order 1, so parity and cosine measured on random weights mean something.
    """
    import torch

    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                torch.nn.init.normal_(layer.bias, std=0.01)


def load_openpose_checkpoint(module, path: str | Path) -> None:
    """Load ``body_pose_model.pth`` (flat Caffe layer names such as ``conv1_1.weight``).

    The module's own layout (``model0.conv1_1.weight``) is accepted too. Keys and shapes
    are checked strictly; a missing, unexpected or misshaped key raises ``EdgevisionError``.
    """
    from edgevision.models.nets.checkpoint import (
        is_state_dict,
        load_strict,
        read_checkpoint,
    )

    path = Path(path)
    state = read_checkpoint(path)
    if not is_state_dict(state):
        raise EdgevisionError(
            f"{path} is not an OpenPose body checkpoint: expected a flat state dict of Caffe layer names "
            "(body_pose_model.pth of the PyTorch port)."
        )
    hint = "Is it the body model (body_pose_model.pth) and not the hand model or another network?"
    load_strict(module, add_block_prefixes(module, state), source=path.name, hint=hint)
    logger.info("loaded %d tensors from %s", len(state), path)


def add_block_prefixes(module, state: dict) -> dict:
    """Map the port's flat keys (``conv1_1.weight``) to module keys (``model0.conv1_1.weight``).

    Keys already prefixed, and keys the module does not know, are passed through unchanged
    so the strict check can name them.
    """
    by_flat = {key.split(".", 1)[1]: key for key in module.state_dict()}
    return {by_flat.get(key, key): value for key, value in state.items()}


# ----------------------------------------------------------------------------- decoding


def find_peaks(heatmap: np.ndarray, *, threshold: float = 0.1, sigma: float = 3.0) -> np.ndarray:
    """``(n, 3)`` x, y, score of the local maxima of one heatmap, in its pixels.

    The map is smoothed with a Gaussian (the reference's ``gaussian_filter``, sigma 3,
    radius 4 sigma, reflected border); a peak is not lower than its 4 neighbours and over
    ``threshold``; its score is the unsmoothed value.
    """
    radius = int(4 * sigma + 0.5)
    smooth = cv2.GaussianBlur(heatmap, (2 * radius + 1,) * 2, sigma, borderType=cv2.BORDER_REFLECT)
    padded = np.pad(smooth, 1, constant_values=-np.inf)
    centre = padded[1:-1, 1:-1]
    is_peak = (
        (centre >= padded[:-2, 1:-1])
        & (centre >= padded[2:, 1:-1])
        & (centre >= padded[1:-1, :-2])
        & (centre >= padded[1:-1, 2:])
        & (centre > threshold)
    )
    ys, xs = np.nonzero(is_peak)
    return np.stack([xs, ys, heatmap[ys, xs]], axis=1).astype(np.float32)


def limb_scores(
    cand_a: np.ndarray, cand_b: np.ndarray, paf: np.ndarray, *, image_height: int, options: OpenPoseOptions
) -> np.ndarray:
    """``(nA, nB)`` PAF line-integral score of every A->B pair, NaN where a pair fails.

    ``paf`` is ``(H, W, 2)``. The score is the mean of the field projected on the unit
    A->B vector at ``options.samples`` points, plus a penalty for limbs longer than half
    the image height; a pair passes when over 80% of the samples exceed
    ``options.paf_threshold`` and the score is positive.
    """
    vec = cand_b[None, :, :2] - cand_a[:, None, :2]
    norm = np.hypot(vec[..., 0], vec[..., 1])
    unit = vec / np.maximum(norm, 1e-6)[..., None]
    t = np.linspace(0.0, 1.0, options.samples, dtype=np.float32)
    points = cand_a[:, None, None, :2] + t[None, None, :, None] * vec[:, :, None, :]
    xs = np.clip(np.rint(points[..., 0]).astype(int), 0, paf.shape[1] - 1)
    ys = np.clip(np.rint(points[..., 1]).astype(int), 0, paf.shape[0] - 1)
    sampled = paf[ys, xs]  # (nA, nB, samples, 2)
    along = sampled[..., 0] * unit[..., None, 0] + sampled[..., 1] * unit[..., None, 1]
    score = along.mean(axis=-1) + np.minimum(0.5 * image_height / np.maximum(norm, 1e-6) - 1, 0)
    passed = (np.count_nonzero(along > options.paf_threshold, axis=-1) > 0.8 * options.samples) & (score > 0)
    return np.where(passed & (norm > 0), score, np.nan)


def match_limbs(scores: np.ndarray) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching: best-scoring pairs first, each candidate used once."""
    i_idx, j_idx = np.nonzero(~np.isnan(scores))
    order = np.argsort(-scores[i_idx, j_idx], kind="stable")
    used_a, used_b, matches = set(), set(), []
    for i, j in zip(i_idx[order], j_idx[order]):
        if i not in used_a and j not in used_b:
            matches.append((int(i), int(j), float(scores[i, j])))
            used_a.add(i)
            used_b.add(j)
            if len(matches) >= min(scores.shape):
                break
    return matches


class PersonAssembler:
    """Grows people limb by limb, as the reference's ``subset`` logic does.

    Each row of ``people`` holds a candidate id per part (-1 when absent), then the total
    score and the number of parts. A limb joins the person holding either end; two people
    that each hold one end and share no part are merged; otherwise (for the first 17
    limbs) it starts a new person.
    """

    def __init__(self, candidates: np.ndarray, n_parts: int = len(KEYPOINT_NAMES)) -> None:
        self.candidates = candidates  # (M, 3) x, y, score by candidate id
        self.n_parts = n_parts
        self.people = np.full((0, n_parts + 2), -1.0)

    def add(self, limb_index: int, ids: tuple[int, int], score: float) -> None:
        """Add the limb ``LIMBS[limb_index]`` joining candidates ``ids`` with PAF ``score``."""
        part_a, part_b = LIMBS[limb_index]
        owners = [p for p, row in enumerate(self.people) if row[part_a] == ids[0] or row[part_b] == ids[1]]
        if len(owners) == 1 or (len(owners) >= 2 and not self._disjoint(*owners[:2])):
            self._extend(owners[0], part_b, ids[1], score)
        elif len(owners) >= 2:
            self._merge(owners[0], owners[1], score)
        elif limb_index < 17:
            self._start(part_a, part_b, ids, score)

    def _disjoint(self, p: int, q: int) -> bool:
        return not np.any((self.people[p, : self.n_parts] >= 0) & (self.people[q, : self.n_parts] >= 0))

    def _extend(self, p: int, part: int, cid: int, score: float) -> None:
        row = self.people[p]
        if row[part] != cid:
            row[part] = cid
            row[-1] += 1
            row[-2] += self.candidates[cid, 2] + score

    def _merge(self, p: int, q: int, score: float) -> None:
        row, other = self.people[p], self.people[q]
        row[: self.n_parts] = np.maximum(row[: self.n_parts], other[: self.n_parts])
        row[-2:] += other[-2:]
        row[-2] += score
        self.people = np.delete(self.people, q, axis=0)

    def _start(self, part_a: int, part_b: int, ids: tuple[int, int], score: float) -> None:
        row = np.full(self.n_parts + 2, -1.0)
        row[part_a], row[part_b] = ids
        row[-1] = 2
        row[-2] = self.candidates[list(ids), 2].sum() + score
        self.people = np.vstack([self.people, row])

    def result(self, *, min_parts: int, min_mean_score: float) -> np.ndarray:
        """People with at least ``min_parts`` parts and mean score at least ``min_mean_score``."""
        count, total = self.people[:, -1], self.people[:, -2]
        keep = (count >= min_parts) & (total / np.maximum(count, 1) >= min_mean_score)
        return self.people[keep]


@dataclass(frozen=True)
class OpenPoseOptions:
    """Thresholds of the reference post-processing."""

    peak_threshold: float = 0.1
    sigma: float = 3.0
    paf_threshold: float = 0.05
    samples: int = 10
    min_parts: int = 4
    min_mean_score: float = 0.4


def group_people(heatmaps: np.ndarray, pafs: np.ndarray, *, image_height: int, options: OpenPoseOptions):
    """``(people (P, 20), candidates (M, 3))`` from input-scale ``(H, W, 19)`` heatmaps and ``(H, W, 38)`` PAFs."""
    peaks = [
        find_peaks(heatmaps[..., part], threshold=options.peak_threshold, sigma=options.sigma)
        for part in range(len(KEYPOINT_NAMES))
    ]
    first_id = np.cumsum([0] + [len(p) for p in peaks])
    assembler = PersonAssembler(np.concatenate(peaks) if peaks else np.zeros((0, 3), np.float32))
    for k, ((part_a, part_b), channels) in enumerate(zip(LIMBS, LIMB_PAF_CHANNELS)):
        if len(peaks[part_a]) == 0 or len(peaks[part_b]) == 0:
            continue
        paf = pafs[..., list(channels)]
        scores = limb_scores(peaks[part_a], peaks[part_b], paf, image_height=image_height, options=options)
        for i, j, score in match_limbs(scores):
            assembler.add(k, (first_id[part_a] + i, first_id[part_b] + j), score)
    people = assembler.result(min_parts=options.min_parts, min_mean_score=options.min_mean_score)
    return people, assembler.candidates


@dataclass
class OpenPoseProcessor:
    """Pre-processing and PAF decoding of the two-output OpenPose export (``pafs``, ``heatmaps``).

    Pre-processing as the port: resize keeping the aspect ratio, pad right and bottom with
    128 to the input size (multiples of 8), BGR / 256 - 0.5, NCHW float32. (The port uses
    cubic resizing; the shared letterbox uses bilinear.)
    """

    input_size: tuple[int, int] = (368, 368)  # (width, height), multiples of 8
    options: OpenPoseOptions = OpenPoseOptions()
    task = "pose"

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        """Top-left letterbox with pad 128, BGR / 256 - 0.5, NCHW float32."""
        canvas, transform = letterbox(image, self.input_size, pad_value=PAD_VALUE, center=False)
        return to_tensor(canvas, mean=(128.0,) * 3, std=(256.0,) * 3), transform  # x / 256 - 0.5, exactly

    def decode(self, outputs: dict[str, np.ndarray], transform: ImageTransform) -> Poses:
        """People in source pixels; parts not found are ``(0, 0, 0)``."""
        heatmaps, pafs = self.input_scale_maps(outputs, transform)
        people, candidates = group_people(heatmaps, pafs, image_height=heatmaps.shape[0], options=self.options)
        keypoints = np.zeros((len(people), len(KEYPOINT_NAMES), 3), dtype=np.float32)
        for p, row in enumerate(people):
            for part, cid in enumerate(row[: len(KEYPOINT_NAMES)].astype(int)):
                if cid >= 0:
                    x, y, score = candidates[cid]
                    keypoints[p, part] = (*transform.points_to_source(np.array([x, y])), min(max(score, 0.0), 1.0))
        scores = people[:, -2] / np.maximum(people[:, -1], 1)
        return Poses(keypoints, scores, KEYPOINT_NAMES, EDGES)

    def input_scale_maps(self, outputs: dict[str, np.ndarray], transform: ImageTransform):
        """``(heatmaps (h, w, 19), pafs (h, w, 38))`` upsampled by 8 and cropped to the image area."""
        heatmaps, pafs = split_outputs(outputs)
        w, h = (round(s * f) for s, f in zip(transform.source_size, (transform.scale_x, transform.scale_y)))
        return tuple(_upsample(m, STRIDE)[: max(h, 1), : max(w, 1)] for m in (heatmaps, pafs))


def _upsample(chw: np.ndarray, factor: int) -> np.ndarray:
    """``(C, h, w)`` -> ``(h * factor, w * factor, C)`` with bicubic interpolation, as the reference."""
    hwc = np.ascontiguousarray(chw.transpose(1, 2, 0), dtype=np.float32)
    out = cv2.resize(hwc, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return out.reshape(out.shape[0], out.shape[1], -1)


def split_outputs(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(heatmaps (19, h, w), pafs (38, h, w))`` by name, else by channel count (NCHW or NHWC)."""
    if all(name in outputs for name in OUTPUT_NAMES):
        pafs, heatmaps = (np.asarray(outputs[n])[0] for n in OUTPUT_NAMES)
        return heatmaps, pafs
    found = {}
    for t in outputs.values():
        t = np.asarray(t)[0] if np.ndim(t) == 4 else np.asarray(t)
        channels_last = t.ndim == 3 and t.shape[-1] in (19, 38) and t.shape[0] not in (19, 38)
        t = t.transpose(2, 0, 1) if channels_last else t
        if t.ndim == 3 and t.shape[0] in (19, 38):
            found[t.shape[0]] = t
    if set(found) != {19, 38}:
        raise EdgevisionError(
            f"cannot find OpenPose PAFs (38 channels) and heatmaps (19 channels) among outputs "
            f"{ {k: np.shape(v) for k, v in outputs.items()} }."
        )
    return found[19], found[38]
