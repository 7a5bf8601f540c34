"""How far LiteRT's default kernels (XNNPACK) are from its reference kernels, on one .tflite file.

    python tools/litert_kernels.py build/aarch64/in/nanodet-m-litert-int8.tar.gz photo1.jpg photo2.jpg

Feeds each image, pre-processed as edgevision feeds the model (the file's zoo decoder or
card), to two LiteRT interpreters on the same file: one with the reference kernels
(``BUILTIN_REF``, which compute int8 exactly as the TFLite spec says, alike on every CPU),
one as edgevision runs it (``AUTO``: XNNPACK and the optimised built-in kernels). Prints, per
output, the SQNR of the default kernels against the reference (higher: closer), over all
images. Run it on two machines (here and on a board, or under tools/aarch64-check's arm64
root) to see that their default kernels differ from the reference, each in its own way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np


def interpreter(path: Path, resolver: str):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    engine = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType[resolver], num_threads=2)
    engine.allocate_tensors()
    return engine


def run(engine, tensor: np.ndarray) -> dict[str, np.ndarray]:
    (feed,) = engine.get_input_details()
    engine.set_tensor(feed["index"], tensor.astype(feed["dtype"]))
    engine.invoke()
    return {d["name"]: engine.get_tensor(d["index"]).astype(np.float64) for d in engine.get_output_details()}


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((reference - other) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference**2)) / noise)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .tflite file, or a bundle holding one")
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args()

    from edgevision.bundles import is_bundle, open_bundle
    from edgevision.zoo.assemble import load_predictor

    path = open_bundle(Path(args.model)) if is_bundle(Path(args.model)) else Path(args.model)
    if path.suffix != ".tflite":
        print(f"{path.name} is not a .tflite file", file=sys.stderr)
        return 2
    predictor = load_predictor(str(path), backend="litert")
    reference, default = interpreter(path, "BUILTIN_REF"), interpreter(path, "AUTO")
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for image_path in args.images:
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"cannot read {image_path}", file=sys.stderr)
            return 2
        tensor, _ = predictor.processor.preprocess(image)
        want, have = run(reference, tensor), run(default, tensor)
        for name in want:
            pairs.setdefault(name, []).append((want[name], have[name]))
    print(f"{path.name}: default kernels (XNNPACK) against the reference kernels, {len(args.images)} image(s)")
    for name, found in pairs.items():
        want = np.concatenate([w.ravel() for w, _ in found])
        have = np.concatenate([h.ravel() for _, h in found])
        print(f"  {name}: SQNR {sqnr_db(want, have):.1f} dB, max abs difference {np.max(np.abs(want - have)):.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
