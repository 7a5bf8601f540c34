"""--device: OpenVINO devices and LiteRT delegates, listed by `edgevision devices`, refused in one sentence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_clean_error, run_cli
from edgevision.backends import create_backend, use_device
from edgevision.errors import EdgevisionError


def test_devices_lists_each_runtime():
    done = run_cli("devices", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert [d["device"] for d in found["onnxruntime"]] == ["CPU"]
    openvino = [d["device"] for d in found["openvino"]]
    assert "CPU" in openvino and "AUTO" in openvino
    assert {"CPU", "edgetpu"} <= {d["device"] for d in found["litert"]}


@pytest.mark.parametrize("device", ["CPU", "AUTO", "MULTI:CPU"])
def test_openvino_runs_on_the_device_it_is_given(tiny_model_files, tiny_input, device):
    reference = create_backend("openvino", tiny_model_files["openvino"], threads=1)
    backend = create_backend("openvino", tiny_model_files["openvino"], threads=1, device=device)
    assert backend.settings["device"] == device
    assert "CPU" in backend.settings["execution devices"]
    feeds = {backend.inputs[0].name: tiny_input}
    for name, value in reference.run(feeds).items():
        np.testing.assert_allclose(backend.run(feeds)[name], value, rtol=1e-5, atol=1e-5)


def test_use_device_reaches_backends_made_inside(tiny_model_files):
    with use_device("AUTO"):
        inside = create_backend("openvino", tiny_model_files["openvino"], threads=1)
    outside = create_backend("openvino", tiny_model_files["openvino"], threads=1)
    assert (inside.settings["device"], outside.settings["device"]) == ("AUTO", "CPU")


def test_unseen_devices_and_cpu_only_runtimes_are_refused(tiny_model_files):
    with pytest.raises(EdgevisionError, match="OpenVINO sees no device NPU here; it sees CPU"):
        create_backend("openvino", tiny_model_files["openvino"], device="NPU")
    with pytest.raises(EdgevisionError, match="runs on the CPU only here"):
        create_backend("onnxruntime", tiny_model_files["onnxruntime"], device="GPU")
    with pytest.raises(EdgevisionError, match="cannot load the delegate libedgetpu.so.1"):
        create_backend("litert", tiny_model_files["litert"], device="edgetpu")
    assert create_backend("onnxruntime", tiny_model_files["onnxruntime"], device="cpu").device is None


def test_device_errors_on_the_command_line(tiny_model_files, samples_cache):
    image = samples_cache["dog.jpg"]
    done = run_cli("predict", tiny_model_files["openvino"], image, "--device", "GPU", "--no-save")
    assert_clean_error(done, "OpenVINO sees no device GPU", "edgevision devices")
    done = run_cli("predict", tiny_model_files["openvino"], image, "--device", "HETERO:GPU,CPU", "--no-save")
    assert_clean_error(done, "cannot run", "HETERO:GPU,CPU", "it sees CPU")
    done = run_cli("predict", tiny_model_files["onnxruntime"], image, "--device", "GPU", "--no-save")
    assert_clean_error(done, "runs on the CPU only")
