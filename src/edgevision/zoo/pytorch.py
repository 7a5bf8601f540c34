"""PyTorch zoo families: build the network, load the user's weights (or random ones), export.

No registry package carries YOLOX or OpenPose weights. Users who have the official
checkpoint pass it with ``weights``; ``random_weights=True`` builds the same network with
seeded random values so that size and speed can be studied anywhere. Exports are cached
per checkpoint hash under ``<cache>/models/<name>/<key>/`` and carry a metadata file that
says which weights they hold (and the hashes an export must still match to be reused).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgevision.errors import EdgevisionError
from edgevision.files import cache_dir, sha256_file
from edgevision.variants import VariantMeta, reuse_problem, write_meta
from edgevision.zoo.spec import ModelSpec

logger = logging.getLogger(__name__)

RANDOM_SEED = 0
PARITY_PHOTOS = ("person.jpg", "dog.jpg")


def is_pytorch_family(spec: ModelSpec) -> bool:
    return spec.build is not None


def weights_key(weights: Path | None) -> str:
    """Cache key of a checkpoint: its hash prefix, or ``random-seed0``."""
    return f"random-seed{RANDOM_SEED}" if weights is None else "weights-" + sha256_file(weights)[:16]


def _check_weights_choice(spec: ModelSpec, weights: Path | None, random_weights: bool) -> None:
    if weights is not None and random_weights:
        raise EdgevisionError("give either --weights or --random-weights, not both.")
    if weights is None and not random_weights:
        where = f"download {spec.weights.filename} from {spec.weights.url} and " if spec.weights else ""
        raise EdgevisionError(
            f"{spec.name} weights are not in any registry package: {where}pass --weights PATH, "
            "or pass --random-weights to study size and speed (predictions are then meaningless)."
        )
    if weights is not None and not Path(weights).is_file():
        raise EdgevisionError(f"weights file {weights} does not exist.")


def build_module(spec: ModelSpec, *, weights: Path | None = None, random_weights: bool = False):
    """The eval-mode network of ``spec`` with the given checkpoint, or seeded random weights."""
    _check_weights_choice(spec, weights, random_weights)
    try:
        import torch
    except ImportError:
        from edgevision.errors import MissingExtraError

        raise MissingExtraError("torch", "torch") from None
    torch.manual_seed(RANDOM_SEED)
    module = spec.build()
    if weights is not None:
        spec.load_weights(module, Path(weights))
    elif spec.random_init is not None:
        spec.random_init(module)
    return module.eval()


def parity_inputs(spec: ModelSpec) -> list[np.ndarray]:
    """Real sample photos pre-processed as at inference, for export parity checks."""
    from edgevision.media import read_image
    from edgevision.samples import sample_path

    processor = spec.processor()
    return [processor.preprocess(read_image(sample_path(name)))[0] for name in PARITY_PHOTOS]


def export_torch_model(
    spec: ModelSpec,
    *,
    weights: Path | None = None,
    random_weights: bool = False,
    fmt: str = "onnx",
    opset: int = 17,
    dynamic_batch: bool = False,
) -> Path:
    """The exported ``model.onnx`` (or ``model.pt2``) of ``spec``, made once per checkpoint.

    ONNX exports are checked against PyTorch on real photos (max abs diff and cosine per
    output) and refused when they differ; the report is kept in the metadata file.
    """
    _check_weights_choice(spec, weights, random_weights)
    folder = cache_dir("models", spec.name, weights_key(weights))
    suffix = ".pt2" if fmt == "pt2" else ".onnx"
    stem = (
        "model"
        if (opset, dynamic_batch) == (17, False) or fmt == "pt2"
        else f"model-opset{opset}{'-dyn' if dynamic_batch else ''}"
    )
    target = folder / f"{stem}{suffix}"
    problem = reuse_problem(target)
    if problem is None:
        return target
    if target.exists():
        logger.warning("%s: the cached export %s %s; exporting it again", spec.name, target, problem)
    module = build_module(spec, weights=weights, random_weights=random_weights)
    logger.info("%s: exporting %s", spec.name, target.name)
    parity = _export(spec, module, target, fmt=fmt, opset=opset, dynamic_batch=dynamic_batch)
    meta = VariantMeta(
        source_model=spec.name,
        source_sha256=f"random-seed{RANDOM_SEED}" if weights is None else sha256_file(Path(weights)),
        runtime="torch" if fmt == "pt2" else "onnxruntime",
        precision="fp32",
        parity=parity,
        random_weights=weights is None,
        notes=[f"exported from PyTorch, opset {opset}, {'dynamic' if dynamic_batch else 'static'} batch"],
    )
    write_meta(target, meta)
    return target


def _export(spec: ModelSpec, module, target: Path, *, fmt: str, opset: int, dynamic_batch: bool) -> dict:
    from edgevision.compare import require_parity
    from edgevision.conversion.torch_onnx import export_onnx, export_pt2

    if fmt == "pt2":
        export_pt2(module, target, input_shape=spec.flops_input)
        return {}
    report = export_onnx(
        module,
        target,
        input_shape=spec.flops_input,
        output_names=spec.output_names,
        opset=opset,
        dynamic_batch=dynamic_batch,
        parity_inputs=parity_inputs(spec),
    )
    require_parity(report)
    return report.to_dict() if hasattr(report, "to_dict") else {}
