"""`PlanRecord`: the plan sidecar (OUTPUT .json) as a typed record with one writer and one reader.

Other tools read these files, so the keys and values are those `plan` always wrote, plus
`schema_version`, `backend` ("keras": TFMOT clustering measured it; "tflite": palettization of an
int8 .tflite, measured in TFLM), `task` ("classify": drops in pp of top-1 accuracy; "regress": drops in dB of
output SNR, see metrics.Task) and `max_snr_drop` (the regress budget, as `max_accuracy_drop` is the
classify one). In a regress record every `*_pp` value (drops, credit, check) is in dB and
every `accuracy`/`*_accuracy` value is an output SNR in dB; the key names stay those of classifiers. Files written before `schema_version` existed read as version 1; a newer or
unknown version, or a file that is not a plan record, is an `InputFileError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

from tinycomp.errors import InputFileError, InvalidValue
from tinycomp.fileio import JsonDict
from tinycomp.metrics import CLASSIFY, REGRESS, Task
from tinycomp.models import DEFAULT_LEARNING_RATE
from tinycomp.plan.candidates import FINE_TUNE, Estimate, estimate_named
from tinycomp.plan.choose import Plan, SensitivityTable, field_names, json_keys, task_named
from tinycomp.plan.provenance import Provenance
from tinycomp.plan.request import (
    CALIBRATED_ON_EVERY_ROW,
    CALIBRATED_OUTSIDE_VALIDATION,
    ByteCosts,
    Measurement,
    PlanOutcome,
    PlanRequest,
)
from tinycomp.records import Record

SCHEMA_VERSION = 1
NOT_A_RECORD = "not a sensitivity table written by `tinycomp plan`"
RECORD_HINT = "give the .json that `plan -o PLAN.yaml` wrote next to PLAN.yaml"


@dataclass(frozen=True)
class CheckedPlan:
    """One plan the check measured: its cluster counts, predicted and measured drop."""

    clusters: dict[str, int]
    predicted_drop: float
    checked_drop: float | None
    epochs: int | None = None  # the fine-tuning epochs of the better measurement (0: zero-shot)
    bound: JsonDict | None = None  # its paired bounds (`bounds.Checked` as JSON; None: not measured)

    @classmethod
    def of(cls, plan: Plan) -> CheckedPlan:
        return cls({n: o.clusters or 0 for n, o in plan.clustered().items()}, plan.predicted_drop,
                   plan.checked_drop, plan.epochs, plan.checked_bound)


@dataclass(frozen=True)
class PlanRecord(Record):
    """Everything a plan was made from and what it chose (the sensitivity table included)."""

    STEP: ClassVar[str | None] = "plan"
    HINT: ClassVar[str] = RECORD_HINT
    SCHEMA: ClassVar[int] = SCHEMA_VERSION

    source: str
    source_sha256: str
    dataset: JsonDict
    seed: int
    clusters: list[int]
    per_channel_conv: bool
    epochs: int
    validation_split: float
    credit_fine_tuning: bool
    per_tensor_dense: bool
    io: str
    strip: bool
    max_accuracy_drop: float | None
    target_bytes: int | None
    target_ratio: float | None
    ram_budget: int | None
    float32_bytes: int | None
    sensitivity: SensitivityTable
    plan: Plan
    checked: list[CheckedPlan] = field(default_factory=list)
    estimate: Estimate = FINE_TUNE  # records from before the fast estimate measured every candidate fine-tuned
    fine_tune_rows: int = 0  # 0: every fit row
    validation_rows: int = 0  # 0: every validation row
    learning_rate: float = DEFAULT_LEARNING_RATE
    schema_version: int = SCHEMA_VERSION
    task: Task = CLASSIFY  # records from before regress plans are classify
    max_snr_drop: float | None = None
    backend: str = "keras"  # what measured: "keras" (TFMOT clustering) or "tflite" (palettization in TFLM)
    layers: list[str] = field(default_factory=list)  # the layers/tensors planned (empty: every one)
    noise: float | None = None  # the standard error of one score on the check's rows (drop units)
    check_rows: int = 0  # rows the joint check measured on (0: no check)
    calibration_rows: int = 0  # a .tflite's candidates calibrated on this many training rows (0: without data)
    calibration_from: str = CALIBRATED_OUTSIDE_VALIDATION  # which training rows (`Measurement.calibration_from`)
    # where the validation rows came from (`ValidationSource` as JSON: kind rows|groups|given, rows, groups)
    validation: JsonDict | None = None
    min_agreement: float | None = None  # classifiers: the top-1 agreement budget, percent (None: none)

    @classmethod
    def of(cls, *, model_path: str, provenance: Provenance, request: PlanRequest, outcome: PlanOutcome) -> PlanRecord:
        """The sidecar of a plan: what it was made from, the table and the choice."""
        m, costs, budget = request.measurement, request.costs, outcome.budget
        drop = {task.budget_field: budget.max_drop if budget.task == task else None for task in (CLASSIFY, REGRESS)}
        return cls(
            source=str(model_path), source_sha256=provenance.source_sha256, dataset=provenance.dataset,
            seed=request.seed, clusters=list(m.cluster_counts), per_channel_conv=m.per_channel_conv, epochs=m.epochs,
            validation_split=m.validation_split, credit_fine_tuning=budget.credit_fine_tuning,
            per_tensor_dense=costs.per_tensor_dense, io=costs.io, strip=costs.strip,
            max_accuracy_drop=drop["max_accuracy_drop"], max_snr_drop=drop["max_snr_drop"],
            target_bytes=budget.target_bytes, target_ratio=budget.target_ratio, ram_budget=budget.ram_bytes,
            float32_bytes=budget.float32_bytes, sensitivity=outcome.table, plan=outcome.plan,
            checked=[CheckedPlan.of(p) for p in outcome.tried], estimate=m.estimate,
            fine_tune_rows=m.fine_tune_rows or 0, validation_rows=m.validation_rows or 0,
            learning_rate=outcome.table.learning_rate or m.rate, task=outcome.table.task, backend=outcome.backend,
            layers=list(m.layers), noise=outcome.noise, check_rows=outcome.check_rows,
            calibration_rows=m.calibration_rows, calibration_from=m.calibration_from,
            validation=None if outcome.validation is None else outcome.validation.to_json(),
            min_agreement=budget.min_agreement)

    @property
    def provenance(self) -> Provenance:
        """The model, data and task the table was measured on."""
        return Provenance(self.source_sha256, self.dataset, self.task)

    @property
    def costs(self) -> ByteCosts:
        """The byte-cost settings the table was measured with."""
        return ByteCosts(per_tensor_dense=self.per_tensor_dense, io=self.io, strip=self.strip)

    def measurement(self, *, batch_size: int) -> Measurement:
        """The measurement the table was made with (the batch size is not recorded: the check uses `batch_size`)."""
        return Measurement(cluster_counts=tuple(self.clusters), layers=tuple(self.layers),
                           per_channel_conv=self.per_channel_conv,
                           epochs=self.sensitivity.epochs, validation_split=self.validation_split,
                           batch_size=batch_size, estimate=self.estimate, fine_tune_rows=self.fine_tune_rows,
                           validation_rows=self.validation_rows, learning_rate=self.learning_rate, task=self.task,
                           calibration_rows=self.calibration_rows, calibration_from=self.calibration_from)

    def to_json(self) -> JsonDict:
        return {"step": "plan", "schema_version": self.schema_version, "source": self.source,
                "source_sha256": self.source_sha256, "dataset": self.dataset, "seed": self.seed,
                "clusters": list(self.clusters), "per_channel_conv": self.per_channel_conv, "epochs": self.epochs,
                "validation_split": self.validation_split, "credit_fine_tuning": self.credit_fine_tuning,
                "per_tensor_dense": self.per_tensor_dense, "io": self.io, "strip": self.strip,
                "max_accuracy_drop": self.max_accuracy_drop, "target_bytes": self.target_bytes,
                "target_ratio": self.target_ratio, "ram_budget": self.ram_budget,
                "float32_bytes": self.float32_bytes, "estimate": self.estimate.name,
                "fine_tune_rows": self.fine_tune_rows, "validation_rows": self.validation_rows,
                "learning_rate": self.learning_rate, "sensitivity": self.sensitivity.to_json(),
                "plan": self.plan.to_json(),
                "checked": [json_keys(asdict(c)) for c in self.checked],
                "task": self.task.name, "max_snr_drop": self.max_snr_drop, "backend": self.backend,
                "layers": list(self.layers), "noise": self.noise, "check_rows": self.check_rows,
                "calibration_rows": self.calibration_rows,
                **({"calibration_from": self.calibration_from} if self.calibration_rows else {}),
                "validation": self.validation,
                "min_agreement": self.min_agreement}

    @classmethod
    def wrong_kind(cls, step: object, *, is_object: bool = True) -> str:
        return NOT_A_RECORD

    @classmethod
    def wrong_version(cls, version: object) -> tuple[str, str]:
        return (f"plan record schema version {version!r}; this tinycomp reads version {SCHEMA_VERSION}",
                "use the tinycomp that wrote it, or measure a new table")

    @classmethod
    def from_payload(cls, payload: JsonDict, source: str) -> PlanRecord:
        """The record in `payload` (its header checked; files from before schema_version are version 1)."""
        try:
            later = {k: payload[k] for k in _LATER_KEYS if k in payload}
            if later.get("calibration_rows") and "calibration_from" not in later:
                later["calibration_from"] = CALIBRATED_ON_EVERY_ROW  # recorded before it left validation out
            if "task" in later:
                later["task"] = task_named(later["task"])
            if "estimate" in later:
                later["estimate"] = estimate_named(str(later["estimate"]))
            record = cls(**{**{k: payload[k] for k in _SCALAR_KEYS}, "io": payload.get("io", "uint8"), **later,
                          "sensitivity": SensitivityTable.from_json(payload["sensitivity"]),
                          "plan": Plan.from_json(payload["plan"]),
                          "checked": [CheckedPlan(**field_names(c)) for c in payload.get("checked", [])]})
        except (AttributeError, KeyError, TypeError, ValueError, InvalidValue):
            raise InputFileError(NOT_A_RECORD, source, RECORD_HINT) from None
        if record.task != record.sensitivity.task:
            raise InputFileError(f"the record's task {record.task.name!r} is not its table's "
                                 f"{record.sensitivity.task.name!r}",
                                 source, RECORD_HINT)
        return record


_LATER_KEYS = ("estimate", "fine_tune_rows", "validation_rows", "learning_rate", "task", "max_snr_drop", "backend",
               "layers", "noise", "check_rows", "calibration_rows", "calibration_from", "validation",
               "min_agreement")  # absent from older records: the defaults hold
_SCALAR_KEYS = ("source", "source_sha256", "dataset", "seed", "clusters", "per_channel_conv", "epochs",
                "validation_split", "credit_fine_tuning", "per_tensor_dense", "strip", "max_accuracy_drop",
                "target_bytes", "target_ratio", "ram_budget", "float32_bytes")
