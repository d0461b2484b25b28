"""Typed records for the JSON files tinycomp writes and reads: one dataclass and one reader each.

Every record carries `schema_version` and the `step` that wrote it. A reader accepts files written
by this version and by earlier tinycomp versions that had no `schema_version` (read as version 1);
a file from a newer or unknown schema, or of another kind, is an `InputFileError` that says so.

- `EvalRecord`: `tinycomp eval --json` (read by `report` and `gate`).
- `TrainRecord`, `ClusterRecord`, `PruneRecord`: the sidecars `train`, `cluster` and `prune` write next to their model.
- `Record` is their base: one header check (kind and schema version) for every record, the plan's
  (`tinycomp.plan.plan_record.PlanRecord`, `tinycomp.plan.candidates.PartialTable`) included.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar, cast

from tinycomp.errors import InputFileError
from tinycomp.evaluate import ModelResult
from tinycomp.fileio import JsonDict
from tinycomp.metrics import CLASSIFY, TASKS, Task

SCHEMA_VERSION = 1


def load_payload(text: str, source: str, hint: str) -> object:
    """The JSON value in `text`; an InputFileError when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError as e:
        raise InputFileError(f"not valid JSON: {e}", source, hint) from e


R = TypeVar("R", bound="Record")


class Record(ABC):
    """A JSON file tinycomp writes: one writer (`to_json`) and one reader (`from_json`), which makes the
    one header check (`check_header`: the kind of record and its schema version) before `from_payload`.

    Subclasses set STEP (the "step" key; None for eval JSON, which never had one) and HINT (what to
    give instead), and may reword the header errors (`wrong_kind`, `wrong_version`).
    """

    STEP: ClassVar[str | None]
    HINT: ClassVar[str]
    SCHEMA: ClassVar[int] = SCHEMA_VERSION
    VERSIONLESS: ClassVar[int | None] = 1  # the version of a file without schema_version (None: refused)

    @abstractmethod
    def to_json(self) -> JsonDict: ...

    @classmethod
    @abstractmethod
    def from_payload(cls: type[R], payload: JsonDict, source: str) -> R:
        """The record in `payload` (its header checked); InputFileError when it is malformed."""

    @classmethod
    def from_json(cls: type[R], data: str | object, source: str) -> R:
        """The record in `data` (the file's text, or its parsed JSON) read from `source`."""
        payload = load_payload(data, source, cls.HINT) if isinstance(data, str) else data
        return cls.from_payload(cls.check_header(payload, source), source)

    @classmethod
    def check_header(cls, payload: object, source: str) -> JsonDict:
        """`payload` as a JSON object of this kind and a schema version this tinycomp reads; else InputFileError."""
        if not isinstance(payload, dict):
            raise InputFileError(cls.wrong_kind(None, is_object=False), source, cls.HINT)
        if cls.STEP is not None and payload.get("step") != cls.STEP:
            raise InputFileError(cls.wrong_kind(payload.get("step")), source, cls.HINT)
        version = payload.get("schema_version", cls.VERSIONLESS)
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= cls.SCHEMA:
            what, hint = cls.wrong_version(version)
            raise InputFileError(what, source, hint)
        return payload

    @classmethod
    def wrong_kind(cls, step: object, *, is_object: bool = True) -> str:
        if not is_object:
            return "not a JSON object"
        return f"not a `{cls.STEP}` record" + (f" (written by `{step}`)" if step else "")

    @classmethod
    def wrong_version(cls, version: object) -> tuple[str, str]:
        if isinstance(version, int) and not isinstance(version, bool) and version > cls.SCHEMA:
            return (f"written with a newer schema (version {version}; this tinycomp reads up to {cls.SCHEMA})",
                    "upgrade tinycomp, or re-create the file with this version")
        return f"schema_version {version!r} is not a version tinycomp writes", cls.HINT


# ---------------------------------------------------------------- eval --json

EVAL_HINT = "write one with `tinycomp eval MODELS... --json FILE`"
EVAL_REQUIRED_KEYS = ("path", "kind", "flash_bytes", "accuracy", "samples")


@dataclass
class EvalRecord(Record):
    """What `tinycomp eval --json` wrote: the dataset, budgets and one result per model."""

    STEP: ClassVar[str | None] = None
    HINT: ClassVar[str] = EVAL_HINT

    models: list[Any]  # evaluate.ModelResult
    baseline: str | None
    dataset: dict[str, Any]
    flash_budget: int | None
    ram_budget: int | None
    source: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def dataset_name(self) -> str:
        return str(self.dataset.get("name", "?"))

    @property
    def samples(self) -> int:
        return int(self.models[0].samples)

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "dataset": self.dataset, "baseline": self.baseline,
                "flash_budget": self.flash_budget, "ram_budget": self.ram_budget,
                "models": [m.to_json() for m in self.models]}

    @property
    def tasks(self) -> set[Task]:
        """The tasks of the models: {CLASSIFY}, {REGRESS} or both."""
        return {m.task for m in self.models}

    @classmethod
    def from_json(cls, data: str | object, source: str = "eval JSON") -> EvalRecord:
        return super().from_json(data, source)

    @classmethod
    def from_payload(cls, payload: JsonDict, source: str) -> EvalRecord:
        """Check an eval JSON; an InputFileError names what is wrong and where.

        Regression results (`"task": "regress"`) have `accuracy: null`; JSON from before tasks
        existed has no `task` and reads as classifiers.
        """
        if not isinstance(payload.get("models"), list):
            raise InputFileError("not an eval JSON: no \"models\" list", source, EVAL_HINT)
        if not payload["models"]:
            raise InputFileError("the eval JSON lists no models", source, EVAL_HINT)
        known = {f.name for f in fields(ModelResult)} - {"outputs"}  # outputs are never in JSON
        models = []
        for i, entry in enumerate(payload["models"]):
            if not isinstance(entry, dict):
                raise InputFileError(f"models[{i}] is not a JSON object", source, EVAL_HINT)
            models.append(_model_result(entry, i, known, source))
        dataset = payload["dataset"] if isinstance(payload.get("dataset"), dict) else {}
        return cls(models, payload.get("baseline"), dataset, payload.get("flash_budget"), payload.get("ram_budget"),
                   source, int(payload.get("schema_version", 1)))


EVAL_OPTIONAL_NUMBERS = ("arena_bytes", "ms_per_inference", "ratio_vs_baseline", "accuracy_delta_pp",
                         "alt_decompression_bytes", "arena_bytes_with_alt_decompression", "mse", "snr_db",
                         "agreement_top1", "agreement_snr_db", "gzip_bytes")


def _model_result(entry: dict[str, Any], i: int, known: set[str], source: str) -> Any:
    """One `models[i]` entry as a ModelResult; an entry without `task` (written before tinycomp had
    tasks) is a classifier. A classifier needs a numeric accuracy; a regressor's accuracy is null."""
    task = _task_named(entry.get("task", CLASSIFY.name), f"models[{i}].task", source, EVAL_HINT)
    required = EVAL_REQUIRED_KEYS if task.has_accuracy else tuple(k for k in EVAL_REQUIRED_KEYS if k != "accuracy")
    missing = [k for k in required if k not in entry]
    if missing:
        raise InputFileError(f"models[{i}] lacks {', '.join(missing)}", source, EVAL_HINT)
    if task.has_accuracy and entry["accuracy"] is None:
        raise InputFileError(f"models[{i}] is a classifier with accuracy null", source,
                             "a classifier's result needs a number; a regression result carries \"task\": \"regress\"")
    for key in ("flash_bytes", "samples", "accuracy", *EVAL_OPTIONAL_NUMBERS):
        value = entry.get(key)
        if value is None and key in ("flash_bytes", "samples"):
            raise InputFileError(f"models[{i}].{key} is null, not a number", source, EVAL_HINT)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputFileError(f"models[{i}].{key} is {value!r}, not a number", source, EVAL_HINT)
    entry = {"accuracy": None, **entry}
    try:
        result = ModelResult(**{k: v for k, v in entry.items() if k in known and k != "task"})
    except TypeError as e:
        raise InputFileError(f"models[{i}] has a malformed value: {e}", source, EVAL_HINT) from e
    result.task, result.flash_bytes, result.samples = task, int(result.flash_bytes), int(result.samples)
    result.accuracy = None if result.accuracy is None else float(result.accuracy)
    return result


def _task_named(name: object, key: str, source: str, hint: str) -> Task:
    """The task a record names at `key` (its JSON holds the task's name)."""
    if not isinstance(name, str) or name not in TASKS:
        raise InputFileError(f"{key} is {name!r}, not one of {', '.join(TASKS)}", source, hint)
    return TASKS[name]


# ---------------------------------------------------------------- train / cluster sidecars

class SidecarRecord(Record):
    """A record whose JSON keys are its dataclass fields."""

    def to_json(self) -> JsonDict:
        return cast(JsonDict, asdict(self))  # type: ignore[call-overload]  # every subclass is a dataclass

    @classmethod
    def from_payload(cls: type[S], payload: JsonDict, source: str) -> S:
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]  # type: ignore[arg-type]
        missing = [n for n in required if n not in payload]
        if missing:
            raise InputFileError(f"the {cls.STEP} record lacks {', '.join(missing)}", source, cls.HINT)
        return cls(**{n: payload[n] for n in names if n in payload})


S = TypeVar("S", bound=SidecarRecord)



class TaskSidecarRecord(SidecarRecord):
    """A sidecar with a `task` field (a `metrics.Task`), stored in JSON by its name."""

    task: Task

    @classmethod
    def from_payload(cls: type[T], payload: JsonDict, source: str) -> T:
        task = _task_named(payload.get("task", CLASSIFY.name), "task", source, cls.HINT)
        return super().from_payload({**payload, "task": task}, source)

    def to_json(self) -> JsonDict:
        return {**super().to_json(), "task": self.task.name}


T = TypeVar("T", bound=TaskSidecarRecord)

@dataclass
class TrainRecord(SidecarRecord):
    """The sidecar `train -o MODEL` writes as MODEL's .json."""

    STEP: ClassVar[str | None] = "train"
    HINT: ClassVar[str] = "give the .json that `tinycomp train -o MODEL` wrote"

    dataset: dict[str, Any]
    test_accuracy: float
    epochs: int
    batch_size: int
    validation_split: float
    seed: int
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    # the rows held out of training (ValidationSource.to_json(); None: no split, or a record from before)
    validation: dict[str, Any] | None = None
    step: str = "train"
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_json(cls, data: str | object, source: str = "train record") -> TrainRecord:
        return super().from_json(data, source)


@dataclass
class ClusterRecord(TaskSidecarRecord):
    """The sidecar `cluster -o MODEL` writes as MODEL's .json."""

    STEP: ClassVar[str | None] = "cluster"
    HINT: ClassVar[str] = "give the .json that `tinycomp cluster -o MODEL` wrote"

    source: str
    dataset: dict[str, Any]
    test_accuracy: float | None  # None for a regression model: see test_metrics
    unique_values: dict[str, int]
    epochs: int
    seed: int
    seconds: float
    task: Task = CLASSIFY  # CLASSIFY | REGRESS, its name in JSON (sidecars from before tasks: classify)
    test_metrics: dict[str, float] = field(default_factory=dict)  # the task's metrics on the test set
    loss: dict[str, Any] = field(default_factory=dict)  # the fine-tuning loss and why it was chosen
    learning_rate: float | None = None
    batch_size: int | None = None
    # epochs, whether the fine-tuned model was kept (`used`), and the validation scores compared
    fine_tuning: dict[str, Any] = field(default_factory=dict)
    step: str = "cluster"
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_json(cls, data: str | object, source: str = "cluster record") -> ClusterRecord:
        return super().from_json(data, source)


@dataclass
class PruneRecord(TaskSidecarRecord):
    """The sidecar `prune -o MODEL` writes as MODEL's .json: measured sparsity, scores before and after."""

    STEP: ClassVar[str | None] = "prune"
    HINT: ClassVar[str] = "give the .json that `tinycomp prune -o MODEL` wrote"

    source: str
    dataset: dict[str, Any]
    target_sparsity: dict[str, float]  # layer → the spec's sparsity
    sparsity: dict[str, float]  # layer → fraction of its kernel weights that are zero in the saved model
    epochs: int
    seed: int
    seconds: float
    task: Task = CLASSIFY
    test_before: dict[str, float] = field(default_factory=dict)  # the task's metrics of the unpruned model
    test_after: dict[str, float] = field(default_factory=dict)  # ... of the saved (pruned) model
    # held-out validation rows: unpruned, pruned_once, fine_tuned scores and which model was kept (`used`)
    held_out: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)  # layer → PolynomialDecay parameters
    loss: dict[str, Any] = field(default_factory=dict)
    learning_rate: float | None = None
    batch_size: int | None = None
    step: str = "prune"
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_json(cls, data: str | object, source: str = "prune record") -> PruneRecord:
        return super().from_json(data, source)
