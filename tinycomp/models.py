"""Keras models: the tutorial's CNN, safe .h5/.keras/SavedModel load, save, compile, evaluate, seeding.

Everything is tf_keras (Keras 2), the Keras that TFMOT's clustering works with; Keras 3 files are
rebuilt as tf_keras (tinycomp.keras3). TensorFlow is
imported inside the functions so that `import tinycomp.models` stays fast (the CLI's `--help`
must not pay for loading TensorFlow).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinycomp import fileio, keras3, model_config
from tinycomp.errors import DataError, InputFileError, ModelError, OutputFileError
from tinycomp.metrics import CLASSIFY, Task
from tinycomp.model_config import LOAD_HINTS, SUPPORTED, without_tf_keras_equivalent
from tinycomp.saved_model import NOT_KERAS_HINT, load_signature_model

EAGER_BATCH = 1024  # rows per eager call in outputs_of

# The kernel attribute of each layer type that carries one; first match wins. SeparableConv
# layers have a depthwise and a pointwise kernel; TFMOT clusters the pointwise one.
KERNEL_ATTRIBUTES = ("kernel", "pointwise_kernel", "depthwise_kernel")
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


def load_keras_model(path: str | os.PathLike, *, trust: bool = False, for_conversion: bool = False,
                     native_keras3: bool = False):
    """Load a model (not compiled): .h5, .keras or a SavedModel directory saved by tf_keras, also one
    saved with TFMOT cluster wrappers; .h5 and .keras files written by Keras 3; and, with
    `for_conversion`, a SavedModel without Keras metadata (its serving signature).

    The architecture is read as data first (`model_config`): subclassed, multi-input and
    multi-output models are refused, and unless `trust` is True so are models whose loading would
    run code (Lambda layers, custom classes): `UnsafeModelError` names the layer. The saved
    training configuration (loss) is remembered for `compile_for_training`.

    A Keras 3 model comes back rebuilt as tf_keras with the same weights, checked to give the same
    outputs (`keras3.to_tf_keras`). Where tf_keras has no equivalent layer, `for_conversion` (convert,
    quantize, eval) gets the Keras 3 model itself, which TFLiteConverter converts directly; otherwise
    (cluster, plan) one ModelError names the layers; `native_keras3` (eval) always gets the Keras 3 model,
    so a Keras 3 file is measured as the user's Keras runs it. A plain SavedModel is a `saved_model.SignatureModel`
    with `for_conversion`, else one ModelError pointing to quantize + palettize.
    """
    fmt = fileio.keras_model_format(path)
    if fmt == "signature":
        return _load_signature(Path(path), for_conversion)
    saved = model_config.read_saved_config(Path(path), fmt)
    model_config.check_structure(saved)
    if not trust:
        model_config.check_safe(saved)
    if saved.keras_version >= 3:
        model = _load_keras3(saved, trust, for_conversion, native_keras3)
    else:
        model = _deserialize(Path(path), fmt, trust)
        check_supported(model, str(path))
    _SAVED.set(model, saved)
    return model


def _load_signature(p: Path, for_conversion: bool):

    if not for_conversion:
        raise ModelError("a SavedModel without Keras metadata has no layers to cluster or fine-tune", str(p),
                         NOT_KERAS_HINT)
    return load_signature_model(p)


def _load_keras3(saved, trust: bool, for_conversion: bool, native: bool):

    rebuildable = not without_tf_keras_equivalent(saved)
    if native or (for_conversion and not rebuildable):
        return keras3.load_native(saved.path, trust=trust)
    if not rebuildable:
        keras3.check_has_equivalents(saved)  # raises: one ModelError naming the layers
    return keras3.to_tf_keras(keras3.load_native(saved.path, trust=trust), str(saved.path))


def _deserialize(p: Path, fmt: str, trust: bool):
    import tensorflow_model_optimization as tfmot
    import tf_keras

    kwargs = {"safe_mode": not trust} if fmt == "keras" else {}
    try:
        with tfmot.clustering.keras.cluster_scope(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf_keras.models.load_model(str(p), compile=False, **kwargs)
    except Exception as e:  # h5py, Keras and deserialization errors all mean the same to the user
        raise InputFileError(f"cannot load Keras model: {_first_line(e)}", str(p), LOAD_HINTS[fmt]) from e


def check_supported(model, where: str) -> None:
    """One ModelError for subclassed, multi-input and multi-output models."""
    import tf_keras

    functional = isinstance(model, tf_keras.Sequential) or getattr(model, "_is_graph_network", False)
    if not functional:
        raise ModelError(f"subclassed model {type(model).__name__!r} is not supported", where, SUPPORTED)
    for what, tensors in (("inputs", model.inputs), ("outputs", model.outputs)):
        if len(tensors or []) != 1:
            raise ModelError(f"the model has {len(tensors or [])} {what}", where, SUPPORTED)


class _SavedConfigs:
    """The saved config of each loaded model, without keeping models alive or touching them
    (Keras tracks attributes set on a model)."""

    def __init__(self):
        self._by_id: dict[int, tuple[weakref.ref, object]] = {}

    def set(self, model, saved) -> None:
        key = id(model)
        self._by_id[key] = (weakref.ref(model, lambda _ref: self._by_id.pop(key, None)), saved)

    def get(self, model):
        entry = self._by_id.get(id(model))
        return entry[1] if entry and entry[0]() is model else None


_SAVED = _SavedConfigs()


def saved_config(model):
    """The `model_config.SavedModelConfig` a model was loaded with, or None (built in memory)."""
    return _SAVED.get(model)


def save_keras_model(model, path: str | os.PathLike, *, like=None, trust: bool = False) -> None:
    """Write `model` atomically: the .keras format when `path` ends in .keras, else .h5.

    When `like` (a loaded model `model` was made from) came from a Keras 3 file, the file is written
    by Keras 3: the user's model with `model`'s weights (keras3.save_as_keras3), so their Keras loads it.
    """
    saved = saved_config(like) if like is not None else None
    if saved is not None and saved.keras_version >= 3:

        keras3.save_as_keras3(model, saved.path, path, trust=trust, training_config=saved.training_config)
        return
    keras_format = str(path).endswith(".keras")
    try:
        with fileio.atomic_path(path) as tmp, _quiet_h5_save():
            if keras_format:  # the temporary name keeps the .keras suffix, which tf_keras requires
                model.save(str(tmp), save_format="keras")
            else:
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


DEFAULT_LEARNING_RATE = 1e-3  # Adam's default: `train`, and fine-tunes recorded before FINE_TUNE_LEARNING_RATE
# Adam's rate for `cluster`'s fine-tune without a plan's rate, measured on four real models (docs/plan.md,
# "The learning rate"): 1e-3 loses accuracy on converged models even unclustered (−3.9 pp on a Conv1D
# sensor model, −0.6 pp on animal silhouettes); 1e-5 (TFMOT's guide) is too small to recover the
# few-cluster layers fine-tuning is for; 1e-4 recovers them and leaves a converged model as it was.
# `plan --learning-rate auto` chooses between 1e-4 and 1e-3 by validation (an undertrained model gains at 1e-3).
FINE_TUNE_LEARNING_RATE = 1e-4


@dataclass(frozen=True)
class LossChoice:
    """The training loss, whether it takes logits, and why it was chosen (for sidecars and logs)."""

    name: str  # a tf_keras.losses name, e.g. sparse_categorical_crossentropy, mean_squared_error
    from_logits: bool | None  # None for losses without the option
    reason: str

    def describe(self) -> dict:
        described = {"loss": self.name, "from_logits": self.from_logits, "reason": self.reason}
        if self.name == "categorical_crossentropy":
            described["labels"] = "one-hot, built from the integer labels"
        return described

    def build(self):
        import tf_keras

        if not self.from_logits:  # the plain function, as compile("sparse_categorical_crossentropy") uses
            return tf_keras.losses.get(self.name)
        return getattr(tf_keras.losses, _LOSS_CLASSES[self.name])(from_logits=self.from_logits)


# Loss function names → their class, for losses that take from_logits.
_LOSS_CLASSES = {
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "binary_crossentropy": "BinaryCrossentropy",
}
_CLASS_NAMES = {v: k for k, v in _LOSS_CLASSES.items()}
_REGRESSION_LOSSES = {"MeanSquaredError": "mean_squared_error", "MeanAbsoluteError": "mean_absolute_error",
                      "Huber": "huber", "LogCosh": "log_cosh", "MeanSquaredLogarithmicError": "mean_squared_logarithmic_error"}
_NAME_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}


def choose_loss(model, *, task: Task = CLASSIFY, saved_loss=None) -> LossChoice:
    """The loss for fine-tuning: the model's saved compile config when it has a built-in loss;
    otherwise from the task and the output activation (softmax → sparse CE on probabilities,
    linear output on a classifier → sparse CE from logits, sigmoid with one unit → binary CE,
    regress → MSE)."""
    from_saved = _loss_from_saved(saved_loss)
    if from_saved is not None:
        return from_saved
    note = f" (saved loss {saved_loss!r} is not a built-in loss)" if saved_loss else ""
    if task.fixed_loss is not None:
        return LossChoice(task.fixed_loss, None, f"{task.name} task" + note)
    activation = output_activation(model)
    units = int(model.output_shape[-1])
    if activation == "sigmoid" and units == 1:
        return LossChoice("binary_crossentropy", False, "one sigmoid output" + note)
    if activation in ("softmax", "sigmoid"):
        return LossChoice("sparse_categorical_crossentropy", False, f"{activation} output" + note)
    return LossChoice("sparse_categorical_crossentropy", True, f"{activation} output on a classifier: logits" + note)


def _loss_from_saved(saved_loss) -> LossChoice | None:
    if isinstance(saved_loss, str):
        name = _NAME_ALIASES.get(saved_loss, saved_loss)
        if name in _LOSS_CLASSES:
            return LossChoice(name, False, "saved compile config")
        if name in _REGRESSION_LOSSES.values():
            return LossChoice(name, None, "saved compile config")
        return None
    if isinstance(saved_loss, dict):
        class_name = saved_loss.get("class_name")
        config: dict = saved_loss["config"] if isinstance(saved_loss.get("config"), dict) else {}
        if class_name in _CLASS_NAMES:
            return LossChoice(_CLASS_NAMES[class_name], bool(config.get("from_logits", False)), "saved compile config")
        if class_name in _REGRESSION_LOSSES:
            return LossChoice(_REGRESSION_LOSSES[class_name], None, "saved compile config")
        if class_name == "function" and isinstance(saved_loss.get("config"), str):  # .keras format, a loss function
            return _loss_from_saved(saved_loss["config"])
    return None


def output_activation(model) -> str:
    """Name of the activation that produces the model output ('linear' when there is none)."""
    layer = model.layers[-1]
    layer = getattr(layer, "layer", layer)  # a TFMOT wrapper (ClusterWeights) holds the real layer
    if type(layer).__name__ == "Softmax":
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None and type(layer).__name__ == "Activation":
        activation = layer.activation
    name = getattr(activation, "__name__", None) or (activation if isinstance(activation, str) else "linear")
    return str(name)


def compile_for_training(model, learning_rate: float | None = None, *, task: Task = CLASSIFY,
                         loss: LossChoice | None = None, saved_from=None) -> LossChoice:
    """Compile with Adam(`learning_rate`, default 1e-3) and the loss of `choose_loss`.

    `loss` overrides the choice; else the saved compile config of `saved_from` (a loaded model;
    default `model`) is used when present. Classifiers also get the accuracy metric. Returns the
    loss used, so callers can record it.
    """
    import tf_keras

    if loss is None:
        saved = saved_config(saved_from if saved_from is not None else model)
        loss = choose_loss(model, task=task, saved_loss=saved.saved_loss if saved else None)
    rate = DEFAULT_LEARNING_RATE if learning_rate is None else float(learning_rate)
    metrics = list(task.keras_metrics)
    model.compile(optimizer=tf_keras.optimizers.Adam(rate), loss=loss.build(), metrics=metrics)
    return loss


def evaluate_keras(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy; works on models loaded with compile=False."""
    if len(x) == 0:
        raise DataError("no samples to evaluate on", "x_test")
    probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == np.asarray(y).ravel()))


def outputs_of(model: Any, x: np.ndarray) -> np.ndarray:
    """The model's outputs, called eagerly batch by batch (no tf.function to trace for each new model)."""
    return np.concatenate([np.asarray(model(np.asarray(x[i:i + EAGER_BATCH]), training=False))
                           for i in range(0, len(x), EAGER_BATCH)])


def score_of(model: Any, x: np.ndarray, y: np.ndarray, task: Task) -> float:
    """The task's plan score of `model` on (x, y): top-1 accuracy, or output SNR vs y in dB."""
    return task.plan_score(outputs_of(model, x), y)


def predict_outputs(model, data, which: str = "test", *, limit: int | None = None, batch_size: int = 256) -> np.ndarray:
    """The model's float outputs on the first `limit` rows of a Dataset split, batch by batch
    (memory-mapped data is never read whole)."""
    x, _ = data.split(which)
    rows = np.arange(len(x) if limit is None else min(limit, len(x)))
    if len(rows) == 0:
        raise DataError("no samples to evaluate on", f"{data.name} ({which})")
    outputs = [np.asarray(model(xb, training=False)) for xb, _ in data.iter_batches(which, batch_size, rows=rows)]
    return np.concatenate(outputs).astype(np.float32)


def score_keras(model, data, task, *, limit: int | None = None) -> dict[str, float]:
    """The task's metrics ({'accuracy': ...} or {'mse': ..., 'snr_db': ...}) on the test split."""
    outputs = predict_outputs(model, data, limit=limit)
    return task.score(outputs, np.asarray(data.y_test[:len(outputs)]))


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


def devices() -> str:
    """TensorFlow's devices (a GPU, when present, is used without any option)."""
    import tensorflow as tf

    return ", ".join(d.name for d in tf.config.list_logical_devices()) or "none"
