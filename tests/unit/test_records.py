"""The JSON records tinycomp writes: round trips, and clear errors for foreign or newer files."""

from __future__ import annotations

import json

import pytest

from helpers import OLD_EVAL_JSON
from tinycomp.errors import InputFileError
from tinycomp.evaluate import ModelResult
from tinycomp.metrics import CLASSIFY, REGRESS
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


def _regress_record() -> EvalRecord:
    models = [ModelResult("ae.h5", "keras", 9000, None, 50, task=REGRESS, mse=0.01, snr_db=20.0,
                          agreement_snr_db=200.0, runs_in="Keras"),
              ModelResult("ae_int8.tflite", "tflm", 3000, None, 50, arena_bytes=2048, task=REGRESS, mse=0.02,
                          snr_db=17.0, agreement_snr_db=31.5, gzip_bytes=2500, runs_in="TFLM")]
    return EvalRecord(models=models, baseline="ae.h5", dataset={"name": "ae.npz"}, flash_budget=None, ram_budget=None)


def test_a_regression_eval_json_round_trips_with_accuracy_null():
    text = json.dumps(_regress_record().to_json())
    assert json.loads(text)["models"][1]["accuracy"] is None
    assert json.loads(text)["models"][1]["task"] == "regress"  # in memory a Task, in JSON its name
    again = EvalRecord.from_json(text, "eval.json")
    assert again.to_json() == _regress_record().to_json()
    assert [(m.task, m.accuracy, m.snr_db) for m in again.models] == [(REGRESS, None, 20.0), (REGRESS, None, 17.0)]
    assert again.tasks == {REGRESS}


def test_a_classifier_with_accuracy_null_is_refused():
    payload = _eval_record().to_json()
    payload["models"][0]["accuracy"] = None
    with pytest.raises(InputFileError) as error:
        EvalRecord.from_json(json.dumps(payload), "e.json")
    assert str(error.value) == ('models[0] is a classifier with accuracy null (e.json) — a classifier\'s result needs '
                                'a number; a regression result carries "task": "regress"')


@pytest.mark.parametrize("key, value, message", [
    ("task", "detect", "models[1].task is 'detect', not one of classify, regress"),
    ("snr_db", "high", "models[1].snr_db is 'high', not a number"),
    ("flash_bytes", None, "models[1].flash_bytes is null, not a number"),
    ("accuracy", True, "models[1].accuracy is True, not a number"),
])
def test_a_malformed_task_or_metric_names_the_key(key, value, message):
    payload = _eval_record().to_json()
    payload["models"][1][key] = value
    with pytest.raises(InputFileError) as error:
        EvalRecord.from_json(json.dumps(payload), "e.json")
    assert str(error.value) == f"{message} (e.json) — write one with `tinycomp eval MODELS... --json FILE`"


def test_a_regression_result_may_lack_the_accuracy_key():
    payload = _regress_record().to_json()
    del payload["models"][0]["accuracy"]
    assert EvalRecord.from_json(json.dumps(payload)).models[0].accuracy is None





def test_eval_json_from_before_tasks_reads_as_classifiers():
    record = EvalRecord.from_json(OLD_EVAL_JSON, "old.json")
    assert record.schema_version == 1 and record.tasks == {CLASSIFY}
    compressed = record.models[1]
    assert (compressed.accuracy, compressed.mse, compressed.agreement_snr_db, compressed.gzip_bytes) == \
        (0.948, None, None, None)
    assert compressed.arena_bytes_with_alt_decompression == 6224


def test_a_cluster_record_of_a_regression_model_and_one_from_before_tasks():
    cluster = ClusterRecord(source="ae.h5", dataset={"name": "d"}, test_accuracy=None, unique_values={"enc": 4},
                            epochs=1, seed=0, seconds=2.0, task=REGRESS, test_metrics={"mse": 0.1, "snr_db": 9.5})
    assert ClusterRecord.from_json(json.dumps(cluster.to_json())) == cluster
    assert cluster.to_json()["task"] == "regress"
    with pytest.raises(InputFileError, match=r"^task is 'detect', not one of classify, regress \(c.json\)"):
        ClusterRecord.from_json(json.dumps({**cluster.to_json(), "task": "detect"}), "c.json")
    old = cluster.to_json()
    for key in ("task", "test_metrics", "schema_version"):
        del old[key]
    old["test_accuracy"] = 0.9
    again = ClusterRecord.from_json(json.dumps(old))
    assert (again.task, again.test_metrics, again.test_accuracy) == (CLASSIFY, {}, 0.9)
    del old["seed"]
    with pytest.raises(InputFileError, match=r"^the cluster record lacks seed \(cluster record\)"):
        ClusterRecord.from_json(json.dumps(old))
