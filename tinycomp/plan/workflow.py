"""Plans from files, as `tinycomp plan` makes them, for Python callers too.

`PlanInputs` is the model (a tf_keras model, or an int8 .tflite's bytes), its data, the model file
and the task (chosen once, from the data and the model's output unless overridden); `backend` gives
the plan core's backend for it (`KerasBackend` or `TfliteBackend`). `plan_model` makes a plan one of three ways: measuring (a
progress file next to the output is rewritten after every candidate, and `resume` measures only
what it lacks), from a recorded plan's sensitivity table, or from every shard's partial table;
recorded tables and parts are used only for the model, data and task they were measured on.
`write_plan` writes the spec (`cluster`'s or `palettize`'s) and its `PlanRecord`. `measure_shard_to` measures one
shard into a partial table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tinycomp.data import Dataset
from tinycomp.errors import FieldError, InputFileError, TinycompError
from tinycomp.fileio import check_input_file, read_json_if_present, sidecar_path, write_json_atomic, write_text_atomic
from tinycomp.metrics import Task
from tinycomp.plan.candidates import NOT_A_PART, PART_HINT, Candidate, CandidateResult, PartialTable, Shard
from tinycomp.plan.choose import Budget, Plan, SensitivityTable
from tinycomp.plan.make import Backend, PlanProgress, Silent, budget_for_task, make_plan, measure_shard
from tinycomp.plan.plan_record import PlanRecord
from tinycomp.plan.provenance import Provenance, as_json, file_sha256
from tinycomp.plan.request import ByteCosts, JointDrop, Measurement, PlanOutcome, PlanRequest
from tinycomp.plan.seen_rows import TrainedRows

PARTIAL_SUFFIX = ".partial.json"
AGAIN = "measure again: run plan without --sensitivity"


@dataclass(frozen=True)
class PlanInputs:
    """The model and data a plan is made of, the model's file and the task (chosen once)."""

    model: Any  # a tf_keras model, or an int8 .tflite's bytes
    data: Dataset
    model_path: str
    task: Task
    provenance: Provenance

    @classmethod
    def of(cls, model: Any, data: Dataset, model_path: str, task: Task | None = None) -> PlanInputs:
        """`task` overrides the task the data and the model's output make (metrics.choose_task); `data`
        gets the trailing axis of size 1 the model's input has or lacks (Dataset.fit_to)."""
        if isinstance(model, (bytes, bytearray)):
            from tinycomp.plan.tflite_rows import input_shape
            from tinycomp.plan.tflite_rows import task_of as tflite_task

            model = bytes(model)
            data = data.fit_to(input_shape(model, str(model_path)))
            chosen = tflite_task(model, data, task, str(model_path))
        else:
            from tinycomp.plan.sensitivity import task_of

            data = data.fit_to(tuple(model.input_shape[1:]))
            chosen = task_of(model, data, task)
        return cls(model, data, str(model_path), chosen, Provenance.of(file_sha256(str(model_path)), data, chosen))

    @property
    def kind(self) -> str:
        """"tflite" for an int8 .tflite, else "keras": the backend that plans it."""
        return "tflite" if isinstance(self.model, bytes) else "keras"

    def backend(self, measurement: Measurement, *, costs: ByteCosts | None = None, seed: int = 0,
                check: bool = True) -> Backend:
        """The plan core's backend for this model, measuring as `measurement` says."""
        costs = costs or ByteCosts()
        if self.kind == "tflite":
            from tinycomp.plan.tflite_plan import TfliteBackend

            return TfliteBackend(self.model, self.data, measurement=measurement, costs=costs, seed=seed,
                                 task=self.task, source=self.model_path, check=check)
        from tinycomp.plan.keras_backend import KerasBackend

        return KerasBackend(self.model, self.data, measurement=measurement, costs=costs, seed=seed, task=self.task)


SIDECAR_LIMIT = 1 << 20  # bytes: a sidecar is a few KiB; a larger file is not read
SOURCE_HOPS = 4  # how many `source` links (cluster, prune sidecars) are followed back to a train record


def trained_rows(model_path: str) -> TrainedRows | None:
    """What the model's training held out, from the `tinycomp train` record next to it, or next to the
    model a cluster or prune sidecar names as its source (None: no such record)."""
    from tinycomp.data.validation import ValidationSource
    from tinycomp.records import TrainRecord

    path = Path(model_path)
    for _ in range(SOURCE_HOPS):
        sidecar = sidecar_path(path, ".json")
        payload = read_json_if_present(sidecar) if sidecar.is_file() and sidecar.stat().st_size <= SIDECAR_LIMIT else None
        if not isinstance(payload, dict):
            return None
        if payload.get("step") == "train":
            try:
                record = TrainRecord.from_json(payload, str(sidecar))
                if record.validation is None:
                    return None
                held = ValidationSource.from_json(record.validation, str(sidecar))
            except TinycompError:
                return None
            return TrainedRows(held, record.validation_split, record.seed, str(sidecar))
        source = payload.get("source")
        if payload.get("step") not in ("cluster", "prune") or not isinstance(source, str):
            return None
        path = next((p for p in (Path(source), sidecar.parent / Path(source).name) if p.is_file()), Path(source))
    return None


def with_validation_of_training(inputs: PlanInputs, measurement: Measurement, seed: int, *,
                                split_given: bool) -> tuple[Measurement, str]:
    """The measurement validating on rows the model's training held out, when its record is known and no
    --validation-split was given, and the plan's one line on whether its validation rows were trained on."""
    from tinycomp.plan.seen_rows import trained_on_validation, validation_note

    trained = trained_rows(inputs.model_path)
    if trained is not None and not split_given:
        measurement = replace(measurement, validation_split=trained.validation_split)
    split = inputs.data.validation_split(measurement.validation_split, seed)
    seen = None if trained is None else trained_on_validation(trained.held_out, split, inputs.data.groups_train,
                                                              len(inputs.data.x_train))
    return measurement, validation_note(Path(inputs.model_path).name, trained, seen, split)


def read_record(path: str) -> PlanRecord:
    """The PlanRecord an earlier `plan` wrote (its OUTPUT.json); InputFileError if it is not one."""
    return PlanRecord.from_json(read_json_if_present(check_input_file(path, "sensitivity table")), str(path))


def read_part(path: str) -> PartialTable:
    """A partial table `plan --shard` (or an interrupted plan) wrote; InputFileError if it is not one."""
    return PartialTable.from_json(read_json_if_present(check_input_file(path, "partial table")), str(path))


def partial_path(output: str) -> Path:
    """The progress file of a plan writing `output`."""
    return sidecar_path(output, PARTIAL_SUFFIX)


def origin(inputs: PlanInputs, measurement: Measurement, seed: int, shard: Shard) -> PartialTable:
    """An empty partial table: what its results will be measured on."""
    p = inputs.provenance
    return PartialTable(source_sha256=p.source_sha256, dataset=p.dataset, measurement=as_json(measurement.to_json()),
                        seed=seed, shard=shard, candidates=[], task=p.task)


class PartialWriter:
    """The partial table at `path`, rewritten atomically after every measured candidate."""

    def __init__(self, path: Path, part: PartialTable):
        self.path, self.part = path, part

    def resumed(self, model_path: str, progress: PlanProgress) -> dict[str, CandidateResult]:
        """The results a resumed run keeps; InputFileError when the file is not one of this run's."""
        if not self.path.exists():
            progress.resumed(str(self.path), None)
            return {}
        found = read_part(str(self.path))
        differs = found.same_origin(self.part)
        if differs or found.shard != self.part.shard:
            raise InputFileError(f"the partial table was measured with other {differs or 'shard'} than this run",
                                 str(self.path), f"delete it, or run plan on {model_path} with the options it was "
                                 "measured with")
        self.part = replace(self.part, candidates=found.candidates, results=list(found.results))
        progress.resumed(str(self.path), len(found.results))
        return {r.key: r for r in found.results}

    def started(self, candidates: list[Candidate]) -> None:
        keys = [c.key for c in candidates]
        if self.part.candidates and self.part.candidates != keys:
            raise InputFileError("the partial table lists other candidates than this run", str(self.path),
                                 "delete it and measure again")
        self.part = replace(self.part, candidates=keys)

    def add(self, result: CandidateResult) -> None:
        kept = [r for r in self.part.results if r.key != result.key]
        self.part = replace(self.part, results=kept + [result])
        write_json_atomic(self.path, self.part.to_json())


class Recording:
    """A PlanProgress that writes every result to the partial table, then reports to `progress`."""

    def __init__(self, partial: PartialWriter, progress: PlanProgress):
        self.partial, self.progress = partial, progress

    def started(self, candidates: list[Candidate]) -> None:
        self.partial.started(candidates)
        self.progress.started(candidates)

    def measured(self, result: CandidateResult) -> None:
        self.partial.add(result)
        self.progress.measured(result)

    def budget_resolved(self, budget: Budget) -> None:
        self.progress.budget_resolved(budget)

    def checked(self, plan: Plan, drop: float, epochs: int) -> None:
        self.progress.checked(plan, drop, epochs)

    def stepped(self, plan: Plan, step: str, measured: JointDrop, kept: bool) -> None:
        self.progress.stepped(plan, step, measured, kept)

    def reusing(self, source: str, table: SensitivityTable) -> None:
        self.progress.reusing(source, table)

    def merging(self, count: int) -> None:
        self.progress.merging(count)

    def measuring(self, measurement: Measurement, task: Task, jobs: int, shard: Shard | None) -> None:
        self.progress.measuring(measurement, task, jobs, shard)

    def resumed(self, path: str, count: int | None) -> None:
        self.progress.resumed(path, count)


def plan_model(inputs: PlanInputs, request: PlanRequest, *, output: str | None = None,
               recorded: tuple[str, PlanRecord] | None = None, parts: list[tuple[str, PartialTable]] | None = None,
               resume: bool = False, jobs: int = 1, progress: PlanProgress | None = None) -> tuple[PlanRequest,
                                                                                                    PlanOutcome]:
    """Plan as `request` asks; returns the request as made (a recorded table's or the parts' measurement
    and seed replace the request's) and the outcome.

    With `recorded` ((path, record) of an earlier plan), its table is reused; with `parts` ((path, part) of
    every shard), they are merged; otherwise candidates are measured in `jobs` processes and, when
    `output` is given, recorded after each in its progress file (`resume`: only what that file lacks is
    measured). Recorded tables and parts must be of the inputs' model, data and task.
    """
    progress = progress or Silent()
    budget = budget_for_task(request.budget, inputs.task, inputs.data.name)
    request = replace(request, budget=budget)
    if recorded:
        path, record = recorded
        record.provenance.check_is(inputs.provenance, what="sensitivity table", source=str(path),
                                   model_path=inputs.model_path, model_hint=AGAIN, task_hint=AGAIN, unit=True,
                                   data_hint="give the same --dataset/--data as when it was measured")
        request = replace(request, measurement=record.measurement(batch_size=request.measurement.batch_size),
                          seed=record.seed)
        request.measurement.check_reusable(str(path))
        progress.reusing(str(path), record.sensitivity)
        return request, make_plan(_backend(inputs, request), request, recorded=record.sensitivity,
                                  recorded_costs=record.costs, progress=progress, jobs=jobs)
    if parts:
        request = request_of_parts(inputs, request, parts)
        progress.merging(len(parts))
        return request, make_plan(_backend(inputs, request), request, parts=parts, progress=progress, jobs=jobs)
    progress.measuring(request.measurement, inputs.task, jobs, None)
    done: dict[str, CandidateResult] = {}
    if output is not None:
        partial = PartialWriter(partial_path(output), origin(inputs, request.measurement, request.seed, Shard()))
        done = partial.resumed(inputs.model_path, progress) if resume else {}
        progress = Recording(partial, progress)
    return request, make_plan(_backend(inputs, request), request, jobs=jobs, done=done, progress=progress)


def _backend(inputs: PlanInputs, request: PlanRequest) -> Backend:
    return inputs.backend(request.measurement, costs=request.costs, seed=request.seed, check=request.check)


def request_of_parts(inputs: PlanInputs, request: PlanRequest, parts: list[tuple[str, PartialTable]]) -> PlanRequest:
    """The request with the parts' measurement options and seed; the parts must be of the inputs."""
    source, first = parts[0]
    first.provenance.check_is(inputs.provenance, what="partial table", source=source, model_path=inputs.model_path,
                              model_hint="merge the parts of this model", task_hint="merge the parts of this model and data",
                              data_hint="give the same --dataset/--data as the shards")
    try:
        measurement = Measurement.from_json(first.measurement)
    except (KeyError, TypeError, ValueError, FieldError):
        raise InputFileError(NOT_A_PART, source, PART_HINT) from None
    measurement.check_reusable(source)
    return replace(request, measurement=measurement, seed=first.seed)


def measure_shard_to(output: str, inputs: PlanInputs, measurement: Measurement, *, seed: int, shard: Shard,
                     resume: bool = False, jobs: int = 1, progress: PlanProgress | None = None) -> PartialTable:
    """Measure shard `shard` of the candidates into the partial table `output` (its progress file is
    rewritten after every candidate; `resume`: only what that file lacks is measured)."""
    progress = progress or Silent()
    progress.measuring(measurement, inputs.task, jobs, shard)
    partial = PartialWriter(partial_path(output), origin(inputs, measurement, seed, shard))
    done = partial.resumed(inputs.model_path, progress) if resume else {}
    recording = Recording(partial, progress)
    measure_shard(inputs.backend(measurement, seed=seed, check=False), shard, jobs=jobs, done=done,
                  on_start=recording.started, on_result=recording.measured)
    write_json_atomic(output, partial.part.to_json())
    remove_partial(output)
    return partial.part


def remove_partial(output: str) -> None:
    partial_path(output).unlink(missing_ok=True)


def write_plan(output: str, inputs: PlanInputs, request: PlanRequest, outcome: PlanOutcome,
               backend: Backend | None = None) -> PlanRecord:
    """Write the spec the backend's chain reads (OUTPUT: `cluster`'s or `palettize`'s) and the plan's record
    (OUTPUT with .json); remove the progress file. Returns the record."""
    backend = backend or _backend(inputs, request)
    write_text_atomic(output, backend.spec_text(inputs.model_path, str(output), request, outcome))
    record = PlanRecord.of(model_path=inputs.model_path, provenance=inputs.provenance, request=request,
                           outcome=outcome)
    write_json_atomic(sidecar_path(output, ".json"), record.to_json())
    remove_partial(output)
    return record
