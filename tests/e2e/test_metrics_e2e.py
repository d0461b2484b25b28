"""Task choice, metrics, agreement, and the loss chosen for fine-tuning."""

from __future__ import annotations

import pytest


def _model(activation, units=3):
    import tf_keras

    return tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(units, activation=activation)])


@pytest.mark.parametrize("activation, units, task, expected", [
    ("softmax", 3, "classify", ("sparse_categorical_crossentropy", False)),
    (None, 3, "classify", ("sparse_categorical_crossentropy", True)),  # linear output: logits
    ("sigmoid", 1, "classify", ("binary_crossentropy", False)),
    (None, 3, "regress", ("mean_squared_error", None)),
])
def test_loss_from_task_and_output_activation(activation, units, task, expected):
    from tinycomp.metrics import get_task
    from tinycomp.models import choose_loss

    loss = choose_loss(_model(activation, units), task=get_task(task))
    assert (loss.name, loss.from_logits) == expected


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_loss_from_saved_compile_config(tmp_path, suffix):
    import tf_keras

    from tinycomp.models import compile_for_training, load_keras_model

    model = _model("softmax")  # softmax, but compiled with from_logits=True: the saved config wins
    model.compile(optimizer="adam", loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.save(tmp_path / f"m{suffix}")
    loaded = load_keras_model(tmp_path / f"m{suffix}")
    loss = compile_for_training(loaded, 1e-4)
    assert (loss.name, loss.from_logits, loss.reason) == ("sparse_categorical_crossentropy", True, "saved compile config")
    assert float(loaded.optimizer.learning_rate) == pytest.approx(1e-4)
