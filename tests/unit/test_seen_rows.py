"""Whether the given model was trained on a plan's validation rows: the count from train's record, the
one line the plan prints, and following cluster/prune sidecars back to the train record."""

import json

import numpy as np

from tinycomp.data.validation import split_validation_rows
from tinycomp.plan.seen_rows import TrainedRows, trained_on_validation, validation_note
from tinycomp.plan.workflow import trained_rows

GROUPS = np.repeat(np.arange(10), 7)  # 70 rows, 10 subjects


def test_the_same_split_as_training_has_seen_none_of_the_validation_rows():
    trained = split_validation_rows(70, fraction=0.2, seed=3, groups=GROUPS)
    plan = split_validation_rows(70, fraction=0.2, seed=3, groups=GROUPS)
    assert trained_on_validation(trained.source, plan, GROUPS, 70) == 0


def test_other_held_out_groups_count_the_rows_training_saw():
    trained = split_validation_rows(70, fraction=0.2, seed=3, groups=GROUPS)
    plan = split_validation_rows(70, fraction=0.2, seed=4, groups=GROUPS)
    seen = set(GROUPS[plan.val]) - set(int(g) for g in trained.source.held_out)
    assert trained_on_validation(trained.source, plan, GROUPS, 70) == 7 * len(seen)


def test_a_model_trained_on_every_row_has_seen_every_validation_row():
    trained = split_validation_rows(70, fraction=0.2, given_rows=10)  # validated on x_val: fit on all 70
    plan = split_validation_rows(70, fraction=0.2, seed=0, groups=GROUPS)
    assert trained_on_validation(trained.source, plan, GROUPS, 70) == len(plan.val)


def test_a_record_of_other_data_is_not_used():
    trained = split_validation_rows(50, fraction=0.2)
    assert trained_on_validation(trained.source, split_validation_rows(70, fraction=0.2), None, 70) is None


def test_the_note_says_how_to_validate_on_rows_the_model_never_saw():
    trained = split_validation_rows(70, fraction=0.2, seed=3, groups=GROUPS)
    plan = split_validation_rows(70, fraction=0.2, seed=4, groups=GROUPS)
    record = TrainedRows(trained.source, 0.2, 3, "m.json")
    seen = trained_on_validation(trained.source, plan, GROUPS, 70)
    assert validation_note("m.h5", record, seen, plan) == (
        f"m.h5 was trained on {seen} of the plan's 14 validation rows (m.json): drops measured on rows a model has "
        "learned are optimistic; validate on the rows its training held out: --validation-split 0.2 --seed 3")
    assert validation_note("m.h5", None, None, plan).startswith("m.h5's training rows are not known (no `tinycomp "
                                                                "train` record of its held-out rows)")


def _write(path, payload):
    path.write_text(json.dumps(payload))


def test_trained_rows_follow_cluster_and_prune_records_to_the_train_record(tmp_path):
    held = split_validation_rows(70, fraction=0.2, seed=3, groups=GROUPS).source
    _write(tmp_path / "model.json", {"step": "train", "dataset": {"name": "d"}, "test_accuracy": 0.9, "epochs": 1,
                                     "batch_size": 8, "validation_split": 0.2, "seed": 3, "seconds": 1.0,
                                     "validation": held.to_json(), "schema_version": 1})
    (tmp_path / "model.h5").write_bytes(b"")
    (tmp_path / "pruned.h5").write_bytes(b"")
    _write(tmp_path / "pruned.json", {"step": "prune", "source": "elsewhere/model.h5"})  # found next to the sidecar
    _write(tmp_path / "clustered.json", {"step": "cluster", "source": str(tmp_path / "pruned.h5")})
    found = trained_rows(str(tmp_path / "clustered.h5"))
    assert found is not None and found.held_out == held and (found.validation_split, found.seed) == (0.2, 3)
    _write(tmp_path / "other.json", {"step": "quantize", "source": str(tmp_path / "model.h5")})
    assert trained_rows(str(tmp_path / "other.h5")) is None
    (tmp_path / "huge.json").write_bytes(b" " * ((1 << 20) + 1))
    assert trained_rows(str(tmp_path / "huge.h5")) is None
