"""The core install must not need torch, TensorFlow or OpenVINO: importing edgevision and
listing or predicting with ONNX Runtime never imports them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "tensorflow", "openvino", "ai_edge_litert", "tf2onnx")


def test_core_import_pulls_no_heavy_runtime():
    code = (
        "import sys, edgevision, edgevision.zoo.assemble, edgevision.cli\n"
        "from edgevision.zoo import list_models\n"
        "from edgevision.backends import list_backends\n"
        "list_models(); list_backends(available_only=True)\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_import_has_no_logging_side_effects():
    code = "import logging, edgevision.cli, edgevision.zoo; print(len(logging.getLogger().handlers))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0"
