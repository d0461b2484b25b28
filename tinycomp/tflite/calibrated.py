"""Data-aware palettization: levels and biases chosen from the layer inputs on calibration rows.

For output channel o of a weight operator, palettizing changes the accumulator (in int32 bias
units) by Σ_j Δq_oj · x̃_j (see `activations`). Two corrections follow, with no training:

- Weighted levels: each channel's levels minimize Σ_j Δq_oj² · E[x̃_j²] (the output error without
  cross terms) instead of Σ_j Δq_oj²: the same exact 1-D k-means, each value weighed by the second
  moment of the input it multiplies (`kmeans.optimal_levels(weights=...)`). A small floor
  (IMPORTANCE_FLOOR × the tensor's mean moment) keeps inputs never seen active on the calibration
  rows from being ignored outright.
- Bias correction: the bias gets back the mean shift, so the channel's mean accumulator over the
  calibration rows is the int8 file's. Sequentially (layer by layer in graph order, the statistics
  of each layer measured with the layers before it already palettized and corrected), the shift is
  E[Σ_j q_oj x_j] − E[Σ_j q'_oj x'_j] (x: the int8 file's input, x': the palettized one's), so it
  also takes back the mean drift the earlier layers cause; otherwise Σ_j Δq_oj E[x̃_j].

The statistics come from the TFLM interpreter running a probe copy of the model (`activations`);
the probe's weights and biases are replaced in place between layers, never rebuilt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinycomp.errors import DataError, ModelError
from tinycomp.tflite.activations import Geometry, InputMoments, geometry_of, measure_sums, moments, probe_model
from tinycomp.tflite.find_tensors import WeightTensor
from tinycomp.tflite.model import parse_tflite
from tinycomp.tflite.palettize import Calibration, PalettizedTensor, palettize_weight
from tinycomp.tflite.private import buffer_data_span

IMPORTANCE_FLOOR = 0.01


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

    def __init__(self, model_bytes: bytes, geometries: list[Geometry], jobs: int, source: str):
        self.data, self.first = probe_model(model_bytes, [g.input_index for g in geometries])
        self.buffer = bytearray(self.data)
        self.jobs, self.source = jobs, source
        probe = parse_tflite(self.data, "probe model")
        self.tensors = probe.subgraphs[0].tensors

    def replace(self, index: int, array: np.ndarray, name: str | None) -> None:
        tensor = self.tensors[index]
        if tensor.name != name or tuple(int(d) for d in tensor.shape) != array.shape:
            raise ModelError(f"probe tensor {index} is not the model's tensor {name!r}", self.source)
        start, length = buffer_data_span(self.data, tensor.buffer.index)
        values = np.ascontiguousarray(array, dtype=tensor.numpy_dtype).tobytes()
        if length != len(values):
            raise ModelError(f"probe tensor {index} holds {length} bytes, not {len(values)}", self.source)
        self.buffer[start:start + length] = values

    def moments(self, x: np.ndarray, geometries: list[Geometry]) -> list[InputMoments]:
        rows, sums, squares = measure_sums(bytes(self.buffer), self.first, x, self.jobs, self.source)
        return [moments(g, rows, s1, s2) for g, s1, s2 in zip(geometries, sums, squares)]


def palettize_calibrated(model_bytes: bytes, model: Any, chosen: list[tuple[WeightTensor, int]],
                         calibration: Calibration, source: str) -> tuple[list[PalettizedTensor], dict[str, Any]]:
    """Palettize `chosen` (weight, bits) in `model` (model_editor, edited in place: weights and biases)
    with the statistics of `calibration`'s rows; what was done, and how the data was used."""
    if any(w.subgraph != 0 for w, _ in chosen):
        raise ModelError("palettize with data measures subgraph 0 only (TFLM runs it)", source,
                         "palettize without --data, or name subgraph 0's weights")
    order = {id(op.inputs[1]): i for i, op in enumerate(model.subgraphs[0].operators) if len(op.inputs) > 1}
    chosen = sorted(chosen, key=lambda item: order[id(item[0].tensor)])
    geometries = [geometry_of(model, w) for w, _ in chosen]
    probe = Probe(model_bytes, geometries, calibration.jobs, source)
    shared = shared_tensors(model)
    reference = probe.moments(calibration.x, geometries)
    measured = 1
    done = []
    for i, ((weight, bits), geometry) in enumerate(zip(chosen, geometries)):
        current = reference[i]
        if calibration.sequential and i > 0:
            current = probe.moments(calibration.x, geometries)[i]
            measured += 1
        old = np.asarray(weight.array)
        moment = current.second - current.mean ** 2 if calibration.centered else current.second
        importance = importance_of(np.maximum(moment, 0.0)) if calibration.weighted else None
        new, report = palettize_weight(weight, bits, importance)
        weight.tensor.array = new
        probe.replace(weight.index, new, weight.tensor.name)
        if calibration.bias_correction and geometry.bias_index is not None and geometry.bias_index not in shared:
            bias_tensor = model.subgraphs[0].tensors[geometry.bias_index]
            axis = geometry.output_axis
            shift = channel_sums(old, reference[i].mean, axis) - channel_sums(new, current.mean, axis)
            bias = np.asarray(bias_tensor.array)
            fixed = corrected_bias(bias, shift, bias_ratio(model, weight, geometry))
            bias_tensor.array = fixed
            probe.replace(geometry.bias_index, fixed, bias_tensor.name)
            change = fixed.astype(np.float64) - bias.astype(np.float64)
            report = _with_bias(report, float(np.sqrt(np.mean(change * change))))
        done.append(report)
    return done, {**calibration.describe(), "interpreter_runs": measured,
                  "importance_floor": IMPORTANCE_FLOOR if calibration.weighted else None}


def shared_tensors(model: Any) -> set[int]:
    """Tensors of subgraph 0 whose buffer another tensor also reads (their bias is left as it is)."""
    readers: dict[int, list[int]] = {}
    for s, subgraph in enumerate(model.subgraphs):
        for tensor in subgraph.tensors:
            if tensor.buffer is not None and tensor.buffer.data:
                readers.setdefault(id(tensor.buffer), []).append(tensor.index if s == 0 else -1)
    return {i for indices in readers.values() if len(indices) > 1 for i in indices if i >= 0}


def _with_bias(report: PalettizedTensor, rms: float) -> PalettizedTensor:
    from dataclasses import replace

    return replace(report, bias_shift=rms)



def calibration_of(model_bytes: bytes, dataset: Any, count: int, seed: int, jobs: int,
                   source: str = "model") -> tuple[Calibration, np.ndarray]:
    """(the calibration of `count` training rows of `dataset` chosen at random with `seed`, their indices,
    ascending): the rows fitted to the model's input (a trailing axis of 1 added or dropped)."""
    model = parse_tflite(model_bytes, source)
    row_shape = tuple(int(d) for d in model.subgraphs[0].inputs[0].shape[1:])
    data = dataset.fit_to(row_shape)
    if tuple(data.input_shape) != row_shape:
        raise DataError(f"the data's rows have shape {tuple(data.input_shape)} but the model expects {row_shape}",
                        source, "calibrate with the data the model was trained on")
    total = len(data.x_train)
    rows = np.sort(np.random.default_rng(seed).choice(total, size=min(count, total), replace=False))
    from tinycomp.data.dataset import Rows

    x = data.x_train.take(rows) if isinstance(data.x_train, Rows) else np.asarray(data.x_train)[rows]
    return Calibration(np.asarray(x, dtype=np.float32), jobs=jobs), rows
