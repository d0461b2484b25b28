"""What `make_plan` is asked (`PlanRequest`: the budget, the `Measurement`, the `ByteCosts`) and what
it answers (`PlanOutcome`), and what a backend's joint check measures (`JointDrop`): plain dataclasses
with no TensorFlow, so the CLI, notebooks and tests build them alike. One `Measurement` serves both
backends: a .tflite is measured zero-shot (its epochs are 0), at the bits of its cluster counts.

Values are checked here, by field name (`InvalidValue.field`), because Python callers can get them
wrong too; the CLI maps the fields to its options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinycomp.bounds import Checked
from tinycomp.data.validation import ValidationSource
from tinycomp.errors import InputFileError, InvalidValue
from tinycomp.fileio import JsonDict
from tinycomp.metrics import Task, get_task
from tinycomp.models import FINE_TUNE_LEARNING_RATE
from tinycomp.plan.candidates import FAST, FAST_FINE_TUNE_ROWS, FAST_VALIDATION_ROWS, Estimate, estimate_named
from tinycomp.plan.choose import DEFAULT_CLUSTER_COUNTS, Budget, Plan, SensitivityTable, check_counts

__all__ = ["AUTO_LEARNING_RATES", "FAST_FINE_TUNE_ROWS", "FAST_VALIDATION_ROWS", "ByteCosts", "JointDrop", "Measurement",
           "PlanOutcome", "PlanRequest"]

DEFAULT_VALIDATION_SPLIT = 0.2
# A .tflite's candidates: 2–6 bits (2 values per channel, 1 bit, zero-shot is rarely usable).
TFLITE_CANDIDATE_COUNTS = (4, 8, 16, 32, 64)
IO_TYPES = ("uint8", "int8", "float32")
# With no learning rate given, plan fine-tunes the unclustered control at each of these and uses the one whose
# control's drop has the lower 95% upper bound on validation (ties: the better score, then the first). Measured (docs/plan.md): 1e-3 loses accuracy on
# converged models, 1e-4 keeps it; on an undertrained model 1e-3 keeps training it (+2.5 pp on the bench model).
AUTO_LEARNING_RATES = (FINE_TUNE_LEARNING_RATE, 1e-3)
# Which training rows a .tflite's calibration rows are drawn from: outside the validation rows (what this
# tinycomp does, and what the spec tells `palettize`), or every row (tables recorded before that).
CALIBRATED_OUTSIDE_VALIDATION = "outside validation"
CALIBRATED_ON_EVERY_ROW = "every row"



@dataclass(frozen=True)
class Measurement:
    """How each candidate's accuracy drop is measured (and how the chosen plan is checked)."""

    cluster_counts: tuple[int, ...] = DEFAULT_CLUSTER_COUNTS
    layers: tuple[str, ...] = ()  # empty: every clusterable layer
    per_channel_conv: bool = True
    epochs: int = 1
    batch_size: int = 128
    validation_split: float = DEFAULT_VALIDATION_SPLIT
    init: str = "kmeans++"
    # FAST (or "fast", the default): zero-shot for every candidate, fine-tune only those that can be chosen
    estimate: Estimate = FAST
    # Rows per candidate: 0 = all; None = the estimate's default (fast: FAST_*_ROWS; fine-tune: all).
    fine_tune_rows: int | None = None
    validation_rows: int | None = None
    learning_rate: float | None = None  # Adam's, for every fine-tune; None: the best of AUTO_LEARNING_RATES
    # CLASSIFY or REGRESS (or its name); None: chosen from the data and the model's output, as `cluster` does
    task: Task | None = None
    # a .tflite's candidates palettized with data as `palettize --data --calibration-rows N` does (0: without)
    calibration_rows: int = 0
    calibration_from: str = CALIBRATED_OUTSIDE_VALIDATION

    def __post_init__(self) -> None:
        if isinstance(self.task, str):
            object.__setattr__(self, "task", get_task(self.task))
        if isinstance(self.estimate, str):
            object.__setattr__(self, "estimate", estimate_named(self.estimate))
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise InvalidValue(f"learning rate must be above 0, got {self.learning_rate}", "learning_rate", "e.g. 1e-3")
        for name, default in (("fine_tune_rows", self.estimate.fine_tune_rows),
                              ("validation_rows", self.estimate.validation_rows)):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, default)
            elif value < 0:
                raise InvalidValue(f"{name.replace('_', ' ')} must be 0 (all) or more, got {value}", name, "e.g. 8192")
        object.__setattr__(self, "cluster_counts", check_counts(self.cluster_counts))
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.epochs < 0:
            raise InvalidValue(f"epochs must be 0 or more, got {self.epochs}", "epochs", "e.g. 1")
        if self.calibration_rows < 0:
            raise InvalidValue(f"calibration rows must be 0 (none) or more, got {self.calibration_rows}",
                               "calibration_rows", "e.g. 512")
        if self.calibration_from not in (CALIBRATED_OUTSIDE_VALIDATION, CALIBRATED_ON_EVERY_ROW):
            raise InvalidValue(f"calibration_from must be {CALIBRATED_OUTSIDE_VALIDATION!r} or "
                               f"{CALIBRATED_ON_EVERY_ROW!r}, got {self.calibration_from!r}", "calibration_from",
                               f"e.g. {CALIBRATED_OUTSIDE_VALIDATION!r}")
        if self.batch_size < 1:
            raise InvalidValue(f"batch size must be 1 or more, got {self.batch_size}", "batch_size", "e.g. 128")
        if not 0 < self.validation_split < 1:
            raise InvalidValue(f"validation split must be in (0, 1), got {self.validation_split}", "validation_split",
                               "e.g. 0.2")


    @property
    def rate(self) -> float:
        """The learning rate to fine-tune with (before the auto choice is made: the first candidate rate)."""
        return self.learning_rate if self.learning_rate is not None else AUTO_LEARNING_RATES[0]

    def rows(self, name: str) -> int | None:
        """fine_tune_rows or validation_rows as a row limit (None: every row)."""
        value = getattr(self, name)
        return value or None

    def to_json(self) -> JsonDict:
        """The fields as JSON values (what partial tables record and compare)."""
        return {"cluster_counts": list(self.cluster_counts), "layers": list(self.layers),
                "per_channel_conv": self.per_channel_conv, "epochs": self.epochs, "batch_size": self.batch_size,
                "validation_split": self.validation_split, "init": self.init, "estimate": self.estimate.name,
                "fine_tune_rows": self.fine_tune_rows, "validation_rows": self.validation_rows,
                "learning_rate": self.learning_rate, "task": self.task.name if self.task else None,
                **({"calibration_rows": self.calibration_rows, "calibration_from": self.calibration_from}
                   if self.calibration_rows else {})}

    @classmethod
    def from_json(cls, payload: JsonDict) -> Measurement:
        """The measurement `to_json` wrote (one with calibration rows but no `calibration_from` calibrated on
        every training row: recorded before calibration left the validation rows out)."""
        since = {"calibration_from": CALIBRATED_ON_EVERY_ROW} if payload.get("calibration_rows") else {}
        return cls(**{**since, **payload, "cluster_counts": tuple(payload["cluster_counts"]),
                      "layers": tuple(payload["layers"])})

    def check_reusable(self, source: str) -> None:
        """InputFileError when a recorded table's candidates were calibrated on every training row, the
        validation rows among them: this tinycomp calibrates outside them (and its spec tells `palettize` to),
        so the chain would not make what that table measured."""
        if self.calibration_rows and self.calibration_from != CALIBRATED_OUTSIDE_VALIDATION:
            raise InputFileError("its .tflite candidates were calibrated on every training row, the validation rows "
                                 "among them (recorded before calibration left them out)", source,
                                 "measure the table again: plan without --sensitivity/--merge")


@dataclass(frozen=True)
class ByteCosts:
    """How the real chain will make the file whose bytes are predicted (quantize --per-tensor-dense
    --io, compress --strip)."""

    per_tensor_dense: bool = False
    io: str = "uint8"
    strip: bool = False
    calibration_count: int = 100

    def __post_init__(self) -> None:
        if self.io not in IO_TYPES:
            raise InvalidValue(f"input/output type must be one of {', '.join(IO_TYPES)}, got {self.io!r}", "io")


@dataclass(frozen=True)
class PlanRequest:
    """One planning request: the budget, how to measure, how bytes are counted, the check and the seed."""

    budget: Budget
    measurement: Measurement = field(default_factory=Measurement)
    costs: ByteCosts = field(default_factory=ByteCosts)
    check: bool = True
    seed: int = 0
    refine: bool = True  # after the table's choice, step layers down while the measured drop allows (make.refined_plan)


@dataclass(frozen=True)
class JointDrop:
    """A plan measured with all its tensors compressed at once: its drop vs the given model (the table's
    unit), the fine-tuning epochs that gave it (0: zero-shot), the standard error of that drop as a
    paired difference on the same rows, and the agreement with the given model's outputs (None: not
    measured)."""

    drop: float
    epochs: int
    noise: float
    agreement: dict[str, float] | None = None
    # its paired confidence bounds on the validation rows (by group when the data has groups), which decide
    checked: Checked | None = None


@dataclass(frozen=True)
class PlanOutcome:
    """What `make_plan` found: the plan to use (exact bytes and arena measured), every plan the check
    tried, the sensitivity table, the budget with a target ratio resolved to bytes, the backend that
    measured ("keras" or "tflite") and the rows the check measured on."""

    plan: Plan
    tried: list[Plan]
    table: SensitivityTable
    budget: Budget
    noise: float  # the standard error of one validation accuracy
    backend: str = "keras"
    check_rows: int = 0
    validation: ValidationSource | None = None  # where the validation rows came from (rows, groups or given)

    @property
    def refused(self) -> Plan | None:
        """Under a drop budget, when the check accepted none of the plans it measured (so the plan compresses
        nothing): the least harmful of them; else None."""
        measured = [p for p in self.tried if p.clustered() and p.checked_drop is not None]
        if self.budget.max_drop is None or self.plan.clustered() or not measured:
            return None
        return min(measured, key=lambda p: (_upper(p), p.checked_drop or 0.0))


def _upper(plan: Plan) -> float:
    """The checked drop's upper bound (the drop itself for a check without bounds)."""
    if plan.checked_bound is not None:
        return Checked.from_json(plan.checked_bound, "the plan's check").drop.high
    return plan.checked_drop if plan.checked_drop is not None else float("inf")
