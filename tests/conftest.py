"""Shared fixtures: tiny synthetic data and tiny models built on the fly (nothing binary is committed).

The session-scoped `pipeline` fixture runs the real chain once through the CLI
(train → cluster → convert → quantize → find-tensors → compress) on tiny data; tests that need
real artifacts share it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

IMAGE = 16
CLASSES = 4

# Fixtures that train, cluster or convert models: a test that uses one is `slow`, so `make test-fast`
# (pytest -m 'not slow') trains nothing. Fixtures built on these are listed too.
MODEL_FIXTURES = {"pipeline", "dense_names_model", "tensor_indices", "transpose_tflite", "planned", "base_models",
                  "eval_json", "zoo"}
FINE_TUNING_TESTS = {"test_streamed_data_is_never_read_whole", "test_quantize_methods_are_all_evaluated"}
SLOW_MODULES = {"test_fuzz"}  # subprocess fuzzing


def pytest_collection_modifyitems(items):
    for item in items:
        if (MODEL_FIXTURES & set(getattr(item, "fixturenames", ())) or item.module.__name__ in SLOW_MODULES
                or item.originalname in FINE_TUNING_TESTS):
            item.add_marker(pytest.mark.slow)


def make_blob_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable images: a bright 5×5 blob in one of four quadrants (the label), plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=n)
    x = rng.integers(0, 60, size=(n, IMAGE, IMAGE)).astype(np.uint8)
    for i, label in enumerate(y):
        row, col = divmod(int(label), 2)
        r0 = row * 8 + rng.integers(0, 3)
        c0 = col * 8 + rng.integers(0, 3)
        x[i, r0:r0 + 5, c0:c0 + 5] = 255
    return x, y.astype(np.int64)


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    """An .npz with 600 train / 200 test 16×16 images in 4 classes."""
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    x_train, y_train = make_blob_images(600, seed=1)
    x_test, y_test = make_blob_images(200, seed=2)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def save_subclassed_model(path: Path, inputs: int) -> Path:
    """A subclassed tf_keras model (a Dense layer in `call`), built and saved as a SavedModel at `path`."""
    import tf_keras

    class Net(tf_keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = tf_keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(np.zeros((1, inputs), np.float32))
    model.save(path, save_format="tf")
    return path


def run_cli(args: list[str]):
    """Invoke the CLI in-process; returns click's Result."""
    from click.testing import CliRunner

    from tinycomp.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="tinycomp", catch_exceptions=False)


def ok(args: list[str]):
    result = run_cli(args)
    assert result.exit_code == 0, f"tinycomp {' '.join(map(str, args))} failed:\n{result.output}"
    return result


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
