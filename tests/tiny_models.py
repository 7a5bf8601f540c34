"""One tiny image model written out in every format the backends load.

The same weights are built in PyTorch (exported to .pt2 and .onnx, and to OpenVINO IR and
ncnn) and in Keras (converted to .tflite), so every backend can be checked against one reference.
Input is NHWC float32 [1, 16, 16, 3]; outputs are logits [1, 4] and pooled features [1, 8].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INPUT_SHAPE = (1, 16, 16, 3)


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv_w": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32),  # OIHW
        "conv_b": rng.normal(0, 0.1, (8,)).astype(np.float32),
        "fc_w": rng.normal(0, 0.3, (4, 8)).astype(np.float32),  # out, in
        "fc_b": rng.normal(0, 0.1, (4,)).astype(np.float32),
    }


def reference(x: np.ndarray, w: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The two outputs computed with plain numpy: the ground truth for every backend."""
    w = w or _weights()
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))  # N,H,W,C,3,3
    conv = np.einsum("nhwcij,ocij->nhwo", patches, w["conv_w"]) + w["conv_b"]
    features = np.maximum(conv, 0).mean(axis=(1, 2))
    return {"logits": features @ w["fc_w"].T + w["fc_b"], "features": features}


def build_torch(folder: Path) -> dict[str, Path]:
    """Write tiny.pt2 and tiny.onnx from a PyTorch module."""
    import torch

    w = _weights()

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 4)
            self.conv.weight.data = torch.from_numpy(w["conv_w"])
            self.conv.bias.data = torch.from_numpy(w["conv_b"])
            self.fc.weight.data = torch.from_numpy(w["fc_w"])
            self.fc.bias.data = torch.from_numpy(w["fc_b"])

        def forward(self, images):
            features = torch.relu(self.conv(images.permute(0, 3, 1, 2))).mean(dim=(2, 3))
            return self.fc(features), features

    model = Tiny().eval()
    example = (torch.zeros(INPUT_SHAPE),)
    torch.export.save(torch.export.export(model, example), folder / "tiny.pt2")
    torch.onnx.export(
        model,
        example,
        folder / "tiny.onnx",
        input_names=["images"],
        output_names=["logits", "features"],
        dynamo=False,
        opset_version=17,
    )
    return {"torch": folder / "tiny.pt2", "onnx": folder / "tiny.onnx"}


def build_openvino_ir(onnx_path: Path) -> Path:
    import openvino as ov

    xml = onnx_path.with_suffix(".xml")
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml


def build_ncnn(onnx_path: Path) -> Path:
    """ncnn/tiny.param + tiny.bin through pnnx, with the ONNX names and shape hints edgevision adds.

    In a folder of their own: OpenVINO IR's weights are also called tiny.bin.
    """
    from edgevision.conversion.ncnn import onnx_to_ncnn

    return onnx_to_ncnn(onnx_path, onnx_path.parent / "ncnn" / "tiny.param")


def build_tflite(folder: Path) -> Path:
    """Write tiny.tflite from a Keras model holding the same weights."""
    import tensorflow as tf

    w = _weights()
    images = tf.keras.Input(shape=INPUT_SHAPE[1:], batch_size=1, name="images")
    conv = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")
    features = tf.keras.layers.GlobalAveragePooling2D()(conv(images))
    dense = tf.keras.layers.Dense(4)
    model = tf.keras.Model(images, [dense(features), features])
    conv.set_weights([w["conv_w"].transpose(2, 3, 1, 0), w["conv_b"]])
    dense.set_weights([w["fc_w"].T, w["fc_b"]])
    path = folder / "tiny.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path
