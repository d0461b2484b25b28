"""Training the tutorial's baseline model on a Dataset, with a per-epoch progress callback."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinycomp.data import Dataset
from tinycomp.errors import DataError, InvalidValue
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
    history = fit(model, data, epochs, batch_size, validation_split, on_epoch)
    accuracy = evaluate_keras(model, data.x_test, data.y_test)
    return TrainResult(model, accuracy, history, time.perf_counter() - start)


def fit(model, data: Dataset, epochs: int, batch_size: int, validation_split: float,
        on_epoch: EpochCallback | None = None) -> dict[str, list[float]]:
    """model.fit quietly (verbose=0), reporting epochs to `on_epoch`; returns the history as floats."""
    callbacks = [epoch_callback(on_epoch, epochs)] if on_epoch else []
    if data.streamed:
        history = _fit_streamed(model, data, epochs, batch_size, validation_split, callbacks)
    else:
        history = model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size,
                            validation_split=validation_split, shuffle=True, verbose=0, callbacks=callbacks)
    return {key: [float(v) for v in values] for key, values in history.history.items()}


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
