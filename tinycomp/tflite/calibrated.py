"""Data-aware palettization: levels and biases chosen from the layer inputs on calibration rows.

For output channel o of a weight operator, palettizing changes the accumulator (in int32 bias
units) by Σ_j Δq_oj · x̃_j (see `activations`), whose mean square is
(Σ_j Δq_oj E[x̃_j])² + Δq_oᵀ Cov[x̃] Δq_o. With no training:

- Bias correction (the first term): the bias gets back the mean shift Σ_j Δq_oj E[x̃_j], rounded
  to its int32 steps, so each channel's mean accumulator over the calibration rows is the int8
  file's. Only where the operator has a bias (the converter stores none for an all-zero bias).
- Weighted levels (the second, without cross terms): each channel's levels minimize
  Σ_j Δq_oj² · Var[x̃_j] instead of Σ_j Δq_oj²: the same exact 1-D k-means, each value weighed by
  the variance of the input it multiplies (`kmeans.optimal_levels(weights=...)`); E[x̃_j²] when
  the mean shift is not corrected (`centered=False`). A small floor (IMPORTANCE_FLOOR × the
  tensor's mean) keeps inputs constant on the calibration rows from being ignored outright.
- Error feedback (the second, with cross terms; FC and conv): the weights are rounded to those
  levels one input at a time, each rounding error spread over the inputs not yet rounded by the
  input covariance (GPTQ's update); then each channel's levels move to the least-squares levels of
  that assignment under the same covariance and the rounding is done again, kept when its output
  error is lower (one step of GPTVQ's codebook update, `refit_levels`).

Measured and not the default (docs/palettize.md): `sequential` takes each layer's statistics with
the layers before it already palettized and corrected, its bias shift then being
E[Σ_j q_oj x_j] − E[Σ_j q'_oj x'_j] (x: the int8 file's input, x': the palettized one's), so it
also takes back the earlier layers' mean drift.

The statistics come from the TFLM interpreter running a probe copy of the model (`activations`);
the probe's weights and biases are replaced in place between layers, never rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tinycomp import tflm
from tinycomp.data.validation import ValidationSource
from tinycomp.errors import DataError, ModelError
from tinycomp.specs import CalibrationExclusion, PerChannel, PerTensor
from tinycomp.tflite.activations import (
    Geometry,
    InputMoments,
    geometry_of,
    measure_sums,
    moments,
    probe_model,
    start_sums,
    summed,
)
from tinycomp.tflite.find_tensors import WeightTensor, quantization_layout
from tinycomp.tflite.levels import Calibration, PalettizedTensor, buffer_readers, palettize_weight, table_slices
from tinycomp.tflite.model import parse_tflite
from tinycomp.tflite.private import replace_buffers

IMPORTANCE_FLOOR = 0.01
DEFAULT_CALIBRATION_ROWS = 512  # training rows `palettize --data` (and `plan MODEL.tflite`) calibrate on
FEEDBACK_OPS = ("FULLY_CONNECTED", "CONV_2D")
# Error feedback holds a K×K float64 matrix per layer (K: weights per output channel), in every worker
# and for all layers at once in the parent, and builds each row's input vectors (positions × K): a small
# file must not make them unbounded. Layers beyond these get weighted levels and bias correction only.
MAX_FEEDBACK_INPUTS = 2048  # K: a 32 MB matrix
MAX_PATCH_BYTES = 64 * 2 ** 20  # one row's input vectors, float64
MAX_FEEDBACK_BYTES = 256 * 2 ** 20  # all layers' matrices together
DAMPING = 0.01  # GPTQ's: 1% of the mean diagonal added to the input second moments before inverting them
FEEDBACK_BLOCK = 128  # columns rounded before the later ones are updated in one matrix product


def rms_change(old: np.ndarray, new: np.ndarray) -> float:
    diff = new.astype(np.float64) - old.astype(np.float64)
    return float(np.sqrt(np.mean(diff * diff))) if diff.size else 0.0


def feedback_factor(hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the inputs in the order they are rounded: largest second moment first; the upper Cholesky factor of
    the damped `hessian`'s inverse in that order): what `with_error_feedback` needs of the input moments,
    the same for every bitwidth."""
    h = hessian.astype(np.float64).copy()
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    h += DAMPING * float(np.mean(np.diag(h))) * np.eye(len(h))
    order = np.argsort(-np.diag(h), kind="stable")
    h = h[np.ix_(order, order)]
    return order, np.linalg.cholesky(np.linalg.inv(h)).T  # GPTQ: the inverse's Cholesky factor, upper


def with_error_feedback(old: np.ndarray, palettized: np.ndarray, hessian: np.ndarray,
                        layout: PerTensor | PerChannel,
                        factor: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The weights `old` [O, ...] (output channels on axis 0) rounded one input at a time to the levels
    `palettized` uses in each value table, each rounding error spread over the inputs not yet rounded
    as the input second moments `hessian` say (GPTQ's update, with each table's levels as its grid),
    inputs with the largest second moment first. Every value stays one of its table's levels.
    `factor`: `feedback_factor(hessian)`, when known."""
    channels = old.shape[0]
    w = old.reshape(channels, -1).astype(np.float64)
    table = table_slices(palettized, layout)
    levels = [np.unique(row) for row in table]
    per_row = levels * channels if len(levels) == 1 else levels
    width = max(len(level) for level in per_row)
    grid = np.stack([np.pad(level, (0, width - len(level)), mode="edge") for level in per_row]).astype(np.float64)
    order, upper = factor if factor is not None else feedback_factor(hessian)
    w = w[:, order]
    q = np.empty_like(w)
    rows = np.arange(channels)
    for start in range(0, w.shape[1], FEEDBACK_BLOCK):  # GPTQ's lazy batches: later columns updated once per block
        end = min(start + FEEDBACK_BLOCK, w.shape[1])
        errors = np.empty((channels, end - start))
        for j in range(start, end):
            nearest = np.argmin(np.abs(w[:, j:j + 1] - grid), axis=1)
            q[:, j] = grid[rows, nearest]
            error = (w[:, j] - q[:, j]) / upper[j, j]
            errors[:, j - start] = error
            w[:, j + 1:end] -= error[:, None] * upper[j, j + 1:end][None, :]
        w[:, end:] -= errors @ upper[start:end, end:]
    result = np.empty_like(q)
    result[:, order] = q
    return result.reshape(old.shape).astype(old.dtype)


def output_error(old: np.ndarray, new: np.ndarray, hessian: np.ndarray) -> float:
    """Σ_o Δw_oᵀ H Δw_o: the output error of weights `new` instead of `old` [O, ...] for input moments H."""
    delta = (new.astype(np.float64) - old.astype(np.float64)).reshape(old.shape[0], -1)
    return float(np.sum((delta @ hessian) * delta))


def refit_levels(old: np.ndarray, palettized: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    """`palettized` [O, ...] with each output channel's levels moved to minimize its output error
    (Δw_oᵀ H Δw_o) while every weight keeps its level: the least-squares levels (AᵀHA)⁻¹AᵀHw, A the
    one-hot assignment of the channel's weights to its levels, rounded to integers in the int8 range.
    H A is one matrix product for all channels at once (H is symmetric, so AᵀHw = (HA)ᵀw)."""
    channels = old.shape[0]
    w = old.reshape(channels, -1).astype(np.float64)
    q = palettized.reshape(channels, -1)
    inputs = q.shape[1]
    found = [np.unique(row, return_inverse=True) for row in q]
    width = max(len(levels) for levels, _ in found)
    one_hot = np.zeros((channels, inputs, width))
    for o, (_, assignment) in enumerate(found):
        one_hot[o, np.arange(inputs), assignment.ravel()] = 1.0
    ha = (hessian @ one_hot.transpose(1, 0, 2).reshape(inputs, -1)).reshape(inputs, channels, width).transpose(1, 0, 2)
    grams = np.matmul(one_hot.transpose(0, 2, 1), ha)
    targets = np.einsum("okl,ok->ol", ha, w)
    out = np.empty_like(q)
    info = np.iinfo(old.dtype)
    for o, (levels, assignment) in enumerate(found):
        n = len(levels)
        gram = grams[o, :n, :n]
        ridge = 1e-9 * max(float(np.trace(gram)), 1e-12) * np.eye(n)
        fitted = np.linalg.solve(gram + ridge, targets[o, :n])
        fitted = np.clip(np.floor(fitted + 0.5), info.min + 1, info.max)
        out[o] = fitted[assignment.ravel()].astype(q.dtype)
    return out.reshape(old.shape)


def importance_of(second: np.ndarray) -> np.ndarray:
    """Positive weights for the k-means from E[x̃²] per weight element (the floor keeps each > 0)."""
    mean = float(np.mean(second))
    return second + IMPORTANCE_FLOOR * mean if mean > 0 else np.ones_like(second)


def channel_sums(weights: np.ndarray, inputs: np.ndarray, axis: int) -> np.ndarray:
    """Σ_j w_oj · x_j for each output channel o along `axis` (`inputs` broadcast to the weights' shape)."""
    product = weights.astype(np.float64) * np.broadcast_to(inputs, weights.shape)
    return np.moveaxis(product, axis, 0).reshape(weights.shape[axis], -1).sum(axis=1)


def corrected_bias(bias: np.ndarray, shift: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """`bias` plus the mean accumulator shift `shift` (in input scale × weight scale units), each
    converted to the bias's own steps by `ratio` (input scale × weight scale / bias scale, 1 as the
    converter quantizes biases) and rounded to the nearest step, clipped to the bias's type."""
    info = np.iinfo(bias.dtype)
    new = bias.astype(np.float64) + np.floor(shift * ratio + 0.5)
    return np.clip(new, info.min, info.max).astype(bias.dtype)


def bias_ratio(model: Any, weight: WeightTensor, geometry: Geometry) -> np.ndarray:
    """Per output channel: input scale × weight scale / bias scale (1 where a scale is missing)."""
    subgraph = model.subgraphs[weight.subgraph]
    x, bias = subgraph.tensors[geometry.input_index], subgraph.tensors[geometry.bias_index]
    channels = geometry.weight_shape[geometry.output_axis]
    scales = [np.broadcast_to(np.asarray(t.quantization.scales, np.float64), (channels,))
              if t.quantization is not None and len(t.quantization.scales) in (1, channels) else None
              for t in (x, weight.tensor, bias)]
    if any(s is None for s in scales) or not np.all(scales[2] > 0):  # type: ignore[operator]
        return np.ones(channels)
    sx, sw, sb = scales
    return np.asarray(sx * sw / sb)  # type: ignore[operator]


class Probe:
    """The probe model's bytes, with weights and biases replaceable in place."""

    def __init__(self, model_bytes: bytes, geometries: list[Geometry], jobs: int, source: str, pool: Any = None):
        self.data, self.first = probe_model(model_bytes, [g.input_index for g in geometries])
        self.buffer = bytearray(self.data)
        self.jobs, self.source, self.pool = jobs, source, pool
        probe = parse_tflite(self.data, "probe model")
        self.tensors = probe.subgraphs[0].tensors

    def replace(self, index: int, array: np.ndarray, name: str | None) -> None:
        tensor = self.tensors[index]
        if tensor.name != name or tuple(int(d) for d in tensor.shape) != array.shape:
            raise ModelError(f"probe tensor {index} is not the model's tensor {name!r}", self.source)
        values = np.ascontiguousarray(array, dtype=tensor.numpy_dtype).tobytes()
        self.buffer = bytearray(replace_buffers(bytes(self.buffer), {int(tensor.buffer.index): values}, self.source))

    def moments(self, x: np.ndarray, geometries: list[Geometry],
                gram: tuple[Geometry | None, ...] = ()) -> list[tuple[InputMoments, np.ndarray | None]]:
        """Each probed input's moments per weight element and, where `gram` gives its geometry, E[p pᵀ]
        over its input vectors p (`activations.patches`)."""
        return self.finish(measure_sums(bytes(self.buffer), self.first, x, self.jobs, self.source, gram), geometries)

    def start(self, x: np.ndarray, gram: tuple[Geometry | None, ...]) -> list[Any]:
        """`moments` started in the pool (what this process does meanwhile overlaps it)."""
        return start_sums(bytes(self.buffer), self.first, x, self.jobs, self.pool, gram)

    @staticmethod
    def finish(sums: tuple[int, list[np.ndarray], list[np.ndarray], list[Any]],
               geometries: list[Geometry]) -> list[tuple[InputMoments, np.ndarray | None]]:
        rows, firsts, squares, grams = sums
        found = [moments(g, rows, s1, s2) for g, s1, s2 in zip(geometries, firsts, squares)]
        return [(m, None if g is None else g / m.samples) for m, g in zip(found, grams)]


@dataclass(frozen=True)
class LayerInputs:
    """What one weight operator's input looked like on the calibration rows: its geometry, the moments per
    weight element and (for error feedback on FC and conv) E[p pᵀ] over its input vectors."""

    geometry: Geometry
    moments: InputMoments
    gram: np.ndarray | None = None
    _feedback: dict[bool, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = field(
        default_factory=dict, compare=False, repr=False)

    def feedback(self, centered: bool) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """(the input second moments H, centered or not; `feedback_factor(H)`), computed once for every bitwidth."""
        assert self.gram is not None
        if centered not in self._feedback:
            mean = self.moments.mean.reshape(-1)
            hessian = self.gram - np.outer(mean, mean) if centered else self.gram
            self._feedback[centered] = (hessian, feedback_factor(hessian))
        return self._feedback[centered]


@dataclass(frozen=True)
class CalibratedWeight:
    """One weight palettized with data: its values, its corrected bias (None: left as it is), the report."""

    values: np.ndarray
    bias_index: int | None
    bias: np.ndarray | None
    report: PalettizedTensor


def feedback_geometries(probe: Probe, geometries: list[Geometry], calibration: Calibration) -> tuple[Geometry | None, ...]:
    """The geometries whose layers get error feedback (None: not), within the memory bounds above."""
    chosen: list[Geometry | None] = []
    total = 0
    for g in geometries:
        inputs = int(np.prod(g.weight_shape[1:]))
        positions = int(np.prod([max(int(d), 1) for d in probe.tensors[g.input_index].shape])) // max(
            g.weight_shape[-1], 1) if g.op == "CONV_2D" else 1
        matrix = inputs * inputs * 8
        fits = (inputs <= MAX_FEEDBACK_INPUTS and positions * inputs * 8 <= MAX_PATCH_BYTES
                and total + matrix <= MAX_FEEDBACK_BYTES)
        use = calibration.error_feedback and g.op in FEEDBACK_OPS and fits
        total += matrix if use else 0
        chosen.append(g if use else None)
    return tuple(chosen)


def layer_inputs(probe: Probe, weights: list[WeightTensor], geometries: list[Geometry],
                 calibration: Calibration) -> list[LayerInputs]:
    """Every weight's `LayerInputs` from one TFLM run of the probe on the calibration rows."""
    gram = feedback_geometries(probe, geometries, calibration)
    return [LayerInputs(g, m, e) for g, (m, e) in zip(geometries, probe.moments(calibration.x, geometries, gram))]


def calibrated_weight(model: Any, weight: WeightTensor, bits: int, inputs: LayerInputs, reference: InputMoments,
                      calibration: Calibration, correct_bias: bool = True) -> CalibratedWeight:
    """`weight` palettized to `bits` with the statistics `inputs` (its input as the model being palettized
    sees it) and `reference` (as the int8 file does: the same unless sequential); `model` is only read."""
    old = np.asarray(weight.array)
    current = inputs.moments
    moment = current.second - current.mean ** 2 if calibration.centered else current.second
    importance = importance_of(np.maximum(moment, 0.0)) if calibration.weighted else None
    new, report = palettize_weight(weight, bits, importance)
    if inputs.gram is not None:
        hessian, factor = inputs.feedback(calibration.centered)
        layout = quantization_layout(weight.tensor)
        new = with_error_feedback(old, new, hessian, layout, factor)
        if calibration.refit_levels and isinstance(layout, PerChannel):
            again = with_error_feedback(old, refit_levels(old, new, hessian), hessian, layout, factor)
            new = again if output_error(old, again, hessian) < output_error(old, new, hessian) else new
        report = replace(report, rms_error=rms_change(old, new))
    geometry = inputs.geometry
    if not (calibration.bias_correction and correct_bias and geometry.bias_index is not None):
        return CalibratedWeight(new, None, None, report)
    axis = geometry.output_axis
    shift = channel_sums(old, reference.mean, axis) - channel_sums(new, current.mean, axis)
    bias = np.asarray(model.subgraphs[weight.subgraph].tensors[geometry.bias_index].array)
    fixed = corrected_bias(bias, shift, bias_ratio(model, weight, geometry))
    return CalibratedWeight(new, geometry.bias_index, fixed, replace(report, bias_shift=rms_change(bias, fixed)))


class Calibrator:
    """The statistics of `weights` (subgraph 0 of `model`, model_editor) on `calibration`'s rows, from one
    TFLM run of a probe of the int8 file, and each weight palettized with them (`calibrated`).

    Without `sequential`, a weight's calibrated values and bias depend only on the int8 file, the rows
    and its bits: the same whichever other weights are palettized with it (unless the error feedback's
    memory bound, taken over `weights` together, drops it). `plan` measures exactly what `palettize
    --data` makes of its spec this way."""

    def __init__(self, model_bytes: bytes, model: Any, weights: list[WeightTensor], calibration: Calibration,
                 source: str, pool: Any = None):
        if any(w.subgraph != 0 for w in weights):
            raise ModelError("palettize with data measures subgraph 0 only (TFLM runs it)", source,
                             "palettize without --data, or name subgraph 0's weights")
        order = {id(op.inputs[1]): i for i, op in enumerate(model.subgraphs[0].operators) if len(op.inputs) > 1}
        self.weights = sorted(weights, key=lambda w: order[id(w.tensor)])
        self.model, self.calibration = model, calibration
        self.geometries = [geometry_of(model, w, source) for w in self.weights]
        self.probe = Probe(model_bytes, self.geometries, calibration.jobs, source, pool)
        self.shared = shared_tensors(model)
        self.position = {w.index: i for i, w in enumerate(self.weights)}
        self.source = source
        self._reference: list[LayerInputs] | None = None
        self._started: list[Any] = []
        self._gram: tuple[Geometry | None, ...] = ()
        if pool is not None:  # the probe runs in the pool while this process goes on; `reference` waits for it
            self._gram = feedback_geometries(self.probe, self.geometries, calibration)
            self._started = self.probe.start(calibration.x, self._gram)
        else:
            self._reference = layer_inputs(self.probe, self.weights, self.geometries, calibration)

    @property
    def reference(self) -> list[LayerInputs]:
        """Each weight's inputs as the int8 file sees them on the calibration rows."""
        if self._reference is None:
            found = self.probe.finish(summed(tflm.gather(self._started, self.source)), self.geometries)
            self._reference = [LayerInputs(g, m, e) for g, (m, e) in zip(self.geometries, found)]
        return self._reference

    def plain(self, weight: WeightTensor) -> bool:
        """Its operators see different inputs (several read it): one set of statistics would not fit, so
        it is palettized without data."""
        return readers(self.model, weight) > 1

    def calibrated(self, weight: WeightTensor, bits: int, inputs: LayerInputs | None = None) -> CalibratedWeight:
        """`weight` palettized to `bits` with the int8 file's statistics (or `inputs`: sequential)."""
        if self.plain(weight):
            new, report = palettize_weight(weight, bits)
            return CalibratedWeight(new, None, None, report)
        i = self.position[weight.index]
        return calibrated_weight(self.model, weight, bits, inputs or self.reference[i], self.reference[i].moments,
                                 self.calibration, correct_bias=self.geometries[i].bias_index not in self.shared)


def palettize_calibrated(model_bytes: bytes, model: Any, chosen: list[tuple[WeightTensor, int]],
                         calibration: Calibration, source: str) -> tuple[list[PalettizedTensor], dict[str, Any]]:
    """Palettize `chosen` (weight, bits) in `model` (model_editor, edited in place: weights and biases)
    with the statistics of `calibration`'s rows; what was done, and how the data was used."""
    bits_of = {w.index: b for w, b in chosen}
    calibrator = Calibrator(model_bytes, model, [w for w, _ in chosen], calibration, source)
    weights, geometries, probe = calibrator.weights, calibrator.geometries, calibrator.probe
    runs, done, plain = 1, [], []
    for i, weight in enumerate(weights):
        bits = bits_of[weight.index]
        if calibrator.plain(weight):
            found = calibrator.calibrated(weight, bits)
            weight.tensor.array = found.values
            probe.replace(weight.index, found.values, weight.tensor.name)
            done.append(found.report)
            plain.append(weight.name)
            continue
        inputs = None
        if calibration.sequential and i > 0:  # the earlier layers are palettized in the probe by now
            inputs, runs = layer_inputs(probe, weights, geometries, calibration)[i], runs + 1
        found = calibrator.calibrated(weight, bits, inputs)
        weight.tensor.array = found.values
        probe.replace(weight.index, found.values, weight.tensor.name)
        if found.bias_index is not None and found.bias is not None:
            bias_tensor = model.subgraphs[0].tensors[found.bias_index]
            bias_tensor.array = found.bias
            probe.replace(found.bias_index, found.bias, bias_tensor.name)
        done.append(found.report)
    no_feedback = [w.name for w, r in zip(weights, calibrator.reference) if calibration.error_feedback and r.gram is None
                   and r.geometry.op in FEEDBACK_OPS and w.name not in plain]
    return done, {**calibration.describe(), "interpreter_runs": runs,
                  "importance_floor": IMPORTANCE_FLOOR if calibration.weighted else None,
                  "without_data_read_by_several_operators": plain,
                  "without_error_feedback_memory_bound": no_feedback}


def readers(model: Any, weight: WeightTensor) -> int:
    """How many operators read `weight` as their filter."""
    return sum(1 for op in model.subgraphs[weight.subgraph].operators
               if len(op.inputs) > 1 and op.inputs[1] is weight.tensor)


def shared_tensors(model: Any) -> set[int]:
    """Tensors of subgraph 0 whose buffer another tensor also reads (their bias is left as it is)."""
    return {t for keys in buffer_readers(model) if len(keys) > 1 for s, t in keys if s == 0}


def calibration_exclusion(source: ValidationSource) -> CalibrationExclusion | None:
    """What a plan validating on `source` must keep out of its calibration rows, as its spec records it
    (None for the data's own validation set: every training row may calibrate)."""
    if source.kind == "given":
        return None
    training_rows = source.rows + source.fit_rows
    if source.kind == "rows":
        return CalibrationExclusion(training_rows, exclude_last_rows=source.rows)
    return CalibrationExclusion(training_rows, exclude_groups=source.held_out)


def calibration_pool(dataset: Any, exclusion: CalibrationExclusion, where: str) -> np.ndarray:
    """The indices (ascending) of `dataset`'s training rows that `exclusion` leaves to calibrate on; a
    DataError naming `where` (the spec's calibration key) when the data is not the one it was written for."""
    total = len(dataset.x_train)
    hint = "give palettize the same --data/--dataset as plan"
    if total != exclusion.training_rows:
        raise DataError(f"{dataset.name} has {total:,} training rows, but the spec's calibration excludes "
                        f"{exclusion.describe()}", f"{where}: calibration.training_rows", hint)
    if exclusion.exclude_last_rows is not None:
        return np.arange(total - exclusion.exclude_last_rows)
    if dataset.groups_train is None:
        raise DataError(f"the spec's calibration excludes {exclusion.describe()}, but {dataset.name} has no "
                        "groups_train", f"{where}: calibration.exclude_groups", hint)
    ids, inverse = np.unique(np.asarray(dataset.groups_train).reshape(-1), return_inverse=True)
    named = [str(g) for g in ids.tolist()]
    missing = [g for g in exclusion.exclude_groups if g not in named]
    if missing:
        raise DataError(f"{dataset.name}'s groups_train has no group {', '.join(map(repr, missing[:8]))}",
                        f"{where}: calibration.exclude_groups", hint)
    excluded = np.isin(inverse.reshape(-1), [named.index(g) for g in exclusion.exclude_groups])
    if excluded.all():
        raise DataError(f"the spec's calibration excludes every training row of {dataset.name}",
                        f"{where}: calibration.exclude_groups", hint)
    return np.flatnonzero(~excluded)


def calibration_rows(total: int, count: int, seed: int, pool: np.ndarray | None = None) -> np.ndarray:
    """`count` of `total` training rows (or of the rows `pool` lists) drawn at random with `seed`, ascending.
    A pool of every row draws what no pool draws."""
    allowed = np.arange(total) if pool is None else np.asarray(pool)
    chosen = np.random.default_rng(seed).choice(len(allowed), size=min(count, len(allowed)), replace=False)
    return allowed[np.sort(chosen)]


def calibration_of(model_bytes: bytes, dataset: Any, count: int, seed: int, jobs: int,
                   source: str = "model", pool: np.ndarray | None = None) -> tuple[Calibration, np.ndarray]:
    """(the calibration of `count` training rows of `dataset` chosen at random with `seed`, their indices,
    ascending): the rows fitted to the model's input (a trailing axis of 1 added or dropped). `pool`: the
    training rows to choose from (`calibration_pool`; None: all of them)."""
    model = parse_tflite(model_bytes, source)
    row_shape = tuple(int(d) for d in model.subgraphs[0].inputs[0].shape[1:])
    data = dataset.fit_to(row_shape)
    if tuple(data.input_shape) != row_shape:
        raise DataError(f"the data's rows have shape {tuple(data.input_shape)} but the model expects {row_shape}",
                        source, "calibrate with the data the model was trained on")
    rows = calibration_rows(len(data.x_train), count, seed, pool)
    from tinycomp.data.dataset import Rows

    x = data.x_train.take(rows) if isinstance(data.x_train, Rows) else np.asarray(data.x_train)[rows]
    return Calibration(np.asarray(x, dtype=np.float32), jobs=jobs), rows
