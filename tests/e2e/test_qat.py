"""quantize --qat on tiny models: clustered kernels keep their value counts (the PTQ chain's compression spec
compresses the QAT file), pruned kernels keep their zeros, the record, and the layers TFMOT refuses."""

from __future__ import annotations

import json

import numpy as np

from helpers import ok, one_error_line, run_cli


def qat_bytes(model_path, data_path, epochs: int = 1) -> tuple[bytes, object]:
    """The int8 file `quantize --qat` converts (whether or not it then keeps it) and the structure found."""
    from tinycomp.commands.quantize import _sidecar_spec
    from tinycomp.convert import quantize
    from tinycomp.data import calibration_samples, load_dataset
    from tinycomp.models import load_keras_model
    from tinycomp.qat import find_structure, train_qat

    model = load_keras_model(model_path)
    data = load_dataset(npz=data_path).fit_to(tuple(model.input_shape[1:]))
    structure = find_structure(model, _sidecar_spec(str(model_path)))
    result = train_qat(model, data, epochs, structure=structure, batch_size=32)
    return quantize(result.model, calibration=calibration_samples(data, 20)), structure


def test_qat_keeps_clusters_and_the_ptq_spec_compresses_it(pipeline, tmp_path):
    from tinycomp.specs import parse_compression_spec

    data, bytes_, structure = pipeline["data"], *qat_bytes(pipeline["clustered_h5"], pipeline["data"])
    assert structure.scheme == "cluster-preserve" and set(structure.clustered) == {"conv2d_1", "dense"}
    qat_file = tmp_path / "qat_int8.tflite"
    qat_file.write_bytes(bytes_)
    found = tmp_path / "found.yaml"
    ok(["find-tensors", qat_file, "--clustering", pipeline["clustered_yaml"], "-o", found])
    spec_of = lambda path: parse_compression_spec(path.read_text(), str(path))  # noqa: E731
    assert spec_of(found).tensors == spec_of(pipeline["compression_yaml"]).tensors  # same tensors, layouts, bits
    compressed = tmp_path / "compressed.tflite"
    ok(["compress", qat_file, "--spec", pipeline["compression_yaml"], "-o", compressed])  # checks TFLM outputs
    assert abs(compressed.stat().st_size - pipeline["compressed_tflite"].stat().st_size) <= 64

    output = tmp_path / "cli_int8.tflite"
    result = ok(["quantize", pipeline["clustered_h5"], "--qat", "1", "--batch-size", "32", "--calibration-samples",
                 "20", "--data", data, "-o", output])
    assert "did not keep the structure" not in result.stderr
    record = json.loads(output.with_suffix(".json").read_text())
    assert record["scheme"] == "cluster-preserve" and record["kept"] in ("qat", "ptq")
    assert record["scored_on"]["rows"] == 60 and record["scored_on"]["first_row"] == 540
    assert set(record["scores"]) == {"qat", "ptq"} and record["metric"] == "accuracy"
    kept = record["kept"]
    assert (record["scores"]["qat"] >= record["scores"]["ptq"]) == (kept == "qat")
    for layer in ("conv2d_1", "dense"):
        assert record["int8_weights"]["qat"][layer]["max_per_channel"] <= 8
    ptq = tmp_path / "ptq_int8.tflite"
    ok(["quantize", pipeline["clustered_h5"], "--calibration-samples", "20", "--data", data, "-o", ptq])
    assert (output.read_bytes() == ptq.read_bytes()) == (kept == "ptq")


def test_qat_keeps_the_zeros_of_a_pruned_model(pipeline, tmp_path):
    from tinycomp.models import kernel_of, load_keras_model, save_keras_model

    model = load_keras_model(pipeline["model_h5"])
    for layer in model.layers:
        kernel = kernel_of(layer)
        if kernel is not None:
            values = kernel.numpy()
            values[np.abs(values) < np.quantile(np.abs(values), 0.8)] = 0  # 80% pruned by magnitude
            kernel.assign(values)
    pruned = tmp_path / "pruned.h5"
    save_keras_model(model, pruned)
    output = tmp_path / "pruned_int8.tflite"
    result = ok(["quantize", pruned, "--qat", "1", "--batch-size", "32", "--calibration-samples", "20",
                 "--data", pipeline["data"], "--learning-rate", "1e-3", "-o", output])
    assert "did not keep the structure" not in result.stderr
    record = json.loads(output.with_suffix(".json").read_text())
    assert record["scheme"] == "prune-preserve"
    assert set(record["sparse_layers"]) == {"conv2d", "conv2d_1", "dense", "dense_1", "dense_2"}
    for layer, fraction in record["sparse_layers"].items():
        assert record["int8_weights"]["qat"][layer]["zero_fraction"] >= fraction - 1e-6, layer


def test_a_layer_tfmot_cannot_quantize_is_one_error_line(tmp_path):
    import tf_keras

    rng = np.random.default_rng(0)
    data = tmp_path / "series.npz"
    np.savez(data, x_train=rng.normal(size=(40, 16, 2)).astype(np.float32), y_train=rng.integers(0, 3, 40),
             x_test=rng.normal(size=(10, 16, 2)).astype(np.float32), y_test=rng.integers(0, 3, 10))
    model = tf_keras.Sequential([tf_keras.layers.Input((16, 2)), tf_keras.layers.Conv1D(4, 3, name="conv1d"),
                                 tf_keras.layers.Flatten(name="flatten"),
                                 tf_keras.layers.Dense(3, activation="softmax", name="dense")])
    model.save(tmp_path / "series.h5")
    result = run_cli(["quantize", tmp_path / "series.h5", "--qat", "1", "--data", data, "-o", tmp_path / "q.tflite"])
    one_error_line(result, 1, "TFMOT cannot quantize-annotate layer\\(s\\) conv1d \\(Conv1D\\) with "
                              "Default8BitQuantizeScheme \\(quantize --qat\\) — use post-training quantization .*")
    assert not (tmp_path / "q.tflite").exists()


def test_a_keras3_model_trains_as_its_tf_keras_rebuild_with_its_own_loss(pipeline, tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    with np.load(pipeline["data"]) as f:
        x, y = f["x_train"].astype(np.float32)[..., None] / 255.0, f["y_train"]
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                              keras.layers.Dense(int(y.max()) + 1, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(x, keras.utils.to_categorical(y), epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "k3.keras")
    output = tmp_path / "k3_int8.tflite"
    ok(["quantize", tmp_path / "k3.keras", "--qat", "1", "--batch-size", "32", "--calibration-samples", "20",
        "--data", pipeline["data"], "-o", output])
    record = json.loads(output.with_suffix(".json").read_text())
    assert record["loss"]["loss"] == "categorical_crossentropy" and record["loss"]["reason"] == "saved compile config"
    assert record["scheme"] == "default-8bit" and record["kept"] in ("qat", "ptq")


def test_a_lower_qat_score_writes_the_ptq_file_with_one_warning(pipeline, tmp_path, monkeypatch):
    from tinycomp import qat

    measured = qat.tflm_scores

    def qat_scores_lower(files, *args, **kwargs):
        scores = measured(files, *args, **kwargs)
        return {**scores, "qat": scores["ptq"] - 0.01}

    monkeypatch.setattr(qat, "tflm_scores", qat_scores_lower)
    output, ptq = tmp_path / "int8.tflite", tmp_path / "ptq.tflite"
    data = ["--calibration-samples", "20", "--data", pipeline["data"]]
    result = run_cli(["quantize", pipeline["model_h5"], "--qat", "1", "--batch-size", "32", *data, "-o", output])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "QAT scored lower" in warnings[0] and "wrote the post-training" in warnings[0]
    ok(["quantize", pipeline["model_h5"], *data, "-o", ptq])
    assert output.read_bytes() == ptq.read_bytes()
    assert json.loads(output.with_suffix(".json").read_text())["kept"] == "ptq"
