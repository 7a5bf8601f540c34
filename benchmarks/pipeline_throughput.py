"""Pipeline throughput on the sample video against the model alone, same variant and threads.

The model-only number runs the predictor (pre-process, inference, decode) back to back on
frames already in memory. The pipeline number is ``run_pipeline`` on the video file with
tracking, a zone, a line, an annotated video and JSON lines: decoding, tracking, drawing
and encoding should hide behind inference (target: at least 0.95x). Rounds alternate so
that load from other processes hits both alike; medians are reported.

    python benchmarks/pipeline_throughput.py --model nanodet-m --threads 2 --frames 300 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from edgevision.pipeline.run import RunConfig, RunOutputs, run_pipeline
from edgevision.pipeline.zones import parse_line, parse_zone
from edgevision.samples import sample_path
from edgevision.zoo.assemble import load_predictor

ZONE = "path:300,185,420,185,420,330,300,310"
LINE = "crossing:560,170,560,420"


def read_frames(path: Path, count: int) -> list:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def model_only_fps(predictor, frames: list) -> float:
    start = time.perf_counter()
    for image in frames:
        predictor(image)
    return len(frames) / (time.perf_counter() - start)


def pipeline_run(predictor, video: Path, frames: int, workdir: Path) -> dict:
    config = RunConfig(zones=(parse_zone(ZONE),), lines=(parse_line(LINE),), max_frames=frames)
    outputs = RunOutputs(
        video=workdir / "annotated.mp4", json_lines=str(workdir / "detections.jsonl"), events=workdir / "events.jsonl"
    )
    return run_pipeline(predictor, str(video), config, outputs).to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nanodet-m")
    parser.add_argument("--backend", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=300, help="frames of vtest.avi per round (795 = all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    video = sample_path("vtest.avi")
    predictor = load_predictor(args.model, backend=args.backend, threads=args.threads)
    frames = read_frames(video, args.frames)
    for image in frames[:5]:
        predictor(image)  # warm-up: the first inferences are slower
    model, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            model.append(model_only_fps(predictor, frames))
            runs.append(pipeline_run(predictor, video, len(frames), Path(tmp)))
            print(f"round {round_ + 1}: model-only {model[-1]:.2f} fps, pipeline {runs[-1]['fps']:.2f} fps", flush=True)
    result = {
        "model": args.model,
        "backend": args.backend or "default",
        "threads": args.threads,
        "frames": len(frames),
        "model_only_fps": round(statistics.median(model), 2),
        "pipeline_fps": round(statistics.median(r["fps"] for r in runs), 2),
        "latency_p50_ms": statistics.median(r["latency_p50_ms"] for r in runs),
        "latency_p95_ms": statistics.median(r["latency_p95_ms"] for r in runs),
        "events": runs[-1]["event_counts"],
    }
    result["ratio"] = round(result["pipeline_fps"] / result["model_only_fps"], 3)
    print(
        f"{args.model} ({result['backend']}, {args.threads} threads, {len(frames)} frames, median of {args.rounds}): "
        f"model-only {result['model_only_fps']} fps, pipeline {result['pipeline_fps']} fps "
        f"({result['ratio']:.2f}x; target >= 0.95x); end-to-end latency p50 {result['latency_p50_ms']} ms, "
        f"p95 {result['latency_p95_ms']} ms; events {result['events']}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"pipeline/model throughput ratio: {result['ratio']:.2f}")


if __name__ == "__main__":
    main()
