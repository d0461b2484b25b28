"""Task choice, metrics, agreement, and the loss chosen for fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest

from tinycomp.errors import DataError, InvalidValue
from tinycomp.metrics import REGRESS, SNR_CAP_DB, choose_task, get_task, mse, snr_db, top1_accuracy, top1_agreement


def test_task_choice():
    assert choose_task(None, (16,)).name == "regress"  # no labels: reconstruction
    assert choose_task(np.zeros((5, 16), np.float32), (16,)).name == "regress"  # y shaped like the output
    assert choose_task(np.array([0, 1, 2]), (3,)).name == "classify"
    assert choose_task(np.array([0.5, 1.5]), (1,)).name == "regress"  # float targets
    assert choose_task(np.array([0, 1, 2]), (3,), REGRESS).name == "regress"  # explicit override
    with pytest.raises(InvalidValue, match="unknown task 'segment'"):
        get_task("segment")


def test_metric_values():
    out = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert top1_accuracy(out, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert top1_agreement(out, np.array([[0.9, 0.1], [0.8, 0.2], [0.9, 0.1]])) == pytest.approx(1 / 3)
    ref = np.ones((4, 3))
    assert mse(ref + 0.5, ref) == pytest.approx(0.25)
    assert snr_db(ref, ref + 0.1) == pytest.approx(20.0)  # noise power 0.01 of the signal's
    assert snr_db(ref, ref) == SNR_CAP_DB and snr_db(np.zeros((2, 2)), np.ones((2, 2))) == -SNR_CAP_DB
    with pytest.raises(DataError, match="cannot compare outputs"):
        snr_db(ref, np.ones((4, 2)))


def test_regress_agreement_is_snr_only_and_classify_has_both():
    out = np.random.default_rng(0).normal(size=(10, 4))
    assert set(get_task("regress").agreement(out, out)) == {"agreement_snr_db"}
    assert get_task("classify").agreement(out, out) == {"agreement_top1": 1.0, "agreement_snr_db": SNR_CAP_DB}


def test_targets_are_checked_against_the_task():
    with pytest.raises(DataError, match="targets have rows of shape \\(3,\\) but the model outputs \\(16,\\)"):
        get_task("regress").check_targets(np.zeros((4, 3)), (16,), "y.npy")
    with pytest.raises(DataError, match="labels run from 0 to 7 but the model has 3 classes"):
        get_task("classify").check_targets(np.array([0, 7]), (3,), "y.npy")
    with pytest.raises(DataError, match="classification needs one integer label per row"):
        get_task("classify").check_targets(np.zeros((2, 3)), (3,), "y.npy")


