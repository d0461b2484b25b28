"""tinycomp report: size-vs-accuracy and predictions figures and a markdown summary from eval JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ok, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def eval_json(pipeline, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "eval.json"
    ok(["eval", pipeline["model_tflite"], pipeline["model_int8_tflite"], pipeline["compressed_tflite"],
        "--baseline", pipeline["model_tflite"], "--data", pipeline["data"], "--limit", "40", "--jobs", "2",
        "--json", path])
    return path


def test_report_cli(pipeline, eval_json, tmp_path):
    out = tmp_path / "report"
    result = ok(["report", eval_json, "-o", out, "--data", pipeline["data"], "--images", "8", "--jobs", "2"])
    assert f"Wrote {out}/: summary.md, size_vs_accuracy.png, predictions.png" in result.output
    assert "Warning" not in result.output  # the predictions reproduce eval's accuracy on the same images
    for name in ("size_vs_accuracy.png", "predictions.png"):
        assert (out / name).read_bytes().startswith(PNG)
    summary = (out / "summary.md").read_text()
    results = json.loads(eval_json.read_text())["models"]
    table = [line for line in summary.splitlines() if line.startswith("| `")]
    assert len(table) == 3
    for row, model in zip(table, results):
        assert f"{model['flash_bytes']:,}" in row and f"{100 * model['accuracy']:.2f}%" in row
    assert "| baseline |" in table[0]
    assert "![TFLM predictions](predictions.png)" in summary


def test_report_without_predictions_needs_no_data(eval_json, tmp_path):
    out = tmp_path / "report"
    result = ok(["report", eval_json, "-o", out, "--images", "0"])
    assert sorted(p.name for p in out.iterdir()) == ["size_vs_accuracy.png", "summary.md"]
    assert "predictions.png" not in (out / "summary.md").read_text()
    assert "Warning" not in result.output


def test_report_needs_the_eval_data(eval_json, tmp_path):
    result = run_cli(["report", eval_json, "-o", tmp_path / "report"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: the eval JSON was measured on 'tiny.npz', which is not a built-in dataset ({eval_json}) — "
        "give the same data with --data FILE.npz (or --images 0 for no predictions.png)")


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
    assert "| `base.tflite` | TFLM | 1,000 | 1.00 | 500 | 90.00% | +0.00 | 1.000 | FITS, baseline |" in text
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
