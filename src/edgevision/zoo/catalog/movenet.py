"""The zoo entries of the movenet family: pinned sources, licence, files and wiring.

A pull converts the TF.js graph to ONNX (``model.onnx``, the full graph: one output, its
decoding inside) and cuts that graph at its head maps with ``onnx.utils.Extractor``
(``HEADS_FILE``, what the zoo runs); ``MoveNetProcessor`` decodes the maps in numpy as the
full graph did. The cut is refused unless its decoded output matches the full graph's.

The file the zoo runs is named for what it holds: a cache pulled by an edgevision that ran
the full graph has no ``HEADS_FILE`` in its manifest, so it is rebuilt, never taken for the
cut network. Should the cut change again, its file name changes with it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from edgevision.compare import check_parity
from edgevision.errors import EdgevisionError
from edgevision.files import write_atomic
from edgevision.models.movenet import HEADS, MULTIPOSE_HEADS, MoveNetProcessor, decoded_output
from edgevision.zoo.catalog.human_models import (
    ONNX_FILE,
    artifact,
    convert_tfjs,
    onnx_predictor,
)
from edgevision.zoo.registry import register_model
from edgevision.zoo.spec import ModelSpec

HEADS_FILE = "heads.onnx"
FULL_FILE = ONNX_FILE  # the converted TF.js graph, decoding inside; kept beside the cut as its reference
PARITY_TOLERANCE = 1e-4  # on normalised keypoints, boxes and scores


def head_tensors(graph) -> dict[str, str]:
    """``{head: tensor name}`` in a converted MoveNet graph: each head's last Conv, through its Sigmoid.

    The heads are found by their TF scopes (``kpt_heatmap_0/``, ``center_0/`` ...); the
    multi-pose graph also has ``box_scale_0/`` and ``box_offset_0/``.
    """
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = {}
    for head in MULTIPOSE_HEADS:
        convs = [n for n in graph.node if n.op_type == "Conv" and f"/{head}_0/" in n.name]
        if not convs:
            continue
        out = convs[-1].output[0]
        sigmoid = [n for n in consumers.get(out, []) if n.op_type == "Sigmoid"]
        found[head] = sigmoid[0].output[0] if sigmoid else out
    if set(found) not in (set(HEADS), set(MULTIPOSE_HEADS)):
        raise EdgevisionError(f"this MoveNet graph has the heads {sorted(found)}, expected {', '.join(HEADS)}.")
    return found


def cut_heads(full: Path, out: Path) -> list[str]:
    """Write the network of ``full`` up to its head maps to ``out``, outputs named as the heads."""
    import onnx
    import onnx.utils

    model = onnx.load(str(full))
    heads = head_tensors(model.graph)
    cut = onnx.utils.Extractor(model).extract_model([i.name for i in model.graph.input], list(heads.values()))
    renamed = {tensor: head for head, tensor in heads.items()}
    for node in cut.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
    for output in cut.graph.output:
        output.name = renamed[output.name]
    cut.producer_name, cut.doc_string = "edgevision", f"{full.name} up to its head maps ({', '.join(heads)})"
    onnx.checker.check_model(cut)
    write_atomic(out, cut.SerializeToString())
    return list(heads)


def check_heads(full: Path, heads: Path, processor: MoveNetProcessor, images: list[np.ndarray]) -> float:
    """The largest difference between ``full``'s output and the decoded maps of ``heads``; raises above
    ``PARITY_TOLERANCE``."""
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (full, heads)]
    worst = 0.0
    for image in images:
        tensor, _ = processor.preprocess(image)
        want, got = (s.run(None, {s.get_inputs()[0].name: tensor}) for s in sessions)
        names = [o.name for o in sessions[1].get_outputs()]
        report = check_parity(
            {"poses": want[0]},
            {"poses": decoded_output(dict(zip(names, got)))},
            tolerance=PARITY_TOLERANCE,
            reference=f"{full.name} (the full graph)",
        )
        worst = max(worst, report.outputs[0].max_abs_diff)
    return worst


def synthetic_image(height: int = 240, width: int = 320) -> np.ndarray:
    """A smooth, seeded BGR image (coarse noise upscaled), the pull-time parity input."""
    import cv2

    coarse = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def prepare(model_json: str, processor, folder: Path) -> None:
    """Convert ``folder/model_json`` to ``model.onnx`` (checked against TensorFlow), cut it at its
    head maps into ``HEADS_FILE`` (checked against the full graph)."""
    convert_tfjs(model_json, folder)
    cut_heads(folder / FULL_FILE, folder / HEADS_FILE)
    check_heads(folder / FULL_FILE, folder / HEADS_FILE, processor(), [synthetic_image()])


def _register(name: str, size: int, summary: str, json_sha: str, bin_sha: str, preprocessing: str) -> None:
    processor = partial(MoveNetProcessor, input_size=(size, size), multiple_of=32 if "multipose" in name else None)
    register_model(
        ModelSpec(
            name=name,
            task="pose",
            family="movenet",
            input_size=(size, size),
            license="Apache-2.0",
            summary=summary,
            preprocessing=preprocessing,
            artifacts=(artifact(f"{name}.json", json_sha), artifact(f"{name}.bin", bin_sha)),
            predictor=onnx_predictor,
            processor=processor,
            prepare=partial(prepare, f"{name}.json", processor),
            files={"onnx": HEADS_FILE},
            needs_extra="convert",
            homepage="https://www.tensorflow.org/hub/tutorials/movenet",
        )
    )


_SQUARE = "letterbox to {0}x{0} with zero padding, RGB, int32 0-255, NHWC"
_register(
    "movenet-lightning",
    192,
    "MoveNet SinglePose Lightning v4: one person, 17 COCO keypoints, fastest.",
    "df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9",
    "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34",
    _SQUARE.format(192),
)
_register(
    "movenet-thunder",
    256,
    "MoveNet SinglePose Thunder v4: one person, 17 COCO keypoints, more accurate.",
    "7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6",
    "a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c",
    _SQUARE.format(256),
)
_register(
    "movenet-multipose",
    448,
    "MoveNet MultiPose Lightning v1: up to 6 people with boxes, 17 COCO keypoints.",
    "3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de",
    "19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118",
    "long side the frame's rounded up to a multiple of 32, between 256 and 448 (448 finds distant "
    "people, a small frame upscaled to 448 loses a close one), short side rounded up to a multiple "
    "of 32, zero padding, RGB, int32 0-255, NHWC",
)
