"""tinycomp report: size-vs-accuracy and predictions figures and a markdown summary from eval JSON."""

from __future__ import annotations

import json

import numpy as np

from helpers import PNG, ok, run_cli
from tinycomp.metrics import REGRESS


def test_report_missing_eval_json(tmp_path):
    missing = tmp_path / "eval.json"
    result = run_cli(["report", missing, "-o", tmp_path / "report"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: eval JSON not found ({missing}) — check the path"]
    assert not (tmp_path / "report").exists()


def test_report_not_an_eval_json(tmp_path):
    bad = tmp_path / "eval.json"
    bad.write_text('{"dataset": {}}')
    result = run_cli(["report", bad, "-o", tmp_path / "report"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f'Error: not an eval JSON: no "models" list ({bad}) — write one with `tinycomp eval MODELS... --json FILE`']


def test_pick_examples_shows_mistakes_first():
    from tinycomp.report import pick_examples

    y = np.arange(100) % 10
    first, second = y.copy(), y.copy()
    first[[3, 51]] = 0
    second[[7]] = 1
    chosen = pick_examples(y, first, second, 8, seed=1)
    assert len(chosen) == 8 == len(set(chosen.tolist()))
    assert chosen[:3].tolist() == [3, 7, 51]
    assert len(pick_examples(y[:5], first[:5], second[:5], 16)) == 5


def test_summary_markdown_verdicts():
    from tinycomp.evaluate import ModelResult
    from tinycomp.records import EvalRecord
    from tinycomp.report import summary_markdown

    models = [ModelResult("a/base.tflite", "tflm", 1000, 0.9, 100, 500, 1.0, 1.0, 0.0, True),
              ModelResult("a/small.tflite", "tflm", 400, 0.85, 100, 900, 1.0, 2.5, -5.0, True),
              ModelResult("b/big.tflite", "tflm", 5000, 0.9, 100, 500, 1.0, 0.2, 0.0, False, ["flash 5,000 > 2,000"])]
    text = summary_markdown(EvalRecord(models, "a/base.tflite", {"name": "digits"}, 2000, None, "eval.json"),
                            [], max_drop_pp=1.0)
    assert ("| model | runs in | flash bytes | × smaller | arena bytes | accuracy | Δ accuracy (pp) | top-1 agreement "
            "| SNR vs baseline (dB) | ms/inference | verdict |") in text
    assert "| `base.tflite` | TFLM | 1,000 | 1.00 | 500 | 90.00% | +0.00 | – | – | 1.000 | FITS, baseline |" in text
    assert "ACCURACY DROP > 1 pp" in text and "TOO BIG (flash 5,000 > 2,000)" in text
    assert "Budget: flash ≤ 2,000 B." in text


def test_summary_markdown_lists_the_alternate_decompression_memory():
    from tinycomp.evaluate import ModelResult
    from tinycomp.records import EvalRecord
    from tinycomp.report import summary_markdown

    models = [ModelResult("a/int8.tflite", "tflm", 1000, 0.9, 100, 500),
              ModelResult("a/lut.tflite", "tflm", 400, 0.9, 100, 9000, alt_decompression_bytes=8192,
                          arena_bytes_with_alt_decompression=600)]
    text = summary_markdown(EvalRecord(models, None, {"name": "digits"}, None, None, "eval.json"), [])
    assert "- `lut.tflite`: 8,192 bytes there, a 600-byte arena" in text
    assert "int8.tflite`:" not in text


# ---------------------------------------------------------------- regression models


def _regress_record(**kw):
    from tinycomp.evaluate import ModelResult
    from tinycomp.records import EvalRecord

    models = [ModelResult("b/ae.h5", "keras", 90000, None, 50, ms_per_inference=0.5, ratio_vs_baseline=1.0,
                          task=REGRESS, mse=0.0125, snr_db=20.04, agreement_snr_db=200.0, gzip_bytes=80000,
                          runs_in="Keras"),
              ModelResult("b/ae_int8.tflite", "tflm", 30000, None, 50, 4096, 1.25, 3.0, task=REGRESS, mse=0.02,
                          snr_db=17.0, agreement_snr_db=31.46, gzip_bytes=25000, runs_in="TFLM"),
              ModelResult("b/ae_lut.tflite", "tflm", 12000, None, 50, 9000, 1.5, 7.5, task=REGRESS, mse=0.02,
                          snr_db=17.0, agreement_snr_db=24.0, gzip_bytes=11000, runs_in="TFLM")]
    return EvalRecord(models, "b/ae.h5", {"name": "ae.npz"}, None, None, "eval.json", **kw)


REGRESS_HEADER = ("| model | runs in | flash bytes | gzip bytes | × smaller | arena bytes | MSE | SNR vs targets (dB) "
                  "| SNR vs baseline (dB) | ms/inference | verdict |")


def test_summary_markdown_of_a_regressor_shows_mse_and_snr_never_accuracy():
    from tinycomp.report import summary_markdown

    text = summary_markdown(_regress_record(), [], max_drop_pp=1.0, min_snr_db=30)
    assert REGRESS_HEADER in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows == [
        "| `ae.h5` | Keras | 90,000 | 80,000 | 1.00 | – | 0.0125 | 20.0 | 200.0 | 0.500 | baseline |",
        "| `ae_int8.tflite` | TFLM | 30,000 | 25,000 | 3.00 | 4,096 | 0.02 | 17.0 | 31.5 | 1.250 | SNR OK |",
        "| `ae_lut.tflite` | TFLM | 12,000 | 11,000 | 7.50 | 9,000 | 0.02 | 17.0 | 24.0 | 1.500 | SNR < 30 dB |"]
    assert "%" not in "\n".join(rows) and "accuracy" not in text
    assert 'Verdict "SNR OK": output SNR against the baseline\'s outputs of at least 30 dB.' in text


def test_summary_markdown_of_a_regressor_without_min_snr_says_there_is_no_verdict():
    from tinycomp.report import summary_markdown

    text = summary_markdown(_regress_record(), [], max_drop_pp=1.0)
    assert "Regression models get no output verdict: no minimum SNR against the baseline was given." in text
    [lut] = [line for line in text.splitlines() if line.startswith("| `ae_lut.tflite`")]
    assert lut.endswith("| 24.0 | 1.500 | – |")  # no verdict at all


def test_the_plotted_metric_follows_the_task():
    from tinycomp.report import plot_metric, plotted

    metric = plot_metric(_regress_record())
    assert (metric.attr, metric.axis_label) == ("snr_db", "output SNR against the test targets (dB)")
    assert [m.path for m in plotted(_regress_record())] == ["b/ae.h5", "b/ae_int8.tflite", "b/ae_lut.tflite"]


def test_report_cli_on_a_regression_eval_json(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(_regress_record().to_json()))
    out = tmp_path / "report"
    result = ok(["report", path, "-o", out, "--min-snr", "30"])  # default --images 16: no data is needed
    assert result.output.splitlines() == [
        "predictions.png shows class predictions, so it is drawn for classifiers only; ae_int8.tflite and "
        "ae_lut.tflite are regression models (task regress): no predictions.png",
        f"Wrote {out}/: summary.md, size_vs_accuracy.png (3 models from {path})"]
    assert sorted(p.name for p in out.iterdir()) == ["size_vs_accuracy.png", "summary.md"]
    assert (out / "size_vs_accuracy.png").read_bytes().startswith(PNG)
    summary = (out / "summary.md").read_text()
    assert REGRESS_HEADER in summary and "0.00%" not in summary
    assert "![Size vs output SNR](size_vs_accuracy.png)" in summary
    assert "> Note: predictions.png shows class predictions" in summary


def test_report_cli_on_eval_json_from_before_tasks(tmp_path):
    from helpers import OLD_EVAL_JSON

    path = tmp_path / "eval.json"
    path.write_text(OLD_EVAL_JSON)
    out = tmp_path / "report"
    ok(["report", path, "-o", out, "--images", "0"])
    summary = (out / "summary.md").read_text()
    assert ("| model | runs in | flash bytes | × smaller | arena bytes | accuracy | Δ accuracy (pp) | top-1 agreement "
            "| SNR vs baseline (dB) | ms/inference | verdict |") in summary
    assert "| `compressed.tflite` | TFLM | 79,296 | 5.92 | 108,624 | 94.80% | +2.70 | – | – | 1.200 | accuracy OK |" \
        in summary
    assert "![Size vs accuracy](size_vs_accuracy.png)" in summary


def test_summary_markdown_shows_where_a_model_runs_and_its_notes():
    from tinycomp.evaluate import ModelResult
    from tinycomp.records import EvalRecord
    from tinycomp.report import summary_markdown

    note = "float16 model: runs in the TFLite interpreter; it will not run on a microcontroller"
    models = [ModelResult("m.tflite", "tflm", 1000, 0.9, 100, 500),
              ModelResult("m_f16.tflite", "tflite", 600, 0.9, 100, notes=[note])]  # no runs_in: from kind
    text = summary_markdown(EvalRecord(models, None, {"name": "digits"}, None, None, "eval.json"), [])
    assert "| `m_f16.tflite` | TFLite | 600 |" in text
    assert f"> Note: `m_f16.tflite`: {note}" in text


def test_a_mixed_record_plots_the_baseline_task_and_says_who_is_left_out(tmp_path):
    from tinycomp.evaluate import ModelResult
    from tinycomp.records import EvalRecord

    models = [ModelResult("c.tflite", "tflm", 1000, 0.9, 10, 500),
              ModelResult("ae.tflite", "tflm", 800, None, 10, 400, task=REGRESS, mse=0.1, snr_db=12.0)]
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(EvalRecord(models, "c.tflite", {"name": "d"}, None, None).to_json()))
    ok(["report", path, "-o", tmp_path / "r", "--images", "0"])
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "> Note: size_vs_accuracy.png plots accuracy, so it leaves out the models of another task: ae.tflite" in summary
