"""Any model a user has (issue 17): Keras 3 .keras/.h5 files, SavedModels without Keras metadata, and
models compiled with a categorical loss; one-hot labels in the data.

Fixtures are built with the installed Keras 3 (`import keras`), tf.Module and tf_keras, on tiny data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import ok, one_error_line, run_cli

STEPS, CHANNELS, CLASSES = 24, 3, 3


def _sensor_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable (T, C) rows: the class is which channel carries a sine wave."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=n)
    x = rng.normal(scale=0.3, size=(n, STEPS, CHANNELS)).astype(np.float32)
    t = np.arange(STEPS)
    for i, label in enumerate(y):
        x[i, :, label] += np.sin(t / 2.0 + rng.uniform(0, 6))
    return x, y.astype(np.int64)


@pytest.fixture(scope="module")
def sensor(tmp_path_factory) -> dict[str, Path]:
    """The sensor data with integer labels and with one-hot labels."""
    d = tmp_path_factory.mktemp("sensor")
    x_train, y_train = _sensor_rows(240, 1)
    x_test, y_test = _sensor_rows(90, 2)
    np.savez(d / "ints.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    eye = np.eye(CLASSES, dtype=np.float32)
    np.savez(d / "onehot.npz", x_train=x_train, y_train=eye[y_train], x_test=x_test, y_test=eye[y_test])
    return {"ints": d / "ints.npz", "onehot": d / "onehot.npz"}


@pytest.fixture(scope="module")
def keras3_models(tmp_path_factory, sensor) -> dict[str, Path]:
    """Keras 3 models as users save them: a Conv1D classifier compiled with categorical cross-entropy and
    trained on one-hot labels (.keras and .h5), a functional CNN with a nested model and a residual Add, one
    with a layer
    tf_keras does not have, one with a Lambda and one with a custom layer."""
    import keras

    d = tmp_path_factory.mktemp("keras3")
    keras.utils.set_random_seed(0)
    conv1d = keras.Sequential([
        keras.Input((STEPS, CHANNELS)),
        keras.layers.Conv1D(16, 5, activation="relu", padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.MaxPooling1D(2),
        keras.layers.Conv1D(16, 3, activation="relu"),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(CLASSES, activation="softmax"),
    ])
    conv1d.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    with np.load(sensor["onehot"]) as f:
        conv1d.fit(f["x_train"], f["y_train"], epochs=8, batch_size=32, verbose=0)
    conv1d.save(d / "conv1d.keras")
    conv1d.save(d / "conv1d.h5")

    block = keras.Sequential([keras.Input((12, 12, 4)), keras.layers.DepthwiseConv2D(3, padding="same"),
                              keras.layers.BatchNormalization(), keras.layers.ReLU(max_value=6.0)], name="block")
    inputs = keras.Input((12, 12, 1))
    x = block(keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs))  # a nested model
    x = keras.layers.Add()([x, keras.layers.Conv2D(4, 1)(inputs)])
    outputs = keras.layers.Dense(CLASSES)(keras.layers.GlobalAveragePooling2D()(x))
    functional = keras.Model(inputs, outputs)
    functional.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    functional.save(d / "functional.keras")

    rms = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), keras.layers.RMSNormalization(name="rms"),
                            keras.layers.Dense(CLASSES, activation="softmax")])
    rms.save(d / "rms.keras")
    lam = keras.Sequential([keras.Input((8,)), keras.layers.Lambda(lambda t: t * 2.0, name="double"),
                            keras.layers.Dense(CLASSES)])
    lam.save(d / "lambda.keras")

    @keras.saving.register_keras_serializable(package="user")
    class Scale(keras.layers.Layer):
        def call(self, t):
            return t * 3.0

    custom = keras.Sequential([keras.Input((8,)), Scale(name="scale"), keras.layers.Dense(CLASSES)])
    custom.save(d / "custom.keras")
    return {path.stem if path.suffix == ".keras" else path.name: path for path in d.iterdir()}


@pytest.fixture(scope="module")
def plain_saved_model(tmp_path_factory) -> Path:
    """A tf.Module with a serving signature (batch dimension None) and no Keras metadata: a dense layer
    with softmax on (T, C) rows, flattened."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    class Classifier(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(rng.normal(scale=0.2, size=(STEPS * CHANNELS, CLASSES)).astype(np.float32))
            self.b = tf.Variable(np.zeros(CLASSES, np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, STEPS, CHANNELS], tf.float32)])
        def serve(self, x):
            flat = tf.reshape(x, [-1, STEPS * CHANNELS])
            return {"probabilities": tf.nn.softmax(flat @ self.w + self.b)}

    module = Classifier()
    path = tmp_path_factory.mktemp("plain") / "plain_saved"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    assert not (path / "keras_metadata.pb").exists()
    return path


# --- reading Keras 3 files (no training, conversion or TFLM: fast) ---------------------------------

def test_keras3_files_are_read_as_keras3_and_refused_when_unsafe(keras3_models):
    from tinycomp import model_config
    from tinycomp.errors import UnsafeModelError

    for name, fmt in (("conv1d", "keras"), ("conv1d.h5", "h5")):
        saved = model_config.read_saved_config(keras3_models[name], fmt)
        assert saved.keras_version == 3
        model_config.check_safe(saved)
        assert saved.saved_loss == "categorical_crossentropy"
    for name, pattern in (("lambda", "model has a Lambda layer 'double' whose Python code would run on load"),
                          ("custom", "model has a custom layer 'scale' of class 'user>Scale', which is not a built-in "
                                     "Keras 3 layer; loading it would run code from outside Keras 3")):
        saved = model_config.read_saved_config(keras3_models[name], "keras")
        with pytest.raises(UnsafeModelError, match=re.escape(pattern)):
            model_config.check_safe(saved)


def test_config_translation_to_tf_keras():
    from tinycomp.errors import ModelError
    from tinycomp.keras3 import plain, translate_layer, translate_node

    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}
    layer = translate_layer("InputLayer", {"batch_shape": [None, 4], "dtype": "float32", "name": "in",
                                           "optional": False}, "m.keras")
    assert layer == {"batch_input_shape": [None, 4], "dtype": "float32", "name": "in", "optional": False}
    dense = translate_layer("Dense", {"name": "d", "dtype": policy, "units": 3, "quantization_config": None,
                                      "kernel_regularizer": {"module": "keras.regularizers", "class_name": "L2",
                                                             "config": {"l2": 0.01}, "registered_name": None}},
                            "m.keras")
    assert dense == {"name": "d", "dtype": "float32", "units": 3,
                     "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.01}}}
    with pytest.raises(ModelError, match=re.escape("layer 'd' (Dense) sets the Keras 3 option lora_rank=4, "
                                                   "which tf_keras does not have")):
        translate_layer("Dense", {"name": "d", "units": 3, "lora_rank": 4}, "m.keras")
    tensor = {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "keras_history": ["a", 0, 0]}}
    other = {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "keras_history": ["b", 1, 0]}}
    assert translate_node({"args": [[tensor, other]], "kwargs": {}}, "add", "m") == [["a", 0, 0, {}], ["b", 1, 0, {}]]
    assert translate_node({"args": [tensor], "kwargs": {"training": False, "mask": None}}, "d", "m") == [
        ["a", 0, 0, {"training": False}]]
    assert plain([policy, 1]) == ["float32", 1]


def test_nested_model_nodes_are_renumbered_and_missing_nodes_refused():
    from tinycomp.errors import ModelError
    from tinycomp.keras3 import translate_model

    def tensor(name: str, node: int) -> dict:
        return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, node, 0]}}

    inner = {"layers": [{"class_name": "InputLayer", "config": {"batch_shape": [None, 2], "name": "i"}},
                        {"class_name": "Dense", "config": {"name": "d", "units": 2}}]}
    config = {"name": "m", "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]], "layers": [
        {"class_name": "InputLayer", "name": "in", "config": {"batch_shape": [None, 2], "name": "in"},
         "inbound_nodes": []},
        {"class_name": "Sequential", "name": "block", "config": inner,
         "inbound_nodes": [{"args": [tensor("in", 0)], "kwargs": {}}]},
        {"class_name": "Dense", "name": "out", "config": {"name": "out", "units": 1},
         "inbound_nodes": [{"args": [tensor("block", 0)], "kwargs": {}}]}]}
    translated = translate_model("Functional", config, "m.keras")["config"]["layers"]
    assert translated[2]["inbound_nodes"] == [[["block", 1, 0, {}]]]  # tf_keras counts the block's own Input node
    config["layers"][2]["inbound_nodes"] = [{"args": [tensor("block", 3)], "kwargs": {}}]
    with pytest.raises(ModelError, match="the model config refers to node 3 of layer 'block', which it does not have"):
        translate_model("Functional", config, "m.keras")


# --- Keras 3 through the CLI ---------------------------------------------------------------------------

@pytest.mark.slow
def test_keras3_models_are_rebuilt_as_tf_keras_with_the_same_outputs(keras3_models):
    import keras
    import tf_keras

    from tinycomp.models import load_keras_model, saved_config

    rng = np.random.default_rng(5)
    for name in ("conv1d", "conv1d.h5", "functional"):
        model = load_keras_model(keras3_models[name])
        assert isinstance(model, tf_keras.Model)
        assert saved_config(model).keras_version == 3
        reference = keras.saving.load_model(keras3_models[name], compile=False)
        x = rng.normal(size=(7, *reference.input_shape[1:])).astype(np.float32)
        np.testing.assert_allclose(model(x, training=False), reference(x, training=False), rtol=1e-5, atol=1e-6)
        assert [layer.name for layer in model.layers] == [layer.name for layer in reference.layers]


@pytest.mark.slow
def test_a_weight_that_does_not_survive_the_rebuild_is_caught(keras3_models):
    import keras

    from tinycomp.errors import ModelError
    from tinycomp.keras3 import check_same_outputs, to_tf_keras

    reference = keras.saving.load_model(keras3_models["conv1d"], compile=False)
    rebuilt = to_tf_keras(reference, "conv1d.keras")
    kernel, bias = rebuilt.layers[-1].get_weights()
    rebuilt.layers[-1].set_weights([kernel, bias + np.arange(len(bias), dtype=np.float32)])  # not a shift softmax ignores
    with pytest.raises(ModelError, match="the tf_keras rebuild of the Keras 3 model gives different outputs"):
        check_same_outputs(reference, rebuilt, "conv1d.keras")


@pytest.mark.slow
def test_keras3_conv1d_goes_through_the_chain_and_cluster_writes_keras3(keras3_models, sensor, tmp_path):
    import keras

    data = ["--data", sensor["ints"]]
    out = tmp_path / "clustered.keras"
    ok(["cluster", keras3_models["conv1d"], "--all", "8", "--epochs", "1", "--learning-rate", "1e-4", "-o", out, *data])
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["loss"]["loss"] == "categorical_crossentropy"
    assert record["loss"]["labels"] == "one-hot, built from the integer labels"
    clustered = keras.saving.load_model(out)  # the user's Keras 3 loads it, compiled with the saved loss
    assert type(clustered).__name__ == "Sequential"
    assert getattr(clustered.loss, "__name__", clustered.loss) == "categorical_crossentropy"
    conv_kernels = [layer.get_weights()[0] for layer in clustered.layers if type(layer).__name__ == "Conv1D"]
    assert [np.unique(k).size for k in conv_kernels] == [8, 8]
    f32, int8 = tmp_path / "conv1d.tflite", tmp_path / "clustered_int8.tflite"
    ok(["convert", keras3_models["conv1d.h5"], "-o", f32])
    ok(["quantize", out, "-o", int8, "--calibration-samples", "20", *data])
    ok(["find-tensors", int8, "--clustering", out.with_suffix(".yaml"), "-o", tmp_path / "c.yaml"])
    ok(["compress", int8, "--spec", tmp_path / "c.yaml", "-o", tmp_path / "compressed.tflite"])
    ok(["eval", f32, tmp_path / "compressed.tflite", "--baseline", keras3_models["conv1d"], *data,
        "--json", tmp_path / "eval.json"])
    results = {Path(r["path"]).name: r for r in json.loads((tmp_path / "eval.json").read_text())["models"]}
    assert results["conv1d.tflite"]["agreement_top1"] == 1.0
    assert results["compressed.tflite"]["accuracy"] is not None


@pytest.mark.slow
def test_keras3_conv1d_is_pruned_and_written_back_as_keras3(keras3_models, sensor, tmp_path):
    import keras

    out = tmp_path / "pruned.keras"
    ok(["prune", keras3_models["conv1d"], "--sparsity", "0.5", "--epochs", "1", "-o", out, "--data", sensor["ints"]])
    pruned = keras.saving.load_model(out)  # the user's Keras 3 loads it
    kernels = [layer.get_weights()[0] for layer in pruned.layers if type(layer).__name__ in ("Conv1D", "Dense")]
    assert len(kernels) == 3
    for kernel in kernels:
        assert abs(np.count_nonzero(kernel) - round(kernel.size * 0.5)) <= 2
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["loss"]["loss"] == "categorical_crossentropy" and len(record["sparsity"]) == 3
    lam = keras3_models["lambda"]
    one_error_line(run_cli(["prune", lam, "--sparsity", "0.5", "-o", tmp_path / "l.keras", "--data", sensor["ints"]]),
                   1, re.escape(f"model has a Lambda layer 'double' whose Python code would run on load ({lam}) — ")
                   + ".+")
    assert not (tmp_path / "l.keras").exists()


@pytest.mark.slow
def test_keras3_layer_without_tf_keras_equivalent(keras3_models, sensor, tmp_path):
    path = keras3_models["rms"]
    expected = (re.escape(f"Keras 3 layers with no tf_keras equivalent: rms (RMSNormalization) ({path}) — cluster "
                          "and plan need tf_keras layers; convert the Keras 3 model with `tinycomp convert` (or "
                          "`quantize`) and compress the .tflite with `tinycomp palettize`"))
    one_error_line(run_cli(["cluster", path, "--all", "4", "-o", tmp_path / "c.keras"]), 1, expected)
    one_error_line(run_cli(["plan", path, "--max-accuracy-drop", "1", "-o", tmp_path / "p.yaml",
                             "--data", sensor["ints"]]), 1, expected)
    assert list(tmp_path.iterdir()) == []
    ok(["convert", path, "-o", tmp_path / "rms.tflite"])  # TFLiteConverter takes the Keras 3 model itself
    assert (tmp_path / "rms.tflite").stat().st_size > 0


@pytest.mark.slow
def test_keras3_lambda_is_refused_unless_trusted(keras3_models, tmp_path):
    path = keras3_models["lambda"]
    one_error_line(run_cli(["convert", path, "-o", tmp_path / "l.tflite"]), 1,
                    re.escape(f"model has a Lambda layer 'double' whose Python code would run on load ({path}) — "
                              "re-run with --trust-model if you trust this file"))
    assert not (tmp_path / "l.tflite").exists()
    ok(["convert", path, "-o", tmp_path / "l.tflite", "--trust-model"])


# --- plain SavedModels ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_plain_saved_model_converts_and_quantizes_through_its_signature(plain_saved_model, sensor, tmp_path):
    import tensorflow as tf

    data = ["--data", sensor["ints"]]
    ok(["convert", plain_saved_model, "-o", tmp_path / "f32.tflite"])
    ok(["quantize", plain_saved_model, "-o", tmp_path / "int8.tflite", "--calibration-samples", "20", *data])
    ok(["eval", tmp_path / "f32.tflite", tmp_path / "int8.tflite", "--baseline", plain_saved_model, *data,
        "--json", tmp_path / "eval.json"])
    results = {Path(r["path"]).name: r for r in json.loads((tmp_path / "eval.json").read_text())["models"]}
    assert results["f32.tflite"]["agreement_top1"] == 1.0
    assert results["int8.tflite"]["agreement_top1"] >= 0.9
    with pytest.warns(UserWarning, match="deprecated"):
        interpreter = tf.lite.Interpreter(model_path=str(tmp_path / "int8.tflite"))
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, STEPS, CHANNELS]  # batch 1, as TFLM needs


@pytest.mark.slow
def test_plain_saved_model_cannot_be_clustered_or_planned(plain_saved_model, sensor, tmp_path):
    expected = re.escape(f"a SavedModel without Keras metadata has no layers to cluster or fine-tune "
                         f"({plain_saved_model}) — quantize it with `tinycomp quantize` and compress the int8 "
                         ".tflite with `tinycomp palettize` (no fine-tuning needed)")
    data = ["--data", sensor["ints"]]
    one_error_line(run_cli(["cluster", plain_saved_model, "--all", "4", "-o", tmp_path / "c.h5", *data]), 1, expected)
    one_error_line(run_cli(["plan", plain_saved_model, "--max-accuracy-drop", "1", "-o", tmp_path / "p.yaml", *data]),
                    1, expected)
    assert list(tmp_path.iterdir()) == []


# --- labels as the model expects them ------------------------------------------------------------------

@pytest.fixture(scope="module")
def categorical_tf_keras(tmp_path_factory, sensor) -> Path:
    """A tf_keras model compiled with categorical cross-entropy (as many reference models are)."""
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Input((STEPS, CHANNELS)),
        tf_keras.layers.Conv1D(8, 3, activation="relu", name="conv"),
        tf_keras.layers.GlobalAveragePooling1D(name="pool"),
        tf_keras.layers.Dense(CLASSES, activation="softmax", name="out"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    with np.load(sensor["onehot"]) as f:
        model.fit(f["x_train"], f["y_train"], epochs=3, verbose=0)
    path = tmp_path_factory.mktemp("categorical") / "categorical.h5"
    model.save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("labels", ["ints", "onehot"])
def test_categorical_loss_fine_tunes_on_integer_and_one_hot_labels(categorical_tf_keras, sensor, labels, tmp_path):
    out = tmp_path / "c.h5"
    ok(["cluster", categorical_tf_keras, "--all", "4", "--epochs", "1", "-o", out, "--data", sensor[labels]])
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["loss"]["loss"] == "categorical_crossentropy"
    assert record["test_accuracy"] is not None
    from tinycomp.data import ONE_HOT_NOTE

    assert (ONE_HOT_NOTE in record["dataset"]["notes"]) == (labels == "onehot")


@pytest.mark.slow
def test_targets_that_do_not_fit_the_loss_areone_error_line(sensor, tmp_path):
    import tf_keras

    model = tf_keras.Sequential([tf_keras.layers.Input((STEPS, CHANNELS)),  # no Flatten: one output row per step
                                 tf_keras.layers.Dense(CLASSES, activation="softmax", name="out")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.save(tmp_path / "per_step.h5")
    result = run_cli(["cluster", tmp_path / "per_step.h5", "--all", "2", "--epochs", "1", "-o", tmp_path / "c.h5",
                      "--data", sensor["ints"]])
    one_error_line(result, 1, r"fine-tuning failed: .*\(loss categorical_crossentropy, targets of shape \(3,\), "
                               r"outputs of shape \(24, 3\)\) — give targets the loss can take .*")
    assert not (tmp_path / "c.h5").exists()
