"""Plans for an int8 .tflite: index bits per weight tensor, measured zero-shot in TFLM (no TensorFlow).

A candidate is one weight tensor palettized to one bitwidth (`tflite.palettize`), everything else
as given; the control is the given file. Each is run in the TFLM interpreter (worker processes) on
the validation rows, held out from the *training* data as `plan` does for Keras models, so the test
set stays for the final measurement. Nothing is fine-tuned, so a drop is simply the given file's
score minus the candidate's. Each candidate's byte cost is exact: its palettized tensor is
LUT-compressed with tflite-micro as `compress` will do it. The choice is `plan.choose`'s, under the
same budgets; the chosen tensors are then palettized together and measured on every validation
row, and chosen again when that is over the budget (per-tensor drops need not add up).

Candidates use `plan.candidates`' units (`Candidate(tensor label, 2^bits)`), so shards, worker
processes and merged parts give the table one sequential run gives.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tinycomp import tflm
from tinycomp.data import Dataset, check_fits_model
from tinycomp.errors import DataError, InterpreterError, InvalidValue, ModelError
from tinycomp.metrics import Task, choose_task, get_task
from tinycomp.plan.candidates import (
    CONTROL,
    Candidate,
    CandidateResult,
    PartialTable,
    Shard,
    candidates_of,
    merge_parts,
)
from tinycomp.plan.choose import (
    DEFAULT_CLUSTER_COUNTS,
    Budget,
    LayerSensitivity,
    Option,
    Plan,
    SensitivityTable,
    Slicing,
    checked_plan,
    choose_plan,
    choose_plan_within_ram,
    counted_drops,
)
from tinycomp.plan.costs import _synthetic, ideal_bytes, kernel_decode_budgets
from tinycomp.plan.measure import seeded_rows
from tinycomp.specs import MAX_BITWIDTH, PalettizationSpec, PerChannel, TensorBits
from tinycomp.tflite.compress import compress_model
from tinycomp.tflite.find_tensors import (
    FindResult,
    WeightTensor,
    bits_for,
    choose_compression,
    encoded_size,
    quantization_layout,
)
from tinycomp.tflite.model import parse_tflite, schema
from tinycomp.tflite.palettize import (
    most_values,
    palettizable_weights,
    palettize_array,
    select_weights,
    weight_label,
    why_not,
)
from tinycomp.tflite.private import buffer_data_span
from tinycomp.tflite.strip import strip_model
from tinycomp.tflm import ChunkResult, arena_of, default_jobs, run_parallel

TFLITE_KIND = "tflite"
# 2 values per channel (1 bit) zero-shot is rarely usable; plan measures 2–6 bits unless told otherwise.
DEFAULT_BITS = tuple(sorted({bits_for(c) for c in DEFAULT_CLUSTER_COUNTS if c > 2}))
# Like the Keras plan's fast estimate: candidates on at most this many validation rows, the check on all.
DEFAULT_VALIDATION_ROWS = 2048
TensorKey = tuple[int, int]


@dataclass(frozen=True)
class TfliteMeasurement:
    """How candidates of a .tflite are measured: the bitwidths, the tensors, the validation rows, the task."""

    bits: tuple[int, ...] = DEFAULT_BITS
    tensors: tuple[str, ...] = ()  # empty: every palettizable weight
    validation_split: float = 0.2
    validation_rows: int = DEFAULT_VALIDATION_ROWS  # per candidate; 0: all of the held-out rows
    task: Task | None = None  # CLASSIFY or REGRESS (or its name); None: chosen from the data and the model's output

    def __post_init__(self) -> None:
        if isinstance(self.task, str):
            object.__setattr__(self, "task", get_task(self.task))
        object.__setattr__(self, "bits", tuple(sorted(set(self.bits))))
        object.__setattr__(self, "tensors", tuple(self.tensors))
        bad = [b for b in self.bits if not 1 <= b <= MAX_BITWIDTH]
        if not self.bits or bad:
            raise InvalidValue(f"bitwidths must be 1–{MAX_BITWIDTH}" + (f", got {bad[0]}" if bad else ""),
                               "cluster_counts", "e.g. 2,4,8,16 (cluster counts: 1–4 bits)")
        if not 0 < self.validation_split < 1:
            raise InvalidValue(f"validation split must be in (0, 1), got {self.validation_split}", "validation_split",
                               "e.g. 0.2")
        if self.validation_rows < 0:
            raise InvalidValue(f"validation rows must be 0 (all) or more, got {self.validation_rows}",
                               "validation_rows", "e.g. 2048")

    def to_json(self) -> dict[str, Any]:
        return {"kind": TFLITE_KIND, "bits": list(self.bits), "tensors": list(self.tensors),
                "validation_split": self.validation_split, "validation_rows": self.validation_rows,
                "task": self.task.name if self.task else None}


@dataclass
class Palettes:
    """The int8 file and its weights' palettized values per bitwidth (computed once each), and the files
    made from them."""

    int8: bytes
    weights: dict[str, WeightTensor]  # label → weight, in graph order
    source: str = "model"
    _arrays: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    _lut_model: Any = None

    def array(self, name: str, bits: int) -> np.ndarray:

        if (name, bits) not in self._arrays:
            weight = self.weights[name]
            self._arrays[(name, bits)] = palettize_array(np.asarray(weight.array), quantization_layout(weight.tensor),
                                                         bits)
        return self._arrays[(name, bits)]

    def model_with(self, choice: dict[str, int]) -> bytes:
        """The int8 file with each named weight palettized to its bits, everything else byte for byte as given.

        The values are replaced in place (same bytes, same places), not rebuilt: model_editor's
        rebuild takes about a second per file in Python, and a plan makes dozens of files."""

        if not choice:
            return self.int8
        data = bytearray(self.int8)
        for name, bits in choice.items():
            weight = self.weights[name]
            start, length = buffer_data_span(self.int8, weight.tensor.buffer.index)
            values = self.array(name, bits).tobytes()
            if length != len(values):
                raise ModelError(f"tensor {weight.index} holds {length} bytes, not {len(values)}", self.source)
            data[start:start + length] = values
        return bytes(data)

    def lut_bytes(self, name: str, bits: int) -> int:
        """Bytes of the tensor's LUT encoding (indices, value tables, header) once palettized to `bits`, from
        tflite-micro's encoder. The encoding's size depends only on the values per table, so it is measured
        on the tensor filled with exactly 2^bits values per table (no clustering needed)."""

        if self._lut_model is None:
            self._lut_model = parse_tflite(self.int8, self.source)
        weight = self.weights[name]
        tensor = self._lut_model.subgraphs[weight.subgraph].tensors[weight.index]
        layout = quantization_layout(tensor)
        original = tensor.array.copy()
        tensor.array = _synthetic(original, layout, bits, seed=weight.index)
        try:
            return encoded_size(tensor, layout, bits)
        finally:
            tensor.array = original

    def compressed(self, choice: dict[str, int], strip: bool = False, decode_budget: int | None = None) -> bytes:
        """`model_with(choice)` LUT-compressed as `palettize`'s spec says (and stripped, with `strip`; the
        kernels decoding to more than `decode_budget` sliced, as `compress` does with the spec's budget)."""

        data = self.model_with(choice)
        if choice:
            model = parse_tflite(data, "palettized model")
            by_key = {(w.subgraph, w.index): w for w in palettizable_weights(model)}
            keys = [(self.weights[n].subgraph, self.weights[n].index) for n in choice]
            found = FindResult([choose_compression(n, by_key[k]) for n, k in zip(choice, keys)], [])
            data = compress_model(data, found.spec(), "palettized model", "palettization", decode_budget).data
        if strip:

            data = strip_model(data).data
        return data


def tensor_labels(weights: list[WeightTensor]) -> dict[str, WeightTensor]:
    """Each weight under its layer name (`dense`), or with its index when two share one (`dense#7`)."""

    labels = [weight_label(w) for w in weights]
    return {(label if labels.count(label) == 1 else f"{label}#{w.index}"): w for label, w in zip(labels, weights)}


def plannable(int8: bytes, measurement: TfliteMeasurement, source: str) -> tuple[Palettes, dict[str, list[int]]]:
    """The weights to plan (named, or every palettizable one) and each one's bitwidths that change it."""

    model = parse_tflite(int8, source)
    chosen = select_weights(model, list(measurement.tensors) or None, source)
    usable_weights, reasons = [], []
    for w in chosen:
        reason = why_not(w)
        if reason and measurement.tensors:
            raise ModelError(reason, source, "leave this tensor out of --layer")
        if reason:
            reasons.append(reason)
        else:
            usable_weights.append(w)
    if not usable_weights:
        raise ModelError(f"no weight tensor can be palettized: {reasons[0]}", source,
                         "plan takes an int8 model: `tinycomp quantize`, or a vendor's int8 .tflite")
    weights = tensor_labels(usable_weights)
    usable = {}
    for name, w in weights.items():
        values = most_values(np.asarray(w.array), quantization_layout(w.tensor))
        bits = [b for b in measurement.bits if 2 ** b < values]
        if bits:
            usable[name] = bits
    if not usable:
        raise ModelError("no weight tensor has more values per channel than the bitwidths planned keep", source,
                         "plan with more bits (--clusters), or the model is palettized already")
    return Palettes(int8, {n: weights[n] for n in usable}, source), usable


def tflite_candidates(usable: dict[str, list[int]]) -> list[Candidate]:
    """The control, then each tensor's bitwidths from many values to few (as `Candidate(name, 2^bits)`)."""
    return candidates_of({name: [2 ** b for b in bits] for name, bits in usable.items()})


@dataclass(frozen=True)
class Rows:
    """The validation rows candidates are measured on (a seeded subset), and all of them (for the check)."""

    x: np.ndarray
    y: np.ndarray
    x_all: np.ndarray
    y_all: np.ndarray
    task: Task


def validation_rows(data: Dataset, int8: bytes, measurement: TfliteMeasurement, seed: int, source: str) -> Rows:
    """The last `validation_split` of the training rows, fitted to the model's input; a seeded subset of
    `validation_rows` of them for the candidates."""

    subgraph = parse_tflite(int8, source).subgraphs[0]
    input_shape = tuple(int(d) for d in subgraph.inputs[0].shape[1:])
    output_shape = tuple(int(d) for d in subgraph.outputs[0].shape[1:])
    data = data.fit_to(input_shape)
    task = choose_task(data.y_test[:1] if data.labels else None, output_shape, measurement.task)
    check_fits_model(data, input_shape, int(output_shape[-1]) if output_shape else 1, source, task=task,
                     output_shape=output_shape)
    n = len(data.x_train)
    held = int(round(n * measurement.validation_split))
    if held < 1:
        raise DataError(f"{n} training rows leave no validation rows at a split of {measurement.validation_split:g}",
                        data.name, "use more data or a larger validation split")
    x_all, y_all = np.asarray(data.x_train[n - held:]), np.asarray(data.y_train[n - held:])
    rows = seeded_rows(held, measurement.validation_rows or None, seed=seed, stream=2)
    return Rows(x_all[rows], y_all[rows], x_all, y_all, task)


def score(outputs: np.ndarray, y: np.ndarray, task: Task) -> float:
    """The task's plan score: top-1 accuracy, or output SNR vs y in dB."""
    return float(task.plan_score(outputs, y))


def score_in_tflm(model: bytes, x: np.ndarray, y: np.ndarray, task: Task, jobs: int, source: str) -> float:
    """One model's score on (x, y), the rows split across `jobs` TFLM worker processes."""

    chunks = [idx for idx in np.array_split(np.arange(len(x)), max(1, min(jobs, len(x)))) if len(idx)]
    results = tflm.run_parallel(tflm.predict_chunk, ((model, x[idx[0]:idx[-1] + 1], False) for idx in chunks),
                                workers=len(chunks), source=source)
    return score(np.concatenate([r.outputs for r in results]), y, task)


ResultCallback = Callable[[CandidateResult], None]


class Schedule:
    """Which candidates to measure next, given what was measured (a budget on the drop makes it adaptive).

    Each tensor starts at its pivot (4 bits, or the nearest planned bitwidth). Going to fewer bits
    goes on while the last drop is within `limit` (a drop beyond it rules that tensor's fewer bits
    out: they cannot be chosen); going to more bits goes on while the last drop is above zero (at
    zero drop, more bits only cost bytes). The limit is the budget plus one validation noise, known
    once the given file is measured. Without a budget on the drop every candidate is measured.
    """

    def __init__(self, candidates: list[Candidate], results: dict[str, CandidateResult], *, task: Task, rows: int,
                 max_drop: float | None):
        self.results, self.task, self.rows, self.max_drop = results, task, rows, max_drop
        self.scale = task.scale
        self.bits: dict[str, list[int]] = {}
        for c in candidates:
            if c.layer is not None:
                self.bits.setdefault(c.layer, []).append(bits_for(c.clusters or 2))
        self.bits = {name: sorted(bits) for name, bits in self.bits.items()}
        self.released: set[str] = set(results)
        self.all = candidates

    def pivot(self, name: str) -> int:
        bits = self.bits[name]
        return min((b for b in bits if b >= PIVOT_BITS), default=bits[-1])

    def drop(self, name: str, bits: int) -> float | None:
        control, result = self.results.get(CONTROL), self.results.get(f"{name}/{2 ** bits}")
        if control is None or result is None or control.zero_shot is None or result.zero_shot is None:
            return None
        return self.scale * (control.zero_shot - result.zero_shot)

    @property
    def limit(self) -> float | None:
        control = self.results.get(CONTROL)
        if self.max_drop is None or control is None or control.zero_shot is None:
            return None
        return self.max_drop + float(self.task.noise(control.zero_shot, self.rows))

    def wanted(self, c: Candidate) -> bool:
        if self.max_drop is None or c.layer is None:
            return True
        bits, order = bits_for(c.clusters or 2), self.bits[c.layer]
        pivot, i = self.pivot(c.layer), order.index(bits_for(c.clusters or 2))
        if bits == pivot:
            return True
        neighbour = order[i + 1] if bits < pivot else order[i - 1]
        drop, limit = self.drop(c.layer, neighbour), self.limit
        if drop is None or limit is None:
            return False
        return drop <= limit if bits < pivot else drop > 0

    def ready(self) -> list[Candidate]:
        out = [c for c in self.all if c.key not in self.released and self.wanted(c)]
        self.released.update(c.key for c in out)
        return out


PIVOT_BITS = 4


def measure(palettes: Palettes, candidates: list[Candidate], rows: Rows, *, jobs: int = 1,
            done: dict[str, CandidateResult] | None = None, max_drop: float | None = None,
            on_result: ResultCallback | None = None) -> dict[str, CandidateResult]:
    """Each candidate's zero-shot score in TFLM on the validation rows (what `done` lacks), one candidate
    per task in `jobs` worker processes; each candidate's file is made when it is released. With a
    budget on the drop (`max_drop`), candidates that could not be chosen are not measured (see `Schedule`)."""

    results = dict(done or {})
    schedule = Schedule(candidates, results, task=rows.task, rows=len(rows.y), max_drop=max_drop)
    last = [time.perf_counter()]

    def ready() -> list[tuple[Any, tuple[Any, ...]]]:
        tasks = []
        for c in schedule.ready():
            choice = {} if c.layer is None else {c.layer: bits_for(c.clusters or 2)}
            tasks.append((c.key, (palettes.model_with(choice), rows.x, False)))
        return tasks

    def finished(key: str, chunk: ChunkResult) -> None:
        now = time.perf_counter()
        assert chunk.outputs is not None
        result = CandidateResult(key, zero_shot=score(chunk.outputs, rows.y, rows.task),
                                 seconds=round((now - last[0]) * max(1, jobs), 3))
        last[0] = now
        results[key] = result
        if on_result:
            on_result(result)

    tflm.run_scheduled(tflm.predict_chunk, ready, max(1, jobs), finished, source=palettes.source)
    return results


def byte_costs(palettes: Palettes, usable: dict[str, list[int]], strip: bool) -> tuple[dict[str, dict[int, int]], int, int]:
    """({tensor: {bits: bytes it costs in the compressed file}}, once-only DECODE overhead, the file's own bytes).

    A tensor's cost at its fewest bits is the file's size change when only that tensor is palettized and
    compressed with tflite-micro, plus its int8 bytes; at other bits, the difference of its LUT
    encodings is added (exact up to the 16-byte alignment of buffers). What every single-tensor
    compression pays once (the DECODE operator code) is measured with two tensors and taken out."""
    base = len(palettes.compressed({}, strip))
    raw = {name: len(palettes.weights[name].tensor.buffer.data) for name in usable}
    costs: dict[str, dict[int, int]] = {}
    for name, bits in usable.items():
        fewest = min(bits)
        at_fewest = raw[name] + len(palettes.compressed({name: fewest}, strip)) - base
        lut_fewest = palettes.lut_bytes(name, fewest)
        costs[name] = {b: at_fewest + palettes.lut_bytes(name, b) - lut_fewest for b in bits}
    overhead = 0
    if len(costs) >= 2:
        (first, a), (second, b) = [(n, min(c)) for n, c in list(costs.items())[:2]]
        pair = len(palettes.compressed({first: a, second: b}, strip)) - base
        overhead = max(0, costs[first][a] - raw[first] + costs[second][b] - raw[second] - pair)
    return {n: {b: v - overhead for b, v in c.items()} for n, c in costs.items()}, overhead, base


def worth_measuring(costs: dict[str, dict[int, int]], raw: dict[str, int]) -> dict[str, list[int]]:
    """Each tensor's bitwidths whose compressed bytes are below its int8 bytes (the others can never be chosen:
    leaving the tensor as it is costs fewer bytes at no drop)."""
    kept = {name: [b for b, cost in sorted(by_bits.items()) if cost < raw[name]] for name, by_bits in costs.items()}
    return {name: bits for name, bits in kept.items() if bits}


@dataclass(frozen=True)
class Prepared:
    """The weights, the bitwidths worth measuring per tensor, and their byte costs (all from the file alone,
    so every shard finds the same candidates)."""

    palettes: Palettes
    usable: dict[str, list[int]]
    costs: dict[str, dict[int, int]]
    overhead: int
    base: int

    @property
    def candidates(self) -> list[Candidate]:
        return tflite_candidates(self.usable)


def prepare(int8: bytes, measurement: TfliteMeasurement, *, strip: bool, source: str) -> Prepared:
    palettes, changing = plannable(int8, measurement, source)
    costs, overhead, base = byte_costs(palettes, changing, strip)
    raw = {name: len(palettes.weights[name].tensor.buffer.data) for name in changing}
    usable = worth_measuring(costs, raw)
    if not usable:
        raise ModelError("LUT compression would not shrink any weight tensor at the bitwidths planned", source,
                         "the model's weight tensors are too small to gain from palettizing")
    return Prepared(palettes, usable, {n: costs[n] for n in usable}, overhead, base)


def assemble(prepared: Prepared, results: dict[str, CandidateResult], rows: Rows, *, seed: int,
             seconds: float) -> SensitivityTable:
    """The sensitivity table: every tensor's measured options with their drops and byte costs."""

    reference = results[CONTROL].zero_shot
    assert reference is not None
    scale = rows.task.scale
    layers = []
    for name, bits in prepared.usable.items():
        w = prepared.palettes.weights[name]
        layout = quantization_layout(w.tensor)
        tables = int(w.array.shape[layout.axis]) if isinstance(layout, PerChannel) else 1
        size = len(w.tensor.buffer.data)
        options = [Option(None, 8, size, size)]
        for b in bits:
            result = results.get(f"{name}/{2 ** b}")
            if result is None or result.zero_shot is None:  # not measured: it could not be chosen
                continue
            options.append(Option(2 ** b, b, prepared.costs[name][b], ideal_bytes(int(w.array.size), tables, b),
                                  measured_drop=scale * (reference - result.zero_shot), accuracy=result.zero_shot,
                                  fine_tuned=False))
        counted_drops(options)
        layers.append(LayerSensitivity(name, w.op, int(w.array.size), tables, isinstance(layout, PerChannel), options))
    return SensitivityTable(layers, prepared.base, prepared.overhead, reference, reference, len(rows.y), 0, seed,
                            seconds, task=rows.task)


@dataclass
class TflitePlanOutcome:
    """The plan to use (exact bytes and arena measured), every plan the check tried, the table, the
    budget (a ratio resolved to bytes), the noise of one validation score, and the spec for `palettize`."""

    plan: Plan
    tried: list[Plan]
    table: SensitivityTable
    budget: Budget
    noise: float
    spec: PalettizationSpec

    @property
    def over_budget(self) -> bool:
        drop, budget = self.plan.checked_drop, self.budget.max_drop
        return drop is not None and budget is not None and drop > budget


def float32_bytes(int8: bytes, source: str = "model") -> int:
    """The size of the same model with float32 weights: the file plus 3 bytes for every byte of its int8
    constant tensors (what dequantizing them to float32 adds; int32 biases stay 4 bytes)."""

    model = parse_tflite(int8, source)
    extra = sum(3 * len(t.buffer.data) for s in model.subgraphs for t in s.tensors
                if t.buffer is not None and t.buffer.data and t.dtype == schema().TensorType.INT8)
    return len(int8) + extra


def plan_tflite(int8: bytes, data: Dataset, budget: Budget, measurement: TfliteMeasurement, *, seed: int = 0, jobs: int = 1,
                strip: bool = False, check: bool = True, source: str = "model",
                done: dict[str, CandidateResult] | None = None, parts: list[tuple[str, PartialTable]] | None = None,
                on_start: Callable[[list[Candidate]], None] | None = None, on_result: ResultCallback | None = None,
                on_checked: Callable[[Plan, float], None] | None = None) -> TflitePlanOutcome:
    """Plan `int8` on `data` within `budget`: measure (or merge `parts`, or complete `done`), choose, check."""

    started = time.perf_counter()
    rows = validation_rows(data, int8, measurement, seed, source)
    if budget.max_drop is not None and budget.task != rows.task:
        raise InvalidValue(f"this is a {rows.task.name} model: drops are measured in {rows.task.unit}, not "
                           f"{budget.task.unit}", budget.task.budget_field,
                           f"give the drop budget as --{rows.task.budget_field.replace('_', '-')}")
    budget = replace(budget, task=rows.task)
    prepared = prepare(int8, measurement, strip=strip, source=source)
    palettes, candidates = prepared.palettes, prepared.candidates
    if parts is not None:
        done = merge_parts(parts, candidates=candidates)
    if on_start:
        on_start(candidates)
    max_drop = budget.max_drop if parts is None else None
    results = measure(palettes, candidates, rows, jobs=jobs, done=done, max_drop=max_drop, on_result=on_result)
    table = assemble(prepared, results, rows, seed=seed, seconds=time.perf_counter() - started)
    if budget.target_ratio is not None:
        budget = budget.resolved(float32_bytes(int8, source))
    lowest = {layer.name: min(o.bits for o in layer.options if o.clusters is not None) for layer in table.layers}
    cache: dict[frozenset[str], int] = {}

    def arenas_of(sets: list[frozenset[str]]) -> list[int]:
        missing = [s for s in dict.fromkeys(sets) if s not in cache]
        if missing:
            files = [(palettes.compressed({n: lowest[n] for n in s}, strip),) for s in missing]
            measured = run_parallel(arena_of, files, min(default_jobs(), len(files)), source="the planned model")
            if None in measured:
                raise InterpreterError("TFLM did not report its arena size", "the planned model", "plan without a RAM budget")
            cache.update(zip(missing, measured))
        return [cache[s] for s in sets]

    sliced_cache: dict[tuple[frozenset[str], int], int] = {}

    def sliced_arenas(names: frozenset[str], budgets: list[int]) -> list[int]:
        missing = [b for b in dict.fromkeys(budgets) if (names, b) not in sliced_cache]
        if missing:
            files = [(palettes.compressed({n: lowest[n] for n in names}, strip, b),) for b in missing]
            measured = run_parallel(arena_of, files, min(default_jobs(), len(files)), source="the sliced planned model")
            if None in measured:
                raise InterpreterError("TFLM did not report its arena size", "the sliced planned model",
                                       "plan without a RAM budget")
            sliced_cache.update(((names, b), a) for b, a in zip(missing, measured))
        return [sliced_cache[(names, b)] for b in budgets]

    def decode_budgets(names: frozenset[str]) -> list[int]:
        kernels = [palettes.weights[n] for n in names]
        return kernel_decode_budgets([(w.op, w.shape, int(np.prod(w.shape))) for w in kernels])

    slicing = Slicing(budgets=decode_budgets, arenas=sliced_arenas, batch=default_jobs())

    def choose(max_drop: float | None) -> Plan:
        within = budget if max_drop is None else replace(budget, max_drop=max_drop)
        if within.ram_bytes is None:
            return choose_plan(table, within)
        return choose_plan_within_ram(table, within, arenas_of, slicing)

    reference = table.reference_accuracy
    reference_all: list[float] = []

    def measure_joint(plan: Plan) -> float:
        if not reference_all:  # the given file on every validation row (candidates may have used a subset)
            reference_all.append(reference if len(rows.y_all) == len(rows.y) else
                                 score_in_tflm(int8, rows.x_all, rows.y_all, rows.task, jobs, source))
        model = palettes.model_with({n: o.bits for n, o in plan.clustered().items()})
        drop = rows.task.scale * (reference_all[0] - score_in_tflm(model, rows.x_all, rows.y_all, rows.task,
                                                                         jobs, source))
        if on_checked:
            on_checked(plan, drop)
        return drop

    noise = float(rows.task.noise(reference, len(rows.y_all)))
    if check:
        chosen, tried = checked_plan(choose, measure_joint, budget.max_drop, noise)
    else:
        chosen, tried = choose(budget.max_drop), []
    choice = {n: o.bits for n, o in chosen.clustered().items()}
    planned = palettes.compressed(choice, strip, chosen.decode_budget)
    chosen.exact_bytes = len(planned)
    if chosen.arena_bytes is None:
        [chosen.arena_bytes] = run_parallel(arena_of, [(planned,)], 1, source="the planned model")
    return TflitePlanOutcome(chosen, tried, table, budget, noise, palettization_spec(palettes, chosen))


def palettization_spec(palettes: Palettes, plan: Plan) -> PalettizationSpec:
    """The spec `palettize --spec` takes: each planned tensor with its bits and name."""
    entries = []
    for name, option in plan.clustered().items():
        w = palettes.weights[name]
        entries.append(TensorBits(w.subgraph, w.index, option.bits, w.name or None,
                                  label=f"{name} ({w.op}, {'×'.join(map(str, w.array.shape))}): "
                                        f"{option.drop:+.2f} counted drop, {option.bytes:,} bytes"))
    if not entries:
        raise ModelError("the plan palettizes no tensor", None, "allow a larger drop or byte target")
    return PalettizationSpec(tuple(entries), plan.decode_budget)


def measure_shard(int8: bytes, data: Dataset, measurement: TfliteMeasurement, shard: Shard, *, seed: int = 0, jobs: int = 1,
                  strip: bool = False, source: str = "model", done: dict[str, CandidateResult] | None = None,
                  on_start: Callable[[list[Candidate]], None] | None = None,
                  on_result: ResultCallback | None = None) -> dict[str, CandidateResult]:
    """Shard `shard` of the canonical candidates, every one measured (no budget is known here)."""
    prepared = prepare(int8, measurement, strip=strip, source=source)
    rows = validation_rows(data, int8, measurement, seed, source)
    mine = shard.select(prepared.candidates)
    if on_start:
        on_start(mine)
    results = measure(prepared.palettes, mine, rows, jobs=jobs, done=done, on_result=on_result)
    return {c.key: results[c.key] for c in mine}


def task_of(int8: bytes, data: Dataset, measurement: TfliteMeasurement, source: str = "model") -> Task:
    """The task the data and the model's output make (or the measurement's)."""
    return validation_rows(data, int8, replace(measurement, validation_rows=1), 0, source).task


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
