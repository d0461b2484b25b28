"""`tinycomp plan` on a regression/reconstruction model: drops in output SNR (dB), budget --max-snr-drop."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import ok, run_cli


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory):
    """A Dense autoencoder 64 → 16 → 64 trained briefly on noisy rank-3 data, saved with its MSE loss; the .npz has
    no y. (16 → 4 → 16 has too few weights: a compressed layer, with its DECODE operator, would cost more bytes
    than an int8 one.)"""
    import tf_keras

    from tinycomp.models import save_keras_model, set_seed

    d = tmp_path_factory.mktemp("regress")
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(600, 3)) @ rng.normal(size=(3, 64)) + 0.3 * rng.normal(size=(600, 64))).astype(np.float32)
    np.savez(d / "signals.npz", x_train=x[:500], x_test=x[500:])
    set_seed(0)
    model = tf_keras.Sequential([tf_keras.layers.Input((64,)), tf_keras.layers.Dense(16, name="enc"),
                                 tf_keras.layers.Dense(64, name="dec")])
    model.compile(optimizer=tf_keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x[:500], x[:500], epochs=40, batch_size=32, verbose=0)
    save_keras_model(model, d / "ae.h5")
    return {"dir": d, "model": d / "ae.h5", "data": d / "signals.npz"}


@pytest.mark.slow
def test_plan_writes_a_spec_cluster_consumes_for_an_autoencoder(autoencoder, tmp_path):
    out = tmp_path / "plan.yaml"
    result = ok(["plan", autoencoder["model"], "--max-snr-drop", "30", "--clusters", "2,4", "--epochs", "1", "--per-tensor-dense",
                 "--data", autoencoder["data"], "-o", out])
    # no accuracy in percent for a regression model (the bound's confidence level, "95%", is not one)
    assert "SNR" in result.output and " dB" in result.output and "%" not in result.output.split("Plan:")[1].replace("95%", "")
    assert "Check: SNR drop " in result.output and "dB (95% upper bound " in result.output
    header = out.read_text().splitlines()[:3]
    assert "SNR drop ≤ 30 dB" in header[0] and " dB on the validation split" in header[1]
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["task"] == "regress" and record["sensitivity"]["task"] == "regress"
    assert record["max_snr_drop"] == 30 and record["max_accuracy_drop"] is None
    table = record["sensitivity"]
    assert table["reference_accuracy"] > 5  # an SNR in dB, not an accuracy in [0, 1]
    options = [o for layer in table["layers"] for o in layer["options"] if o["clusters"]]
    assert all(o["measured_pp"] == pytest.approx(table["control_accuracy"] - o["accuracy"]) for o in options)
    assert record["plan"]["checked_drop_pp"] is not None
    ok(["cluster", autoencoder["model"], "--spec", out, "--epochs", "1", "--data", autoencoder["data"],
        "-o", tmp_path / "clustered.h5"])
    assert (tmp_path / "clustered.h5").exists()
    # a byte target works too, and the table is reused without measuring (same task)
    again = ok(["plan", autoencoder["model"], "--target-ratio", "1.5", "--sensitivity", out.with_suffix(".json"), "--per-tensor-dense",
                "--data", autoencoder["data"], "-o", tmp_path / "ratio.yaml", "--no-check"])
    assert "drop" in again.output and " dB" in again.output
    assert json.loads((tmp_path / "ratio.json").read_text())["task"] == "regress"


@pytest.mark.slow
def test_an_accuracy_budget_on_a_regression_model_names_the_snr_option(autoencoder, tmp_path):
    result = run_cli(["plan", autoencoder["model"], "--max-accuracy-drop", "1", "--clusters", "2,4", "--epochs", "0",
                      "--data", autoencoder["data"], "-o", tmp_path / "p.yaml"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: --max-accuracy-drop is a top-1 accuracy budget, but signals.npz makes this a regress task "
        "(no class labels): plan measures its drops in output SNR (dB) (--max-accuracy-drop) — give --max-snr-drop "
        "DB instead, e.g. --max-snr-drop 1")
    assert not (tmp_path / "p.yaml").exists()


def test_an_snr_budget_on_a_classifier_names_the_accuracy_option(pipeline, tmp_path):
    result = run_cli(["plan", pipeline["model_h5"], "--max-snr-drop", "1", "--clusters", "2,4", "--epochs", "0",
                      "--data", pipeline["data"], "-o", tmp_path / "p.yaml"])
    assert result.exit_code == 2
    name = pipeline["data"].name
    assert result.output.strip().splitlines()[-1] == (
        f"Error: --max-snr-drop is an output SNR budget, but {name} makes this a classify task (integer labels): "
        "plan measures its drops in top-1 accuracy (pp) (--max-snr-drop) — give --max-accuracy-drop PP instead, "
        "e.g. --max-accuracy-drop 0.5")
    assert not (tmp_path / "p.yaml").exists()
