"""Deployment-like validation end to end: eval's paired intervals (by test group), gate --on bound, and a
plan that validates on held-out groups and decides on the bound."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import ok, run_cli


@pytest.fixture(scope="module")
def grouped_npz(tiny_npz, tmp_path_factory):
    """The tiny data with 6 training groups and 4 test groups."""
    d = dict(np.load(tiny_npz))
    path = tmp_path_factory.mktemp("grouped") / "grouped.npz"
    np.savez(path, **d, groups_train=np.arange(len(d["y_train"])) % 6, groups_test=np.arange(len(d["y_test"])) % 4)
    return path


def test_eval_prints_and_records_paired_intervals_by_test_group(pipeline, grouped_npz, tmp_path):
    result = ok(["eval", pipeline["compressed_tflite"], "--baseline", pipeline["model_tflite"], "--data", grouped_npz,
                 "--json", tmp_path / "eval.json"])
    [line] = [x for x in result.output.splitlines() if " vs the baseline: " in x]
    assert "Δ accuracy " in line and "95% interval" in line and "4 groups (200 rows)" in line
    assert "top-1 agreement" in line
    [model] = json.loads((tmp_path / "eval.json").read_text())["models"]
    delta = model["paired"]["delta"]
    assert delta["groups"] == 4 and delta["rows"] == 200 and delta["low"] <= delta["estimate"] <= delta["high"]
    assert delta["estimate"] == pytest.approx(model["accuracy_delta_pp"])
    gate = run_cli(["gate", tmp_path / "eval.json", "--max-accuracy-drop", "100", "--on", "bound"])
    assert gate.exit_code == 0 and "95% interval low end" in gate.output
