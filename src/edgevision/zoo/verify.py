"""Checking the cache in full: pulled models, sample media and package archives against their hashes.

>>> from edgevision.zoo.verify import verify_cache
>>> report = verify_cache(["nanodet-m"])  # doctest: +SKIP
>>> print(report.ok, report.checks[0].line)  # doctest: +SKIP
True ok      model    nanodet-m            3 files, 22.9 MB
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgevision.errors import EdgevisionError
from edgevision.files import STAMPS, cache_root, sha256_file
from edgevision.packages import ARCHIVE_SUFFIXES, Artifact, archive_problem, archive_stem
from edgevision.samples import SAMPLES
from edgevision.zoo.pull import MANIFEST, damaged_model_files, is_cached, model_dir, repair_command
from edgevision.zoo.pytorch import is_pytorch_family
from edgevision.zoo.registry import get_spec, list_models


@dataclass(frozen=True)
class CacheCheck:
    """One item of the cache: what is wrong with it ("" when intact) and what repairs it."""

    kind: str  # "model", "sample" or "package"
    name: str
    path: Path
    problem: str = ""
    repair: str = ""  # the command that repairs it
    detail: str = ""  # what was checked, for an intact item

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def line(self) -> str:
        """One line: ``ok`` and what was checked, or ``broken``, what is wrong and the repair."""
        said = self.detail if self.ok else f"{self.problem}; repair: {self.repair}"
        return f"{'ok' if self.ok else 'broken':7} {self.kind:8} {self.name:20} {said}"

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "path": str(self.path),
            "ok": self.ok,
            "problem": self.problem or None,
            "repair": self.repair or None,
            "detail": self.detail,
        }


@dataclass
class CacheReport:
    """Every item checked; ``ok`` when none is broken."""

    checks: list[CacheCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def broken(self) -> list[CacheCheck]:
        return [check for check in self.checks if not check.ok]

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "checked": len(self.checks),
            "broken": len(self.broken),
            "items": [check.to_dict() for check in self.checks],
        }


def verify_cache(models: Sequence[str] = (), *, on_check: Callable[[CacheCheck], None] | None = None) -> CacheReport:
    """Hash every pulled model, sample and package archive in the cache against its record.

    With ``models``, only those models and the package archives they are built from.
    ``on_check`` sees each item as soon as it is checked. Nothing is fetched or repaired.
    """
    names = list(dict.fromkeys(models))
    for name in names:
        if is_pytorch_family(get_spec(name)):  # an unknown name fails here, before any work
            raise EdgevisionError(f"{name} is built in PyTorch from your weights; there is no pulled file to verify.")
    report = CacheReport()
    for check in _checks(names):
        report.checks.append(check)
        if on_check is not None:
            on_check(check)
    return report


def _checks(names: list[str]) -> Iterator[CacheCheck]:
    pulled = names or [n for n in list_models() if not is_pytorch_family(get_spec(n)) and is_cached(n)]
    for name in pulled:
        yield check_model(name)
    if not names:
        yield from check_samples()
    pins = [a for n in pulled for a in get_spec(n).artifacts] if names else _all_pins()
    yield from check_packages(pins, only_pinned=bool(names))


def check_model(name: str) -> CacheCheck:
    """A pulled model's files, each hashed against its manifest."""
    spec, folder = get_spec(name), model_dir(name)
    if not is_cached(name):
        return CacheCheck("model", name, folder, "is not pulled", f"edgevision zoo pull {name}")
    problems = damaged_model_files(spec, folder, full=True)
    if problems:
        said = "; ".join(f"{file} {problem}" for file, problem in problems.items())
        return CacheCheck("model", name, folder, said, repair_command(name))
    files = [p for p in folder.iterdir() if p.is_file() and p.name not in (MANIFEST, STAMPS)]
    return CacheCheck("model", name, folder, detail=_files_detail(files))


def check_samples() -> Iterator[CacheCheck]:
    """Each sample in the cache against its pinned sha256 (samples not fetched yet are noted)."""
    folder = cache_root() / "samples"
    for name, artifact in SAMPLES.items():
        path = folder / name
        if not path.is_file():
            yield CacheCheck("sample", name, path, detail="not fetched yet (it is on first use)")
        elif sha256_file(path) != artifact.sha256:
            yield CacheCheck("sample", name, path, "does not match its pinned sha256", "edgevision samples pull")
        else:
            yield CacheCheck("sample", name, path, detail=_files_detail([path]))


def check_packages(pins: list[Artifact], *, only_pinned: bool) -> Iterator[CacheCheck]:
    """Each downloaded package archive, read in full, its pinned files hashed.

    ``only_pinned``: only the archives that ``pins`` come from; else every archive in the cache.
    """
    by_stem: dict[tuple[str, str], list[Artifact]] = {}
    for pin in pins:
        by_stem.setdefault((pin.registry, archive_stem(pin)), []).append(pin)
    for archive in _archives():
        held = by_stem.get((archive.parent.name, archive.name.removesuffix(archive.suffix)), [])
        if only_pinned and not held:
            continue
        name = f"{archive.parent.name}/{archive.name}"
        problem = archive_problem(archive, held)
        if problem:
            repair = f"rm '{archive}' (the next pull downloads it again)"
            yield CacheCheck("package", name, archive, problem, repair)
        else:
            pinned = f", {len(held)} pinned file{'s' * (len(held) != 1)} match" if held else ", no pinned files"
            yield CacheCheck("package", name, archive, detail=_files_detail([archive]) + pinned)


def _archives() -> list[Path]:
    folder = cache_root() / "packages"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*/*") if p.is_file() and p.suffix in ARCHIVE_SUFFIXES)


def _all_pins() -> list[Artifact]:
    return [a for n in list_models() for a in get_spec(n).artifacts] + list(SAMPLES.values())


def _files_detail(paths: list[Path]) -> str:
    size = sum(p.stat().st_size for p in paths)
    count = f"{len(paths)} files, " if len(paths) > 1 else ""
    return f"{count}{size / 1e6:.1f} MB" if size >= 1e5 else f"{count}{size / 1e3:.1f} kB"
