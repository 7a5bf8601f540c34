"""Parity of a converted model with its source, on real photos, per output and per task.

>>> from edgevision.conversion.parity import measure_parity
>>> parity = measure_parity(Path("model.onnx"), Path("model.xml"), processor=processor)  # doctest: +SKIP
>>> print(parity.table())                                                            # doctest: +SKIP

Both files run on their own edgevision backend (ONNX Runtime for ``.onnx``, OpenVINO in
true fp32 for ``.xml``, LiteRT for ``.tflite``) over the sample photos, pre-processed by
the model family's own processor when it is known, else resized to the input shape. Each
output's worst max abs diff and cosine are kept (the per-output figures and the verdict
are ``edgevision.compare.ParityReport``); for detection and pose models the
decoded results are also compared with the task-level agreement of
``edgevision.compare`` (COCO mAP / OKS AP with the source as ground truth).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevision.compare import (
    OutputParity,
    ParityReport,
    compare_outputs,
    metric_name,
    model_bytes,
)
from edgevision.compare import task_agreement as compare_tasks
from edgevision.errors import EdgevisionError
from edgevision.models.base import Processor
from edgevision.models.raw import raw_processor
from edgevision.models.transforms import ImageTransform

logger = logging.getLogger(__name__)

PARITY_PHOTOS = ("person.jpg", "dog.jpg", "horses.jpg", "messi5.jpg")
# Different runtimes order float sums differently; 1e-3 of an output's magnitude is far
# below any change a decoder could see, and far above fp32 reordering noise.
CONVERT_TOLERANCE = 1e-3
MIN_AGREEMENT = 0.99

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class ParityOptions:
    """How strictly a converted model must match its source."""

    tolerance: float = CONVERT_TOLERANCE  # max abs diff, relative to the output's magnitude when > 1
    min_agreement: float = MIN_AGREEMENT  # task-level agreement (mAP / OKS AP) for known tasks
    photos: tuple[str, ...] = PARITY_PHOTOS
    threads: int | None = 2


@dataclass
class Parity:
    """Per-output figures, task-level agreement and the verdict of one comparison."""

    report: ParityReport
    agreement: dict = field(default_factory=dict)  # {"metric": ..., "value": ...}
    min_agreement: float = MIN_AGREEMENT

    @property
    def passed(self) -> bool:
        value = self.agreement.get("value")
        return self.report.passed and (value is None or value >= self.min_agreement)

    def to_dict(self) -> dict:
        """The report's numbers plus the agreement, ready for the metadata file."""
        return {**self.report.to_dict(), "passed": self.passed, "agreement": self.agreement}

    def table(self) -> str:
        """The per-output lines, then the task-level agreement when measured."""
        lines = [self.report.table()]
        if self.agreement:
            lines.append(
                f"task agreement {self.agreement['metric']} = {self.agreement['value']:.4f} (min {self.min_agreement})"
            )
        return "\n".join(lines)

    def refusal(self, label: str) -> str:
        """The sentence that explains why a conversion is refused."""
        bad = [o for o in self.report.outputs if not o.passes(self.report.tolerance)]
        worst = "; ".join(f"{o.name} max|diff| {o.max_abs_diff:.2e} cosine {o.cosine:.6f}" for o in bad)
        if not worst and self.agreement:
            worst = f"{self.agreement['metric']} {self.agreement['value']:.4f} < {self.min_agreement}"
        return (
            f"{label} changes the model's numbers beyond tolerance ({worst or 'no outputs compared'}); "
            "the result was not saved."
        )


def require(parity: Parity, label: str) -> None:
    """Raise ``EdgevisionError`` with the numbers when ``parity`` did not pass."""
    if not parity.passed:
        raise EdgevisionError(parity.refusal(label))


# ----------------------------------------------------------------------------- inputs


@dataclass
class ParityInputs:
    """Feeds for both models, and the image transforms that decode their outputs."""

    feeds: list[Feeds]
    transforms: list[ImageTransform | None]


def photos(names: Sequence[str]) -> list[np.ndarray]:
    """The named sample photos, BGR uint8 (fetched into the cache on first use)."""
    from edgevision.media import read_image
    from edgevision.samples import sample_path

    return [read_image(sample_path(name)) for name in names]


def parity_inputs(backend, processor: Processor | None, images: Sequence[np.ndarray]) -> ParityInputs:
    """Feeds of ``backend`` for every image: the processor's tensors, else resized images.

    Models whose input is not an image get seeded random feeds (one per image).
    """
    name = backend.inputs[0].name
    if processor is not None:
        pairs = [processor.preprocess(image) for image in images]
        return ParityInputs([{name: t} for t, _ in pairs], [tr for _, tr in pairs])
    # The same fitting of an image to an unknown model's input that ``predict`` uses.
    raw = raw_processor(backend.inputs[0])
    if raw is None:
        return ParityInputs([random_feeds(backend, seed) for seed in range(len(images))], [None] * len(images))
    zeros = {s.name: np.zeros([d or 1 for d in s.shape], dtype=s.dtype) for s in backend.inputs[1:]}
    return ParityInputs([{name: raw.preprocess(image)[0], **zeros} for image in images], [None] * len(images))


def random_feeds(backend, seed: int = 0) -> Feeds:
    """Seeded uniform [0, 1) feeds (small integers for integer inputs) for every input."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in backend.inputs:
        shape = [d or 1 for d in spec.shape]
        kind = np.dtype(spec.dtype).kind
        values = rng.integers(0, 255, shape) if kind in "iu" else rng.random(shape)
        feeds[spec.name] = values.astype(spec.dtype)
    return feeds


# ----------------------------------------------------------------------------- comparing


def run_all(backend, feeds: Sequence[Feeds]) -> list[dict[str, np.ndarray]]:
    """Outputs of ``backend`` for every feed."""
    return [backend.run(f) for f in feeds]


def worst_per_output(reference: Sequence[dict], candidate: Sequence[dict]) -> list[OutputParity]:
    """Compare every run output by output; keep each output's largest difference."""
    names = list(reference[0])
    missing = [n for n in names if n not in candidate[0]]
    if missing:
        raise EdgevisionError(
            f"the converted model lacks outputs {missing} (it has {sorted(candidate[0])}); conversion refused."
        )
    worst: dict[str, OutputParity] = {}
    for ref, cand in zip(reference, candidate):
        for item in compare_outputs(names, [ref[n] for n in names], [cand[n] for n in names]):
            if item.name not in worst or _worse(item, worst[item.name]):
                worst[item.name] = item
    return [worst[n] for n in names]


def _worse(a: OutputParity, b: OutputParity) -> bool:
    return a.max_abs_diff > b.max_abs_diff or a.cosine < b.cosine


def task_agreement(processor: Processor | None, inputs: ParityInputs, reference, candidate) -> dict:
    """COCO mAP (detection) or OKS AP (pose) of the candidate's decoded results vs the source's."""
    if processor is None or processor.task not in ("detection", "pose"):
        return {}
    ref = [processor.decode(out, tr) for out, tr in zip(reference, inputs.transforms)]
    cand = [processor.decode(out, tr) for out, tr in zip(candidate, inputs.transforms)]
    return {"metric": metric_name(processor.task), "value": compare_tasks(processor.task, ref, cand)}


def measure_parity(
    source: Path,
    candidate: Path,
    *,
    processor: Processor | None = None,
    options: ParityOptions = ParityOptions(),
) -> Parity:
    """Run ``source`` and ``candidate`` on the sample photos and compare them."""
    from edgevision.backends import create_backend

    start = time.perf_counter()
    ref_backend = create_backend(None, source, threads=options.threads)
    cand_backend = create_backend(None, candidate, threads=options.threads)
    inputs = parity_inputs(ref_backend, processor, photos(options.photos))
    reference, got = run_all(ref_backend, inputs.feeds), run_all(cand_backend, inputs.feeds)
    report = ParityReport(worst_per_output(reference, got), options.tolerance, path=candidate)
    report.file_bytes = model_bytes(candidate)
    report.seconds = time.perf_counter() - start
    parity = Parity(report, task_agreement(processor, inputs, reference, got), options.min_agreement)
    logger.debug("parity %s vs %s: %s", candidate.name, source.name, parity.table().replace("\n", "; "))
    return parity
