"""Real sample media fetched from registry packages: photos and a pedestrian video.

>>> from edgevision.samples import list_samples
>>> "vtest.avi" in list_samples()
True
"""

from __future__ import annotations

from pathlib import Path

from edgevision.errors import EdgevisionError
from edgevision.files import cache_dir, sha256_file
from edgevision.packages import Artifact, fetch_artifact

_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data/"
_OPENCV_URL = "https://github.com/opencv/opencv/raw/4.6.0/samples/data/"
_DARKNET_DATA = "usr/share/darknet/data/"
_DARKNET_URL = "https://github.com/pjreddie/darknet/raw/master/data/"


def _opencv(name: str, sha256: str) -> Artifact:
    return Artifact(name, "debian", "opencv-doc", "4.6.0+dfsg-12", _OPENCV_DATA + name, sha256, _OPENCV_URL + name)


def _darknet(name: str, sha256: str) -> Artifact:
    return Artifact(
        name, "debian", "darknet", "0.0.0+git20180914.61c9d02e-2+b4", _DARKNET_DATA + name, sha256, _DARKNET_URL + name
    )


SAMPLES: dict[str, Artifact] = {
    a.filename: a
    for a in (
        # 795 frames, 768x576, 10 fps: pedestrians seen by a fixed outdoor camera.
        _opencv("vtest.avi", "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"),
        _opencv("messi5.jpg", "1d570e49654e84c7a943918537bd9e5e1ef82920152e147c834006e235be97c9"),
        _opencv("basketball1.png", "ba06f6701f7260998b430c39b6557f775497e6ce7b1a74f0b7ea6af371bf54a6"),
        # The same two players a moment later: with basketball1, messi5 and person, the large
        # people that pose models are judged on (edgevision.quantization.api.POSE_PHOTOS).
        _opencv("basketball2.png", "b3047772e0dc6c9d83c26f64894ca1a897f799f855c5574ac24b2ef934c2978e"),
        _darknet("person.jpg", "cdcbab947e46110fc2b77784ac54ddbbab2640f1e44cb5e91fc8984a9793a7d1"),
        _darknet("dog.jpg", "5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866"),
        _darknet("horses.jpg", "c8f0a677a1356569e2ce71d2fa88c1030c0ae57ecf5e14170e02d9a86a20dcb4"),
    )
}
DEFAULT_VIDEO = "vtest.avi"
PHOTOS = ("person.jpg", "dog.jpg", "horses.jpg", "messi5.jpg", "basketball1.png")
# One or a few people who fill much of the frame: what single-pose models are used on.
POSE_PHOTOS = ("person.jpg", "messi5.jpg", "basketball1.png", "basketball2.png")


def list_samples() -> list[str]:
    return list(SAMPLES)


def samples_dir() -> Path:
    return cache_dir("samples")


def sample_path(name: str) -> Path:
    """Path of sample ``name`` in the cache, fetched and verified on first use."""
    if name not in SAMPLES:
        raise EdgevisionError(f"unknown sample '{name}'; samples are {', '.join(SAMPLES)}.")
    path = samples_dir() / name
    if not path.exists() or sha256_file(path) != SAMPLES[name].sha256:
        fetch_artifact(SAMPLES[name], samples_dir())
    return path


def pull_samples(names: list[str] | None = None) -> list[Path]:
    """Fetch the named samples (all by default) into the cache and return their paths."""
    return [sample_path(n) for n in names or list_samples()]
