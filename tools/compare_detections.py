"""Compare two `edgevision predict --json` files of the same images: same objects, boxes within a pixel.

    python tools/compare_detections.py host.jsonl arm64.jsonl --label ort-int8

Objects are matched per image by label and box overlap (IoU >= 0.9 after sorting by score).
Prints one line; exits 1 when an image has other objects or a box moved more than --tolerance
pixels or a score more than 0.01. Used by tools/aarch64-check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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
    parser.add_argument("--tolerance", type=float, default=1.0, help="largest box corner shift in pixels")
    args = parser.parse_args()
    host, other = read(args.host), read(args.other)
    if set(host) != set(other):
        print(f"   {args.label}: different images: {sorted(set(host) ^ set(other))}")
        return 1
    compared = {name: differences(host[name], other[name], args.tolerance) for name in host}
    problems = {name: found for name, (found, _) in compared.items() if found}
    objects = sum(len(v) for v in host.values())
    if problems:
        print(f"   {args.label}: DIFFERENT on {len(problems)} of {len(host)} images: {problems}")
        return 1
    worst = max((shift for _, shift in compared.values()), default=0.0)
    print(f"   {args.label}: same {objects} objects on {len(host)} images as here (largest box shift {worst:.2f} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
