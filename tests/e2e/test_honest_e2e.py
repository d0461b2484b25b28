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


@pytest.mark.parametrize("model", ["model_h5", "model_int8_tflite"])
def test_plan_validates_on_held_out_groups_and_records_the_bound(pipeline, grouped_npz, tmp_path, model):
    args = ["plan", pipeline[model], "--max-accuracy-drop", "100", "--data", grouped_npz, "--seed", "1",
            "--validation-split", "0.4", "-o", tmp_path / "plan.yaml"]
    if model == "model_h5":
        args += ["--clusters", "2,4", "--epochs", "0"]
    result = ok(args)
    sidecar = json.loads((tmp_path / "plan.json").read_text())
    validation = sidecar["validation"]
    assert validation["kind"] == "groups" and validation["groups"] == 2 and validation["seed"] == 1
    assert validation["rows"] == 200 and validation["fit_rows"] == 400
    assert f"validation: 2 held-out groups of grouped.npz ({', '.join(validation['held_out'])}; 200 rows" in result.output
    bound = sidecar["plan"]["checked_bound"]
    assert bound["drop"]["groups"] == 2 and bound["drop"]["rows"] == 200
    assert bound["drop"]["estimate"] <= bound["drop"]["high"] and bound["agreement"]["low"] <= 100
    assert "Check: accuracy drop " in result.output and ": within the 100 pp budget (decided on the bounds)" in result.output


def test_plan_without_groups_says_where_its_validation_rows_come_from(pipeline, tmp_path):
    result = ok(["plan", pipeline["model_int8_tflite"], "--max-accuracy-drop", "100", "--data", pipeline["data"],
                 "-o", tmp_path / "plan.yaml"])
    assert "Note: validation rows are the last 0.2 of tiny.npz's training rows (120), so the check's bound counts " \
           "rows: give groups_train" in result.output
    sidecar = json.loads((tmp_path / "plan.json").read_text())
    assert sidecar["validation"]["kind"] == "rows" and sidecar["plan"]["checked_bound"]["drop"]["groups"] is None
    assert "95% upper bound" in result.output
