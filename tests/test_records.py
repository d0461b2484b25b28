"""The JSON records tinycomp writes: round trips, and clear errors for foreign or newer files."""

from __future__ import annotations

import json

import pytest

from tinycomp.errors import InputFileError
from tinycomp.evaluate import ModelResult
from tinycomp.records import SCHEMA_VERSION, ClusterRecord, EvalRecord, TrainRecord


def _eval_record() -> EvalRecord:
    models = [ModelResult("a.tflite", "tflm", 1000, 0.9, 200, arena_bytes=4096),
              ModelResult("b.h5", "keras", 5000, 0.95, 200)]
    return EvalRecord(models=models, baseline="b.h5", dataset={"name": "tiny.npz"}, flash_budget=2048,
                      ram_budget=None)


def test_eval_record_round_trips():
    record = _eval_record()
    text = json.dumps(record.to_json())
    again = EvalRecord.from_json(text, "eval.json")
    assert again.to_json() == record.to_json()
    assert again.schema_version == SCHEMA_VERSION and again.source == "eval.json"
    assert [m.path for m in again.models] == ["a.tflite", "b.h5"]


def test_eval_record_from_before_schema_versions_reads_as_version_1():
    payload = _eval_record().to_json()
    del payload["schema_version"]
    assert EvalRecord.from_json(json.dumps(payload)).schema_version == 1


def test_newer_schema_is_a_clear_error():
    payload = {**_eval_record().to_json(), "schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(InputFileError) as error:
        EvalRecord.from_json(json.dumps(payload), "eval.json")
    assert str(error.value) == (f"written with a newer schema (version {SCHEMA_VERSION + 1}; this tinycomp reads up "
                                f"to {SCHEMA_VERSION}) (eval.json) — upgrade tinycomp, or re-create the file with "
                                "this version")


@pytest.mark.parametrize("version", ["1", 0, True, None])
def test_unknown_schema_version_is_a_clear_error(version):
    payload = {**_eval_record().to_json(), "schema_version": version}
    with pytest.raises(InputFileError, match=r"^schema_version .* is not a version tinycomp writes \(eval.json\)"):
        EvalRecord.from_json(json.dumps(payload), "eval.json")


def test_train_and_cluster_records_round_trip_and_refuse_each_other():
    train = TrainRecord(dataset={"name": "d"}, test_accuracy=0.5, epochs=1, batch_size=8, validation_split=0.1,
                        seed=0, seconds=1.5, history={"loss": [1.0]})
    cluster = ClusterRecord(source="m.h5", dataset={"name": "d"}, test_accuracy=0.5, unique_values={"dense": 4},
                            epochs=1, seed=0, seconds=2.0)
    assert TrainRecord.from_json(json.dumps(train.to_json())) == train
    assert ClusterRecord.from_json(json.dumps(cluster.to_json())) == cluster
    with pytest.raises(InputFileError, match=r"^not a `cluster` record \(written by `train`\) \(x.json\)"):
        ClusterRecord.from_json(json.dumps(train.to_json()), "x.json")


def test_a_record_missing_a_field_names_it():
    payload = _eval_record().to_json()
    payload["models"][0].pop("accuracy")
    with pytest.raises(InputFileError, match=r"^models\[0\] lacks accuracy \(e.json\)"):
        EvalRecord.from_json(json.dumps(payload), "e.json")
