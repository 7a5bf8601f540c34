"""What checking a cached model against its manifest costs, on a copy of the pulled model.

Every load checks the model's files cheaply (size and mtime against a stamp); a touched
file costs one hash; ``zoo pull`` of a cached model hashes every file. Medians of
``--repeat`` runs, next to the load of the model itself (backend session included).

    python benchmarks/cache_check.py --model nanodet-m --repeat 30
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edgevision.zoo import get_spec, pull, pulled_dir
from edgevision.zoo.assemble import load_predictor


def median_ms(call: Callable[[], object], repeat: int, before: Callable[[], None] = lambda: None) -> float:
    times = []
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def touch_all(folder: Path, files: list[str]) -> Callable[[], None]:
    """Give every file a new, settled mtime (same bytes), so the next check hashes each once."""
    tick = iter(range(10**9))

    def touch() -> None:
        mtime = time.time_ns() - 60 * 10**9 - next(tick)
        for name in files:
            os.utime(folder / name, ns=(mtime, mtime))

    return touch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nanodet-m")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()

    source = pull(args.model)  # pulled into the user cache first if needed; only the copy is touched
    with tempfile.TemporaryDirectory(prefix="edgevision-cache-check-") as tmp:
        os.environ["EDGEVISION_CACHE"] = tmp
        folder = Path(tmp) / "models" / args.model
        shutil.copytree(source, folder)
        files = sorted(json.loads((folder / "manifest.json").read_text())["files"])
        size_mb = sum((folder / name).stat().st_size for name in files) / 1e6
        pulled_dir(args.model)  # stamps the copy
        numbers = {
            "model": args.model,
            "files": len(files),
            "size_mb": round(size_mb, 1),
            "check_stamped_ms": median_ms(lambda: pulled_dir(args.model), args.repeat),
            "check_touched_ms": median_ms(lambda: pulled_dir(args.model), args.repeat, before=touch_all(folder, files)),
            "pull_cached_ms": median_ms(lambda: pull(args.model), args.repeat),
            "load_ms": median_ms(lambda: load_predictor(args.model, threads=1), args.repeat),
        }
    spec = get_spec(args.model)
    print(f"{spec.name}: {numbers['files']} files, {numbers['size_mb']} MB")
    print(f"  check on load, stamps hold     {numbers['check_stamped_ms']:8.3f} ms")
    print(f"  check on load, files touched   {numbers['check_touched_ms']:8.3f} ms  (one hash each)")
    print(f"  zoo pull of the cached model   {numbers['pull_cached_ms']:8.3f} ms  (every file hashed)")
    print(f"  load_predictor (check + session) {numbers['load_ms']:6.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
