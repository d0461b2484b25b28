"""`PlanRecord`: the plan sidecar (OUTPUT .json) as a typed record with one writer and one reader.

Other tools read these files, so the keys and values are those `plan` always wrote, plus
`schema_version`, `task` ("classify": drops in pp of top-1 accuracy; "regress": drops in dB of
output SNR, see `units`) and `max_snr_drop` (the regress budget, as `max_accuracy_drop` is the
classify one). In a regress record every `*_pp` value (drops, credit, check) is in dB and
every `accuracy`/`*_accuracy` value is an output SNR in dB; the key names stay those of classifiers. Files written before `schema_version` existed read as version 1; a newer or
unknown version, or a file that is not a plan record, is an `InputFileError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinycomp.errors import InputFileError
from tinycomp.models import DEFAULT_LEARNING_RATE
from tinycomp.plan.choose import Plan, SensitivityTable
from tinycomp.plan.request import ByteCosts, Measurement

SCHEMA_VERSION = 1
NOT_A_RECORD = "not a sensitivity table written by `tinycomp plan`"
RECORD_HINT = "give the .json that `plan -o PLAN.yaml` wrote next to PLAN.yaml"


@dataclass(frozen=True)
class CheckedPlan:
    """One plan the check measured: its cluster counts, predicted and measured drop."""

    clusters: dict[str, int]
    predicted_drop_pp: float
    checked_drop_pp: float | None

    @classmethod
    def of(cls, plan: Plan) -> CheckedPlan:
        return cls({n: o.clusters or 0 for n, o in plan.clustered().items()}, plan.predicted_drop_pp,
                   plan.checked_drop_pp)


@dataclass(frozen=True)
class PlanRecord:
    """Everything a plan was made from and what it chose (the sensitivity table included)."""

    source: str
    source_sha256: str
    dataset: dict
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
    estimate: str = "fine-tune"  # records from before the fast estimate measured every candidate fine-tuned
    fine_tune_rows: int = 0  # 0: every fit row
    validation_rows: int = 0  # 0: every validation row
    learning_rate: float = DEFAULT_LEARNING_RATE
    schema_version: int = SCHEMA_VERSION
    task: str = "classify"  # records from before regress plans are classify
    max_snr_drop: float | None = None

    @property
    def costs(self) -> ByteCosts:
        """The byte-cost settings the table was measured with."""
        return ByteCosts(per_tensor_dense=self.per_tensor_dense, io=self.io, strip=self.strip)

    def measurement(self, *, batch_size: int) -> Measurement:
        """The measurement the table was made with (the batch size is not recorded: the check uses `batch_size`)."""
        return Measurement(cluster_counts=tuple(self.clusters), per_channel_conv=self.per_channel_conv,
                           epochs=self.sensitivity.epochs, validation_split=self.validation_split,
                           batch_size=batch_size, estimate=self.estimate, fine_tune_rows=self.fine_tune_rows,
                           validation_rows=self.validation_rows, learning_rate=self.learning_rate, task=self.task)

    def to_json(self) -> dict:
        return {"step": "plan", "schema_version": self.schema_version, "source": self.source,
                "source_sha256": self.source_sha256, "dataset": self.dataset, "seed": self.seed,
                "clusters": list(self.clusters), "per_channel_conv": self.per_channel_conv, "epochs": self.epochs,
                "validation_split": self.validation_split, "credit_fine_tuning": self.credit_fine_tuning,
                "per_tensor_dense": self.per_tensor_dense, "io": self.io, "strip": self.strip,
                "max_accuracy_drop": self.max_accuracy_drop, "target_bytes": self.target_bytes,
                "target_ratio": self.target_ratio, "ram_budget": self.ram_budget,
                "float32_bytes": self.float32_bytes, "estimate": self.estimate,
                "fine_tune_rows": self.fine_tune_rows, "validation_rows": self.validation_rows,
                "learning_rate": self.learning_rate, "sensitivity": self.sensitivity.to_json(),
                "plan": self.plan.to_json(),
                "checked": [{"clusters": c.clusters, "predicted_drop_pp": c.predicted_drop_pp,
                             "checked_drop_pp": c.checked_drop_pp} for c in self.checked],
                "task": self.task, "max_snr_drop": self.max_snr_drop}

    @classmethod
    def from_json(cls, payload: object, source: str) -> PlanRecord:
        """The record in `payload` (parsed JSON of the file at `source`); InputFileError if it is not one."""
        if not isinstance(payload, dict) or payload.get("step") != "plan":
            raise InputFileError(NOT_A_RECORD, source, RECORD_HINT)
        version = payload.get("schema_version", 1)  # files from before schema_version are version 1
        if version != SCHEMA_VERSION:
            raise InputFileError(f"plan record schema version {version!r}; this tinycomp reads version "
                                 f"{SCHEMA_VERSION}", source, "use the tinycomp that wrote it, or measure a new table")
        try:
            record = cls(**{**{k: payload[k] for k in _SCALAR_KEYS}, "io": payload.get("io", "uint8"),
                          **{k: payload[k] for k in _LATER_KEYS if k in payload},
                          "sensitivity": SensitivityTable.from_json(payload["sensitivity"]),
                          "plan": Plan.from_json(payload["plan"]),
                          "checked": [CheckedPlan(**c) for c in payload.get("checked", [])]})
        except (AttributeError, KeyError, TypeError, ValueError):
            raise InputFileError(NOT_A_RECORD, source, RECORD_HINT) from None
        if record.task != record.sensitivity.task:
            raise InputFileError(f"the record's task {record.task!r} is not its table's {record.sensitivity.task!r}",
                                 source, RECORD_HINT)
        return record


_LATER_KEYS = ("estimate", "fine_tune_rows", "validation_rows", "learning_rate", "task", "max_snr_drop")  # absent from older records: the defaults hold
_SCALAR_KEYS = ("source", "source_sha256", "dataset", "seed", "clusters", "per_channel_conv", "epochs",
                "validation_split", "credit_fine_tuning", "per_tensor_dense", "strip", "max_accuracy_drop",
                "target_bytes", "target_ratio", "ram_budget", "float32_bytes")
