"""`tinycomp gate`: CI's budget check on an eval JSON (flash/RAM from eval, accuracy, agreement)."""

from __future__ import annotations

import json

import pytest

from helpers import run_cli
from tinycomp.evaluate import ModelResult
from tinycomp.gate import GateLimits, gate
from tinycomp.metrics import REGRESS
from tinycomp.records import EvalRecord


def _record(fits=True, delta=-0.4, budget_notes=()) -> EvalRecord:
    base = ModelResult("base.tflite", "tflm", 9000, 0.9, 100, arena_bytes=900, fits=False,
                       budget_notes=["flash 9,000 > 4,096"])
    model = ModelResult("m.tflite", "tflm", 3000, 0.9 + delta / 100, 100, arena_bytes=2000, accuracy_delta_pp=delta,
                        fits=fits, budget_notes=list(budget_notes))
    return EvalRecord(models=[base, model], baseline="base.tflite", dataset={"name": "d"}, flash_budget=4096,
                      ram_budget=4096, source="eval.json")


def test_a_model_within_every_budget_passes_and_says_what_was_checked():
    [verdict] = gate(_record(), None, GateLimits(max_accuracy_drop_pp=0.5))
    assert verdict.path == "m.tflite" and verdict.passed
    assert verdict.checked == ["flash 3,000 ≤ 4,096 B, arena 2,000 ≤ 4,096 B", "accuracy -0.40 pp ≥ −0.5 pp"]


def test_exactly_at_the_accuracy_budget_passes():
    assert gate(_record(delta=-0.5), None, GateLimits(max_accuracy_drop_pp=0.5))[0].passed


@pytest.mark.parametrize("fits, delta, failure", [
    (False, 0.0, "TOO BIG (arena 5,000 > 4,096)"),
    (True, -0.6, "accuracy -0.60 pp vs the baseline, more than 0.5 pp below it"),
])
def test_a_model_over_a_budget_fails(fits, delta, failure):
    [verdict] = gate(_record(fits, delta, ["arena 5,000 > 4,096"] if not fits else []), None,
                     GateLimits(max_accuracy_drop_pp=0.5))
    assert verdict.failures == [failure]


def test_gate_cli_exits_1_with_one_error_line_and_writes_nothing(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(_record(delta=-1.2).to_json()))
    before = sorted(tmp_path.iterdir())
    result = run_cli(["gate", path, "--max-accuracy-drop", "0.5"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: m.tflite fails its budget: accuracy -1.20 pp vs the baseline, more than 0.5 pp below it ({path}) — "
        "see the eval JSON and report; shrink the model or relax the budget"]
    assert sorted(tmp_path.iterdir()) == before


def test_gate_cli_passes(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(_record().to_json()))
    result = run_cli(["gate", path, "--model", "m.tflite", "--max-accuracy-drop", "0.5"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "PASS m.tflite: flash 3,000 ≤ 4,096 B, arena 2,000 ≤ 4,096 B; accuracy -0.40 pp ≥ −0.5 pp"]


def test_gate_on_a_model_eval_did_not_measure_is_a_usage_error(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(_record().to_json()))
    result = run_cli(["gate", path, "--model", "other.tflite"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: other.tflite is not in the eval record (it has base.tflite, m.tflite) (--model) — "
        "name a model that eval measured"]


def _regress_record(snr=31.5) -> EvalRecord:
    base = ModelResult("ae.h5", "keras", 9000, None, 50, task=REGRESS, mse=0.01, snr_db=20.0,
                       agreement_snr_db=200.0, runs_in="Keras")
    model = ModelResult("ae_int8.tflite", "tflm", 3000, None, 50, arena_bytes=2048, task=REGRESS, mse=0.02,
                        snr_db=17.0, agreement_snr_db=snr, runs_in="TFLM")
    return EvalRecord(models=[base, model], baseline="ae.h5", dataset={"name": "ae.npz"}, flash_budget=None,
                      ram_budget=None, source="eval.json")


def _write(tmp_path, record: EvalRecord):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(record.to_json()))
    return path


def test_gate_cli_passes_a_regression_model_on_its_output_snr(tmp_path):
    path = _write(tmp_path, _regress_record())
    result = run_cli(["gate", path, "--min-agreement-snr", "30"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["PASS ae_int8.tflite: output SNR 31.5 dB ≥ 30 dB"]


def test_gate_cli_fails_a_regression_model_below_its_output_snr(tmp_path):
    path = _write(tmp_path, _regress_record(snr=24.25))
    result = run_cli(["gate", path, "--min-agreement-snr", "30"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: ae_int8.tflite fails its budget: output SNR 24.2 dB against the baseline, below 30 dB ({path}) — "
        "see the eval JSON and report; shrink the model or relax the budget"]


def test_gate_cli_max_accuracy_drop_on_a_regression_model_names_it(tmp_path):
    path = _write(tmp_path, _regress_record())
    result = run_cli(["gate", path, "--max-accuracy-drop", "0.5", "--min-agreement-snr", "30"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: ae_int8.tflite is a regression model (task regress): it has no accuracy to compare with the "
        "baseline's (--max-accuracy-drop) — gate regression models on their output SNR against the baseline "
        "(--min-agreement-snr DB)"]


def test_min_agreement_snr_applies_to_classifiers_too():
    record = _record()
    record.models[1].agreement_snr_db = 12.0
    [verdict] = gate(record, None, GateLimits(max_accuracy_drop_pp=0.5, min_agreement_snr_db=20.0))
    assert verdict.failures == ["output SNR 12.0 dB against the baseline, below 20 dB"]


def test_gate_cli_agreement_on_eval_json_without_it_says_so(tmp_path):
    path = _write(tmp_path, _record())  # no agreement_snr_db, as eval JSON written before tinycomp measured it
    result = run_cli(["gate", path, "--min-agreement-snr", "30"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: m.tflite has no output SNR against a baseline ({path}) — run eval with --baseline (eval JSON from "
        "before tinycomp measured agreement has none), or drop --min-agreement-snr"]


def _paired_record(tmp_path, low: float, estimate: float = -0.3):
    from tinycomp.bounds import Interval

    delta = Interval(estimate, low, 0.2, 773, 2, 0.95, "two", "pp")
    record = _record(delta=estimate)
    record.models[1].paired = {"delta": delta.to_json(), "agreement": None}
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(record.to_json()))
    return path


def test_gate_on_bound_checks_the_low_end_of_the_paired_interval(tmp_path):
    path = _paired_record(tmp_path, low=-1.4)
    assert run_cli(["gate", path, "--max-accuracy-drop", "1"]).exit_code == 0  # the estimate, −0.30 pp, passes
    result = run_cli(["gate", path, "--max-accuracy-drop", "1", "--on", "bound"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: m.tflite fails its budget: accuracy -0.30 pp vs the baseline, but the low end of its 95% interval, "
        f"-1.40 pp (2 groups (773 rows)), is more than 1 pp below it ({path}) — see the eval JSON and report; "
        "shrink the model or relax the budget"]


def test_gate_on_bound_passes_when_the_interval_is_within(tmp_path):
    result = run_cli(["gate", _paired_record(tmp_path, low=-0.8), "--max-accuracy-drop", "1", "--on", "bound"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "PASS m.tflite: flash 3,000 ≤ 4,096 B, arena 2,000 ≤ 4,096 B; accuracy -0.30 pp, 95% interval low end "
        "-0.80 pp ≥ −1 pp (2 groups (773 rows))"]


def test_gate_on_bound_without_an_interval_says_to_rerun_eval(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(_record().to_json()))
    result = run_cli(["gate", path, "--max-accuracy-drop", "1", "--on", "bound"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: m.tflite has no paired interval of its accuracy against the baseline ({path}) — run eval --baseline "
        "with this tinycomp (older eval JSON has none), or gate --on estimate"]
