"""Comparing a model with its reference: tensor parity, output pairing, model size, task agreement.

Every feature that compares (convert's parity checks, quantize's accuracy budget, bench's
agreement column) uses these functions, so a number means the same thing everywhere.

Tensor parity: per output, max abs difference (relative to the output's magnitude when
above 1), cosine and SQNR. Outputs are paired by name, else by size (converters rename
and reorder outputs).

Detection and pose agreement are COCO APs (computed by faster-coco-eval) of a variant's
predictions, with the reference model's own predictions taken as ground truth:

>>> from edgevision.types import Detections
>>> d = Detections([[10, 10, 50, 80]], [0.9], [0])
>>> detection_agreement([d], [d])
1.0

Conventions, applied the same way to detections and poses:

* Reference objects scored below ``score_floor`` (0.3 by default) are not ground truth:
  they become COCO "crowd" regions, so a candidate object that matches one is neither a
  hit nor a false positive. A weak reference object is a coin toss, not a fact.
* Both sides empty on every image: agreement is 1.0 by definition (nothing to find and
  nothing found).
* A class the candidate reports but the reference never does has AP 0 and counts in the
  mean (plain COCO would skip classes without ground truth and never see it). So a
  candidate that finds objects where the reference finds none scores 0.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, is_dataclass, replace
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.modelfiles import model_files
from edgevision.types import Detections, Poses

logger = logging.getLogger(__name__)

# The accuracy budget everywhere (quantize --precision auto, bench's recommendation, the demo):
# the largest drop of agreement with fp32 a variant may have.
DEFAULT_MAX_DROP = 0.02
SCORE_FLOOR = 0.3
EVAL_THRESHOLD = 0.05  # decoding threshold for agreement, as in COCO-style evaluation
KEYPOINT_FLOOR = 0.3  # reference keypoints below this score are "not labelled"
# COCO's per-keypoint OKS sigmas (cocoapi), for 17-keypoint skeletons.
COCO17_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10.0
)
# Other skeletons (18-keypoint OpenPose, 33-keypoint BlazePose) have no published sigmas:
# every keypoint gets the mean COCO sigma (~0.067), the tolerance of an average body joint.
UNIFORM_SIGMA = float(COCO17_SIGMAS.mean())
# How two outputs were compared: value by value, or as sets of rows (see align_outputs).
INDEX_ALIGNED = "index-aligned"
ROWS_MATCHED = "rows matched"


# ----------------------------------------------------------------------------- parity

FP32_TOLERANCE = 1e-4


@dataclass(frozen=True)
class OutputParity:
    """How one output of the converted model compares with the reference."""

    name: str
    shape: tuple[int, ...]
    max_abs_diff: float
    cosine: float
    scale: float  # largest magnitude in the reference output
    comparison: str = INDEX_ALIGNED  # or "rows matched on '<output>'" for sets of rows (see align_outputs)

    def passes(self, tolerance: float) -> bool:
        """Max abs diff within ``tolerance``, relative to the output's magnitude when over 1."""
        return self.max_abs_diff <= tolerance * max(1.0, self.scale)


@dataclass
class ParityReport:
    """Per-output agreement of an exported file with the PyTorch module it came from."""

    outputs: list[OutputParity]
    tolerance: float = FP32_TOLERANCE
    path: Path | None = None  # the written file; None when parity failed and nothing was written
    seconds: float = 0.0  # export + simplify + check
    file_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(o.passes(self.tolerance) for o in self.outputs)

    def to_dict(self) -> dict:
        """JSON-ready summary: verdict, tolerance and per-output numbers."""
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "seconds": round(self.seconds, 2),
            "file_bytes": self.file_bytes,
            "outputs": [
                {
                    "name": o.name,
                    "shape": list(o.shape),
                    "max_abs_diff": o.max_abs_diff,
                    "cosine": o.cosine,
                    "scale": o.scale,
                    "comparison": o.comparison,
                }
                for o in self.outputs
            ],
        }

    def lines(self) -> list[str]:
        """One line per output: name, shape, max abs diff, cosine, verdict."""
        return [
            f"{o.name:<12} {str(list(o.shape)):<18} max|diff| {o.max_abs_diff:.3e}  cosine {o.cosine:.8f}  "
            f"{'ok' if o.passes(self.tolerance) else 'FAIL'}"
            + (f"  ({o.comparison})" if o.comparison != INDEX_ALIGNED else "")
            for o in self.outputs
        ]

    def table(self) -> str:
        """The lines under a header with the tolerance, verdict, time and size."""
        verdict = "passed" if self.passed else "FAILED"
        head = (
            f"parity {verdict} (tolerance {self.tolerance:.0e} x max(1, |ref|)), "
            f"{self.seconds:.1f} s, {self.file_bytes / 1e6:.1f} MB"
        )
        return "\n".join([head, *self.lines(), *self.notes])


def compare_outputs(
    names: Sequence[str], expected: Sequence[np.ndarray], got: Sequence[np.ndarray]
) -> list[OutputParity]:
    """Max abs diff and cosine similarity of each pair of outputs (sets of rows in matched order)."""
    if len(expected) != len(got):
        raise EdgevisionError(f"the converted model has {len(got)} outputs, the reference {len(expected)}.")
    want = {name: np.asarray(e) for name, e in zip(names, expected)}
    have = {name: np.asarray(g) for name, g in zip(names, got)}
    for name in names:
        if want[name].shape != have[name].shape:
            raise EdgevisionError(
                f"output '{name}' has shape {have[name].shape} after conversion, {want[name].shape} before."
            )
    aligned = align_outputs(want, have)
    return [_compare(name, want[name].shape, *aligned.pairs[name], aligned.comparisons[name]) for name in names]


def _compare(name: str, shape: tuple[int, ...], want: np.ndarray, have: np.ndarray, comparison: str) -> OutputParity:
    a, b = want.astype(np.float64).ravel(), have.astype(np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
    diff = float(np.abs(a - b).max(initial=0.0))
    return OutputParity(name, tuple(shape), diff, cosine, float(np.abs(a).max(initial=0.0)), comparison)


def require_parity(report: ParityReport, reference: str = "PyTorch") -> None:
    """Raise ``EdgevisionError`` with the numbers when ``report`` did not pass."""
    if not report.passed:
        failed = [o for o in report.outputs if not o.passes(report.tolerance)] or report.outputs
        worst = ", ".join(f"{o.name} max|diff| {o.max_abs_diff:.2e} cosine {o.cosine:.6f}" for o in failed)
        raise EdgevisionError(
            f"converted model differs from {reference} beyond {report.tolerance:.0e} ({worst or 'no outputs'}); "
            "conversion refused, nothing was written."
        )


def pair_outputs(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Pair outputs by name, else each reference output with an unused candidate of the same size.

    Converters rename outputs and may reorder them (onnx2tf), so order alone is not enough.

    >>> a, b = pair_outputs({"x": np.zeros(2), "y": np.zeros(3)}, {"p:1": np.ones(3), "p:0": np.ones(2)})
    >>> {k: len(v) for k, v in b.items()}
    {'x': 2, 'y': 3}
    """
    if set(ref) == set(cand):
        return ref, cand
    unused = dict(cand)
    pairs = {}
    for name, tensor in ref.items():
        match = next((k for k, v in unused.items() if v.size == tensor.size), None)
        if match is not None:
            pairs[name] = unused.pop(match)
    return {n: ref[n] for n in pairs}, pairs


# ----------------------------------------------------------------------------- sets of rows

# Outputs after NMS inside a model (boxes [1, 100, 4], scores [1, 100], detections [N, 6])
# are sets: a variant that finds the same objects may list them in another order. Their
# rows are matched to the reference's rows before comparing, and the outputs that list the
# same objects (boxes, scores, classes of one model) take the same order.
MAX_ROW_FEATURES = 16  # [N, K] or [B, N, K] with 2 <= K <= 16 is a set of rows; wider is a feature map
# An index-aligned cosine this close to 1 is kept without matching rows. Any lower, rows are
# matched and the better of the two comparisons kept: even two near-equal boxes that swapped
# places are a difference of order only, which a set comparison must not count.
ALIGNED_ENOUGH = 1 - 1e-9
TIE_BREAK = 1e-3  # weight of the outputs parallel to the anchor when matching rows (see _match_keys)
GREEDY_ABOVE = 2000  # rows: beyond this an exact assignment (cubic time) gives way to a greedy match


@dataclass(frozen=True)
class RowSet:
    """Outputs that list the same N objects: ``anchor`` ([..., N, K] rows) and those indexed alike.

    One matching of rows is made per list, on the anchor's rows (the others break ties), and
    applies to every member.
    """

    anchor: str
    members: tuple[str, ...]  # the anchor first, then outputs shaped [..., N] or [..., N, K']


@dataclass
class Alignment:
    """Reference and candidate outputs in matching order, and how each pair was compared."""

    pairs: dict[str, tuple[np.ndarray, np.ndarray]]
    comparisons: dict[str, str]


def is_row_set(shape: Sequence[int]) -> bool:
    """True for outputs shaped [N, K] or [B, N, K] with 2 <= K <= ``MAX_ROW_FEATURES``.

    >>> is_row_set((1, 100, 4)), is_row_set((0, 6)), is_row_set((1, 84, 8400)), is_row_set((1, 3, 8, 8))
    (True, True, False, False)
    """
    return len(shape) in (2, 3) and 2 <= shape[-1] <= MAX_ROW_FEATURES


def _indexed_alike(shape: Sequence[int], rows: Sequence[int]) -> bool:
    lead = tuple(rows[:-1])
    return tuple(shape) == lead or (len(shape) == len(rows) and tuple(shape[:-1]) == lead)


def find_row_sets(outputs: dict[str, np.ndarray]) -> list[RowSet]:
    """Group a model's set-like outputs: each output of rows with the outputs indexed like it.

    Outputs named like boxes anchor first. A lone vector ([1, 100]) is not a set: it could
    as well be class logits, whose order matters.

    >>> out = {"scores": np.zeros((1, 5)), "boxes": np.zeros((1, 5, 4)), "logits": np.zeros((1, 1000))}
    >>> find_row_sets(out)
    [RowSet(anchor='boxes', members=('boxes', 'scores'))]
    """
    anchors = sorted(
        (n for n, v in outputs.items() if is_row_set(np.shape(v))),
        key=lambda n: ("box" not in n.lower(), np.shape(outputs[n])[-1] != 4),
    )
    taken: set[str] = set()
    found = []
    for anchor in anchors:
        if anchor in taken:
            continue
        rows = np.shape(outputs[anchor])
        members = [anchor] + [
            n for n, v in outputs.items() if n != anchor and n not in taken and _indexed_alike(np.shape(v), rows)
        ]
        taken.update(members)
        found.append(RowSet(anchor, tuple(members)))
    return found


def match_rows(reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(r, c)`` pairing rows ``reference[r]`` with ``candidate[c]`` at least total squared distance.

    An optimal assignment (scipy's ``linear_sum_assignment``) up to ``GREEDY_ABOVE`` rows,
    a greedy nearest-neighbour match beyond. Rows left over when counts differ are unpaired.

    >>> a = np.array([[0.0, 0.0], [5.0, 5.0]])
    >>> [i.tolist() for i in match_rows(a, a[::-1])]
    [[0, 1], [1, 0]]
    """
    if not len(reference) or not len(candidate):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if max(len(reference), len(candidate)) > GREEDY_ABOVE:
        return greedy_match_rows(reference, candidate)
    return _assign(reference, candidate)


def _assign(reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    cost = np.nan_to_num(cdist(reference, candidate, "sqeuclidean"), nan=1e30, posinf=1e30)
    return linear_sum_assignment(cost)


def greedy_match_rows(
    reference: np.ndarray, candidate: np.ndarray, *, neighbours: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Pair rows nearest first among each reference row's ``neighbours`` nearest candidates.

    scipy has no greedy assignment, so it is written here on top of its k-d tree. Rows left
    without a free neighbour are paired among themselves in order.
    """
    from scipy.spatial import cKDTree

    ref, cand = (np.nan_to_num(x, nan=0.0, posinf=1e30, neginf=-1e30) for x in (reference, candidate))
    distance, index = cKDTree(cand).query(ref, k=min(neighbours, len(cand)))
    distance, index = distance.reshape(len(ref), -1), index.reshape(len(ref), -1)
    rows = np.repeat(np.arange(len(ref)), index.shape[1])
    order = np.argsort(distance.ravel(), kind="stable")
    free_ref, free_cand = np.ones(len(ref), bool), np.ones(len(cand), bool)
    pairs = []
    for r, c in zip(rows[order], index.ravel()[order]):
        if free_ref[r] and free_cand[c]:
            free_ref[r] = free_cand[c] = False
            pairs.append((r, c))
    left = zip(np.flatnonzero(free_ref), np.flatnonzero(free_cand))
    matched = sorted(pairs + list(left))
    return np.array([p[0] for p in matched], dtype=np.int64), np.array([p[1] for p in matched], dtype=np.int64)


def _as_rows(value: np.ndarray, lead: tuple[int, ...]) -> np.ndarray:
    """``value`` as [L, N, K]: L lists (batch items) of N rows of K features (K = 1 for vectors)."""
    value = np.asarray(value, dtype=np.float64)
    features = value.shape[-1] if value.ndim == len(lead) + 2 else 1
    return value.reshape(int(np.prod(lead, dtype=np.int64)), value.shape[len(lead)], features)


def _order_rows(ref: np.ndarray, cand: np.ndarray, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of one list in matched order: the pairs, then unpaired rows against zeros."""
    lone_r = np.setdiff1d(np.arange(len(ref)), r)
    lone_c = np.setdiff1d(np.arange(len(cand)), c)
    zero_r = np.zeros((len(lone_c), ref.shape[-1]))
    zero_c = np.zeros((len(lone_r), cand.shape[-1]))
    return (
        np.concatenate([ref[r], ref[lone_r], zero_r]),
        np.concatenate([cand[c], zero_c, cand[lone_c]]),
    )


def _padded(ref: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index-aligned rows, the shorter list padded with zero rows."""
    n = max(ref.shape[1], cand.shape[1])
    pad = lambda x: np.pad(x, ((0, 0), (0, n - x.shape[1]), (0, 0)))  # noqa: E731
    return pad(ref), pad(cand)


def _matched(group: RowSet, ref: dict, cand: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every member's rows reordered by one matching per list (see ``_match_keys``)."""
    ref_keys, cand_keys = _match_keys(group, ref, cand)
    out: dict[str, tuple[list, list]] = {name: ([], []) for name in group.members}
    for i in range(len(ref_keys)):
        r, c = match_rows(ref_keys[i], cand_keys[i])
        for name in group.members:
            a, b = _order_rows(ref[name][i], cand[name][i], r, c)
            out[name][0].append(a)
            out[name][1].append(b)
    return {name: (np.stack(a), np.stack(b)) for name, (a, b) in out.items()}


def _match_keys(group: RowSet, ref: dict, cand: dict) -> tuple[np.ndarray, np.ndarray]:
    """The features rows are matched on: the anchor's, then the other members' weighted to break ties.

    Each member is divided by its largest reference value. Matching on the boxes alone would
    pair two objects with the same box (one box found for two classes) at random; their
    scores and classes, weighted ``TIE_BREAK``, tell them apart without outweighing the boxes.
    """
    scales = [max(float(np.abs(ref[n]).max(initial=0.0)), 1e-12) for n in group.members]
    weights = [1.0] + [TIE_BREAK] * (len(group.members) - 1)
    join = lambda rows: np.concatenate(  # noqa: E731
        [rows[n] * (w / s) for n, s, w in zip(group.members, scales, weights)], axis=-1
    )
    return join(ref), join(cand)


def _mean_cosine_of(pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    return float(np.mean([_tensor_figures(a, b)["cosine"] for a, b in pairs.values()]))


def _fits(group: RowSet, ref: dict, cand: dict) -> bool:
    """The candidate has every member, shaped like the reference's up to the number of rows."""
    lead = np.shape(ref[group.anchor])[:-2]
    rows = np.shape(cand.get(group.anchor, ()))
    if rows[:-2] != lead or len(rows) != len(lead) + 2 or rows[-1] != np.shape(ref[group.anchor])[-1]:
        return False
    return all(
        n in cand
        and _indexed_alike(np.shape(cand[n]), rows)
        and np.shape(cand[n])[len(rows) - 1 :] == np.shape(ref[n])[len(rows) - 1 :]
        for n in group.members
    )


def align_row_set(
    group: RowSet, ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], *, aligned_enough: float = ALIGNED_ENOUGH
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """The group's outputs as [L, N, K] pairs, rows matched when that agrees better than by index."""
    lead = tuple(np.shape(ref[group.anchor])[:-2])
    ref_rows = {n: _as_rows(ref[n], lead) for n in group.members}
    cand_rows = {n: _as_rows(cand[n], lead) for n in group.members}
    by_index = {n: _padded(ref_rows[n], cand_rows[n]) for n in group.members}
    same_count = ref_rows[group.anchor].shape[1] == cand_rows[group.anchor].shape[1]
    index_score = _mean_cosine_of(by_index)
    if same_count and index_score >= aligned_enough:
        return by_index, INDEX_ALIGNED
    matched = _matched(group, ref_rows, cand_rows)
    if _mean_cosine_of(matched) > index_score + 1e-12:  # better beyond rounding
        return matched, ROWS_MATCHED
    return by_index, INDEX_ALIGNED


def align_outputs(
    ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], *, aligned_enough: float = ALIGNED_ENOUGH
) -> Alignment:
    """Pair each reference output with the candidate's; sets of rows in matched order.

    Outputs that are not sets of rows are paired as they are (index-aligned).

    >>> boxes = np.array([[[0.0, 0, 10, 10], [20, 20, 40, 40]]])
    >>> found = align_outputs({"boxes": boxes}, {"boxes": boxes[:, ::-1]})
    >>> found.comparisons["boxes"], bool(np.array_equal(*found.pairs["boxes"]))
    ("rows matched on 'boxes'", True)
    """
    pairs = {n: (np.asarray(ref[n]), np.asarray(cand[n])) for n in ref if n in cand}
    comparisons = dict.fromkeys(pairs, INDEX_ALIGNED)
    for group in find_row_sets(ref):
        if not _fits(group, ref, cand):
            continue
        aligned, how = align_row_set(group, ref, cand, aligned_enough=aligned_enough)
        if how == ROWS_MATCHED:
            pairs.update(aligned)
            comparisons.update(dict.fromkeys(group.members, f"{ROWS_MATCHED} on '{group.anchor}'"))
        elif np.shape(ref[group.anchor]) != np.shape(cand[group.anchor]):
            pairs.update(aligned)  # different numbers of rows: the shorter list padded with zeros
    return Alignment(pairs, comparisons)


def model_bytes(path: Path) -> int:
    """Bytes of a model file and its companions (``.bin`` of OpenVINO IR or ncnn, ONNX external data)."""
    path = Path(path)
    companions = [*model_files(path), path.with_name(path.name + ".data")]
    return sum(p.stat().st_size for p in companions if p.is_file())


# ----------------------------------------------------------------------------- tensors


def tensor_agreement(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output present in both: cosine similarity, SQNR in dB and max abs difference.

    SQNR is ``10 log10(sum(ref^2) / sum((ref - cand)^2))``; identical tensors give ``inf``.

    >>> x = {"y": np.array([1.0, 2.0, 3.0])}
    >>> tensor_agreement(x, x)["y"]["sqnr_db"]
    inf
    """
    return {name: _tensor_figures(ref[name], cand[name]) for name in ref if name in cand}


def _tensor_figures(ref: np.ndarray, cand: np.ndarray) -> dict[str, float]:
    a = np.asarray(ref, dtype=np.float64).ravel()
    b = np.asarray(cand, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"cannot compare tensors of {a.size} and {b.size} values")
    noise = float(np.sum((a - b) ** 2))
    signal = float(np.sum(a**2))
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / norms) if norms > 0 else float(noise == 0)
    sqnr = float("inf") if noise == 0 else 10 * np.log10(max(signal, 1e-30) / noise)
    max_abs = float(np.max(np.abs(a - b))) if a.size else 0.0
    return {"cosine": cosine, "sqnr_db": float(sqnr), "max_abs": max_abs}


def stack_outputs(outputs: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join the outputs of several inferences, per name, into one flat array each."""
    names = outputs[0].keys() if outputs else ()
    return {n: np.concatenate([np.asarray(o[n], dtype=np.float32).ravel() for o in outputs]) for n in names}


def mean_cosine(figures: dict[str, dict[str, float]]) -> float:
    """The mean of the per-output cosines of ``tensor_agreement`` (1.0 when there are none)."""
    values = [f["cosine"] for f in figures.values()]
    return float(np.mean(values)) if values else 1.0


# ----------------------------------------------------------------------------- COCO plumbing


def _quiet(*_args, **_kwargs) -> None:
    return None


def _coco(dataset: dict):
    from faster_coco_eval import COCO

    return COCO(dataset, print_function=_quiet)


def _evaluate(
    gt: dict, results: list[dict], iou_type: str, sigmas: np.ndarray | None = None, image_ids: Sequence[int] = ()
):
    """A finished COCOeval of ``results`` against the in-memory ground truth ``gt``."""
    from faster_coco_eval import COCOeval_faster

    coco_gt = _coco(gt)
    coco_dt = coco_gt.loadRes(results)
    kwargs = {"kpt_oks_sigmas": list(sigmas)} if sigmas is not None else {}
    evaluator = COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=_quiet, **kwargs)
    if image_ids:
        evaluator.params.imgIds = list(image_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    return evaluator


def _per_class_ap(evaluator) -> dict[int, float]:
    """AP@[.5:.95] of every category with ground truth (area "all", largest maxDets)."""
    precision = evaluator.eval["precision"]  # [iou, recall, category, area, maxdets]
    out = {}
    for k, cat in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        if values.size:
            out[int(cat)] = float(values.mean())
    return out


def _agreement(gt: dict, results: list[dict], iou_type: str, sigmas: np.ndarray | None = None) -> float:
    """Mean AP over classes in ground truth or results; classes only in results score 0.

    A class the reference saw only weakly (crowd regions) is left out, as COCO does.
    """
    gt_classes = {a["category_id"] for a in gt["annotations"] if not a["iscrowd"]}
    weak_classes = {a["category_id"] for a in gt["annotations"]} - gt_classes
    counted = gt_classes | ({r["category_id"] for r in results} - weak_classes)
    if not counted:
        return 1.0
    per_class = _per_class_ap(_evaluate(gt, results, iou_type, sigmas)) if gt_classes else {}
    return float(np.mean([per_class.get(c, 0.0) if c in gt_classes else 0.0 for c in counted]))


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, max(x2 - x1, 0.0), max(y2 - y1, 0.0)]


def _gt_dataset(images: int, annotations: list[dict], categories: set[int]) -> dict:
    for i, ann in enumerate(annotations, 1):
        ann["id"] = i
    return {
        "images": [{"id": i, "width": 0, "height": 0} for i in range(images)],
        "annotations": annotations,
        "categories": [{"id": c, "name": str(c)} for c in sorted(categories)],
    }


# ----------------------------------------------------------------------------- detections


def _detection_gt(reference: Sequence[Detections], score_floor: float) -> list[dict]:
    anns = []
    for image_id, dets in enumerate(reference):
        for box, score, cls in zip(dets.xyxy, dets.scores, dets.class_ids):
            xywh = _xywh(box)
            crowd = int(score < score_floor)
            anns.append(
                {
                    "image_id": image_id,
                    "category_id": int(cls),
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": crowd,
                }
            )
    return anns


def _detection_results(candidate: Sequence[Detections]) -> list[dict]:
    return [
        {"image_id": image_id, "category_id": int(cls), "bbox": _xywh(box), "score": float(score)}
        for image_id, dets in enumerate(candidate)
        for box, score, cls in zip(dets.xyxy, dets.scores, dets.class_ids)
    ]


def detection_agreement(
    reference: Sequence[Detections], candidate: Sequence[Detections], *, score_floor: float = SCORE_FLOOR
) -> float:
    """COCO mAP@[.5:.95] of ``candidate`` with ``reference`` (one per image) as ground truth.

    See the module docstring for the score floor and the empty cases.
    """
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference images but {len(candidate)} candidate images")
    anns = _detection_gt(reference, score_floor)
    results = _detection_results(candidate)
    categories = {a["category_id"] for a in anns} | {r["category_id"] for r in results}
    return _agreement(_gt_dataset(len(reference), anns, categories), results, "bbox")


# ----------------------------------------------------------------------------- poses


def oks_sigmas(keypoints: int) -> np.ndarray:
    """COCO's sigmas for 17 keypoints, else ``UNIFORM_SIGMA`` for each keypoint."""
    return COCO17_SIGMAS if keypoints == 17 else np.full(keypoints, UNIFORM_SIGMA)


def _pose_gt(reference: Sequence[Poses], score_floor: float) -> list[dict]:
    anns = []
    for image_id, poses in enumerate(reference):
        boxes = poses.boxes()
        for kps, score, box in zip(poses.keypoints, poses.scores, boxes):
            visible = kps[:, 2] >= KEYPOINT_FLOOR
            flat = np.column_stack([kps[:, :2], np.where(visible, 2, 0)]).ravel()
            xywh = _xywh(box)
            anns.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "keypoints": [float(v) for v in flat],
                    "num_keypoints": int(visible.sum()),
                    "bbox": xywh,
                    "area": max(xywh[2] * xywh[3], 1.0),
                    "iscrowd": int(score < score_floor),
                }
            )
    return anns


def _pose_results(candidate: Sequence[Poses]) -> list[dict]:
    results = []
    for image_id, poses in enumerate(candidate):
        for kps, score in zip(poses.keypoints, poses.scores):
            flat = np.column_stack([kps[:, :2], np.ones(len(kps))]).ravel()
            results.append(
                {"image_id": image_id, "category_id": 1, "keypoints": [float(v) for v in flat], "score": float(score)}
            )
    return results


def pose_agreement(
    reference: Sequence[Poses], candidate: Sequence[Poses], *, score_floor: float = SCORE_FLOOR
) -> float:
    """OKS AP@[.5:.95] of ``candidate`` poses with ``reference`` poses as ground truth.

    Reference keypoints scored below 0.3 are unlabelled (COCO visibility 0); people scored
    below ``score_floor`` are crowd regions. 17-keypoint skeletons use COCO's sigmas,
    others ``UNIFORM_SIGMA``.
    """
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference images but {len(candidate)} candidate images")
    anns = [a for a in _pose_gt(reference, score_floor) if a["num_keypoints"] > 0 or a["iscrowd"]]
    results = _pose_results(candidate)
    keypoints = _keypoint_count(reference, candidate)
    gt = _gt_dataset(len(reference), anns, {1})
    gt["categories"][0]["keypoints"] = [str(i) for i in range(keypoints)]
    if not anns and not results:
        return 1.0
    return _agreement(gt, results, "keypoints", oks_sigmas(keypoints))


def _keypoint_count(*groups: Sequence[Poses]) -> int:
    for group in groups:
        for poses in group:
            return len(poses.keypoint_names)
    return 17


# ----------------------------------------------------------------------------- real ground truth


def coco_ap_against_ground_truth(
    predictions: Sequence[Detections] | Sequence[Poses],
    annotations_json: str | Path | dict,
    image_ids: Sequence[int],
) -> dict[str, float]:
    """COCO AP figures of ``predictions`` (one per entry of ``image_ids``) against a COCO file.

    Detections are matched to the file's categories by class name when both have names,
    else their class id is used as the category id. Returns ``map`` (AP@[.5:.95]), ``map50``
    and ``map75``.
    """
    if len(predictions) != len(image_ids):
        raise ValueError(f"{len(predictions)} predictions for {len(image_ids)} image ids")
    gt = annotations_json if isinstance(annotations_json, dict) else json.loads(Path(annotations_json).read_text())
    is_pose = any(isinstance(p, Poses) for p in predictions)
    results = (
        _pose_results_for(predictions, gt, image_ids) if is_pose else _detection_results_for(predictions, gt, image_ids)
    )
    sigmas = oks_sigmas(_keypoint_count(predictions)) if is_pose else None
    evaluator = _evaluate(gt, results, "keypoints" if is_pose else "bbox", sigmas, image_ids)
    evaluator.summarize()
    stats = evaluator.stats
    return {"map": float(stats[0]), "map50": float(stats[1]), "map75": float(stats[2])}


def _category_lookup(gt: dict, class_names: Sequence[str]) -> dict[int, int]:
    by_name = {c["name"]: c["id"] for c in gt.get("categories", [])}
    return {i: by_name[n] for i, n in enumerate(class_names) if n in by_name}


def _detection_results_for(predictions: Sequence[Detections], gt: dict, image_ids: Sequence[int]) -> list[dict]:
    results = []
    for image_id, dets in zip(image_ids, predictions):
        lookup = _category_lookup(gt, dets.class_names)
        for row in _detection_results([dets]):
            row["image_id"] = image_id
            row["category_id"] = lookup.get(row["category_id"], row["category_id"]) if lookup else row["category_id"]
            results.append(row)
    return results


def _pose_results_for(predictions: Sequence[Poses], gt: dict, image_ids: Sequence[int]) -> list[dict]:
    person = next((c["id"] for c in gt.get("categories", []) if c.get("name") == "person"), 1)
    results = []
    for image_id, poses in zip(image_ids, predictions):
        for row in _pose_results([poses]):
            results.append({**row, "image_id": image_id, "category_id": person})
    return results


# ----------------------------------------------------------------------------- one metric per task


def evaluation_processor(processor):
    """The processor with a low score threshold, as mAP evaluation wants (None without a task).

    Both sides are decoded down to ``EVAL_THRESHOLD``; the reference's objects below the
    metric's score floor become ignore regions. With the deployment threshold on both sides,
    an object at 0.36 in float and 0.34 in int8 would count as lost.
    """
    if processor is None or processor.task not in ("detection", "pose"):
        return None
    if is_dataclass(processor) and hasattr(processor, "score_threshold"):
        return replace(processor, score_threshold=min(EVAL_THRESHOLD, processor.score_threshold))
    if hasattr(processor, "with_score_threshold"):  # a model card's processor
        return processor.with_score_threshold(min(EVAL_THRESHOLD, processor.card.score_threshold))
    return processor


METRICS = {
    "detection": "detection mAP@[.5:.95] vs fp32",
    "pose": "pose OKS AP vs fp32",
    "raw": "mean output cosine vs fp32",  # sets of rows compared in matched order (see raw_agreement)
}


def metric_name(task: str) -> str:
    """The label of the agreement measured for ``task`` (raw-output cosine for unknown tasks)."""
    return METRICS.get(task, METRICS["raw"])


def task_agreement(task: str, reference: Sequence, candidate: Sequence) -> float:
    """Agreement of decoded ``candidate`` predictions with ``reference`` ones (one per image).

    Detection: COCO mAP@[.5:.95]; pose: OKS AP; anything else must be raw output dicts,
    compared by ``raw_agreement``.
    """
    if task == "detection":
        return detection_agreement(reference, candidate)
    if task == "pose":
        return pose_agreement(reference, candidate)
    return raw_agreement(reference, candidate).value


@dataclass
class RawAgreement:
    """Agreement of undecoded outputs: the mean per-output cosine, and how each output was compared."""

    value: float
    figures: dict[str, dict[str, float]]  # per output: cosine, sqnr_db, max_abs (see tensor_agreement)
    comparisons: dict[str, str]  # per output: "index-aligned" or "rows matched on '<output>'"

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "outputs": {n: {**f, "comparison": self.comparisons[n]} for n, f in self.figures.items()},
        }


def raw_agreement(reference: Sequence[dict], candidate: Sequence[dict]) -> RawAgreement:
    """Mean per-output cosine of ``candidate`` outputs with ``reference`` ones (one dict per image).

    Outputs are paired by ``pair_outputs``. Outputs that are sets of rows (see
    ``align_outputs``) are compared in matched order, image by image, when that agrees
    better than index order (matching never lowers the index-aligned score):

    >>> boxes = np.array([[[0.0, 0, 10, 10], [20, 20, 40, 40]]])
    >>> ref = [{"boxes": boxes, "scores": np.array([[0.9, 0.8]])}]
    >>> swapped = [{"boxes": boxes[:, ::-1], "scores": np.array([[0.8, 0.9]])}]
    >>> found = raw_agreement(ref, swapped)
    >>> round(found.value, 6), found.comparisons["scores"]
    (1.0, "rows matched on 'boxes'")
    """
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference images but {len(candidate)} candidate images")
    aligned = [align_outputs(*pair_outputs(r, c)) for r, c in zip(reference, candidate)]
    names = [n for n in (aligned[0].pairs if aligned else {}) if all(n in a.pairs for a in aligned)]
    figures = {
        n: _tensor_figures(
            np.concatenate([np.ravel(a.pairs[n][0]) for a in aligned]),
            np.concatenate([np.ravel(a.pairs[n][1]) for a in aligned]),
        )
        for n in names
    }
    comparisons = {
        n: next((a.comparisons[n] for a in aligned if a.comparisons[n] != INDEX_ALIGNED), INDEX_ALIGNED) for n in names
    }
    result = RawAgreement(mean_cosine(figures), figures, comparisons)
    logger.debug("raw agreement %.6f, compared %s", result.value, comparisons)
    return result


def check_parity(
    expected: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    *,
    tolerance: float = FP32_TOLERANCE,
    reference: str = "the source",
) -> ParityReport:
    """Compare outputs by name; raise ``EdgevisionError`` with the numbers when one is missing or off.

    >>> x = {"y": np.array([1.0, 2.0])}
    >>> check_parity(x, {"y": x["y"] + 1e-6}).passed
    True
    """
    missing = [n for n in expected if n not in got]
    if missing:
        raise EdgevisionError(
            f"the converted model lacks outputs {missing} (it has {sorted(got)}); conversion refused."
        )
    names = list(expected)
    report = ParityReport(compare_outputs(names, [expected[n] for n in names], [got[n] for n in names]), tolerance)
    require_parity(report, reference)
    return report
