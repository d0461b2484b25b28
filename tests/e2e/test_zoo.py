"""A zoo of tiny models with the architectures of the standard TinyML benchmarks, built in fixtures
(nothing binary committed), saved as .h5, .keras and SavedModel, and run through the library chain:
load → cluster → quantize → find tensors → compress → evaluate, each checked for its task's metric."""

from __future__ import annotations

import numpy as np
import pytest

ROWS = 96


def _resnet():
    """Mini ResNet: conv-BN-ReLU, residual Add, global pooling, softmax."""
    from tf_keras import Input, Model, layers

    inputs = Input((8, 8, 3))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same", name="conv_a")(inputs)))
    y = layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same", name="conv_b")(x))
    x = layers.ReLU()(layers.Add()([x, y]))
    outputs = layers.Dense(4, activation="softmax", name="fc")(layers.GlobalAveragePooling2D()(x))
    return Model(inputs, outputs, name="resnet")


def _mobilenet():
    """Mini MobileNet: strided conv, DepthwiseConv2D + BN, pointwise conv, SeparableConv2D."""
    from tf_keras import Sequential, layers

    return Sequential([
        layers.Input((8, 8, 3)),
        layers.Conv2D(8, 3, strides=2, padding="same", name="conv"), layers.BatchNormalization(), layers.ReLU(),
        layers.DepthwiseConv2D(3, padding="same", name="dw"), layers.BatchNormalization(), layers.ReLU(),
        layers.Conv2D(16, 1, name="pw"), layers.BatchNormalization(), layers.ReLU(),
        layers.SeparableConv2D(8, 3, padding="same", name="sep"),
        layers.GlobalAveragePooling2D(), layers.Dense(3, activation="softmax", name="fc"),
    ], name="mobilenet")


def _dscnn():
    """DS-CNN on (30, 1, 40) audio features, logits output (a linear last layer)."""
    from tf_keras import Sequential, layers

    return Sequential([
        layers.Input((30, 1, 40)),
        layers.Conv2D(8, (3, 1), padding="same", name="conv"), layers.BatchNormalization(), layers.ReLU(),
        layers.DepthwiseConv2D((3, 1), padding="same", name="dw"), layers.Conv2D(8, 1, name="pw"), layers.ReLU(),
        layers.GlobalAveragePooling2D(), layers.Dense(3, name="logits"),
    ], name="dscnn")


def _autoencoder():
    """Dense autoencoder: 16 → 8 → 4 → 8 → 16, linear output, compiled with MSE."""
    from tf_keras import Sequential, layers

    model = Sequential([layers.Input((16,)), layers.Dense(8, activation="relu", name="enc"),
                        layers.Dense(4, activation="relu", name="code"), layers.Dense(8, activation="relu", name="dec"),
                        layers.Dense(16, name="out")], name="autoencoder")
    model.compile(optimizer="adam", loss="mse")
    return model


def _conv1d():
    """Conv1D branches joined by Concatenate."""
    from tf_keras import Input, Model, layers

    inputs = Input((20, 4))
    a = layers.Conv1D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    b = layers.Conv1D(4, 1, activation="relu", name="conv_b")(inputs)
    x = layers.GlobalAveragePooling1D()(layers.Concatenate()([a, b]))
    return Model(inputs, layers.Dense(3, activation="softmax", name="fc")(x), name="conv1d")


def _save(model, path):
    if path.suffix in (".h5", ".keras"):
        model.save(path)
    else:
        model.save(path, save_format="tf")  # a SavedModel directory
    return path


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """{name: (model path, Dataset)} for every architecture, each in one of the three formats."""
    import tf_keras

    from tinycomp.data import load_dataset

    d = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(0)
    tf_keras.utils.set_random_seed(0)
    entries = {}

    def npz(name, x, y=None):
        path = d / f"{name}.npz"
        cut = int(len(x) * 0.75)
        arrays = {"x_train": x[:cut], "x_test": x[cut:]}
        if y is not None:
            arrays |= {"y_train": y[:cut], "y_test": y[cut:]}
        np.savez(path, **arrays)
        return load_dataset(npz=path)

    images = rng.integers(0, 256, (ROWS, 8, 8, 3), dtype=np.uint8)
    entries["resnet"] = (_save(_resnet(), d / "resnet.h5"), npz("img4", images, np.arange(ROWS) % 4))
    entries["mobilenet"] = (_save(_mobilenet(), d / "mobilenet.keras"), npz("img3", images, np.arange(ROWS) % 3))
    features = (rng.normal(size=(ROWS, 30, 1, 40)) * 3).astype(np.float32)  # negative values, max > 1
    np.save(d / "mfcc.npy", features)
    np.save(d / "labels.npy", np.arange(ROWS) % 3)
    entries["dscnn"] = (_save(_dscnn(), d / "dscnn_savedmodel"),
                        load_dataset(npy_x=d / "mfcc.npy", npy_y=d / "labels.npy"))
    signals = rng.normal(size=(ROWS, 16)).astype(np.float32)
    entries["autoencoder"] = (_save(_autoencoder(), d / "autoencoder.h5"), npz("signals", signals))
    sequences = rng.normal(size=(ROWS, 20, 4)).astype(np.float32)
    entries["conv1d"] = (_save(_conv1d(), d / "conv1d.keras"), npz("seq", sequences, np.arange(ROWS) % 3))
    return entries


def test_float_features_are_not_rescaled(zoo):
    _, data = zoo["dscnn"]
    raw = np.load(str(zoo["dscnn"][0]).replace("dscnn_savedmodel", "mfcc.npy"))
    assert data.preprocessing.scale == 1.0 and data.preprocessing.offset == 0.0
    assert data.describe()["preprocessing"]["reason"] == "float data used as given"
    assert data.streamed  # memory-mapped, read batch by batch
    np.testing.assert_array_equal(data.x_test[:5], raw[:5])
    assert raw.min() < 0 and raw.max() > 1


def test_uint8_images_are_divided_by_255_and_say_so(zoo):
    _, data = zoo["resnet"]
    assert data.describe()["preprocessing"]["reason"].startswith("uint8 data divided by 255")
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0


@pytest.mark.parametrize("name, task, loss", [
    ("resnet", "classify", ("sparse_categorical_crossentropy", False)),
    ("mobilenet", "classify", ("sparse_categorical_crossentropy", False)),
    ("dscnn", "classify", ("sparse_categorical_crossentropy", True)),  # linear output: logits
    ("autoencoder", "regress", ("mean_squared_error", None)),  # from the saved compile config
    ("conv1d", "classify", ("sparse_categorical_crossentropy", False)),
])
def test_zoo_model_through_the_chain(zoo, tmp_path, name, task, loss):
    from tinycomp.cluster import cluster_all_spec, cluster_model
    from tinycomp.convert import quantize
    from tinycomp.data import calibration_samples
    from tinycomp.evaluate import compare_to_baseline, evaluate_keras, evaluate_tflite
    from tinycomp.models import load_keras_model
    from tinycomp.tflite.compress import compress_model
    from tinycomp.tflite.find_tensors import find_tensors
    from tinycomp.tflite.model import parse_tflite

    path, data = zoo[name]
    model = load_keras_model(path)
    spec = cluster_all_spec(model, 4)
    clustered = cluster_model(model, spec, data, epochs=1, batch_size=32)
    assert clustered.task.name == task
    assert (clustered.loss["loss"], clustered.loss["from_logits"]) == loss
    assert set(clustered.test_metrics) == ({"accuracy"} if task == "classify" else {"mse", "snr_db"})

    int8 = quantize(clustered.model, "int8", io="int8", calibration=calibration_samples(data, 20))
    found = find_tensors(parse_tflite(int8), spec.layer_names(), name, skip_incompressible=True)
    assert found.choices, f"{name}: no tensor chosen"
    compressed = compress_model(int8, found.spec(), name).data
    (tmp_path / "int8.tflite").write_bytes(int8)
    (tmp_path / "compressed.tflite").write_bytes(bytes(compressed))

    baseline = evaluate_keras(str(path), data)
    results = [evaluate_tflite(str(tmp_path / f), data) for f in ("int8.tflite", "compressed.tflite")]
    compare_to_baseline(results, results[0])
    int8_result, compressed_result = results
    for r in (baseline, *results):
        assert r.task.name == task and r.gzip_bytes and r.gzip_bytes > 0
        if task == "classify":
            assert 0.0 <= r.accuracy <= 1.0 and r.mse is None
        else:  # the autoencoder never gets an accuracy
            assert r.accuracy is None and r.mse > 0 and np.isfinite(r.snr_db)
            assert "accuracy" not in r.to_json() or r.to_json()["accuracy"] is None
    assert compressed_result.runs_in == "TFLM" and baseline.runs_in == "Keras"
    assert compressed_result.agreement_snr_db == 200.0  # LUT compression is lossless in TFLM
    if task == "classify":
        assert compressed_result.agreement_top1 == 1.0
    assert "outputs" not in compressed_result.to_json()


def test_eval_table_shows_the_task_metric(zoo, tmp_path):
    from rich.console import Console

    from tinycomp.evaluate import compare_to_baseline, evaluate_keras
    from tinycomp.render import eval_table

    path, data = zoo["autoencoder"]
    result = evaluate_keras(str(path), data)
    compare_to_baseline([result], result)
    console = Console(width=200, record=True)
    console.print(eval_table([result], data.name))
    text = console.export_text()
    assert "MSE" in text and "SNR dB" in text and "accuracy" not in text and "0.00%" not in text


def test_quantize_methods_are_all_evaluated(tmp_path):
    """int16x8 runs in TFLM; dynamic-range and float16 files run in the TFLite interpreter, with a note.
    (The converter leaves kernels under 1,024 weights in float for dynamic range: this one has 2,048.)"""
    import tf_keras

    from tinycomp.convert import quantize
    from tinycomp.data import calibration_samples, load_dataset
    from tinycomp.evaluate import compare_to_baseline, evaluate_keras, evaluate_tflite

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((32,)), tf_keras.layers.Dense(64, activation="relu"),
                                 tf_keras.layers.Dense(32)])
    signals = np.random.default_rng(1).normal(size=(40, 32)).astype(np.float32)
    np.savez(tmp_path / "signals.npz", x_train=signals[:20], x_test=signals[20:])
    data = load_dataset(npz=tmp_path / "signals.npz")
    model.save(tmp_path / "ae.keras")
    baseline = evaluate_keras(str(tmp_path / "ae.keras"), data)
    runs_in = {}
    for method in ("int16x8", "dynamic", "float16"):
        out = tmp_path / f"{method}.tflite"
        out.write_bytes(quantize(model, method, calibration=calibration_samples(data, 20)))
        result = evaluate_tflite(str(out), data)
        compare_to_baseline([result], baseline)
        runs_in[method] = result.runs_in
        assert result.mse is not None and result.accuracy is None
        assert result.agreement_snr_db > 20, method  # outputs close to the float Keras model's
        if result.runs_in == "TFLite":
            assert result.arena_bytes is None and "will not run on a microcontroller" in result.notes[0]
    assert runs_in == {"int16x8": "TFLM", "dynamic": "TFLite", "float16": "TFLite"}


def test_cluster_all_says_what_it_leaves_out(zoo):
    from tinycomp.cluster import cluster_all_spec, left_out_layers
    from tinycomp.models import load_keras_model

    model = load_keras_model(zoo["mobilenet"][0])
    left = dict(left_out_layers(model, 4))
    assert left == {"dw": "TFMOT does not cluster DepthwiseConv2D layers"}
    assert "dw" not in cluster_all_spec(model, 4).layer_names()
