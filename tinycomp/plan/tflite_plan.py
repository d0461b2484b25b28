"""The .tflite backend of the plan core (`TfliteBackend`): index bits per weight tensor of an int8 file,
measured zero-shot in TFLM (no TensorFlow).

A candidate is one weight tensor palettized to one bitwidth, everything else as given; the control is
the given file. With calibration rows (`Measurement.calibration_rows`, the CLI's default 512), the
tensor is palettized as `palettize --data` does it (`tflite.calibrated.Calibrator`: levels, error
feedback and its operator's bias from the int8 file's layer inputs on those training rows), so
`palettize --spec` with the same data makes exactly the measured file. Each candidate runs in the
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
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tinycomp import bounds, tflm
from tinycomp.data import Dataset, check_fits_model
from tinycomp.data.validation import ValidationSource
from tinycomp.errors import DataError, ModelError
from tinycomp.metrics import Task, choose_task
from tinycomp.plan.candidates import (
    CONTROL,
    Candidate,
    CandidateResult,
    candidates_of,
    ruled_out,
)
from tinycomp.plan.choose import (
    DEFAULT_CLUSTER_COUNTS,
    LayerSensitivity,
    Option,
    Plan,
    SensitivityTable,
    counted_drops,
    upper_bound_text,
)
from tinycomp.plan.costs import _synthetic, ideal_bytes, kernel_decode_budgets
from tinycomp.plan.decision import Limit
from tinycomp.plan.make import byte_costs
from tinycomp.plan.measure import seeded_rows
from tinycomp.plan.request import ByteCosts, JointDrop, Measurement, PlanOutcome, PlanRequest
from tinycomp.specs import (
    PalettizationSpec,
    PerChannel,
    TensorBits,
    dump_palettization_spec,
    parse_palettization_spec,
)
from tinycomp.tflite.calibrated import DEFAULT_CALIBRATION_ROWS, Calibrator, calibration_of
from tinycomp.tflite.compress import compress_model
from tinycomp.tflite.cut import first_reader, live_tensors, suffix_model, why_not_cut
from tinycomp.tflite.find_tensors import (
    FindResult,
    WeightTensor,
    bits_for,
    choose_compression,
    encoded_size,
    quantization_layout,
)
from tinycomp.tflite.levels import most_values, palettize_array, weight_label
from tinycomp.tflite.model import parse_tflite, schema
from tinycomp.tflite.palettize import palettizable_weights, select_weights, why_not
from tinycomp.tflite.private import fast_buffer_packing, fast_index_packing, replace_buffers
from tinycomp.tflite.strip import strip_model

TFLITE_KIND = "tflite"
# 2 values per channel (1 bit) zero-shot is rarely usable; plan measures 2–6 bits unless told otherwise.
DEFAULT_BITS = tuple(sorted({bits_for(c) for c in DEFAULT_CLUSTER_COUNTS if c > 2}))
# Like the Keras plan's fast estimate: candidates on at most this many validation rows.
DEFAULT_VALIDATION_ROWS = 2048
# The check measures the chosen plan on the candidates' rows and fresh held-out rows, this many times as
# many in all (with --validation-rows 0: on every held-out row). 1 (the candidates' rows only) costs
# almost nothing (see Runner) but is biased: a plan chosen among many noisy measurements looks better on
# the rows it was chosen on (on the stand-in, a 2-bit plan measured +0.68 pp there and +0.98 pp on all
# held-out rows). Each fresh row costs a run of the given file and one of the plan's cut model.
# docs/palettize.md measures both, and what they cost in noise and time.
CHECK_MULTIPLE = 2
# Activations cached for cut models and the check, at most (beyond it, fewer cuts: those candidates run
# more operators; fewer tails: the check runs from the plan's first tensor).
MAX_CACHED_BYTES = 512 * 2 ** 20
TensorKey = tuple[int, int]


@dataclass
class Palettes:
    """The int8 file and its weights' palettized values per bitwidth (computed once each), and the files
    made from them. With a `calibrator` (`tflite.calibrated.Calibrator`), each weight is palettized with
    data as `palettize --data` palettizes it, its operator's bias corrected too."""

    int8: bytes
    weights: dict[str, WeightTensor]  # label → weight, in graph order
    source: str = "model"
    model: Any = None  # the parsed int8 file the weights are of
    calibrator: Any = None
    _values: dict[tuple[str, int, bool], dict[int, np.ndarray]] = field(default_factory=dict)
    _lut_model: Any = None

    def values(self, name: str, bits: int, for_bytes: bool = False) -> dict[int, np.ndarray]:
        """{tensor index: new values} of `name` palettized to `bits`: its weight, and with calibration its
        operator's corrected bias. `for_bytes`: values only a file's size is measured on; with calibration
        these are stand-ins with as many values per table (`costs._synthetic`), not the costly calibrated
        ones (the LUT encoding's size depends on the values per table, not on which)."""

        stand_in = for_bytes and self.calibrator is not None
        if (name, bits, stand_in) not in self._values:
            weight = self.weights[name]
            layout = quantization_layout(weight.tensor)
            if stand_in:
                array = _synthetic(np.asarray(weight.array), layout, bits, seed=weight.index)
                self._values[(name, bits, stand_in)] = {weight.index: array}
            elif self.calibrator is None:
                self._values[(name, bits, stand_in)] = {weight.index: palettize_array(np.asarray(weight.array), layout,
                                                                                       bits)}
            else:
                found = self.calibrator.calibrated(weight, bits)
                extra = {} if found.bias_index is None else {found.bias_index: found.bias}
                self._values[(name, bits, stand_in)] = {weight.index: found.values, **extra}
        return self._values[(name, bits, stand_in)]

    def array(self, name: str, bits: int) -> np.ndarray:
        """The palettized values of `name`'s weight."""
        return self.values(name, bits)[self.weights[name].index]

    def model_with(self, choice: dict[str, int], for_bytes: bool = False) -> bytes:
        """The int8 file with each named weight palettized to its bits, everything else byte for byte as given.

        The values are replaced in place (same bytes, same places), not rebuilt: model_editor's
        rebuild takes about a second per file in Python, and a plan makes dozens of files."""

        if not choice:
            return self.int8
        tensors = self.model.subgraphs[0].tensors
        return replace_buffers(self.int8, {int(tensors[t].buffer.index): a.tobytes() for name, bits in choice.items()
                                           for t, a in self.values(name, bits, for_bytes).items()}, self.source)

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

    def compressed(self, choice: dict[str, int], strip: bool = False, decode_budget: int | None = None,
                   for_bytes: bool = False) -> bytes:
        """`model_with(choice)` LUT-compressed as `palettize`'s spec says (and stripped, with `strip`; the
        kernels decoding to more than `decode_budget` sliced, as `compress` does with the spec's budget)."""

        data = self.model_with(choice, for_bytes)
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


def plannable(int8: bytes, measurement: Measurement, source: str) -> tuple[Palettes, dict[str, list[int]]]:
    """The weights to plan (named, or every palettizable one) and each one's bitwidths that change it."""

    model = parse_tflite(int8, source)
    chosen = select_weights(model, list(measurement.layers) or None, source)
    elsewhere = sorted({w.subgraph for w in chosen if w.subgraph != 0})
    if elsewhere:  # candidates, cuts and the check run subgraph 0's tensors (by index)
        raise ModelError(f"the model has weight tensors in subgraph {', '.join(map(str, elsewhere))}; plan measures "
                         "the weights of subgraph 0 only", source,
                         "palettize such a model with `tinycomp palettize --bits N`, then compress and eval it")
    usable_weights, reasons = [], []
    for w in chosen:
        reason = why_not(w)
        if reason and measurement.layers:
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
        bits = [b for b in bits_of(measurement) if 2 ** b < values]
        if bits:
            usable[name] = bits
    if not usable:
        raise ModelError("no weight tensor has more values per channel than the bitwidths planned keep", source,
                         "plan with more bits (--clusters), or the model is palettized already")
    return Palettes(int8, {n: weights[n] for n in usable}, source, model), usable


def bits_of(measurement: Measurement) -> tuple[int, ...]:
    """The measurement's cluster counts as index bitwidths (8 values per channel: 3 bits)."""
    return tuple(sorted({bits_for(c) for c in measurement.cluster_counts}))


def tflite_candidates(usable: dict[str, list[int]]) -> list[Candidate]:
    """The control, then each tensor's bitwidths from many values to few."""
    return candidates_of({name: [2 ** b for b in bits] for name, bits in usable.items()})


@dataclass(frozen=True)
class PlanRows:
    """The validation rows candidates are measured on (a seeded subset), and the check's rows: those, then
    as many held-out rows again as `CHECK_MULTIPLE` says (seeded; all of them when there are fewer)."""

    x: np.ndarray
    y: np.ndarray
    x_check: np.ndarray
    y_check: np.ndarray
    task: Task
    groups_check: np.ndarray | None = None  # the group of each check row (None: rows are the bound's unit)


def validation_rows(data: Dataset, int8: bytes, measurement: Measurement, seed: int, source: str) -> PlanRows:
    """The data's validation rows (`Dataset.validation_split`: its own validation set, whole groups held out
    by `seed`, else the last `validation_split` of the training rows), fitted to the model's input; a seeded
    subset of `validation_rows` of them for the candidates."""

    subgraph = parse_tflite(int8, source).subgraphs[0]
    input_shape = tuple(int(d) for d in subgraph.inputs[0].shape[1:])
    output_shape = tuple(int(d) for d in subgraph.outputs[0].shape[1:])
    data = data.fit_to(input_shape)
    task = choose_task(data.y_test[:1] if data.labels else None, output_shape, measurement.task)
    check_fits_model(data, input_shape, int(output_shape[-1]) if output_shape else 1, source, task=task,
                     output_shape=output_shape)
    n = len(data.x_train)
    if data.x_val is None and data.groups_train is None and int(round(n * measurement.validation_split)) < 1:
        raise DataError(f"{n} training rows leave no validation rows at a split of {measurement.validation_split:g}",
                        data.name, "use more data or a larger validation split")
    split = data.validation_split(measurement.validation_split, seed)
    _, x_all, y_all = data.validation_rows(split)
    rows, check = row_sets(len(x_all), measurement.validation_rows or 0, seed)
    groups = None if split.val_groups is None else split.val_groups[check]
    return PlanRows(x_all[rows], y_all[rows], x_all[check], y_all[check], task, groups)


def row_sets(held: int, validation_rows: int, seed: int,
             multiple: float = CHECK_MULTIPLE) -> tuple[np.ndarray, np.ndarray]:
    """(the candidates' rows: a seeded subset of `validation_rows` of the `held` rows, or all with 0; the
    check's rows: those first, then seeded fresh ones up to `multiple` times as many in all)."""

    rows = seeded_rows(held, validation_rows or None, seed=seed, stream=2)
    rest = np.setdiff1d(np.arange(held), rows)
    wanted = max(0, int(multiple * validation_rows) - len(rows)) if validation_rows else len(rest)
    fresh = rest[seeded_rows(len(rest), wanted, seed=seed, stream=3)] if len(rest) and wanted else rest[:0]
    return rows, np.concatenate([rows, fresh])


def score(outputs: np.ndarray, y: np.ndarray, task: Task) -> float:
    """The task's plan score: top-1 accuracy, or output SNR vs y in dB."""
    return float(task.plan_score(outputs, y))


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


def worth_measuring(costs: dict[str, dict[int, int]], raw: dict[str, int]) -> dict[str, list[int]]:
    """Each tensor's bitwidths whose compressed bytes are below its int8 bytes (the others can never be chosen:
    leaving the tensor as it is costs fewer bytes at no drop)."""
    kept = {name: [b for b, cost in sorted(by_bits.items()) if cost < raw[name]] for name, by_bits in costs.items()}
    return {name: bits for name, bits in kept.items() if bits}


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


def float32_bytes(int8: bytes, source: str = "model") -> int:
    """The size of the same model with float32 weights: the file plus 3 bytes for every byte of its int8
    constant tensors (what dequantizing them to float32 adds; int32 biases stay 4 bytes)."""

    model = parse_tflite(int8, source)
    extra = sum(3 * len(t.buffer.data) for s in model.subgraphs for t in s.tensors
                if t.buffer is not None and t.buffer.data and t.dtype == schema().TensorType.INT8)
    return len(int8) + extra


def palettization_spec(palettes: Palettes, plan: Plan) -> PalettizationSpec:
    """The spec `palettize --spec` takes: each planned tensor with its bits and name (none: a plan that found
    nothing within its budget, which palettize reads as "leave the model as it is")."""
    entries = []
    for name, option in plan.clustered().items():
        w = palettes.weights[name]
        entries.append(TensorBits(w.subgraph, w.index, option.bits, w.name or None,
                                  label=f"{name} ({w.op}, {'×'.join(map(str, w.array.shape))}): "
                                        f"{option.drop:+.2f} counted drop, {option.bytes:,} bytes"))
    return PalettizationSpec(tuple(entries), plan.decode_budget)


def input_shape(int8: bytes, source: str = "model") -> tuple[int, ...]:
    """The shape of one input row of the model (its batch axis left out)."""
    return tuple(int(d) for d in parse_tflite(int8, source).subgraphs[0].inputs[0].shape[1:])


def task_of(int8: bytes, data: Dataset, task: Task | None, source: str = "model") -> Task:
    """The task the data and the model's output make (or `task`); the data is checked to fit the model."""
    return validation_rows(data, int8, Measurement(validation_rows=1, task=task), 0, source).task


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

    @property
    def palettes(self) -> Palettes:
        """The weights to plan; with calibration rows, palettized as `palettize --data` does (the int8 file's
        layer inputs measured once, on the rows `palettize --calibration-rows N --seed SEED` takes)."""
        if self._palettes is None:
            palettes, self._changing = plannable(self.int8, self.measurement, self.source)
            count = self.measurement.calibration_rows
            if count:
                calibration, _ = calibration_of(self.int8, self.data, count, self.seed, self.jobs, self.source)
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

    def step_measurer(self, table: SensitivityTable, max_drop: float, *, fine_tuned: bool,
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
        text = dump_palettization_spec(palettization_spec(palettes, chosen), header)
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


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
