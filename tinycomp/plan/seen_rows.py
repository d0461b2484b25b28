"""Whether the given model was trained on the plan's validation rows (pure numpy).

A drop measured on rows a model has learned is optimistic: a compressed model keeps the answers of
rows its original fits with a wide margin, and those are the rows it was trained on. Measured on
watch.npz (a Conv1D trained on all eight subjects, two of them then held out as the plan's
validation groups), a .tflite plan checked +0.00 pp on the held-out subjects and lost 1.55 pp on the
two test subjects. Holding out groups keeps them out of the plan's fine-tunes, not out of the model.

`tinycomp train` records the rows it held out (`TrainRecord.validation`, a `ValidationSource`).
`trained_on_validation` counts how many of a plan's validation rows the model was trained on, from
that record; `validation_note` is the one line a plan prints about it: none seen, how many seen and
how to validate on rows the model never saw, or (no record) what the plan has to assume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinycomp.data.validation import ValidationSource, ValidationSplit


@dataclass(frozen=True)
class TrainedRows:
    """What a model's training held out (`held_out`: its `ValidationSource`), its training split and
    seed, and the record that says so."""

    held_out: ValidationSource
    validation_split: float
    seed: int
    record_path: str


def trained_on_validation(trained: ValidationSource, split: ValidationSplit, groups_train: np.ndarray | None,
                          train_rows: int) -> int | None:
    """How many of `split`'s validation rows the model was trained on (None: the record is of other
    data: its rows do not add up to `train_rows`, or it held out groups this data does not have)."""
    expected = trained.fit_rows if trained.kind == "given" else trained.rows + trained.fit_rows
    if expected != train_rows:
        return None
    if split.val is None:  # the data's own validation set: not training rows
        return 0
    if trained.kind == "given":  # validated on x_val, so trained on every training row
        return len(split.val)
    if trained.kind == "rows":  # Keras's validation_split: trained on the first fit_rows rows
        return int(np.count_nonzero(split.val < trained.fit_rows))
    if groups_train is None:
        return None
    held = np.asarray(trained.held_out, dtype=str)
    return int(np.count_nonzero(~np.isin(np.asarray(groups_train)[split.val].astype(str), held)))


def validation_note(model_name: str, trained: TrainedRows | None, seen: int | None, split: ValidationSplit) -> str:
    """The plan's one line on whether its validation rows were in the model's training."""
    rows = split.source.rows
    if split.val is None:
        return (f"validation rows: the data's own validation set ({rows:,} rows); the plan assumes {model_name} "
                "was not trained on them")
    if trained is None or seen is None:
        why = "no `tinycomp train` record of its held-out rows" if trained is None else f"{trained.record_path} is of other data"
        return (f"{model_name}'s training rows are not known ({why}): the plan assumes it was not trained on its "
                f"{rows:,} validation rows; if it was, its measured drops are optimistic (validate on rows it never "
                "saw: x_val/y_val, or groups it was not trained on)")
    if seen == 0:
        return f"validation rows: none of the {rows:,} was in {model_name}'s training ({trained.record_path})"
    return (f"{model_name} was trained on {seen:,} of the plan's {rows:,} validation rows ({trained.record_path}): "
            "drops measured on rows a model has learned are optimistic; validate on the rows its training held "
            f"out: --validation-split {trained.validation_split:g} --seed {trained.seed}")
