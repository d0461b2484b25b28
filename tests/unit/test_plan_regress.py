"""`tinycomp plan` on a regression/reconstruction model: drops in output SNR (dB), budget --max-snr-drop."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinycomp.metrics import CLASSIFY, REGRESS
from tinycomp.plan import Budget, SensitivityTable, choose_plan, validation_noise
from tinycomp.plan.candidates import CandidateResult, PartialTable, Shard


def test_regress_noise_is_the_snr_standard_error():
    assert REGRESS.noise(20.0, 200) == pytest.approx(10 / np.log(10) * np.sqrt(2 / 200))
    assert CLASSIFY.noise(0.9, 100) == pytest.approx(3.0)
    table = SensitivityTable([], 0, control_accuracy=20.0, validation_samples=50, task=REGRESS)
    assert validation_noise(table) == pytest.approx(10 / np.log(10) * 0.2)


def test_regress_tables_and_parts_round_trip_with_their_task():
    from tinycomp.plan import LayerSensitivity, Option, counted_drops

    options = [Option(None, 8, 64, 64), Option(2, 1, 20, 20, measured_drop=3.0), Option(4, 2, 30, 30, measured_drop=0.5)]
    counted_drops(options)
    table = SensitivityTable([LayerSensitivity("enc", "Dense", 64, 4, False, options)], 200,
                             reference_accuracy=25.0, control_accuracy=25.5, task=REGRESS)
    assert table.fine_tune_gain == pytest.approx(0.5)  # dB: SNRs are stored in dB
    again = SensitivityTable.from_json(json.loads(json.dumps(table.to_json())))
    assert again.task == REGRESS and again.unit == "dB"
    plan = choose_plan(table, Budget(max_drop=1.0, task=REGRESS))
    assert plan.clustered()["enc"].clusters == 4
    part = PartialTable("sha", {}, {}, 0, Shard(), ["control"], [CandidateResult("control", None, 31.5)], task=REGRESS)
    assert PartialTable.from_json(part.to_json(), "p.json") == part
    assert "task" in PartialTable("sha", {}, {}, 0, Shard(), []).same_origin(part)


def test_task_override_is_a_measurement_option():
    from tinycomp.errors import InvalidValue
    from tinycomp.plan import Measurement

    assert Measurement(task=REGRESS).to_json()["task"] == "regress"
    assert Measurement.from_json(Measurement(task=CLASSIFY).to_json()).task == CLASSIFY
    with pytest.raises(InvalidValue):
        Measurement(task="detect")
