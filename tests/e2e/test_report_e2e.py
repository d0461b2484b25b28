"""tinycomp report: size-vs-accuracy and predictions figures and a markdown summary from eval JSON."""

from __future__ import annotations

import json

import pytest

from helpers import PNG, ok, run_cli


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
    """An eval JSON from before data specs were recorded names only the data."""
    record = json.loads(eval_json.read_text())
    del record["dataset"]["spec"]
    old = tmp_path / "old.eval.json"
    old.write_text(json.dumps(record))
    result = run_cli(["report", old, "-o", tmp_path / "report"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: the eval JSON was measured on 'tiny.npz', which is not a built-in dataset ({old}) — "
        "give the same data with --data FILE.npz (or --images 0 for no predictions.png)")
