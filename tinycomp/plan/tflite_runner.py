"""Running a .tflite plan's candidates in TFLM worker processes (`Runner`): the given file once with the
activations every cut needs, each candidate from its tensor's first reader (`tflite.cut`), and the
joint check from the plan's earliest cut, fed the first tensor's candidate's activations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tinycomp import tflm
from tinycomp.plan.candidates import (
    CONTROL,
    CandidateResult,
)
from tinycomp.plan.tflite_palettes import Palettes
from tinycomp.plan.tflite_rows import PlanRows, score
from tinycomp.tflite.cut import first_reader, live_tensors, suffix_model, why_not_cut
from tinycomp.tflite.model import parse_tflite
from tinycomp.tflite.private import replace_buffers

# Activations cached for cut models and the check, at most (beyond it, fewer cuts: those candidates run
# more operators; fewer tails: the check runs from the plan's first tensor).
MAX_CACHED_BYTES = 512 * 2 ** 20


def _chunks(n: int, jobs: int) -> list[slice]:
    """`n` rows in up to `jobs` contiguous slices."""
    return [slice(int(i[0]), int(i[-1]) + 1) for i in np.array_split(np.arange(n), max(1, min(jobs, n))) if len(i)]


@dataclass(frozen=True)
class Template:
    """A model to replace weight values in: its bytes, {given tensor index: buffer index}, and the given
    model's tensors it also outputs (raw, from output `first_extra` on)."""

    data: bytes
    buffers: dict[int, int]
    first_extra: int = 1
    extra: tuple[int, ...] = ()


class Runner:
    """Runs the given file and its candidates in TFLM worker processes (one pool for the whole plan), each
    candidate from the first operator that reads its palettized tensor.

    The given file runs once on the check's rows with the activations every cut needs as extra
    outputs (`tflite.cut`); a candidate then runs the cut model starting at its tensor's first reader,
    fed those activations, with its tensor's values replaced in place. Its outputs are bit-identical to
    running the whole palettized file (the operators before the cut do not read the tensor). Models
    that cannot be cut (several subgraphs, variable tensors) run whole, as do tensors whose cut would
    cache more than MAX_CACHED_BYTES of activations.

    With `check_rows`, each candidate also returns the activations at the later cuts (its *tail*): the
    check of a plan then runs, on the candidates' rows, only from the plan's second tensor on, fed
    its first tensor's tail (bit-identical again: nothing between the two cuts reads the second).
    """

    def __init__(self, palettes: Palettes, rows: PlanRows, pool: Any, jobs: int, *, check_rows: bool):
        self.palettes, self.rows, self.pool, self.jobs = palettes, rows, pool, max(1, jobs)
        model = parse_tflite(palettes.int8, palettes.source)
        self.given_buffers = {t.index: int(t.buffer.index) for t in model.subgraphs[0].tensors
                              if t.buffer is not None and t.buffer.data}
        self.x = rows.x_check if check_rows else rows.x
        self.op_of = self._cuts(model, len(self.x))
        self.live = {op: live_tensors(model, op) for op in set(self.op_of.values()) if op}
        self.cached = sorted({i for tensors in self.live.values() for i in tensors})
        self.keep_tails = check_rows
        self.tails: dict[str, tuple[np.ndarray, dict[int, np.ndarray]]] = {}
        self._tail_bytes = 0
        self._templates: dict[int, Template] = {}
        self.reference: np.ndarray | None = None
        self.activations: dict[int, np.ndarray] = {}
        self.reference_seconds = 0.0
        self._started: list[Any] = []
        self._reference_started = 0.0

    def _cuts(self, model: Any, rows: int) -> dict[str, int]:
        """Each tensor's cut (its first reader; 0: the whole file), latest first while the cache fits."""

        if why_not_cut(model):
            return {name: 0 for name in self.palettes.weights}
        ops = {name: first_reader(model, w.index) for name, w in self.palettes.weights.items()}
        tensors = model.subgraphs[0].tensors
        kept: set[int] = set()
        cut: set[int] = set()
        for op in sorted(set(ops.values()) - {0}, reverse=True):
            more = kept | set(live_tensors(model, op))
            per_row = sum(int(np.prod([max(int(d), 1) for d in tensors[i].shape])) *
                          np.dtype(tensors[i].numpy_dtype).itemsize for i in more)
            if per_row * rows > MAX_CACHED_BYTES:
                break
            kept = more
            cut.add(op)
        # Cuts stay monotone: every cut operator comes after every uncut one, which run_joint relies on
        # (an earlier operator whose live tensors happen to be cached must still run whole).
        return {name: op if op in cut else 0 for name, op in ops.items()}

    def _template(self, op: int) -> Template:
        """The model that starts at operator `op` (with the later cuts' activations as extra outputs
        when tails are kept)."""

        if op not in self._templates:
            later = sorted({i for o, tensors in self.live.items() if o > op for i in tensors}) if self.keep_tails else []
            if op == 0 and not later:
                self._templates[op] = Template(self.palettes.int8, self.given_buffers)
            else:
                cut = suffix_model(self.palettes.int8, op, later, source=self.palettes.source)
                self._templates[op] = Template(cut.data, cut.buffers, cut.outputs, cut.extra_outputs)
        return self._templates[op]

    def model_with(self, choice: dict[str, int]) -> tuple[Template, int]:
        """The model that runs `choice` (tensor → bits) palettized from its earliest cut, and that cut."""

        op = min((self.op_of[name] for name in choice), default=0)
        template = self._template(op)
        values = {template.buffers[t]: a.tobytes() for name, bits in choice.items()
                  for t, a in self.palettes.values(name, bits).items()}
        return replace(template, data=replace_buffers(template.data, values, self.palettes.source)), op

    def inputs(self, op: int, rows: slice) -> tuple[tuple[np.ndarray, ...], bool]:
        """(the inputs of the model cut at `op` on `rows`, whether they are float rows to quantize)."""

        if op == 0:
            return (self.x[rows],), True
        return tuple(self.activations[i][rows] for i in self.live[op]), False

    def start_reference(self) -> None:
        """Start the given file on every row, with the activations the cuts need, in the workers (what
        the parent does meanwhile, e.g. byte costs, overlaps it); `run_reference` waits for it."""

        if self.reference is not None or self._started:
            return
        self._reference_started = time.perf_counter()
        if self.cached:
            cut = suffix_model(self.palettes.int8, 0, self.cached, self.palettes.source)
            model, first = cut.data, cut.outputs
        else:
            model, first = self.palettes.int8, 1
        self._started = [tflm.submit(self.pool, tflm.run_rows, model, (self.x[p],), True, first, len(self.cached))
                         for p in _chunks(len(self.x), self.jobs)]

    def reference_ready(self) -> bool:
        return self.reference is not None or all(f.done() for f in self._started)

    def run_reference(self) -> None:
        """The given file's outputs and activations on every row (started by `start_reference`, or now)."""

        if self.reference is not None:
            return
        self.start_reference()
        results = tflm.gather(self._started, self.palettes.source)
        self.reference = np.concatenate([r.outputs for r in results])
        self.activations = {i: np.concatenate([r.extra[j] for r in results]) for j, i in enumerate(self.cached)}
        self.reference_seconds = time.perf_counter() - self._reference_started

    def control(self) -> CandidateResult:
        assert self.reference is not None
        n = len(self.rows.y)
        return CandidateResult(CONTROL, zero_shot=score(self.reference[:n], self.rows.y, self.rows.task),
                               seconds=round(self.reference_seconds * n / len(self.x) * self.jobs, 3))

    def candidate_task(self, choice: dict[str, int], rows: slice | None = None) -> tuple[Any, ...]:
        """The arguments of `tflm.run_rows` for one candidate on the candidates' rows (or those of them in `rows`)."""

        template, op = self.model_with(choice)
        inputs, float_input = self.inputs(op, slice(0, len(self.rows.y)) if rows is None else rows)
        return template.data, inputs, float_input, template.first_extra, len(template.extra)

    def keep(self, key: str, choice: dict[str, int], result: tflm.RowOutputs) -> None:
        """Keep a candidate's outputs and tail for the check (while the cache has room)."""

        if not self.keep_tails:
            return
        extra = self._template(min(self.op_of[n] for n in choice)).extra
        size = result.outputs.nbytes + sum(a.nbytes for a in result.extra)
        cached = sum(a.nbytes for a in self.activations.values())
        if cached + self._tail_bytes + size <= MAX_CACHED_BYTES:  # one budget for all cached activations
            self._tail_bytes += size
            self.tails[key] = (result.outputs, dict(zip(extra, result.extra)))

    def run_joint(self, choice: dict[str, int]) -> np.ndarray:
        """Outputs of `choice` palettized together on the check's rows (see the class docstring)."""

        n = len(self.rows.y)
        if not choice:  # nothing palettized: the given file's outputs
            assert self.reference is not None
            return self.reference
        first = min(choice, key=lambda name: self.op_of[name])
        rest = {name: bits for name, bits in choice.items() if name != first}
        tail = self.tails.get(f"{first}/{2 ** choice[first]}")
        if tail is None or any(self.op_of[name] <= self.op_of[first] for name in rest):
            template, op = self.model_with(choice)
            return self._run(template.data, [self.inputs(op, p) for p in _chunks(len(self.x), self.jobs)])
        outputs, activations = tail
        if rest:
            template, op = self.model_with(rest)
            outputs = self._run(template.data, [(tuple(activations[i][p] for i in self.live[op]), False)
                                                for p in _chunks(n, self.jobs)])
        if len(self.x) == n:
            return outputs
        template, op = self.model_with(choice)
        fresh = [self.inputs(op, slice(p.start + n, p.stop + n)) for p in _chunks(len(self.x) - n, self.jobs)]
        return np.concatenate([outputs, self._run(template.data, fresh)])

    def _run(self, model: bytes, inputs: list[tuple[tuple[np.ndarray, ...], bool]]) -> np.ndarray:
        """Output 0 of `model` on each chunk of inputs, in the workers, concatenated."""

        results = tflm.run_parallel(tflm.run_rows, [(model, *i) for i in inputs], self.jobs, self.palettes.source,
                                    pool=self.pool)
        return np.concatenate([r.outputs for r in results])
