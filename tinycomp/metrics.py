"""The metric of a model's task, and agreement with a baseline model's outputs.

Two tasks, one object each in `TASKS` (`CLASSIFY`, `REGRESS`); each carries what a plan needs to
know of it (the score it measures, the drop unit and scale, the noise of one measurement, how a
score reads, and the budget that is in its unit):

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
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tinycomp.errors import DataError, InvalidValue

SNR_CAP_DB = 200.0  # float32 round-off alone stays below ~140 dB; 200 means "identical"


class Task(ABC):
    """What a task measures; `score` and `agreement` return {metric name: value}.

    A plan measures one number per model, `plan_score`, and counts drops of it in drop units:
    `scale` × (reference − score), in `unit`. `noise` is the standard error of one plan score.
    Instances are values (frozen, equal by class), so they pickle to worker processes.
    """

    name: ClassVar[str]  # "classify" | "regress": the CLI's --task value and the records' "task"
    metrics: ClassVar[tuple[str, ...]]
    unit: ClassVar[str]  # the drop unit: "pp" or "dB"
    scale: ClassVar[float]  # drop units per unit of plan score
    metric: ClassVar[str]  # what the plan score is: "accuracy" or "SNR"
    long_metric: ClassVar[str]  # "top-1 accuracy" or "output SNR"
    budget_field: ClassVar[str]  # the drop budget's field (and plan record key): max_accuracy_drop, max_snr_drop
    budget_option: ClassVar[str]  # the option that sets it: --max-accuracy-drop or --max-snr-drop
    budget_text: ClassVar[str]  # "a top-1 accuracy budget"
    budget_example: ClassVar[str]  # "PP instead, e.g. --max-accuracy-drop 0.5"
    evidence: ClassVar[str]  # what in the data makes this task: "integer labels"
    score_range: ClassVar[tuple[float, float]]  # the values a plan score can take
    fixed_loss: ClassVar[str | None]  # the fine-tuning loss of every model of this task (None: from the output)
    keras_metrics: ClassVar[tuple[str, ...]]  # what Keras reports while fine-tuning
    # Scored by top-1 accuracy against integer class labels: its results carry an accuracy (a drop in pp
    # against a baseline), its data needs class labels; without it a result's accuracy is null.
    has_accuracy: ClassVar[bool]

    @abstractmethod
    def check_targets(self, y: np.ndarray, output_shape: tuple[int, ...], where: str) -> None: ...

    @abstractmethod
    def score(self, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]: ...

    @abstractmethod
    def agreement(self, outputs: np.ndarray, baseline_outputs: np.ndarray) -> dict[str, float]: ...

    @abstractmethod
    def plan_score(self, outputs: np.ndarray, y: np.ndarray) -> float: ...

    @abstractmethod
    def noise(self, score: float, samples: int) -> float:
        """The standard error of one plan score measured on `samples` rows, in drop units."""

    @abstractmethod
    def paired_noise(self, reference: np.ndarray, outputs: np.ndarray, y: np.ndarray) -> float:
        """The standard error of (reference score − score of `outputs`) on the same rows, in drop units."""

    @abstractmethod
    def value_text(self, score: float, digits: int = 2) -> str: ...

    def score_text(self, score: float, digits: int = 2) -> str:
        return self.value_text(score, digits)

    def drop_text(self) -> str:
        """'accuracy drop' or 'SNR drop'."""
        return f"{self.metric} drop"


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


def predicted_classes(outputs: np.ndarray) -> np.ndarray:
    """Each row's predicted class: the argmax (one sigmoid unit: 1 above 0.5)."""
    return _top1(outputs)


def _top1(outputs: np.ndarray) -> np.ndarray:
    outputs = np.asarray(outputs)
    if outputs.ndim == 2 and outputs.shape[1] == 1:  # one sigmoid unit: class 1 above 0.5
        return (outputs[:, 0] > 0.5).astype(np.int64)
    return np.asarray(np.argmax(outputs.reshape(len(outputs), -1), axis=-1))


def _same_shape(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size != b.size or len(a) != len(b):
        raise DataError(f"cannot compare outputs of shape {a.shape} with {b.shape}", "outputs",
                        "compare models with the same output on the same rows")
    return a.reshape(len(a), -1), b.reshape(len(b), -1)


@dataclass(frozen=True)
class Classify(Task):
    """Top-1 accuracy against integer labels 0..N-1; a plan's drops are in percentage points (pp).

    One accuracy p measured on n rows is ±100·sqrt(p(1−p)/n) pp (binomial).
    """

    name: ClassVar[str] = "classify"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    unit: ClassVar[str] = "pp"
    scale: ClassVar[float] = 100.0
    metric: ClassVar[str] = "accuracy"
    budget_field: ClassVar[str] = "max_accuracy_drop"
    budget_option: ClassVar[str] = "--max-accuracy-drop"
    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    budget_text: ClassVar[str] = "a top-1 accuracy budget"
    budget_example: ClassVar[str] = "PP instead, e.g. --max-accuracy-drop 0.5"
    long_metric: ClassVar[str] = "top-1 accuracy"
    evidence: ClassVar[str] = "integer labels"
    fixed_loss: ClassVar[str | None] = None
    keras_metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    has_accuracy: ClassVar[bool] = True

    def plan_score(self, outputs: np.ndarray, y: np.ndarray) -> float:
        return top1_accuracy(outputs, y)

    def noise(self, score: float, samples: int) -> float:
        return 100.0 * math.sqrt(score * (1 - score) / max(samples, 1))

    def paired_noise(self, reference: np.ndarray, outputs: np.ndarray, y: np.ndarray) -> float:
        """From the rows only one of the two gets right (a paired difference of proportions)."""
        n = len(outputs)
        truth = np.asarray(y).reshape(-1)
        right_ref = predicted_classes(reference) == truth
        right_new = predicted_classes(outputs) == truth
        lost, gained = int(np.sum(right_ref & ~right_new)), int(np.sum(~right_ref & right_new))
        variance = (lost + gained - (lost - gained) ** 2 / max(n, 1)) / max(n, 1) ** 2
        return float(self.scale * max(variance, 0.0) ** 0.5)

    def value_text(self, score: float, digits: int = 2) -> str:
        """'97.10%'."""
        return f"{100 * score:.{digits}f}%"


    def check_targets(self, y: np.ndarray, output_shape: tuple[int, ...], where: str) -> None:
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


@dataclass(frozen=True)
class Regress(Task):
    """MSE and output SNR against targets shaped like the model's output (y = x to reconstruct); a plan
    scores the output SNR in dB and counts its drops in dB.

    One SNR measured on n rows is ±10/ln(10)·sqrt(2/n) dB: the error energy is a mean over n rows, and
    with Gaussian errors its relative standard error is sqrt(2/n) (a χ² with n degrees of freedom); the
    signal energy is fixed by the targets. Rows, not elements, count as independent (elements of one
    row are correlated), which keeps the estimate on the safe (larger) side.
    """

    name: ClassVar[str] = "regress"
    metrics: ClassVar[tuple[str, ...]] = ("mse", "snr_db")
    unit: ClassVar[str] = "dB"
    scale: ClassVar[float] = 1.0
    metric: ClassVar[str] = "SNR"
    budget_field: ClassVar[str] = "max_snr_drop"
    budget_option: ClassVar[str] = "--max-snr-drop"
    score_range: ClassVar[tuple[float, float]] = (-SNR_CAP_DB, SNR_CAP_DB)
    budget_text: ClassVar[str] = "an output SNR budget"
    budget_example: ClassVar[str] = "DB instead, e.g. --max-snr-drop 1"
    long_metric: ClassVar[str] = "output SNR"
    evidence: ClassVar[str] = "no class labels"
    fixed_loss: ClassVar[str | None] = "mean_squared_error"
    keras_metrics: ClassVar[tuple[str, ...]] = ()
    has_accuracy: ClassVar[bool] = False

    def plan_score(self, outputs: np.ndarray, y: np.ndarray) -> float:
        return snr_db(np.asarray(y), outputs)

    def noise(self, score: float, samples: int) -> float:
        return 10.0 / math.log(10.0) * math.sqrt(2.0 / max(samples, 1))

    def paired_noise(self, reference: np.ndarray, outputs: np.ndarray, y: np.ndarray) -> float:
        """One SNR measurement's noise (`noise`)."""
        return self.noise(0.0, len(outputs))

    def value_text(self, score: float, digits: int = 2) -> str:
        """'20.30 dB'."""
        return f"{score:.{digits}f} dB"

    def score_text(self, score: float, digits: int = 2) -> str:
        """'SNR 20.30 dB'."""
        return f"SNR {self.value_text(score, digits)}"


    def check_targets(self, y: np.ndarray, output_shape: tuple[int, ...], where: str) -> None:
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


CLASSIFY: Task = Classify()
REGRESS: Task = Regress()
TASKS: dict[str, Task] = {task.name: task for task in (CLASSIFY, REGRESS)}


def get_task(name: str) -> Task:
    """The task object for 'classify' or 'regress'."""
    try:
        return TASKS[name]
    except KeyError:
        raise InvalidValue(f"unknown task {name!r}", "task", f"choose one of {', '.join(TASKS)}") from None


def choose_task(y: np.ndarray | None, output_shape: tuple[int, ...], override: Task | None = None) -> Task:
    """`override` if given; regress when there are no labels or y rows have the output's shape; else classify."""
    if override is not None:
        return override
    if y is None:
        return REGRESS
    y = np.asarray(y) if not hasattr(y, "shape") else y
    row = tuple(int(d) for d in y.shape[1:])
    if row and row == tuple(int(d) for d in output_shape):
        return REGRESS
    if not np.issubdtype(y.dtype, np.integer):
        return REGRESS
    return CLASSIFY
