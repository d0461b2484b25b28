"""One-hot labels in the user's data are read as integer labels, and recorded (issue 17 item 5)."""

from __future__ import annotations

import numpy as np


def test_one_hot_labels_are_read_as_integer_labels_and_recorded(tmp_path):
    from tinycomp.data import ONE_HOT_NOTE, load_dataset

    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(10, 8)).astype(np.float32)
    y_train, y_test = np.arange(40) % 3, np.arange(10) % 3
    eye = np.eye(3, dtype=np.float32)
    np.savez(tmp_path / "ints.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    np.savez(tmp_path / "onehot.npz", x_train=x_train, y_train=eye[y_train], x_test=x_test, y_test=eye[y_test])
    ints, onehot = load_dataset(npz=tmp_path / "ints.npz"), load_dataset(npz=tmp_path / "onehot.npz")
    np.testing.assert_array_equal(onehot.y_train, ints.y_train)
    np.testing.assert_array_equal(onehot.y_test, ints.y_test)
    assert onehot.has_class_labels and onehot.num_classes == 3
    assert ONE_HOT_NOTE in onehot.describe()["notes"] and ONE_HOT_NOTE not in ints.describe()["notes"]


def test_one_hot_labels_from_npy_targets(tmp_path):
    from tinycomp.data import ONE_HOT_NOTE, load_dataset

    np.save(tmp_path / "x.npy", np.zeros((6, 4), np.float32))
    np.save(tmp_path / "y.npy", np.eye(3, dtype=np.int64)[[0, 1, 2, 2, 1, 0]])
    data = load_dataset(npy_x=tmp_path / "x.npy", npy_y=tmp_path / "y.npy")
    np.testing.assert_array_equal(data.y_train, [0, 1, 2, 2, 1, 0])
    assert ONE_HOT_NOTE in data.describe()["notes"]


def test_only_exact_one_hot_rows_are_labels():
    from tinycomp.data import is_one_hot

    assert is_one_hot(np.array([[0, 1], [1, 0]]))
    assert not is_one_hot(np.array([[0.2, 0.8], [1.0, 0.0]]))  # probabilities are targets, not labels
    assert not is_one_hot(np.array([[1, 1], [1, 0]]))
    assert not is_one_hot(np.array([[0, 0], [1, 0]]))
    assert not is_one_hot(np.array([[1], [0]]))
    assert not is_one_hot(np.zeros((0, 3)))


def test_one_hot_for_a_categorical_loss():
    from tinycomp.data import Dataset

    x = np.zeros((4, 2), np.float32)
    data = Dataset("d", x, np.array([0, 2, 1, 2]), x, np.array([1, 0, 0, 2]))
    encoded = data.one_hot(3)
    np.testing.assert_array_equal(encoded.y_train, np.eye(3)[[0, 2, 1, 2]])
    assert encoded.y_train.dtype == np.float32 and data.y_train.shape == (4,)  # the original is not changed


def test_which_keras_wrote_a_keras_zip(tmp_path):
    import json
    import zipfile

    from tinycomp.model_config import read_saved_config

    def write(name: str, input_config: dict, metadata: dict | None) -> str:
        config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
            {"class_name": "InputLayer", "config": {"name": "in", **input_config}},
            {"class_name": "Dense", "config": {"name": "d", "units": 2}}]}}
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("config.json", json.dumps(config))
            if metadata is not None:
                z.writestr("metadata.json", json.dumps(metadata))
        return str(path)

    keras3 = {"batch_shape": [None, 4]}
    tf_keras = {"batch_input_shape": [None, 4]}
    assert read_saved_config(write("a.keras", tf_keras, {"keras_version": "3.15.1"}), "keras").keras_version == 3
    assert read_saved_config(write("b.keras", keras3, {"keras_version": "2.21.0"}), "keras").keras_version == 2
    assert read_saved_config(write("c.keras", keras3, None), "keras").keras_version == 3  # no version: the config
    assert read_saved_config(write("d.keras", tf_keras, {}), "keras").keras_version == 2
