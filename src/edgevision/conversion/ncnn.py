"""ONNX -> ncnn (``.param`` + ``.bin``) with pnnx, ncnn's own converter.

>>> from edgevision.conversion.ncnn import onnx_to_ncnn
>>> onnx_to_ncnn(Path("model.onnx"), Path("model.param"))  # doctest: +SKIP

pnnx runs in a temporary folder (it writes several side files beside its input) with
``fp16=0``, so the ``.bin`` holds fp32 weights; fp16 is then a run-time choice of the ncnn
backend. pnnx names the blobs ``in0, in1, ...`` and ``out0, out1, ...`` in the ONNX graph's
order; the ``.param`` is then edited so that they carry the ONNX names again (callers feed
and read tensors by the source's names), and ncnn's blob shape hints (``-23330=``) are
added for every input and output whose ONNX shape is static, so the backend knows them.
No maintained tool does these two edits on an ncnn graph.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgevision.backends.ncnn import FOCUS, unknown_layers
from edgevision.errors import EdgevisionError, MissingExtraError, UnsupportedOpsError
from edgevision.files import copy_atomic, write_atomic
from edgevision.modelfiles import read_onnx

logger = logging.getLogger(__name__)

SHAPE_HINT = "-23330"  # ncnn's array param 30: per top blob, [dims, w, h, c]
_BLOB_NAME = re.compile(r"^\S+$")
PNNX_TIMEOUT_S = 600


def pnnx_executable() -> str:
    """The pnnx program shipped in the ``pnnx`` wheel, or a clear error naming the extra.

    Found without importing the package, whose ``__init__`` imports torch.
    """
    spec = importlib.util.find_spec("pnnx")
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = [Path(f) / name for f in folders for name in ("pnnx", "pnnx.exe") if (Path(f) / name).is_file()]
    if not found:
        raise MissingExtraError("pnnx", "ncnn-convert")
    return str(found[0])


def _static_shapes(values) -> dict[str, tuple[int, ...] | None]:
    """``{name: shape}`` of ONNX graph inputs or outputs; None for a shape with a named or unknown dim."""
    shapes = {}
    for value in values:
        dims = value.type.tensor_type.shape.dim
        sizes = tuple(d.dim_value if d.HasField("dim_value") else 0 for d in dims)
        shapes[value.name] = sizes if sizes and all(sizes) else None
    return shapes


def _input_shapes(model) -> list[tuple[int, ...]]:
    """Shapes pnnx traces the graph with: the ONNX input shapes, a free batch dimension set to 1."""
    initializers = {i.name for i in model.graph.initializer}
    shapes = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        sizes = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
        if sizes and sizes[0] == 0:
            sizes[0] = 1
        if not all(sizes):
            raise EdgevisionError(
                f"ncnn conversion needs fixed input shapes; input '{value.name}' has free dimensions {sizes}. "
                "Convert an ONNX file with a static input size."
            )
        shapes.append(tuple(sizes))
    return shapes


def run_pnnx(source: Path, folder: Path, shapes: list[tuple[int, ...]]) -> tuple[Path, Path]:
    """pnnx ``source`` inside ``folder``; returns the ncnn ``.param`` and ``.bin`` it wrote.

    pnnx reads ONNX through an onnxruntime of its own, which refuses files of a newer IR
    version than it knows even when their opsets need no newer one: such a file is given to
    pnnx again with the lowest IR version its opsets need (only that header field changes).
    """
    local = folder / "source.onnx"
    shutil.copyfile(source, local)
    data = source.with_name(source.name + ".data")
    if data.is_file():  # ONNX external data keeps its own file name
        shutil.copyfile(data, folder / data.name)
    done = _pnnx(local, folder, shapes)
    if done.returncode != 0 and "Unsupported model IR version" in done.stdout + done.stderr and _lower_ir(local):
        done = _pnnx(local, folder, shapes)
    param, weights = folder / "model.ncnn.param", folder / "model.ncnn.bin"
    if done.returncode != 0 or not param.is_file() or not weights.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise EdgevisionError(f"pnnx cannot convert {source.name} to ncnn: {tail[0].strip().rstrip('.')}.")
    return param, weights


def _pnnx(local: Path, folder: Path, shapes: list[tuple[int, ...]]) -> subprocess.CompletedProcess[str]:
    """One pnnx run writing every file it makes into ``folder``."""
    shape_arg = ",".join("[" + ",".join(str(d) for d in s) + "]" for s in shapes)
    command = [
        pnnx_executable(),
        str(local),
        f"inputshape={shape_arg}",
        "fp16=0",
        f"ncnnparam={folder / 'model.ncnn.param'}",
        f"ncnnbin={folder / 'model.ncnn.bin'}",
        f"ncnnpy={folder / 'model_ncnn.py'}",
        f"pnnxparam={folder / 'model.pnnx.param'}",
        f"pnnxbin={folder / 'model.pnnx.bin'}",
        f"pnnxpy={folder / 'model_pnnx.py'}",
        f"pnnxonnx={folder / 'model.pnnx.onnx'}",
    ]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S)
    logger.debug("pnnx: %s", done.stdout[-2000:])
    return done


def _lower_ir(local: Path) -> bool:
    """Set ``local``'s IR version to the lowest its opsets need; False when it already has it."""
    import onnx

    model = onnx.load(str(local), load_external_data=False)
    lowest = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    if model.ir_version <= lowest:
        return False
    model.ir_version = lowest
    onnx.save(model, str(local))
    return True


def rewrite_param(text: str, inputs: dict, outputs: dict) -> str:
    """``text`` of an ncnn ``.param`` with pnnx's ``inN``/``outN`` blobs renamed and shape-hinted.

    ``inputs`` and ``outputs`` map the ONNX names, in graph order, to their static shapes
    (None when not static). A shape drops its first (batch) axis; ncnn hints hold 1 to 3 dims.

    >>> text = "7767517\\n2 2\\nInput in0 0 1 in0\\nReLU relu_0 1 1 in0 out0\\n"
    >>> print(rewrite_param(text, {"x": (1, 3, 4, 5)}, {"y": (1, 3, 4, 5)}), end="")
    7767517
    2 2
    Input x 0 1 x -23330=4,3,5,4,3
    ReLU relu_0 1 1 x y -23330=4,3,5,4,3
    """
    renames = {f"in{i}": name for i, name in enumerate(inputs)}
    renames.update({f"out{i}": name for i, name in enumerate(outputs)})
    shapes = {**inputs, **outputs}
    lines = text.splitlines()
    blobs = {token for line in lines[2:] for token in _blob_tokens(line.split())}
    for new in renames.values():
        if not _BLOB_NAME.match(new) or "=" in new or (new in blobs and new not in renames):
            raise EdgevisionError(f"ncnn cannot name a blob {new!r} (it has spaces, '=' or is taken by another blob).")
    out = lines[:2]
    for line in lines[2:]:
        fields = line.split()
        if len(fields) < 4:
            out.append(line)
            continue
        bottoms, tops = int(fields[2]), int(fields[3])
        blob_end = 4 + bottoms + tops
        names = [renames.get(b, b) for b in fields[4:blob_end]]
        if fields[0] == "Input":
            fields[1] = renames.get(fields[1], fields[1])
        top_names = names[bottoms:]
        params = fields[blob_end:]
        if any(shapes.get(t) for t in top_names) and not any(p.startswith(SHAPE_HINT + "=") for p in params):
            params.append(f"{SHAPE_HINT}={_hint(top_names, shapes)}")
        out.append(" ".join([*fields[:4], *names, *params]))
    return "\n".join(out) + "\n"


FOCUS_STARTS = ((0, 0), (1, 0), (0, 1), (1, 1))  # (H, W) starts of YOLOX's stem slices, in concat order


def onnx_focus_stems(model) -> int:
    """How many ``Concat(axis=1)`` of four step-2 ``Slice`` of one tensor (H, W) the ONNX graph
    has, in the space-to-depth order of YOLOv5 / YOLOX's stem (see ``FOCUS_STARTS``)."""
    from onnx import numpy_helper

    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    found = 0
    for node in model.graph.node:
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        if node.op_type != "Concat" or len(node.input) != 4 or axis != 1:
            continue
        slices = [producers.get(name) for name in node.input]
        starts = [_slice_start(s, constants) for s in slices]
        if tuple(starts) == FOCUS_STARTS and len({s.input[0] for s in slices}) == 1:
            found += 1
    return found


def _slice_start(node, constants) -> tuple[int, ...] | None:
    """The (H, W) starts of a step-2 ``Slice`` over axes 2 and 3 of a 4-D tensor; else None."""
    if node is None or node.op_type != "Slice" or len(node.input) != 5:
        return None
    starts, _, axes, steps = (constants.get(name) for name in node.input[1:])
    if starts is None or axes is None or steps is None:
        return None
    if [int(a) % 4 for a in axes] != [2, 3] or [int(x) for x in steps] != [2, 2]:
        return None
    return tuple(int(x) for x in starts)


def fuse_focus(text: str) -> tuple[str, int]:
    """``text`` with each pnnx stem of four ``Tensor.slice`` and a ``Concat`` (fed by one blob, or
    by one ``Split`` of it) made one ``YoloV5Focus`` layer; returns the text and how many.

    pnnx writes strided slices as ``Tensor.slice``, which ncnn has no layer for, and leaves
    their starts and steps out: the caller checks the ONNX graph has as many such stems.
    """
    lines = text.splitlines()
    layers = [line.split() for line in lines[2:] if line.split()]
    producer = {top: i for i, fields in enumerate(layers) for top in _tops(fields)}
    removed, replaced = set(), {}
    for i, fields in enumerate(layers):
        if fields[0] != "Concat" or int(fields[2]) != 4 or any(p.startswith("0=") and p != "0=0" for p in fields):
            continue
        slices = [producer.get(b) for b in _bottoms(fields)]
        if any(j is None or layers[j][0] != "Tensor.slice" or int(layers[j][2]) != 1 for j in slices):
            continue
        sources = {_bottoms(layers[j])[0] for j in slices}
        split = producer.get(next(iter(sources)))
        if len(sources) == 1:
            source, extra = next(iter(sources)), set()
        elif split is not None and layers[split][0] == "Split" and set(_tops(layers[split])) == sources:
            source, extra = _bottoms(layers[split])[0], {split}
        else:
            continue
        removed |= {*slices, *extra}
        replaced[i] = [FOCUS, f"focus_{len(replaced)}", "1", "1", source, _tops(fields)[0]]
    kept = [replaced.get(i, fields) for i, fields in enumerate(layers) if i not in removed]
    blobs = sum(len(_tops(fields)) for fields in kept)
    return "\n".join([lines[0], f"{len(kept)} {blobs}", *(" ".join(f) for f in kept)]) + "\n", len(replaced)


def _bottoms(fields: list[str]) -> list[str]:
    return fields[4 : 4 + int(fields[2])]


def _tops(fields: list[str]) -> list[str]:
    start = 4 + int(fields[2])
    return fields[start : start + int(fields[3])]


def _blob_tokens(fields: list[str]) -> list[str]:
    if len(fields) < 4:
        return []
    return fields[4 : 4 + int(fields[2]) + int(fields[3])]


def _hint(tops: list[str], shapes: dict) -> str:
    """ncnn's shape hint array for ``tops``: 4 ints per blob (dims, w, h, c), zeros when unknown."""
    values = []
    for top in tops:
        shape = shapes.get(top)
        inner = list(shape[1:]) if shape and 2 <= len(shape) <= 4 else []
        whc = list(reversed(inner)) + [0] * (3 - len(inner))
        values += [len(inner), *whc]
    return ",".join(str(v) for v in [len(values), *values])


def onnx_to_ncnn(source: Path, output: Path) -> Path:
    """Convert ONNX ``source`` to ncnn at ``output`` (``.param``; the ``.bin`` goes beside it)."""
    source, output = Path(source), Path(output)
    if output.suffix != ".param":
        raise EdgevisionError(f"ncnn models are named by their .param file, got {output.name}.")
    model = read_onnx(source, external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    shapes = _input_shapes(model)
    inputs = dict(zip([v.name for v in model.graph.input if v.name not in initializers], shapes))
    outputs = _static_shapes(model.graph.output)
    with tempfile.TemporaryDirectory(prefix="edgevision-pnnx-") as tmp:
        param, weights = run_pnnx(source, Path(tmp), shapes)
        text = param.read_text()
        if "Tensor.slice" in text and onnx_focus_stems(model):
            fused, count = fuse_focus(text)
            text = fused if count == onnx_focus_stems(model) else text
        unknown = unknown_layers(text)
        if unknown:
            raise UnsupportedOpsError("ncnn", unknown, f"ncnn has no layer for op(s) {', '.join(unknown)}.")
        text = rewrite_param(text, inputs, outputs)
        output.parent.mkdir(parents=True, exist_ok=True)
        copy_atomic(weights, output.with_suffix(".bin"))  # weights first: a .param never names missing weights
        write_atomic(output, text.encode())
    return output
