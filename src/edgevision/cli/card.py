"""The model-card options every command that loads a model file shares (``--card``, ``--decoder`` ...).

They describe how to feed and decode a model file: a card file, or single fields that
change the card found with the model (beside it, inside it, or recognised).
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated

import typer

from edgevision.api import list_decoders, read_card
from edgevision.errors import EdgevisionError

PANEL = "Model card (model files)"

CardOption = Annotated[
    Path | None,
    typer.Option(
        "--card",
        help="Model card file (YAML/JSON): decoder, input size, colour, mean/std, labels ...",
        rich_help_panel=PANEL,
    ),
]
DecoderOption = Annotated[
    str | None,
    typer.Option("--decoder", help=f"Output format: {', '.join(list_decoders())}.", rich_help_panel=PANEL),
]
TaskOption = Annotated[
    str | None,
    typer.Option("--task", help="detection or raw (raw: report the output tensors).", rich_help_panel=PANEL),
]
InputSizeOption = Annotated[
    str | None, typer.Option("--input-size", help="Model input as WxH (or one side).", rich_help_panel=PANEL)
]
MeanOption = Annotated[
    str | None,
    typer.Option(
        "--mean",
        help="Mean in pixel units (0-255): one value, or three in the model's channel order.",
        rich_help_panel=PANEL,
    ),
]
StdOption = Annotated[
    str | None,
    typer.Option("--std", help="Std in pixel units: the model gets (pixel - mean) / std.", rich_help_panel=PANEL),
]
BgrOption = Annotated[
    bool | None, typer.Option("--bgr/--rgb", help="Channel order the model takes.", rich_help_panel=PANEL)
]
ResizeOption = Annotated[
    str | None,
    typer.Option("--resize", help="letterbox, letterbox-corner, stretch or native.", rich_help_panel=PANEL),
]
LabelsOption = Annotated[
    str | None,
    typer.Option("--labels", help="coco80, coco91, a file (one name a line) or a,b,c.", rich_help_panel=PANEL),
]
ScoreOption = Annotated[
    float | None, typer.Option("--score-threshold", min=0.0, max=1.0, help="Lowest score kept.", rich_help_panel=PANEL)
]
IouOption = Annotated[
    float | None, typer.Option("--iou-threshold", min=0.0, max=1.0, help="NMS overlap.", rich_help_panel=PANEL)
]

OPTIONS = {
    "card": CardOption,
    "decoder": DecoderOption,
    "task": TaskOption,
    "input_size": InputSizeOption,
    "mean": MeanOption,
    "std": StdOption,
    "bgr": BgrOption,
    "resize": ResizeOption,
    "labels": LabelsOption,
    "score_threshold": ScoreOption,
    "iou_threshold": IouOption,
}
FLAGS = tuple(OPTIONS)


def card_options(command):
    """Give a typer command the model-card options; it receives them as one ``card`` argument.

    ``card`` gets what the API's ``card`` takes (see ``card_choice``): None, a card file, a
    ``ModelCard`` or a dict of fields.
    """
    signature = inspect.signature(command, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.name != "card"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=option)
        for name, option in OPTIONS.items()
    ]

    @functools.wraps(command)
    def with_card(*args, **kwargs):
        flags = {name: kwargs.pop(name, None) for name in FLAGS}
        return command(*args, card=card_choice(flags), **kwargs)

    with_card.__signature__ = signature.replace(parameters=kept + added)
    return with_card


def card_choice(values: dict):
    """What the API's ``card`` argument gets from the options in ``values`` (a command's locals)."""
    fields = _fields({k: values.get(k) for k in FLAGS if k != "card"})
    card = values.get("card")
    if card is None:
        return fields or None
    return read_card(card).merged(fields) if fields else card


def _fields(flags: dict) -> dict:
    fields = {
        "decoder": flags["decoder"],
        "input_size": _size(flags["input_size"]),
        "mean": _numbers(flags["mean"], "--mean"),
        "std": _numbers(flags["std"], "--std"),
        "color": None if flags["bgr"] is None else ("bgr" if flags["bgr"] else "rgb"),
        "resize": flags["resize"],
        "labels": _labels(flags["labels"]),
        "score_threshold": flags["score_threshold"],
        "iou_threshold": flags["iou_threshold"],
    }
    task = flags["task"]
    if task == "raw":
        fields["decoder"] = fields["decoder"] or "raw"
    elif task not in (None, "detection"):
        raise EdgevisionError(f"unknown --task '{task}'; choose detection or raw (the decoder decides the task).")
    elif task and not fields["decoder"]:
        raise EdgevisionError(f"--task {task} needs --decoder too: choose one of {', '.join(list_decoders())}.")
    return {k: v for k, v in fields.items() if v is not None}


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) < 1:
        raise EdgevisionError(f"--input-size must be WIDTHxHEIGHT or one side, e.g. 640x480 or 320, not '{text}'.")
    return (values[0], values[-1])


def _numbers(text: str | None, flag: str) -> tuple[float, ...] | float | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 3):
        raise EdgevisionError(f"{flag} takes one number or three (e.g. 123.7,116.3,103.5), not '{text}'.")
    return values[0] if len(values) == 1 else values


def _labels(text: str | None) -> str | list[str] | None:
    if text is None or text in ("coco80", "coco91") or Path(text).is_file() or "," not in text:
        return text
    return [name.strip() for name in text.split(",")]
