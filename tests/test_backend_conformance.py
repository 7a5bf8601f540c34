"""Every runtime gives the same outputs on the same tiny model, and rejects bad inputs alike.

A new runtime is checked by adding its name to BACKENDS and its file to the fixture.
"""

from __future__ import annotations

import numpy as np
import pytest

import tiny_models
from edgevision.backends import create_backend, list_backends
from edgevision.errors import EdgevisionError

BACKENDS = ["onnxruntime", "openvino", "litert", "torch", "ncnn"]
TOLERANCE = 1e-4  # max abs diff on fp32 outputs of magnitude ~1


def test_every_registered_backend_is_covered():
    assert sorted(BACKENDS) == list_backends()


@pytest.fixture(params=BACKENDS)
def backend(request, tiny_model_files):
    return create_backend(request.param, tiny_model_files[request.param], threads=1)


def _by_shape(outputs: dict[str, np.ndarray]) -> dict[tuple, np.ndarray]:
    # Output names differ across converters; the two outputs differ in shape.
    return {tuple(v.shape): v for v in outputs.values()}


def test_outputs_match_reference(backend, tiny_input):
    expected = _by_shape(tiny_models.reference(tiny_input))
    got = _by_shape(backend.run({backend.inputs[0].name: tiny_input}))
    assert got.keys() == expected.keys()
    for shape, value in expected.items():
        np.testing.assert_allclose(got[shape], value, atol=TOLERANCE, rtol=0)


def test_outputs_of_one_run_survive_the_next(backend, tiny_input):
    """Outputs belong to the caller: a later run (OpenVINO writes into its output arrays) leaves them alone."""
    name = backend.inputs[0].name
    first = {k: v.copy() for k, v in backend.run({name: tiny_input}).items()}
    kept = backend.run({name: tiny_input})
    backend.run({name: tiny_input[:, ::-1].copy() * 3.0})
    for key, value in first.items():
        np.testing.assert_array_equal(kept[key], value)


def test_input_spec(backend):
    assert len(backend.inputs) == 1
    assert backend.inputs[0].dtype == "float32"
    assert backend.inputs[0].shape in {tiny_models.INPUT_SHAPE, (None, *tiny_models.INPUT_SHAPE[1:])}
    assert len(backend.outputs) == 2


def test_wrong_dtype_is_refused(backend, tiny_input):
    with pytest.raises(EdgevisionError, match="float32"):
        backend.run({backend.inputs[0].name: tiny_input.astype(np.float64)})


def test_wrong_shape_is_refused(backend):
    with pytest.raises(EdgevisionError, match="shape"):
        backend.run({backend.inputs[0].name: np.zeros((1, 3, 16, 16), np.float32)})


def test_unknown_input_name_is_refused(backend, tiny_input):
    with pytest.raises(EdgevisionError, match="missing"):
        backend.run({"not_an_input": tiny_input})


@pytest.mark.parametrize("name", BACKENDS)
def test_truncated_file_is_refused(name, tiny_model_files, tmp_path):
    source = tiny_model_files[name]
    broken = tmp_path / source.name
    broken.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    if source.suffix in (".xml", ".param"):  # IR and ncnn keep their weights in the .bin beside it
        (tmp_path / source.with_suffix(".bin").name).write_bytes(b"\0" * 10)
    with pytest.raises(EdgevisionError, match="cannot load"):
        create_backend(name, broken)


@pytest.mark.parametrize("name", BACKENDS)
def test_zero_threads_is_refused(name, tiny_model_files):
    with pytest.raises(EdgevisionError, match="threads"):
        create_backend(name, tiny_model_files[name], threads=0)


def test_wrong_file_type_is_refused(tiny_model_files):
    with pytest.raises(EdgevisionError, match="cannot load"):
        create_backend("litert", tiny_model_files["onnxruntime"])
