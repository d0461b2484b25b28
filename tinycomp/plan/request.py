"""What `make_plan` is asked (`PlanRequest`) and what it answers (`PlanOutcome`): plain, frozen
dataclasses with no TensorFlow, so the CLI, notebooks and tests build them alike.

Values are checked here, by field name (`InvalidValue.field`), because Python callers can get them
wrong too; the CLI maps the fields to its options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinycomp.errors import InvalidValue
from tinycomp.plan.choose import DEFAULT_CLUSTER_COUNTS, Budget, Plan, SensitivityTable, check_counts

DEFAULT_VALIDATION_SPLIT = 0.2
IO_TYPES = ("uint8", "int8", "float32")
ESTIMATES = ("fine-tune", "fast")


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
    estimate: str = "fine-tune"  # "fast": zero-shot for every candidate, fine-tune only those that can be chosen

    def __post_init__(self) -> None:
        if self.estimate not in ESTIMATES:
            raise InvalidValue(f"estimate must be one of {', '.join(ESTIMATES)}, got {self.estimate!r}", "estimate")
        object.__setattr__(self, "cluster_counts", check_counts(self.cluster_counts))
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.epochs < 0:
            raise InvalidValue(f"epochs must be 0 or more, got {self.epochs}", "epochs", "e.g. 1")
        if self.batch_size < 1:
            raise InvalidValue(f"batch size must be 1 or more, got {self.batch_size}", "batch_size", "e.g. 128")
        if not 0 < self.validation_split < 1:
            raise InvalidValue(f"validation split must be in (0, 1), got {self.validation_split}", "validation_split",
                               "e.g. 0.2")


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


@dataclass(frozen=True)
class PlanOutcome:
    """What `make_plan` found: the plan to use (exact bytes and arena measured), every plan the check
    tried, the sensitivity table, and the budget with a target ratio resolved to bytes."""

    plan: Plan
    tried: list[Plan]
    table: SensitivityTable
    budget: Budget
    noise_pp: float  # the standard error of one validation accuracy

    @property
    def over_budget(self) -> bool:
        """The checked drop exceeds an accuracy budget (the check kept the least harmful plan it tried)."""
        drop, budget = self.plan.checked_drop_pp, self.budget.max_drop_pp
        return drop is not None and budget is not None and drop > budget
