"""palettize without TensorFlow: exact 1-D k-means against brute force, value tables per channel, the
palettization spec and the command's usage errors (tests/e2e/test_palettize.py palettizes real files)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import run_cli
from tinycomp.errors import SpecError
from tinycomp.metrics import CLASSIFY
from tinycomp.specs import (
    CalibrationExclusion,
    PalettizationSpec,
    PerChannel,
    PerTensor,
    TensorBits,
    dump_palettization_spec,
    parse_palettization_spec,
)
from tinycomp.tflite.kmeans import optimal_levels
from tinycomp.tflite.levels import palettize_array

# ---------------------------------------------------------------- k-means

def brute_force_sse(values: np.ndarray, k: int) -> int:
    """The least squared error over every set of at most k integer levels in the values' range,
    each value going to its nearest level: independent of the DP's contiguity argument."""
    low, high = int(values.min()), int(values.max())
    best = None
    for r in range(1, k + 1):
        for levels in itertools.combinations(range(low, high + 1), r):
            error = int(((values[:, None] - np.array(levels)[None, :]) ** 2).min(axis=1).sum())
            best = error if best is None else min(best, error)
    assert best is not None
    return best


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-7, 7), min_size=1, max_size=12), st.integers(1, 3))
def test_kmeans_is_the_brute_force_optimum(values, k):
    values = np.array(values, dtype=np.int64)
    found = optimal_levels(values, k)
    mapped = found.apply(values)
    assert found.sse == brute_force_sse(values, k)
    assert int(((mapped - values) ** 2).sum()) == found.sse
    assert len(np.unique(mapped)) <= k
    assert set(np.unique(mapped)) <= set(found.levels.tolist())


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-128, 127), min_size=1, max_size=300), st.integers(1, 7))
def test_kmeans_keeps_int8_and_is_deterministic(values, bits):
    values = np.array(values, dtype=np.int8)
    first, second = optimal_levels(values, 2 ** bits), optimal_levels(values[::-1].copy(), 2 ** bits)
    mapped = first.apply(values)
    assert mapped.dtype == np.int8
    assert np.array_equal(first.levels, second.levels)
    assert len(np.unique(mapped)) <= min(2 ** bits, len(np.unique(values)))
    if len(np.unique(values)) <= 2 ** bits:
        assert np.array_equal(mapped, values) and first.sse == 0


def test_kmeans_more_levels_never_worse():
    values = np.random.default_rng(0).normal(0, 30, 500).round().clip(-127, 127).astype(np.int8)
    errors = [optimal_levels(values, k).sse for k in range(1, 40)]
    assert all(a >= b for a, b in zip(errors, errors[1:]))
    assert errors[0] > errors[-1]


def test_palettize_array_clusters_each_channel_on_its_axis():
    rng = np.random.default_rng(1)
    kernel = rng.integers(-127, 128, size=(1, 3, 3, 6)).astype(np.int8)  # a depthwise kernel, channels last
    out = palettize_array(kernel, PerChannel(3), 2)
    assert out.shape == kernel.shape and out.dtype == np.int8
    for c in range(6):
        assert len(np.unique(out[..., c])) <= 4
        assert np.array_equal(out[..., c], optimal_levels(kernel[..., c], 4).apply(kernel[..., c]))
    whole = palettize_array(kernel, PerTensor(), 2)
    assert len(np.unique(whole)) <= 4


# ---------------------------------------------------------------- the spec

def test_palettization_spec_round_trips():
    spec = PalettizationSpec((TensorBits(0, 7, 3, "a/dense/MatMul", label="dense: 3 bits"), TensorBits(0, 9, 2)))
    text = dump_palettization_spec(spec, "a header\nover two lines")
    assert parse_palettization_spec(text) == spec
    assert text.startswith("# a header\n# over two lines\ntensors:\n")


def test_palettization_spec_carries_the_plans_decode_budget():
    spec = PalettizationSpec((TensorBits(0, 7, 3),), decode_budget=25600)
    text = dump_palettization_spec(spec)
    assert text.startswith("decode_budget: 25600\ntensors:\n") and parse_palettization_spec(text) == spec


@pytest.mark.parametrize("exclusion", [CalibrationExclusion(6336, exclude_groups=("3", "5", "subject 7", "true")),
                                       CalibrationExclusion(600, exclude_last_rows=120)])
def test_palettization_spec_carries_what_calibration_excludes(exclusion):
    spec = PalettizationSpec((TensorBits(0, 7, 3),), calibration=exclusion)
    text = dump_palettization_spec(spec, "a plan")
    assert parse_palettization_spec(text) == spec
    assert "\n# calibration: `palettize --data` draws its calibration rows only from training rows the plan did not " \
           f"validate on:\n# not from {exclusion.describe()}." in text
    assert "calibration:" not in dump_palettization_spec(PalettizationSpec((TensorBits(0, 7, 3),)))  # as before


def test_a_plan_that_found_nothing_writes_a_spec_with_no_tensors():
    spec = PalettizationSpec(())
    text = dump_palettization_spec(spec, "nothing within the budget")
    assert text.endswith("tensors: []\n") and parse_palettization_spec(text) == spec


@pytest.mark.parametrize("text, message", [
    ("tensors:\n", "no tensors listed (spec: tensors) — list at least one tensor (`tensors: []` palettizes none), or "
                   "run `tinycomp plan MODEL.tflite`"),
    ("tensors:\n  - subgraph: 0\n    tensor: 7\n    bits: 8\n",
     "8 is out of range (spec: tensors[0].bits) — use a value in 1–7"),
    ("tensors:\n  - subgraph: 0\n    tensor: 7\n    bits: 3\n    clusters: 8\n",
     "unknown key 'clusters' (spec: tensors[0].clusters) — allowed keys here: subgraph, tensor, bits, name"),
    ("decode_budget: 0\ntensors:\n  - {subgraph: 0, tensor: 7, bits: 3}\n",
     "0 is out of range (spec: decode_budget) — use a value >= 1"),
    ("tensors:\n  - subgraph: 0\n    tensor: 7\n    compression:\n      - lut:\n          index_bitwidth: 3\n",
     "this is a compression spec (for `tinycomp compress`), not a palettization spec (spec: tensors[0].compression)"
     " — give palettize the spec `tinycomp plan MODEL.tflite` writes: subgraph, tensor and bits per tensor"),
    ("tensors:\n  - {subgraph: 0, tensor: 7, bits: 3}\n  - {subgraph: 0, tensor: 7, bits: 2}\n",
     "tensor (subgraph, index) (0, 7) is listed twice (spec: tensors[1]) — list each tensor (subgraph, index) once"),
    ("calibration:\n  training_rows: 600\ntensors: []\n",
     "give exactly one of exclude_groups or exclude_last_rows (spec: calibration) — exclude_groups: the held-out "
     "groups_train ids; exclude_last_rows: how many of the last training rows were held out"),
    ("calibration: {training_rows: 600, exclude_last_rows: 10, exclude_groups: [1]}\ntensors: []\n",
     "give exactly one of exclude_groups or exclude_last_rows (spec: calibration) — exclude_groups: the held-out "
     "groups_train ids; exclude_last_rows: how many of the last training rows were held out"),
    ("calibration: {exclude_last_rows: 10}\ntensors: []\n",
     "missing key 'training_rows' (spec: calibration) — add `training_rows:`"),
    ("calibration: {training_rows: 600, groups: [1]}\ntensors: []\n",
     "unknown key 'groups' (spec: calibration.groups) — allowed keys here: training_rows, exclude_groups, "
     "exclude_last_rows"),
    ("calibration: {training_rows: 600, exclude_last_rows: 600}\ntensors: []\n",
     "600 is out of range (spec: calibration.exclude_last_rows) — use a value in 1–599"),
    ("calibration: {training_rows: 600.5, exclude_last_rows: 6}\ntensors: []\n",
     "expected an integer, got float 600.5 (spec: calibration.training_rows)"),
    ("calibration: {training_rows: 600, exclude_groups: []}\ntensors: []\n",
     "no groups listed (spec: calibration.exclude_groups) — list the held-out groups_train ids"),
    ("calibration: {training_rows: 600, exclude_groups: 3}\ntensors: []\n",
     "expected a list, got int 3 (spec: calibration.exclude_groups)"),
    ("calibration: {training_rows: 600, exclude_groups: [3, 2.5]}\ntensors: []\n",
     "expected a group id (an integer or a non-empty string), got float 2.5 (spec: calibration.exclude_groups[1])"),
    ("calibration: {training_rows: 600, exclude_groups: [3, \"3\"]}\ntensors: []\n",
     "group 3 is listed twice (spec: calibration.exclude_groups[1]) — list each group once"),
])
def test_palettization_spec_errors_name_the_key(text, message):
    with pytest.raises(SpecError) as error:
        parse_palettization_spec(text, "spec")
    assert str(error.value) == message


@pytest.mark.parametrize("args, line", [
    (["palettize", "m.tflite", "-o", "o.tflite"],
     "Error: give exactly one of --bits or --spec (palettize) — e.g. --bits 3, or --spec PLAN.yaml from "
     "`tinycomp plan MODEL.tflite`"),
    (["palettize", "m.tflite", "-o", "o.tflite", "--bits", "3", "--spec", "p.yaml"],
     "Error: give exactly one of --bits or --spec (palettize) — e.g. --bits 3, or --spec PLAN.yaml from "
     "`tinycomp plan MODEL.tflite`"),
    (["palettize", "m.tflite", "-o", "o.tflite", "--spec", "p.yaml", "--tensor", "dense"],
     "Error: --tensor goes with --bits; the spec names its tensors itself (--tensor) — drop --tensor, or list the "
     "tensors in the spec"),
    (["palettize", "m.tflite", "-o", "o.tflite", "--spec", "p.yaml", "--strip"],
     "Error: --strip goes with --bits; with --spec the plan chose its tensors (`plan --strip` for stripped bytes) "
     "(--strip) — drop --strip"),
    (["palettize", "m.tflite", "-o", "out.bin", "--bits", "3"],
     "Error: the output 'out.bin' is not a .tflite file name (-o/--output) — e.g. -o build/palettized.tflite (the "
     "compression spec goes next to it as .yaml)"),
    (["palettize", "m.tflite", "-o", "o.tflite", "--bits", "8"],
     "Error: Invalid value for '--bits': 8 is not in the range 1<=x<=7 (tinycomp palettize) — see "
     "'tinycomp palettize --help'"),
])
def test_palettize_usage_errors_are_one_line(args, line):
    result = run_cli(args)
    assert result.exit_code == 2
    assert result.output.splitlines() == [line]


# ---------------------------------------------------------------- plan's adaptive schedule

def _schedule(bits: list[int], max_drop: float | None):
    from tinycomp.plan.candidates import CandidateResult
    from tinycomp.plan.tflite_palettes import tflite_candidates
    from tinycomp.plan.tflite_schedule import Schedule

    results: dict[str, CandidateResult] = {}
    return Schedule(tflite_candidates({"dense": bits}), results, task=CLASSIFY, rows=10 ** 6,
                    max_drop=max_drop), results


def _measure(schedule, results, accuracy: dict[str, float]) -> list[str]:
    """Release and 'measure' candidates until the schedule stops; the keys in the order released."""
    from tinycomp.plan.candidates import CandidateResult

    order = []
    while True:
        ready = schedule.ready()
        if not ready:
            return order
        for c in ready:
            order.append(c.key)
            results[c.key] = CandidateResult(c.key, zero_shot=accuracy[c.key])


def test_schedule_goes_down_from_4_bits_until_a_drop_is_beyond_the_budget():
    schedule, results = _schedule([2, 3, 4, 5, 6], max_drop=0.5)
    accuracy = {"control": 0.9, "dense/16": 0.9, "dense/8": 0.89, "dense/4": 0.5, "dense/32": 0.9, "dense/64": 0.9}
    order = _measure(schedule, results, accuracy)
    assert order == ["control", "dense/16", "dense/8"]  # 3 bits is 1 pp down: 2 bits cannot be chosen


def test_schedule_goes_up_while_the_drop_is_above_zero():
    schedule, results = _schedule([2, 3, 4, 5, 6], max_drop=5.0)
    accuracy = {"control": 0.9, "dense/16": 0.89, "dense/32": 0.9, "dense/64": 0.9, "dense/8": 0.88, "dense/4": 0.87}
    # 5 bits: no drop, so 6 bits (more bytes) cannot be better; all fewer bits are within the budget
    assert sorted(_measure(schedule, results, accuracy)) == ["control", "dense/16", "dense/32", "dense/4", "dense/8"]


def test_schedule_measures_everything_without_a_drop_budget():
    schedule, results = _schedule([2, 3, 4, 5, 6], max_drop=None)
    accuracy = {"control": 0.9, **{f"dense/{2 ** b}": 0.1 for b in range(2, 7)}}
    assert sorted(_measure(schedule, results, accuracy)) == sorted(accuracy)


def _probing(bits: list[int], accuracy: dict[str, float], hopeless: bool) -> tuple[list[str], list[str]]:
    """(probed keys, keys measured in full, in release order) of a probing schedule at a 0.5 pp budget."""
    from tinycomp.plan.candidates import CandidateResult
    from tinycomp.plan.tflite_palettes import tflite_candidates
    from tinycomp.plan.tflite_schedule import Schedule

    results: dict[str, CandidateResult] = {}
    schedule = Schedule(tflite_candidates({"dense": bits}), results, task=CLASSIFY, rows=10 ** 6, max_drop=0.5,
                        probe=True)
    probed, order = [], []
    while True:
        probes, ready = schedule.probes(), schedule.ready()
        if not probes and not ready:
            return probed, order
        for c in probes:
            probed.append(c.key)
            schedule.probed("dense", hopeless)
        for c in ready:
            order.append(c.key)
            results[c.key] = CandidateResult(c.key, zero_shot=accuracy[c.key])


def test_a_harmless_fewest_bits_probe_leaves_every_other_bitwidth_unmeasured():
    accuracy = {"control": 0.9, "dense/4": 0.9, "dense/8": 0.8, "dense/16": 0.8, "dense/32": 0.9}
    assert _probing([2, 3, 4, 5], accuracy, hopeless=False) == (["dense/4"], ["control", "dense/4"])


def test_a_fewest_bits_probe_with_a_drop_goes_on_from_the_pivot():
    accuracy = {"control": 0.9, "dense/4": 0.899, "dense/8": 0.9, "dense/16": 0.9, "dense/32": 0.9}
    probed, order = _probing([2, 3, 4, 5], accuracy, hopeless=False)
    assert probed == ["dense/4"] and order == ["control", "dense/4", "dense/16", "dense/8"]  # 4 bits: no drop


def test_a_hopeless_probe_falls_back_to_the_schedule_from_the_pivot():
    accuracy = {"control": 0.9, "dense/4": 0.5, "dense/8": 0.89, "dense/16": 0.9, "dense/32": 0.9}
    probed, order = _probing([2, 3, 4, 5], accuracy, hopeless=True)
    assert probed == ["dense/4"] and order == ["control", "dense/16", "dense/8"]  # 3 bits is 1 pp down
    accuracy["dense/8"] = 0.9
    assert _probing([2, 3, 4, 5], accuracy, hopeless=True)[1] == ["control", "dense/16", "dense/8", "dense/4"]


def test_a_probe_is_hopeless_only_when_its_lower_bound_is_beyond_the_limit():
    import numpy as np

    from tinycomp.plan.decision import Limit
    from tinycomp.plan.tflite_rows import PlanRows
    from tinycomp.plan.tflite_schedule import joined, surely_beyond
    from tinycomp.tflm import RowOutputs

    y = np.arange(400) % 4
    reference = np.eye(4)[y]
    rows = PlanRows(np.zeros((400, 1)), y, np.zeros((400, 1)), y, CLASSIFY)
    wrong = reference.copy()
    wrong[:8] = np.eye(4)[(y[:8] + 1) % 4]  # 8 of the first 100 rows lost: 8 pp, lower bound above 2 pp
    assert surely_beyond(rows, reference, wrong[:100], Limit(0.5, 0.1))
    assert not surely_beyond(rows, reference, wrong[:100], Limit(10.0, 0.1))
    assert not surely_beyond(rows, reference, reference[:100], Limit(0.5, 0.1))
    assert not surely_beyond(rows, reference, wrong[:100], None)
    both = joined(RowOutputs(wrong[:100], (y[:100],)), RowOutputs(wrong[100:], (y[100:],)))
    assert np.array_equal(both.outputs, wrong) and np.array_equal(both.extra[0], y)
