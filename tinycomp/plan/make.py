"""The plan core: `make_plan(backend, request)`, one way for every model a backend can measure.

A `Backend` measures; the core decides. The backend lists candidates (`Candidate(tensor, bits)`),
measures them into a `SensitivityTable`, makes the file of any choice (`model_bytes(choice,
decode_budget)`: tensor → bits, LUT-compressed as the real chain will), measures a choice with all its
tensors compressed at once (the joint check) and each refinement step, and writes the spec its chain
reads. From `model_bytes` alone the core measures byte costs (`byte_costs`), arenas and sliced arenas
(`Sizes`, in TFLM worker processes) and the chosen plan's exact size. Two backends:
`keras_backend.KerasBackend` (TFMOT clustering, fine-tuned) and `tflite_plan.TfliteBackend`
(palettization of an int8 .tflite, measured in TFLM). Every accept or refuse of a measured drop
against the budget goes through `decision.DECISION`.

Measuring (or reusing a recorded table, or merging shards' parts), resolving a size ratio against the
float32 file, choosing within the budget (and the RAM budget), checking the choice with all its tensors
compressed at once, refining it while the measured drop allows, and measuring the chosen plan's exact
bytes and arena happen here, once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from tinycomp.bounds import Checked
from tinycomp.data.validation import ValidationSource
from tinycomp.errors import InvalidValue
from tinycomp.metrics import Task
from tinycomp.plan.candidates import Candidate, CandidateResult, PartialTable, Shard, merge_parts
from tinycomp.plan.choose import (
    ArenasOf,
    Budget,
    Plan,
    SensitivityTable,
    Slicing,
    checked_plan,
    choose_plan,
    choose_plan_within_ram,
    measured_of,
    nothing_clustered,
    step_downs,
    stepped,
)
from tinycomp.plan.decision import DECISION, Measured
from tinycomp.plan.request import ByteCosts, JointDrop, Measurement, PlanOutcome, PlanRequest

# At most this many steps of the refinement after the table's choice are measured (see refined_plan).
MAX_STEPS = 8
# At most this many of the biggest steps are then measured as the check measures (see spent_budget), by
# backend: a Keras step is a full fine-tune on every fit row (on full MNIST about one `cluster` run each);
# a .tflite step is one zero-shot run in TFLM (seconds), so it steps until no step fits.
MAX_CHECKED_STEPS = {"keras": 2, "tflite": 16}


class StepMeasurer(Protocol):
    """Measures refinement steps (a backend's `step_measurer`)."""

    max_drop: float
    min_agreement: float | None

    @property
    def exhausted(self) -> bool:
        """Nothing more can be measured meaningfully."""

    def measure(self, plan: Plan) -> JointDrop:
        """`plan` measured as a step: its drop, paired noise and bounds, and the fine-tuning epochs used."""

    def drop_of(self, plan: Plan) -> float:
        """For checked_plan: the drop, with the plan's noise and epochs set."""


class Backend(Protocol):
    """What measures a plan's candidates and makes its files (see the module docstring)."""

    kind: str  # "keras" or "tflite": recorded as the plan's backend
    task: Task
    data_name: str
    pool: Any  # the TFLM worker pool arenas are measured in (None: one per measurement)

    def opened(self, jobs: int) -> contextlib.AbstractContextManager[Any]:
        """The backend ready to measure in `jobs` processes (worker pools live as long as this)."""

    def candidates(self) -> list[Candidate]:
        """Every candidate in the canonical order (the control first)."""

    def measure(self, todo: list[Candidate], done: dict[str, CandidateResult], *, jobs: int,
                max_drop: float | None, on_result: Callable[[CandidateResult], None]) -> dict[str, CandidateResult]:
        """`done` plus the results `todo` still lacks (a drop budget may leave hopeless ones out)."""

    def table(self, results: dict[str, CandidateResult], *, max_drop: float | None, seconds: float) -> SensitivityTable:
        """The sensitivity table of every candidate's results, with byte costs (`byte_costs`)."""

    def adopt(self, table: SensitivityTable) -> SensitivityTable:
        """A recorded table, with the backend made ready to make files and check plans of it."""

    def raw_bytes(self, name: str) -> int:
        """Bytes of the tensor as given (int8)."""

    def size_of(self, choice: dict[str, int]) -> int:
        """Bytes of `model_bytes(choice)`, for byte costs (the values may be stand-ins with as many per table)."""

    def sizes_alone(self, name: str, bits: list[int]) -> dict[int, int]:
        """`size_of({name: b})` at each of `bits`."""

    def model_bytes(self, choice: dict[str, int], decode_budget: int | None = None) -> bytes:
        """The file the chain makes of `choice` (tensor → bits), LUT-compressed (kernels decoding to more than
        `decode_budget` sliced), stripped when the plan is for `compress --strip`."""

    def decode_budgets(self, names: frozenset[str]) -> list[int]:
        """Decode budgets that slice the named tensors differently, largest first."""

    def float32_bytes(self) -> int:
        """Bytes of the model as a float32 .tflite (what --target-ratio divides)."""

    def noise(self, table: SensitivityTable) -> float:
        """The standard error of one score on the check's rows, in drop units."""

    def check_rows(self) -> int:
        """Rows the joint check measures on."""

    def validation(self) -> ValidationSource:
        """Where the validation rows come from (the data's own set, held-out groups, or the last rows)."""

    def joint_drop(self, table: SensitivityTable, plan: Plan) -> JointDrop:
        """`plan` measured with all its tensors compressed at once, as its chain will make it."""

    def step_measurer(self, table: SensitivityTable, max_drop: float, *,
                      min_agreement: float | None = None) -> StepMeasurer:
        """What measures refinement steps of a plan checked zero-shot."""

    def spec_text(self, model_path: str, output: str, request: PlanRequest, outcome: PlanOutcome) -> str:
        """The spec its chain reads (`cluster --spec`, `palettize --spec`), with a header of what is predicted."""


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

    def stepped(self, plan: Plan, step: str, measured: JointDrop, kept: bool) -> None: ...


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

    def stepped(self, plan: Plan, step: str, measured: JointDrop, kept: bool) -> None:
        pass

    def measuring(self, measurement: Measurement, task: Task, jobs: int, shard: Shard | None) -> None:
        pass

    def resumed(self, path: str, count: int | None) -> None:
        pass


def make_plan(backend: Backend, request: PlanRequest, *, recorded: SensitivityTable | None = None,
              recorded_costs: ByteCosts | None = None, progress: PlanProgress | None = None, jobs: int = 1,
              done: dict[str, CandidateResult] | None = None,
              parts: list[tuple[str, PartialTable]] | None = None) -> PlanOutcome:
    """Plan as `request` asks, `backend` measuring candidates in `jobs` processes.

    With `recorded` (a table an earlier plan measured; `recorded_costs` the byte-cost settings it
    was measured with), nothing is measured again: the backend's measurement must be the one the
    table was made with (the CLI takes it from the record), and its byte costs must match. `done`
    holds results measured before (a resumed run: only what they lack is measured); `parts` are
    every shard's partial table (nothing is measured; they must cover every candidate once).
    """
    progress = progress or Silent()
    with backend.opened(jobs):
        return _make_plan(backend, request, recorded=recorded, recorded_costs=recorded_costs, progress=progress,
                          jobs=jobs, done=done, parts=parts)


def _make_plan(backend: Backend, request: PlanRequest, *, recorded: SensitivityTable | None,
               recorded_costs: ByteCosts | None, progress: PlanProgress, jobs: int,
               done: dict[str, CandidateResult] | None, parts: list[tuple[str, PartialTable]] | None) -> PlanOutcome:
    budget = budget_for_task(request.budget, backend.task, backend.data_name)  # before measuring
    if recorded is not None:
        _check_same_costs(recorded_costs, request.costs)
        table = backend.adopt(recorded)
    else:
        table = measured_table(backend, budget.max_drop, jobs=jobs, done=done, parts=parts, progress=progress)
    if budget.target_ratio is not None:
        budget = budget.resolved(backend.float32_bytes())
        progress.budget_resolved(budget)
    sizes = Sizes(backend, table)

    def choose(max_drop: float | None) -> Plan:
        within = budget if max_drop is None else replace(budget, max_drop=max_drop)
        if within.ram_bytes is None:
            return choose_plan(table, within)
        return choose_plan_within_ram(table, within, sizes.arenas_of, sizes.slicing())

    noise = backend.noise(table)
    if request.check:
        def full_check(plan: Plan) -> float:
            return _checked_drop(backend, table, plan, progress)

        chosen, tried = checked_plan(choose, full_check, budget.max_drop, noise, min_agreement=budget.min_agreement)
        if budget.max_drop is not None and request.refine:
            chosen = _refined(backend, table, budget, chosen, tried, choose, full_check, progress, sizes.arenas_of,
                              noise)
        if budget.max_drop is not None and chosen.clustered() and not DECISION.accepts(
                measured_of(chosen, noise), budget.max_drop, budget.min_agreement):
            chosen = _refused_all(table, budget.max_drop)
    else:
        chosen, tried = choose(budget.max_drop), []
    chosen.exact_bytes = len(backend.model_bytes(bits_of(chosen), chosen.decode_budget))
    if chosen.arena_bytes is None:
        [chosen.arena_bytes] = sizes.arenas_of([frozenset(chosen.clustered())])
    return PlanOutcome(chosen, tried, table, budget, noise, backend=backend.kind,
                       check_rows=backend.check_rows() if request.check else 0, validation=backend.validation())


def _refused_all(table: SensitivityTable, max_drop: float) -> Plan:
    """No plan the check measured is within the budget on its bound: the plan compresses nothing (a
    budget is a promise; the plans tried, with their measurements, stay in the outcome's `tried`)."""
    plan = nothing_clustered(table)
    plan.budget = max_drop
    return plan


def measured_table(backend: Backend, max_drop: float | None, *, jobs: int, done: dict[str, CandidateResult] | None,
                   parts: list[tuple[str, PartialTable]] | None, progress: PlanProgress) -> SensitivityTable:
    """Measure every candidate `done` lacks (or merge `parts`: nothing is measured) into the table."""
    start = time.perf_counter()
    candidates = backend.candidates()
    if parts is not None:
        done = merge_parts(parts, candidates=candidates)
    progress.started(candidates)
    results = backend.measure(candidates, dict(done or {}), jobs=jobs, max_drop=max_drop,
                              on_result=progress.measured)
    return backend.table(results, max_drop=max_drop, seconds=time.perf_counter() - start)


def measure_shard(backend: Backend, shard: Shard, *, jobs: int = 1, done: dict[str, CandidateResult] | None = None,
                  on_start: Callable[[list[Candidate]], None] | None = None,
                  on_result: Callable[[CandidateResult], None] | None = None) -> dict[str, CandidateResult]:
    """Measure shard `shard` of the canonical candidates (what `done` lacks); returns its results.
    No budget is known here, so nothing is left out for being hopeless."""
    with backend.opened(jobs):
        mine = shard.select(backend.candidates())
        if on_start:
            on_start(mine)
        results = backend.measure(mine, dict(done or {}), jobs=jobs, max_drop=None,
                                  on_result=on_result or (lambda result: None))
    return {c.key: results[c.key] for c in mine}


def bits_of(plan: Plan) -> dict[str, int]:
    """The plan's choice as tensor → bits."""
    return {name: o.bits for name, o in plan.clustered().items()}


def byte_costs(backend: Backend, bits: dict[str, list[int]]) -> tuple[dict[str, dict[int, int]], int, int]:
    """({tensor: {bits: bytes it costs in the compressed file}}, once-only DECODE overhead, the file's own bytes).

    A tensor's cost is the file's size change when only that tensor is compressed (`backend.sizes_alone`,
    sizes of `model_bytes` files), plus its int8 bytes. What every single-tensor compression pays once (the DECODE
    operator code, alignment) is measured from one two-tensor compression and taken out."""
    base = backend.size_of({})
    costs: dict[str, dict[int, int]] = {}
    for name, wanted in bits.items():
        raw = backend.raw_bytes(name)
        costs[name] = {b: raw + size - base for b, size in backend.sizes_alone(name, wanted).items()}
    overhead = 0
    measured = [(name, min(c)) for name, c in costs.items() if c]
    if len(measured) >= 2:  # one tensor: the shared part cannot be separated; it stays in the tensor's cost
        (first, a), (second, b) = measured[:2]
        pair = backend.size_of({first: a, second: b}) - base
        overhead = max(0, (costs[first][a] - backend.raw_bytes(first)) + (costs[second][b] - backend.raw_bytes(second))
                       - pair)
    return {n: {b: v - overhead for b, v in c.items()} for n, c in costs.items()}, overhead, base


class Sizes:
    """Arenas of sets of compressed tensors, unsliced and sliced, measured in TFLM worker processes on
    `model_bytes` files at each tensor's fewest measured bits (the decoded tensors, not the indices, take
    arena), cached."""

    def __init__(self, backend: Backend, table: SensitivityTable):
        self.backend = backend
        self.lowest = {layer.name: min(o.bits for o in layer.options if o.clusters is not None)
                       for layer in table.layers if len(layer.options) > 1}
        self._arenas: dict[frozenset[str], int] = {}
        self._sliced: dict[tuple[frozenset[str], int], int] = {}

    def _measure(self, files: list[bytes], what: str) -> list[int]:
        from tinycomp.tflm import arenas, default_jobs

        return arenas(files, default_jobs(), what, "plan without a RAM budget", pool=self.backend.pool)

    def arenas_of(self, sets: list[frozenset[str]]) -> list[int]:
        missing = [s for s in dict.fromkeys(sets) if s not in self._arenas]
        if missing:
            files = [self.backend.model_bytes({n: self.lowest[n] for n in s}) for s in missing]
            self._arenas.update(zip(missing, self._measure(files, "the plan's model")))
        return [self._arenas[s] for s in sets]

    def sliced_arenas(self, names: frozenset[str], budgets: list[int]) -> list[int]:
        missing = [b for b in dict.fromkeys(budgets) if (names, b) not in self._sliced]
        if missing:
            files = [self.backend.model_bytes({n: self.lowest[n] for n in names}, b) for b in missing]
            self._sliced.update(((names, b), a) for b, a in zip(missing, self._measure(files, "the plan's sliced model")))
        return [self._sliced[(names, b)] for b in budgets]

    def slicing(self) -> Slicing:
        from tinycomp.tflm import default_jobs

        return Slicing(budgets=self.backend.decode_budgets, arenas=self.sliced_arenas, batch=default_jobs())


def _checked_drop(backend: Backend, table: SensitivityTable, plan: Plan, progress: PlanProgress) -> float:
    """The check: the plan measured as its chain will make it; sets `plan.epochs` (0: zero-shot), its
    paired noise and its agreement with the given model."""
    if not plan.clustered():
        plan.epochs = 0
        return 0.0
    measured = backend.joint_drop(table, plan)
    plan.epochs, plan.checked_noise = measured.epochs, measured.noise
    if measured.agreement is not None:
        plan.checked_agreement = measured.agreement
    plan.checked_bound = None if measured.checked is None else measured.checked.to_json()
    progress.checked(plan, measured.drop, measured.epochs)
    return measured.drop


def _refined(backend: Backend, table: SensitivityTable, budget: Budget, checked: Plan, tried: list[Plan],
             choose: Callable[[float | None], Plan], full_check: Callable[[Plan], float], progress: PlanProgress,
             arenas_of: ArenasOf, noise: float) -> Plan:
    """The checked table plan `checked`, when checked zero-shot, stepped down while the budget its measured
    drop leaves allows (`refined_plan`); the stepped plan is checked as its chain will make it and used only
    when that check is accepted (`DECISION.accepts`). Starting from the checked plan, refinement never ends
    larger than the plan without it, and only the steps cost extra (appended to `tried`). A plan checked
    fine-tuned takes no quick steps: they would be subset fine-tunes, which mis-measure what a full one
    recovers (on full MNIST a 4,096-row fine-tune measured +0.57 pp for a step that fits after a full
    fine-tune), so its steps are the spent-budget steps, each measured as the check measures. When the checked
    plan is refused or compresses nothing, the cheap path is tried instead
    (`_cheaply_rechosen_and_refined`), and its plan is used when its full check passes. Then the budget the
    accepted plan's bound leaves is spent (`spent_budget`), whichever path found it."""
    assert budget.max_drop is not None
    ram = budget.ram_bytes
    fits_ram = None if ram is None else (lambda plan: arenas_of([frozenset(plan.clustered())])[0] <= ram)
    max_steps = MAX_CHECKED_STEPS.get(backend.kind, 1)
    within = DECISION.accepts(measured_of(checked, noise), budget.max_drop, budget.min_agreement)
    if not within or not checked.clustered():
        found, more = _cheaply_rechosen_and_refined(backend, table, budget, choose, full_check, progress, arenas_of)
        tried += more
        if found is not None and found.clustered():  # accepted: spend what its bound leaves, as below
            return spent_budget(table, found, budget, full_check, tried, noise, fits_ram=fits_ram, max_steps=max_steps)
        return found if found is not None and not within else checked
    refined = checked
    if not checked.epochs:  # a fine-tuned plan's quick steps would be subset fine-tunes, which mis-measure
        start = replace(checked, checked_drop=None, checked_noise=None, checked_bound=None)
        stepped = refined_plan(table, start, backend.step_measurer(table, budget.max_drop,
                                                                   min_agreement=budget.min_agreement),
                               progress, fits_ram=fits_ram)
        if stepped.stepped:
            stepped.checked_drop = full_check(stepped)
            tried.append(stepped)
            if DECISION.accepts(measured_of(stepped, noise), budget.max_drop, budget.min_agreement):
                refined = stepped
    return spent_budget(table, refined, budget, full_check, tried, noise, fits_ram=fits_ram, max_steps=max_steps)


def spent_budget(table: SensitivityTable, plan: Plan, budget: Budget, full_check: Callable[[Plan], float],
                 tried: list[Plan], noise: float, *, fits_ram: Callable[[Plan], bool] | None = None,
                 max_steps: int = 1) -> Plan:
    """Use the budget that was measured: while the accepted plan's bound leaves some of the budget unused,
    take the step that saves the most bytes, measured as the check measures (on every fit row, fine-tuned
    when the backend fine-tunes), and keep it when `DECISION.accepts` it. A step a quick measurement
    refused (a subset fine-tune, or the table's candidate on its subset) gets this measurement once before
    it is dropped: a full fine-tune can recover what a subset's cannot. Stops when no step fits, or after
    `max_steps` measured steps (`MAX_CHECKED_STEPS` of the backend)."""
    assert budget.max_drop is not None
    refused: dict[str, int] = {}
    for _ in range(max_steps):
        if plan.checked_bound is None or not plan.clustered():
            break
        bound = Checked.from_json(plan.checked_bound, "the plan's check")
        if bound.drop.high >= budget.max_drop or not bound.within(budget.max_drop, budget.min_agreement):
            break  # nothing of the budget left to spend
        steps = sorted(step_downs(table, plan, above=refused), key=lambda s: (-s.saved_bytes, s.layer))
        steps = [s for s in steps if fits_ram is None or plan.choices[s.layer].clusters is not None
                 or fits_ram(stepped(plan, s, table.decode_overhead))]
        if not steps:
            break
        candidate = stepped(plan, steps[0], table.decode_overhead)
        candidate.checked_drop = full_check(candidate)
        tried.append(candidate)
        if DECISION.accepts(measured_of(candidate, noise), budget.max_drop, budget.min_agreement):
            plan = candidate
        else:
            refused[steps[0].layer] = steps[0].option.bytes
    return plan


def _cheaply_rechosen_and_refined(backend: Backend, table: SensitivityTable, budget: Budget,
                                  choose: Callable[[float | None], Plan], full_check: Callable[[Plan], float],
                                  progress: PlanProgress, arenas_of: ArenasOf) -> tuple[Plan | None, list[Plan]]:
    """When the table's plan fails its full check (the table was optimistic): the table's plan checked
    cheaply (as refinement steps are measured) and chosen again while over budget, then refined, then
    checked as its chain will make it. When that check refuses it too, a plan grown from the uncompressed
    model: refinement steps from nothing compressed (the gentlest option of the layer that saves the most
    bytes per counted drop first), each kept while its bound fits, then checked the same way: a bound too
    wide for the table's plans can still admit a gentler one. Returns (None, tried) when every plan
    checked is refused, (a plan that compresses nothing, tried) when no step fits."""
    assert budget.max_drop is not None
    cheap = backend.step_measurer(table, budget.max_drop, min_agreement=budget.min_agreement)
    start, _ = checked_plan(choose, cheap.drop_of, budget.max_drop, min_agreement=budget.min_agreement)
    start = replace(start, checked_drop=None, checked_noise=None, checked_bound=None)
    ram = budget.ram_bytes
    fits_ram = None if ram is None else (lambda plan: arenas_of([frozenset(plan.clustered())])[0] <= ram)
    tried: list[Plan] = []
    refined = refined_plan(table, start, cheap, progress, fits_ram=fits_ram)
    for grown in (False, True):
        if grown:
            refined = refined_plan(table, nothing_clustered(table), cheap, progress, fits_ram=fits_ram)
        if not refined.clustered() or any(refined.choices == p.choices for p in tried):
            continue
        refined.checked_drop = full_check(refined)
        tried.append(refined)
        if DECISION.accepts(measured_of(refined, 0.0), budget.max_drop, budget.min_agreement):
            return refined, tried
    return (None, tried) if tried else (refined, tried)


def refined_plan(table: SensitivityTable, plan: Plan, measurer: StepMeasurer, progress: PlanProgress, *,
                 fits_ram: Callable[[Plan], bool] | None = None) -> Plan:
    """Use the budget the table's (pessimistic, additive) prediction leaves: step the tensor with the
    most bytes saved per counted drop to the cheapest of its least harmful cheaper options, measure
    the whole plan (`measurer`: all tensors compressed at once), and keep the step while
    `DECISION.keeps_step` accepts its measured drop. After a refused step, that tensor is only offered
    options less aggressive than the refused one. At most MAX_STEPS steps are measured; the final check
    still decides. With `fits_ram` (a RAM budget), a step that compresses a tensor whose decoding does
    not fit is not taken (the arena depends on which tensors are compressed, not on their bitwidths).
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
        measured = measurer.measure(candidate)
        kept = DECISION.keeps_step(Measured(measured.drop, measured.noise, measured.checked), measurer.max_drop,
                                   measurer.min_agreement)
        progress.stepped(candidate, step.describe, measured, kept)
        if kept:
            plan = candidate
            plan.epochs = measured.epochs
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
    if budget.min_agreement is not None and not task.has_accuracy:
        raise InvalidValue(f"a top-1 agreement budget needs a classifier, but {data_name} makes this a {task.name} task",
                           "min_agreement", "budget a regression model's agreement with --max-snr-drop")
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
