"""The dataset types: `Preprocessing`, `Rows` (rows converted only when indexed) and `Dataset`.

Nothing is rescaled silently: a `Preprocessing` (x * scale + offset, and why) is chosen once per
dataset — uint8 data is divided by 255 as in the tutorial, any other data is used as given, unless
an explicit scale/offset is passed — and `Dataset.describe()` records it in every sidecar.

Inputs and targets are `Rows` over a raw array: the raw values stay as stored (in memory, or on
disk when memory-mapped) and become float32 only for the rows indexed, chunk by chunk, so no
split is ever converted whole at once. Reading a whole split (`np.asarray(rows)`) is refused when
its float32 size exceeds the array limit (`tinycomp.limits`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from tinycomp import limits
from tinycomp.data import checks
from tinycomp.data.arrays import RawArray
from tinycomp.data.spec import DataSpec
from tinycomp.data.validation import ValidationSplit, split_validation_rows
from tinycomp.errors import DataError, InvalidValue
from tinycomp.metrics import CLASSIFY, REGRESS, Task

CONVERT_CHUNK_ROWS = 4096  # rows converted to float32 at a time
MAX_ONE_HOT_CLASSES = 4096  # wider targets are not read whole to look for one-hot rows
ONE_HOT_NOTE = "labels given as one-hot rows: read as integer labels (the column of each row's 1)"
HOLD_HINT = ("this step holds these rows in memory as float32 (training streams memory-mapped inputs; plan holds "
             "its validation and measuring rows, report the rows it shows): give fewer rows")


@dataclass(frozen=True)
class Preprocessing:
    """x_float = x * scale + offset, and why these values (recorded in every sidecar)."""

    scale: float = 1.0
    offset: float = 0.0
    reason: str = "float data used as given"

    def apply(self, x: Any) -> np.ndarray:
        x = np.asarray(x).astype(np.float32)
        divisor = round(1.0 / self.scale) if self.scale else 0
        if self.scale != 1.0 and divisor and abs(1.0 / self.scale - divisor) < 1e-6:
            x /= np.float32(divisor)  # x / 255 exactly as the tutorial computes it (x * (1/255) can differ by an ulp)
        elif self.scale != 1.0:
            x *= np.float32(self.scale)
        if self.offset != 0.0:
            x += np.float32(self.offset)
        return x

    def describe(self) -> dict[str, Any]:
        return {"scale": self.scale, "offset": self.offset, "reason": self.reason}


def choose_preprocessing(dtype: Any, scale: float | None = None, offset: float | None = None) -> Preprocessing:
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


class Conversion(Protocol):
    """How raw rows become what the model sees."""

    def dtype(self, raw: np.dtype[Any]) -> np.dtype[Any]: ...

    def apply(self, raw_rows: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Inputs:
    """Inputs: the dataset's preprocessing, to float32."""

    preprocessing: Preprocessing

    def dtype(self, raw: np.dtype[Any]) -> np.dtype[Any]:
        return np.dtype(np.float32)

    def apply(self, raw_rows: np.ndarray) -> np.ndarray:
        return self.preprocessing.apply(raw_rows)


@dataclass(frozen=True)
class Targets:
    """Targets: class labels as int64, anything else (regression targets) as float32."""

    labels: bool

    def dtype(self, raw: np.dtype[Any]) -> np.dtype[Any]:
        return np.dtype(np.int64 if self.labels else np.float32)

    def apply(self, raw_rows: np.ndarray) -> np.ndarray:
        return np.asarray(raw_rows).astype(self.dtype(raw_rows.dtype))


def is_one_hot(y: Any) -> bool:
    """True for one-hot class rows: 2-D, at least 2 columns, every value 0 or 1, exactly one 1 per row."""
    y = np.asarray(y)
    if y.ndim != 2 or y.shape[1] < 2 or len(y) == 0:
        return False
    return bool(np.all((y == 0) | (y == 1)) and np.all(np.sum(y == 1, axis=1) == 1))


def may_be_one_hot(raw: RawArray) -> bool:
    """Shaped like one-hot rows (its values decide)."""
    return len(raw.shape) == 2 and 2 <= raw.shape[1] <= MAX_ONE_HOT_CLASSES


def labels_of_one_hot(raw: RawArray) -> RawArray:
    """One-hot rows as integer labels (the column of each row's 1), read when first needed."""
    return RawArray((raw.shape[0],), np.dtype(np.int64), lambda: np.argmax(raw.values(), axis=1).astype(np.int64),
                    on_disk=False, name=raw.name, where=raw.where)


def is_label_array(raw: RawArray) -> bool:
    """Integer labels: one per row, as (N,) or a column (N, 1)."""
    return bool(np.issubdtype(raw.dtype, np.integer)) and (len(raw.shape) == 1 or raw.shape[1:] == (1,))


class Rows:
    """Rows of a raw array, converted (preprocessed to float32, or targets) only when indexed.

    Behaves like the converted array where the pipeline needs it: len, shape, ndim, dtype, indexing
    by int/slice/index array, and np.asarray (which converts everything, chunk by chunk, within the
    array limit). `streamed` marks rows that training reads batch by batch from disk.
    """

    def __init__(self, raw: RawArray, conversion: Conversion, row_shape: tuple[int, ...] | None = None, *,
                 streamed: bool = False):
        self.raw, self.conversion, self.streamed = raw, conversion, streamed
        self.row_shape = tuple(raw.shape[1:]) if row_shape is None else tuple(row_shape)
        self.dtype = conversion.dtype(raw.dtype)

    @classmethod
    def of_inputs(cls, raw: RawArray, preprocessing: Preprocessing, *, streamed: bool = False) -> Rows:
        """Inputs; H×W images get a channel axis, as in the tutorial (`Dataset.fit_to` drops it again)."""
        row_shape = tuple(raw.shape[1:]) + ((1,) if len(raw.shape) == 3 else ())
        return cls(raw, Inputs(preprocessing), row_shape, streamed=streamed)

    @classmethod
    def of_targets(cls, raw: RawArray) -> Rows:
        labels = is_label_array(raw)
        return cls(raw, Targets(labels), () if labels else tuple(raw.shape[1:]))

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.raw), *self.row_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.raw)

    def take(self, index: np.ndarray) -> np.ndarray:
        """The converted rows at `index` (any order), reading no other rows where the source allows:
        memory-mapped rows from disk, compressed ones streamed in one pass."""
        index = np.asarray(index)
        self._check_fits(len(index))
        return self._convert(self.raw.take(index))

    def view(self, start: int, stop: int) -> Rows:
        """Rows start..stop-1, still unread (a view of the raw array once it is read)."""
        raw = self.raw
        start, stop, _ = slice(start, stop).indices(len(raw))
        part = RawArray((max(stop - start, 0), *raw.shape[1:]), raw.dtype, lambda: raw.values()[start:stop],
                        on_disk=raw.on_disk, name=raw.name, where=raw.where)
        return Rows(part, self.conversion, self.row_shape, streamed=self.streamed)

    def reshaped(self, row_shape: tuple[int, ...]) -> Rows:
        """The same rows with another row shape of the same size (e.g. a channel axis added or dropped)."""
        return Rows(self.raw, self.conversion, row_shape, streamed=self.streamed)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self._convert(self.raw.values()[index][np.newaxis])[0]
        if isinstance(index, slice):
            return self._rows(np.arange(len(self))[index], contiguous=index.step in (None, 1))
        if isinstance(index, tuple):  # rows, then within rows (e.g. x[..., 0])
            return self[:][index]
        return self._rows(np.asarray(index), contiguous=False)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        rows = self[:]
        return rows if dtype is None else rows.astype(dtype)

    def min(self) -> Any:
        """The smallest converted value, computed chunk by chunk."""
        return min(np.min(chunk) for chunk in self._chunks())

    def max(self) -> Any:
        """The largest converted value, computed chunk by chunk."""
        return max(np.max(chunk) for chunk in self._chunks())

    def _chunks(self) -> Iterator[np.ndarray]:
        raw = self.raw.values()
        for start in range(0, len(self), CONVERT_CHUNK_ROWS):
            yield self._convert(raw[start:start + CONVERT_CHUNK_ROWS])

    def _rows(self, index: np.ndarray, contiguous: bool) -> np.ndarray:
        """The converted rows at `index`, CONVERT_CHUNK_ROWS at a time into one preallocated array."""
        self._check_fits(len(index))
        out = np.empty((len(index), *self.row_shape), self.dtype)
        raw = self.raw.values()
        for start in range(0, len(index), CONVERT_CHUNK_ROWS):
            chosen = index[start:start + CONVERT_CHUNK_ROWS]
            if contiguous and len(chosen):
                out[start:start + len(chosen)] = self._convert(raw[chosen[0]:chosen[-1] + 1])
            else:
                out[start:start + len(chosen)] = self._convert(raw[chosen])
        return out

    def _convert(self, raw_rows: np.ndarray) -> np.ndarray:
        converted = self.conversion.apply(raw_rows).reshape((len(raw_rows), *self.row_shape))
        if isinstance(self.conversion, Inputs) and np.issubdtype(raw_rows.dtype, np.floating):
            return checks.finite_rows(converted, self.raw.name, self.raw.where)
        return converted

    def _check_fits(self, count: int) -> None:
        row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        limits.check_declared(count * row_bytes, limits.current().array_bytes,
                              what=f"{self.raw.name}: {count:,} rows as {self.dtype}", where=self.raw.where,
                              setting=limits.ARRAY_SETTING, hint=HOLD_HINT)


MappedArray = Rows  # the name before rows were read lazily from any source
Array = np.ndarray | Rows


@dataclass
class Dataset:
    """Inputs (float32; channel axis for H×W images), targets and where they came from.

    `labels` is False when the data has none: then y_train/y_test are the inputs themselves.
    `spec` is the data options the dataset was opened with (recorded, so `report` can reopen it).
    """

    name: str
    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array
    notes: list[str] = field(default_factory=list)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: bool = True
    spec: DataSpec | None = None
    splits: tuple[str, ...] = ("train", "test")  # the splits opened for reading; the others give only their shape
    # Deployment-like validation (see tinycomp.data.validation): one group id per training row (subject,
    # session, …), a validation set of its own (x_val, y_val, groups_val), and one group id per test row.
    groups_train: np.ndarray | None = None
    x_val: Array | None = None
    y_val: Array | None = None
    groups_val: np.ndarray | None = None
    groups_test: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def streamed(self) -> bool:
        """True when the training inputs stay on disk (memory-mapped) and are read batch by batch."""
        return isinstance(self.x_train, Rows) and self.x_train.streamed

    @property
    def num_classes(self) -> int | None:
        """1 + the largest integer label; None without integer labels (regression, reconstruction).

        Counted on the splits opened: commands that read only the test rows count the test labels."""
        if not self.has_class_labels:
            return None
        opened = [y for which, y in (("train", self.y_train), ("test", self.y_test)) if which in self.splits]
        return int(max(np.max(np.asarray(y)) for y in opened)) + 1

    @property
    def has_class_labels(self) -> bool:
        y = self.y_test
        return self.labels and len(y.shape) == 1 and np.issubdtype(np.dtype(y.dtype), np.integer)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for sidecar files and reports."""
        described = {
            "name": self.name,
            "train": int(len(self.x_train)),
            "test": int(len(self.x_test)),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "notes": list(self.notes),
            "labels": self.labels,
            "preprocessing": self.preprocessing.describe(),
        }
        if self.spec is not None:
            described["spec"] = self.spec.to_json()
        for key, groups in (("groups_train", self.groups_train), ("groups_val", self.groups_val),
                            ("groups_test", self.groups_test)):
            if groups is not None:
                described[key] = int(len(np.unique(groups)))
        if self.x_val is not None:
            described["val"] = int(len(self.x_val))
        return described

    def fit_to(self, input_shape: tuple[int, ...]) -> Dataset:
        """This data with a trailing axis of size 1 added or dropped when that is all that differs
        from the model's input shape (H×W images vs H×W×1, (T, C) features vs (T, C, 1))."""
        want, have = tuple(int(d) for d in input_shape), self.input_shape
        if want == have or (want != have + (1,) and have != want + (1,)):
            return self
        x_train, x_test = _reshape_rows(self.x_train, want), _reshape_rows(self.x_test, want)
        y_train, y_test = (self.y_train, self.y_test) if self.labels else (x_train, x_test)
        x_val = None if self.x_val is None else _reshape_rows(self.x_val, want)
        y_val = self.y_val if self.labels else x_val
        return replace(self, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, notes=list(self.notes),
                       x_val=x_val, y_val=y_val)

    def one_hot(self, classes: int) -> Dataset:
        """This data with the integer labels as one-hot float32 rows of `classes` columns (for a loss
        that takes one-hot targets)."""
        eye = np.eye(classes, dtype=np.float32)
        return replace(self, y_train=eye[np.asarray(self.y_train)], y_test=eye[np.asarray(self.y_test)],
                       notes=list(self.notes) + [f"labels one-hot encoded ({classes} columns) for the loss"],
                       y_val=None if self.y_val is None else eye[np.asarray(self.y_val)])

    def validation_split(self, fraction: float, seed: int = 0) -> ValidationSplit:
        """Which training rows validate and which fine-tune (see tinycomp.data.validation): the data's
        own validation set, else whole groups held out (by `seed`), else the last `fraction` of the rows."""
        return split_validation_rows(len(self.x_train), fraction=fraction, seed=seed, groups=self.groups_train,
                                     given_rows=None if self.x_val is None else len(self.x_val),
                                     given_groups=self.groups_val)

    def validation_rows(self, split: ValidationSplit) -> tuple[Dataset, np.ndarray, np.ndarray]:
        """(the rows to fine-tune on as a dataset, x and y of the validation rows) of `split`."""
        if split.val is None:
            assert self.x_val is not None and self.y_val is not None
            x_val, y_val = np.asarray(self.x_val[:]), np.asarray(self.y_val[:])
            return Dataset(self.name, self.x_train, self.y_train, x_val, y_val, preprocessing=self.preprocessing), x_val, y_val
        if split.source.kind == "rows":
            fit, x_val, y_val = self.hold_out(len(split.val))
            return fit, x_val, y_val
        x_fit, y_fit = _take(self.x_train, split.fit), _take(self.y_train, split.fit)
        x_val, y_val = _take(self.x_train, split.val), _take(self.y_train, split.val)
        return Dataset(self.name, x_fit, y_fit, x_val, y_val, preprocessing=self.preprocessing), x_val, y_val

    def hold_out(self, held: int) -> tuple[Dataset, np.ndarray, np.ndarray]:
        """(the other training rows as a dataset, x and y of the last `held` training rows): the rows
        that remain for training are not read here (memory-mapped ones can still be streamed)."""
        n = len(self.x_train)
        x_fit, y_fit = _rows_view(self.x_train, 0, n - held), _rows_view(self.y_train, 0, n - held)
        x_val, y_val = np.asarray(self.x_train[n - held:]), np.asarray(self.y_train[n - held:])
        return Dataset(self.name, x_fit, y_fit, x_val, y_val, preprocessing=self.preprocessing), x_val, y_val

    def split(self, which: str) -> tuple[Array, Array]:
        """(x, y) of 'train' or 'test'."""
        if which not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {which!r}")
        return (self.x_train, self.y_train) if which == "train" else (self.x_test, self.y_test)

    def iter_batches(self, which: str = "test", batch_size: int = 256, *, rows: np.ndarray | None = None,
                     shuffle: bool = False, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Converted (x, y) batches of a split (or of its `rows`), read batch by batch.
        `shuffle` permutes the row order (seeded)."""
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
                      shuffle: bool = False, seed: int = 0) -> Any:
        """A tf.data.Dataset of (x, y) batches streamed through `iter_batches` (reshuffled each epoch)."""
        import tensorflow as tf

        x, y = self.split(which)
        y_row = tuple(y.shape[1:])
        y_dtype = tf.int64 if self.has_class_labels else tf.float32
        epoch = [0]

        def generate() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            epoch[0] += 1
            for xb, yb in self.iter_batches(which, batch_size, rows=rows, shuffle=shuffle, seed=seed + epoch[0]):
                yield xb.astype(np.float32), yb.astype(y_dtype.as_numpy_dtype)

        signature = (tf.TensorSpec((None, *x.shape[1:]), tf.float32), tf.TensorSpec((None, *y_row), y_dtype))
        return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)


def _take(a: Array, index: np.ndarray) -> np.ndarray:
    return a.take(index) if isinstance(a, Rows) else np.asarray(a)[index]


def _rows_view(a: Array, start: int, stop: int) -> Array:
    return a.view(start, stop) if isinstance(a, Rows) else a[start:stop]


def _reshape_rows(a: Array, row_shape: tuple[int, ...]) -> Array:
    if isinstance(a, Rows):
        return a.reshaped(row_shape)
    return np.asarray(a).reshape((len(a), *row_shape))


def check_fits_model(data: Dataset, input_shape: tuple[int, ...], num_outputs: int, where: str, *,
                     task: Task | None = None, output_shape: tuple[int, ...] | None = None) -> None:
    """Fail clearly when the data's rows or targets do not fit a model's input and output.

    `task` (CLASSIFY | REGRESS, default: CLASSIFY when the data has integer labels) decides
    what the targets must look like; `output_shape` is the model's output row shape.
    """

    expected = tuple(int(d) for d in input_shape)
    if expected != data.input_shape:
        raise DataError(f"the data's rows have shape {tuple(int(d) for d in data.input_shape)} but the model expects "
                        f"{expected}",
                        where, "use the dataset the model was trained on")
    if task is None:
        task = CLASSIFY if data.has_class_labels else REGRESS
    if not task.has_accuracy:
        task.check_targets(data.y_test[:1], tuple(output_shape or (num_outputs,)), where)
        return
    if not data.has_class_labels:
        raise DataError(f"the data has no class labels (targets of shape {tuple(data.y_test.shape[1:])})", where,
                        "give integer labels 0..N-1, or use the regress task")
    classes = data.num_classes or 0
    if classes > max(int(num_outputs), 2):
        raise DataError(f"the data has labels up to {classes - 1} but the model has {num_outputs} outputs",
                        where, "use the dataset the model was trained on")


def calibration_samples(data: Dataset, count: int, seed: int = 0) -> np.ndarray:
    """A fixed random subset of the training inputs for int8 calibration (only those rows are read and converted)."""
    if count < 1:
        raise InvalidValue(f"calibration needs at least 1 sample, got {count}", "calibration_samples", "use e.g. 100")
    rng = np.random.default_rng(seed)
    count = min(count, len(data.x_train))
    chosen = rng.choice(len(data.x_train), size=count, replace=False)
    if isinstance(data.x_train, Rows):
        return data.x_train.take(chosen)
    return np.asarray(data.x_train[chosen])
