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
    if model == "model_int8_tflite":
        _palettize_makes_what_the_plan_measured(pipeline[model], grouped_npz, tmp_path, sidecar)


def _palettize_makes_what_the_plan_measured(source, grouped_npz, tmp_path, sidecar):
    """The plan's spec names the held-out groups; `palettize --spec --data` (the options the spec's header gives)
    calibrates on the other groups' rows only, as the plan did, so the file is the one the plan measured and
    compresses to the plan's exact bytes."""
    from tinycomp.data import load_dataset
    from tinycomp.plan import Measurement
    from tinycomp.plan.workflow import PlanInputs
    from tinycomp.specs import parse_palettization_spec
    from tinycomp.tflite.model import parse_tflite

    held_out = sidecar["validation"]["held_out"]
    spec = parse_palettization_spec((tmp_path / "plan.yaml").read_text())
    assert spec.calibration is not None and spec.calibration.exclude_groups == tuple(held_out) and spec.tensors
    assert f"use: tinycomp palettize {source} --spec {tmp_path / 'plan.yaml'} --data/--dataset (as given to plan) " \
           "--seed 1 -o OUT.tflite" in (tmp_path / "plan.yaml").read_text().replace("\n# ", " ")
    out = tmp_path / "planned.tflite"
    result = ok(["palettize", source, "--spec", tmp_path / "plan.yaml", "--data", grouped_npz, "--seed", "1", "-o", out])
    assert f"not held-out groups {', '.join(held_out)} of groups_train, as the spec says" in result.output
    rows = json.loads((tmp_path / "planned.json").read_text())["calibration"]["rows"]
    groups = np.load(grouped_npz)["groups_train"]
    assert len(rows) == sidecar["validation"]["fit_rows"] and not np.isin(groups[rows].astype(str), held_out).any()
    choice = {name: option["bits"] for name, option in sidecar["plan"]["choices"].items() if option["clusters"]}
    inputs = PlanInputs.of(source.read_bytes(), load_dataset(npz=grouped_npz), str(source))
    backend = inputs.backend(Measurement(validation_split=0.4, calibration_rows=512), seed=1)
    with backend.opened(1):
        measured = parse_tflite(backend.palettes.model_with(choice)).subgraphs[0].tensors
    made, given = parse_tflite(out.read_bytes()).subgraphs[0].tensors, parse_tflite(source.read_bytes()).subgraphs[0].tensors
    constant = [i for i, t in enumerate(made) if t.buffer is not None and t.buffer.data]
    assert sum(not np.array_equal(given[i].array, made[i].array) for i in constant) > len(choice)  # weights and biases
    for i in constant:  # every weight and corrected bias is the one the plan measured
        assert np.array_equal(made[i].array, measured[i].array), made[i].name
    ok(["compress", out, "--spec", tmp_path / "planned.yaml", "-o", tmp_path / "c.tflite"])
    assert (tmp_path / "c.tflite").stat().st_size == sidecar["plan"]["exact_bytes"]


def test_cluster_makes_the_model_the_plans_check_measured(pipeline, grouped_npz, tmp_path):
    """A Keras plan that fine-tunes writes its validation rows into the spec; `cluster --spec` fine-tunes
    without them and keeps what the check kept, decided the same way: its recorded bound is the check's."""
    from tinycomp.specs import PlanValidation, parse_clustering_spec

    ok(["plan", pipeline["model_h5"], "--max-accuracy-drop", "100", "--data", grouped_npz, "--seed", "1",
        "--validation-split", "0.4", "--clusters", "2", "--epochs", "3", "-o", tmp_path / "plan.yaml"])
    spec = parse_clustering_spec((tmp_path / "plan.yaml").read_text())
    sidecar = json.loads((tmp_path / "plan.json").read_text())
    held_out = tuple(sidecar["validation"]["held_out"])
    assert spec.epochs == 3 and spec.validation == PlanValidation(0.4, 1, 600, held_out)  # the check kept fine-tuned
    result = ok(["cluster", pipeline["model_h5"], "--spec", tmp_path / "plan.yaml", "--data", grouped_npz, "--seed", "1",
                 "-o", tmp_path / "c.h5"])
    assert "Kept the fine-tuned model, as the plan's check decides" in result.output
    fine_tuning = json.loads((tmp_path / "c.json").read_text())["fine_tuning"]
    checked = sidecar["plan"]["checked_bound"]
    assert fine_tuning["used"] and fine_tuning["validation"] == sidecar["validation"]
    assert fine_tuning["validation_rows"] == checked["drop"]["rows"] == 200
    for key in ("estimate", "high"):  # the same model on the same rows: the check's numbers
        assert fine_tuning["bound"]["drop"][key] == pytest.approx(checked["drop"][key], abs=1e-6)
    other = run_cli(["cluster", pipeline["model_h5"], "--spec", tmp_path / "plan.yaml", "--data", pipeline["data"],
                     "-o", tmp_path / "other.h5"])  # the same rows without groups_train: not the plan's data
    assert other.exit_code == 1 and other.output.splitlines()[-1] == (
        f"Error: the plan validated on held-out groups {', '.join(held_out)} of groups_train, but tiny.npz holds "
        "out no groups "
        "(spec: validation.held_out_groups) — give cluster the --data/--dataset given to plan")


def test_plan_without_groups_says_where_its_validation_rows_come_from(pipeline, tmp_path):
    result = ok(["plan", pipeline["model_int8_tflite"], "--max-accuracy-drop", "100", "--data", pipeline["data"],
                 "-o", tmp_path / "plan.yaml"])
    assert "Note: validation rows are the last 0.2 of tiny.npz's training rows (120), so the check's bound counts " \
           "rows: give groups_train" in result.output
    sidecar = json.loads((tmp_path / "plan.json").read_text())
    assert sidecar["validation"]["kind"] == "rows" and sidecar["plan"]["checked_bound"]["drop"]["groups"] is None
    assert "95% upper bound" in result.output
