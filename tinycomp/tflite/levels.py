"""Palettizing one int8 weight tensor: the optimal ≤ 2^bits integer levels of each value table.

What `palettize` (every chosen tensor of a file) and `calibrated` (levels and biases from calibration
data) share, with no file editing: `PalettizedTensor` (what palettizing a tensor did), `Calibration`
(the rows and settings of data-aware palettization), `palettize_array`/`palettize_weight` (exact 1-D
k-means per value table, `kmeans.optimal_levels`), the value tables of a tensor (`table_slices`) and
the tensors that read each constant buffer (`buffer_readers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tinycomp.specs import PerChannel, PerTensor
from tinycomp.tflite.find_tensors import WeightTensor, layer_name, quantization_layout
from tinycomp.tflite.kmeans import optimal_levels

if TYPE_CHECKING:
    from tinycomp.tflite.model import EditorModel

TensorKey = tuple[int, int]  # (subgraph, tensor)


@dataclass(frozen=True)
class PalettizedTensor:
    """What palettizing one weight tensor did."""

    subgraph: int
    tensor: int
    name: str
    layer: str
    op: str
    shape: tuple[int, ...]
    layout: PerTensor | PerChannel
    bits: int
    tables: int  # value tables: channels (per-channel quantization) or 1
    values_before: int  # distinct values in the fullest table before
    values_after: int  # ... and after (≤ 2^bits)
    rms_error: float  # RMS change of the int8 values, in quantization steps
    weighted: bool = False  # levels weighed by the input's second moments (calibration data)
    bias_shift: float | None = None  # bias correction: RMS change of the bias, in bias steps (None: not corrected)

    @property
    def key(self) -> TensorKey:
        return self.subgraph, self.tensor

    @property
    def changed(self) -> bool:
        return self.values_after < self.values_before


@dataclass(frozen=True)
class Calibration:
    """Palettize with data: input rows of the model (float, as `eval` feeds them) and what to do with them.

    `bias_correction`: the mean output shift Σ_j Δq_j · E[x̃_j] of each output channel goes back into
    its int32 bias (x̃: the input each weight multiplies, zero point taken off).
    `weighted`: each channel's levels minimize Σ_j Δq_j² · Var[x̃_j] (`centered`; else E[x̃_j²]), its
    output error without cross terms once the mean shift is corrected, instead of Σ_j Δq_j².
    `error_feedback`: FC and conv weights are then rounded to those levels one input at a time, each
    rounding error spread over the inputs not yet rounded by the input covariance (GPTQ's update).
    `refit_levels` (per-channel tables): each channel's levels are then moved to the least-squares
    levels of that assignment, and the rounding done again; kept when its output error is lower.
    `sequential`: each layer's statistics are measured with the layers before it already palettized
    (and corrected), so a layer's bias also takes back the mean shift the earlier ones cause.
    The defaults are what measured best across four models and datasets (docs/palettize.md).
    """

    x: np.ndarray
    weighted: bool = True
    bias_correction: bool = True
    sequential: bool = False
    jobs: int = 1
    centered: bool = True
    error_feedback: bool = True
    refit_levels: bool = True

    def describe(self) -> dict[str, Any]:
        return {"count": int(len(self.x)), "weighted": self.weighted, "bias_correction": self.bias_correction,
                "sequential": self.sequential, "centered": self.centered, "error_feedback": self.error_feedback,
                "refit_levels": self.refit_levels}


def weight_label(weight: WeightTensor) -> str:
    """`conv2d_1` for `sequential/conv2d_1/Conv2D`: the layer part of the tensor's name."""
    return layer_name(weight.name, weight.index)


def table_slices(array: np.ndarray, layout: PerTensor | PerChannel) -> np.ndarray:
    """The tensor as (tables, values per table): one row per channel along the quantized axis, or one row."""
    if isinstance(layout, PerChannel):
        return np.moveaxis(array, layout.axis, 0).reshape(array.shape[layout.axis], -1)
    return array.reshape(1, -1)


def from_slices(slices: np.ndarray, shape: tuple[int, ...], layout: PerTensor | PerChannel) -> np.ndarray:
    if isinstance(layout, PerChannel):
        moved = (shape[layout.axis],) + tuple(d for i, d in enumerate(shape) if i != layout.axis)
        return np.ascontiguousarray(np.moveaxis(slices.reshape(moved), 0, layout.axis))
    return slices.reshape(shape)


def palettize_array(array: np.ndarray, layout: PerTensor | PerChannel, bits: int,
                    importance: np.ndarray | None = None) -> np.ndarray:
    """`array` with every value table reduced to its optimal ≤ 2^bits integer levels (same dtype and shape).

    `importance` (positive, `array`'s shape): each value's squared change is weighed by it (e.g. the
    second moment of the input it multiplies: then the levels minimize the layer's output error)."""
    slices = table_slices(array, layout)
    weights = None if importance is None else table_slices(np.broadcast_to(importance, array.shape), layout)
    out = np.empty_like(slices)
    for row, values in enumerate(slices):
        found = optimal_levels(values, 2 ** bits, None if weights is None else weights[row])
        out[row] = found.apply(values)
    return from_slices(out, array.shape, layout)


def most_values(array: np.ndarray, layout: PerTensor | PerChannel) -> int:
    return max(len(np.unique(row)) for row in table_slices(array, layout)) if array.size else 0


def palettize_weight(weight: WeightTensor, bits: int,
                     importance: np.ndarray | None = None) -> tuple[np.ndarray, PalettizedTensor]:
    """The palettized values of one weight tensor (each value's error weighed by `importance`) and what
    palettizing did."""
    array = np.asarray(weight.array)
    layout = quantization_layout(weight.tensor)
    new = palettize_array(array, layout, bits, importance)
    diff = new.astype(np.float64) - array.astype(np.float64)
    rms = float(np.sqrt(np.mean(diff * diff))) if diff.size else 0.0
    tables = int(array.shape[layout.axis]) if isinstance(layout, PerChannel) else 1
    done = PalettizedTensor(weight.subgraph, weight.index, weight.name, weight_label(weight), weight.op,
                            tuple(int(d) for d in array.shape), layout, bits, tables, most_values(array, layout),
                            most_values(new, layout), rms, importance is not None)
    return new, done


def buffer_readers(model: EditorModel) -> list[list[TensorKey]]:
    """The tensors that read each constant buffer (the converter shares identical constants' buffers)."""
    readers: dict[int, list[TensorKey]] = {}
    for s, subgraph in enumerate(model.subgraphs):
        for tensor in subgraph.tensors:
            if tensor.buffer is not None and tensor.buffer.data:
                readers.setdefault(id(tensor.buffer), []).append((s, tensor.index))
    return list(readers.values())
