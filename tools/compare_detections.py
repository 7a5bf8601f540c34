"""Compare two `edgevision predict --json` files of the same images, the first taken as ground truth.

    python tools/compare_detections.py host.jsonl arm64.jsonl --label ort-int8

Prints one line: the agreement (COCO mAP@[.5:.95] of the second file's detections with the
first's as ground truth, as edgevision measures a quantized variant against fp32: the first
file's objects scored under 0.3 are ignore regions, so take both with `predict
--score-threshold 0.05`), the largest box shift, and the objects of score 0.3 or more that
differ (another count, label, a box moved more than --tolerance pixels or a score more than 0.01). Exits 1 when the agreement is below
--min-agreement. Two CPU architectures do not compute bit for bit alike: their kernels sum in
another order, and int8 requantization rounds on other instructions, so objects near the
score threshold can come and go. Used by tools/aarch64-check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SHOWN = 0.3  # objects listed as differing: those the agreement does not ignore (edgevision.compare.SCORE_FLOOR)


def read(path: Path) -> dict[str, list[dict]]:
    frames = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {f.get("name") or f"{f['source']}#{f['frame']}": f.get("objects", []) for f in frames}


def differences(host: list[dict], other: list[dict], tolerance: float) -> tuple[list[str], float]:
    """What differs between two images' objects (paired in label and position order), and the largest box shift."""
    if len(host) != len(other):
        return [f"{len(host)} objects here, {len(other)} there"], float("inf")
    found, worst = [], 0.0
    key = lambda o: (o["label"], round(o["box"][0]), round(o["box"][1]))
    for a, b in zip(sorted(host, key=key), sorted(other, key=key)):
        shift = max(abs(x - y) for x, y in zip(a["box"], b["box"]))
        worst = max(worst, shift)
        if a["label"] != b["label"] or shift > tolerance or abs(a["score"] - b["score"]) > 0.01:
            found.append(f"{a['label']} {a['score']:.3f} vs {b['label']} {b['score']:.3f}, box moved {shift:.1f} px")
    return found, worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host", type=Path)
    parser.add_argument("other", type=Path)
    parser.add_argument("--label", default="")
    parser.add_argument("--tolerance", type=float, default=1.0, help="box corner shift in pixels shown as a difference")
    parser.add_argument("--min-agreement", type=float, default=0.98, help="agreement below which it fails")
    args = parser.parse_args()
    host, other = read(args.host), read(args.other)
    if set(host) != set(other):
        print(f"   {args.label}: different images: {sorted(set(host) ^ set(other))}")
        return 1
    sure = {name: [o for o in objects if o["score"] >= SHOWN] for name, objects in host.items()}
    also = {name: [o for o in objects if o["score"] >= SHOWN] for name, objects in other.items()}
    compared = {name: differences(sure[name], also[name], args.tolerance) for name in host}
    problems = {name: found for name, (found, _) in compared.items() if found}
    objects = sum(len(v) for v in sure.values())
    worst = max((shift for _, shift in compared.values() if shift != float("inf")), default=0.0)
    score = agreement(host, other)
    verdict = "agrees" if score >= args.min_agreement else "DISAGREES"
    detail = f"; differing: {problems}" if problems else ""
    print(
        f"   {args.label}: {verdict}, agreement {score:.3f} on {objects} objects in {len(host)} images "
        f"(largest box shift {worst:.2f} px){detail}"
    )
    return 0 if score >= args.min_agreement else 1


def agreement(host: dict[str, list[dict]], other: dict[str, list[dict]]) -> float:
    """COCO mAP@[.5:.95] of ``other`` with ``host`` as ground truth (edgevision.compare)."""
    import numpy as np

    from edgevision.compare import detection_agreement
    from edgevision.types import Detections

    labels = sorted({o["label"] for objects in (*host.values(), *other.values()) for o in objects})

    def detections(objects: list[dict]) -> Detections:
        return Detections(
            np.array([o["box"] for o in objects], np.float32).reshape(-1, 4),
            np.array([o["score"] for o in objects], np.float32),
            np.array([labels.index(o["label"]) for o in objects], np.int64),
        )

    names = sorted(host)
    return detection_agreement([detections(host[n]) for n in names], [detections(other[n]) for n in names])


if __name__ == "__main__":
    sys.exit(main())
