"""What a measured table is of: the model file's hash, the data's description and the task.

Sensitivity tables (a plan's record), shards' partial tables and the progress file of an
interrupted run are reused only for the model, data and task they were measured on. `Provenance`
holds those three and `differs` is the one comparison: the first of "model", "data" or "task"
that is not the same (None when all are). Data descriptions are compared on the keys both have,
so a table written before a key existed still matches.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tinycomp.data import Dataset
from tinycomp.errors import DataError, InputFileError, ModelError
from tinycomp.fileio import JsonDict, read_bytes
from tinycomp.metrics import Task


def as_json(value: object) -> Any:
    """`value` as it reads back from a JSON file (tuples become lists), so records compare equal."""
    return json.loads(json.dumps(value))


def file_sha256(path: str) -> str:
    """The SHA-256 of the model file at `path`, in hex."""
    return hashlib.sha256(read_bytes(path, "model")).hexdigest()


@dataclass(frozen=True)
class Provenance:
    """The model (file hash), data (its description, as JSON) and task a table was measured on."""

    source_sha256: str
    dataset: JsonDict
    task: Task

    @classmethod
    def of(cls, sha256: str, data: Dataset, task: Task) -> Provenance:
        return cls(sha256, as_json(data.describe()), task)

    def differs(self, other: Provenance) -> str | None:
        """'model', 'data' or 'task': the first that is not the same in `other` (None: none)."""
        if self.source_sha256 != other.source_sha256:
            return "model"
        shared = self.dataset.keys() & other.dataset.keys() - {"spec"}  # the same data may be read from another path
        if any(self.dataset[key] != other.dataset[key] for key in shared):
            return "data"
        if self.task != other.task:
            return "task"
        return None

    def check_is(self, now: Provenance, *, what: str, source: str, model_path: str, model_hint: str, data_hint: str,
                 task_hint: str, unit: bool = False) -> None:
        """Unless this recorded `what` (e.g. "sensitivity table", read from `source`) is of `now`'s model, data
        and task: ModelError, DataError or InputFileError, saying which differs and what to do."""
        differs = self.differs(now)
        if differs == "model":
            raise ModelError(f"the {what} was measured on another model than {model_path}", source, model_hint)
        if differs == "data":
            raise DataError(f"the {what} was measured on other data ({self.dataset.get('name')})", source, data_hint)
        if differs == "task":
            drops = f" (drops in {self.task.unit})" if unit else ""
            raise InputFileError(f"the {what} was measured for a {self.task.name} task{drops}, and this model and "
                                 f"data make a {now.task.name} task", source, task_hint)
