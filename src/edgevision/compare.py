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
                }
                for o in self.outputs
            ],
        }

    def lines(self) -> list[str]:
        """One line per output: name, shape, max abs diff, cosine, verdict."""
        return [
            f"{o.name:<12} {str(list(o.shape)):<18} max|diff| {o.max_abs_diff:.3e}  cosine {o.cosine:.8f}  "
            f"{'ok' if o.passes(self.tolerance) else 'FAIL'}"
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
    """Max abs diff and cosine similarity of each pair of outputs."""
    if len(expected) != len(got):
        raise EdgevisionError(f"the converted model has {len(got)} outputs, the reference {len(expected)}.")
    return [_compare(name, np.asarray(e), np.asarray(g)) for name, e, g in zip(names, expected, got)]


def _compare(name: str, want: np.ndarray, have: np.ndarray) -> OutputParity:
    if want.shape != have.shape:
        raise EdgevisionError(f"output '{name}' has shape {have.shape} after conversion, {want.shape} before.")
    a, b = want.astype(np.float64).ravel(), have.astype(np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
    diff = float(np.abs(a - b).max(initial=0.0))
    return OutputParity(name, tuple(want.shape), diff, cosine, float(np.abs(a).max(initial=0.0)))


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


def model_bytes(path: Path) -> int:
    """Bytes of a model file and its companions (``.bin`` of OpenVINO IR, ONNX external data)."""
    path = Path(path)
    companions = [
        path,
        path.with_suffix(".bin") if path.suffix == ".xml" else None,
        path.with_name(path.name + ".data"),
    ]
    return sum(p.stat().st_size for p in companions if p is not None and p.is_file())


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
    "raw": "mean output cosine vs fp32",
}


def metric_name(task: str) -> str:
    """The label of the agreement measured for ``task`` (raw-output cosine for unknown tasks)."""
    return METRICS.get(task, METRICS["raw"])


def task_agreement(task: str, reference: Sequence, candidate: Sequence) -> float:
    """Agreement of decoded ``candidate`` predictions with ``reference`` ones (one per image).

    Detection: COCO mAP@[.5:.95]; pose: OKS AP; anything else must be raw output dicts,
    compared by the mean per-output cosine after pairing outputs.
    """
    if task == "detection":
        return detection_agreement(reference, candidate)
    if task == "pose":
        return pose_agreement(reference, candidate)
    ref, cand = pair_outputs(stack_outputs(reference), stack_outputs(candidate))
    return mean_cosine(tensor_agreement(ref, cand))


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
