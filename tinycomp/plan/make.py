"""`make_plan`: one request in, one outcome out. Measures the sensitivity table (or reuses a recorded
one), resolves a size ratio against the float32 file, chooses within the budget (and the RAM
budget), checks the choice with all its layers clustered at once, and measures the chosen plan's
exact bytes and arena on a synthetic file. The CLI and Python callers use the same function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from tinycomp.convert import convert_float32
from tinycomp.data import Dataset
from tinycomp.errors import InvalidValue
from tinycomp.metrics import Task
from tinycomp.models import FINE_TUNE_LEARNING_RATE
from tinycomp.plan.candidates import Candidate, CandidateResult, PartialTable, Shard
from tinycomp.plan.choose import (
    ArenasOf,
    Budget,
    Plan,
    SensitivityTable,
    checked_plan,
    choose_plan,
    choose_plan_within_ram,
    step_downs,
    stepped,
)
from tinycomp.plan.costs import arena_measurer, plan_bytes_exact, slicing_measurer
from tinycomp.plan.request import ByteCosts, Measurement, PlanOutcome, PlanRequest
from tinycomp.plan.sensitivity import (
    int8_for_costs,
    joint_drop,
    sensitivity,
    split_validation,
    task_of,
    validation_rows,
)

# At most this many steps of the refinement after the table's choice are measured (see refined_plan).
MAX_STEPS = 8


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

    def stepped(self, plan: Plan, step: str, drop_pp: float, noise_pp: float, epochs: int, kept: bool) -> None: ...


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

    def stepped(self, plan: Plan, step: str, drop: float, noise: float, epochs: int, kept: bool) -> None:
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
    rate = table.learning_rate or request.measurement.learning_rate or FINE_TUNE_LEARNING_RATE
    table.learning_rate = rate
    request = replace(request, measurement=replace(request.measurement, learning_rate=rate))
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
        def full_check(plan: Plan) -> float:
            return _checked_drop(model, data, table, plan, request, progress)

        chosen, tried = checked_plan(choose, full_check, budget.max_drop, noise)
        if budget.max_drop is not None and request.refine:
            chosen = _refined(model, data, table, request, budget, chosen, tried, choose, full_check, progress,
                              arenas_of, noise)
    else:
        chosen, tried = choose(budget.max_drop), []
    chosen.exact_bytes = plan_bytes_exact(int8, infos, chosen, request.costs.strip)
    if chosen.arena_bytes is None:
        [chosen.arena_bytes] = arenas_of([frozenset(chosen.clustered())])
    return PlanOutcome(chosen, tried, table, budget, noise)


def _checked_drop(model: Any, data: Dataset, table: SensitivityTable, plan: Plan, request: PlanRequest,
                  progress: PlanProgress) -> float:
    """The check: the plan measured as `cluster` will make it (every fit row, the whole validation
    split), zero-shot and fine-tuned; sets `plan.epochs` to the better one's (0: zero-shot)."""
    if not plan.clustered():
        plan.epochs = 0
        return 0.0
    measured = joint_drop(model, data, table, plan, measurement=request.measurement)
    plan.epochs, plan.checked_noise = measured.epochs, measured.noise
    progress.checked(plan, measured.drop, measured.epochs)
    return measured.drop


def _checked(plan: Plan) -> float:
    assert plan.checked_drop is not None
    return plan.checked_drop


def _refined(model: Any, data: Dataset, table: SensitivityTable, request: PlanRequest, budget: Budget,
             checked: Plan, tried: list[Plan], choose: Callable[[float | None], Plan],
             full_check: Callable[[Plan], float], progress: PlanProgress, arenas_of: ArenasOf, noise: float) -> Plan:
    """The checked table plan `checked`, stepped down while the budget its measured drop leaves allows
    (`refined_plan`); the stepped plan is checked as `cluster` will make it and used only when that
    check is within budget + noise. Starting from the checked plan, refinement never ends larger
    than the plan without it, and only the steps cost extra (appended to `tried`). When the checked
    plan is over budget or clusters nothing, the cheap path is tried instead
    (`_cheaply_rechosen_and_refined`), and its plan is used when its full check passes."""
    assert budget.max_drop is not None
    within = _checked(checked) <= budget.max_drop + (checked.checked_noise if checked.checked_noise is not None
                                                      else noise)
    if not within or not checked.clustered():
        found, more = _cheaply_rechosen_and_refined(model, data, table, request, budget, choose, full_check,
                                                    progress, arenas_of)
        tried += more
        return found if found is not None and (found.clustered() or not within) else checked
    ram = budget.ram_bytes
    fits_ram = None if ram is None else (lambda plan: arenas_of([frozenset(plan.clustered())])[0] <= ram)
    start = replace(checked, checked_drop=None, checked_noise=None)
    refined = refined_plan(table, start, StepMeasurer(model, data, table, request, budget.max_drop,
                                                      fine_tuned=bool(checked.epochs)), progress, fits_ram=fits_ram)
    if not refined.stepped:
        return checked
    refined.checked_drop = full_check(refined)
    tried.append(refined)
    error = refined.checked_noise if refined.checked_noise is not None else noise
    return refined if _checked(refined) <= budget.max_drop + error else checked


def _cheaply_rechosen_and_refined(model: Any, data: Dataset, table: SensitivityTable, request: PlanRequest, budget: Budget,
                         choose: Callable[[float | None], Plan], full_check: Callable[[Plan], float],
                         progress: PlanProgress, arenas_of: ArenasOf) -> tuple[Plan | None, list[Plan]]:
    """When the table's plan fails its full check (the table was optimistic): the table's plan checked
    cheaply (as refinement steps are measured) and chosen again while over budget, then refined, then
    checked as `cluster` will make it. Returns (None, tried) when the refined plan fails that check."""
    assert budget.max_drop is not None
    cheap = StepMeasurer(model, data, table, request, budget.max_drop)
    start, _ = checked_plan(choose, cheap.drop_of, budget.max_drop)
    start = replace(start, checked_drop=None, checked_noise=None)
    ram = budget.ram_bytes
    fits_ram = None if ram is None else (lambda plan: arenas_of([frozenset(plan.clustered())])[0] <= ram)
    refined = refined_plan(table, start, cheap, progress, fits_ram=fits_ram)
    if not refined.clustered():
        return refined, []
    refined.checked_drop = full_check(refined)
    if _checked(refined) <= budget.max_drop + (refined.checked_noise or 0.0):
        return refined, [refined]
    return None, [refined]


class StepMeasurer:
    """Measures a plan as refinement steps are measured: all its layers clustered at once, on every
    validation row, zero-shot, and only when that is over budget − noise, fine-tuned for the table's
    epochs on the candidates' fit rows while the fine-tuning allowance lasts (a quarter of the rows one
    `cluster` run fine-tunes on, at least one fine-tune: on full-size MNIST two 4,096-row fine-tunes).
    With `fine_tuned` (the plan being refined was checked fine-tuned), a zero-shot measurement would
    charge every step with the damage fine-tuning repairs, so steps are only measured fine-tuned, and
    none is measured once the allowance is spent."""

    def __init__(self, model: Any, data: Dataset, table: SensitivityTable, request: PlanRequest, max_drop: float,
                 *, fine_tuned: bool = False):
        self.model, self.data, self.table, self.request, self.max_drop = model, data, table, request, max_drop
        self.fine_tuned = fine_tuned
        measurement = request.measurement
        fit_rows = len(split_validation(data, measurement.validation_split)[0].x_train)
        self.step_rows = min(measurement.rows("fine_tune_rows") or fit_rows, fit_rows)
        self.tunes_left = max(1, fit_rows // max(4 * self.step_rows, 1)) if table.epochs > 0 else 0

    @property
    def exhausted(self) -> bool:
        """Nothing more can be measured meaningfully (fine-tuned steps, and no fine-tune left)."""
        return self.fine_tuned and self.tunes_left <= 0

    def measure(self, plan: Plan) -> tuple[float, float, int]:
        """(drop, its paired noise, epochs of the better measurement) of `plan`."""
        measurement = self.request.measurement
        if self.fine_tuned:
            self.tunes_left -= 1
            tuned = joint_drop(self.model, self.data, self.table, plan, measurement=measurement,
                               fine_tune_rows=self.step_rows)
            return tuned.drop, tuned.noise, tuned.epochs
        measured = joint_drop(self.model, self.data, replace(self.table, epochs=0), plan, measurement=measurement)
        if measured.drop > self.max_drop - measured.noise and self.tunes_left > 0:
            self.tunes_left -= 1
            tuned = joint_drop(self.model, self.data, self.table, plan, measurement=measurement,
                               fine_tune_rows=self.step_rows)
            if tuned.drop < measured.drop:
                measured = tuned
        return measured.drop, measured.noise, measured.epochs

    def drop_of(self, plan: Plan) -> float:
        """For checked_plan: the drop, with the plan's noise and epochs set."""
        drop, plan.checked_noise, plan.epochs = self.measure(plan)
        return drop


def refined_plan(table: SensitivityTable, plan: Plan, measurer: StepMeasurer, progress: PlanProgress, *,
                 fits_ram: Callable[[Plan], bool] | None = None) -> Plan:
    """Use the budget the table's (pessimistic, additive) prediction leaves: step the layer with the
    most bytes saved per counted drop to the cheapest of its least harmful cheaper options, measure
    the whole plan (`measurer`: all layers clustered at once, on every validation row), and keep the
    step while the measured drop stays within the budget minus that measurement's noise. After a
    refused step, that layer is only offered options less aggressive than the refused one. At most
    MAX_STEPS steps are measured; the final check still decides. With `fits_ram` (a RAM budget), a step
    that compresses a layer whose decoding does not fit is not taken (the arena depends on which layers
    are compressed, not on their bitwidths).
    """
    above: dict[str, int] = {}  # layer → bytes of its refused option: only options with more bytes are tried
    skip: set[str] = set()  # layers whose compression does not fit the RAM budget
    measured_steps = 0
    while measured_steps < MAX_STEPS and not measurer.exhausted:
        steps = step_downs(table, plan, above=above, skip=skip)
        if not steps:
            break
        step = steps[0]
        candidate = stepped(plan, step, table.decode_overhead)
        if fits_ram is not None and plan.choices[step.layer].clusters is None and not fits_ram(candidate):
            skip.add(step.layer)
            continue
        measured_steps += 1
        drop, noise, epochs = measurer.measure(candidate)
        kept = drop <= measurer.max_drop - noise
        progress.stepped(candidate, step.describe, drop, noise, epochs, kept)
        if kept:
            plan = candidate
            plan.epochs = epochs
        else:
            above[step.layer] = step.option.bytes
    return plan


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
