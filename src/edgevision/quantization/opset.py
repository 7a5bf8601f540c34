"""Upgrading an export's ONNX opset before a quantizer that needs a newer one, checked for parity.

>>> note = upgrade_opset(Path("keras.onnx"), Path("keras-13.onnx"), opset=13)  # doctest: +SKIP
>>> note                                                                    # doctest: +SKIP
'opset 12 upgraded to 13 (outputs within 1e-03 of the original on 2 inputs)'

ONNX Runtime's static int8 writes per-channel ``DequantizeLinear`` nodes with an ``axis``
attribute, which exists from opset 13; on an older export it writes a graph that does not
load. ``onnx.version_converter`` upgrades the model; the upgraded model is then run beside
the original on the same inputs and refused unless every output matches within the
tolerance of every other conversion step (``CONVERT_TOLERANCE``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgevision.compare import ParityReport, compare_outputs
from edgevision.conversion.parity import CONVERT_TOLERANCE, random_feeds
from edgevision.errors import EdgevisionError, cause

logger = logging.getLogger(__name__)

PARITY_INPUTS = 2


def model_opset(model) -> int:
    """The default-domain opset an ``onnx.ModelProto`` imports."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def upgrade_opset(source: Path, target: Path, *, opset: int) -> str | None:
    """Write ``source`` upgraded to ``opset`` at ``target`` when it is older; return a note, else None.

    Raises ``EdgevisionError`` when ONNX cannot upgrade it or the upgraded model's outputs differ.
    """
    import onnx
    from onnx import version_converter

    model = onnx.load(str(source))
    old = model_opset(model)
    if old >= opset:
        return None
    try:
        upgraded = version_converter.convert_version(model, opset)
        onnx.checker.check_model(upgraded)
    except Exception as exc:  # the converter raises bare RuntimeErrors / ValidationErrors
        raise EdgevisionError(
            f"{source.name} is at opset {old}, int8 needs opset {opset}, and ONNX's version converter cannot "
            f"upgrade it ({cause(exc)}); re-export the model at opset {opset} or later."
        ) from None
    onnx.save(upgraded, str(target))
    check_upgrade(source, target, old=old, new=opset)
    note = upgrade_text(old, opset)
    logger.info("%s", note)
    return note


def upgrade_text(old: int, new: int) -> str:
    """The metadata note of an upgrade that passed its parity check."""
    return f"opset {old} upgraded to {new} (outputs within {CONVERT_TOLERANCE:.0e} of the original on {PARITY_INPUTS} inputs)"


def upgrade_note(source: Path, prepared: Path) -> str | None:
    """The note of the upgrade from ``source`` to ``prepared``; None when both have the same opset."""
    import onnx

    old, new = (model_opset(onnx.load(str(p), load_external_data=False)) for p in (source, prepared))
    return upgrade_text(old, new) if new > old else None


def check_upgrade(source: Path, upgraded: Path, *, old: int, new: int) -> ParityReport:
    """Run both files in ONNX Runtime on seeded inputs; raise when an output differs."""
    from edgevision.backends import create_backend

    before = create_backend("onnxruntime", source, threads=1)
    after = create_backend("onnxruntime", upgraded, threads=1)
    outputs = []
    for seed in range(PARITY_INPUTS):
        feeds = random_feeds(before, seed)
        want, got = before.run(feeds), after.run(feeds)
        outputs += compare_outputs(list(want), list(want.values()), [got[n] for n in want])
    report = ParityReport(outputs, CONVERT_TOLERANCE, path=upgraded)
    if not report.passed:
        worst = max(outputs, key=lambda o: o.max_abs_diff)
        raise EdgevisionError(
            f"upgrading {source.name} from opset {old} to {new} changes output {worst.name} by "
            f"{worst.max_abs_diff:.2e}; re-export the model at opset {new} or later."
        )
    return report
