"""`tinycomp plan`: the budgeted choice (pure), the spec it writes, reproducibility, bench-summary."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from conftest import ok, run_cli
from tinycomp.errors import InvalidValue
from tinycomp.plan import (
    Budget,
    LayerSensitivity,
    NothingFits,
    Option,
    SensitivityTable,
    checked_plan,
    choose_plan,
    choose_plan_within_ram,
    counted_drops,
    plan_spec,
)


def _layer(name, weights, rows, per_channel=False):
    """rows: (clusters, bytes, measured drop pp); the unclustered option costs `weights` bytes."""
    options = [Option(None, 8, weights, weights)]
    options += [Option(c, c.bit_length() - 1, b, b, measured_pp=d) for c, b, d in rows]
    counted_drops(options)
    return LayerSensitivity(name, "Dense", weights, 1, per_channel, options)


def _table(control=0.90, reference=0.90):
    return SensitivityTable([
        _layer("a", 1000, [(2, 150, 2.0), (4, 280, 0.6), (16, 520, 0.1)]),
        _layer("b", 5000, [(2, 700, 1.5), (4, 1300, 0.3), (16, 2600, 0.0)]),
        _layer("c", 200, [(2, 120, 0.4), (4, 150, 0.2)]),
    ], int8_bytes=1000 + 5000 + 200 + 3000, reference_accuracy=reference, control_accuracy=control)


def _brute_force(table, fits, key):
    combos = itertools.product(*[layer.options for layer in table.layers])
    scored = [(table.fixed_bytes + sum(o.bytes for o in combo), sum(o.drop_pp for o in combo)) for combo in combos
              if any(o.clusters for o in combo)]
    return min((s for s in scored if fits(s)), key=key)


def test_counted_drops_are_monotone_and_never_negative():
    options = [Option(None, 8, 10, 10)] + [Option(c, 1, 1, 1, measured_pp=d)
                                           for c, d in ((2, 1.0), (4, -0.5), (8, 0.3), (16, -0.2))]
    counted_drops(options)
    drops = [o.drop_pp for o in options[1:]]  # 2, 4, 8, 16 clusters
    assert drops == sorted(drops, reverse=True) and min(drops) >= 0
    assert drops[0] == 1.0 and options[0].drop_pp == 0.0


@pytest.mark.parametrize("budget", [0.0, 0.35, 0.5, 1.0, 2.5, 10.0])
def test_min_bytes_respects_the_accuracy_budget_and_is_optimal(budget):
    table = _table()
    plan = choose_plan(table, Budget(max_drop_pp=budget))
    assert plan.predicted_drop_pp <= budget + 1e-9
    assert plan.predicted_bytes == table.fixed_bytes + sum(o.bytes for o in plan.choices.values())
    best = _brute_force(table, lambda s: s[1] <= budget + 1e-9, key=lambda s: (s[0], s[1]))
    assert plan.predicted_bytes == best[0]


def test_fine_tuning_gain_is_credited_unless_disabled():
    table = _table(control=0.91, reference=0.90)  # fine-tuning alone gains 1 pp
    credited = choose_plan(table, Budget(max_drop_pp=0.5))
    strict = choose_plan(table, Budget(max_drop_pp=0.5, credit_fine_tuning=False))
    assert credited.sum_drop_pp <= 1.5 + 1e-9 and strict.sum_drop_pp <= 0.5 + 1e-9
    assert credited.predicted_bytes < strict.predicted_bytes
    losing = _table(control=0.89, reference=0.90)  # a loss always counts
    assert choose_plan(losing, Budget(max_drop_pp=1.5, credit_fine_tuning=False)).sum_drop_pp <= 0.5 + 1e-9


@pytest.mark.parametrize("target", [4000, 4500, 6000, 9000])
def test_target_bytes_minimises_the_drop(target):
    table = _table()
    plan = choose_plan(table, Budget(target_bytes=target))
    assert plan.predicted_bytes <= target
    best = _brute_force(table, lambda s: s[0] <= target, key=lambda s: (s[1], s[0]))
    assert plan.sum_drop_pp == pytest.approx(best[1])


def test_nothing_fits_is_a_clean_error():
    table = _table()
    with pytest.raises(NothingFits, match="smallest predicted is 3,970 bytes"):
        choose_plan(table, Budget(target_bytes=3000))
    steep = SensitivityTable([_layer("a", 1000, [(2, 100, 3.0), (4, 200, 2.0)])], int8_bytes=2000,
                             reference_accuracy=0.9, control_accuracy=0.9)
    with pytest.raises(NothingFits, match="no layer can be clustered"):
        choose_plan(steep, Budget(max_drop_pp=1.0))
    with pytest.raises(InvalidValue, match="exactly one budget") as caught:
        Budget(max_drop_pp=1.0, target_bytes=5000)
    assert caught.value.field == "budget"


DECODED = {"a": 1000, "b": 5000, "c": 200}  # bytes each layer's decoded weights take in the arena


def _arenas(combine, calls):
    """A fake arena measurement: 1,000 bytes of activations plus the decoded layers, combined."""
    def arenas_of(sets):
        calls.append(list(sets))
        return [1000 + combine([DECODED[n] for n in s] or [0]) for s in sets]
    return arenas_of


def test_ram_budget_never_compresses_a_layer_whose_decoding_alone_does_not_fit():
    table, calls = _table(), []
    plan = choose_plan_within_ram(table, Budget(max_drop_pp=10.0, ram_bytes=3000), _arenas(max, calls))
    assert "b" not in plan.clustered() and plan.uncompressed_for_ram == ["b"]
    assert plan.arena_bytes == 1000 + max(DECODED[n] for n in plan.clustered()) <= 3000
    unconstrained = choose_plan(table, Budget(max_drop_pp=10.0))
    assert "b" in unconstrained.clustered() and plan.predicted_bytes > unconstrained.predicted_bytes
    assert len(calls[0]) == 4  # nothing compressed and each layer alone, measured in one batch


def test_ram_budget_leaves_out_the_largest_decoder_until_the_measured_arena_fits():
    plan = choose_plan_within_ram(_table(), Budget(max_drop_pp=10.0, ram_bytes=2100), _arenas(sum, []))
    assert plan.uncompressed_for_ram == ["a", "b"] and list(plan.clustered()) == ["c"]
    assert plan.arena_bytes == 1200


@pytest.mark.parametrize("budget, error", [
    (900, "the model needs 1,000 arena bytes with no layer compressed, more than the RAM budget of 900"),
    (1100, "no layer can be compressed within the RAM budget of 1,100 bytes: decoding even c needs 1,200 arena bytes"),
])
def test_ram_budget_out_of_reach_is_a_clean_error(budget, error):
    with pytest.raises(NothingFits) as caught:
        choose_plan_within_ram(_table(), Budget(max_drop_pp=10.0, ram_bytes=budget), _arenas(max, []))
    assert caught.value.what == error and caught.value.field == "ram_bytes" and caught.value.where is None


def _checked(budget, penalty_pp, noise_pp=0.0, attempts=3):
    """checked_plan on the test table, where clustering the chosen layers together costs penalty_pp more."""
    table = _table()
    return checked_plan(lambda b: choose_plan(table, Budget(max_drop_pp=b)) if b is not None else
                        choose_plan(table, Budget(target_bytes=6000)),
                        lambda plan: plan.predicted_drop_pp + penalty_pp, budget, noise_pp, attempts)


def test_a_plan_whose_drops_add_up_is_measured_once():
    plan, tried = _checked(1.0, 0.0)
    assert tried == [plan] and plan.checked_drop_pp == plan.predicted_drop_pp


def test_a_plan_over_budget_when_measured_is_chosen_again_under_a_lower_budget():
    first = choose_plan(_table(), Budget(max_drop_pp=2.5))
    plan, tried = _checked(2.5, 1.0)
    assert tried[0].predicted_bytes == first.predicted_bytes and tried[0].checked_drop_pp > 2.5
    assert len(tried) == 2 and plan is tried[1]
    assert plan.predicted_drop_pp <= 1.5 + 1e-9 and plan.checked_drop_pp <= 2.5 + 1e-9
    assert plan.predicted_bytes > first.predicted_bytes


def test_an_excess_within_the_noise_keeps_the_plan():
    plan, tried = _checked(2.5, 0.3, noise_pp=0.5)
    assert tried == [plan]


def test_no_plan_within_budget_returns_the_least_harmful_tried():
    plan, tried = _checked(2.5, 50.0, attempts=3)
    assert 1 <= len(tried) <= 3 and plan.checked_drop_pp == min(p.checked_drop_pp for p in tried) > 2.5


def test_a_size_budget_is_measured_but_not_re_chosen():
    plan, tried = _checked(None, 5.0)
    assert tried == [plan] and plan.objective == "min-drop" and plan.checked_drop_pp == plan.predicted_drop_pp + 5.0


def test_plan_spec_keeps_per_channel_for_conv():
    table = SensitivityTable([_layer("conv", 1000, [(4, 300, 0.0)], per_channel=True),
                              _layer("fc", 1000, [(4, 300, 0.0)])], int8_bytes=3000)
    spec = plan_spec(table, choose_plan(table, Budget(max_drop_pp=0.0)))
    assert {(layer.name, layer.clusters, layer.per_channel) for layer in spec.layers} == {("conv", 4, True), ("fc", 4, False)}


# ---------------------------------------------------------------- through the CLI, on the tiny pipeline model

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


# ---------------------------------------------------------------- the record, the request, the layering

def _record(**changes):
    from tinycomp.plan import CheckedPlan, PlanRecord

    table = _table()
    plan = choose_plan(table, Budget(max_drop_pp=1.0))
    plan.checked_drop_pp = 0.8
    fields = dict(source="m.h5", source_sha256="ab" * 32, dataset={"name": "tiny"}, seed=3, clusters=[2, 4, 16],
                  per_channel_conv=True, epochs=1, validation_split=0.2, credit_fine_tuning=True,
                  per_tensor_dense=True, io="int8", strip=True, max_accuracy_drop=1.0, target_bytes=None,
                  target_ratio=None, ram_budget=None, float32_bytes=None, sensitivity=table, plan=plan,
                  checked=[CheckedPlan.of(plan)])
    return PlanRecord(**{**fields, **changes})


def test_plan_record_round_trips_through_json():
    from tinycomp.plan import PlanRecord

    record = _record()
    payload = json.loads(json.dumps(record.to_json()))
    assert payload["schema_version"] == 1 and payload["step"] == "plan"
    again = PlanRecord.from_json(payload, "p.json")
    assert again.to_json() == payload
    assert again.plan.choices["a"] == record.plan.choices["a"] and again.costs == record.costs


@pytest.mark.parametrize("change, error", [
    (lambda p: {**p, "schema_version": 2}, "plan record schema version 2; this tinycomp reads version 1"),
    (lambda p: {**p, "step": "cluster"}, "not a sensitivity table written by `tinycomp plan`"),
    (lambda p: {k: v for k, v in p.items() if k != "sensitivity"}, "not a sensitivity table written by `tinycomp plan`"),
    (lambda p: [p], "not a sensitivity table written by `tinycomp plan`"),
])
def test_a_newer_or_foreign_record_is_a_clear_input_error(change, error):
    from tinycomp.errors import InputFileError
    from tinycomp.plan import PlanRecord

    with pytest.raises(InputFileError) as caught:
        PlanRecord.from_json(change(_record().to_json()), "p.json")
    assert caught.value.what == error and caught.value.where == "p.json"


def test_a_record_from_before_schema_version_reads_as_version_1():
    from tinycomp.plan import PlanRecord

    payload = _record().to_json()
    del payload["schema_version"], payload["io"]  # the oldest sidecars had neither
    assert PlanRecord.from_json(payload, "old.json").io == "uint8"


@pytest.mark.parametrize("kwargs, field", [
    ({"epochs": -1}, "epochs"), ({"validation_split": 1.0}, "validation_split"), ({"cluster_counts": (1, 4)}, "cluster_counts"),
    ({"batch_size": 0}, "batch_size"),
])
def test_measurement_errors_name_the_field_not_an_option(kwargs, field):
    from tinycomp.plan import Measurement

    with pytest.raises(InvalidValue) as caught:
        Measurement(**kwargs)
    assert caught.value.field == field and "--" not in str(caught.value) and caught.value.exit_code == 2


def test_the_cli_maps_a_field_error_to_its_option(pipeline, tmp_path):
    result = run_cli(["plan", pipeline["model_h5"], "--max-accuracy-drop", "1", "--clusters", "1,4",
                      "-o", tmp_path / "p.yaml", "--data", pipeline["data"]])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == "Error: cluster counts must be 2–128, got 1 (--clusters) — e.g. 2,4,8,16,32,64"


def test_the_choice_and_the_record_import_neither_tensorflow_nor_tflite_micro():
    import subprocess
    import sys

    code = ("import sys, tinycomp.plan, tinycomp.plan.choose, tinycomp.plan.record, tinycomp.plan.candidates; "
            "print([m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'tflite_micro')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- the fast estimate

class _FakeMeasurer:
    """A Measurer whose accuracies come from tables of drops (reference = control = 0.9, noise 0.5 pp)."""

    def __new__(cls, zero_drops, tuned_drops, estimate="fast"):
        import numpy as np

        from tinycomp.plan import Measurement
        from tinycomp.plan.measure import Measurer, Rows

        class Fake(Measurer):
            def accuracy(self, candidate, *, epochs):
                if candidate.layer is None:
                    return 0.9
                if epochs:
                    self.tuned.append((candidate.layer, candidate.clusters))
                return 0.9 - (tuned_drops if epochs else zero_drops)[candidate.clusters] / 100

        rows = Rows(np.zeros(1), np.zeros(1), np.zeros(3600), np.zeros(3600))  # ±0.5 pp at 90%
        fake = Fake(None, rows, loss=None, measurement=Measurement(estimate=estimate), seed=0, reference=0.9)
        fake.tuned = []
        return fake


def _fast(zero_drops, tuned_drops, max_drop_pp=1.5, jobs_order=None):
    """The fast estimate of one layer 'a' with fake measurements; returns (drops, counts fine-tuned).
    `jobs_order` measures the candidates in that order with no budget, as worker processes do."""
    from tinycomp.plan.candidates import assemble_drops, candidates_of, fine_tune_limit_pp
    from tinycomp.plan.sensitivity import Prepared, measure_candidates

    fake = _FakeMeasurer(zero_drops, tuned_drops)
    counts = sorted(zero_drops)
    candidates = candidates_of({"a": counts})
    prepared = Prepared(["a"], {"a": counts}, candidates, fake)
    if jobs_order is None:
        results = measure_candidates(prepared, todo=candidates, done={}, max_drop_pp=max_drop_pp)
    else:
        results = {}
        for i in jobs_order:
            results = measure_candidates(prepared, todo=[candidates[i]], done=results)
    limit = fine_tune_limit_pp(max_drop_pp, reference=0.9, control=0.9, noise_pp=fake.noise_pp)
    drops = assemble_drops(counts, {c: results[f"a/{c}"] for c in counts}, estimate="fast", reference=0.9,
                           control=0.9, limit_pp=limit)
    return drops, [c for _, c in fake.tuned]


def test_fast_estimate_fine_tunes_only_what_zero_shot_cannot_settle():
    drops, tuned = _fast({2: 9.0, 4: 3.0, 8: 0.4, 16: 0.1}, {2: 1.5, 4: 0.6, 8: 0.2, 16: 0.0})
    assert tuned == [4, 2]  # 8 and 16 are within the noise zero-shot
    assert drops[16].fine_tuned is False and drops[16].drop_pp == pytest.approx(0.1)
    assert drops[2].fine_tuned and drops[2].drop_pp == pytest.approx(1.5)


def test_fast_estimate_stops_below_a_count_too_harmful_to_choose():
    drops, tuned = _fast({2: 30.0, 4: 12.0, 8: 5.0, 16: 0.2}, {2: 9.0, 4: 4.0, 8: 2.5, 16: 0.0})
    assert tuned == [8]  # 8 fine-tuned is over the limit: 4 and 2 keep their (larger) zero-shot drops
    assert drops[4].drop_pp == pytest.approx(12.0) and not drops[4].fine_tuned
    _, unlimited = _fast({2: 30.0, 4: 12.0, 8: 5.0, 16: 0.2}, {2: 9.0, 4: 4.0, 8: 2.5, 16: 0.0}, max_drop_pp=None)
    assert unlimited == [8, 4, 2]


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 4, 0, 3, 1]])
def test_fast_estimate_is_the_same_in_any_order_without_skipping(order):
    """Workers and shards measure every fine-tune zero-shot asks for, in any order; the drops assembled
    are those of the sequential run, which skipped the fine-tunes it would discard."""
    zero, tuned = {2: 30.0, 4: 12.0, 8: 5.0, 16: 0.2}, {2: 9.0, 4: 4.0, 8: 2.5, 16: 0.0}
    sequential, _ = _fast(zero, tuned)
    any_order, fine_tuned = _fast(zero, tuned, jobs_order=order)
    assert any_order == sequential and sorted(fine_tuned) == [2, 4, 8]


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


def test_measurement_learning_rate_is_checked_and_recorded():
    from tinycomp.errors import InvalidValue
    from tinycomp.plan import Measurement

    assert Measurement(learning_rate=1e-4).to_json()["learning_rate"] == 1e-4
    assert Measurement.from_json(Measurement(learning_rate=1e-4).to_json()).learning_rate == 1e-4
    with pytest.raises(InvalidValue) as error:
        Measurement(learning_rate=0.0)
    assert error.value.field == "learning_rate"


def test_learning_rate_has_no_effect_with_a_recorded_table(tmp_path):
    result = run_cli(["plan", tmp_path / "m.h5", "--max-accuracy-drop", "1", "--learning-rate", "1e-4",
                      "--sensitivity", tmp_path / "p.json", "-o", tmp_path / "p.yaml"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: --learning-rate has no effect with --sensitivity: the table was measured already (--sensitivity) — "
        "drop the option, or measure a new table without --sensitivity"]
