"""Exact byte costs and arenas of plans, measured with tflite-micro (no TensorFlow import).

Byte costs are measured, not estimated: the model is quantized to int8 once (by the caller), and
for each layer and index bitwidth its weight tensor is filled with synthetic values (2^bits per
value table) and LUT-compressed with tflite-micro. The difference to the int8 file is what
compressing that layer costs or saves in the real file: packed indices, value tables, and the
DECODE operator with its output tensor (which repeats the per-channel quantization parameters).
The arena of a set of compressed layers is measured in TFLM worker processes on such files, also
with the large kernels sliced to a decode budget (`compress --decode-budget`, tinycomp.tflite.slicing):
the slices decode one at a time, so the arena holds one slice's decoded weights, not the whole kernel.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tinycomp.errors import InterpreterError
from tinycomp.plan.choose import ArenasOf, Plan, SensitivityTable, Slicing
from tinycomp.specs import PerChannel, PerTensor
from tinycomp.tflite.encoded import without_encoded_quantization
from tinycomp.tflite.find_tensors import match_layer, quantization_layout, weight_tensors
from tinycomp.tflite.model import parse_tflite
from tinycomp.tflite.slicing import slice_model
from tinycomp.tflite.strip import strip_model
from tinycomp.tflm import arena_of, default_jobs, run_parallel

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


def _compressed_size(int8_bytes: bytes, fills: Fills, strip: bool = False,
                     decode_budget: int | None = None) -> int:
    """Size of the int8 model with the given tensors refilled and LUT-compressed (and stripped)."""
    return len(_compressed_model(int8_bytes, fills, strip, decode_budget))


def _compressed_model(int8_bytes: bytes, fills: Fills, strip: bool = False,
                      decode_budget: int | None = None) -> bytes:
    """The int8 model with the given tensors refilled and LUT-compressed (and stripped); with a
    decode budget, the larger kernels are sliced first, as `compress --decode-budget` does."""
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


def final_size(model_bytes: bytes, strip: bool) -> int:
    return len(_final(model_bytes, strip))


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


def layer_byte_costs(int8_bytes: bytes, infos: dict[str, WeightInfo], bits: dict[str, list[int]],
                     strip: bool = False) -> tuple[dict[str, dict[int, int]], int]:
    """({layer: {bits: bytes the layer costs in the compressed file}}, once-only DECODE overhead).

    Each cost is the int8 file's size change when only that layer is compressed, plus its int8
    weight bytes; the part every single-layer measurement pays once (the DECODE operator code and
    alignment) is measured from one two-layer compression and reported separately. With `strip`
    every size is that of the stripped file (`compress --strip`).
    """
    base = final_size(int8_bytes, strip)
    costs: dict[str, dict[int, int]] = {}
    for name, info in infos.items():
        costs[name] = {}
        for b in bits.get(name, []):
            size = _compressed_size(int8_bytes, {(info.subgraph, info.tensor): (info.layout, b)}, strip)
            costs[name][b] = info.bytes + size - base
    overhead = 0
    measured = [(name, min(c)) for name, c in costs.items() if c]
    if len(measured) >= 2:
        (first, first_bits), (second, second_bits) = measured[:2]
        ia, ib = infos[first], infos[second]
        pair = _compressed_size(int8_bytes, {(ia.subgraph, ia.tensor): (ia.layout, first_bits),
                                             (ib.subgraph, ib.tensor): (ib.layout, second_bits)}, strip)
        overhead = max(0, (costs[first][first_bits] - ia.bytes) + (costs[second][second_bits] - ib.bytes)
                       - (pair - base))
    elif measured:  # one layer: cannot separate the shared part; leave it in the layer's cost
        overhead = 0
    for c in costs.values():
        for b in c:
            c[b] -= overhead
    return costs, overhead


def plan_bytes_exact(int8_bytes: bytes, infos: dict[str, WeightInfo], plan: Plan, strip: bool = False) -> int:
    """The plan's size measured by compressing all its layers at once (synthetic values)."""
    fills = {(infos[name].subgraph, infos[name].tensor): (infos[name].layout, o.bits)
             for name, o in plan.clustered().items()}
    return _compressed_size(int8_bytes, fills, strip, plan.decode_budget)


def arena_measurer(int8_bytes: bytes, infos: dict[str, WeightInfo], table: SensitivityTable,
                   strip: bool = False) -> ArenasOf:
    """ArenasOf for this model: each set of layers is LUT-compressed with synthetic values (at its
    smallest measured bitwidth: the decoded tensors, not the indices, take arena) and its arena
    measured in TFLM worker processes; results are cached per set."""
    bits = _smallest_bits(table)
    cache: dict[frozenset[str], int] = {}

    def model_for(names: frozenset[str]) -> bytes:
        fills = {(infos[n].subgraph, infos[n].tensor): (infos[n].layout, bits[n]) for n in names}
        return _compressed_model(int8_bytes, fills, strip)

    def arenas_of(sets: list[frozenset[str]]) -> list[int]:
        missing = [s for s in dict.fromkeys(sets) if s not in cache]
        if missing:
            measured = run_parallel(arena_of, [(model_for(s),) for s in missing], default_jobs(),
                                    source="the plan's synthetic model")
            if None in measured:
                raise InterpreterError("TFLM did not report its arena size", "the plan's synthetic model",
                                       "plan without a RAM budget")
            cache.update(zip(missing, measured))
        return [cache[s] for s in sets]

    return arenas_of


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


def slicing_measurer(int8_bytes: bytes, infos: dict[str, WeightInfo], table: SensitivityTable,
                     strip: bool = False) -> Slicing:
    """Slicing for `choose_plan_within_ram`: the decode budgets worth trying for a set of layers and
    the arena of their synthetic file sliced at each (measured in TFLM worker processes, cached)."""
    bits = _smallest_bits(table)
    cache: dict[tuple[frozenset[str], int], int] = {}

    def arenas(names: frozenset[str], budgets: list[int]) -> list[int]:
        missing = [b for b in dict.fromkeys(budgets) if (names, b) not in cache]
        if missing:
            fills = {(infos[n].subgraph, infos[n].tensor): (infos[n].layout, bits[n]) for n in names}
            measured = run_parallel(arena_of, [(_compressed_model(int8_bytes, fills, strip, b),) for b in missing],
                                    default_jobs(), source="the plan's sliced synthetic model")
            if None in measured:
                raise InterpreterError("TFLM did not report its arena size", "the plan's synthetic model",
                                       "plan without a RAM budget")
            cache.update(((names, b), a) for b, a in zip(missing, measured))
        return [cache[(names, b)] for b in budgets]

    return Slicing(budgets=lambda names: decode_budgets(infos, names), arenas=arenas, batch=default_jobs())


def _smallest_bits(table: SensitivityTable) -> dict[str, int]:
    """Each plannable layer's smallest measured bitwidth (the decoded tensors, not the indices, take arena)."""
    return {layer.name: min(o.bits for o in layer.options if o.clusters is not None)
            for layer in table.layers if len(layer.options) > 1}
