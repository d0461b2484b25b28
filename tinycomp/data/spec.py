"""`DataSpec`: which data a command reads and how it is preprocessed, parsed once at the edge.

The data options of every data-reading command (`--dataset`, `--data`, `--targets`,
`--input-scale`, `--input-offset`, `--image-size`, and with .npy `--groups`, `--val-data`, `--val-targets`) become one frozen `DataSpec`. It is recorded
in sidecars and in eval JSON (`dataset.spec`), so `report` reopens exactly the data `eval` read.
The source (a built-in dataset, an .npz, .npy files or an image directory) is named here; the
sources themselves, and `spec_of_options` which tells a path's source, live in `tinycomp.data.sources`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinycomp.errors import DataError, InvalidValue

BUILTIN = ("mnist", "mnist-sample", "fashion_mnist")
FILE_SOURCES = ("npz", "npy", "images")
SOURCES = (*BUILTIN, *FILE_SOURCES)


@dataclass(frozen=True)
class DataSpec:
    """The data a command reads: a source, its path(s) and explicit preprocessing (None: the default rule)."""

    source: str = "mnist"  # mnist | mnist-sample | fashion_mnist | npz | npy | images
    path: str | None = None  # the .npz, the inputs .npy, or the image directory
    targets: str | None = None  # with npy: the labels or targets .npy
    input_scale: float | None = None
    input_offset: float | None = None
    image_size: tuple[int, int] | None = None  # with images: resize to (height, width)
    groups: str | None = None  # with npy: one group id per row (.npy)
    val_data: str | None = None  # with npy: validation inputs (.npy)
    val_targets: str | None = None  # with val_data: their labels or targets (.npy)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise InvalidValue(f"unknown data source {self.source!r}", "dataset", f"choose one of {', '.join(BUILTIN)}")
        if (self.source in FILE_SOURCES) != (self.path is not None):
            raise InvalidValue(f"data source {self.source!r} " + ("needs a path" if self.path is None else "takes no path"),
                               "data", "give --data PATH for your own data, or --dataset NAME")
        if self.targets is not None and self.source != "npy":
            raise InvalidValue("targets go with inputs in an .npy", "targets", "give the inputs as --data X.npy")
        for name, value in (("groups", self.groups), ("val_data", self.val_data), ("val_targets", self.val_targets)):
            if value is not None and self.source != "npy":
                raise InvalidValue(f"{name} goes with inputs in an .npy (an .npz carries groups_train, x_val, y_val)",
                                   name, "give the inputs as --data X.npy, or put the arrays in the .npz")
        if self.val_targets is not None and self.val_data is None:
            raise InvalidValue("validation targets go with validation inputs", "val_targets",
                               "give the validation inputs as --val-data XV.npy too")
        if self.image_size is not None and self.source != "images":
            raise InvalidValue("an image size goes with an image directory", "image_size",
                               "give --data DIR (one subdirectory per class), or leave out the image size")

    @property
    def name(self) -> str:
        """The dataset's name: the built-in name, or the file or directory name."""
        return self.source if self.path is None else Path(self.path).name

    def to_json(self) -> dict[str, Any]:
        payload = {"source": self.source, "path": self.path, "targets": self.targets, "input_scale": self.input_scale,
                   "input_offset": self.input_offset,
                   "image_size": None if self.image_size is None else list(self.image_size)}
        payload.update({key: value for key, value in (("groups", self.groups), ("val_data", self.val_data),
                                                      ("val_targets", self.val_targets)) if value is not None})
        return payload

    @classmethod
    def from_json(cls, payload: object, where: str) -> DataSpec:
        """The spec a record holds (`dataset.spec`); a DataError names what is malformed."""
        if not isinstance(payload, dict):
            raise DataError("dataset.spec is not a JSON object", where, "re-create the file with `tinycomp eval --json`")
        known = {"source", "path", "targets", "input_scale", "input_offset", "image_size", "groups", "val_data",
                 "val_targets"}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise DataError(f"dataset.spec has unknown keys {', '.join(unknown)}", where,
                            "the file was written by another tinycomp version")
        size = payload.get("image_size")
        try:
            return cls(str(payload.get("source")), _optional_str(payload.get("path")),
                       _optional_str(payload.get("targets")), _optional_float(payload.get("input_scale")),
                       _optional_float(payload.get("input_offset")),
                       None if size is None else (int(size[0]), int(size[1])), _optional_str(payload.get("groups")),
                       _optional_str(payload.get("val_data")), _optional_str(payload.get("val_targets")))
        except (TypeError, ValueError, IndexError, InvalidValue) as e:
            raise DataError(f"dataset.spec is malformed: {e}", where, "re-create the file with `tinycomp eval --json`") from e


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _optional_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r} is not a number")
    return float(value)
