"""The metric of a model's task, and agreement with a baseline model's outputs.

Two tasks, one object each in `TASKS`:

- `classify`: top-1 accuracy against integer labels; agreement with a baseline is the share of rows
  whose top-1 class is the same, plus the output SNR.
- `regress` (regression and reconstruction, e.g. an autoencoder): MSE and output SNR in dB against
  the targets; agreement with a baseline is the output SNR in dB.

`choose_task` picks one: an explicit override wins; data without labels, or labels shaped like
the model's output, mean regress; otherwise classify. Output SNR is
10·log10(Σref² / Σ(ref − out)²), the figure conversion scripts and ai-edge-quantizer print;
identical outputs are reported as SNR_CAP_DB instead of infinity (JSON has no infinity).
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from tinycomp.errors import DataError, InvalidValue

SNR_CAP_DB = 200.0  # float32 round-off alone stays below ~140 dB; 200 means "identical"


class Task(Protocol):
    """What a task measures; `score` and `agreement` return {metric name: value}."""

    name: str
    metrics: tuple[str, ...]

    def check_targets(self, y: np.ndarray, output_shape: tuple, where: str) -> None: ...

    def score(self, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]: ...

    def agreement(self, outputs: np.ndarray, baseline_outputs: np.ndarray) -> dict[str, float]: ...


def top1_accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose argmax is the label."""
    outputs, labels = np.asarray(outputs), np.asarray(labels).ravel()
    if len(outputs) == 0:
        raise DataError("no samples to score", "outputs")
    return float(np.mean(_top1(outputs) == labels))


def mse(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Mean squared error over every element."""
    outputs, targets = _same_shape(outputs, targets)
    return float(np.mean((outputs - targets) ** 2))


def snr_db(reference: np.ndarray, output: np.ndarray) -> float:
    """10·log10(Σref² / Σ(ref − out)²) in dB, clipped to ±SNR_CAP_DB (identical outputs → +cap)."""
    reference, output = _same_shape(reference, output)
    signal = float(np.sum(reference ** 2))
    noise = float(np.sum((reference - output) ** 2))
    if noise == 0.0:
        return SNR_CAP_DB
    if signal == 0.0:
        return -SNR_CAP_DB
    return float(np.clip(10.0 * math.log10(signal / noise), -SNR_CAP_DB, SNR_CAP_DB))


def top1_agreement(outputs: np.ndarray, baseline_outputs: np.ndarray) -> float:
    """Share of rows whose top-1 class equals the baseline's."""
    outputs, baseline_outputs = _same_shape(outputs, baseline_outputs)
    return float(np.mean(_top1(outputs) == _top1(baseline_outputs)))


def _top1(outputs: np.ndarray) -> np.ndarray:
    outputs = np.asarray(outputs)
    if outputs.ndim == 2 and outputs.shape[1] == 1:  # one sigmoid unit: class 1 above 0.5
        return (outputs[:, 0] > 0.5).astype(np.int64)
    return np.argmax(outputs.reshape(len(outputs), -1), axis=-1)


def _same_shape(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size != b.size or len(a) != len(b):
        raise DataError(f"cannot compare outputs of shape {a.shape} with {b.shape}", "outputs",
                        "compare models with the same output on the same rows")
    return a.reshape(len(a), -1), b.reshape(len(b), -1)


class Classify:
    """Top-1 accuracy against integer labels 0..N-1."""

    name = "classify"
    metrics = ("accuracy",)

    def check_targets(self, y: np.ndarray, output_shape: tuple, where: str) -> None:
        y = np.asarray(y)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"labels have shape {y.shape} and dtype {y.dtype}; classification needs one integer "
                            "label per row", where, "give labels 0..N-1, or use the regress task for other targets")
        classes = max(int(output_shape[-1]), 2) if output_shape else None
        if classes is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise DataError(f"labels run from {int(y.min())} to {int(y.max())} but the model has {classes} classes",
                            where, "use the dataset the model was trained on")

    def score(self, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return {"accuracy": top1_accuracy(outputs, y)}

    def agreement(self, outputs: np.ndarray, baseline_outputs: np.ndarray) -> dict[str, float]:
        return {"agreement_top1": top1_agreement(outputs, baseline_outputs),
                "agreement_snr_db": snr_db(baseline_outputs, outputs)}


class Regress:
    """MSE and output SNR against targets shaped like the model's output (y = x to reconstruct)."""

    name = "regress"
    metrics = ("mse", "snr_db")

    def check_targets(self, y: np.ndarray, output_shape: tuple, where: str) -> None:
        y = np.asarray(y)
        row = tuple(y.shape[1:])
        expected = tuple(int(d) for d in output_shape)
        if row != expected and int(np.prod(row)) != int(np.prod(expected)):
            raise DataError(f"targets have rows of shape {row} but the model outputs {expected}", where,
                            "regression targets must have the model output's shape (or omit y to reconstruct x)")

    def score(self, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return {"mse": mse(outputs, y), "snr_db": snr_db(y, outputs)}

    def agreement(self, outputs: np.ndarray, baseline_outputs: np.ndarray) -> dict[str, float]:
        return {"agreement_snr_db": snr_db(baseline_outputs, outputs)}


TASKS: dict[str, Task] = {task.name: task for task in (Classify(), Regress())}  # type: ignore[misc]


def get_task(name: str) -> Task:
    """The task object for 'classify' or 'regress'."""
    try:
        return TASKS[name]
    except KeyError:
        raise InvalidValue(f"unknown task {name!r}", "task", f"choose one of {', '.join(TASKS)}") from None


def choose_task(y: np.ndarray | None, output_shape: tuple, override: str | None = None) -> Task:
    """`override` if given; regress when there are no labels or y rows have the output's shape; else classify."""
    if override is not None:
        return get_task(override)
    if y is None:
        return TASKS["regress"]
    y = np.asarray(y) if not hasattr(y, "shape") else y
    row = tuple(int(d) for d in y.shape[1:])
    if row and row == tuple(int(d) for d in output_shape):
        return TASKS["regress"]
    if not np.issubdtype(y.dtype, np.integer):
        return TASKS["regress"]
    return TASKS["classify"]
