"""The Keras backend of the plan core: TFMOT clustering, measured with TensorFlow (fine-tuned).

Candidates are layers clustered one at a time (`sensitivity`, measured in this process or in worker
processes by `measure`); files are the int8 model `quantize` makes, each chosen layer's kernel filled
with synthetic values of its bits and LUT-compressed with tflite-micro (`costs`); the joint check
clusters the plan's layers together and fine-tunes as `cluster` will (`sensitivity.joint_drop`);
refinement steps are measured by `StepMeasurer`. The spec written is `cluster`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from tinycomp.data import Dataset
from tinycomp.data.validation import ValidationSource
from tinycomp.metrics import Task
from tinycomp.models import FINE_TUNE_LEARNING_RATE
from tinycomp.plan.candidates import Candidate, CandidateResult
from tinycomp.plan.choose import Plan, SensitivityTable, plan_spec, upper_bound_text
from tinycomp.plan.costs import WeightInfo, decode_budgets, synthetic_file
from tinycomp.plan.decision import DECISION, Measured
from tinycomp.plan.make import byte_costs
from tinycomp.plan.request import ByteCosts, JointDrop, Measurement, PlanOutcome, PlanRequest
from tinycomp.plan.sensitivity import (
    Prepared,
    assemble_table,
    int8_for_costs,
    joint_drop,
    measure_candidates,
    prepare,
    split_validation,
    validation_rows,
)
from tinycomp.tflite.find_tensors import bits_for


class KerasBackend:
    """Plans a tf_keras model on `data` (see the module docstring)."""

    kind = "keras"

    def __init__(self, model: Any, data: Dataset, *, measurement: Measurement, costs: ByteCosts, seed: int, task: Task):
        self.model, self.data, self.task, self.data_name = model, data, task, data.name
        self.measurement, self.costs, self.seed = measurement, costs, seed
        self.pool = None
        self._prepared: Prepared | None = None
        self._int8: bytes | None = None
        self._infos: dict[str, WeightInfo] = {}

    @contextlib.contextmanager
    def opened(self, jobs: int) -> Iterator[KerasBackend]:
        yield self

    @property
    def prepared(self) -> Prepared:
        if self._prepared is None:
            self._prepared = prepare(self.model, self.data, task=self.task, measurement=self.measurement,
                                     seed=self.seed)
        return self._prepared

    def candidates(self) -> list[Candidate]:
        return self.prepared.candidates

    def measure(self, todo: list[Candidate], done: dict[str, CandidateResult], *, jobs: int, max_drop: float | None,
                on_result: Callable[[CandidateResult], None]) -> dict[str, CandidateResult]:
        return measure_candidates(self.prepared, todo=todo, done=done, jobs=jobs, max_drop=max_drop,
                                  on_result=on_result)

    def table(self, results: dict[str, CandidateResult], *, max_drop: float | None, seconds: float) -> SensitivityTable:
        prepared = self.prepared
        self._quantize(prepared.names, self.seed)
        costs = byte_costs(self, {n: sorted({bits_for(c) for c in cs}) for n, cs in prepared.usable.items()})
        table = assemble_table(self.model, prepared, results, infos=self._infos, costs=costs, max_drop=max_drop,
                               seconds=seconds)
        return self._settled(table)

    def adopt(self, table: SensitivityTable) -> SensitivityTable:
        self._quantize([layer.name for layer in table.layers], table.seed)
        return self._settled(table)

    def _quantize(self, names: list[str], seed: int) -> None:
        """The int8 model byte costs are measured on (as `quantize` makes it) and the layers' weights in it."""
        self._int8, self._infos = int8_for_costs(self.model, self.data, names, seed=seed, costs=self.costs)

    def _settled(self, table: SensitivityTable) -> SensitivityTable:
        """The table with the learning rate its fine-tunes used (the check fine-tunes at the same)."""
        rate = table.learning_rate or self.measurement.learning_rate or FINE_TUNE_LEARNING_RATE
        table.learning_rate = rate
        self.measurement = replace(self.measurement, learning_rate=rate)
        return table

    def raw_bytes(self, name: str) -> int:
        return self._infos[name].bytes

    def size_of(self, choice: dict[str, int]) -> int:
        return len(self.model_bytes(choice))

    def sizes_alone(self, name: str, bits: list[int]) -> dict[int, int]:
        return {b: self.size_of({name: b}) for b in bits}

    def model_bytes(self, choice: dict[str, int], decode_budget: int | None = None) -> bytes:
        """The int8 file with each chosen layer's kernel refilled with synthetic values of its bits (the
        size depends on the values per table, not on which) and LUT-compressed."""
        assert self._int8 is not None
        infos = self._infos
        fills = {(infos[n].subgraph, infos[n].tensor): (infos[n].layout, b) for n, b in choice.items()}
        return synthetic_file(self._int8, fills, self.costs.strip, decode_budget)

    def decode_budgets(self, names: frozenset[str]) -> list[int]:
        return decode_budgets(self._infos, names)

    def float32_bytes(self) -> int:
        from tinycomp.convert import convert_float32

        return len(convert_float32(self.model))

    def noise(self, table: SensitivityTable) -> float:
        return self.task.noise(table.control_accuracy, self.check_rows())

    def check_rows(self) -> int:
        return validation_rows(self.data, self.measurement.validation_split, self.seed)

    def validation(self) -> ValidationSource:
        return self.data.validation_split(self.measurement.validation_split, self.seed).source

    def joint_drop(self, table: SensitivityTable, plan: Plan) -> JointDrop:
        """Every fit row, the whole validation split, zero-shot and fine-tuned: as `cluster` will."""
        return joint_drop(self.model, self.data, table, plan, measurement=self.measurement)

    def step_measurer(self, table: SensitivityTable, max_drop: float, *,
                      min_agreement: float | None = None) -> StepMeasurer:
        return StepMeasurer(self, table, max_drop, min_agreement=min_agreement)

    def spec_text(self, model_path: str, output: str, request: PlanRequest, outcome: PlanOutcome) -> str:
        """The clustering spec `cluster` reads, with a header saying what the plan predicts."""
        from tinycomp.specs import PlanValidation, dump_clustering_spec, parse_clustering_spec

        spec = plan_spec(outcome.table, outcome.plan)
        if spec.epochs:  # `cluster` fine-tunes without the check's validation rows and decides on them, as it did
            spec = replace(spec, validation=PlanValidation(
                request.measurement.validation_split, outcome.table.seed, len(self.data.x_train),
                tuple(self.validation().held_out)))  # held_out: empty unless whole groups are held out
        text = dump_clustering_spec(spec, spec_header(model_path, output, request, outcome))
        parse_clustering_spec(text, str(output))  # what `cluster` will read
        return text


def spec_header(model_path: str, output: str, request: PlanRequest, outcome: PlanOutcome) -> str:
    """The comment at the top of the written spec: budget, prediction, the chain and the next command."""
    costs, chosen = request.costs, outcome.plan
    chain = (f"cluster → quantize{' --per-tensor-dense' if costs.per_tensor_dense else ''}"
             f"{f' --io {costs.io}' if costs.io != 'uint8' else ''} → find-tensors → "
             f"compress{' --strip' if costs.strip else ''}")
    unit, what = outcome.table.unit, outcome.budget.task.drop_text()
    checked = (f" (measured with all layers clustered: {chosen.checked_drop:+.2f} {unit}{upper_bound_text(chosen)})"
               if chosen.checked_drop is not None else "")
    return (f"Clustering plan for {model_path}, written by tinycomp plan ({outcome.budget.describe()}, "
            f"seed {request.seed})\n"
            f"predicted {chosen.exact_bytes:,} bytes and a {chosen.arena_bytes:,}-byte TFLM arena after {chain}, "
            f"{what} {chosen.predicted_drop:+.2f} {unit} on the validation split{checked}\n"
            f"use: tinycomp cluster {model_path} --spec {output}  (epochs below: "
            f"{'fine-tuned' if chosen.epochs else 'zero-shot, no fine-tuning'}, as the check measured it)")


class StepMeasurer:
    """Measures a plan as refinement steps of a zero-shot plan are measured: all its layers clustered at
    once, on every validation row, zero-shot, and only when `DECISION.keeps_step` refuses that, fine-tuned
    for the table's epochs on the candidates' fit rows while the fine-tuning allowance lasts (a quarter of
    the rows one `cluster` run fine-tunes on, at least one fine-tune: on full-size MNIST two 4,096-row
    fine-tunes)."""

    exhausted = False  # zero-shot measurements never run out

    def __init__(self, backend: KerasBackend, table: SensitivityTable, max_drop: float, *,
                 min_agreement: float | None = None):
        self.backend, self.table, self.max_drop, self.min_agreement = backend, table, max_drop, min_agreement
        measurement = backend.measurement
        fit_rows = len(split_validation(backend.data, measurement.validation_split, backend.seed)[0].x_train)
        self.step_rows = min(measurement.rows("fine_tune_rows") or fit_rows, fit_rows)
        self.tunes_left = max(1, fit_rows // max(4 * self.step_rows, 1)) if table.epochs > 0 else 0

    def measure(self, plan: Plan) -> JointDrop:
        """`plan` measured as a step (the better of zero-shot and fine-tuned, as described above)."""
        b = self.backend
        measured = joint_drop(b.model, b.data, replace(self.table, epochs=0), plan, measurement=b.measurement)
        kept = DECISION.keeps_step(Measured(measured.drop, measured.noise, measured.checked), self.max_drop,
                                   self.min_agreement)
        if not kept and self.tunes_left > 0:
            self.tunes_left -= 1
            tuned = joint_drop(b.model, b.data, self.table, plan, measurement=b.measurement,
                               fine_tune_rows=self.step_rows)
            if tuned.drop < measured.drop:
                measured = tuned
        return measured

    def drop_of(self, plan: Plan) -> float:
        """For checked_plan: the drop, with the plan's noise, bounds and epochs set."""
        measured = self.measure(plan)
        plan.checked_noise, plan.epochs = measured.noise, measured.epochs
        plan.checked_bound = None if measured.checked is None else measured.checked.to_json()
        return measured.drop
