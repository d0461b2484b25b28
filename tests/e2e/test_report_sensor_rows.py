"""`report` on a sensor model whose rows are (T, C) windows, and on an eval JSON run from another folder.

Both were found by users: a (128, 6) IMU model's report reshaped the rows as images, and a data path
recorded relative to where `eval` ran was not found from anywhere else.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import int8_models, ok, one_error_line, run_cli

STEPS, CHANNELS, CLASSES = 12, 3, 3


@pytest.fixture(scope="module")
def sensor(tmp_path_factory):
    """A folder `sub/` with a (12, 3)-input int8 classifier and a labelled .npz of (12, 3) windows."""
    import tf_keras

    root = tmp_path_factory.mktemp("sensor")
    sub = root / "sub"
    sub.mkdir()
    model = int8_models({"conv1d": ((STEPS, CHANNELS), [
        tf_keras.layers.Conv1D(4, 3, activation="relu"), tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(CLASSES)])})["conv1d"]
    (sub / "har.tflite").write_bytes(model)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, STEPS, CHANNELS)).astype(np.float32)
    y = rng.integers(0, CLASSES, 64)
    np.savez(sub / "d.npz", x_train=x, y_train=y, x_test=x[:32], y_test=y[:32])
    return root


def test_report_reads_t_by_c_rows_from_the_json_folder(sensor, monkeypatch):
    sub = sensor / "sub"
    monkeypatch.chdir(sub)
    ok(["eval", "har.tflite", "--data", "d.npz", "--json", "e.json"])
    monkeypatch.chdir(sensor)
    result = ok(["report", "sub/e.json", "-o", "rep", "--model", "sub/har.tflite", "--baseline", "sub/har.tflite"])
    assert "the eval JSON records path d.npz, relative to its folder: using sub/d.npz" in result.output
    assert "are not images (12, 3); predictions.png skipped" in result.output
    assert sorted(p.name for p in (sensor / "rep").iterdir()) == ["size_vs_accuracy.png", "summary.md"]


def test_a_failed_report_leaves_no_directory(sensor, monkeypatch):
    monkeypatch.chdir(sensor / "sub")
    ok(["eval", "har.tflite", "--data", "d.npz", "--json", "e2.json"])
    rng = np.random.default_rng(1)
    np.savez("wide.npz", x_train=rng.uniform(size=(8, 5, 3)).astype(np.float32), y_train=np.zeros(8, int),
             x_test=rng.uniform(size=(8, 5, 3)).astype(np.float32), y_test=np.zeros(8, int))
    result = run_cli(["report", "e2.json", "-o", "failed", "--data", "wide.npz", "--model", "har.tflite",
                      "--baseline", "har.tflite"])
    one_error_line(result, 1, r"the data's rows have shape \(5, 3, 1\) but the model expects \(12, 3\) \(.*har\.tflite\) "
                              r"— use the dataset the model was trained on")
    assert not (sensor / "sub" / "failed").exists()
