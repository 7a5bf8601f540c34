"""Pipeline throughput on the sample video against the model alone, same variant and threads.

The model-only number runs the predictor (pre-process, inference, decode) back to back on
frames already in memory. The pipeline number is ``run_pipeline`` on the video file with
tracking, a zone, a line, an annotated video and JSON lines: decoding, tracking, drawing
and encoding should hide behind inference (target: at least 0.95x). Rounds alternate so
that load from other processes hits both alike; medians are reported.

Hiding works only while the CPU has room: both runs also count the CPU time the process
used per frame (every thread, the encoder's included; for the pipeline, only while frames
flow, sampled through its progress callback). The pipeline cannot beat
``cores / its CPU per frame`` frames a second, so the script prints the ratio that bound
allows next to the measured one: when inference already fills every core, the rest of
the pipeline's CPU has to come out of inference's share.

``--isolate`` runs the pipeline's inference in worker processes (``run --isolate``) and
the in-process pipeline in the same rounds; the model alone stays in this process, as
``bench`` times it.

``--workers N`` runs N copies of the model, sharing ``--threads``, on successive frames in
both runs: the model alone then infers N frames at once on N threads, and so does the
pipeline's inference stage (``run --workers``). The script also times one copy with all
the threads, to show what the copies gain.

    python benchmarks/pipeline_throughput.py --model nanodet-m --threads 2 --frames 300 --rounds 3
    python benchmarks/pipeline_throughput.py --workers 2
    python benchmarks/pipeline_throughput.py --threads 1 --isolate
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2

from edgevision.errors import EdgevisionError
from edgevision.files import write_atomic
from edgevision.pipeline.run import RunConfig, RunOutputs, run_pipeline
from edgevision.pipeline.zones import parse_line, parse_zone
from edgevision.samples import sample_path
from edgevision.zoo.assemble import close_workers, load_predictor, load_workers
from edgevision.zoo.isolate import worker_processes

ZONE = "path:300,185,420,185,420,330,300,310"
LINE = "crossing:560,170,560,420"
PARTS = ("tracking", "video")  # what --without can leave out


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


def model_only_fps(predictors: list, frames: list) -> tuple[float, float]:
    """Frames a second of the model alone, and the CPU milliseconds (all threads) per frame.

    One predictor runs the frames back to back; with several, each runs every n-th frame
    on its own thread, as ``run --workers`` does.
    """

    def work(predictor, images: list) -> None:
        for image in images:
            predictor(image)

    step = len(predictors)
    threads = [threading.Thread(target=work, args=(p, frames[i::step])) for i, p in enumerate(predictors)]
    start, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(frames) / (time.perf_counter() - start), (time.process_time() - cpu) * 1e3 / len(frames)


def pipeline_run(
    predictors: list, video: Path, frames: int, workdir: Path, *, without: frozenset = frozenset()
) -> dict:
    """``run_pipeline``'s summary, with the CPU milliseconds (all threads) per frame as ``cpu_ms``.

    ``without`` leaves parts out to see what each costs: ``tracking`` (and with it the zone
    and line, which need tracks), ``video`` (the annotated video: no drawing, no encoding).
    """
    if "tracking" in without:
        config = RunConfig(max_frames=frames, track=False)
    else:
        config = RunConfig(zones=(parse_zone(ZONE),), lines=(parse_line(LINE),), max_frames=frames)
    outputs = RunOutputs(
        video=None if "video" in without else workdir / "annotated.mp4",
        json_lines=str(workdir / "detections.jsonl"),
        events=None if "tracking" in without else workdir / "events.jsonl",
    )
    samples: list[tuple[int, float]] = []  # (frames done, process CPU seconds) while frames flow
    config = replace(config, progress_every=0.2)
    pids = [w.process.pid for w in worker_processes(predictors)]

    def cpu_now() -> float:
        return time.process_time() + sum(map(process_cpu_seconds, pids))

    cpu = cpu_now()
    summary = run_pipeline(
        predictors, str(video), config, outputs, on_progress=lambda p: samples.append((p.frames, cpu_now()))
    ).to_dict()
    whole = (cpu_now() - cpu) * 1e3 / max(summary["frames"], 1)
    return {**summary, "cpu_ms": steady_cpu_ms(samples, whole)}


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system, every thread) process ``pid`` has used: a worker process's
    CPU counts in the pipeline's, though ``time.process_time`` sees only this process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steady_cpu_ms(samples: list[tuple[int, float]], whole_run_ms: float) -> float:
    """CPU milliseconds a frame between the first and the last ``(frames done, CPU seconds)``
    sample taken while frames flowed: the run's setup and teardown (opening the video,
    closing and syncing the outputs, about 0.6 s here) are left out, as the fps leaves them
    out. A run too short for two samples gives ``whole_run_ms``.

    >>> steady_cpu_ms([(0, 0.5), (10, 1.0), (60, 3.0), (110, 5.0)], 55.0)
    40.0
    >>> steady_cpu_ms([(12, 1.0)], 55.0)
    55.0
    """
    moving = [(frames, cpu) for frames, cpu in samples if frames > 0]
    if len(moving) < 2 or moving[-1][0] == moving[0][0]:
        return whole_run_ms
    (f0, c0), (f1, c1) = moving[0], moving[-1]
    return (c1 - c0) * 1e3 / (f1 - f0)


def cpu_bound_ratio(model_fps: float, pipeline_cpu_ms: float, cores: int) -> float:
    """The highest pipeline/model ratio ``cores`` allow when each frame costs ``pipeline_cpu_ms``
    of CPU: at most ``cores * 1000 / pipeline_cpu_ms`` frames a second, never above the model's.

    >>> cpu_bound_ratio(40.0, 60.0, 2)  # 2 cores at 60 ms of CPU a frame: 33.3 fps at most
    0.833
    >>> cpu_bound_ratio(40.0, 20.0, 2)
    1.0
    """
    return round(min(1.0, cores * 1e3 / pipeline_cpu_ms / model_fps), 3)


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nanodet-m")
    parser.add_argument("--backend", default=None)
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--frames", type=positive, default=300, help="frames of vtest.avi per round (795 = all)")
    parser.add_argument("--rounds", type=positive, default=3)
    parser.add_argument(
        "--workers", type=positive, default=1, help="copies of the model inferring frames at once, sharing --threads"
    )
    parser.add_argument(
        "--isolate", action="store_true", help="the pipeline infers in worker processes (run --isolate)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument(
        "--without",
        action="append",
        choices=PARTS,
        default=[],
        help="leave a part of the pipeline out (repeatable): tracking (with the zone and line), video",
    )
    args = parser.parse_args()
    if args.json is not None and not args.json.parent.is_dir():
        parser.error(f"--json: folder {args.json.parent} does not exist")  # found now, not after the run

    try:
        options = {"backend": args.backend, "threads": args.threads}
        predictor = load_predictor(args.model, **options)
        # as `run --workers` loads them (OpenVINO: one model with a stream per worker)
        copies = [predictor] if args.workers == 1 else load_workers(args.model, workers=args.workers, **options)
        each = copies[0].backends[0].threads
        isolated = load_workers(args.model, workers=args.workers, isolate=True, **options) if args.isolate else []
    except EdgevisionError as exc:
        parser.error(str(exc))
    try:
        measure(args, predictor, copies, isolated, each)
    finally:
        close_workers(isolated)


def measure(args: argparse.Namespace, predictor, copies: list, isolated: list, each: int | None) -> None:
    """Time the rounds and print (and write) the numbers."""
    video = sample_path("vtest.avi")
    frames = read_frames(video, args.frames)
    for p in {id(p): p for p in [predictor, *copies, *isolated]}.values():
        for image in frames[:5]:
            p(image)  # warm-up: the first inferences are slower
    model, model_cpu, runs, single, single_runs, in_process = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            fps, cpu_ms = model_only_fps(copies, frames)
            model.append(fps)
            model_cpu.append(cpu_ms)
            if len(copies) > 1:
                single.append(model_only_fps([predictor], frames)[0])
                single_runs.append(
                    pipeline_run([predictor], video, len(frames), Path(tmp), without=frozenset(args.without))
                )
            without = frozenset(args.without)
            if isolated:
                in_process.append(pipeline_run(copies, video, len(frames), Path(tmp), without=without))
            runs.append(pipeline_run(isolated or copies, video, len(frames), Path(tmp), without=without))
            print(
                f"round {round_ + 1}: model-only {fps:.2f} fps ({cpu_ms:.1f} ms CPU a frame), "
                f"pipeline {runs[-1]['fps']:.2f} fps ({runs[-1]['cpu_ms']:.1f} ms CPU a frame)"
                + (
                    f"; one copy on {args.threads} threads: alone {single[-1]:.2f} fps, "
                    f"pipeline {single_runs[-1]['fps']:.2f} fps"
                    if single
                    else ""
                )
                + (f"; in-process pipeline {in_process[-1]['fps']:.2f} fps" if in_process else ""),
                flush=True,
            )
    cores = len(os.sched_getaffinity(0))
    result = {
        "model": args.model,
        "backend": args.backend or "default",
        "threads": args.threads,
        "workers": len(copies),
        "threads_per_worker": each,
        "frames": len(frames),
        "model_only_fps": round(statistics.median(model), 2),
        "pipeline_fps": round(statistics.median(r["fps"] for r in runs), 2),
        "latency_p50_ms": round(statistics.median(r["latency_p50_ms"] for r in runs), 1),
        "latency_p95_ms": round(statistics.median(r["latency_p95_ms"] for r in runs), 1),
        "events": runs[-1]["event_counts"],
        "without": sorted(set(args.without)),
        "cores": cores,
        "model_cpu_ms": round(statistics.median(model_cpu), 2),
        "pipeline_cpu_ms": round(statistics.median(r["cpu_ms"] for r in runs), 2),
        "stage_ms": {k: statistics.median(r["stage_ms"][k] for r in runs) for k in runs[-1]["stage_ms"]},
    }
    if in_process:
        result["isolated"] = True
        result["in_process_pipeline_fps"] = round(statistics.median(r["fps"] for r in in_process), 2)
    if single:
        result["one_copy_fps"] = round(statistics.median(single), 2)
        result["one_copy_pipeline_fps"] = round(statistics.median(r["fps"] for r in single_runs), 2)
    result["ratio"] = round(result["pipeline_fps"] / result["model_only_fps"], 3)
    result["cpu_bound_ratio"] = cpu_bound_ratio(result["model_only_fps"], result["pipeline_cpu_ms"], cores)
    print(
        f"{args.model} ({result['backend']}, {args.threads} threads"
        f"{f' in {len(copies)} workers of {each}' if len(copies) > 1 else ''}"
        f"{', inference in worker processes' if isolated else ''}, "
        f"{len(frames)} frames, median of {args.rounds}"
        f"{''.join(f', without {part}' for part in result['without'])}): "
        f"model-only {result['model_only_fps']} fps, pipeline {result['pipeline_fps']} fps "
        f"({result['ratio']:.2f}x; target >= 0.95x); end-to-end latency p50 {result['latency_p50_ms']} ms, "
        f"p95 {result['latency_p95_ms']} ms; events {result['events']}"
    )
    stages = ", ".join(f"{k} {v:.1f}" for k, v in result["stage_ms"].items())
    print(
        f"CPU a frame: model alone {result['model_cpu_ms']} ms, pipeline {result['pipeline_cpu_ms']} ms "
        f"(stage wall times: {stages} ms); {cores} cores allow at most {result['cpu_bound_ratio']:.2f}x"
    )
    if single:
        print(
            f"{len(copies)} workers against one copy on {args.threads} threads, same rounds: model alone "
            f"{result['model_only_fps']} against {result['one_copy_fps']} fps "
            f"({result['model_only_fps'] / result['one_copy_fps']:.2f}x), pipeline {result['pipeline_fps']} "
            f"against {result['one_copy_pipeline_fps']} fps "
            f"({result['pipeline_fps'] / result['one_copy_pipeline_fps']:.2f}x); the workers' pipeline is "
            f"{result['pipeline_fps'] / result['one_copy_fps']:.2f}x one copy's model-only fps"
        )
    if in_process:
        print(
            f"worker processes against inference in this process, same rounds: pipeline {result['pipeline_fps']} "
            f"against {result['in_process_pipeline_fps']} fps "
            f"({result['in_process_pipeline_fps'] / result['model_only_fps']:.2f}x the model alone in this process)"
        )
    if args.json:
        write_atomic(args.json, (json.dumps(result, indent=2) + "\n").encode())
    print(f"pipeline/model throughput ratio: {result['ratio']:.2f}")


if __name__ == "__main__":
    main()
