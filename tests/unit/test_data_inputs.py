"""Data sources and their errors: image directories, .npy, explicit preprocessing, streaming."""

from __future__ import annotations

import numpy as np
import pytest

from tinycomp.data import load_dataset
from tinycomp.errors import DataError


def _image_dir(root, classes=("cat", "dog"), per_class=5, size=(6, 6)):
    from PIL import Image

    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full(size + (3,), 40 * c + i, np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_image_directory_in_class_subfolders(tmp_path):
    data = load_dataset(images=_image_dir(tmp_path / "imgs"))
    assert data.input_shape == (6, 6, 3) and data.num_classes == 2
    assert (len(data.x_train), len(data.x_test)) == (8, 2)  # every 5th image of each class tests
    assert data.describe()["preprocessing"]["scale"] == pytest.approx(1 / 255)


def test_image_directory_with_one_class(tmp_path):
    root = _image_dir(tmp_path / "imgs", classes=("cat",))
    with pytest.raises(DataError, match="image directory has 1 class subdirectory\\(ies\\); a classifier needs at least 2"):
        load_dataset(images=root)


def test_unreadable_image_is_named(tmp_path):
    root = _image_dir(tmp_path / "imgs")
    (root / "dog" / "9.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as caught:
        load_dataset(images=root)
    assert "cannot read image" in str(caught.value) and "9.png" in str(caught.value)


def test_explicit_scale_and_offset_are_applied_and_recorded(tmp_path):
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) * 10
    np.savez(tmp_path / "d.npz", x_train=x, x_test=x)
    data = load_dataset(npz=tmp_path / "d.npz", input_scale=0.5, input_offset=-1.0)
    np.testing.assert_allclose(data.x_train[..., 0], x * 0.5 - 1.0)
    assert data.describe()["preprocessing"] == {"scale": 0.5, "offset": -1.0, "reason": "explicit: x * 0.5 + -1"}
    assert not data.labels and data.y_train is data.x_train  # no labels: reconstruct x


def test_wrong_y_for_the_task_and_wrong_input_shape(tmp_path):
    from tinycomp.data import check_fits_model
    from tinycomp.metrics import CLASSIFY, REGRESS

    x = np.zeros((10, 16), np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, x_test=x, y_train=np.zeros((10, 3), np.float32),
             y_test=np.zeros((10, 3), np.float32))
    data = load_dataset(npz=tmp_path / "d.npz")
    with pytest.raises(DataError, match="targets have rows of shape \\(3,\\) but the model outputs \\(16,\\)"):
        check_fits_model(data, (16,), 16, "model.h5", task=REGRESS, output_shape=(16,))
    with pytest.raises(DataError, match="the data has no class labels"):
        check_fits_model(data, (16,), 16, "model.h5", task=CLASSIFY)
    with pytest.raises(DataError, match="the data's rows have shape \\(16,\\) but the model expects \\(8,\\)"):
        check_fits_model(data, (8,), 16, "model.h5")


def test_npy_y_with_wrong_rows(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 4), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(7, np.int64))
    with pytest.raises(DataError, match="y has 7 rows but x has 10"):
        load_dataset(npy_x=tmp_path / "x.npy", npy_y=tmp_path / "y.npy")


