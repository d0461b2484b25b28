"""Checks of a dataset's arrays: shapes and dtypes from headers (nothing read), values only for
the splits a command reads. Each failure is a DataError naming the array and the file."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinycomp.data.arrays import RawArray
from tinycomp.errors import DataError

Shape = tuple[int, ...]


def check_x_header(shape: Shape, dtype: np.dtype[Any], key: str, where: str) -> None:
    if len(shape) not in (2, 3, 4):
        raise DataError(f"{key} has shape {shape}; expected (N, features), (N, H, W), (N, T, C) or (N, H, W, C)",
                        where)
    if shape[0] == 0:
        raise DataError(f"{key} is empty", where)
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise DataError(f"{key} has dtype {dtype}; expected numbers", where)


def check_y_header(shape: Shape, dtype: np.dtype[Any], rows: int, key: str, where: str) -> None:
    if (shape[0] if shape else 0) != rows:
        raise DataError(f"{key} has {shape[0] if shape else 0} rows but x has {rows}", where,
                        "give one label or target per row")
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise DataError(f"{key} has dtype {dtype}; expected integer labels or numeric targets", where)


def is_labels(shape: Shape | None, dtype: np.dtype[Any] | None) -> bool:
    return shape is not None and dtype is not None and len(shape) == 1 and bool(np.issubdtype(dtype, np.integer))


def check_split_shapes(headers: dict[str, tuple[Shape, np.dtype[Any]]], where: str) -> None:
    """x_train/x_test (and y_train/y_test when present) agree on their row shapes."""
    for split in ("train", "test"):
        x_shape, x_dtype = headers[f"x_{split}"]
        check_x_header(x_shape, x_dtype, f"x_{split}", where)
        if f"y_{split}" in headers:
            check_y_header(*headers[f"y_{split}"], x_shape[0], f"y_{split}", where)
    if headers["x_train"][0][1:] != headers["x_test"][0][1:]:
        raise DataError(f"x_train rows have shape {headers['x_train'][0][1:]} but x_test rows "
                        f"{headers['x_test'][0][1:]}", where)
    if "y_train" not in headers:
        return
    train_shape, test_shape = headers["y_train"][0], headers["y_test"][0]
    if train_shape[1:] != test_shape[1:]:
        for key, shape, other in (("train", train_shape, headers["y_test"]), ("test", test_shape, headers["y_train"])):
            if is_labels(*other):  # the other split has class labels: this one should too
                raise DataError(f"y_{key} has shape {shape}; expected ({shape[0]},), one label per x_{key} row", where)
        raise DataError(f"y_train rows have shape {train_shape[1:]} but y_test rows {test_shape[1:]}", where)


def check_x_values(raw: RawArray, key: str, where: str) -> None:
    """No NaN or infinity in float inputs that are already in memory. Memory-mapped inputs, and
    compressed members not read yet, are not read whole for this: their rows are checked as they are
    converted (`finite_rows`), so e.g. `quantize` reads only its calibration rows."""
    if raw.on_disk or not np.issubdtype(raw.dtype, np.floating) or not raw.in_memory:
        return
    if not all_finite(raw.values()):
        raise DataError(f"{key} contains NaN or infinite values", where)


def finite_rows(rows: np.ndarray, key: str, where: str) -> np.ndarray:
    """`rows` (converted float inputs), refused if any value is NaN or infinite."""
    if np.issubdtype(rows.dtype, np.floating) and not all_finite(rows):
        raise DataError(f"{key} contains NaN or infinite values", where)
    return rows


def all_finite(values: np.ndarray, chunk_rows: int = 4096) -> bool:
    """No NaN or infinity, checked chunk by chunk (no mask the size of the array)."""
    return all(np.isfinite(values[start:start + chunk_rows]).all() for start in range(0, len(values), chunk_rows))


def check_y_values(raw: RawArray, key: str, where: str) -> None:
    """Labels are not negative; float targets are finite."""
    if is_labels(raw.shape, raw.dtype) or (np.issubdtype(raw.dtype, np.integer) and raw.shape[1:] == (1,)):
        values = raw.values()
        if len(values) and values.min() < 0:
            raise DataError(f"{key} has a negative label ({int(values.min())})", where, "labels must be 0..N-1")
    elif np.issubdtype(raw.dtype, np.floating) and not raw.on_disk and not all_finite(raw.values()):
        raise DataError(f"{key} contains NaN or infinite values", where)


def check_label_range(y_train: RawArray, y_test: RawArray, where: str) -> None:
    """Every test label occurs in training (labels 0..N-1)."""
    if not (is_labels(y_train.shape, y_train.dtype) and is_labels(y_test.shape, y_test.dtype)):
        return
    top_train, top_test = y_train.values().max(), y_test.values().max()
    if top_test > top_train:
        raise DataError(f"y_test has label {int(top_test)}, which never occurs in y_train", where,
                        "labels must be 0..N-1 with every class in the training set")
