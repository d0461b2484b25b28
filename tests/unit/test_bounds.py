"""Paired confidence bounds (tinycomp.bounds) against brute force and known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinycomp import bounds


def one_hot_outputs(classes: np.ndarray, count: int = 3) -> np.ndarray:
    return np.eye(count)[classes]


def test_constant_differences_have_no_width_over_rows_and_groups():
    d = np.full(50, 2.0)
    by_rows = bounds.mean_difference(d)
    by_groups = bounds.mean_difference(d, np.repeat(np.arange(5), 10))
    assert (by_rows.estimate, by_rows.high) == (2.0, 2.0)
    assert by_groups.estimate == pytest.approx(2.0) and by_groups.high == pytest.approx(2.0)
    assert by_groups.groups == 5 and by_groups.rows == 50


def test_rows_bound_is_the_normal_bound_of_the_paired_mean():
    rng = np.random.default_rng(1)
    d = rng.normal(0.3, 2.0, 400)
    got = bounds.mean_difference(d, confidence=0.95)
    expected = d.mean() + 1.6448536 * d.std(ddof=1) / math.sqrt(len(d))
    assert got.high == pytest.approx(expected, rel=1e-6)
    assert got.low == -math.inf


def test_accuracy_drop_counts_rows_lost_and_gained():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    reference = one_hot_outputs(labels)  # all right
    new = labels.copy()
    new[:2] = (new[:2] + 1) % 3  # two rows lost
    drop = bounds.accuracy_drop(labels, reference, one_hot_outputs(new))
    assert drop.estimate == pytest.approx(25.0)
    assert drop.high > drop.estimate


def test_no_row_changed_is_not_a_bound_of_zero():
    """611 rows, every prediction the same: the normal bound is degenerate (+0.00); Wilson's bound on the
    rows that changed is not (z²/(n+z²) ≈ 0.44 pp at 95% one-sided)."""
    labels = np.arange(611) % 3
    outputs = np.eye(3)[labels]
    drop = bounds.accuracy_drop(labels, outputs, outputs)
    z = 1.6448536269514722
    assert drop.estimate == 0.0 and drop.high == pytest.approx(100 * z * z / (611 + z * z))
    two = bounds.accuracy_drop(labels, outputs, outputs, sided="two")
    assert two.low == pytest.approx(-two.high) and two.high > 0
    grouped = bounds.accuracy_drop(labels, outputs, outputs, np.arange(611) % 2)
    assert grouped.high == pytest.approx(drop.high) and grouped.groups == 2


def test_the_floor_leaves_a_wide_normal_bound_alone():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    reference, noisy = (np.eye(2)[np.where(rng.random(2000) < 0.2, 1 - labels, labels)] for _ in range(2))
    d = 100.0 * ((reference.argmax(1) == labels).astype(float) - (noisy.argmax(1) == labels))
    normal = bounds.mean_difference(d)  # rows lost and gained both many: the normal bound is the wider
    assert bounds.accuracy_drop(labels, reference, noisy).high == normal.high


def test_single_group_cannot_bound_and_says_two_groups_would():
    d = np.linspace(-1, 1, 30)
    one = bounds.mean_difference(d, np.zeros(30, int))
    assert one.groups == 1 and one.high == math.inf
    assert one.units_needed(1.0) == bounds.MIN_GROUPS


def test_student_t_matches_known_quantiles():
    # tables of Student's t (one-sided 95% and 97.5%)
    for probability, df, expected in [(0.95, 1, 6.3138), (0.95, 2, 2.9200), (0.95, 3, 2.3534), (0.95, 5, 2.0150),
                                      (0.975, 10, 2.2281), (0.95, 30, 1.6973), (0.975, 4, 2.7764)]:
        assert bounds.student_t(probability, df) == pytest.approx(expected, abs=2e-4)


def test_group_bound_is_cluster_robust_t():
    """Brute force: the CR1 standard error of a mean over equal groups is the standard error of the group means."""
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(4), 25)
    d = np.repeat(np.array([1.0, -2.0, 4.0, 0.5]), 25) + rng.normal(0, 0.1, 100)
    means = np.array([d[groups == g].mean() for g in range(4)])
    expected = d.mean() + 2.3534 * means.std(ddof=1) / 2
    assert bounds.mean_difference(d, groups).high == pytest.approx(expected, rel=1e-3)


def test_two_agreeing_groups_are_no_surer_than_their_rows():
    """Two groups with the same drop: no variation between them, so the bound is the rows' bound."""
    d = np.tile(np.r_[np.full(3, 100.0), np.zeros(97)], 2)
    by_groups = bounds.mean_difference(d, np.repeat([0, 1], 100))
    assert by_groups.high == pytest.approx(bounds.mean_difference(d).high)
    assert by_groups.high > by_groups.estimate


def test_group_bound_is_wider_than_rows_when_groups_differ():
    groups = np.repeat(np.arange(6), 50)
    d = np.repeat(np.array([-2.0, 3.0, 0.0, 4.0, -1.0, 2.0]), 50) + np.random.default_rng(0).normal(0, 0.1, 300)
    assert bounds.mean_difference(d, groups).high - d.mean() > 3 * (bounds.mean_difference(d).high - d.mean())


def test_group_bound_covers_the_true_mean_with_few_and_many_groups():
    """Brute force: 300 draws of G groups whose means vary; the 95% upper bound covers ≥ 92%."""
    rng = np.random.default_rng(11)
    for count in (3, 20):
        covered = 0
        for _ in range(300):
            group_means = rng.normal(1.0, 2.0, count)
            groups = np.repeat(np.arange(count), 15)
            d = np.repeat(group_means, 15) + rng.normal(0, 1.0, len(groups))
            covered += bounds.mean_difference(d, groups).high >= 1.0
        assert covered / 300 >= 0.92, count


def test_rows_bound_covers_the_true_drop():
    rng = np.random.default_rng(5)
    covered = sum(bounds.mean_difference(rng.choice([-100.0, 0.0, 0.0, 0.0, 100.0, 100.0], 500)).high >= 100 / 6
                  for _ in range(300))
    assert covered / 300 >= 0.92


def test_agreement_wilson_bound_below_100_when_every_row_agrees():
    outputs = one_hot_outputs(np.arange(300) % 3)
    a = bounds.agreement(outputs, outputs)
    assert a.estimate == 100.0 and a.low < 100.0 and a.low > 98.0
    # Wilson's lower bound for 300/300 at 95% one-sided: n / (n + z²)
    assert a.low == pytest.approx(100 * 300 / (300 + 1.6448536 ** 2), rel=1e-6)


def test_agreement_over_groups_stays_within_0_and_100():
    ref = np.arange(100) % 3
    new = ref.copy()
    new[:10] = (new[:10] + 1) % 3
    a = bounds.agreement(one_hot_outputs(ref), one_hot_outputs(new), np.repeat(np.arange(5), 20), sided="two")
    assert a.estimate == pytest.approx(90.0)
    assert 0.0 <= a.low <= 90.0 <= a.high <= 100.0


def test_snr_drop_is_the_difference_of_snrs_and_constant_scaling_has_no_width():
    rng = np.random.default_rng(2)
    y = rng.normal(0, 1, (200, 4))
    ref = y + rng.normal(0, 0.1, y.shape)
    new = y + 2 * (ref - y)  # every row's error energy is 4×: 6.02 dB, exactly, on every row
    for groups in (None, np.repeat(np.arange(10), 20)):
        drop = bounds.snr_drop(y, ref, new, groups)
        assert drop.estimate == pytest.approx(10 * math.log10(4))
        assert drop.high == pytest.approx(drop.estimate, abs=1e-9)


def test_snr_drop_rows_bound_covers():
    rng = np.random.default_rng(4)
    y = rng.normal(0, 1, (300, 2))
    covered = 0
    for _ in range(200):
        ref = y + rng.normal(0, 0.1, y.shape)
        new = y + rng.normal(0, 0.12, y.shape)  # true drop: 20·log10(1.2) = 1.58 dB
        covered += bounds.snr_drop(y, ref, new).high >= 20 * math.log10(1.2)
    assert covered / 200 >= 0.92


def test_units_needed_scales_with_the_square_of_the_half_width():
    d = np.random.default_rng(0).normal(0, 10, 100)
    b = bounds.mean_difference(d)
    assert b.units_needed(b.half_width * 2) is None
    needed = b.units_needed(b.half_width / 2)
    assert needed == math.ceil(100 * 4)


def test_interval_json_round_trip_keeps_infinite_sides():
    b = bounds.mean_difference(np.array([1.0, 2.0, 3.0]))
    assert bounds.Interval.from_json(b.to_json(), "x") == b
    assert b.to_json()["low"] is None


def test_text_names_the_bound_and_what_it_rests_on():
    b = bounds.mean_difference(np.full(10, 0.5), np.repeat([1, 2], 5))
    assert b.text() == "+0.50 pp (95% upper bound +0.50 pp; 2 groups (10 rows))"


def test_unresolved_note_says_how_many_groups_would_resolve_the_budget():
    d = np.repeat([-3.0, 2.0, 0.0, 4.0], 10)
    b = bounds.mean_difference(d, np.repeat(np.arange(4), 10))
    note = bounds.unresolved_note(b, 1.0)
    assert note is not None and note.startswith("the validation set cannot resolve a 1 pp budget even at zero drop: "
                                                "its 95% bound lies ")
    assert note.endswith(f"on 4 groups (40 rows); about {b.units_needed(1.0):,} groups would (give more groups for "
                         "validation)")
    assert bounds.unresolved_note(b, b.half_width + 0.01) is None


def test_decisions_compare_the_bound_not_the_estimate():
    drop = bounds.Interval(0.2, -math.inf, 1.3, 100, None, 0.95, "upper", "pp")
    assert not bounds.drop_within(drop, 1.0) and bounds.drop_within(drop, 1.3)
    agree = bounds.Interval(99.0, 97.5, math.inf, 100, None, 0.95, "lower", "%")
    assert bounds.agreement_within(agree, 97.5) and not bounds.agreement_within(agree, 98.0)


def test_checked_holds_both_bounds_and_decides_on_them():
    labels = np.arange(200) % 3
    new = labels.copy()
    new[:4] = (labels[:4] + 1) % 3
    c = bounds.checked(True, labels, one_hot_outputs(labels), one_hot_outputs(new))
    assert c.drop.estimate == pytest.approx(2.0) and c.agreement.estimate == pytest.approx(98.0)
    assert c.within(c.drop.high, c.agreement.low) and not c.within(c.drop.high - 0.01)
    assert not c.within(None, c.agreement.low + 0.01)
    assert bounds.Checked.from_json(c.to_json(), "x") == c
    regress = bounds.checked(False, np.ones((5, 2)), np.ones((5, 2)) * 1.1, np.ones((5, 2)) * 1.2)
    assert regress.agreement is None and regress.drop.unit == "dB"
