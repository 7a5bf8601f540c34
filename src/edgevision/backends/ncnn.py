"""ncnn on the CPU: runs an ncnn ``.param`` file with its ``.bin`` weights beside it.

An ncnn model is the pair ``model.param`` (the graph, text) + ``model.bin`` (the weights);
edgevision names it by its ``.param``. ncnn's tensors (``ncnn.Mat``) have no batch axis: a
blob is 1 to 4 dimensional, ``w``, ``h`` ``w``, ``c h w`` or ``c d h w``, each one a numpy
array of that shape. pnnx, which writes the files, takes the first axis of every input and
output as the batch, so a batch-1 NCHW array ``(1, C, H, W)`` is fed as ``(C, H, W)`` and an
output Mat ``(C, H, W)`` comes back as ``(1, C, H, W)``. Input and output shapes are read from
ncnn's own blob shape hints (``-23330=`` in the ``.param``, written by
``edgevision.conversion.ncnn``); an input without one is taken as one image ``(1, ?, ?, ?)``.

>>> b = NcnnBackend("model.param", threads=2, precision="fp16")  # doctest: +SKIP
>>> b.run({"images": x})["output"].shape                          # doctest: +SKIP
(1, 2125, 112)
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from edgevision.backends import register_backend
from edgevision.backends.base import Backend
from edgevision.errors import EdgevisionError, MissingExtraError
from edgevision.modelfiles import check_model_file
from edgevision.types import TensorSpec

FP32 = "fp32"  # every float layer computes and stores fp32: the like-with-like baseline
FP16 = "fp16"  # fp16 storage and packing, and fp16 arithmetic where the CPU has it (ARMv8.2)
DEFAULT = "default"  # ncnn's own Option defaults (fp16 storage and arithmetic on)
PRECISIONS = (FP32, FP16, DEFAULT)

# The Option switches reported with every run: they decide ncnn's kernels.
_REPORTED = (
    "num_threads",
    "use_packing_layout",
    "use_fp16_storage",
    "use_fp16_packed",
    "use_fp16_arithmetic",
    "use_bf16_storage",
    "use_sgemm_convolution",
    "use_winograd_convolution",
    "use_winograd23_convolution",
    "use_winograd43_convolution",
    "use_winograd63_convolution",
    "lightmode",
)


def _shape(mat) -> tuple[int, ...] | None:
    """The numpy shape (without batch) of a blob's shape hint; None when the file gives none."""
    dims = mat.dims
    full = {1: (mat.w,), 2: (mat.h, mat.w), 3: (mat.c, mat.h, mat.w), 4: (mat.c, mat.d, mat.h, mat.w)}
    return full.get(dims)


def _spec(blob, *, is_input: bool) -> TensorSpec:
    shape = _shape(blob.shape)
    if shape is not None:
        return TensorSpec(blob.name, (1, *shape), "float32")
    return TensorSpec(blob.name, (1, None, None, None) if is_input else (), "float32")


_WAIT_POLICY = "unknown: ncnn was imported before edgevision set it"  # OMP_WAIT_POLICY at ncnn's first import


def import_ncnn():
    """The ``ncnn`` module, its OpenMP threads set to sleep when idle unless the user said otherwise.

    ncnn's wheels carry their own libgomp, which reads ``OMP_WAIT_POLICY`` once, when it is
    loaded: so it is set before the first import. By default idle OpenMP threads spin,
    which on a small board busy with other work (video decoding, other processes) makes ncnn
    with 2 threads several times slower than with 1 (nanodet-m, 2 cores shared with other
    jobs: p50 1152 ms spinning, 112 ms passive, 1 thread 154 ms; ONNX Runtime 132-167 ms).
    """
    global _WAIT_POLICY
    if "ncnn" not in sys.modules:
        _WAIT_POLICY = os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import ncnn
    except ImportError:
        raise MissingExtraError("ncnn", "ncnn") from None
    return ncnn


FOCUS = "YoloV5Focus"  # ncnn's own name for the space-to-depth stem of YOLOv5 / YOLOX (its examples register it)


def focus_layer_class(ncnn):
    """ncnn's Python ``YoloV5Focus`` layer, as in the ``ncnn`` package's own yolov5 model: ncnn
    has no layer for strided slices, so YOLOX's stem ``cat(x[..., ::2, ::2], x[..., 1::2, ::2],
    x[..., ::2, 1::2], x[..., 1::2, 1::2])`` on channels runs here, in numpy."""

    class YoloV5Focus(ncnn.Layer):
        def __init__(self):
            ncnn.Layer.__init__(self)
            self.one_blob_only = True

        def forward(self, bottom_blob, top_blob, opt):
            x = np.array(bottom_blob)  # (C, H, W): fp32, unpacked (the layer supports neither)
            parts = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
            c, h, w = x.shape
            top_blob.create(w // 2, h // 2, 4 * c, allocator=opt.blob_allocator)
            if top_blob.empty():
                return -100
            np.concatenate(parts, out=np.asarray(top_blob))  # written in place: the view follows ncnn's cstep
            return 0

    return YoloV5Focus


CUSTOM_LAYERS = (FOCUS,)  # layer types edgevision registers itself


def unknown_layers(param_text: str) -> list[str]:
    """Layer types in an ncnn ``.param`` text that this ncnn build does not have.

    >>> unknown_layers("7767517\\n2 2\\nInput in0 0 1 in0\\nDet det0 1 1 in0 out0\\n")  # doctest: +SKIP
    ['Det']
    """
    ncnn = import_ncnn()
    kinds = {line.split()[0] for line in param_text.splitlines()[2:] if line.split()}
    return sorted(k for k in kinds if ncnn.layer_to_index(k) < 0 and k not in CUSTOM_LAYERS)


def fp16_arithmetic_here() -> bool:
    """True when this CPU computes in fp16 under ncnn (ARMv8.2 asimdhp); x86 builds store fp16 only."""
    return bool(import_ncnn().cpu_support_arm_asimdhp())


@register_backend
class NcnnBackend(Backend):
    """ncnn's CPU kernels (no Vulkan), one extractor per run.

    ``precision="fp32"`` (the default) turns fp16 and bf16 storage and arithmetic off, so
    results compare like with like with the other fp32 runtimes; ``"fp16"`` turns fp16
    storage, packing and arithmetic on (ncnn uses each where the CPU has it: fp16 arithmetic
    needs ARMv8.2, x86 keeps fp32 arithmetic); ``"default"`` keeps ncnn's own ``Option``.
    ``threads`` sets ``opt.num_threads``. ``settings`` lists the ``Option`` switches used.
    """

    name = "ncnn"
    label = "ncnn"
    suffixes = (".param",)
    extra = "ncnn"
    precisions = PRECISIONS

    def __init__(self, path: str | Path, *, threads: int | None = None, precision: str = FP32) -> None:
        if precision not in PRECISIONS:
            raise EdgevisionError(f"ncnn precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
        self.precision = precision
        super().__init__(path, threads=threads)

    @classmethod
    def is_available(cls) -> bool:
        return importlib.util.find_spec("ncnn") is not None

    def _options(self, opt) -> None:
        opt.use_vulkan_compute = False
        opt.openmp_blocktime = 0  # idle threads sleep at once (LLVM/Intel OpenMP; libgomp: OMP_WAIT_POLICY)
        if self.threads is not None:
            opt.num_threads = self.threads
        if self.precision == DEFAULT:
            return
        fp16 = self.precision == FP16
        opt.use_fp16_storage = fp16
        opt.use_fp16_packed = fp16
        opt.use_fp16_arithmetic = fp16
        opt.use_bf16_storage = False
        opt.use_bf16_packed = False

    def _load(self) -> None:
        ncnn = import_ncnn()
        check_model_file(self.path)  # ncnn prints its reasons to stderr and returns only -1
        self._mat = ncnn.Mat
        self.net = ncnn.Net()
        self._options(self.net.opt)
        self._register_custom_layers(ncnn)
        if self.net.load_param(str(self.path)) != 0:
            unknown = unknown_layers(self.path.read_text(errors="replace"))
            reason = (
                f"it has layer type(s) {', '.join(unknown)} this ncnn does not have" if unknown else "a malformed line"
            )
            raise EdgevisionError(f"ncnn cannot load {self.path}: {reason}; try another --backend.")
        if self.net.load_model(str(self.path.with_suffix(".bin"))) != 0:
            raise EdgevisionError(
                f"ncnn cannot load the weights {self.path.with_suffix('.bin')}: it is shorter than "
                f"{self.path.name} needs; convert the model again."
            )
        blobs = self.net.blobs()
        self.inputs = [_spec(blobs[i], is_input=True) for i in self.net.input_indexes()]
        self.outputs = [_spec(blobs[i], is_input=False) for i in self.net.output_indexes()]
        opt = self.net.opt
        fp16_math = opt.use_fp16_arithmetic and fp16_arithmetic_here()
        self.inference_precision = "f16" if fp16_math else "f32"
        self.settings = {**{key: getattr(opt, key) for key in _REPORTED}, **self.settings}
        self.settings.pop("threads", None)
        self.settings["openmp_blocktime"] = opt.openmp_blocktime
        self.settings["OMP_WAIT_POLICY"] = _WAIT_POLICY
        self.settings["fp16 arithmetic on this CPU"] = fp16_math

    def _register_custom_layers(self, ncnn) -> None:
        """Register the Python layers the file uses; they live as long as this backend."""
        kinds = {line.split()[0] for line in self.path.read_text(errors="replace").splitlines()[2:] if line.split()}
        if FOCUS not in kinds:
            return
        layer_class, self._layers = focus_layer_class(ncnn), []

        def create():
            layer = layer_class()
            self._layers.append(layer)  # ncnn holds a bare pointer: Python must keep the object
            return layer

        def destroy(layer):
            self._layers.remove(layer)

        self._creators = (create, destroy)
        self.net.register_custom_layer(FOCUS, create, destroy)
        self.settings["Python layers"] = FOCUS

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        extractor = self.net.create_extractor()
        held = []
        for spec in self.inputs:
            x = feeds[spec.name]
            if x.ndim < 2 or x.shape[0] != 1 or x.ndim > 5:
                raise EdgevisionError(
                    f"ncnn runs one image at a time: input '{spec.name}' must be [1, ...], got {x.shape}."
                )
            # ncnn.Mat(array) would share the array's memory; a clone is ncnn's own aligned
            # copy, so layers that work in place never touch the caller's array.
            mat = self._mat(np.ascontiguousarray(x[0], dtype=np.float32)).clone()
            held.append(mat)
            extractor.input(spec.name, mat)
        results = {}
        for spec in self.outputs:
            status, mat = extractor.extract(spec.name)  # type 0: unpacked fp32, whatever ran inside
            if status != 0:
                raise EdgevisionError(f"ncnn could not compute output '{spec.name}' of {self.path.name}.")
            results[spec.name] = np.array(mat)[np.newaxis]  # a copy the caller owns, batch axis put back
        return results
