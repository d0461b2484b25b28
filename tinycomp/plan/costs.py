"""The files a Keras plan's bytes and arenas are measured on, made with tflite-micro (no TensorFlow import).

Byte costs are measured, not estimated: the model is quantized to int8 once (by the caller), and
for each layer and index bitwidth its weight tensor is filled with synthetic values (2^bits per
value table) and LUT-compressed with tflite-micro (`synthetic_file`, the Keras backend's
`model_bytes`). The difference to the int8 file is what compressing that layer costs or saves in the
real file: packed indices, value tables, and the DECODE operator with its output tensor (which
repeats the per-channel quantization parameters). The plan core (`make.byte_costs`, `make.Sizes`)
measures costs, arenas and sliced arenas (`compress --decode-budget`, tinycomp.tflite.slicing) on
these files; `decode_budgets` lists the budgets worth trying for a set of kernels.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tinycomp.specs import PerChannel, PerTensor
from tinycomp.tflite.encoded import without_encoded_quantization
from tinycomp.tflite.find_tensors import match_layer, quantization_layout, weight_tensors
from tinycomp.tflite.model import parse_tflite
from tinycomp.tflite.private import fast_buffer_packing, fast_index_packing
from tinycomp.tflite.slicing import slice_model
from tinycomp.tflite.strip import strip_model

# (subgraph, tensor) → (value-table layout, index bits) of the tensors a synthetic model refills
Fills = dict[tuple[int, int], tuple[PerTensor | PerChannel, int]]
LUT_HEADER_BYTES = 16  # tflite-micro's DCM header in every ancillary (value table) tensor


def _synthetic(array: np.ndarray, layout: PerTensor | PerChannel, bits: int, seed: int) -> np.ndarray:
    """`array` refilled with exactly min(2^bits, slice size) distinct values in every value-table slice.

    Values and their order are random (seeded per tensor): identical fills of two tensors would
    share one buffer after tflite-micro's deduplication, which real weights never do.
    """
    rng = np.random.default_rng(seed)
    values = 2 ** bits
    if isinstance(layout, PerChannel):  # one value table per slice along the channel axis
        moved = np.moveaxis(np.empty_like(array), layout.axis, 0)
    else:
        moved = array.reshape(1, -1).copy()
    per = moved[0].size
    for channel in moved:
        table = rng.choice(np.arange(-128, 128), size=min(values, per), replace=False)
        indices = np.concatenate([np.arange(len(table)), rng.integers(0, len(table), per - len(table))])
        channel[...] = table[rng.permutation(indices)].reshape(channel.shape)
    if isinstance(layout, PerChannel):
        return np.ascontiguousarray(np.moveaxis(moved, 0, layout.axis)).astype(array.dtype)
    return moved.reshape(array.shape).astype(array.dtype)


def synthetic_file(int8_bytes: bytes, fills: Fills, strip: bool = False,
                      decode_budget: int | None = None) -> bytes:
    """The int8 model with the given tensors refilled and LUT-compressed (and stripped); with a
    decode budget, the larger kernels are sliced first, as `compress --decode-budget` does."""
    with fast_buffer_packing(), fast_index_packing():  # the same bytes, several times faster to build
        return _synthetic_file(int8_bytes, fills, strip, decode_budget)


def _synthetic_file(int8_bytes: bytes, fills: Fills, strip: bool, decode_budget: int | None) -> bytes:
    from tflite_micro import compression
    from tflite_micro.tensorflow.lite.micro.compression import model_editor
    from tflite_micro.tensorflow.lite.micro.compression import spec as tflm_spec

    model = model_editor.read(int8_bytes)
    specs = []
    for (s, t), (layout, bits) in fills.items():
        tensor = model.subgraphs[s].tensors[t]
        tensor.array = _synthetic(tensor.array, layout, bits, seed=1000 * s + t)
        mode = tflm_spec.PerChannel(axis=layout.axis) if isinstance(layout, PerChannel) else tflm_spec.PerTensor()
        specs.append(tflm_spec.Tensor(s, t, [tflm_spec.LookUpTableCompression(index_bitwidth=bits, mode=mode)]))
    refilled = bytes(model.build()) if specs else int8_bytes
    if specs and decode_budget is not None:
        refilled, specs = _sliced(refilled, specs, decode_budget)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        compressed = bytes(compression.compress(refilled, specs)) if specs else int8_bytes
    if specs:  # as `compress` writes it
        compressed = without_encoded_quantization(compressed)
    return _final(compressed, strip)


def _sliced(model_bytes: bytes, specs: list[Any], decode_budget: int) -> tuple[bytes, list[Any]]:
    """The model with its large kernels sliced, and tflite-micro specs for the slices."""
    sliced = slice_model(model_bytes, [(t.subgraph, t.tensor) for t in specs], decode_budget, "the plan's synthetic model")
    moved = []
    for t in specs:
        slices = sliced.slices_of(t.subgraph, t.tensor)
        indices = slices.tensors if slices else [sliced.index_map[(t.subgraph, t.tensor)]]
        moved += [replace(t, tensor=i) for i in indices]
    return sliced.data, moved


def _final(model_bytes: bytes, strip: bool) -> bytes:
    return strip_model(model_bytes).data if strip else model_bytes


@dataclass
class WeightInfo:
    """A layer's int8 weight tensor in the .tflite."""

    layer: str
    subgraph: int
    tensor: int
    weights: int
    bytes: int
    channels: int
    layout: PerTensor | PerChannel
    shape: tuple[int, ...] = ()
    op: str = ""  # FULLY_CONNECTED, CONV_2D, ...


def weight_info(int8_bytes: bytes, layers: list[str], source: str = "int8 model") -> dict[str, WeightInfo]:
    """The int8 weight tensor of each named layer."""
    weights = weight_tensors(parse_tflite(int8_bytes, source))
    found = {}
    for name in layers:
        w = match_layer(weights, name, source)
        layout = quantization_layout(w.tensor)
        channels = int(w.array.shape[layout.axis]) if isinstance(layout, PerChannel) else 1
        found[name] = WeightInfo(name, w.subgraph, w.index, int(w.array.size), len(w.tensor.buffer.data),
                                 channels, layout, w.shape, w.op)
    return found


def ideal_bytes(weights: int, channels: int, bits: int, values: int | None = None) -> int:
    """Packed indices plus value tables (int8 values) of a LUT tensor: the bound no encoder beats."""
    return math.ceil(weights * bits / 8) + channels * (values if values is not None else 2 ** bits)


SLICED_OPS = ("FULLY_CONNECTED", "CONV_2D")  # what tinycomp.tflite.slicing slices


def decode_budgets(infos: dict[str, WeightInfo], names: frozenset[str]) -> list[int]:
    """Every decode budget that slices the named layers' kernels differently, largest (fewest slices) first.

    A kernel of C output channels of B bytes each is cut into n slices at budget ⌈C/n⌉·B; budgets
    below the largest kernel's size and not below any kernel's single channel are listed.
    """
    return kernel_decode_budgets([(infos[n].op, infos[n].shape, infos[n].bytes) for n in names])


def kernel_decode_budgets(kernels: list[tuple[str, tuple[int, ...], int]]) -> list[int]:
    """`decode_budgets` for kernels given as (operator, shape, decoded bytes)."""
    sliceable = [(shape[0], size) for op, shape, size in kernels if op in SLICED_OPS and shape]
    if not sliceable:
        return []
    largest = max(size for _, size in sliceable)
    floor = max(size // channels for channels, size in sliceable)
    budgets = {math.ceil(channels / n) * (size // channels) for channels, size in sliceable for n in range(1, channels + 1)}
    return sorted((b for b in budgets if floor <= b < largest), reverse=True)


