"""`make_plan`: one request in, one outcome out. Measures the sensitivity table (or reuses a recorded
one), resolves a size ratio against the float32 file, chooses within the budget (and the RAM
budget), checks the choice with all its layers clustered at once, and measures the chosen plan's
exact bytes and arena on a synthetic file. The CLI and Python callers use the same function.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from tinycomp.errors import InvalidValue
from tinycomp.plan.candidates import Candidate, CandidateResult, PartialTable
from tinycomp.plan.choose import Budget, Plan, SensitivityTable, checked_plan, choose_plan, choose_plan_within_ram
from tinycomp.plan.request import ByteCosts, PlanOutcome, PlanRequest
from tinycomp.plan.units import BUDGET_OPTION, noise_of, unit_of


class PlanProgress(Protocol):
    """What `make_plan` reports while it works (the CLI renders it; the default says nothing)."""

    def started(self, candidates: list[Candidate]) -> None: ...

    def measured(self, result: CandidateResult) -> None: ...

    def budget_resolved(self, budget: Budget) -> None: ...

    def checked(self, plan: Plan, drop_pp: float, epochs: int) -> None: ...


class Silent:
    """A PlanProgress that reports nothing."""

    def started(self, candidates: list[Candidate]) -> None:
        pass

    def measured(self, result: CandidateResult) -> None:
        pass

    def budget_resolved(self, budget: Budget) -> None:
        pass

    def checked(self, plan: Plan, drop_pp: float, epochs: int) -> None:
        pass


def make_plan(model, data, request: PlanRequest, *, recorded: SensitivityTable | None = None,
              recorded_costs: ByteCosts | None = None, progress: PlanProgress | None = None, jobs: int = 1,
              done: dict[str, CandidateResult] | None = None,
              parts: list[tuple[str, PartialTable]] | None = None) -> PlanOutcome:
    """Plan `model` on `data` as `request` asks, measuring candidates in `jobs` processes.

    With `recorded` (a table an earlier plan measured; `recorded_costs` the byte-cost settings it
    was measured with), nothing is measured again: the request's measurement must be the one the
    table was made with (the CLI takes it from the record), and its byte costs must match. `done`
    holds results measured before (a resumed run: only what they lack is measured); `parts` are
    every shard's partial table (nothing is measured; they must cover every candidate once).
    """
    from tinycomp.plan.costs import arena_measurer, plan_bytes_exact, slicing_measurer
    from tinycomp.plan.sensitivity import int8_for_costs, sensitivity, task_of, validation_rows

    progress = progress or Silent()
    _of_task(request.budget, recorded.task if recorded is not None else task_of(model, data, request.measurement.task))  # before measuring
    if recorded is not None:
        _check_same_costs(recorded_costs, request.costs)
        table = recorded
        int8, infos = int8_for_costs(model, data, [layer.name for layer in table.layers], seed=table.seed,
                                     costs=request.costs)
    else:
        table, int8, infos = sensitivity(model, data, measurement=request.measurement, costs=request.costs,
                                         seed=request.seed, max_drop_pp=request.budget.max_drop_pp, jobs=jobs,
                                         done=done, parts=parts, on_start=progress.started,
                                         on_result=progress.measured)
    budget = _of_task(request.budget, table.task)
    if budget.target_ratio is not None:
        budget = budget.resolved(_float32_bytes(model))
        progress.budget_resolved(budget)
    arenas_of = arena_measurer(int8, infos, table, request.costs.strip)

    def choose(max_drop_pp: float | None) -> Plan:
        within = budget if max_drop_pp is None else replace(budget, max_drop_pp=max_drop_pp)
        if within.ram_bytes is None:
            return choose_plan(table, within)
        return choose_plan_within_ram(table, within, arenas_of, slicing_measurer(int8, infos, table, request.costs.strip))

    noise = noise_of(table.task, table.control_accuracy, validation_rows(data, request.measurement.validation_split))
    if request.check:
        chosen, tried = checked_plan(choose, lambda plan: _checked_drop(model, data, table, plan, request, progress),
                                     budget.max_drop_pp, noise)
    else:
        chosen, tried = choose(budget.max_drop_pp), []
    chosen.exact_bytes = plan_bytes_exact(int8, infos, chosen, request.costs.strip)
    if chosen.arena_bytes is None:
        [chosen.arena_bytes] = arenas_of([frozenset(chosen.clustered())])
    return PlanOutcome(chosen, tried, table, budget, noise)


def _checked_drop(model, data, table: SensitivityTable, plan: Plan, request: PlanRequest,
                  progress: PlanProgress) -> float:
    from tinycomp.plan.sensitivity import joint_drop_pp

    drop = joint_drop_pp(model, data, table, plan, measurement=request.measurement)
    progress.checked(plan, drop, table.epochs)
    return drop


def _of_task(budget: Budget, task: str) -> Budget:
    """The budget for the table's task; InvalidValue when its drop budget is in another task's unit."""
    if budget.max_drop_pp is not None and budget.task != task:
        raise InvalidValue(f"this is a {task} model: drops are measured in {unit_of(task)}, not {unit_of(budget.task)}",
                           budget.drop_field, f"give the drop budget as {BUDGET_OPTION[task]}")
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


def _float32_bytes(model) -> int:
    """Bytes of `model` as the float32 .tflite `convert` writes."""
    from tinycomp.convert import convert_float32

    return len(convert_float32(model))
