"""The exit-code contract CI relies on (docs/exit-codes.md)."""

import json

from helpers import run_cli


def test_eval_writes_its_json_before_a_failed_budget_exits_1(dense_names_model, tiny_npz, tmp_path):
    out = tmp_path / "eval.json"
    result = run_cli(["eval", dense_names_model, "--data", tiny_npz, "--limit", "10", "--jobs", "1",
                      "--flash-budget", "1KiB", "--json", out])
    assert result.exit_code == 1
    assert "Error: no model fits the flash/RAM budget" in result.output
    written = json.loads(out.read_text())
    assert written["flash_budget"] == 1024 and written["ram_budget"] is None
    [model] = written["models"]
    assert model["fits"] is False and model["budget_notes"] == [f"flash {model['flash_bytes']:,} > 1,024"]


def test_eval_that_fails_otherwise_writes_no_json(dense_names_model, tmp_path):
    out = tmp_path / "eval.json"
    result = run_cli(["eval", dense_names_model, "--data", tmp_path / "missing.npz", "--json", out])
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert not out.exists()


def test_usage_errors_exit_2(dense_names_model, tiny_npz, tmp_path):
    for args in (["eval"], ["eval", dense_names_model, "--bogus"],  # click: a missing argument, an unknown option
                 ["eval", dense_names_model, "--data", tiny_npz, "--flash-budget", "lots"],
                 ["cluster", dense_names_model, "-o", tmp_path / "c.h5"]):  # needs one of --spec, --layer, --all
        result = run_cli(args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
