"""Datasets for training, calibration and evaluation, with explicit, recorded preprocessing.

- `spec`: `DataSpec`, the data options of a command, parsed once at the edge and recorded.
- `sources`: the registry of sources (built-in datasets, .npz, .npy, image directories) and
  `open_dataset(spec, splits=...)`, which reads only the splits a command needs.
- `dataset`: `Dataset`, `Rows` (rows preprocessed to float32 only when indexed) and `Preprocessing`.
- `arrays`: `.npz` members and `.npy` files read within the limits of `tinycomp.limits`.
- `checks`: a dataset's shapes and dtypes from headers, values only for the splits a command reads.
- `validation`: the validation split a plan uses (the data's own validation set, whole held-out groups,
  or the last rows) and the `ValidationSource` that records which it was.

Memory: `.npy` inputs and uncompressed `.npz` members are memory-mapped (larger than memory is
fine); compressed `.npz` members are inflated only within TINYCOMP_MAX_ARRAY_BYTES.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinycomp.data.sources import open_dataset
from tinycomp.data.spec import BUILTIN, DataSpec
from tinycomp.errors import DataError, InvalidValue

if TYPE_CHECKING:
    from tinycomp.data.dataset import (
        MAX_ONE_HOT_CLASSES,
        ONE_HOT_NOTE,
        Dataset,
        MappedArray,
        Preprocessing,
        Rows,
        calibration_samples,
        check_fits_model,
        choose_preprocessing,
        is_one_hot,
    )
    from tinycomp.data.sources import (
        NPZ_KEYS,
        REGISTRY,
        SPLITS,
        Source,
        open_dataset,
        register,
        source_for_path,
        spec_of_options,
    )

DATASETS = BUILTIN
# Names from the modules that import numpy, loaded on first use: the command-line edge imports
# `tinycomp.data` for DataSpec, and `tinycomp --help` (or `tinycomp makefile`) needs no numpy.
LAZY = {name: "tinycomp.data.dataset" for name in ("Dataset", "MappedArray", "Preprocessing", "Rows",
                                                   "calibration_samples", "check_fits_model", "choose_preprocessing",
                                                   "is_one_hot", "MAX_ONE_HOT_CLASSES", "ONE_HOT_NOTE")}
LAZY.update({name: "tinycomp.data.sources" for name in ("NPZ_KEYS", "REGISTRY", "SPLITS", "Source", "open_dataset",
                                                        "register", "source_for_path", "spec_of_options")})

__all__ = ["BUILTIN", "DATASETS", "MAX_ONE_HOT_CLASSES", "NPZ_KEYS", "ONE_HOT_NOTE", "REGISTRY", "SPLITS",
           "DataSpec", "Dataset", "MappedArray", "Preprocessing", "Rows", "Source", "calibration_samples",
           "check_fits_model", "choose_preprocessing", "is_one_hot", "load_dataset", "open_dataset", "register",
           "source_for_path", "spec_of_options"]


def __getattr__(name: str) -> Any:
    if name in LAZY:
        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'tinycomp.data' has no attribute {name!r}")


def load_dataset(name: str = "mnist", npz: str | Path | None = None, warn: Callable[[str], None] | None = None, *,
                 npy_x: str | Path | None = None, npy_y: str | Path | None = None, images: str | Path | None = None,
                 input_scale: float | None = None, input_offset: float | None = None,
                 image_size: tuple[int, int] | None = None) -> Dataset:
    """Open a dataset by name, or from an .npz (`npz`), .npy files (`npy_x`, and `npy_y` when there
    are labels or targets) or a directory of images in class subfolders (`images`): the keyword form
    of `open_dataset(DataSpec(...))`, reading both splits."""

    if sum(source is not None for source in (npz, npy_x, images)) > 1:
        raise InvalidValue("give one data source", "data", "an .npz, .npy files or an image directory, not several")
    if npy_y is not None and npy_x is None:
        raise DataError("y given without x", str(npy_y), "give the inputs as an .npy too")
    source, path = ((name, None) if npz is None and npy_x is None and images is None else
                    ("npz", npz) if npz is not None else ("npy", npy_x) if npy_x is not None else ("images", images))
    spec = DataSpec(source, None if path is None else str(path), None if npy_y is None else str(npy_y), input_scale,
                    input_offset, image_size)
    return open_dataset(spec, warn=warn)
