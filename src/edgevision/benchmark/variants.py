"""The variants a benchmark compares: which exist, how each is built, and where it is cached.

>>> parse_variant_keys("ort-fp32,openvino-int8")
['ort-fp32', 'openvino-int8']

A variant is a runtime and a precision: ``torch-fp32`` (PyTorch eager, PyTorch zoo models
only), ``ort-fp32|fp16|int8``, ``openvino-fp32|bf16|fp16|int8``, ``litert-fp32|fp16|int8`` and
``ncnn-fp32|fp16``.
OpenVINO's fp32 baseline runs with the inference precision forced to f32 (true fp32);
``openvino-bf16`` runs the same IR with the hint bf16 and is offered only where the CPU
has bf16 units; fp16 and int8 run with the plugin's default (bf16 float layers where the
CPU has them), as OpenVINO's own tools run them. ``ncnn-fp32`` is the pnnx conversion run with
fp16 and bf16 off; ``ncnn-fp16`` runs the same file with ncnn's fp16 storage, packing and
arithmetic on (fp16 arithmetic only where the CPU has it, ARMv8.2; x86 stores fp16 and
computes fp32). There is no ``ncnn-int8``: ncnn's int8 tools (ncnn2table, ncnn2int8) are in
neither the ``ncnn`` nor the ``pnnx`` wheel. They are made through
``edgevision.conversion`` and ``edgevision.quantization`` and cached under
``<cache>/bench/<model>/<source hash>/<variant>/``, so a second benchmark starts at once; a
cached variant that no longer matches the hashes in its metadata file is built again.
int8 variants take the accuracy-budget path (``precision="auto"``) where the backend can
keep layers in float; models with random weights are quantized plainly (their decoded
output means nothing, so there is no task accuracy to hold).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgevision.compare import DEFAULT_MAX_DROP
from edgevision.conversion.api import convert_model
from edgevision.conversion.parity import ParityOptions
from edgevision.errors import EdgevisionError, MissingExtraError
from edgevision.files import cache_dir, sha256_file
from edgevision.models.card import CardRequest, card_from_dict
from edgevision.quantization import QuantizeOptions, get_quantizer
from edgevision.quantization.api import quantize_model
from edgevision.samples import sample_path
from edgevision.variants import read_meta, reuse_problem
from edgevision.zoo.assemble import HANDED_ON, file_decoding, refuse_card, refuse_weights, resolve_model, resolve_source
from edgevision.zoo.pull import model_file
from edgevision.zoo.pytorch import export_torch_model
from edgevision.zoo.registry import get_spec, list_models

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class VariantKind:
    """A runtime and precision, e.g. ``openvino-int8``."""

    key: str
    runtime: str  # edgevision backend name
    precision: str  # fp32, bf16, fp16, int8
    label: str
    quantizer: str | None = None  # edgevision quantizer name that makes it
    inference: str | None = None  # the backend's ``precision=`` option; None: the runtime's own rule
    file_of: str | None = None  # runs the file of this other variant (same file, other settings)

    @property
    def settings(self) -> str:
        """How the variant is run, beyond its file, e.g. ``"inference precision bf16"``."""
        if self.inference is None:
            return ""
        return "plugin default precision" if self.inference == "default" else f"inference precision {self.inference}"


KINDS: dict[str, VariantKind] = {
    k.key: k
    for k in (
        VariantKind("torch-fp32", "torch", "fp32", "PyTorch fp32 eager"),
        VariantKind("ort-fp32", "onnxruntime", "fp32", "ONNX Runtime fp32"),
        VariantKind("ort-fp16", "onnxruntime", "fp16", "ONNX Runtime fp16", "ort"),
        VariantKind("ort-int8", "onnxruntime", "int8", "ONNX Runtime int8", "ort"),
        VariantKind("openvino-fp32", "openvino", "fp32", "OpenVINO fp32", "openvino", inference="f32"),
        VariantKind(
            "openvino-bf16", "openvino", "bf16", "OpenVINO bf16", "openvino", inference="bf16", file_of="openvino-fp32"
        ),
        VariantKind("openvino-fp16", "openvino", "fp16", "OpenVINO fp16", "openvino", inference="default"),
        VariantKind("openvino-int8", "openvino", "int8", "OpenVINO int8", "openvino", inference="default"),
        VariantKind("litert-fp32", "litert", "fp32", "LiteRT fp32", "litert"),
        VariantKind("litert-fp16", "litert", "fp16", "LiteRT fp16", "litert"),
        VariantKind("litert-int8", "litert", "int8", "LiteRT int8", "litert"),
        VariantKind("ncnn-fp32", "ncnn", "fp32", "ncnn fp32", inference="fp32"),
        VariantKind("ncnn-fp16", "ncnn", "fp16", "ncnn fp16", inference="fp16", file_of="ncnn-fp32"),
    )
}
FP32_BASELINES = ("torch-fp32", "ort-fp32", "openvino-fp32", "litert-fp32", "ncnn-fp32")
DEFAULT_CALIB = "vtest.avi"


@dataclass(frozen=True)
class BuildOptions:
    """How int8 variants are calibrated and held to the accuracy budget."""

    calib: str | None = None  # folder, glob or video; default: frames of the sample video
    calib_count: int = 64
    max_drop: float = DEFAULT_MAX_DROP
    threads: int = 2  # threads of the quick checks quantization runs


@dataclass
class BenchSource:
    """The model a benchmark starts from, as an fp32 ONNX file."""

    label: str  # zoo name or the user's path
    onnx: Path
    sha256: str
    source_model: str | None  # zoo model whose processor feeds and decodes every variant
    pytorch: bool = False
    weights: Path | None = None
    random_weights: bool = False
    card: dict = field(default_factory=dict)  # the model card of a file that has one

    @property
    def card_request(self) -> CardRequest:
        """The source's card, given whole to every step that builds a variant."""
        return CardRequest(card_from_dict(self.card, self.label), source=HANDED_ON) if self.card else CardRequest()

    @property
    def slug(self) -> str:
        return Path(self.label).stem if "/" in self.label or "." in self.label else self.label


@dataclass
class Variant:
    """A built variant file and how it was made."""

    kind: VariantKind
    path: Path
    cached: bool = False
    build_s: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.kind.key


# ----------------------------------------------------------------------------- choosing


def parse_variant_keys(text: str | None) -> list[str]:
    """Variant keys from ``"ort-fp32,openvino-int8"``; an unknown name is a clear error."""
    keys = [k.strip() for k in (text or "").split(",") if k.strip()]
    unknown = [k for k in keys if k not in KINDS]
    if unknown:
        raise EdgevisionError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}.")
    return list(dict.fromkeys(keys))


def _runtime_missing(kind: VariantKind) -> MissingExtraError | None:
    from edgevision.backends import get_backend_class

    try:
        get_backend_class(kind.runtime)
    except MissingExtraError as exc:
        return exc
    return None


def _builder_missing(kind: VariantKind) -> MissingExtraError | None:
    if kind.runtime == "ncnn" and importlib.util.find_spec("pnnx") is None:  # ncnn files are made by pnnx
        return MissingExtraError("pnnx", "ncnn-convert")
    if kind.quantizer is None:
        return None
    try:
        get_quantizer(kind.quantizer)
    except MissingExtraError as exc:
        return exc
    return None


def choose_variants(requested: str | None, source: BenchSource) -> list[str]:
    """The variants to benchmark: those named (each must be installable), else all available.

    A named variant whose runtime or converter is missing raises ``MissingExtraError``,
    which names the pip extra to install; with no names, such variants are skipped.
    """
    keys = parse_variant_keys(requested)
    if keys:
        for key in keys:
            _check_named(KINDS[key], source)
        return keys
    offered = [k for k, kind in KINDS.items() if _applies(kind, source) and _cpu_runs(kind)]
    chosen = [k for k in offered if _installed(KINDS[k])]
    skipped = [k for k in offered if k not in chosen]
    if skipped:
        logger.info("skipping %s: runtime or converter not installed", ", ".join(skipped))
    return chosen


def _applies(kind: VariantKind, source: BenchSource) -> bool:
    return kind.runtime != "torch" or source.pytorch


def _cpu_runs(kind: VariantKind) -> bool:
    """False for a precision this CPU has no units for (bf16 without AVX512-BF16 or AMX)."""
    if kind.inference is None or _runtime_missing(kind) is not None:
        return True
    from edgevision.backends import get_backend_class

    cls = get_backend_class(kind.runtime)
    return not hasattr(cls, "supports") or cls.supports(kind.inference)


def _installed(kind: VariantKind) -> bool:
    return _runtime_missing(kind) is None and _builder_missing(kind) is None


def _check_named(kind: VariantKind, source: BenchSource) -> None:
    if not _applies(kind, source):
        raise EdgevisionError(
            f"{kind.key} needs a PyTorch zoo model (yolox-*, openpose-body); {source.label} is not one."
        )
    missing = _runtime_missing(kind)
    if missing is not None:
        raise EdgevisionError(f"variant {kind.key}: {missing}")
    if (missing := _builder_missing(kind)) is not None:
        raise EdgevisionError(f"variant {kind.key}: {missing}")
    if not _cpu_runs(kind):
        raise EdgevisionError(f"variant {kind.key}: this CPU has no {kind.precision} units (OpenVINO reports none).")


def with_baseline(keys: list[str]) -> list[str]:
    """``keys`` with ``ort-fp32`` added in front when no fp32 variant is there to compare with."""
    return keys if any(k in FP32_BASELINES for k in keys) else ["ort-fp32", *keys]


# ----------------------------------------------------------------------------- the source


def resolve_bench_source(
    model: str, *, weights: Path | None = None, random_weights: bool = False, card: CardRequest = CardRequest()
) -> BenchSource:
    """The fp32 ONNX file of zoo model or file ``model`` (PyTorch families exported first)."""
    target = resolve_model(model)
    if isinstance(target, Path):
        return _file_source(target, card)
    refuse_card(target, card)
    if target.build is not None:
        onnx = export_torch_model(target, weights=weights, random_weights=random_weights)
        return BenchSource(target.name, onnx, sha256_file(onnx), target.name, True, weights, weights is None)
    refuse_weights(target, weights, random_weights)
    onnx = model_file(target.name, "onnx")
    return BenchSource(target.name, onnx, sha256_file(onnx), target.name)


def _file_source(path: Path, request: CardRequest) -> BenchSource:
    if path.suffix.lower() != ".onnx":
        raise EdgevisionError(
            f"bench starts from a zoo model or an .onnx file, not {path.name}; time a single file with edgevision predict."
        )
    meta = read_meta(path)
    source_model = meta.source_model if meta and meta.source_model in list_models() else None
    decoding = file_decoding(path, request)
    return BenchSource(
        str(path),
        path,
        sha256_file(path),
        source_model if decoding.card is None else None,
        random_weights=bool(meta and meta.random_weights),
        card=decoding.card_fields,
    )


# ----------------------------------------------------------------------------- building


@functools.cache
def quantizer_fingerprint() -> str:
    """Hash of the quantization code, so cached variants are rebuilt when it changes."""
    import edgevision.quantization as package

    digest = hashlib.sha256()
    for path in sorted(Path(package.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def variant_folder(source: BenchSource, kind: VariantKind, options: BuildOptions) -> Path:
    """Cache folder of a variant; int8 folders also depend on calibration settings and quantizer code."""
    name = kind.key
    if kind.precision == "int8":
        settings = json.dumps(
            [
                options.calib or DEFAULT_CALIB,
                options.calib_count,
                options.max_drop,
                quantizer_fingerprint(),
                source.card,
            ]
        )
        name += "-" + hashlib.sha256(settings.encode()).hexdigest()[:8]
    return cache_dir("bench", source.slug, source.sha256[:12], name)


def build_variants(
    source: BenchSource, keys: list[str], options: BuildOptions, *, progress: Progress | None = None
) -> tuple[list[Variant], dict[str, str]]:
    """Build (or reuse) every variant; returns the variants and ``{key: why it failed}``."""
    say = progress or logger.info
    built, failed = [], {}
    for key in keys:
        say(f"building {key}")
        try:
            built.append(build_variant(source, KINDS[key], options))
        except Exception as exc:  # a converter crash loses one variant, not the whole benchmark
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            logger.warning("%s not built: %s", key, message)
            failed[key] = message
    return built, failed


def build_variant(source: BenchSource, kind: VariantKind, options: BuildOptions) -> Variant:
    """The variant's file, from the cache when it is there."""
    start = time.perf_counter()
    if kind.key == "ort-fp32":
        return Variant(kind, source.onnx, cached=True, meta=_meta_dict(source.onnx))
    if kind.key == "torch-fp32":
        return _torch_variant(source, kind, start)
    if kind.file_of is not None:
        base = build_variant(source, KINDS[kind.file_of], options)
        return Variant(kind, base.path, cached=base.cached, build_s=base.build_s, meta=base.meta)
    suffix = {"onnxruntime": ".onnx", "openvino": ".xml", "litert": ".tflite", "ncnn": ".param"}[kind.runtime]
    target = variant_folder(source, kind, options) / f"model{suffix}"
    problem = reuse_problem(target)
    if problem is None:
        return Variant(kind, target, cached=True, meta=_meta_dict(target))
    if target.exists():
        logger.warning("%s: the cached %s %s; building it again", kind.key, target, problem)
    if kind.precision == "fp32":
        _convert(source, kind, target)
    else:
        _quantize(source, kind, target, options, get_quantizer(kind.quantizer).name)
    return Variant(kind, target, build_s=time.perf_counter() - start, meta=_meta_dict(target))


def _torch_variant(source: BenchSource, kind: VariantKind, start: float) -> Variant:
    from edgevision.zoo.pytorch import export_torch_model

    spec = get_spec(source.label)
    path = export_torch_model(spec, weights=source.weights, random_weights=source.weights is None, fmt="pt2")
    return Variant(kind, path, build_s=time.perf_counter() - start, meta=_meta_dict(path))


def _convert(source: BenchSource, kind: VariantKind, target: Path) -> None:
    to = {"openvino": "openvino", "litert": "tflite", "ncnn": "ncnn"}[kind.runtime]
    # Decoded predictions of random weights are noise: only the raw outputs' parity is meaningful then.
    parity = ParityOptions(min_agreement=0.0) if source.random_weights else ParityOptions()
    with tempfile.TemporaryDirectory(prefix="edgevision-bench-") as tmp:
        if source.pytorch:
            model = resolve_source(
                source.label, Path(tmp), weights=source.weights, random_weights=source.weights is None
            )
        else:
            label = str(source.onnx) if source.source_model is None else source.label
            model = resolve_source(label, Path(tmp), card=source.card_request)
        convert_model(model, to=to, output=target, parity=parity)


def _quantize(source: BenchSource, kind: VariantKind, target: Path, options: BuildOptions, quantizer: str) -> None:
    """fp16, or int8 through the accuracy budget (raw-output agreement for random weights); plain int8
    when the budget path cannot run."""
    if kind.precision != "int8":
        _quantize_call(source, kind, target, options, quantizer, precision=kind.precision, max_drop=None)
        return
    try:
        _quantize_call(source, kind, target, options, quantizer, precision="auto", max_drop=options.max_drop)
    except EdgevisionError as exc:
        logger.warning("%s: the accuracy-budget path failed (%s); quantizing every layer instead", kind.key, exc)
        _quantize_call(source, kind, target, options, quantizer, precision="int8", max_drop=None)


def _quantize_call(
    source: BenchSource,
    kind: VariantKind,
    target: Path,
    options: BuildOptions,
    quantizer: str,
    *,
    precision: str,
    max_drop: float | None,
) -> None:
    calib = (options.calib or str(sample_path(DEFAULT_CALIB))) if kind.precision == "int8" else None
    zoo_file = source.source_model == source.label and not source.pytorch
    settings = QuantizeOptions(
        precision=precision, max_drop=max_drop, calib=calib, calib_count=options.calib_count, threads=options.threads
    )
    if source.pytorch:  # by name, so that random weights are judged on raw outputs, not on decoded noise
        quantize_model(
            source.label,
            backend=quantizer,
            output=target,
            options=settings,
            weights=source.weights,
            random_weights=source.random_weights,
        )
        return
    quantize_model(
        source.label if zoo_file else str(source.onnx),
        backend=quantizer,
        output=target,
        options=settings,
        card=source.card_request,
    )


def _meta_dict(path: Path) -> dict:
    from dataclasses import asdict

    meta = read_meta(path)
    return asdict(meta) if meta else {}
