"""The .tflite backend of the plan core (`TfliteBackend`): index bits per weight tensor of an int8 file,
measured zero-shot in TFLM (no TensorFlow).

A candidate is one weight tensor palettized to one bitwidth, everything else as given; the control is
the given file. With calibration rows (`Measurement.calibration_rows`, the CLI's default 512), the
tensor is palettized as `palettize --data` does it (`tflite.calibrated.Calibrator`: levels, error
feedback and its operator's bias from the int8 file's layer inputs on those training rows, drawn only
from the rows outside the validation rows, which the spec records), so `palettize --spec` with the same
data makes exactly the measured file. Each candidate runs in the
TFLM interpreter (worker processes) on validation rows held out from the *training* data, from its
tensor's first reader on, fed cached activations of the given file (`Runner`, `tflite.cut`); a drop
budget leaves hopeless bitwidths unmeasured, and a tensor whose fewest bits measure no drop (probed first
on a share of the rows) has its other bitwidths unmeasured (`Schedule`). Nothing is fine-tuned: a drop is the given
file's score minus the candidate's. The core (`plan.make`) chooses, checks the chosen tensors
palettized together on the candidates' rows plus as many fresh ones (`CHECK_MULTIPLE`), refines, and
measures exact bytes and arenas on the files `Palettes.compressed` makes (as `compress` will).

Candidates are `Candidate(tensor label, bits)` in the canonical order, so shards, worker processes,
resumed runs and merged parts give the table one sequential run gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from tinycomp import bounds, tflm
from tinycomp.data import Dataset
from tinycomp.data.validation import ValidationSource
from tinycomp.errors import ModelError
from tinycomp.metrics import Task
from tinycomp.plan.candidates import (
    CONTROL,
    Candidate,
    CandidateResult,
)
from tinycomp.plan.choose import (
    LayerSensitivity,
    Option,
    Plan,
    SensitivityTable,
    counted_drops,
    upper_bound_text,
)
from tinycomp.plan.costs import ideal_bytes, kernel_decode_budgets
from tinycomp.plan.make import byte_costs
from tinycomp.plan.request import ByteCosts, JointDrop, Measurement, PlanOutcome, PlanRequest
from tinycomp.plan.tflite_palettes import (
    Palettes,
    float32_bytes,
    palettization_spec,
    plannable,
    tflite_candidates,
    worth_measuring,
)
from tinycomp.plan.tflite_rows import PlanRows, score, validation_rows
from tinycomp.plan.tflite_runner import Runner
from tinycomp.plan.tflite_schedule import measure
from tinycomp.specs import (
    CalibrationExclusion,
    PerChannel,
    dump_palettization_spec,
    parse_palettization_spec,
)
from tinycomp.tflite.calibrated import (
    DEFAULT_CALIBRATION_ROWS,
    Calibrator,
    calibration_exclusion,
    calibration_of,
    calibration_pool,
)
from tinycomp.tflite.find_tensors import (
    quantization_layout,
)
from tinycomp.tflite.private import fast_buffer_packing, fast_index_packing


def assemble(palettes: Palettes, usable: dict[str, list[int]], costs: tuple[dict[str, dict[int, int]], int, int],
             results: dict[str, CandidateResult], rows: PlanRows, *, seed: int, seconds: float) -> SensitivityTable:
    """The sensitivity table: every tensor's measured options with their drops and byte costs."""

    reference = results[CONTROL].zero_shot
    assert reference is not None
    by_bits, overhead, base = costs
    scale = rows.task.scale
    layers = []
    for name, bits in usable.items():
        w = palettes.weights[name]
        layout = quantization_layout(w.tensor)
        tables = int(w.array.shape[layout.axis]) if isinstance(layout, PerChannel) else 1
        size = len(w.tensor.buffer.data)
        options = [Option(None, 8, size, size)]
        for b in bits:
            result = results.get(f"{name}/{2 ** b}")
            if result is None or result.zero_shot is None:  # not measured: it could not be chosen
                continue
            options.append(Option(2 ** b, b, by_bits[name][b], ideal_bytes(int(w.array.size), tables, b),
                                  measured_drop=scale * (reference - result.zero_shot), accuracy=result.zero_shot,
                                  fine_tuned=False))
        counted_drops(options)
        layers.append(LayerSensitivity(name, w.op, int(w.array.size), tables, isinstance(layout, PerChannel), options))
    return SensitivityTable(layers, base, overhead, reference, reference, len(rows.y), 0, seed, seconds, task=rows.task)


class TfliteBackend:
    """The .tflite backend of the plan core: each candidate one weight tensor palettized (`Palettes`), run
    zero-shot in TFLM worker processes from its cut (`Runner`), a drop budget leaving hopeless bits
    unmeasured (`Schedule`); the joint check and refinement steps run the plan's tensors palettized
    together on the check's rows (`CHECK_MULTIPLE`); files are the palettized tensors LUT-compressed as
    `palettize` → `compress` make them; the spec written is `palettize`'s."""

    kind = "tflite"

    def __init__(self, int8: bytes, data: Dataset, *, measurement: Measurement, costs: ByteCosts, seed: int,
                 task: Task, source: str = "model", check: bool = True):
        self.int8, self.measurement, self.strip, self.seed, self.source = int8, measurement, costs.strip, seed, source
        self.data = data
        self.rows = validation_rows(data, int8, replace(measurement, task=task), seed, source)
        self.task, self.data_name, self.check = self.rows.task, data.name, check
        self.pool: Any = None
        self.jobs = 1
        self._palettes: Palettes | None = None
        self._changing: dict[str, list[int]] = {}
        self._runner: Runner | None = None
        self._candidates: list[Candidate] | None = None
        self._usable: dict[str, list[int]] = {}
        self._costs: tuple[dict[str, dict[int, int]], int, int] = ({}, 0, 0)
        self._joint: dict[frozenset[tuple[str, int]], JointDrop] = {}

    @contextlib.contextmanager
    def opened(self, jobs: int) -> Iterator[TfliteBackend]:
        """The worker pool, fast packing, and one BLAS thread in this process: its linear algebra (calibration)
        runs while the TFLM workers use the cores, where more BLAS threads only contend (measured: 5 inversions
        and Cholesky factors of an 800×800 matrix took 11.0 s with OpenBLAS's threads, 1.9 s with one, on the 2
        loaded cores)."""
        from threadpoolctl import threadpool_limits

        with tflm.worker_pool(max(1, jobs), self.source) as pool, fast_buffer_packing(), fast_index_packing(), \
                threadpool_limits(limits=1, user_api="blas"):
            self.pool, self.jobs = pool, max(1, jobs)
            try:
                yield self
            finally:
                self.pool, self._runner = None, None

    def calibration_exclusion(self) -> CalibrationExclusion | None:
        """The training rows calibration must not draw from (the validation rows: held-out groups, or the last
        rows; None: the data's own validation set, or no calibration), as the spec records them for `palettize`."""
        if not self.measurement.calibration_rows:
            return None
        return calibration_exclusion(self.validation())

    @property
    def palettes(self) -> Palettes:
        """The weights to plan; with calibration rows, palettized as `palettize --data` does (the int8 file's
        layer inputs measured once, on the rows `palettize --spec --calibration-rows N --seed SEED` takes: drawn
        only from the training rows outside the validation rows, `calibration_exclusion`)."""
        if self._palettes is None:
            palettes, self._changing = plannable(self.int8, self.measurement, self.source)
            count = self.measurement.calibration_rows
            if count:
                exclusion = self.calibration_exclusion()
                pool = None if exclusion is None else calibration_pool(self.data, exclusion, self.data.name)
                calibration, _ = calibration_of(self.int8, self.data, count, self.seed, self.jobs, self.source, pool)
                palettes.calibrator = Calibrator(self.int8, palettes.model, list(palettes.weights.values()),
                                                 calibration, self.source, self.pool)
            self._palettes = palettes
        return self._palettes

    @property
    def runner(self) -> Runner:
        """The TFLM runner (started on the given file as soon as it exists: what the parent does meanwhile,
        byte costs, overlaps it)."""
        if self._runner is None:
            self._runner = Runner(self.palettes, self.rows, self.pool, self.jobs, check_rows=self.check)
            self._runner.start_reference()
        return self._runner

    def candidates(self) -> list[Candidate]:
        if self._candidates is None:
            palettes = self.palettes
            _ = self.runner  # the given file runs in the workers while the byte costs are measured
            costs, overhead, base = byte_costs(self, self._changing)
            raw = {name: self.raw_bytes(name) for name in self._changing}
            self._usable = worth_measuring(costs, raw)
            if not self._usable:
                raise ModelError("LUT compression would not shrink any weight tensor at the bitwidths planned",
                                 palettes.source, "the model's weight tensors are too small to gain from palettizing")
            self._costs = ({n: costs[n] for n in self._usable}, overhead, base)
            self._candidates = tflite_candidates(self._usable)
        return self._candidates

    def measure(self, todo: list[Candidate], done: dict[str, CandidateResult], *, jobs: int, max_drop: float | None,
                on_result: Callable[[CandidateResult], None]) -> dict[str, CandidateResult]:
        return measure(self.runner, todo, done=done, max_drop=max_drop, on_result=on_result)

    def table(self, results: dict[str, CandidateResult], *, max_drop: float | None, seconds: float) -> SensitivityTable:
        return assemble(self.palettes, self._usable, self._costs, results, self.rows, seed=self.seed, seconds=seconds)

    def adopt(self, table: SensitivityTable) -> SensitivityTable:
        missing = [layer.name for layer in table.layers if layer.name not in self.palettes.weights]
        if missing:
            raise ModelError(f"the table's tensor {missing[0]!r} is not a weight of this model", self.source,
                             "measure a new table")
        if self.check:  # the given file runs in the workers while the plan is chosen
            _ = self.runner
        return table

    def raw_bytes(self, name: str) -> int:
        return len(self.palettes.weights[name].tensor.buffer.data)

    def sizes_alone(self, name: str, bits: list[int]) -> dict[int, int]:
        """The file with only `name` palettized and compressed at its fewest bits; at other bits, the
        difference of its LUT encodings added (exact up to the 16-byte alignment of buffers). Measured on
        `size_of`'s stand-ins: the bytes depend on the values per table, not on which (the chosen plan's
        exact bytes are measured on its calibrated file)."""
        fewest = min(bits)
        at_fewest = self.size_of({name: fewest})
        lut_fewest = self.palettes.lut_bytes(name, fewest)
        return {b: at_fewest + self.palettes.lut_bytes(name, b) - lut_fewest for b in bits}

    def size_of(self, choice: dict[str, int]) -> int:
        """Bytes of the file of `choice`, made of stand-in values when calibrated (the same values per table)."""
        return len(self.palettes.compressed(choice, self.strip, for_bytes=True))

    def model_bytes(self, choice: dict[str, int], decode_budget: int | None = None) -> bytes:
        return self.palettes.compressed(choice, self.strip, decode_budget)

    def decode_budgets(self, names: frozenset[str]) -> list[int]:
        kernels = [self.palettes.weights[n] for n in names]
        return kernel_decode_budgets([(w.op, w.shape, int(np.prod(w.shape))) for w in kernels])

    def float32_bytes(self) -> int:
        return float32_bytes(self.int8, self.source)

    def noise(self, table: SensitivityTable) -> float:
        return float(self.task.noise(table.reference_accuracy, self.check_rows()))

    def check_rows(self) -> int:
        return len(self.rows.y_check)

    def validation(self) -> ValidationSource:
        return self.data.validation_split(self.measurement.validation_split, self.seed).source

    def joint_drop(self, table: SensitivityTable, plan: Plan) -> JointDrop:
        """The plan's drop on the check's rows, run from its earliest cut, with its paired noise and its
        agreement with the given file (measured once per choice)."""
        choice = {n: o.bits for n, o in plan.clustered().items()}
        key = frozenset(choice.items())
        if key not in self._joint:
            runner, rows = self.runner, self.rows
            runner.run_reference()
            assert runner.reference is not None
            outputs = runner.run_joint(choice)
            drop = rows.task.scale * (score(runner.reference, rows.y_check, rows.task)
                                      - score(outputs, rows.y_check, rows.task))
            noise = float(rows.task.paired_noise(runner.reference, outputs, rows.y_check))
            # identical outputs have an infinite SNR, which JSON cannot hold: left out
            agreement = {k: v for k, v in rows.task.agreement(outputs, runner.reference).items() if np.isfinite(v)}
            checked = bounds.checked(rows.task.has_accuracy, rows.y_check, runner.reference, outputs,
                                     rows.groups_check)
            self._joint[key] = JointDrop(drop, 0, noise, agreement, checked)
        return self._joint[key]

    def step_measurer(self, table: SensitivityTable, max_drop: float, *,
                      min_agreement: float | None = None) -> JointSteps:
        return JointSteps(self, table, max_drop, min_agreement)

    def spec_text(self, model_path: str, output: str, request: PlanRequest, outcome: PlanOutcome) -> str:
        """The palettization spec `palettize --spec` reads, with a header saying what the plan predicts."""
        chosen, table = outcome.plan, outcome.table
        header = (f"Palettization plan for {model_path}, written by tinycomp plan ({outcome.budget.describe()}, "
                  f"seed {request.seed})\n"
                  f"predicted {chosen.exact_bytes:,} bytes and a {chosen.arena_bytes:,}-byte TFLM arena after "
                  f"palettize → compress{' --strip' if self.strip else ''}; {outcome.budget.task.drop_text()} "
                  f"{chosen.predicted_drop:+.2f} {table.unit} on the validation split"
                  + (f" (measured with all tensors palettized: {chosen.checked_drop:+.2f} {table.unit}"
                     f"{upper_bound_text(chosen)})"
                     if chosen.checked_drop is not None else "")
                  + f"\nuse: tinycomp palettize {model_path} --spec {output}" + palettize_options(self.measurement, self.seed)
                  + " -o OUT.tflite")
        palettes = self._palettes or plannable(self.int8, self.measurement, self.source)[0]  # names only
        spec = replace(palettization_spec(palettes, chosen), calibration=self.calibration_exclusion())
        text = dump_palettization_spec(spec, header)
        parse_palettization_spec(text, output)  # what `palettize --spec` will read
        return text


def palettize_options(measurement: Measurement, seed: int) -> str:
    """The options `palettize --spec` needs to make what the plan measured (calibration: the same data, rows
    and seed)."""
    count = measurement.calibration_rows
    if not count:
        return ""
    return (" --data/--dataset (as given to plan)" + (f" --calibration-rows {count}" if count != DEFAULT_CALIBRATION_ROWS
                                                      else "") + (f" --seed {seed}" if seed else ""))


class JointSteps:
    """Refinement steps of a .tflite plan, measured as the joint check measures (nothing is fine-tuned)."""

    def __init__(self, backend: TfliteBackend, table: SensitivityTable, max_drop: float,
                 min_agreement: float | None = None):
        self.backend, self.table, self.max_drop, self.min_agreement = backend, table, max_drop, min_agreement
        self.exhausted = False

    def measure(self, plan: Plan) -> JointDrop:
        return self.backend.joint_drop(self.table, plan)

    def drop_of(self, plan: Plan) -> float:
        measured = self.measure(plan)
        plan.checked_noise, plan.epochs = measured.noise, 0
        plan.checked_bound = None if measured.checked is None else measured.checked.to_json()
        return measured.drop

