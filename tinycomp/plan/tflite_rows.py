"""The rows a .tflite plan measures on (`PlanRows`): a seeded subset of the validation rows for the
candidates, and the check's rows (those and `CHECK_MULTIPLE` times as many in all); the task's score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinycomp.data import Dataset, check_fits_model
from tinycomp.errors import DataError
from tinycomp.metrics import Task, choose_task
from tinycomp.plan.measure import seeded_rows
from tinycomp.plan.request import Measurement
from tinycomp.tflite.model import parse_tflite

# The check measures the chosen plan on the candidates' rows and fresh held-out rows, this many times as
# many in all (with --validation-rows 0: on every held-out row). 1 (the candidates' rows only) costs
# almost nothing (see Runner) but is biased: a plan chosen among many noisy measurements looks better on
# the rows it was chosen on (on the stand-in, a 2-bit plan measured +0.68 pp there and +0.98 pp on all
# held-out rows). Each fresh row costs a run of the given file and one of the plan's cut model.
# docs/palettize.md measures both, and what they cost in noise and time.
CHECK_MULTIPLE = 2


@dataclass(frozen=True)
class PlanRows:
    """The validation rows candidates are measured on (a seeded subset), and the check's rows: those, then
    as many held-out rows again as `CHECK_MULTIPLE` says (seeded; all of them when there are fewer)."""

    x: np.ndarray
    y: np.ndarray
    x_check: np.ndarray
    y_check: np.ndarray
    task: Task
    groups_check: np.ndarray | None = None  # the group of each check row (None: rows are the bound's unit)


def validation_rows(data: Dataset, int8: bytes, measurement: Measurement, seed: int, source: str) -> PlanRows:
    """The data's validation rows (`Dataset.validation_split`: its own validation set, whole groups held out
    by `seed`, else the last `validation_split` of the training rows), fitted to the model's input; a seeded
    subset of `validation_rows` of them for the candidates."""

    subgraph = parse_tflite(int8, source).subgraphs[0]
    input_shape = tuple(int(d) for d in subgraph.inputs[0].shape[1:])
    output_shape = tuple(int(d) for d in subgraph.outputs[0].shape[1:])
    data = data.fit_to(input_shape)
    task = choose_task(data.y_test[:1] if data.labels else None, output_shape, measurement.task)
    check_fits_model(data, input_shape, int(output_shape[-1]) if output_shape else 1, source, task=task,
                     output_shape=output_shape)
    n = len(data.x_train)
    if data.x_val is None and data.groups_train is None and int(round(n * measurement.validation_split)) < 1:
        raise DataError(f"{n} training rows leave no validation rows at a split of {measurement.validation_split:g}",
                        data.name, "use more data or a larger validation split")
    split = data.validation_split(measurement.validation_split, seed)
    _, x_all, y_all = data.validation_rows(split)
    rows, check = row_sets(len(x_all), measurement.validation_rows or 0, seed)
    groups = None if split.val_groups is None else split.val_groups[check]
    return PlanRows(x_all[rows], y_all[rows], x_all[check], y_all[check], task, groups)


def row_sets(held: int, validation_rows: int, seed: int,
             multiple: float = CHECK_MULTIPLE) -> tuple[np.ndarray, np.ndarray]:
    """(the candidates' rows: a seeded subset of `validation_rows` of the `held` rows, or all with 0; the
    check's rows: those first, then seeded fresh ones up to `multiple` times as many in all)."""

    rows = seeded_rows(held, validation_rows or None, seed=seed, stream=2)
    rest = np.setdiff1d(np.arange(held), rows)
    wanted = max(0, int(multiple * validation_rows) - len(rows)) if validation_rows else len(rest)
    fresh = rest[seeded_rows(len(rest), wanted, seed=seed, stream=3)] if len(rest) and wanted else rest[:0]
    return rows, np.concatenate([rows, fresh])


def score(outputs: np.ndarray, y: np.ndarray, task: Task) -> float:
    """The task's plan score: top-1 accuracy, or output SNR vs y in dB."""
    return float(task.plan_score(outputs, y))


def input_shape(int8: bytes, source: str = "model") -> tuple[int, ...]:
    """The shape of one input row of the model (its batch axis left out)."""
    return tuple(int(d) for d in parse_tflite(int8, source).subgraphs[0].inputs[0].shape[1:])


def task_of(int8: bytes, data: Dataset, task: Task | None, source: str = "model") -> Task:
    """The task the data and the model's output make (or `task`); the data is checked to fit the model."""
    return validation_rows(data, int8, Measurement(validation_rows=1, task=task), 0, source).task
