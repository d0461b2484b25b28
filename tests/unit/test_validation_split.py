"""The validation splitter (rows / groups / a given set) and the data that carries groups or a validation set."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import run_cli
from tinycomp.data import load_dataset
from tinycomp.data.spec import DataSpec
from tinycomp.data.validation import ValidationSource, split_validation_rows
from tinycomp.errors import DataError, InvalidValue


def test_rows_hold_out_the_last_fraction():
    split = split_validation_rows(10, fraction=0.2)
    assert split.fit.tolist() == list(range(8)) and split.val.tolist() == [8, 9]
    assert split.val_groups is None
    assert (split.source.kind, split.source.rows, split.source.groups) == ("rows", 2, None)


def test_groups_are_held_out_whole_and_chosen_by_seed():
    groups = np.repeat(np.arange(10), 7)
    split = split_validation_rows(70, fraction=0.2, seed=3, groups=groups)
    held = set(groups[split.val].tolist())
    assert len(held) == 2 and not held & set(groups[split.fit].tolist())
    assert sorted(split.fit.tolist() + split.val.tolist()) == list(range(70))
    assert split.source.groups == 2 and split.source.held_out == tuple(str(g) for g in sorted(held))
    again = split_validation_rows(70, fraction=0.2, seed=3, groups=groups)
    assert again.val.tolist() == split.val.tolist()
    others = {tuple(split_validation_rows(70, fraction=0.2, seed=s, groups=groups).source.held_out) for s in range(6)}
    assert len(others) > 1


def test_at_least_one_group_validates_and_one_fine_tunes():
    assert split_validation_rows(20, fraction=0.01, groups=np.repeat([0, 1], 10)).source.groups == 1
    assert split_validation_rows(20, fraction=0.99, groups=np.repeat([0, 1], 10)).source.groups == 1


def test_string_group_ids_work():
    split = split_validation_rows(6, fraction=0.34, groups=np.array(["a", "a", "b", "b", "c", "c"]))
    assert split.source.kind == "groups" and split.source.rows == 4  # two of three: a bound needs two groups
    assert set(split.source.held_out) < {"a", "b", "c"} and len(split.fit) == 2


def test_a_given_validation_set_leaves_every_training_row_to_fine_tune():
    split = split_validation_rows(50, fraction=0.2, given_rows=12, given_groups=np.repeat([1, 2, 3], 4))
    assert split.val is None and len(split.fit) == 50
    assert (split.source.kind, split.source.rows, split.source.groups) == ("given", 12, 3)


def test_bad_splits_name_what_to_do():
    with pytest.raises(DataError, match="groups_train has 1 group"):
        split_validation_rows(5, fraction=0.2, groups=np.zeros(5, int))
    with pytest.raises(DataError, match="4 ids for 5 training rows"):
        split_validation_rows(5, fraction=0.2, groups=np.arange(4))
    with pytest.raises(InvalidValue, match="validation split must be in"):
        split_validation_rows(5, fraction=1.0)


def test_source_round_trips_through_json_and_says_what_it_is():
    source = split_validation_rows(70, fraction=0.2, seed=1, groups=np.repeat(np.arange(10), 7)).source
    assert ValidationSource.from_json(source.to_json(), "x") == source
    assert source.describe("imu.npz").startswith("validation: 2 held-out groups of imu.npz (")


@pytest.fixture
def npz_with_groups(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "imu.npz"
    np.savez(path, x_train=rng.normal(size=(40, 8, 3)).astype(np.float32), y_train=rng.integers(0, 3, 40),
             x_test=rng.normal(size=(10, 8, 3)).astype(np.float32), y_test=rng.integers(0, 3, 10),
             groups_train=np.repeat(np.arange(5), 8), groups_test=np.repeat([7, 8], 5),
             x_val=rng.normal(size=(6, 8, 3)).astype(np.float32), y_val=rng.integers(0, 3, 6))
    return path


def test_npz_carries_groups_and_a_validation_set(npz_with_groups):
    data = load_dataset(npz=npz_with_groups)
    assert data.groups_train.tolist() == np.repeat(np.arange(5), 8).tolist()
    assert data.groups_test.tolist() == [7] * 5 + [8] * 5
    assert data.x_val.shape == (6, 8, 3, 1) and len(data.y_val) == 6
    assert data.describe()["groups_train"] == 5 and data.describe()["val"] == 6
    split = data.validation_split(0.2)
    assert split.source.kind == "given"  # a given validation set wins over groups
    fit, x_val, y_val = data.validation_rows(split)
    assert len(fit.x_train) == 40 and x_val.shape == (6, 8, 3, 1)
    fitted = data.fit_to((8, 3))
    assert fitted.x_val.shape == (6, 8, 3) and fitted.groups_train is data.groups_train


def test_groups_split_gives_fit_and_validation_rows(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "g.npz"
    x = np.arange(40, dtype=np.float32).reshape(40, 1) * np.ones((1, 4), np.float32)
    np.savez(path, x_train=x, y_train=rng.integers(0, 3, 40), x_test=x[:5], y_test=rng.integers(0, 3, 5),
             groups_train=np.repeat(np.arange(5), 8))
    data = load_dataset(npz=path)
    split = data.validation_split(0.4, seed=2)
    fit, x_val, _ = data.validation_rows(split)
    assert sorted(set(x_val[:, 0].astype(int) // 8)) == sorted(int(g) for g in split.source.held_out)
    assert len(fit.x_train) + len(x_val) == 40


def test_npz_groups_of_the_wrong_length_is_one_error(tmp_path):
    path = tmp_path / "bad.npz"
    x = np.zeros((10, 4), np.float32)
    np.savez(path, x_train=x, y_train=np.zeros(10, int), x_test=x, y_test=np.zeros(10, int), groups_train=np.arange(9))
    with pytest.raises(DataError, match=r"groups_train has shape \(9,\); expected \(10,\)"):
        load_dataset(npz=path)


def test_npz_x_val_without_y_val_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    x = np.zeros((10, 4), np.float32)
    np.savez(path, x_train=x, y_train=np.zeros(10, int), x_test=x, y_test=np.zeros(10, int), x_val=x)
    with pytest.raises(DataError, match="x_val without y_val"):
        load_dataset(npz=path)


def test_npy_options_give_groups_and_a_validation_set(tmp_path):
    rng = np.random.default_rng(0)
    for name, array in (("x", rng.normal(size=(30, 4)).astype(np.float32)), ("y", rng.integers(0, 2, 30)),
                        ("g", np.repeat(np.arange(3), 10)), ("xv", rng.normal(size=(5, 4)).astype(np.float32)),
                        ("yv", rng.integers(0, 2, 5))):
        np.save(tmp_path / f"{name}.npy", array)
    spec = DataSpec("npy", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), groups=str(tmp_path / "g.npy"),
                    val_data=str(tmp_path / "xv.npy"), val_targets=str(tmp_path / "yv.npy"))
    from tinycomp.data import open_dataset

    data = open_dataset(spec)
    assert len(np.unique(data.groups_train)) == 3 and data.x_val.shape == (5, 4)
    assert DataSpec.from_json(spec.to_json(), "x") == spec


def test_npy_group_options_only_go_with_npy(tmp_path, npz_with_groups):
    result = run_cli(["eval", "m.tflite", "--data", str(npz_with_groups), "--groups", "g.npy"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1].startswith("Error: --groups goes with --data X.npy (--groups) — give the "
                                                     "inputs as --data X.npy, or put groups_train")


def test_min_agreement_goes_with_an_accuracy_budget(tmp_path):
    result = run_cli(["plan", "m.h5", "--target-bytes", "1000", "--min-agreement", "97", "-o", tmp_path / "p.yaml"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == ("Error: --min-agreement goes with --max-accuracy-drop (--min-agreement) — "
                                              "give both, e.g. --max-accuracy-drop 1 --min-agreement 97")
