"""Which candidates a .tflite plan measures, and measuring them (`measure`): the adaptive `Schedule`
under a drop budget (pivot bits, fewer bits while the drop may fit, each tensor's fewest bits probed
first on a share of the rows).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tinycomp import bounds, tflm
from tinycomp.metrics import Task
from tinycomp.plan.candidates import (
    CONTROL,
    Candidate,
    CandidateResult,
    ruled_out,
)
from tinycomp.plan.decision import Limit
from tinycomp.plan.tflite_rows import PlanRows, score
from tinycomp.plan.tflite_runner import Runner

ResultCallback = Callable[[CandidateResult], None]


class Schedule:
    """Which candidates to measure next, given what was measured (a budget on the drop makes it adaptive).

    Each tensor starts at its pivot (4 bits, or the nearest planned bitwidth). Going to fewer bits
    goes on while the last drop is within `limit` (a drop beyond it rules that tensor's fewer bits
    out: they cannot be chosen); going to more bits goes on while the last drop is above zero (at
    zero drop, more bits only cost bytes). The limit is the budget plus one validation noise, known
    once the given file is measured. Without a budget on the drop every candidate is measured.

    With `probe` (and a budget on the drop), each tensor with bitwidths below its pivot starts at its
    fewest bits instead, first on a share of the rows (`probes`, then `probed`): when their bound says
    that candidate's drop is beyond the limit, the tensor goes on as above (that candidate measured
    in full only if the rule above wants it); else it is measured in full, and when its drop is at most
    zero, no other bitwidth of the tensor is measured: fewer bits never count as better
    (`choose.counted_drops`), so more bits can only cost bytes. A wrong probe costs time, never the
    table: every candidate in the table is measured on every candidate row.
    """

    def __init__(self, candidates: list[Candidate], results: dict[str, CandidateResult], *, task: Task, rows: int,
                 max_drop: float | None, probe: bool = False):
        self.results, self.task, self.rows, self.max_drop = results, task, rows, max_drop
        self.scale = task.scale
        self.bits: dict[str, list[int]] = {}
        for c in candidates:
            if c.tensor is not None and c.bits is not None:
                self.bits.setdefault(c.tensor, []).append(c.bits)
        self.bits = {name: sorted(bits) for name, bits in self.bits.items()}
        self.released: set[str] = set(results)
        self.all = candidates
        # tensor → its fewest bits, probed first; state: "pending", "probing", "hopeless" or "measure"
        self.fewest = {name: bits[0] for name, bits in self.bits.items()
                       if probe and max_drop is not None and bits[0] < self.pivot(name)}
        self.state = {name: "measure" if f"{name}/{2 ** bits}" in results else "pending"
                      for name, bits in self.fewest.items()}

    def pivot(self, name: str) -> int:
        bits = self.bits[name]
        return min((b for b in bits if b >= PIVOT_BITS), default=bits[-1])

    def drop(self, name: str, bits: int) -> float | None:
        control, result = self.results.get(CONTROL), self.results.get(f"{name}/{2 ** bits}")
        if control is None or result is None or control.zero_shot is None or result.zero_shot is None:
            return None
        return self.scale * (control.zero_shot - result.zero_shot)

    @property
    def limit(self) -> Limit | None:
        control = self.results.get(CONTROL)
        if self.max_drop is None or control is None or control.zero_shot is None:
            return None
        return Limit(self.max_drop, float(self.task.noise(control.zero_shot, self.rows)))

    def wanted(self, c: Candidate) -> bool:
        if self.max_drop is None or c.tensor is None or c.bits is None:
            return True
        state = self.state.get(c.tensor)
        if state in ("pending", "probing"):
            return False
        if state == "measure":
            if c.bits == self.fewest[c.tensor]:
                return True
            fewest = self.drop(c.tensor, self.fewest[c.tensor])
            if fewest is None or fewest <= 0:
                return False
        bits, order = c.bits, self.bits[c.tensor]
        pivot, i = self.pivot(c.tensor), order.index(c.bits)
        if bits == pivot:
            return True
        neighbour = order[i + 1] if bits < pivot else order[i - 1]
        drop, limit = self.drop(c.tensor, neighbour), self.limit
        if drop is None or limit is None:
            return False
        return not ruled_out({2 ** neighbour: drop}, 2 ** bits, limit) if bits < pivot else drop > 0

    def probes(self) -> list[Candidate]:
        """The fewest-bits candidates to measure on a share of the rows first."""
        out = [c for c in self.all if c.tensor in self.state and self.state[c.tensor] == "pending"
               and c.bits == self.fewest[c.tensor]]
        self.state.update((c.tensor, "probing") for c in out if c.tensor is not None)
        return out

    def probed(self, name: str, hopeless: bool) -> None:
        """What a probe found: its drop surely beyond the limit (`hopeless`), or not."""
        self.state[name] = "hopeless" if hopeless else "measure"

    def ready(self) -> list[Candidate]:
        out = [c for c in self.all if c.key not in self.released and self.wanted(c)]
        self.released.update(c.key for c in out)
        return out


PIVOT_BITS = 4
# A probe measures a tensor's fewest bits on this share of the candidates' rows (the rest, when needed, after).
PROBE_SHARE = 4


def surely_beyond(rows: PlanRows, reference: np.ndarray, outputs: np.ndarray, limit: Limit | None) -> bool:
    """Whether the one-sided 95% lower bound of the drop of `outputs` (on the first of the candidates' rows)
    is beyond what `limit` lets a candidate be part of a plan with."""
    if limit is None:
        return False
    n = len(outputs)
    drop = (bounds.accuracy_drop if rows.task.has_accuracy else bounds.snr_drop)(
        rows.y[:n], reference[:n], outputs, sided="lower")
    return limit.exceeded_by(drop.low)


def likely_first(candidates: list[Candidate], results: dict[str, CandidateResult],
                 probe: bool = False) -> list[tuple[str, int]]:
    """(tensor, bits) of the candidates to measure, in the order a drop budget's `Schedule` is likely to
    release them: every tensor's pivot, then each one's fewer bits. With `probe`, only what is released
    first: the fewest bits below a pivot (probed), else the pivot. Whether anything else is measured
    depends on the probes, and calibrating a candidate never measured takes the CPU from the workers."""

    bits: dict[str, list[int]] = {}
    for c in candidates:
        if c.tensor is not None and c.bits is not None and c.key not in results:
            bits.setdefault(c.tensor, []).append(c.bits)
    pivots = {name: min((b for b in sorted(found) if b >= PIVOT_BITS), default=max(found)) for name, found in bits.items()}
    fewest = [(name, min(found)) for name, found in bits.items() if probe and min(found) < pivots[name]]
    fewer = sorted(((name, b) for name, found in bits.items() for b in found if b < pivots[name]), key=lambda nb: -nb[1])
    if probe:  # tensors with nothing below their pivot start there
        probed = {name for name, _ in fewest}
        return fewest + [(name, b) for name, b in pivots.items() if name not in probed]
    return list(pivots.items()) + fewer


def joined(head: tflm.RowOutputs, rest: tflm.RowOutputs) -> tflm.RowOutputs:
    """One candidate's outputs on its first rows, then on the others."""
    return tflm.RowOutputs(np.concatenate([head.outputs, rest.outputs]),
                           tuple(np.concatenate([a, b]) for a, b in zip(head.extra, rest.extra)))


def measure(runner: Runner, candidates: list[Candidate], *, done: dict[str, CandidateResult] | None = None,
            max_drop: float | None = None, on_result: ResultCallback | None = None) -> dict[str, CandidateResult]:
    """Each candidate's zero-shot score in TFLM on the validation rows (what `done` lacks), one candidate
    per task in the runner's worker processes, each run from its tensor's cut (`Runner`); each
    candidate's model is made when it is released. With a budget on the drop (`max_drop`), candidates
    that could not be chosen are not measured, and each tensor's fewest bits are probed first on a
    share of the rows (see `Schedule`)."""

    rows = runner.rows
    n = len(rows.y)
    head = n // PROBE_SHARE
    results = dict(done or {})
    if any(c.key not in results for c in candidates):
        runner.start_reference()
        for name, bits in likely_first(candidates, results, probe=head > 0):  # while the workers run the given file
            if runner.reference_ready():
                break
            runner.palettes.array(name, bits)
        runner.run_reference()
    if any(c.key == CONTROL for c in candidates) and CONTROL not in results:
        results[CONTROL] = runner.control()
        if on_result:
            on_result(results[CONTROL])
    schedule = Schedule(candidates, results, task=rows.task, rows=n, max_drop=max_drop, probe=head > 0)
    last = [time.perf_counter()]

    by_key = {c.key: c for c in candidates if c.tensor is not None and c.bits is not None}
    choices = {key: {str(c.tensor): int(c.bits or 0)} for key, c in by_key.items()}
    heads: dict[str, tflm.RowOutputs] = {}

    def ready() -> list[tuple[Any, tuple[Any, ...]]]:
        tasks = [((c.key, "head"), runner.candidate_task(choices[c.key], slice(0, head))) for c in schedule.probes()]
        for c in schedule.ready():
            if c.key not in by_key:
                continue
            if c.key in heads:
                tasks.append(((c.key, "rest"), runner.candidate_task(choices[c.key], slice(head, n))))
            else:
                tasks.append(((c.key, "all"), runner.candidate_task(choices[c.key])))
        return tasks

    def finished(task: tuple[str, str], outputs: tflm.RowOutputs) -> None:
        key, part = task
        if part == "head":
            heads[key] = outputs
            assert runner.reference is not None
            schedule.probed(str(by_key[key].tensor), surely_beyond(rows, runner.reference, outputs.outputs,
                                                                    schedule.limit))
            return
        if part == "rest":
            outputs = joined(heads.pop(key), outputs)
        runner.keep(key, choices[key], outputs)
        now = time.perf_counter()
        result = CandidateResult(key, zero_shot=score(outputs.outputs, rows.y, rows.task),
                                 seconds=round((now - last[0]) * runner.jobs, 3))
        last[0] = now
        results[key] = result
        if on_result:
            on_result(result)

    tflm.run_scheduled(tflm.run_rows, ready, runner.jobs, finished, source=runner.palettes.source, pool=runner.pool)
    return results
