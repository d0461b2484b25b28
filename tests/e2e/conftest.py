"""End-to-end tier: tests that train, convert, run TFLM or start processes, and their model fixtures.

The session-scoped `pipeline` fixture runs the real chain once through the CLI
(train → cluster → convert → quantize → find-tensors → compress) on tiny data; tests that need
real artifacts share it. Every test here is marked `slow`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import CLASSES, ok


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, tiny_npz) -> dict[str, Path]:
    """The whole chain on tiny data, through the CLI: every artifact's path."""
    d = tmp_path_factory.mktemp("pipeline")
    data = ["--data", tiny_npz]
    spec = d / "clustering.yaml"
    spec.write_text("layers:\n  - name: conv2d_1\n    clusters: 8\n  - name: dense\n    clusters: 8\n")
    paths = {name: d / name for name in ("model.h5", "model.tflite", "model_int8.tflite", "clustered.h5",
                                           "clustered_int8.tflite", "compression.yaml", "compressed.tflite")}
    paths = {name.replace(".", "_"): p for name, p in paths.items()}
    ok(["train", "-o", paths["model_h5"], "--epochs", "2", "--batch-size", "32", *data])
    ok(["cluster", paths["model_h5"], "--spec", spec, "-o", paths["clustered_h5"], "--epochs", "1", *data])
    ok(["convert", paths["model_h5"], "-o", paths["model_tflite"]])
    ok(["quantize", paths["model_h5"], "-o", paths["model_int8_tflite"], "--calibration-samples", "20", *data])
    ok(["quantize", paths["clustered_h5"], "-o", paths["clustered_int8_tflite"], "--calibration-samples", "20", *data])
    ok(["find-tensors", paths["clustered_int8_tflite"], "--clustering", d / "clustered.yaml",
        "-o", paths["compression_yaml"]])
    ok(["compress", paths["clustered_int8_tflite"], "--spec", paths["compression_yaml"],
        "-o", paths["compressed_tflite"]])
    paths["clustering_spec"] = spec
    paths["clustered_yaml"] = d / "clustered.yaml"
    paths["data"] = tiny_npz
    return paths


@pytest.fixture(scope="session")
def dense_names_model(tmp_path_factory, tiny_npz) -> Path:
    """An int8 .tflite whose layers are named dense, dense_1 and dense_10 (dense_1 clustered to 4)."""
    import tf_keras

    from tinycomp.convert import quantize
    from tinycomp.data import load_dataset

    data = load_dataset(npz=tiny_npz)
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Input(shape=data.input_shape),
        tf_keras.layers.Flatten(name="flatten"),
        tf_keras.layers.Dense(24, activation="relu", name="dense"),
        tf_keras.layers.Dense(12, activation="relu", name="dense_1"),
        tf_keras.layers.Dense(CLASSES, activation="softmax", name="dense_10"),
    ])
    kernel, bias = model.get_layer("dense_1").get_weights()
    centroids = np.linspace(kernel.min(), kernel.max(), 4)
    clustered = centroids[np.abs(kernel[..., None] - centroids).argmin(-1)]  # test fixture, not product code
    model.get_layer("dense_1").set_weights([clustered.astype(np.float32), bias])
    path = tmp_path_factory.mktemp("dense_names") / "dense_names_int8.tflite"
    path.write_bytes(quantize(model, method="int8", io="uint8", calibration=data.x_train[:20]))
    return path
