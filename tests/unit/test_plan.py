"""`tinycomp plan`: the budgeted choice (pure), the spec it writes, reproducibility, bench-summary."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest

from helpers import run_cli
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
from tinycomp.plan.request import JointDrop


def _layer(name, weights, rows, per_channel=False):
    """rows: (clusters, bytes, measured drop pp); the unclustered option costs `weights` bytes."""
    options = [Option(None, 8, weights, weights)]
    options += [Option(c, c.bit_length() - 1, b, b, measured_drop=d) for c, b, d in rows]
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
    scored = [(table.fixed_bytes + sum(o.bytes for o in combo), sum(o.drop for o in combo)) for combo in combos
              if any(o.clusters for o in combo)]
    return min((s for s in scored if fits(s)), key=key)


def test_counted_drops_are_monotone_and_never_negative():
    options = [Option(None, 8, 10, 10)] + [Option(c, 1, 1, 1, measured_drop=d)
                                           for c, d in ((2, 1.0), (4, -0.5), (8, 0.3), (16, -0.2))]
    counted_drops(options)
    drops = [o.drop for o in options[1:]]  # 2, 4, 8, 16 clusters
    assert drops == sorted(drops, reverse=True) and min(drops) >= 0
    assert drops[0] == 1.0 and options[0].drop == 0.0


@pytest.mark.parametrize("budget", [0.0, 0.35, 0.5, 1.0, 2.5, 10.0])
def test_min_bytes_respects_the_accuracy_budget_and_is_optimal(budget):
    table = _table()
    plan = choose_plan(table, Budget(max_drop=budget))
    assert plan.predicted_drop <= budget + 1e-9
    assert plan.predicted_bytes == table.fixed_bytes + sum(o.bytes for o in plan.choices.values())
    best = _brute_force(table, lambda s: s[1] <= budget + 1e-9, key=lambda s: (s[0], s[1]))
    assert plan.predicted_bytes == best[0]


def test_fine_tuning_gain_is_credited_unless_disabled():
    table = _table(control=0.91, reference=0.90)  # fine-tuning alone gains 1 pp
    credited = choose_plan(table, Budget(max_drop=0.5))
    strict = choose_plan(table, Budget(max_drop=0.5, credit_fine_tuning=False))
    assert credited.sum_drop <= 1.5 + 1e-9 and strict.sum_drop <= 0.5 + 1e-9
    assert credited.predicted_bytes < strict.predicted_bytes
    losing = _table(control=0.89, reference=0.90)  # a loss always counts
    assert choose_plan(losing, Budget(max_drop=1.5, credit_fine_tuning=False)).sum_drop <= 0.5 + 1e-9


@pytest.mark.parametrize("target", [4000, 4500, 6000, 9000])
def test_target_bytes_minimises_the_drop(target):
    table = _table()
    plan = choose_plan(table, Budget(target_bytes=target))
    assert plan.predicted_bytes <= target
    best = _brute_force(table, lambda s: s[0] <= target, key=lambda s: (s[1], s[0]))
    assert plan.sum_drop == pytest.approx(best[1])


def test_nothing_fits_is_a_clean_error():
    table = _table()
    with pytest.raises(NothingFits, match="smallest predicted is 3,970 bytes"):
        choose_plan(table, Budget(target_bytes=3000))
    with pytest.raises(InvalidValue, match="exactly one budget") as caught:
        Budget(max_drop=1.0, target_bytes=5000)
    assert caught.value.field == "budget"


def _steep():
    return SensitivityTable([_layer("a", 1000, [(2, 100, 3.0), (4, 200, 2.0)])], int8_bytes=2000,
                            reference_accuracy=0.9, control_accuracy=0.9, epochs=2)


def test_nothing_within_the_drop_budget_is_the_plan_that_clusters_nothing():
    plan = choose_plan(_steep(), Budget(max_drop=1.0))
    assert plan.clustered() == {} and plan.predicted_bytes == 2000 and plan.predicted_drop == 0.0
    assert plan.epochs == 0 and plan.objective == "min-bytes"
    spec = plan_spec(_steep(), plan)
    assert spec.layers == () and spec.epochs == 0
    assert choose_plan(_steep(), Budget(max_drop=2.0)).clustered()["a"].clusters == 4


def _with_zero_shot(layer, zero_shot):
    """The layer with each clustered option's zero-shot drop set from {clusters: pp}."""
    for o in layer.options:
        if o.clusters is not None:
            o.zero_shot_drop = zero_shot[o.clusters]
    return layer


def test_a_fine_tune_that_loses_accuracy_is_not_charged_to_a_zero_shot_plan():
    # fine-tuning alone loses 2 pp (a converged model), but zero-shot the layers cost little
    table = SensitivityTable([_with_zero_shot(_layer("a", 1000, [(2, 150, 0.0), (4, 280, 0.0)]), {2: 3.0, 4: 0.2}),
                              _with_zero_shot(_layer("b", 5000, [(2, 700, 0.0), (4, 1300, 0.0)]), {2: 5.0, 4: 0.3})],
                             int8_bytes=9000, reference_accuracy=0.90, control_accuracy=0.88, epochs=2)
    plan = choose_plan(table, Budget(max_drop=1.0))
    assert plan.epochs == 0 and {n: o.clusters for n, o in plan.clustered().items()} == {"a": 4, "b": 4}
    assert plan.predicted_drop == pytest.approx(0.5) and plan.credit == 0.0
    assert plan_spec(table, plan).epochs == 0
    # with room for the fine-tune's loss, the fine-tuned prediction (every layer free) is smaller
    tuned = choose_plan(table, Budget(max_drop=2.5))
    assert tuned.epochs == 2 and tuned.predicted_drop == pytest.approx(2.0)
    assert {o.clusters for o in tuned.clustered().values()} == {2}


def test_step_downs_go_for_the_most_bytes_per_drop_first():
    from tinycomp.plan.choose import step_downs, stepped

    table = _table()
    plan = choose_plan(table, Budget(max_drop=0.5))
    steps = step_downs(table, plan)
    assert steps and all(s.saved_bytes > 0 for s in steps)
    ratios = [s.saved_bytes / max(s.added, 1e-3) for s in steps]
    assert ratios == sorted(ratios, reverse=True)
    after = stepped(plan, steps[0])
    assert after.predicted_bytes == plan.predicted_bytes - steps[0].saved_bytes
    assert after.choices[steps[0].layer] is steps[0].option and after.stepped == [steps[0].describe]
    assert step_downs(table, plan, skip={s.layer for s in steps}) == []


DECODED = {"a": 1000, "b": 5000, "c": 200}  # bytes each layer's decoded weights take in the arena


def _arenas(combine, calls):
    """A fake arena measurement: 1,000 bytes of activations plus the decoded layers, combined."""
    def arenas_of(sets):
        calls.append(list(sets))
        return [1000 + combine([DECODED[n] for n in s] or [0]) for s in sets]
    return arenas_of


def test_ram_budget_never_compresses_a_layer_whose_decoding_alone_does_not_fit():
    table, calls = _table(), []
    plan = choose_plan_within_ram(table, Budget(max_drop=10.0, ram_bytes=3000), _arenas(max, calls))
    assert "b" not in plan.clustered() and plan.uncompressed_for_ram == ["b"]
    assert plan.arena_bytes == 1000 + max(DECODED[n] for n in plan.clustered()) <= 3000
    unconstrained = choose_plan(table, Budget(max_drop=10.0))
    assert "b" in unconstrained.clustered() and plan.predicted_bytes > unconstrained.predicted_bytes
    assert len(calls[0]) == 4  # nothing compressed and each layer alone, measured in one batch


def test_ram_budget_leaves_out_the_largest_decoder_until_the_measured_arena_fits():
    plan = choose_plan_within_ram(_table(), Budget(max_drop=10.0, ram_bytes=2100), _arenas(sum, []))
    assert plan.uncompressed_for_ram == ["a", "b"] and list(plan.clustered()) == ["c"]
    assert plan.arena_bytes == 1200


@pytest.mark.parametrize("budget, error", [
    (Budget(max_drop=10.0, ram_bytes=900),
     "the model needs 1,000 arena bytes with no layer compressed, more than the RAM budget of 900"),
    (Budget(target_bytes=9000, ram_bytes=1100),
     "no layer can be compressed within the RAM budget of 1,100 bytes: decoding even c needs 1,200 arena bytes"),
])
def test_ram_budget_out_of_reach_is_a_clean_error(budget, error):
    with pytest.raises(NothingFits) as caught:
        choose_plan_within_ram(_table(), budget, _arenas(max, []))
    assert caught.value.what == error and caught.value.field == "ram_bytes" and caught.value.where is None


def test_no_layer_decodable_within_ram_under_a_drop_budget_clusters_nothing():
    plan = choose_plan_within_ram(_table(), Budget(max_drop=10.0, ram_bytes=1100), _arenas(max, []))
    assert plan.clustered() == {} and plan.arena_bytes == 1000 and plan.uncompressed_for_ram == ["a", "b", "c"]


def _checked(budget, penalty_pp, noise=0.0, attempts=3):
    """checked_plan on the test table, where clustering the chosen layers together costs penalty_pp more."""
    table = _table()
    return checked_plan(lambda b: choose_plan(table, Budget(max_drop=b)) if b is not None else
                        choose_plan(table, Budget(target_bytes=6000)),
                        lambda plan: plan.predicted_drop + penalty_pp, budget, noise, attempts)


def test_a_plan_whose_drops_add_up_is_measured_once():
    plan, tried = _checked(1.0, 0.0)
    assert tried == [plan] and plan.checked_drop == plan.predicted_drop


def test_a_plan_over_budget_when_measured_is_chosen_again_under_a_lower_budget():
    first = choose_plan(_table(), Budget(max_drop=2.5))
    plan, tried = _checked(2.5, 1.0)
    assert tried[0].predicted_bytes == first.predicted_bytes and tried[0].checked_drop > 2.5
    assert len(tried) == 2 and plan is tried[1]
    assert plan.predicted_drop <= 1.5 + 1e-9 and plan.checked_drop <= 2.5 + 1e-9
    assert plan.predicted_bytes > first.predicted_bytes


def test_an_excess_within_the_noise_keeps_the_plan():
    plan, tried = _checked(2.5, 0.3, noise=0.5)
    assert tried == [plan]


def test_no_plan_within_budget_returns_the_least_harmful_tried():
    plan, tried = _checked(2.5, 50.0, attempts=3)
    assert 1 <= len(tried) <= 3 and plan.checked_drop == min(p.checked_drop for p in tried) > 2.5


def test_a_size_budget_is_measured_but_not_re_chosen():
    plan, tried = _checked(None, 5.0)
    assert tried == [plan] and plan.objective == "min-drop" and plan.checked_drop == plan.predicted_drop + 5.0


def test_plan_spec_keeps_per_channel_for_conv():
    table = SensitivityTable([_layer("conv", 1000, [(4, 300, 0.0)], per_channel=True),
                              _layer("fc", 1000, [(4, 300, 0.0)])], int8_bytes=3000)
    spec = plan_spec(table, choose_plan(table, Budget(max_drop=0.0)))
    assert {(layer.name, layer.clusters, layer.per_channel) for layer in spec.layers} == {("conv", 4, True), ("fc", 4, False)}


# ---------------------------------------------------------------- through the CLI, on the tiny pipeline model


# ---------------------------------------------------------------- the record, the request, the layering

def _record(**changes):
    from tinycomp.plan import CheckedPlan, PlanRecord

    table = _table()
    plan = choose_plan(table, Budget(max_drop=1.0))
    plan.checked_drop = 0.8
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


# ---------------------------------------------------------------- the fast estimate

class _FakeMeasurer:
    """A Measurer whose accuracies come from tables of drops (reference = control = 0.9, noise 0.5 pp)."""

    def __new__(cls, zero_drops, tuned_drops, estimate="fast"):

        from tinycomp.plan import Measurement
        from tinycomp.plan.measure import CandidateRows, Measurer

        class Fake(Measurer):
            def accuracy(self, candidate, *, epochs):
                if candidate.tensor is None:
                    return 0.9
                if epochs:
                    self.tuned.append((candidate.tensor, candidate.values))
                return 0.9 - (tuned_drops if epochs else zero_drops)[candidate.values] / 100

        rows = CandidateRows(np.zeros(1), np.zeros(1), np.zeros(3600), np.zeros(3600))  # ±0.5 pp at 90%
        fake = Fake(None, rows, loss=None, measurement=Measurement(estimate=estimate), seed=0, reference=0.9)
        fake.tuned = []
        return fake


def _fast(zero_drops, tuned_drops, max_drop=1.5, jobs_order=None):
    """The fast estimate of one layer 'a' with fake measurements; returns (drops, counts fine-tuned).
    `jobs_order` measures the candidates in that order with no budget, as worker processes do."""
    from tinycomp.plan.candidates import FAST, assemble_drops, candidates_of, fine_tune_limit
    from tinycomp.plan.sensitivity import Prepared, measure_candidates

    fake = _FakeMeasurer(zero_drops, tuned_drops)
    counts = sorted(zero_drops)
    candidates = candidates_of({"a": counts})
    prepared = Prepared(["a"], {"a": counts}, candidates, fake)
    if jobs_order is None:
        results = measure_candidates(prepared, todo=candidates, done={}, max_drop=max_drop)
    else:
        results = {}
        for i in jobs_order:
            results = measure_candidates(prepared, todo=[candidates[i]], done=results)
    limit = fine_tune_limit(max_drop, reference=0.9, control=0.9, noise=fake.noise)
    drops = assemble_drops(counts, {c: results[f"a/{c}"] for c in counts}, estimate=FAST, reference=0.9,
                           control=0.9, limit=limit)
    return drops, [c for _, c in fake.tuned]


def test_fast_estimate_fine_tunes_only_what_zero_shot_cannot_settle():
    drops, tuned = _fast({2: 9.0, 4: 3.0, 8: 0.4, 16: 0.1}, {2: 1.5, 4: 0.6, 8: 0.2, 16: 0.0})
    assert tuned == [4, 2]  # 8 and 16 are within the noise zero-shot
    assert drops[16].fine_tuned is False and drops[16].drop == pytest.approx(0.1)
    assert drops[2].fine_tuned and drops[2].drop == pytest.approx(1.5)


def test_fast_estimate_stops_below_a_count_too_harmful_to_choose():
    drops, tuned = _fast({2: 30.0, 4: 12.0, 8: 5.0, 16: 0.2}, {2: 9.0, 4: 4.0, 8: 2.5, 16: 0.0})
    assert tuned == [8]  # 8 fine-tuned is over the limit: 4 and 2 keep their (larger) zero-shot drops
    assert drops[4].drop == pytest.approx(12.0) and not drops[4].fine_tuned
    _, unlimited = _fast({2: 30.0, 4: 12.0, 8: 5.0, 16: 0.2}, {2: 9.0, 4: 4.0, 8: 2.5, 16: 0.0}, max_drop=None)
    assert unlimited == [8, 4, 2]


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 4, 0, 3, 1]])
def test_fast_estimate_is_the_same_in_any_order_without_skipping(order):
    """Workers and shards measure every fine-tune zero-shot asks for, in any order; the drops assembled
    are those of the sequential run, which skipped the fine-tunes it would discard."""
    zero, tuned = {2: 30.0, 4: 12.0, 8: 5.0, 16: 0.2}, {2: 9.0, 4: 4.0, 8: 2.5, 16: 0.0}
    sequential, _ = _fast(zero, tuned)
    any_order, fine_tuned = _fast(zero, tuned, jobs_order=order)
    assert any_order == sequential and sorted(fine_tuned) == [2, 4, 8]


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


def test_refinement_steps_down_while_the_measured_drop_stays_within_budget_minus_noise():
    """refined_plan on the test table, where the measured joint drop is half the table's Σ (a pessimistic
    table): it keeps steps while measured ≤ budget − noise; after a refused step it offers that layer
    only less aggressive options."""
    from tinycomp.plan import make

    table, noise, budget = _table(), 0.1, 1.0
    measured = []

    class HalfTheTable:
        max_drop = budget
        min_agreement = None
        exhausted = False

        def measure(self, plan):
            measured.append({n: o.clusters for n, o in plan.clustered().items()})
            return JointDrop(0.5 * sum(o.drop for o in plan.choices.values()), 0, noise)

    first = choose_plan(table, Budget(max_drop=budget))
    refined = make.refined_plan(table, first, HalfTheTable(), make.Silent())
    assert refined.predicted_bytes < first.predicted_bytes and refined.stepped
    assert 0.5 * sum(o.drop for o in refined.choices.values()) <= budget - noise + 1e-9
    assert len(measured) <= make.MAX_STEPS
    for layer in table.layers:  # no cheaper option of any layer would still fit
        for o in layer.options:
            if o.bytes < refined.choices[layer.name].bytes:
                drop = 0.5 * (sum(c.drop for c in refined.choices.values()) - refined.choices[layer.name].drop
                              + o.drop)
                assert drop > budget - noise


def test_a_refused_step_offers_only_less_aggressive_options():
    from tinycomp.plan.choose import nothing_clustered, step_downs

    table = _table()
    empty = nothing_clustered(table)
    first = {s.layer: s.option.clusters for s in step_downs(table, empty)}
    assert first["b"] == 16  # the least harmful cheaper option of b (counted 0.0)
    refused = {"b": table.layers[1].option(4).bytes}
    assert {s.layer: s.option.clusters for s in step_downs(table, empty, above=refused)}["b"] == 16
    assert "b" not in {s.layer for s in step_downs(table, empty, above={"b": table.layers[1].option(16).bytes})}


@pytest.mark.parametrize("estimate", ["fast", "fine-tune"])
def test_a_fine_tune_scoring_below_zero_shot_is_not_used(estimate):
    from tinycomp.plan.candidates import ESTIMATES, Candidate, CandidateResult, assemble_drops

    results = {16: CandidateResult("a/16", zero_shot=0.95, fine_tuned=0.93),  # the fine-tune loses: zero-shot counts
               4: CandidateResult("a/4", zero_shot=0.60, fine_tuned=0.94)}
    drops = assemble_drops([4, 16], results, estimate=ESTIMATES[estimate], reference=0.95, control=0.94, limit=None)
    assert not drops[16].fine_tuned and drops[16].drop == pytest.approx(0.0)
    assert drops[4].fine_tuned and drops[4].drop == pytest.approx(0.0)  # vs the control
    # every clustered candidate is measured zero-shot, also by the fine-tune estimate
    assert ESTIMATES[estimate].still_needed(Candidate("a", 4), None, reference=0.95, noise=0.5)[0]


@pytest.mark.parametrize("refined_check, kept", [(0.3, True), (5.0, False)])
def test_refinement_starts_from_the_checked_plan_and_never_ends_larger(monkeypatch, refined_check, kept):
    """Refinement steps down from the table's plan as the full check measured it (zero-shot); the stepped
    plan is used only when its own full check is within budget, else the checked plan stands (never larger)."""
    from tinycomp.plan import make

    table, budget = _table(), Budget(max_drop=1.0)
    checked = choose_plan(table, budget)
    checked.checked_drop, checked.epochs = 0.2, 0

    class Generous:
        def __init__(self, *args, **kwargs):
            self.max_drop, self.exhausted, self.min_agreement = budget.max_drop, False, None

        def measure(self, plan):
            return JointDrop(0.0, 0, 0.01)

    class Backend:  # the core asks the backend for its step measurer
        step_measurer = Generous
        kind = "keras"

    tried = [checked]
    chosen = make._refined(Backend(), table, budget, checked, tried, lambda drop: checked,
                           lambda plan: refined_check, make.Silent(), lambda sets: [0] * len(sets), 0.1)
    assert len(tried) == 2 and tried[1].stepped and tried[1].predicted_bytes < checked.predicted_bytes
    assert chosen is (tried[1] if kept else checked)


def test_a_fine_tuned_plan_takes_no_quick_steps_only_steps_measured_as_the_check_measures():
    """A plan checked fine-tuned is not stepped by quick (subset fine-tune) measurements: every step is
    a full check, the biggest saving first (`spent_budget`)."""
    from tinycomp.plan import make

    table, budget = _table(), Budget(max_drop=1.0)
    checked = choose_plan(table, budget)
    checked.checked_drop, checked.epochs = 0.2, 2
    checked.checked_bound = _bounded(0.2, 0.3).to_json()

    class NoQuickSteps:
        def __init__(self, *args, **kwargs):
            raise AssertionError("a fine-tuned plan was given quick steps")

    class Backend:
        step_measurer = NoQuickSteps
        kind = "keras"

    checks = []

    def full_check(plan):
        checks.append(plan)
        plan.checked_bound = _bounded(0.4, 0.6).to_json()
        plan.epochs = 2
        return 0.4

    tried = [checked]
    chosen = make._refined(Backend(), table, budget, checked, tried, lambda drop: checked, full_check, make.Silent(),
                           lambda sets: [0] * len(sets), 0.1)
    assert checks and chosen is checks[-1] and chosen.predicted_bytes < checked.predicted_bytes
    assert len(checks) <= make.MAX_CHECKED_STEPS["keras"]


def test_a_budget_of_zero_is_a_budget():
    """0 == False in Python: `--max-accuracy-drop 0` once read as "not given"."""
    from tinycomp.commands.common import exactly_one_of
    from tinycomp.errors import UsageError

    exactly_one_of({"--max-accuracy-drop": 0.0, "--target-bytes": None}, what="give", where="plan", hint="h")
    with pytest.raises(UsageError):
        exactly_one_of({"--max-accuracy-drop": 0.0, "--target-bytes": 100}, what="give", where="plan", hint="h")
    with pytest.raises(UsageError):
        exactly_one_of({"--all": False, "--layer": ()}, what="give", where="plan", hint="h")



def _bounded(estimate: float, high: float, agreement_low: float | None = None):
    import math

    from tinycomp.bounds import Checked, Interval

    agreement = None if agreement_low is None else Interval(99.0, agreement_low, math.inf, 100, 2, 0.95, "lower", "%")
    return Checked(Interval(estimate, -math.inf, high, 100, 2, 0.95, "upper", "pp"), agreement)


def test_the_check_decides_on_the_upper_bound_not_the_estimate():
    """A plan whose estimate is within budget but whose bound is not is refused; the next, smaller-drop plan
    whose bound fits is used."""
    table = _table()
    bounds_of = iter([_bounded(0.2, 1.4), _bounded(0.1, 0.8)])

    def measure(plan):
        checked = next(bounds_of)
        plan.checked_bound = checked.to_json()
        return checked.drop.estimate

    chosen, tried = checked_plan(lambda drop: choose_plan(table, Budget(max_drop=drop if drop is not None else 1.0)),
                                 measure, 1.0, noise=0.05)
    assert len(tried) == 2 and chosen is tried[1]


def test_min_agreement_refuses_a_plan_whose_agreement_bound_is_below_it():
    from tinycomp.plan.decision import DECISION, Measured

    measured = Measured(0.1, 0.05, _bounded(0.1, 0.5, agreement_low=96.0))
    assert DECISION.accepts(measured, 1.0) and DECISION.accepts(measured, 1.0, 95.0)
    assert not DECISION.accepts(measured, 1.0, 97.0) and not DECISION.keeps_step(measured, 1.0, 97.0)


def test_spent_budget_takes_the_biggest_step_measured_as_the_check_measures():
    """With the bound leaving budget, the step that saves the most bytes is checked fully and kept when its
    bound fits; with no budget left, nothing is measured."""
    from tinycomp.plan import make

    table, budget = _table(), Budget(max_drop=1.0)
    plan = choose_plan(table, Budget(max_drop=0.2))
    plan.checked_drop, plan.checked_bound = 0.1, _bounded(0.1, 0.3).to_json()
    checks = []

    def full_check(candidate):
        checks.append(candidate)
        candidate.checked_bound = _bounded(0.4, 0.9).to_json()
        return 0.4

    tried: list = []
    spent = make.spent_budget(table, plan, budget, full_check, tried, 0.05)
    [step] = [s for s in make.step_downs(table, plan) if s.saved_bytes == max(x.saved_bytes for x in
                                                                               make.step_downs(table, plan))]
    assert tried == checks and len(checks) == 1 and spent is checks[0]
    assert spent.choices[step.layer] == step.option and spent.predicted_bytes < plan.predicted_bytes
    full = replace(plan, checked_bound=_bounded(0.9, 1.0).to_json())
    assert make.spent_budget(table, full, budget, full_check, [], 0.05) is full and len(checks) == 1


def test_every_accept_or_refuse_of_a_drop_goes_through_the_one_decision(monkeypatch):
    """checked_plan, refined_plan and candidate pruning ask `decision.DECISION`: a rule that refuses
    everything changes all three (the honest-plans rule replaces this one object)."""
    from tinycomp.plan import decision, make
    from tinycomp.plan.candidates import ruled_out

    table, budget = _table(), Budget(max_drop=1.0)
    asked = []

    def refuse(measured, limit, *min_agreement):
        asked.append(measured)
        return False

    def choose(max_drop):
        return choose_plan(table, Budget(max_drop=max_drop))

    class Zero:
        max_drop, exhausted, min_agreement = 1.0, False, None

        def measure(self, plan):
            return JointDrop(0.0, 0, 0.0)

    first, _ = checked_plan(choose, lambda plan: 0.0, budget.max_drop)
    assert make.refined_plan(table, first, Zero(), make.Silent()).stepped
    assert not ruled_out({4: 0.0}, 2, decision.Limit(1.0, 0.1))
    for name in ("accepts", "keeps_step", "may_fit"):
        monkeypatch.setattr(decision.DECISION, name, refuse)
    _, tried = checked_plan(choose, lambda plan: 0.0, budget.max_drop)
    assert len(tried) > 1  # refused: chosen again
    assert not make.refined_plan(table, first, Zero(), make.Silent()).stepped
    assert ruled_out({4: 0.0}, 2, decision.Limit(1.0, 0.1))
    assert len(asked) >= 3


def test_a_plan_no_check_accepts_compresses_nothing_and_names_the_least_harmful():
    """A budget is a promise: when the check's bound refuses every plan it measured, the plan compresses
    nothing, and the outcome names the measured plan with the lowest bound (what the warning shows)."""
    from tinycomp.plan import make
    from tinycomp.plan.request import PlanOutcome

    table, budget = _table(), Budget(max_drop=1.0)
    first, second = choose_plan(table, budget), choose_plan(table, Budget(max_drop=0.3))
    first.checked_drop, first.checked_bound = 0.5, _bounded(0.5, 3.0).to_json()
    second.checked_drop, second.checked_bound = 0.6, _bounded(0.6, 2.0).to_json()
    nothing = make._refused_all(table, budget.max_drop)
    assert not nothing.clustered() and nothing.predicted_bytes == table.int8_bytes
    outcome = PlanOutcome(nothing, [first, second], table, budget, 0.1)
    assert outcome.refused is second
    assert PlanOutcome(first, [first, second], table, budget, 0.1).refused is None  # a plan was accepted


def test_spent_budget_keeps_stepping_while_the_bound_allows_and_stops_when_no_step_fits():
    """With more steps allowed, each accepted step is followed by the next biggest; a refused step's layer is
    offered only larger options after it; the loop ends when no step is left or the budget is spent."""
    from tinycomp.plan import make

    table, budget = _table(), Budget(max_drop=1.0)
    plan = choose_plan(table, Budget(max_drop=0.0))
    plan.checked_drop, plan.checked_bound = 0.0, _bounded(0.0, 0.1).to_json()
    checks = []

    def full_check(candidate):  # every step adds 0.1 pp to the estimate and its bound
        checks.append(candidate)
        drop = 0.1 * len(checks)
        candidate.checked_bound = _bounded(drop, drop + 0.1).to_json()
        return drop

    spent = make.spent_budget(table, plan, budget, full_check, [], 0.05, max_steps=100)
    sizes = [plan.predicted_bytes] + [c.predicted_bytes for c in checks]
    assert len(checks) >= 2 and sizes == sorted(set(sizes), reverse=True)  # every step accepted, each smaller
    assert spent is checks[-1]
    # it ended because the bound reached the budget (the 9th step: +0.9, bound +1.0) or no step was left
    assert len(checks) == 9 or not make.step_downs(table, spent)
    checks.clear()  # a budget of 0.5 pp: the 4th step's bound (+0.5) spends it, and the loop ends there
    assert make.spent_budget(table, plan, Budget(max_drop=0.5), full_check, [], 0.05, max_steps=100) is checks[3]
    assert len(checks) == 4
    assert make.MAX_CHECKED_STEPS["tflite"] > make.MAX_CHECKED_STEPS["keras"] >= 1


def test_a_candidate_is_pruned_only_when_its_95_percent_lower_bound_is_over_the_budget():
    from tinycomp.plan.decision import DECISION, PRUNE_Z, Measured

    assert PRUNE_Z == pytest.approx(1.6449, abs=1e-4)
    assert DECISION.may_fit(Measured(1.0 + 1.6 * 0.1, 0.1), 1.0)  # 1.6 standard errors over: could still fit
    assert not DECISION.may_fit(Measured(1.0 + 1.7 * 0.1, 0.1), 1.0)


def test_a_table_calibrated_on_every_training_row_is_not_reused():
    """Tables recorded before a .tflite's calibration left the validation rows out read as calibrated on
    every row, and are refused for reuse (`palettize --spec` would not make what they measured)."""
    from tinycomp.errors import InputFileError
    from tinycomp.plan import Measurement
    from tinycomp.plan.request import CALIBRATED_ON_EVERY_ROW, CALIBRATED_OUTSIDE_VALIDATION

    current = Measurement(calibration_rows=512).to_json()
    assert current["calibration_from"] == CALIBRATED_OUTSIDE_VALIDATION
    Measurement.from_json(current).check_reusable("t.partial.json")
    older = {k: v for k, v in current.items() if k != "calibration_from"}
    assert Measurement.from_json(older).calibration_from == CALIBRATED_ON_EVERY_ROW
    with pytest.raises(InputFileError) as error:
        Measurement.from_json(older).check_reusable("t.partial.json")
    assert str(error.value) == ("its .tflite candidates were calibrated on every training row, the validation rows "
                                "among them (recorded before calibration left them out) (t.partial.json) — measure "
                                "the table again: plan without --sensitivity/--merge")
    keras = Measurement().to_json()  # no calibration: nothing recorded, nothing refused
    assert "calibration_from" not in keras
    Measurement.from_json(keras).check_reusable("k.partial.json")


def test_the_learning_rate_is_chosen_on_the_bound_not_the_score(monkeypatch):
    """The auto rate is the one whose fine-tuned control's drop has the lower 95% upper bound over the
    validation groups: a rate that scores better on average but moves some groups' rows far from the given
    model (a wider bound) is not chosen; with equal outputs the better score, then the first rate, wins."""
    import numpy as np

    from tinycomp.metrics import CLASSIFY
    from tinycomp.plan import Measurement, sensitivity
    from tinycomp.plan.measure import CandidateRows
    from tinycomp.plan.request import AUTO_LEARNING_RATES

    y = np.repeat([0, 1], 200)
    groups = np.tile(np.repeat([0, 1, 2, 3], 50), 2)
    reference = np.eye(2)[y].copy()
    reference[::5] = np.eye(2)[1 - y[::5]]  # the given model: 80% right, the same in every group
    steady = reference.copy()  # the given model's outputs: no drop
    jumpy = reference.copy()  # every row of groups 0-2 right, 40 of group 3's right rows now wrong: 85% on average
    jumpy[groups < 3] = np.eye(2)[y[groups < 3]]
    broken = np.flatnonzero((groups == 3) & (reference.argmax(1) == y))[:40]
    jumpy[broken] = np.eye(2)[1 - y[broken]]
    by_rate = {AUTO_LEARNING_RATES[0]: steady, AUTO_LEARNING_RATES[1]: jumpy}
    monkeypatch.setattr(sensitivity, "fine_tuned_outputs", lambda *a, learning_rate, **k: by_rate[learning_rate])
    rows = CandidateRows(np.zeros((4, 1)), np.zeros(4, int), np.zeros((400, 1)), y, groups)
    measurement = Measurement(epochs=2)
    score = {rate: CLASSIFY.plan_score(out, y) for rate, out in by_rate.items()}
    assert score[AUTO_LEARNING_RATES[1]] > score[AUTO_LEARNING_RATES[0]]
    rate, control = sensitivity.chosen_learning_rate(None, rows, reference, loss=None, measurement=measurement, seed=0,
                                                     task=CLASSIFY)
    assert rate == AUTO_LEARNING_RATES[0] and control.fine_tuned == score[AUTO_LEARNING_RATES[0]]
    rows = CandidateRows(rows.x_fit, rows.y_fit, rows.x_val, y, None)  # rows the unit: +5 pp on 400 rows wins
    assert sensitivity.chosen_learning_rate(None, rows, reference, loss=None, measurement=measurement, seed=0,
                                            task=CLASSIFY)[0] == AUTO_LEARNING_RATES[1]
    by_rate[AUTO_LEARNING_RATES[1]] = steady  # the same outputs: the first rate
    assert sensitivity.chosen_learning_rate(None, rows, reference, loss=None, measurement=measurement, seed=0,
                                            task=CLASSIFY)[0] == AUTO_LEARNING_RATES[0]


def test_a_plan_grown_after_the_tables_were_refused_also_spends_the_budget_its_bound_leaves(monkeypatch):
    """When the check refuses the table's plan and a plan grown from nothing is accepted with budget left
    on its bound, the biggest steps are measured as the check measures, as after an accepted table plan."""
    from tinycomp.plan import make
    from tinycomp.plan.choose import nothing_clustered, step_downs, stepped

    table, budget = _table(), Budget(max_drop=1.0)
    refused = choose_plan(table, budget)
    refused.checked_drop, refused.epochs = 2.0, 2
    refused.checked_bound = _bounded(2.0, 2.5).to_json()
    grown = nothing_clustered(table)
    grown = stepped(grown, step_downs(table, grown)[0], table.decode_overhead)
    grown.checked_drop, grown.epochs = 0.1, 0
    grown.checked_bound = _bounded(0.1, 0.3).to_json()
    monkeypatch.setattr(make, "_cheaply_rechosen_and_refined", lambda *args: (grown, [grown]))
    checks = []

    def full_check(plan):
        checks.append(plan)
        plan.checked_bound = _bounded(0.2, 0.5).to_json()
        return 0.2

    class Backend:
        kind = "keras"

    tried = [refused]
    chosen = make._refined(Backend(), table, budget, refused, tried, lambda drop: refused, full_check, make.Silent(),
                           lambda sets: [0] * len(sets), 0.1)
    assert checks and chosen is checks[-1] and chosen.predicted_bytes < grown.predicted_bytes
    assert tried[:2] == [refused, grown] and tried[2:] == checks
