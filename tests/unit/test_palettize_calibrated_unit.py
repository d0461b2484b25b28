"""Data-aware palettization without TensorFlow or TFLM: weighted exact k-means against brute force,
input moments per weight element (FC, conv with stride/dilation/padding, depthwise) against explicit
loops, and the bias correction's arithmetic (tests/e2e/test_palettize_calibrated.py runs it in TFLM)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import run_cli
from tinycomp.specs import PerChannel
from tinycomp.tflite.activations import Geometry, moments, output_size, patches
from tinycomp.tflite.calibrated import (
    channel_sums,
    corrected_bias,
    importance_of,
    output_error,
    refit_levels,
    with_error_feedback,
)
from tinycomp.tflite.kmeans import optimal_levels
from tinycomp.tflite.levels import palettize_array

# ---------------------------------------------------------------- weighted k-means


def brute_force_weighted_sse(values: np.ndarray, weights: np.ndarray, k: int) -> float:
    """The least Σ weight·(value − level)² over every set of at most k integer levels in the values'
    range, each value going to its nearest level (a positive weight does not change which is nearest)."""
    low, high = int(values.min()), int(values.max())
    best = np.inf
    for r in range(1, k + 1):
        for levels in itertools.combinations(range(low, high + 1), r):
            nearest = ((values[:, None] - np.array(levels)[None, :]) ** 2).min(axis=1)
            best = min(best, float((weights * nearest).sum()))
    return best


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-7, 7), st.floats(0.01, 100.0)), min_size=1, max_size=10),
       st.integers(1, 3))
def test_weighted_kmeans_is_the_brute_force_optimum(pairs, k):
    values = np.array([v for v, _ in pairs], dtype=np.int64)
    weights = np.array([w for _, w in pairs])
    found = optimal_levels(values, k, weights)
    mapped = found.apply(values)
    best = brute_force_weighted_sse(values, weights, k)
    assert found.sse == pytest.approx(best, rel=1e-9, abs=1e-9)
    assert float((weights * (mapped - values) ** 2).sum()) == pytest.approx(best, rel=1e-9, abs=1e-9)
    assert len(np.unique(mapped)) <= k


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-128, 127), min_size=1, max_size=200), st.integers(1, 5), st.floats(0.1, 1000.0))
def test_equal_weights_give_the_unweighted_levels(values, bits, weight):
    values = np.array(values, dtype=np.int8)
    plain = optimal_levels(values, 2 ** bits)
    weighted = optimal_levels(values, 2 ** bits, np.full(values.shape, weight))
    assert weighted.sse == pytest.approx(plain.sse * weight)
    # equally good levelings (e.g. [-1, 0, 0, 0, 0, 1] to 2 levels) may break the tie differently: the
    # weighted one is then as good unweighted
    sse = sum((int(v) - weighted.mapping[int(v)]) ** 2 for v in values)
    assert sse == pytest.approx(plain.sse)


def test_a_heavy_weight_pulls_its_runs_level_to_itself():
    values = np.array([0, 1, 2, 3, 10, 11], dtype=np.int8)
    assert optimal_levels(values, 2).apply(values).tolist() == [2, 2, 2, 2, 11, 11]
    heavy = np.array([1, 1, 1, 1000, 1, 1.0])
    assert optimal_levels(values, 2, heavy).apply(values).tolist() == [3, 3, 3, 3, 11, 11]


def test_weights_must_be_positive_and_one_per_value():
    with pytest.raises(ValueError):
        optimal_levels(np.array([1, 2, 3]), 2, np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError):
        optimal_levels(np.array([1, 2, 3]), 2, np.array([1.0, 1.0]))


def test_importance_is_positive_even_for_inputs_never_active():
    second = np.array([0.0, 4.0, 0.0, 12.0])
    importance = importance_of(second)
    assert np.all(importance > 0) and importance[3] > importance[1] > importance[0]
    assert np.all(importance_of(np.zeros(3)) == 1)


def test_palettize_array_weighs_each_channel_by_its_importance():
    rng = np.random.default_rng(0)
    array = rng.integers(-100, 100, (3, 40)).astype(np.int8)
    importance = np.ones(40)
    importance[:5] = 1e6  # five inputs that matter: at 3 bits each keeps its value where it can
    new = palettize_array(array, PerChannel(0), 2, np.broadcast_to(importance, array.shape))
    plain = palettize_array(array, PerChannel(0), 2)
    weighted_error = lambda a: float((((a.astype(float) - array) ** 2) * importance).sum())  # noqa: E731
    assert weighted_error(new) < weighted_error(plain)
    assert all(len(np.unique(row)) <= 4 for row in new)

# ---------------------------------------------------------------- input moments per weight element


def brute_force_patch_moments(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                              dilation: tuple[int, int], same: bool) -> tuple[np.ndarray, np.ndarray]:
    """E[x̃] and E[x̃²] at each kernel position [KH, KW, C] over rows and output positions, by explicit
    loops (padding reads 0), as a conv's reference kernel reads its input."""
    rows, height, width, channels = x.shape
    oh, pad_h = output_size(height, kernel[0], stride[0], dilation[0], same)
    ow, pad_w = output_size(width, kernel[1], stride[1], dilation[1], same)
    s1, s2 = np.zeros((*kernel, channels)), np.zeros((*kernel, channels))
    for n, a, b, i, j in itertools.product(range(rows), range(oh), range(ow), range(kernel[0]), range(kernel[1])):
        r, c = a * stride[0] + i * dilation[0] - pad_h, b * stride[1] + j * dilation[1] - pad_w
        if 0 <= r < height and 0 <= c < width:
            s1[i, j] += x[n, r, c]
            s2[i, j] += x[n, r, c] ** 2
    samples = rows * oh * ow
    return s1 / samples, s2 / samples


@pytest.mark.parametrize("stride,dilation,same", [((1, 1), (1, 1), False), ((1, 1), (1, 1), True),
                                                  ((2, 2), (1, 1), True), ((2, 1), (1, 2), False),
                                                  ((3, 2), (2, 1), True)])
def test_conv_moments_are_what_each_kernel_position_reads(stride, dilation, same):
    rng = np.random.default_rng(1)
    raw = rng.integers(-128, 128, (4, 7, 6, 3))  # rows of int8 inputs, zero point -5
    zero = -5
    geometry = Geometry("CONV_2D", (2, 3, 2, 3), 0, zero, None, stride, dilation, same)
    found = moments(geometry, 4, raw.sum(axis=0).astype(float), (raw.astype(float) ** 2).sum(axis=0))
    mean, second = brute_force_patch_moments(raw - zero, (3, 2), stride, dilation, same)
    assert found.mean.shape == (1, 3, 2, 3)
    np.testing.assert_allclose(found.mean[0], mean)
    np.testing.assert_allclose(found.second[0], second)


def test_depthwise_moments_follow_the_depth_multiplier():
    rng = np.random.default_rng(2)
    raw = rng.integers(-128, 128, (3, 5, 5, 2))
    geometry = Geometry("DEPTHWISE_CONV_2D", (1, 3, 3, 6), 0, 0, None, (1, 1), (1, 1), True)  # multiplier 3
    found = moments(geometry, 3, raw.sum(axis=0).astype(float), (raw.astype(float) ** 2).sum(axis=0))
    mean, second = brute_force_patch_moments(raw.astype(float), (3, 3), (1, 1), (1, 1), True)
    assert found.mean.shape == (1, 3, 3, 6)
    for o in range(6):  # output channel o reads input channel o // 3
        np.testing.assert_allclose(found.mean[0, :, :, o], mean[:, :, o // 3])
        np.testing.assert_allclose(found.second[0, :, :, o], second[:, :, o // 3])


def test_fully_connected_moments_are_per_input_feature():
    raw = np.array([[1, 2, 3], [3, 2, 1.0]])  # two rows, zero point 1
    geometry = Geometry("FULLY_CONNECTED", (4, 3), 0, 1, None)
    found = moments(geometry, 2, raw.sum(axis=0), (raw ** 2).sum(axis=0))
    np.testing.assert_allclose(found.mean, [[1, 1, 1]])
    np.testing.assert_allclose(found.second, [[2, 1, 2]])

# ---------------------------------------------------------------- bias correction


def test_bias_correction_restores_each_channels_mean_accumulator():
    """A FULLY_CONNECTED layer in integers: after palettizing and correcting the bias, each channel's mean
    accumulator Σ_j q_oj x̃_j + b_o over the rows is the int8 layer's, to within half a bias step."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 120, (50, 16)).astype(float)  # x̃ of ReLU-like inputs: all ≥ 0, mean far from 0
    w = rng.integers(-127, 128, (6, 16)).astype(np.int8)
    bias = rng.integers(-5000, 5000, 6).astype(np.int32)
    new = palettize_array(w, PerChannel(0), 2)
    shift = channel_sums(w, x.mean(axis=0)[None, :], 0) - channel_sums(new, x.mean(axis=0)[None, :], 0)
    fixed = corrected_bias(bias, shift, np.ones(6))
    before = (x @ w.T.astype(float) + bias).mean(axis=0)
    uncorrected = (x @ new.T.astype(float) + bias).mean(axis=0)
    after = (x @ new.T.astype(float) + fixed).mean(axis=0)
    assert np.all(np.abs(after - before) <= 0.5)
    assert np.abs(uncorrected - before).max() > 10  # the correction did something here


def test_bias_correction_converts_to_the_bias_steps_rounds_and_clips():
    bias = np.array([10, -10, 2**31 - 3], dtype=np.int32)
    fixed = corrected_bias(bias, np.array([2.4, 2.6, 100.0]), np.array([1.0, 2.0, 1.0]))
    assert fixed.dtype == np.int32
    assert fixed.tolist() == [12, -5, 2**31 - 1]  # 10 + 2.4 → 12; −10 + 5.2 → −5; clipped to int32


def test_channel_sums_run_along_the_output_axis():
    w = np.arange(2 * 3 * 4).reshape(1, 2, 3, 4)  # a depthwise kernel: output channels on axis 3
    inputs = np.ones((1, 2, 3, 4))
    np.testing.assert_allclose(channel_sums(w, inputs, 3), w.reshape(-1, 4).sum(axis=0))


@pytest.mark.parametrize("stride,dilation,same", [((1, 1), (1, 1), False), ((2, 2), (1, 1), True),
                                                  ((3, 2), (2, 1), True)])
def test_conv_patches_are_what_each_output_position_reads(stride, dilation, same):
    """Σ over rows of PᵀP from `patches` equals the explicit per-position products (and its diagonal
    the second moments `moments` gives)."""
    rng = np.random.default_rng(4)
    x = rng.integers(-20, 20, (7, 6, 2)).astype(float)
    geometry = Geometry("CONV_2D", (3, 3, 2, 2), 0, 0, None, stride, dilation, same)
    p = patches(x, geometry)
    oh, pad_h = output_size(7, 3, stride[0], dilation[0], same)
    ow, pad_w = output_size(6, 2, stride[1], dilation[1], same)
    assert p.shape == (oh * ow, 3 * 2 * 2)
    for a, b in itertools.product(range(oh), range(ow)):
        expected = np.zeros((3, 2, 2))
        for i, j in itertools.product(range(3), range(2)):
            r, c = a * stride[0] + i * dilation[0] - pad_h, b * stride[1] + j * dilation[1] - pad_w
            if 0 <= r < 7 and 0 <= c < 6:
                expected[i, j] = x[r, c]
        np.testing.assert_allclose(p[a * ow + b], expected.ravel())
    found = moments(geometry, 1, x, x * x)
    np.testing.assert_allclose(np.diag(p.T @ p) / found.samples, found.second.ravel())


def test_error_feedback_keeps_the_levels_and_lowers_the_output_error():
    """GPTQ-style rounding to each channel's levels: every value stays one of its channel's levels, and on
    correlated inputs the output error E‖(W − Q) x‖² is below rounding each weight to its nearest level."""
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(400, 64)) @ rng.normal(size=(64, 64)) * 0.3 + rng.normal(size=(400, 64)))
    hessian = x.T @ x / len(x)
    w = np.clip(rng.normal(0, 40, (16, 64)), -127, 127).astype(np.int8)
    error = lambda q: float(np.mean(((w.astype(float) - q) @ x.T) ** 2))  # noqa: E731
    for bits in (3, 5):
        nearest = palettize_array(w, PerChannel(0), bits)
        fed = with_error_feedback(w, nearest, hessian, PerChannel(0))
        assert fed.dtype == np.int8
        for row, levels in zip(fed, nearest):
            assert set(np.unique(row)) <= set(np.unique(levels))
        assert error(fed) < error(nearest)


def test_error_feedback_on_uncorrelated_inputs_is_nearest_rounding():
    rng = np.random.default_rng(1)
    w = rng.integers(-127, 128, (4, 30)).astype(np.int8)
    nearest = palettize_array(w, PerChannel(0), 2)
    fed = with_error_feedback(w, nearest, np.eye(30) * 7.0, PerChannel(0))
    squared = lambda q: float(((w.astype(float) - q) ** 2).sum())  # noqa: E731
    assert squared(fed) == squared(nearest)


@pytest.mark.parametrize("args,line", [
    (["--calibration-rows", "10"], "Error: --calibration-rows goes with data (--calibration-rows) — give --data or "
                                   "--dataset too, or drop it"),
    (["--jobs", "2"], "Error: --jobs goes with data (--jobs) — give --data or --dataset too, or drop it"),
    (["--input-scale", "2"], "Error: --input-scale goes with data (--input-scale) — give --data or --dataset too"),
])
def test_calibration_options_without_data_are_one_line(tmp_path, args, line):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"not read")
    result = run_cli(["palettize", model, "--bits", "3", *args, "-o", tmp_path / "p.tflite"])
    assert result.exit_code != 0
    assert result.output.splitlines()[-1] == line


def test_refit_levels_keeps_the_assignment_and_lowers_the_output_error():
    """Least-squares levels of a fixed assignment: each channel keeps its grouping of weights (one level
    per group), stays int8, and its output error under the input moments is no higher (before
    rounding it is the least-squares optimum; the levels here are far apart, so rounding costs less
    than the fit gains)."""
    rng = np.random.default_rng(6)
    x = np.abs(rng.normal(size=(400, 24)) @ rng.normal(size=(24, 24)) * 0.3 + rng.normal(size=(400, 24)))
    hessian = x.T @ x / len(x)
    w = np.clip(rng.normal(0, 40, (6, 24)), -127, 127).astype(np.int8)
    assigned = with_error_feedback(w, palettize_array(w, PerChannel(0), 2), hessian, PerChannel(0))
    refit = refit_levels(w, assigned, hessian)
    assert refit.dtype == np.int8 and refit.min() >= -127
    for before, after in zip(assigned, refit):
        _, groups = np.unique(before, return_inverse=True)
        for g in np.unique(groups):  # one level per group of weights that shared one
            assert len(np.unique(after[groups == g])) == 1
    assert output_error(w, refit, hessian) <= output_error(w, assigned, hessian)
    assert output_error(w, w, hessian) == 0


def test_error_feedback_stays_within_its_memory_bounds():
    """K×K matrices and one row's input vectors are bounded: a small file cannot make them unbounded."""
    from types import SimpleNamespace

    from tinycomp.tflite.activations import Geometry
    from tinycomp.tflite.calibrated import feedback_geometries
    from tinycomp.tflite.levels import Calibration

    probe = SimpleNamespace(tensors={0: SimpleNamespace(shape=(1, 30000)), 1: SimpleNamespace(shape=(1, 64)),
                                     2: SimpleNamespace(shape=(1, 224, 224, 64)), 3: SimpleNamespace(shape=(1, 8, 8, 64))})
    geometries = [Geometry("FULLY_CONNECTED", (10, 30000), 0, 0, None),  # a 300 KB weight: a 7.2 GB matrix
                  Geometry("FULLY_CONNECTED", (10, 64), 1, 0, None),
                  Geometry("CONV_2D", (8, 3, 3, 64), 2, 0, None),  # 231 MB of input vectors per row
                  Geometry("CONV_2D", (8, 3, 3, 64), 3, 0, None),
                  Geometry("DEPTHWISE_CONV_2D", (1, 3, 3, 64), 3, 0, None)]
    chosen = feedback_geometries(probe, geometries, Calibration(np.zeros((1, 1))))  # type: ignore[arg-type]
    assert [g is not None for g in chosen] == [False, True, False, True, False]
    off = feedback_geometries(probe, geometries, Calibration(np.zeros((1, 1)), error_feedback=False))  # type: ignore[arg-type]
    assert off == (None,) * 5


# ---------------------------------------------------------------- which training rows calibrate

def _data(groups=None, x_val: bool = False):
    from tinycomp.data import Dataset

    x, y = np.arange(60, dtype=np.float32).reshape(60, 1), np.arange(60) % 3
    return Dataset("d.npz", x, y, x[:6], y[:6], groups_train=groups,
                   x_val=x[:5] if x_val else None, y_val=y[:5] if x_val else None)


@pytest.mark.parametrize("groups", [np.repeat(np.arange(6), 10), np.tile(np.array(["ann", "bo", "cy", "di"]), 15)])
def test_a_plans_calibration_rows_never_come_from_its_held_out_groups(groups):
    """The plan's exclusion, written to the spec and read back, leaves exactly the fit rows (whichever ids)."""
    from tinycomp.specs import PalettizationSpec, dump_palettization_spec, parse_palettization_spec
    from tinycomp.tflite.calibrated import calibration_exclusion, calibration_pool, calibration_rows

    data = _data(groups)
    split = data.validation_split(0.4, seed=1)
    exclusion = calibration_exclusion(split.source)
    assert exclusion is not None and exclusion.exclude_groups == split.source.held_out and exclusion.training_rows == 60
    spec = parse_palettization_spec(dump_palettization_spec(PalettizationSpec((), calibration=exclusion)))
    assert spec.calibration == exclusion
    pool = calibration_pool(data, spec.calibration, "spec")
    assert np.array_equal(pool, split.fit)
    rows = calibration_rows(60, 20, 0, pool)
    assert len(rows) == 20 and np.all(np.diff(rows) > 0) and not np.isin(rows, split.val).any()
    assert np.array_equal(calibration_rows(60, 512, 0, pool), split.fit)  # fewer rows than asked: all of them


def test_without_groups_the_validation_tail_never_calibrates():
    from tinycomp.tflite.calibrated import calibration_exclusion, calibration_pool, calibration_rows

    data = _data()
    split = data.validation_split(0.2)
    exclusion = calibration_exclusion(split.source)
    assert exclusion is not None and (exclusion.training_rows, exclusion.exclude_last_rows) == (60, 12)
    pool = calibration_pool(data, exclusion, "spec")
    assert np.array_equal(pool, np.arange(48)) and np.array_equal(pool, split.fit)
    assert calibration_rows(60, 30, 5, pool).max() < 48


def test_a_given_validation_set_leaves_every_training_row_to_calibrate_as_before():
    from tinycomp.tflite.calibrated import calibration_exclusion, calibration_rows

    data = _data(np.repeat(np.arange(6), 10), x_val=True)
    assert calibration_exclusion(data.validation_split(0.2).source) is None
    for total, seed in ((60, 0), (600, 3), (6336, 0)):  # the draw every earlier palettize --data made
        before = np.sort(np.random.default_rng(seed).choice(total, size=min(512, total), replace=False))
        assert np.array_equal(calibration_rows(total, 512, seed), before)
        assert np.array_equal(calibration_rows(total, 512, seed, np.arange(total)), before)


@pytest.mark.parametrize("groups, exclusion, message", [
    (None, dict(training_rows=60, exclude_groups=("1", "4")),
     "the spec's calibration excludes held-out groups 1, 4 of groups_train, but d.npz has no groups_train "
     "(p.yaml: calibration.exclude_groups) — give palettize the same --data/--dataset as plan"),
    (np.repeat(np.arange(6), 10), dict(training_rows=60, exclude_groups=("1", "7")),
     "d.npz's groups_train has no group '7' (p.yaml: calibration.exclude_groups) — give palettize the same "
     "--data/--dataset as plan"),
    (np.repeat(np.arange(6), 10), dict(training_rows=600, exclude_groups=("1",)),
     "d.npz has 60 training rows, but the spec's calibration excludes held-out group 1 of groups_train "
     "(p.yaml: calibration.training_rows) — give palettize the same --data/--dataset as plan"),
    (None, dict(training_rows=50, exclude_last_rows=10),
     "d.npz has 60 training rows, but the spec's calibration excludes the last 10 of the 50 training rows "
     "(p.yaml: calibration.training_rows) — give palettize the same --data/--dataset as plan"),
    (np.zeros(60, int), dict(training_rows=60, exclude_groups=("0",)),
     "the spec's calibration excludes every training row of d.npz (p.yaml: calibration.exclude_groups) — give "
     "palettize the same --data/--dataset as plan"),
])
def test_a_spec_for_other_data_is_refused(groups, exclusion, message):
    from tinycomp.errors import DataError
    from tinycomp.specs import CalibrationExclusion
    from tinycomp.tflite.calibrated import calibration_pool

    with pytest.raises(DataError) as error:
        calibration_pool(_data(groups), CalibrationExclusion(**exclusion), "p.yaml")
    assert str(error.value) == message


def test_palettize_refuses_a_spec_whose_held_out_groups_the_data_lacks(tmp_path):
    model, spec, data = tmp_path / "m.tflite", tmp_path / "plan.yaml", tmp_path / "d.npz"
    model.write_bytes(b"not read: the data is checked first")
    spec.write_text("calibration:\n  training_rows: 60\n  exclude_groups: [1, 4]\ntensors:\n"
                    "  - {subgraph: 0, tensor: 7, bits: 3}\n")
    x = np.zeros((60, 4), np.float32)
    np.savez(data, x_train=x, y_train=np.zeros(60, int), x_test=x[:5], y_test=np.zeros(5, int))
    result = run_cli(["palettize", model, "--spec", spec, "--data", data, "-o", tmp_path / "p.tflite"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: the spec's calibration excludes held-out groups 1, 4 of groups_train, but d.npz has no groups_train "
        f"({spec}: calibration.exclude_groups) — give palettize the same --data/--dataset as plan")


def test_palettize_refuses_a_calibrated_plans_spec_without_data(tmp_path):
    """A plan that calibrated writes `calibration:`; without data palettize would make another file."""
    model, spec = tmp_path / "m.tflite", tmp_path / "plan.yaml"
    model.write_bytes(b"not read: the options are checked first")
    spec.write_text("calibration:\n  training_rows: 60\n  exclude_last_rows: 12\ntensors:\n"
                    "  - {subgraph: 0, tensor: 7, bits: 3}\n")
    result = run_cli(["palettize", model, "--spec", spec, "-o", tmp_path / "p.tflite"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: the spec's plan palettized with calibration on data (its `calibration:` key), so without data "
        f"palettize would not make the file the plan measured ({spec}: calibration) — give the --data/--dataset "
        "given to plan")
