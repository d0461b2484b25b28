"""Training the tutorial's baseline model on a Dataset, with a per-epoch progress callback.

What the model never sees is decided as `plan` decides its validation rows (`Dataset.validation_split`,
tinycomp.data.validation): data with groups (groups_train) holds out whole groups chosen by the seed,
data with its own validation set (x_val/y_val) validates on it and trains on every training row, and
other data holds out its last rows (Keras's validation_split). `TrainResult.validation` records which,
so that a later plan can validate on rows the model was not trained on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinycomp.data import Dataset, check_fits_model
from tinycomp.data.validation import ValidationSource
from tinycomp.errors import DataError, InvalidValue, ModelError
from tinycomp.metrics import Task, choose_task
from tinycomp.models import build_tutorial_cnn, compile_for_training, evaluate_keras, set_seed

# on_epoch(epoch_index, epochs, logs): epoch_index counts from 0; logs maps metric → float.
EpochCallback = Callable[[int, int, dict], None]


@dataclass
class TrainResult:
    """A trained model, its test accuracy, the Keras history and the wall time of the step."""

    model: Any
    test_accuracy: float
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    validation: ValidationSource | None = None  # the rows held out of training (None: no validation split)


def train_model(data: Dataset, epochs: int = 3, batch_size: int = 128, validation_split: float = 0.1,
                seed: int = 0, on_epoch: EpochCallback | None = None) -> TrainResult:
    """Build the tutorial CNN (or MLP for feature vectors), fit it and test it, as the tutorial does."""
    check_fit_options(epochs, batch_size, validation_split)
    check_enough_training_data(data, validation_split)
    start = time.perf_counter()
    set_seed(seed)
    if data.num_classes is None:
        raise DataError("training the tutorial's classifier needs integer class labels", data.name,
                        "give y_train and y_test as labels 0..N-1")
    model = build_tutorial_cnn(data.input_shape, data.num_classes)
    compile_for_training(model)
    validation = None
    if validation_split > 0 and (data.groups_train is not None or data.x_val is not None):
        split = data.validation_split(validation_split, seed)
        fit_data, _, _ = data.validation_rows(split)
        history = fit(model, fit_data, epochs, batch_size, 0.0, on_epoch, validate_on_val=True)
        validation = split.source
    else:
        history = fit(model, data, epochs, batch_size, validation_split, on_epoch)
        if validation_split > 0:
            kept = int(len(data.x_train) * (1 - validation_split))  # Keras's cut
            validation = ValidationSource("rows", len(data.x_train) - kept, None, kept)
    accuracy = evaluate_keras(model, np.asarray(data.x_test), np.asarray(data.y_test))
    return TrainResult(model, accuracy, history, time.perf_counter() - start, validation)


def fit(model, data: Dataset, epochs: int, batch_size: int, validation_split: float,
        on_epoch: EpochCallback | None = None, callbacks: list | None = None, *,
        validate_on_val: bool = False) -> dict[str, list[float]]:
    """model.fit quietly (verbose=0), reporting epochs to `on_epoch`; returns the history as floats.
    `validate_on_val`: Keras validates on the data's own x_val/y_val (instead of `validation_split`).

    `callbacks`: more Keras callbacks (e.g. TFMOT's UpdatePruningStep), run before the progress one.

    A model compiled with a categorical loss (one-hot targets) gets one-hot labels built from the
    integer labels. A failure inside Keras's fit is one ModelError saying what the loss and targets were.
    """
    callbacks = list(callbacks or []) + ([epoch_callback(on_epoch, epochs)] if on_epoch else [])
    if data.has_class_labels and wants_one_hot(model):
        data = data.one_hot(max(int(model.output_shape[-1]), data.num_classes or 0))  # a misfit is Keras's to report
    validation_data = None
    if validate_on_val and data.x_val is not None and data.y_val is not None:
        validation_data = (np.asarray(data.x_val), np.asarray(data.y_val))
    try:
        if data.streamed and validation_data is None:
            history = _fit_streamed(model, data, epochs, batch_size, validation_split, callbacks)
        else:
            # read whole (preprocessed chunk by chunk, within the array limit): Keras shuffles arrays as before
            history = model.fit(np.asarray(data.x_train), np.asarray(data.y_train), epochs=epochs,
                                batch_size=batch_size, validation_split=validation_split, shuffle=True, verbose=0,
                                callbacks=callbacks, validation_data=validation_data)
    except (ValueError, TypeError) as e:  # Keras's shape and dtype checks of targets against outputs and loss
        raise ModelError(f"fine-tuning failed: {_first_line(e)}", f"loss {_loss_name(model)}, targets of shape "
                         f"{tuple(data.y_train.shape[1:])}, outputs of shape {tuple(model.output_shape[1:])}",
                         "give targets the loss can take (integer labels, or one-hot rows for a classifier), "
                         "or choose the task with --task") from e
    return {key: [float(v) for v in values] for key, values in history.history.items()}


CATEGORICAL_LOSSES = frozenset({"categorical_crossentropy", "CategoricalCrossentropy", "categorical_hinge",
                                "CategoricalHinge", "categorical_focal_crossentropy", "CategoricalFocalCrossentropy"})


def wants_one_hot(model: Any) -> bool:
    """True when `model` is compiled with a loss that takes one-hot targets (categorical cross-entropy...)."""
    return _loss_name(model) in CATEGORICAL_LOSSES


def _loss_name(model: Any) -> str:
    loss = getattr(model, "loss", None)
    if isinstance(loss, str):
        return loss
    return str(getattr(loss, "__name__", None) or type(loss).__name__)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def _fit_streamed(model, data: Dataset, epochs: int, batch_size: int, validation_split: float, callbacks):
    """Fit on batches read from disk (memory-mapped data): the last `validation_split` of the
    rows validate, as Keras's validation_split does; training rows are reshuffled every epoch."""
    rows = len(data.x_train)
    cut = rows - int(rows * validation_split)
    train = data.to_tf_dataset("train", batch_size, rows=np.arange(cut), shuffle=True)
    validation = data.to_tf_dataset("train", batch_size, rows=np.arange(cut, rows)) if cut < rows else None
    return model.fit(train, epochs=epochs, validation_data=validation, verbose=0, callbacks=callbacks)


def epoch_callback(on_epoch: EpochCallback, epochs: int):
    """A tf_keras Callback that calls on_epoch(epoch_index, epochs, logs) after every epoch."""
    import tf_keras

    class _EpochProgress(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            on_epoch(epoch, epochs, {k: float(v) for k, v in (logs or {}).items()})

    return _EpochProgress()


def check_fit_options(epochs: int, batch_size: int, validation_split: float) -> None:
    """Reject epochs < 1, batch_size < 1 and a validation split outside [0, 1)."""
    if not isinstance(epochs, int) or epochs < 1:
        raise InvalidValue(f"epochs must be at least 1, got {epochs}", "epochs", "e.g. 3")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidValue(f"batch size must be at least 1, got {batch_size}", "batch_size", "e.g. 128")
    if not 0 <= validation_split < 1:
        raise InvalidValue(f"validation split must be in [0, 1), got {validation_split}", "validation_split",
                           "use e.g. 0.1 (10% of the training data), or 0 for none")


def check_enough_training_data(data: Dataset, validation_split: float) -> None:
    """Keras needs at least one training row left after the validation split."""
    remaining = int(len(data.x_train) * (1 - validation_split))
    if remaining < 1:
        raise DataError(f"{len(data.x_train)} training rows leave none for training after a "
                        f"{validation_split:g} validation split", data.name, "use more data or a smaller split")


def fine_tune_data(model: Any, data: Dataset, task: Task | None, validation_split: float) -> tuple[Dataset, Task]:
    """The data fitted to a model about to be fine-tuned (a trailing axis of 1 added or dropped), and the task
    chosen for it; fails clearly when the data does not fit the model or leaves no training rows."""
    data = data.fit_to(tuple(model.input_shape[1:]))
    output_shape = tuple(model.output_shape[1:])
    chosen = choose_task(data.y_test[:1] if data.labels else None, output_shape, task)
    check_fits_model(data, tuple(model.input_shape[1:]), int(model.output_shape[-1]), "model input/output",
                     task=chosen, output_shape=output_shape)
    check_enough_training_data(data, validation_split)
    return data, chosen

