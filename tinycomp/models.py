"""Keras models: the tutorial's CNN, .h5 load/save, compile, evaluate and seeding.

Everything is tf_keras (Keras 2), the Keras that TFMOT's clustering works with. TensorFlow is
imported inside the functions so that `import tinycomp.models` stays fast (the CLI's `--help`
must not pay for loading TensorFlow).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

import numpy as np

from tinycomp import fileio
from tinycomp.errors import DataError, InputFileError, ModelError, OutputFileError

# The kernel attribute of each layer type that carries one; first match wins.
KERNEL_ATTRIBUTES = ("kernel", "depthwise_kernel")
MIN_CNN_SIDE = 12  # 5x5 conv, pool 2, 3x3 conv, pool 2 leaves at least 1x1


def build_tutorial_cnn(input_shape: tuple = (28, 28, 1), num_classes: int = 10):
    """The TFLM compression tutorial's CNN; a small MLP for 1-D feature vectors.

    Layer names are set explicitly, so they are the tutorial's names (conv2d_1, dense, ...)
    however many models were built before in the same process.
    """
    import tf_keras
    from tf_keras import layers

    input_shape = tuple(int(d) for d in input_shape)
    if num_classes < 2:
        raise DataError(f"the data has {num_classes} class(es)", "labels", "a classifier needs at least 2 classes")
    if len(input_shape) == 1:
        return tf_keras.Sequential([
            layers.Input(shape=input_shape),
            layers.Dense(64, activation="relu", name="dense"),
            layers.Dense(32, activation="relu", name="dense_1"),
            layers.Dense(num_classes, activation="softmax", name="dense_2"),
        ], name="sequential")
    if len(input_shape) != 3:
        raise ModelError(f"cannot build a model for input rows of shape {input_shape}", "input shape",
                         "give images (H, W) / (H, W, C) or feature vectors (N features)")
    if min(input_shape[:2]) < MIN_CNN_SIDE:
        raise ModelError(f"images of {input_shape[0]}x{input_shape[1]} are too small for the tutorial CNN",
                         "input shape", f"use images of at least {MIN_CNN_SIDE}x{MIN_CNN_SIDE}, "
                         "or flatten them to feature vectors to get an MLP")
    return tf_keras.Sequential([
        layers.Input(shape=input_shape),
        layers.Conv2D(16, (5, 5), activation="relu", name="conv2d"),
        layers.MaxPooling2D((2, 2), name="max_pooling2d"),
        layers.Conv2D(32, (3, 3), activation="relu", name="conv2d_1"),
        layers.MaxPooling2D((2, 2), name="max_pooling2d_1"),
        layers.Flatten(name="flatten"),
        layers.Dense(128, activation="relu", name="dense"),
        layers.Dense(64, activation="relu", name="dense_1"),
        layers.Dense(num_classes, activation="softmax", name="dense_2"),
    ], name="sequential")


def load_keras_model(path: str | os.PathLike):
    """Load a Keras .h5 model, also one saved with TFMOT cluster wrappers (not compiled)."""
    p = fileio.check_h5_file(path)
    import tensorflow_model_optimization as tfmot
    import tf_keras

    try:
        with tfmot.clustering.keras.cluster_scope():
            return tf_keras.models.load_model(p, compile=False)
    except Exception as e:  # h5py, Keras and deserialization errors all mean the same to the user
        raise InputFileError(f"cannot load Keras model: {_first_line(e)}", str(p),
                             "give an .h5 written by `tinycomp train` or `cluster`, or by tf_keras model.save") from e


def save_keras_model(model, path: str | os.PathLike) -> None:
    """Write `model` as .h5 atomically (a temporary file renamed over `path`)."""
    try:
        with fileio.atomic_path(path) as tmp, _quiet_h5_save():
            model.save(str(tmp), save_format="h5", include_optimizer=False)
    except OSError as e:
        raise OutputFileError(f"cannot write Keras model: {e.strerror or e}", str(path)) from e


@contextlib.contextmanager
def _quiet_h5_save():
    """Silence tf_keras's "HDF5 is legacy" warning and its "compiled metrics have yet to be built"
    warning, which it logs for every uncompiled model (loaded with compile=False, or stripped)."""
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*HDF5 file via `model.save\\(\\)`", category=UserWarning)
            yield
    finally:
        tf_logger.setLevel(level)


def compile_for_training(model, learning_rate: float | None = None):
    """Compile with Adam, sparse categorical cross-entropy and accuracy, as the tutorial does."""
    import tf_keras

    optimizer = tf_keras.optimizers.Adam() if learning_rate is None else tf_keras.optimizers.Adam(learning_rate)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def evaluate_keras(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy; works on models loaded with compile=False."""
    if len(x) == 0:
        raise DataError("no samples to evaluate on", "x_test")
    probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == np.asarray(y).ravel()))


def kernel_of(layer):
    """The layer's kernel variable, or None for layers without one (pooling, flatten...)."""
    for attribute in KERNEL_ATTRIBUTES:
        kernel = getattr(layer, attribute, None)
        if kernel is not None and hasattr(kernel, "shape"):
            return kernel
    return None


def weight_layers(model) -> list[str]:
    """Names of the layers that have a kernel (Conv2D, DepthwiseConv2D, Dense, Conv2DTranspose...)."""
    return [layer.name for layer in model.layers if kernel_of(layer) is not None]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic."""
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
