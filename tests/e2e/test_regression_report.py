"""A regression model's eval JSON, written by `tinycomp eval`, through `report` and `gate`.

A tiny dense autoencoder (16 → 4 → 16, untrained: its metric only has to be measured) is converted to
float32 and int8 .tflite files, evaluated against the Keras model as baseline on data without
labels (so the task is regress), and the JSON eval wrote goes through report and gate unchanged.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import ok, run_cli

pytestmark = pytest.mark.slow  # converts a model and runs TFLM


@pytest.fixture(scope="module")
def regression_eval(tmp_path_factory):
    import tf_keras

    d = tmp_path_factory.mktemp("regress")
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.layers.Input((16,)), tf_keras.layers.Dense(4, activation="relu", name="enc"),
                                 tf_keras.layers.Dense(16, name="dec")])
    model.compile(optimizer="adam", loss="mse")
    model.save(d / "ae.h5")
    rng = np.random.default_rng(0)
    np.savez(d / "signals.npz", x_train=rng.normal(size=(64, 16)).astype(np.float32),
             x_test=rng.normal(size=(32, 16)).astype(np.float32))
    data = ["--data", d / "signals.npz"]
    ok(["convert", d / "ae.h5", "-o", d / "ae.tflite"])
    ok(["quantize", d / "ae.h5", "-o", d / "ae_int8.tflite", "--calibration-samples", "16", *data])
    ok(["eval", d / "ae.h5", d / "ae.tflite", d / "ae_int8.tflite", "--baseline", d / "ae.h5", "--jobs", "1",
        "--json", d / "eval.json", *data])
    return d


def test_eval_wrote_regression_results(regression_eval):
    models = json.loads((regression_eval / "eval.json").read_text())["models"]
    assert [(m["task"], m["accuracy"]) for m in models] == [("regress", None)] * 3
    assert all(m["agreement_snr_db"] is not None and m["snr_db"] is not None for m in models)


def test_report_on_the_regression_eval_json(regression_eval, tmp_path):
    out = tmp_path / "report"
    result = ok(["report", regression_eval / "eval.json", "-o", out, "--min-snr", "10"])
    assert result.stdout.splitlines()[-1] == \
        f"Wrote {out}/: summary.md, size_vs_accuracy.png (3 models from {regression_eval / 'eval.json'})"
    assert "drawn for classifiers only; ae.tflite and ae_int8.tflite are regression models" in result.stderr
    summary = (out / "summary.md").read_text()
    models = json.loads((regression_eval / "eval.json").read_text())["models"]
    rows = [line for line in summary.splitlines() if line.startswith("| `")]
    [header] = [line for line in summary.splitlines() if line.startswith("| model |")]
    assert len(rows) == 3 and "%" not in "\n".join(rows) and "accuracy" not in header
    assert "| MSE | SNR vs targets (dB) | SNR vs baseline (dB) |" in header
    for row, m in zip(rows, models):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[6:9] == [f"{m['mse']:.4g}", f"{m['snr_db']:.1f}", f"{m['agreement_snr_db']:.1f}"]
        expected = "baseline" if m["path"].endswith(".h5") else ("SNR OK" if m["agreement_snr_db"] >= 10 else
                                                                  "SNR < 10 dB")
        assert cells[-1] == expected


def test_gate_on_the_regression_eval_json(regression_eval):
    path = regression_eval / "eval.json"
    int8 = str(regression_eval / "ae_int8.tflite")
    snr = json.loads(path.read_text())["models"][2]["agreement_snr_db"]
    passed = run_cli(["gate", path, "--model", int8, "--min-agreement-snr", f"{snr - 1:.3f}"])
    assert passed.exit_code == 0 and passed.output.startswith(f"PASS {int8}: output SNR {snr:.1f} dB ≥ ")
    failed = run_cli(["gate", path, "--model", int8, "--min-agreement-snr", f"{snr + 1:.3f}"])
    assert failed.exit_code == 1 and failed.output.startswith(f"Error: {int8} fails its budget: output SNR ")
    refused = run_cli(["gate", path, "--model", int8, "--max-accuracy-drop", "1"])
    assert refused.exit_code == 2
    assert refused.output.splitlines() == [
        f"Error: {int8} is a regression model (task regress): it has no accuracy to compare with the baseline's "
        "(--max-accuracy-drop) — gate regression models on their output SNR against the baseline "
        "(--min-agreement-snr DB)"]


def test_bench_summary_on_the_regression_eval_json(regression_eval):
    result = ok(["bench-summary", regression_eval / "eval.json"])
    assert "SNR" in result.output and "%" not in result.output.split("non-weight bytes")[1]
