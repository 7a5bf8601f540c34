"""Export one variant as a deploy bundle: by bench variant name, from a bench run, or a produced file.

>>> export_bundle("nanodet-m", variant="openvino-int8", output=Path("nd.tar.gz"))          # doctest: +SKIP
>>> export_bundle("nanodet-m", from_bench=Path("runs/bench/results.json"), output=Path("nd"))  # doctest: +SKIP

The variant is built (or taken from the bench cache) exactly as ``edgevision bench`` builds
it, so the bundle holds the file bench measured. See ``edgevision.bundles`` for the layout.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from edgevision.benchmark.checkset import make_check_set
from edgevision.benchmark.machine import machine_info
from edgevision.benchmark.variants import KINDS, BuildOptions, build_variant, resolve_bench_source
from edgevision.bundles import BundleManifest, is_bundle, write_bundle
from edgevision.errors import EdgevisionError
from edgevision.files import sha256_file
from edgevision.variants import VariantMeta, model_files, read_meta, tool_versions, write_meta
from edgevision.zoo.assemble import resolve_model, source_model_of
from edgevision.zoo.pull import pulled_dir
from edgevision.zoo.registry import get_spec, list_models

RUNTIME_OF_SUFFIX = {".onnx": "onnxruntime", ".xml": "openvino", ".tflite": "litert", ".param": "ncnn"}


@dataclass
class ExportResult:
    """What was exported where."""

    output: Path
    model: str  # the file to load inside the bundle
    runtime: str
    runtimes: list[str]  # every runtime running it needs: the model's and its companions'
    precision: str
    variant: str | None
    source_model: str | None
    bytes: int  # the bundle's model files and metadata, uncompressed

    def to_dict(self) -> dict:
        return {**asdict(self), "output": str(self.output)}


def export_bundle(
    model: str,
    *,
    output: Path,
    variant: str | None = None,
    from_bench: Path | None = None,
    options: BuildOptions = BuildOptions(),
) -> ExportResult:
    """Write a bundle of ``model``'s ``variant`` (or of bench's recommendation in ``from_bench``)."""
    output = Path(output)
    _check_output(output)
    built_on: dict = machine_info()
    if from_bench is not None:
        model, variant, path, built_on = _from_bench(Path(from_bench), model, variant)
    elif variant is not None:
        path = _built(model, variant, options)
    else:
        path = _produced_file(model)
    meta = read_meta(path) or VariantMeta(
        source_model=source_model_of(path) or path.name,
        source_sha256=sha256_file(path),
        runtime=RUNTIME_OF_SUFFIX.get(path.suffix.lower(), "onnxruntime"),
        precision="fp32",
        step="pull",
    )
    if from_bench is None:
        built_on.update(_quantizer_latency(meta, options.threads))
    kind = KINDS.get(variant or "")
    manifest = BundleManifest(
        model=path.name,
        runtime=meta.runtime,
        precision=kind.precision if kind and kind.file_of else meta.precision,
        inference=kind.inference if kind and kind.file_of else None,
        variant=variant,
        source_model=meta.source_model,
        source_sha256=meta.source_sha256,
        decoding=_decoding(meta),
        agreement=meta.agreement,
        built_on=built_on,
        tools=meta.tools or tool_versions(),
    )
    companions = _companions(meta.source_model)
    runtimes = list(dict.fromkeys([meta.runtime, *companions.values()]))
    with tempfile.TemporaryDirectory(prefix="edgevision-export-") as tmp:
        staged = _stage(path, meta, Path(tmp))
        checks, manifest.check = _check_set(meta, staged, Path(tmp) / "check")
        write_bundle(staged, manifest, output, companions=companions, extra=checks)
        size = sum(f.stat().st_size for f in Path(tmp).iterdir() if f.is_file())
        size += sum(f.stat().st_size for f in [*companions, *checks])
    return ExportResult(output, path.name, meta.runtime, runtimes, manifest.precision, variant, meta.source_model, size)


def _quantizer_latency(meta: VariantMeta, threads: int) -> dict:
    """The p50 the quantizer timed the variant at when it made it (``threads`` threads, in its
    own process), as ``built_on``'s ``latency_ms_by_threads``; nothing when it timed none.

    >>> m = VariantMeta("nanodet-m", "ab", "onnxruntime", "int8", "quantize",
    ...                 agreement={"latency_ms_p50": {"fp32": 76.0, "int8": 41.2}})
    >>> _quantizer_latency(m, 2)
    {'latency_ms_by_threads': {'2': {'p50': 41.2}}, 'latency_timed_by': 'the quantizer, when it made the file'}
    """
    p50 = ((meta.agreement or {}).get("latency_ms_p50") or {}).get(meta.precision)
    if not p50:
        return {}
    return {
        "latency_ms_by_threads": {str(threads): {"p50": p50}},
        "latency_timed_by": "the quantizer, when it made the file",
    }


def _check_set(meta: VariantMeta, staged: Path, folder: Path) -> tuple[list[Path], dict]:
    """Photos and the fp32 zoo model's predictions on them (see checkset.py); none for a model
    file of the user's or random weights, which have no fp32 zoo reference to judge by."""
    if meta.source_model not in list_models() or meta.random_weights:
        return [], {}
    folder.mkdir()
    return make_check_set(meta.source_model, staged, folder)


def _companions(source_model: str | None) -> dict[Path, str]:
    """The files beside the zoo model's file that its decoding runs ({path: runtime})."""
    if source_model not in list_models():
        return {}
    spec = get_spec(source_model)
    if not spec.companions:
        return {}
    folder = pulled_dir(source_model)
    return {folder / name: runtime for name, runtime in spec.companions.items()}


def _check_output(output: Path) -> None:
    archive = output.name.lower().endswith((".tar.gz", ".tgz"))
    if output.exists() and output.is_dir() and archive:
        raise EdgevisionError(f"{output} is a folder; an archive output needs a file name.")
    if output.exists() and not archive and not (output.is_dir() and is_bundle(output)):
        raise EdgevisionError(f"{output} exists and is not a bundle folder; choose another output.")


def _built(model: str, variant: str, options: BuildOptions) -> Path:
    kind = KINDS.get(variant)
    if kind is None:
        raise EdgevisionError(f"unknown variant '{variant}'; choose one of {', '.join(sorted(KINDS))}.")
    if kind.runtime == "torch":
        raise EdgevisionError(
            f"{variant} runs in PyTorch, which a deploy bundle does not carry; export an ort-, openvino- or litert- variant."
        )
    source = resolve_bench_source(model)
    # a run-time setting (openvino-bf16, ncnn-fp16) bundles the file it runs; bundle.json names the setting
    return build_variant(source, KINDS[kind.file_of] if kind.file_of else kind, options).path


def _produced_file(model: str) -> Path:
    target = resolve_model(model)
    if not isinstance(target, Path):
        raise EdgevisionError(
            f"{model} is a zoo model: name the variant to export (--variant openvino-int8) or give --from-bench results.json."
        )
    return target


def _from_bench(results: Path, model: str | None, variant: str | None) -> tuple[str, str, Path, dict]:
    try:
        data = json.loads(results.read_text())
    except FileNotFoundError:
        raise EdgevisionError(f"{results} does not exist; give the results.json a bench run wrote.") from None
    except (OSError, ValueError) as exc:
        raise EdgevisionError(f"{results} is not a readable results.json ({exc}).") from None
    if not isinstance(data, dict) or "variants" not in data:
        raise EdgevisionError(f"{results} is not a bench results.json (it has no 'variants').")
    if model and data.get("model") not in (model, None):
        raise EdgevisionError(f"{results} is a benchmark of {data.get('model')}, not of {model}.")
    chosen = variant or data.get("recommended")
    if not chosen:
        raise EdgevisionError(f"{results} recommends no variant; name one with --variant.")
    record = next((r for r in data["variants"] if r.get("variant") == chosen), None)
    if record is None:
        names = ", ".join(r.get("variant", "?") for r in data["variants"])
        raise EdgevisionError(f"{results} has no variant {chosen}; it has {names}.")
    path = Path(record.get("file", ""))
    if record.get("runtime") == "torch" or not path.is_file():
        raise EdgevisionError(
            f"{chosen}'s file {path} is not there any more (or runs in PyTorch); "
            f"export it with --variant {chosen} instead."
        )
    measured = {
        str(t): {k: f.get("latency", {}).get(k) for k in ("p50", "p90", "p99")}
        for t, f in record.get("threads", {}).items()
    }
    built_on = {
        **data.get("machine", {}),
        "latency_ms_by_threads": measured,
        "inference_precision": record.get("inference_precision"),
        "agreement": record.get("agreement"),
        "agreement_metric": record.get("agreement_metric"),
    }
    return data.get("model") or model, chosen, path, built_on


def _stage(path: Path, meta: VariantMeta, folder: Path) -> Path:
    """Copies of the model's files in ``folder`` with a metadata file that decodes them as the source."""
    for file in model_files(path):
        shutil.copyfile(file, folder / file.name)
    staged = folder / path.name
    write_meta(staged, meta)
    return staged


def _decoding(meta: VariantMeta) -> str:
    if meta.card:
        return f"model card: decoder {meta.card.get('decoder', '?')} (in the metadata file and inside the model)"
    if meta.source_model:
        return f"as zoo model {meta.source_model} (its decoder is part of edgevision)"
    return "raw outputs"
