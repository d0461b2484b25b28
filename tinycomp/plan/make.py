"""`make_plan`: one request in, one outcome out. Measures the sensitivity table (or reuses a recorded
one), resolves a size ratio against the float32 file, chooses within the budget (and the RAM
budget), checks the choice with all its layers clustered at once, and measures the chosen plan's
exact bytes and arena on a synthetic file. The CLI and Python callers use the same function.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from tinycomp.convert import convert_float32
from tinycomp.data import Dataset
from tinycomp.errors import InvalidValue
from tinycomp.metrics import Task
from tinycomp.plan.candidates import Candidate, CandidateResult, PartialTable, Shard
from tinycomp.plan.choose import Budget, Plan, SensitivityTable, checked_plan, choose_plan, choose_plan_within_ram
from tinycomp.plan.costs import arena_measurer, plan_bytes_exact, slicing_measurer
from tinycomp.plan.request import ByteCosts, Measurement, PlanOutcome, PlanRequest
from tinycomp.plan.sensitivity import int8_for_costs, joint_drop, sensitivity, task_of, validation_rows


class PlanProgress(Protocol):
    """What `make_plan` reports while it works (the CLI renders it; the default says nothing)."""

    def started(self, candidates: list[Candidate]) -> None: ...

    def measured(self, result: CandidateResult) -> None: ...

    def budget_resolved(self, budget: Budget) -> None: ...

    def checked(self, plan: Plan, drop: float, epochs: int) -> None: ...

    def reusing(self, source: str, table: SensitivityTable) -> None:
        """The table recorded in `source` is reused (nothing is measured)."""

    def merging(self, count: int) -> None:
        """The table is assembled from `count` partial tables (nothing is measured)."""

    def measuring(self, measurement: Measurement, task: Task, jobs: int, shard: Shard | None) -> None:
        """Candidates are about to be measured (`shard`: only that shard of them)."""

    def resumed(self, path: str, count: int | None) -> None:
        """A resumed run found `count` results measured before in `path` (None: no such file yet)."""


class Silent:
    """A PlanProgress that reports nothing."""

    def started(self, candidates: list[Candidate]) -> None:
        pass

    def measured(self, result: CandidateResult) -> None:
        pass

    def budget_resolved(self, budget: Budget) -> None:
        pass

    def checked(self, plan: Plan, drop: float, epochs: int) -> None:
        pass

    def reusing(self, source: str, table: SensitivityTable) -> None:
        pass

    def merging(self, count: int) -> None:
        pass

    def measuring(self, measurement: Measurement, task: Task, jobs: int, shard: Shard | None) -> None:
        pass

    def resumed(self, path: str, count: int | None) -> None:
        pass


def make_plan(model: Any, data: Dataset, request: PlanRequest, *, recorded: SensitivityTable | None = None,
              recorded_costs: ByteCosts | None = None, progress: PlanProgress | None = None, jobs: int = 1,
              done: dict[str, CandidateResult] | None = None,
              parts: list[tuple[str, PartialTable]] | None = None, task: Task | None = None) -> PlanOutcome:
    """Plan `model` on `data` as `request` asks, measuring candidates in `jobs` processes.

    With `recorded` (a table an earlier plan measured; `recorded_costs` the byte-cost settings it
    was measured with), nothing is measured again: the request's measurement must be the one the
    table was made with (the CLI takes it from the record), and its byte costs must match. `done`
    holds results measured before (a resumed run: only what they lack is measured); `parts` are
    every shard's partial table (nothing is measured; they must cover every candidate once). `task` is
    the model's task as the caller chose it (default: the recorded table's, else chosen from the data
    and the model's output, or the measurement's override).
    """
    progress = progress or Silent()
    if task is None:
        task = recorded.task if recorded is not None else task_of(model, data, request.measurement.task)
    budget = budget_for_task(request.budget, task, data.name)  # before measuring
    if recorded is not None:
        _check_same_costs(recorded_costs, request.costs)
        table = recorded
        int8, infos = int8_for_costs(model, data, [layer.name for layer in table.layers], seed=table.seed,
                                     costs=request.costs)
    else:
        table, int8, infos = sensitivity(model, data, task=task, measurement=request.measurement, costs=request.costs,
                                         seed=request.seed, max_drop=budget.max_drop, jobs=jobs,
                                         done=done, parts=parts, on_start=progress.started,
                                         on_result=progress.measured)
    if budget.target_ratio is not None:
        budget = budget.resolved(_float32_bytes(model))
        progress.budget_resolved(budget)
    arenas_of = arena_measurer(int8, infos, table, request.costs.strip)

    def choose(max_drop: float | None) -> Plan:
        within = budget if max_drop is None else replace(budget, max_drop=max_drop)
        if within.ram_bytes is None:
            return choose_plan(table, within)
        return choose_plan_within_ram(table, within, arenas_of, slicing_measurer(int8, infos, table, request.costs.strip))

    noise = task.noise(table.control_accuracy, validation_rows(data, request.measurement.validation_split))
    if request.check:
        chosen, tried = checked_plan(choose, lambda plan: _checked_drop(model, data, table, plan, request, progress),
                                     budget.max_drop, noise)
    else:
        chosen, tried = choose(budget.max_drop), []
    chosen.exact_bytes = plan_bytes_exact(int8, infos, chosen, request.costs.strip)
    if chosen.arena_bytes is None:
        [chosen.arena_bytes] = arenas_of([frozenset(chosen.clustered())])
    return PlanOutcome(chosen, tried, table, budget, noise)


def _checked_drop(model: Any, data: Dataset, table: SensitivityTable, plan: Plan, request: PlanRequest,
                  progress: PlanProgress) -> float:
    drop = joint_drop(model, data, table, plan, measurement=request.measurement)
    progress.checked(plan, drop, table.epochs)
    return drop


def budget_for_task(budget: Budget, task: Task, data_name: str) -> Budget:
    """The budget in `task`'s unit; InvalidValue (naming the budget's field) when its drop budget is in
    another task's unit: `data_name` makes the model a `task` model."""
    if budget.max_drop is not None and budget.task != task:
        raise InvalidValue(f"{budget.task.budget_option} is {budget.task.budget_text}, but {data_name} makes this a "
                           f"{task.name} task ({task.evidence}): plan measures its drops in {task.long_metric} "
                           f"({task.unit})", budget.task.budget_field,
                           f"give {task.budget_option} {task.budget_example}")
    return replace(budget, task=task)


def _check_same_costs(recorded: ByteCosts | None, wanted: ByteCosts) -> None:
    """InvalidValue naming the first byte-cost field the recorded table was measured with differently."""
    if recorded is None:
        return
    for name in ("per_tensor_dense", "strip", "io"):
        was, now = getattr(recorded, name), getattr(wanted, name)
        if was != now:
            shown = ("on" if was else "off") if isinstance(was, bool) else str(was)
            raise InvalidValue(f"the table's byte costs were measured with {name} {shown}", name,
                               "plan with the byte-cost settings of the table, or measure a new table")


def _float32_bytes(model: Any) -> int:
    """Bytes of `model` as the float32 .tflite `convert` writes."""
    return len(convert_float32(model))
