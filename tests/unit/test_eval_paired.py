"""eval --baseline's paired 95% intervals of Δ and agreement (computed from the outputs kept in memory)."""

from __future__ import annotations

import numpy as np
import pytest

from tinycomp import render
from tinycomp.evaluate import ModelResult, compare_to_baseline
from tinycomp.metrics import REGRESS
from tinycomp.records import EvalRecord


def _result(path: str, outputs: np.ndarray, labels: np.ndarray, task=None) -> ModelResult:
    r = ModelResult(path, "tflm", 1000, float(np.mean(outputs.argmax(1) == labels)), len(labels), outputs=outputs)
    if task is not None:
        r.task, r.accuracy = task, None
    return r


def test_eval_records_paired_intervals_of_delta_and_agreement():
    labels = np.arange(400) % 4
    base_classes = labels.copy()
    base_classes[:40] = (labels[:40] + 1) % 4  # 90% right
    new_classes = base_classes.copy()
    new_classes[40:60] = (labels[40:60] + 1) % 4  # 20 more rows lost: −5 pp, agreement 95%
    base, new = _result("b", np.eye(4)[base_classes], labels), _result("m", np.eye(4)[new_classes], labels)
    compare_to_baseline([new], base, labels)
    delta, agree = new.paired["delta"], new.paired["agreement"]
    assert delta["estimate"] == pytest.approx(-5.0) and delta["low"] < -5.0 < delta["high"] <= 0.0
    assert agree["estimate"] == pytest.approx(95.0) and agree["low"] < 95.0 < agree["high"]
    assert (delta["rows"], delta["groups"], delta["sided"]) == (400, None, "two")
    assert render.paired_lines([new]) == [
        f"m vs the baseline: Δ accuracy -5.00 pp (95% interval {delta['low']:+.2f} to {delta['high']:+.2f} pp; "
        f"400 rows); top-1 agreement 95.00 % (95% interval {agree['low']:.2f} to {agree['high']:.2f} %; 400 rows)"]


def test_eval_interval_by_test_group_is_recorded_and_read_back():
    labels = np.arange(100) % 2
    base = _result("b", np.eye(2)[labels], labels)
    new_classes = labels.copy()
    new_classes[:10] = 1 - labels[:10]  # every lost row in group 0
    new = _result("m", np.eye(2)[new_classes], labels)
    compare_to_baseline([new], base, labels, np.repeat(np.arange(5), 20))
    assert new.paired["delta"]["groups"] == 5
    record = EvalRecord([base, new], "b", {"name": "d"}, None, None)
    again = EvalRecord.from_json(record.to_json(), "eval.json")
    assert again.models[1].paired == new.paired


def test_eval_interval_of_a_regressor_is_its_snr_delta():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 3))
    base = _result("b", y + 0.1 * rng.normal(size=y.shape), np.zeros(50), REGRESS)
    new = _result("m", y + 0.2 * rng.normal(size=y.shape), np.zeros(50), REGRESS)
    compare_to_baseline([new], base, y)
    assert new.paired["agreement"] is None
    assert new.paired["delta"]["unit"] == "dB" and new.paired["delta"]["estimate"] < -3.0
