"""Your own model and data through the CLI: formats, safe loading, the task's metric, explicit
preprocessing, and bad input that ends in one `Error:` line with nothing written (issue 9)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import ok, one_error_line, run_cli, save_subclassed_model

pytestmark = pytest.mark.slow


def _snapshot(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny models of the kinds users bring, saved as .h5, .keras and SavedModel, with their data."""
    import tf_keras
    from tf_keras import layers

    d = tmp_path_factory.mktemp("your_model")
    rng = np.random.default_rng(0)
    tf_keras.utils.set_random_seed(0)

    autoencoder = tf_keras.Sequential([layers.Input((32,)), layers.Dense(16, activation="relu", name="enc"),
                                       layers.Dense(32, name="dec")], name="ae")
    autoencoder.compile(optimizer="adam", loss="mse")
    signals = (rng.normal(size=(160, 4)) @ rng.normal(size=(4, 32))).astype(np.float32)  # learnable: rank 4
    autoencoder.fit(signals, signals, epochs=60, batch_size=32, verbose=0)
    autoencoder.save(d / "ae.keras")
    np.savez(d / "signals.npz", x_train=signals[:120], x_test=signals[120:])

    inputs = tf_keras.Input((30, 1, 8))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, (3, 1), padding="same", name="conv")(inputs)))
    x = layers.DepthwiseConv2D((3, 1), padding="same", name="dw")(x)
    x = layers.Conv2D(8, 1, name="pw")(x)
    outputs = layers.Dense(3, name="logits")(layers.GlobalAveragePooling2D()(x))
    dscnn = tf_keras.Model(inputs, outputs, name="dscnn")
    dscnn.save(d / "dscnn_saved", save_format="tf")
    features = (rng.normal(size=(90, 30, 1, 8)) * 3).astype(np.float32)
    np.save(d / "mfcc.npy", features)
    np.save(d / "labels.npy", np.arange(90) % 3)

    a, b = tf_keras.Input((4,)), tf_keras.Input((4,))
    tf_keras.Model([a, b], layers.Dense(2)(layers.Add()([a, b]))).save(d / "two_inputs.h5")
    return d


def test_autoencoder_gets_mse_and_snr_never_accuracy(models, tmp_path):
    data = ["--data", models / "signals.npz"]
    ok(["cluster", models / "ae.keras", "--all", "8", "--epochs", "1", "-o", tmp_path / "ae8.keras", *data])
    assert "config.json" in zipfile.ZipFile(tmp_path / "ae8.keras").namelist()  # -o x.keras writes .keras
    sidecar = json.loads((tmp_path / "ae8.json").read_text())
    assert sidecar["task"] == "regress" and sidecar["test_accuracy"] is None and sidecar["loss"]["loss"] == "mean_squared_error"
    assert sidecar["dataset"]["preprocessing"]["scale"] == 1.0  # float data: used as given
    ok(["convert", models / "ae.keras", "-o", tmp_path / "ae.tflite"])
    ok(["quantize", tmp_path / "ae8.keras", "-o", tmp_path / "ae8_int8.tflite", "--calibration-samples", "20", *data])
    ok(["find-tensors", tmp_path / "ae8_int8.tflite", "--clustering", tmp_path / "ae8.yaml",
        "-o", tmp_path / "spec.yaml"])
    ok(["compress", tmp_path / "ae8_int8.tflite", "--spec", tmp_path / "spec.yaml", "-o", tmp_path / "ae8c.tflite"])
    result = ok(["eval", tmp_path / "ae.tflite", tmp_path / "ae8c.tflite", "--baseline", tmp_path / "ae.tflite",
                 "--json", tmp_path / "eval.json", "--jobs", "1", *data])
    assert "accuracy" not in result.output.lower() and "0.00%" not in result.output
    assert "SNR" in result.output and "MSE" in result.output
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    compressed = evaluated["models"][1]
    assert compressed["task"] == "regress" and compressed["accuracy"] is None
    assert compressed["mse"] > 0 and compressed["snr_db"] > 0 and compressed["agreement_snr_db"] > 10
    assert compressed["gzip_bytes"] < compressed["flash_bytes"] and compressed["runs_in"] == "TFLM"


def test_float_features_from_npy_are_used_as_given(models, tmp_path):
    data = ["--data", models / "mfcc.npy", "--targets", models / "labels.npy"]
    ok(["cluster", models / "dscnn_saved", "--layer", "pw=4", "--epochs", "1", "-o", tmp_path / "d.h5", *data])
    sidecar = json.loads((tmp_path / "d.json").read_text())
    assert sidecar["task"] == "classify" and sidecar["loss"]["from_logits"] is True
    assert sidecar["dataset"]["preprocessing"]["scale"] == 1.0 and sidecar["dataset"]["preprocessing"]["offset"] == 0.0
    scaled = ok(["quantize", models / "dscnn_saved", "-o", tmp_path / "q.tflite", "--calibration-samples", "8",
                 "--input-scale", "0.5", *data])
    assert "Wrote" in scaled.output


def test_a_model_that_runs_code_is_refused_unless_trusted(models, tmp_path):
    import tf_keras

    marker = tmp_path / "pwned.txt"
    namespace: dict = {}
    exec(f"def scale(v):\n    open({str(marker)!r}, 'w').write('ran')\n    return v * 2.0\n", namespace)
    inputs = tf_keras.Input((4,))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(tf_keras.layers.Lambda(namespace["scale"],
                                                                                     name="scale")(inputs)))
    model.save(tmp_path / "evil.h5")
    marker.unlink()
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli(["convert", tmp_path / "evil.h5", "-o", out / "evil.tflite"])
    one_error_line(result, 1, r"model has a Lambda layer 'scale' .*\(.*evil\.h5\) — .*--trust-model.*")
    assert not marker.exists() and _snapshot(out) == []
    ok(["convert", tmp_path / "evil.h5", "-o", out / "evil.tflite", "--trust-model"])
    assert marker.exists() and (out / "evil.tflite").is_file()


def test_bad_input_is_one_error_line_and_writes_nothing(models, tmp_path):
    import tf_keras
    from PIL import Image

    out = tmp_path / "out"
    out.mkdir()

    save_subclassed_model(tmp_path / "subclassed", inputs=4)

    class Doubler(tf_keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inputs = tf_keras.Input((4,))
    tf_keras.Model(inputs, tf_keras.layers.Dense(2)(Doubler(name="doubler")(inputs))).save(tmp_path / "custom.h5")

    one_class = tmp_path / "one_class" / "cat"
    one_class.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(one_class / f"{i}.png")
    broken = tmp_path / "broken"
    for label in ("a", "b"):
        (broken / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(broken / label / f"{i}.png")
    (broken / "b" / "3.png").write_bytes(b"not a png at all")
    np.save(tmp_path / "wrong_targets.npy", np.zeros((90, 5), np.float32))

    cases = [
        (["convert", models / "two_inputs.h5", "-o", out / "x.tflite"], 1,
         r"the model has 2 inputs.*supported: Functional and Sequential.*"),
        (["convert", tmp_path / "subclassed", "-o", out / "x.tflite"], 1,
         r"subclassed model 'Net' cannot be read \(.*subclassed\) — supported: Functional and Sequential .*"),
        (["convert", tmp_path / "custom.h5", "-o", out / "x.tflite"], 1,
         r"model has a custom layer 'doubler' of class 'Doubler', which is not a built-in tf_keras layer; .* — "
         r"re-run with --trust-model if you trust this file"),
        (["quantize", models / "ae.keras", "-o", out / "x.tflite", "--data", models / "mfcc.npy",
          "--targets", models / "labels.npy"], 1, r"the data's rows have shape .* but the model expects .*"),
        (["quantize", models / "dscnn_saved", "-o", out / "x.tflite", "--data", models / "mfcc.npy",
          "--targets", tmp_path / "wrong_targets.npy"], 1,
         r"targets have rows of shape \(5,\) but the model outputs \(3,\) .* — regression targets must have the "
         r"model output's shape \(or omit y to reconstruct x\)"),
        (["eval", models / "ae.keras", "--data", models / "signals.npz", "--task", "classify"], 1,
         r"the data has no class labels \(targets of shape \(32,\)\) .* — give integer labels 0\.\.N-1, or use the "
         r"regress task"),
        (["eval", models / "ae.keras", "--data", tmp_path / "one_class"], 1,
         r"image directory has 1 class subdirectory\(ies\); a classifier needs at least 2 .*"),
        (["eval", models / "ae.keras", "--data", broken], 1,
         r"cannot read image: cannot identify image file .*3\.png.* — remove or replace the file"),
    ]
    for args, code, pattern in cases:
        one_error_line(run_cli(args), code, pattern)
    assert _snapshot(out) == []


def test_plan_works_on_a_resnet_with_batchnorm_and_residual_adds(tmp_path):
    """plan → cluster on a small ResNet-8-style model (BatchNorm, residual Add, 1×1 shortcuts)."""
    import tf_keras
    from tf_keras import layers

    def block(x, filters, stride):
        y = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(filters, 3, strides=stride, padding="same")(x)))
        y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same")(y))
        if stride != 1 or x.shape[-1] != filters:
            x = layers.Conv2D(filters, 1, strides=stride)(x)
        return layers.ReLU()(layers.Add()([x, y]))

    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((16, 16, 3))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same")(inputs)))
    x = block(block(x, 8, 1), 16, 2)
    model = tf_keras.Model(inputs, layers.Dense(4, activation="softmax")(layers.GlobalAveragePooling2D()(x)))
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 600)
    images = rng.integers(0, 60, (600, 16, 16, 3)).astype(np.uint8)
    for i, label in enumerate(y):
        row, col = divmod(int(label), 2)
        images[i, row * 8:row * 8 + 6, col * 8:col * 8 + 6, :] = 255
    np.savez(tmp_path / "d.npz", x_train=images[:500], y_train=y[:500], x_test=images[500:], y_test=y[500:])
    model.fit(images[:500] / 255.0, y[:500], epochs=8, verbose=0)
    model.save(tmp_path / "resnet.h5")
    data = ["--data", tmp_path / "d.npz"]
    planned = ok(["plan", tmp_path / "resnet.h5", "--max-accuracy-drop", "2", "--clusters", "4", "--epochs", "0",
                  "--no-check", "-o", tmp_path / "plan.yaml", *data])
    assert "Plan:" in planned.output
    spec = (tmp_path / "plan.yaml").read_text()
    assert "clusters:" in spec
    ok(["cluster", tmp_path / "resnet.h5", "--spec", tmp_path / "plan.yaml", "--epochs", "1",
        "-o", tmp_path / "planned.h5", *data])
