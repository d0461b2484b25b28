"""Typed records for the JSON files tinycomp writes and reads: one dataclass and one reader each.

Every record carries `schema_version` and the `step` that wrote it. A reader accepts files written
by this version and by earlier tinycomp versions that had no `schema_version` (read as version 1);
a file from a newer or unknown schema, or of another kind, is an `InputFileError` that says so.

- `EvalRecord`: `tinycomp eval --json` (read by `report` and `gate`).
- `TrainRecord`, `ClusterRecord`: the sidecars `train` and `cluster` write next to their model.
- The plan sidecar's record lives with the planner (`tinycomp.plan`), built on `check_header`.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from tinycomp.errors import InputFileError

SCHEMA_VERSION = 1


def load_payload(text: str, source: str, hint: str) -> dict[str, Any]:
    """The JSON object in `text`; an InputFileError when it is not JSON or not an object."""
    try:
        payload = json.loads(text)
    except ValueError as e:
        raise InputFileError(f"not valid JSON: {e}", source, hint) from e
    if not isinstance(payload, dict):
        raise InputFileError("not a JSON object", source, hint)
    return payload


def check_header(payload: dict[str, Any], *, step: str | None, source: str, hint: str) -> None:
    """Refuse a payload of another kind (`step`) or of a schema this version does not know.

    `step=None` is for eval JSON, which has never carried a step.
    """
    version = payload.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputFileError(f"schema_version {version!r} is not a version tinycomp writes", source, hint)
    if version > SCHEMA_VERSION:
        raise InputFileError(f"written with a newer schema (version {version}; this tinycomp reads up to "
                             f"{SCHEMA_VERSION})", source, "upgrade tinycomp, or re-create the file with this version")
    if step is not None and payload.get("step") != step:
        found = payload.get("step")
        raise InputFileError(f"not a `{step}` record" + (f" (written by `{found}`)" if found else ""), source, hint)


# ---------------------------------------------------------------- eval --json

EVAL_HINT = "write one with `tinycomp eval MODELS... --json FILE`"
EVAL_REQUIRED_KEYS = ("path", "kind", "flash_bytes", "accuracy", "samples")


@dataclass
class EvalRecord:
    """What `tinycomp eval --json` wrote: the dataset, budgets and one result per model."""

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
    def tasks(self) -> set[str]:
        """The tasks of the models: {"classify"}, {"regress"} or both."""
        return {m.task for m in self.models}

    @classmethod
    def from_json(cls, text: str, source: str = "eval JSON") -> EvalRecord:
        """Parse and check an eval JSON; an InputFileError names what is wrong and where.

        Regression results (`"task": "regress"`) have `accuracy: null`; JSON from before tasks
        existed has no `task` and reads as classifiers.
        """
        from tinycomp.evaluate import ModelResult

        payload = load_payload(text, source, EVAL_HINT)
        check_header(payload, step=None, source=source, hint=EVAL_HINT)
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


EVAL_TASKS = ("classify", "regress")
EVAL_OPTIONAL_NUMBERS = ("arena_bytes", "ms_per_inference", "ratio_vs_baseline", "accuracy_delta_pp",
                         "alt_decompression_bytes", "arena_bytes_with_alt_decompression", "mse", "snr_db",
                         "agreement_top1", "agreement_snr_db", "gzip_bytes")


def _model_result(entry: dict[str, Any], i: int, known: set[str], source: str) -> Any:
    """One `models[i]` entry as a ModelResult; an entry without `task` (written before tinycomp had
    tasks) is a classifier. A classifier needs a numeric accuracy; a regressor's accuracy is null."""
    from tinycomp.evaluate import ModelResult

    task = entry.get("task", "classify")
    if task not in EVAL_TASKS:
        raise InputFileError(f"models[{i}].task is {task!r}, not one of {', '.join(EVAL_TASKS)}", source, EVAL_HINT)
    required = EVAL_REQUIRED_KEYS if task == "classify" else tuple(k for k in EVAL_REQUIRED_KEYS if k != "accuracy")
    missing = [k for k in required if k not in entry]
    if missing:
        raise InputFileError(f"models[{i}] lacks {', '.join(missing)}", source, EVAL_HINT)
    if task == "classify" and entry["accuracy"] is None:
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
        result = ModelResult(**{k: v for k, v in entry.items() if k in known})
    except TypeError as e:
        raise InputFileError(f"models[{i}] has a malformed value: {e}", source, EVAL_HINT) from e
    result.task, result.flash_bytes, result.samples = task, int(result.flash_bytes), int(result.samples)
    result.accuracy = None if result.accuracy is None else float(result.accuracy)
    return result


# ---------------------------------------------------------------- train / cluster sidecars

def _from_sidecar(cls: type, text: str, source: str, step: str, hint: str) -> Any:
    payload = load_payload(text, source, hint)
    check_header(payload, step=step, source=source, hint=hint)
    names = [f.name for f in fields(cls)]
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [n for n in required if n not in payload]
    if missing:
        raise InputFileError(f"the {step} record lacks {', '.join(missing)}", source, hint)
    return cls(**{n: payload[n] for n in names if n in payload})


@dataclass
class TrainRecord:
    """The sidecar `train -o MODEL` writes as MODEL's .json."""

    dataset: dict[str, Any]
    test_accuracy: float
    epochs: int
    batch_size: int
    validation_split: float
    seed: int
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    step: str = "train"
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str, source: str = "train record") -> TrainRecord:
        return _from_sidecar(cls, text, source, "train", "give the .json that `tinycomp train -o MODEL` wrote")


@dataclass
class ClusterRecord:
    """The sidecar `cluster -o MODEL` writes as MODEL's .json."""

    source: str
    dataset: dict[str, Any]
    test_accuracy: float | None  # None for a regression model: see test_metrics
    unique_values: dict[str, int]
    epochs: int
    seed: int
    seconds: float
    task: str = "classify"  # classify | regress (sidecars from before tasks: classify)
    test_metrics: dict[str, float] = field(default_factory=dict)  # the task's metrics on the test set
    loss: dict[str, Any] = field(default_factory=dict)  # the fine-tuning loss and why it was chosen
    learning_rate: float | None = None
    batch_size: int | None = None
    step: str = "cluster"
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str, source: str = "cluster record") -> ClusterRecord:
        return _from_sidecar(cls, text, source, "cluster", "give the .json that `tinycomp cluster -o MODEL` wrote")
