"""Strict checkpoint loading: every key present, none extra, every shape equal.

``torch.nn.Module.load_state_dict(strict=True)`` raises one long message listing every
key; here the first offending key is named with a count of the others, in one sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from edgevision.errors import EdgevisionError, cause


def read_checkpoint(path: str | Path) -> object:
    """Load a ``torch.save`` file with ``weights_only=True`` (no arbitrary code runs)."""
    path = Path(path)
    if not path.is_file():
        raise EdgevisionError(f"checkpoint {path} does not exist.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for files it cannot read
        raise EdgevisionError(
            f"{path} is not a PyTorch checkpoint edgevision can read; give the official .pth file "
            f"(weights-only load failed: {type(exc).__name__}: {cause(exc)})."
        ) from None


def is_state_dict(obj: object) -> bool:
    """True for a non-empty mapping of names to tensors."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def state_dict_problems(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> list[str]:
    """Phrases naming the first missing, unexpected and misshaped key (with counts of the rest)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    misshaped = [k for k in expected if k in got and tuple(got[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing key '{missing[0]}'{_others(missing)}")
    if unexpected:
        problems.append(f"unexpected key '{unexpected[0]}'{_others(unexpected)}")
    if misshaped:
        k = misshaped[0]
        problems.append(
            f"key '{k}' has shape {tuple(got[k].shape)} in the file but {tuple(expected[k].shape)} in the model"
            f"{_others(misshaped)}"
        )
    return problems


def _others(keys: list[str]) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str, hint: str) -> None:
    """Copy ``state`` into ``module`` or raise ``EdgevisionError`` naming the first bad key.

    ``source`` names the file in the message; ``hint`` is the sentence that says what to do.
    """
    problems = state_dict_problems(module.state_dict(), state)
    if problems:
        raise EdgevisionError(f"{source} does not fit {type(module).__name__}: {'; '.join(problems)}. {hint}")
    module.load_state_dict(state, strict=True)
