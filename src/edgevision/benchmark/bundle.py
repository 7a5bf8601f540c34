"""``bench BUNDLE``: time a deploy bundle's own variant here, beside what it measured where it was built.

>>> result = run_bundle_bench(Path("nd.tar.gz"), output=None, options=BenchOptions())   # doctest: +SKIP
>>> result.settings["bundle"]["here_vs_built"]                                         # doctest: +SKIP
{'2': 1.08}

A bundle carries one variant and no fp32 model, so nothing is built. Its agreement with
fp32 is measured again here on the bundle's check set (photos and the fp32 predictions on
them, see checkset.py) when it has one, beside the value recorded where it was built. The file
is timed in its own worker process exactly as ``bench`` times a variant (same rounds, same
percentiles), and each thread count's p50 is set against the p50 the bundle recorded on its
build machine, when it recorded one at that thread count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from edgevision.benchmark.checkset import check_image, measure_check_set
from edgevision.benchmark.data import load_data, parse_threads
from edgevision.benchmark.harness import WorkerTask, time_variants
from edgevision.benchmark.machine import machine_info, versions
from edgevision.benchmark.records import variant_record
from edgevision.benchmark.report import write_reports
from edgevision.benchmark.result import BenchResult
from edgevision.benchmark.variants import KINDS, BenchSource, Variant, VariantKind
from edgevision.bundles import MANIFEST, BundleManifest, open_bundle, read_manifest
from edgevision.checks import check_threads, output_folder
from edgevision.errors import EdgevisionError
from edgevision.variants import read_meta
from edgevision.zoo.assemble import load_predictor
from edgevision.zoo.registry import list_models

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

# bench options that build or score variants: they mean nothing for a bundle's one file
NOT_FOR_BUNDLES = ("variants", "data", "annotations", "calib", "weights", "random_weights", "card")


def refuse_build_options(model: str, given: dict) -> None:
    """One sentence when options that only make sense for building variants are given with a bundle."""
    named = [name for name in NOT_FOR_BUNDLES if given.get(name)]
    if named:
        flags = ", ".join("--" + name.replace("_", "-") for name in named)
        raise EdgevisionError(
            f"{model} is a deploy bundle: bench times its one variant, so {flags} do not apply; "
            "bench the zoo model or the source file to compare variants."
        )


def run_bundle_bench(bundle: Path, *, output: Path | None, options, progress: Progress | None = None) -> BenchResult:
    """Time the variant in ``bundle`` at ``options.threads``; write results.json and the reports."""
    say = progress or logger.info
    refuse_build_options(str(bundle), {name: getattr(options, name, None) for name in NOT_FOR_BUNDLES})
    threads = parse_threads(options.threads)
    check_threads(threads)
    name = Path(bundle).name.removesuffix(".tar.gz").removesuffix(".tgz")
    folder = Path(output) if output else Path("runs/bench") / name
    output_folder(folder, what="the report folder")
    model_file = open_bundle(Path(bundle))  # every hash checked
    manifest = read_manifest(model_file.parent)
    meta = read_meta(model_file)
    key = manifest.variant or f"{manifest.runtime}-{manifest.precision}"
    kind = KINDS.get(key) or VariantKind(
        key,
        manifest.runtime,
        manifest.precision,
        f"{manifest.runtime} {manifest.precision}",
        inference=manifest.inference,
    )
    variant = Variant(kind, model_file, cached=True, meta=_meta_fields(meta))
    source_model = manifest.source_model if manifest.source_model in list_models() else None
    card = meta.card if meta and meta.card and source_model is None else None
    tasks = [WorkerTask(key, model_file, kind.runtime, t, source_model, card, kind.inference) for t in threads]
    image = _timing_image(model_file.parent, manifest)
    say(f"timing {manifest.model} from the bundle ({len(tasks)} worker(s), {options.timing.rounds} rounds)")
    timings = time_variants(tasks, image, options.timing, progress=say)
    random_weights = bool(meta and meta.random_weights)
    source = BenchSource(
        str(bundle),
        model_file,
        manifest.files[manifest.model]["sha256"],
        source_model,
        random_weights=random_weights,
        card=card or {},
    )
    record = variant_record(variant, timings, threads, 0, {}, source)
    record["agreement"] = (manifest.agreement or {}).get("value")
    record["agreement_metric"] = (manifest.agreement or {}).get("metric")
    error = record.get("error")
    if error:
        raise EdgevisionError(f"the bundle's {manifest.model} did not run here: {error}")
    result = BenchResult(str(bundle), [record], key, machine_info(), {"versions": versions()})
    comparison = bundle_comparison(manifest, record, threads)
    if manifest.check:
        say(f"measuring agreement on the bundle's {len(manifest.check['images'])} check photos")
        predictor = load_predictor(str(model_file), threads=threads[-1])
        comparison["agreement_here"] = round(measure_check_set(model_file.parent, manifest.check, predictor), 4)
        comparison["agreement_when_built"] = manifest.check.get("agreement_when_built")
        comparison["agreement_metric"] = manifest.check.get("metric")
        record["agreement_here"] = comparison["agreement_here"]
    result.settings.update({"threads": list(threads), "bundle": comparison, "timing": vars(options.timing)})
    result.paths = write_reports(result, folder)
    return result


def _timing_image(folder: Path, manifest: BundleManifest):
    """The image to time on: the bundle's first check photo (nothing to fetch on the board), else a sample photo."""
    if manifest.check.get("images"):
        return check_image(folder / manifest.check["images"][0])
    return load_data(None, 1).images[0]


def _meta_fields(meta) -> dict:
    if meta is None:
        return {}
    return {"notes": list(meta.notes or []), "excluded": list(meta.excluded or [])}


def recorded_latency(manifest: BundleManifest) -> dict[str, float]:
    """p50 ms by thread count that the bundle recorded on its build machine.

    >>> recorded_latency(BundleManifest("m.onnx", "onnxruntime", "int8",
    ...     built_on={"latency_ms_by_threads": {"1": {"p50": 20.0}, "2": {"p50": 11.5}}}))
    {'1': 20.0, '2': 11.5}
    >>> recorded_latency(BundleManifest("m.onnx", "onnxruntime", "int8", built_on={}))
    {}
    """
    measured = (manifest.built_on or {}).get("latency_ms_by_threads") or {}
    return {str(t): float(f["p50"]) for t, f in measured.items() if isinstance(f, dict) and f.get("p50")}


def bundle_comparison(manifest: BundleManifest, record: dict, threads: tuple[int, ...]) -> dict:
    """What the bundle says about itself, and here / there p50 ratios where both exist."""
    there = recorded_latency(manifest)
    here = {str(t): (record["threads"][str(t)].get("latency") or {}).get("p50") for t in threads}
    ratios = {t: round(here[t] / there[t], 3) for t in here if here[t] and there.get(t)}
    built = manifest.built_on or {}
    return {
        "manifest": MANIFEST,
        "variant": manifest.variant,
        "source_model": manifest.source_model,
        "made": manifest.made,
        "built_on_cpu": built.get("cpu"),
        "built_on_cores": built.get("usable_cores"),
        "built_p50_ms": there,
        "here_p50_ms": here,
        "here_vs_built": ratios,
    }
