"""plan's library without TensorFlow: tasks, estimates, provenance, the partial-table writer, and the checks
`plan_model` makes before it measures anything."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinycomp.data import Dataset
from tinycomp.errors import DataError, InputFileError, InvalidValue, ModelError
from tinycomp.metrics import CLASSIFY, REGRESS, get_task
from tinycomp.plan import (
    FAST,
    FINE_TUNE,
    Budget,
    Candidate,
    CandidateResult,
    LayerSensitivity,
    Measurement,
    Option,
    PlanInputs,
    PlanRequest,
    Provenance,
    SensitivityTable,
    Shard,
    choose_plan,
    counted_drops,
    plan_model,
)
from tinycomp.plan.make import Silent, budget_for_task
from tinycomp.plan.plan_record import PlanRecord
from tinycomp.plan.workflow import PartialWriter, origin, partial_path

DATA = Dataset("d.npz", np.zeros((10, 4), np.float32), np.arange(10) % 2, np.zeros((4, 4), np.float32),
               np.arange(4) % 2)


def _inputs(sha: str = "ab", task=CLASSIFY) -> PlanInputs:
    return PlanInputs(None, DATA, "m.h5", task, Provenance.of(sha, DATA, task))


def test_tasks_carry_their_unit_scale_noise_and_texts():
    assert (CLASSIFY.unit, CLASSIFY.scale, REGRESS.unit, REGRESS.scale) == ("pp", 100.0, "dB", 1.0)
    assert CLASSIFY.noise(0.9, 100) == pytest.approx(3.0)
    assert (CLASSIFY.score_text(0.971), REGRESS.score_text(20.3)) == ("97.10%", "SNR 20.30 dB")
    assert (CLASSIFY.drop_text(), REGRESS.drop_text()) == ("accuracy drop", "SNR drop")
    assert get_task("regress") is REGRESS and json.loads(json.dumps(REGRESS.name)) == "regress"


def test_estimates_say_what_to_measure_and_what_counts():
    done = CandidateResult("a/4", zero_shot=0.89, fine_tuned=None)
    layer = Candidate("a", 4)
    assert FINE_TUNE.still_needed(layer, done, reference=0.9, noise=0.5) == (False, True)
    assert FAST.still_needed(layer, done, reference=0.9, noise=0.5) == (False, True)  # 1 pp > 0.5 pp noise
    assert FAST.still_needed(layer, done, reference=0.9, noise=2.0) == (False, False)
    assert FAST.counted(done, hopeless=False) == (0.89, False) and FINE_TUNE.counted(done, hopeless=False) is None
    assert Measurement(estimate=FAST).fine_tune_rows == FAST.fine_tune_rows > 0
    assert Measurement(estimate="fast").estimate is FAST  # Python callers may name it
    with pytest.raises(InvalidValue) as caught:
        Measurement(estimate="slow")
    assert caught.value.field == "estimate"


def test_provenance_is_one_comparison():
    now = Provenance("ab", {"name": "d", "train": 10, "preprocessing": {"scale": 1}}, CLASSIFY)
    assert now.differs(Provenance("ab", {"name": "d", "train": 10}, CLASSIFY)) is None  # an older table's keys
    assert now.differs(Provenance("cd", {"name": "e"}, REGRESS)) == "model"
    assert now.differs(Provenance("ab", {"name": "e"}, REGRESS)) == "data"
    assert now.differs(Provenance("ab", {"name": "d"}, REGRESS)) == "task"


def test_the_budget_must_be_in_the_tasks_unit():
    assert budget_for_task(Budget(target_bytes=10), REGRESS, "d.npz").task is REGRESS
    with pytest.raises(InvalidValue) as caught:
        budget_for_task(Budget(max_drop=1.0), REGRESS, "d.npz")
    assert caught.value.field == "max_accuracy_drop" and caught.value.hint.startswith("give --max-snr-drop")


def _table(task=CLASSIFY) -> SensitivityTable:
    options = [Option(None, 8, 64, 64), Option(4, 2, 30, 30, measured_drop=0.5)]
    counted_drops(options)
    return SensitivityTable([LayerSensitivity("a", "Dense", 64, 4, False, options)], 200, task=task)


def _record(sha: str = "ab", task=CLASSIFY) -> PlanRecord:
    table = _table(task)
    return PlanRecord("m.h5", sha, DATA.describe(), 0, [4], True, 1, 0.2, True, False, "uint8", False, None, 10,
                      None, None, None, table, choose_plan(table, Budget(target_bytes=10 ** 6, task=task)), task=task)


@pytest.mark.parametrize("record, error, what", [
    (_record(sha="cd"), ModelError, "the sensitivity table was measured on another model than m.h5"),
    (_record(task=REGRESS), InputFileError, "the sensitivity table was measured for a regress task (drops in dB), "
                                            "and this model and data make a classify task"),
])
def test_a_recorded_table_of_other_inputs_is_refused_before_anything_is_measured(record, error, what):
    request = PlanRequest(Budget(target_bytes=10 ** 6))
    with pytest.raises(error) as caught:
        plan_model(_inputs(), request, recorded=("old.json", record))
    assert caught.value.what == what and caught.value.where == "old.json"


def test_a_part_of_other_data_is_refused():
    other = Dataset("e.npz", DATA.x_train, DATA.y_train, DATA.x_test, DATA.y_test)
    part = origin(PlanInputs(None, other, "m.h5", CLASSIFY, Provenance.of("ab", other, CLASSIFY)), Measurement(), 0,
                  Shard(1, 2))
    with pytest.raises(DataError, match=r"measured on other data \(e.npz\)"):
        plan_model(_inputs(), PlanRequest(Budget(target_bytes=10 ** 6)), parts=[("p1.json", part)])


def test_the_partial_writer_records_every_result_and_resumes_only_its_own_run(tmp_path):
    inputs, m = _inputs(), Measurement()
    writer = PartialWriter(partial_path(str(tmp_path / "plan.yaml")), origin(inputs, m, 0, Shard()))
    assert writer.resumed("m.h5", Silent()) == {}
    writer.started([Candidate(), Candidate("a", 4)])
    writer.add(CandidateResult("control", fine_tuned=0.9))
    again = PartialWriter(writer.path, origin(inputs, m, 0, Shard()))
    assert list(again.resumed("m.h5", Silent())) == ["control"]
    with pytest.raises(InputFileError, match="measured with other seed than this run"):
        PartialWriter(writer.path, origin(inputs, m, 1, Shard())).resumed("m.h5", Silent())
    with pytest.raises(InputFileError, match="measured with other model than this run"):
        PartialWriter(writer.path, origin(_inputs("cd"), m, 0, Shard())).resumed("m.h5", Silent())
