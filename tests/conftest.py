from __future__ import annotations

import numpy as np
import pytest

import tiny_models


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory) -> dict[str, "object"]:
    """The tiny reference model in every format, keyed by backend name."""
    folder = tmp_path_factory.mktemp("tiny")
    files = tiny_models.build_torch(folder)
    return {
        "onnxruntime": files["onnx"],
        "openvino": tiny_models.build_openvino_ir(files["onnx"]),
        "litert": tiny_models.build_tflite(folder),
        "torch": files["torch"],
    }


@pytest.fixture(scope="session")
def tiny_input() -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, tiny_models.INPUT_SHAPE).astype(np.float32)
