"""`tinycomp plan`: the budgeted choice (pure), the spec it writes, reproducibility, bench-summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import ok, run_cli


@pytest.fixture(scope="module")
def planned(pipeline, tmp_path_factory):
    d = tmp_path_factory.mktemp("plan")
    args = ["plan", pipeline["model_h5"], "--max-accuracy-drop", "5", "--clusters", "2,4", "--epochs", "0",
            "--seed", "3", "--data", pipeline["data"]]
    first = ok([*args, "-o", d / "plan.yaml"])
    ok([*args, "-o", d / "again.yaml"])
    return d, first


def test_plan_writes_a_spec_cluster_consumes(planned, pipeline):
    from tinycomp.specs import parse_clustering_spec

    d, result = planned
    spec = parse_clustering_spec((d / "plan.yaml").read_text(), "plan.yaml")
    assert spec.layers and all(layer.clusters in (2, 4) for layer in spec.layers)
    assert "Per-layer sensitivity" in result.output and "predicted" in result.output
    sidecar = json.loads((d / "plan.json").read_text())
    assert sidecar["plan"]["exact_bytes"] > 0 and sidecar["sensitivity"]["layers"]
    assert sidecar["plan"]["checked_drop_pp"] is not None  # measured with all planned layers clustered
    chosen = {n: o["clusters"] for n, o in sidecar["plan"]["choices"].items() if o["clusters"] is not None}
    assert chosen in [c["clusters"] for c in sidecar["checked"]]  # every plan the check tried is recorded
    ok(["cluster", pipeline["model_h5"], "--spec", d / "plan.yaml", "-o", d / "planned.h5", "--epochs", "1",
        "--data", pipeline["data"]])
    clustered = parse_clustering_spec((d / "planned.yaml").read_text(), "planned.yaml")
    assert clustered == spec


def test_plan_is_reproducible_with_seed(planned):
    d, _ = planned
    assert (d / "plan.yaml").read_text().replace("again", "plan") == (d / "again.yaml").read_text().replace("again", "plan")
    a, b = (json.loads((d / name).read_text()) for name in ("plan.json", "again.json"))
    strip_time = lambda p: {**p["sensitivity"], "seconds": 0}  # noqa: E731
    assert strip_time(a) == strip_time(b) and a["plan"] == b["plan"]


@pytest.mark.parametrize("io", ["uint8", "int8"])
def test_plan_predicts_the_bytes_of_the_per_tensor_dense_stripped_chain(pipeline, tmp_path, io):
    data = ["--data", pipeline["data"]]
    ok(["plan", pipeline["model_h5"], "--max-accuracy-drop", "100", "--clusters", "2,4", "--epochs", "0",
        "--per-tensor-dense", "--strip", "--io", io, "-o", tmp_path / "plan.yaml", *data])
    sidecar = json.loads((tmp_path / "plan.json").read_text())
    assert sidecar["per_tensor_dense"] and sidecar["strip"] and sidecar["io"] == io
    ok(["cluster", pipeline["model_h5"], "--spec", tmp_path / "plan.yaml", "-o", tmp_path / "c.h5", "--epochs", "1", *data])
    ok(["quantize", tmp_path / "c.h5", "--per-tensor-dense", "--io", io, "-o", tmp_path / "c.tflite", *data])
    ok(["find-tensors", tmp_path / "c.tflite", "--clustering", tmp_path / "c.yaml", "-o", tmp_path / "spec.yaml"])
    ok(["compress", tmp_path / "c.tflite", "--spec", tmp_path / "spec.yaml", "--strip", "-o", tmp_path / "out.tflite",
        "--verify-samples", "2"])
    actual = (tmp_path / "out.tflite").stat().st_size
    predicted = sidecar["plan"]["exact_bytes"]
    # Synthetic fills have 2^bits values per table; real int8 values may merge a few, never add any.
    assert actual <= predicted <= actual + 64, (predicted, actual)
    ok(["eval", tmp_path / "out.tflite", "--limit", "4", "--json", tmp_path / "eval.json", *data])
    [evaluated] = json.loads((tmp_path / "eval.json").read_text())["models"]
    assert evaluated["arena_bytes"] == sidecar["plan"]["arena_bytes"] > 0


def test_plan_reuses_a_sensitivity_table(planned, pipeline, tmp_path):
    d, _ = planned
    data = ["--data", pipeline["data"]]
    ok(["plan", pipeline["model_h5"], "--max-accuracy-drop", "5", "--sensitivity", d / "plan.json",
        "-o", tmp_path / "same.yaml", *data])
    a, b = (json.loads(p.read_text()) for p in (d / "plan.json", tmp_path / "same.json"))
    assert a["plan"] == b["plan"] and a["sensitivity"] == b["sensitivity"]  # same table, same choice
    largest = max(layer["weights"] for layer in a["sensitivity"]["layers"])
    ok(["plan", pipeline["model_h5"], "--target-bytes", str(a["plan"]["exact_bytes"] + largest), "--no-check",
        "--sensitivity", d / "plan.json", "-o", tmp_path / "bigger.yaml", *data])
    bigger = json.loads((tmp_path / "bigger.json").read_text())["plan"]
    assert bigger["objective"] == "min-drop" and bigger["checked_drop_pp"] is None


@pytest.mark.parametrize("extra, code, error", [
    (["--strip"], 2, "Error: the table's byte costs were measured with strip off (--strip) — plan with the "
                     "byte-cost settings of the table, or measure a new table"),
    (["--epochs", "1"], 2, "Error: --epochs has no effect with --sensitivity: the table was measured already "
                           "(--sensitivity) — drop the option, or measure a new table without --sensitivity"),
    (["--layer", "dense"], 2, "Error: --layer has no effect with --sensitivity: the table was measured already "
                              "(--sensitivity) — drop the option, or measure a new table without --sensitivity"),
    (["--io", "int8"], 2, "Error: the table's byte costs were measured with io uint8 (--io) — plan with the "
                          "byte-cost settings of the table, or measure a new table"),
])
def test_plan_sensitivity_mismatch_is_one_error_line(planned, pipeline, tmp_path, extra, code, error):
    import fnmatch

    d, _ = planned
    result = run_cli(["plan", pipeline["model_h5"], "--max-accuracy-drop", "5", "--sensitivity", d / "plan.json",
                      *extra, "-o", tmp_path / "p.yaml", "--data", pipeline["data"]])
    assert result.exit_code == code
    assert fnmatch.fnmatch(result.output.strip().splitlines()[-1], error), result.output
    assert not (tmp_path / "p.yaml").exists()


def test_plan_sensitivity_of_another_model_or_no_table(planned, pipeline, tmp_path):
    d, _ = planned
    result = run_cli(["plan", pipeline["clustered_h5"], "--max-accuracy-drop", "5", "--sensitivity",
                      d / "plan.json", "-o", tmp_path / "p.yaml", "--data", pipeline["data"]])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: the sensitivity table was measured on another model than {pipeline['clustered_h5']} "
        f"({d / 'plan.json'}) — measure again: run plan without --sensitivity")
    (tmp_path / "not_plan.json").write_text('{"step": "cluster"}')
    result = run_cli(["plan", pipeline["model_h5"], "--max-accuracy-drop", "5", "--sensitivity",
                      tmp_path / "not_plan.json", "-o", tmp_path / "p.yaml", "--data", pipeline["data"]])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: not a sensitivity table written by `tinycomp plan` ({tmp_path / 'not_plan.json'}) — give the "
        ".json that `plan -o PLAN.yaml` wrote next to PLAN.yaml")


def test_plan_target_bytes_too_small_is_one_error_line(pipeline, tmp_path):
    result = run_cli(["plan", pipeline["model_h5"], "--target-bytes", "100", "--clusters", "2", "--epochs", "0",
                      "--layer", "dense", "-o", tmp_path / "p.yaml", "--data", pipeline["data"]])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: no plan fits in 100 bytes")
    assert not (tmp_path / "p.yaml").exists()


def test_plan_needs_exactly_one_budget(pipeline, tmp_path):
    result = run_cli(["plan", pipeline["model_h5"], "-o", tmp_path / "p.yaml", "--data", pipeline["data"]])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: give exactly one of --max-accuracy-drop, --max-snr-drop, --target-bytes or --target-ratio (plan) — "
        "e.g. --max-accuracy-drop 0.5 (a classifier), --max-snr-drop 1 (a regression model), --target-bytes 38KiB "
        "or --target-ratio 12")


def test_plan_target_ratio_budgets_against_the_float32_file_convert_writes(planned, pipeline, tmp_path):
    d, _ = planned
    float32_bytes = pipeline["model_tflite"].stat().st_size
    ratio = 2.5
    ok(["plan", pipeline["model_h5"], "--target-ratio", str(ratio), "--sensitivity", d / "plan.json",
        "-o", tmp_path / "ratio.yaml", "--data", pipeline["data"]])
    sidecar = json.loads((tmp_path / "ratio.json").read_text())
    assert sidecar["float32_bytes"] == float32_bytes
    assert sidecar["target_bytes"] == int(float32_bytes // ratio)
    assert sidecar["plan"]["objective"] == "min-drop" and sidecar["plan"]["exact_bytes"] <= sidecar["target_bytes"]


def test_plan_ram_budget_through_the_cli(planned, pipeline, tmp_path):
    d, _ = planned
    unconstrained = json.loads((d / "plan.json").read_text())["plan"]
    ok(["plan", pipeline["model_h5"], "--max-accuracy-drop", "5", "--ram-budget", str(unconstrained["arena_bytes"]),
        "--sensitivity", d / "plan.json", "-o", tmp_path / "same.yaml", "--data", pipeline["data"]])
    same = json.loads((tmp_path / "same.json").read_text())
    assert same["ram_budget"] == unconstrained["arena_bytes"] and same["plan"]["uncompressed_for_ram"] == []
    assert same["plan"]["choices"] == unconstrained["choices"]
    result = run_cli(["plan", pipeline["model_h5"], "--max-accuracy-drop", "5", "--ram-budget", "1KiB",
                      "--sensitivity", d / "plan.json", "-o", tmp_path / "p.yaml", "--data", pipeline["data"]])
    assert result.exit_code == 1 and not (tmp_path / "p.yaml").exists()
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: the model needs ") and line.endswith(
        " arena bytes with no layer compressed, more than the RAM budget of 1,024 (--ram-budget) — raise the RAM "
        "budget or make the model's activations smaller")


def test_plan_target_ratio_out_of_reach_is_one_error_line(planned, pipeline, tmp_path):
    d, _ = planned
    float32_bytes = pipeline["model_tflite"].stat().st_size
    result = run_cli(["plan", pipeline["model_h5"], "--target-ratio", "1000", "--sensitivity", d / "plan.json",
                      "-o", tmp_path / "p.yaml", "--data", pipeline["data"]])
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith(f"Error: no plan fits in {float32_bytes // 1000:,} bytes (1000× smaller than float32's "
                           f"{float32_bytes:,}): the smallest predicted is "), line
    assert line.endswith(" bytes (--target-ratio) — lower the ratio or add smaller cluster counts (e.g. 2,4,...)")
    assert not (tmp_path / "p.yaml").exists()


def test_bench_summary_reports_the_ideal_bound(pipeline, tmp_path):
    from tinycomp.tflite.breakdown import byte_breakdown
    from tinycomp.tflite.model import read_tflite

    f = read_tflite(pipeline["compressed_tflite"])
    b = byte_breakdown(f.model, len(f.data))
    compressed = [w for w in b.weights if w.compressed]
    assert compressed and all(w.stored_bytes >= w.ideal_bytes for w in b.weights)
    # every constant buffer a tensor reads is counted once, as weights or as other constants (computed
    # here independently of byte_breakdown); names and quantization parameters likewise
    tensors = [t for s in f.model.subgraphs for t in s.tensors]
    read = {id(t.buffer): len(bytes(t.buffer.data)) for t in tensors if t.buffer is not None and t.buffer.data}
    assert b.weight_bytes + b.other_constants == sum(read.values())
    assert b.names == sum(len(t.name or "") for t in tensors) > 0
    quantized = [t.quantization for t in tensors if t.quantization is not None and t.quantization.scales is not None]
    assert b.quantization == sum(4 * np.size(q.scales) + 8 * np.size(q.zero_points) for q in quantized) > 0
    assert 0 < b.structure < len(f.data) - sum(read.values())
    bench = tmp_path / "bench.json"
    ok(["eval", pipeline["model_tflite"], pipeline["compressed_tflite"], "--baseline", pipeline["model_tflite"],
        "--limit", "10", "--jobs", "1", "--json", bench, "--data", pipeline["data"]])
    result = ok(["bench-summary", bench, "--json", tmp_path / "summary.json"])
    assert "bytes / ideal" in result.output and "quantization scales" in result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    breakdown = summary["models"][1]["breakdown"]
    assert breakdown["ideal_bytes"] == b.ideal_bytes
    # the second reading of the bound counts biases and other constants as stored
    assert breakdown["ideal_with_constants"] == b.ideal_bytes + b.other_constants > b.ideal_bytes
    assert breakdown["bytes_per_ideal"] > breakdown["bytes_per_ideal_with_constants"] >= 1.0


def test_the_cli_maps_a_field_error_to_its_option(pipeline, tmp_path):
    result = run_cli(["plan", pipeline["model_h5"], "--max-accuracy-drop", "1", "--clusters", "1,4",
                      "-o", tmp_path / "p.yaml", "--data", pipeline["data"]])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == "Error: cluster counts must be 2–128, got 1 (--clusters) — e.g. 2,4,8,16,32,64"


def test_the_choice_and_the_record_import_neither_tensorflow_nor_tflite_micro():
    import subprocess
    import sys

    code = ("import sys, tinycomp.plan, tinycomp.plan.choose, tinycomp.plan.plan_record, tinycomp.plan.candidates; "
            "print([m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'tflite_micro')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plan_with_the_fast_estimate_through_the_cli(pipeline, tmp_path):
    ok(["plan", pipeline["model_h5"], "--max-accuracy-drop", "5", "--clusters", "2,4", "--epochs", "1",
        "--estimate", "fast", "--seed", "3", "-o", tmp_path / "fast.yaml", "--data", pipeline["data"]])
    sidecar = json.loads((tmp_path / "fast.json").read_text())
    options = [o for layer in sidecar["sensitivity"]["layers"] for o in layer["options"] if o["clusters"]]
    assert options and all(isinstance(o["fine_tuned"], bool) for o in options)
    assert sidecar["plan"]["checked_drop_pp"] is not None
    from tinycomp.plan.request import FAST_FINE_TUNE_ROWS, FAST_VALIDATION_ROWS

    assert (sidecar["estimate"], sidecar["fine_tune_rows"], sidecar["validation_rows"]) == (
        "fast", FAST_FINE_TUNE_ROWS, FAST_VALIDATION_ROWS)
    ok(["plan", pipeline["model_h5"], "--max-accuracy-drop", "5", "--sensitivity", tmp_path / "fast.json",
        "-o", tmp_path / "again.yaml", "--data", pipeline["data"]])
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["estimate"] == "fast" and again["sensitivity"] == sidecar["sensitivity"]
