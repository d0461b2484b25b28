"""Find the weight tensors of named layers in a .tflite and choose their LUT compression.

Weights are found through the graph: the filter input (input 1) of CONV_2D,
DEPTHWISE_CONV_2D, FULLY_CONNECTED and TRANSPOSE_CONV operators. A layer name matches a
whole path component of the weight's or the operator output's tensor name, so `dense` never
matches `dense_1`. For each tensor the unique values are counted per tensor and per channel,
and the layout and smallest index bitwidth that fit with the fewest bytes are chosen, measured
with tflite-micro's own LUT encoder. `smallest_exact` then gives each chosen tensor TFLM's
HUFFMAN or PRUNE encoding instead when that is fewer bytes (the same values, decoded exactly; the
DECODE operator each costs is the same whichever the method).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tinycomp.errors import ModelError
from tinycomp.specs import MAX_BITWIDTH, CompressionSpec, PerChannel, PerTensor, TensorCompression
from tinycomp.tflite.model import schema

if TYPE_CHECKING:
    from tinycomp.tflite.model import EditorModel, EditorTensor

WEIGHT_INPUT = 1  # filter/weights input position of all four operators


@dataclass
class WeightTensor:
    """A constant weight tensor feeding a CONV/FC-like operator."""

    subgraph: int
    index: int
    name: str
    shape: tuple[int, ...]
    op: str
    components: frozenset[str]  # path components of the weight's and the op outputs' names
    tensor: Any  # model_editor.Tensor

    @property
    def array(self) -> np.ndarray:
        return self.tensor.array


@dataclass
class TensorChoice:
    """The chosen LUT compression of one weight tensor, with the numbers behind the choice."""

    layer: str
    weight: WeightTensor
    unique_total: int
    unique_per_channel: int
    layout: PerTensor | PerChannel
    index_bitwidth: int
    bytes_before: int
    bytes_after: int
    method: str = "lut"  # or huffman, pruning (`smallest_exact`): then layout and bitwidth are LUT's, unused
    lut_bytes: int | None = None  # with another method: what LUT would take

    def to_spec(self) -> TensorCompression:
        w = self.weight
        label = (f"{self.layer}: {w.name}  shape {list(w.shape)}  unique {self.unique_total} "
                 f"(max {self.unique_per_channel} per channel)")
        if self.method != "lut":
            label += f"  {self.method}: {self.bytes_after:,} bytes, LUT {self.lut_bytes:,}"
            return TensorCompression(w.subgraph, w.index, 0, None, label=label, method=self.method)
        return TensorCompression(w.subgraph, w.index, self.index_bitwidth, self.layout, label=label)


class IncompressibleTensor(ModelError):
    """A weight tensor with too many unique values for a 7-bit LUT."""


def weight_ops() -> set[int]:
    ops = schema().BuiltinOperator
    return {ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.FULLY_CONNECTED, ops.TRANSPOSE_CONV}


def name_components(name: str | None) -> set[str]:
    """`a/dense/MatMul;a/dense/Relu` → {a, dense, MatMul, Relu}: whole components only."""
    return {part for part in re.split(r"[/;:]", name or "") if part}


def weight_tensors(model: EditorModel) -> list[WeightTensor]:
    """Every constant weight input of a weight operator, in graph order, each tensor once."""
    found, seen = [], set()
    ops = weight_ops()
    for s, subgraph in enumerate(model.subgraphs):
        for op in subgraph.operators:
            if op.opcode not in ops or len(op.inputs) <= WEIGHT_INPUT:
                continue
            tensor = op.inputs[WEIGHT_INPUT]
            if tensor is None or tensor.buffer is None or not tensor.buffer.data or (s, tensor.index) in seen:
                continue
            seen.add((s, tensor.index))
            components = name_components(tensor.name)
            for out in op.outputs:
                components |= name_components(out.name)
            found.append(WeightTensor(s, tensor.index, tensor.name or "", tuple(int(d) for d in tensor.shape),
                                      op.opcode_name, frozenset(components), tensor))
    return found


def match_layer(weights: list[WeightTensor], layer: str, source: str) -> WeightTensor:
    """The one weight tensor whose names contain `layer` as a whole path component."""
    matches = [w for w in weights if layer in w.components]
    if len(matches) > 1:  # prefer the weight's own name over fused op-output names
        own = [w for w in matches if layer in name_components(w.name)]
        matches = own if len(own) == 1 else matches
    if len(matches) > 1 and any(w.op == "DEPTHWISE_CONV_2D" for w in matches):
        # a SeparableConv: its pointwise CONV_2D weight is the one TFMOT clusters
        pointwise = [w for w in matches if w.op != "DEPTHWISE_CONV_2D"]
        matches = pointwise if len(pointwise) == 1 else matches
    if not matches:
        raise ModelError(f"no weight tensor of layer {layer!r} in the model", source,
                         f"layers with weights here: {', '.join(layer_names(weights)) or 'none'}")
    if len(matches) > 1:
        listed = ", ".join(f"{w.index} ({w.name})" for w in matches)
        raise ModelError(f"layer name {layer!r} matches several weight tensors: {listed}", source,
                         "use a more specific layer name")
    return matches[0]


def layer_name(tensor_name: str, index: int) -> str:
    """Best-effort layer name of a weight: the component before the op name, e.g. `dense`."""
    parts = [p for p in re.split(r"[/;:]", tensor_name) if p]
    return parts[-2] if len(parts) >= 2 else (parts[0] if parts else f"tensor {index}")


def layer_names(weights: list[WeightTensor]) -> list[str]:
    return [layer_name(w.name, w.index) for w in weights]


def bits_for(count: int) -> int:
    """Smallest index bitwidth that can address `count` values (at least 1)."""
    return max(1, math.ceil(math.log2(count))) if count > 1 else 1


def channel_axes(shape: tuple[int, ...]) -> list[int]:
    """Axes the TFLM kernels accept for per-channel value tables: 0 and the last."""
    return sorted({0, len(shape) - 1}) if shape else []


def max_unique_along(array: np.ndarray, axis: int) -> int:
    moved = np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)
    return max(len(np.unique(row)) for row in moved)


def encoded_size(tensor: EditorTensor, layout: PerTensor | PerChannel, bitwidth: int) -> int:
    """Exact bytes of indices + value tables + metadata, from tflite-micro's LUT encoder."""
    from tflite_micro.tensorflow.lite.micro.compression import lut
    from tflite_micro.tensorflow.lite.micro.compression import spec as tflm_spec

    mode = tflm_spec.PerTensor() if isinstance(layout, PerTensor) else tflm_spec.PerChannel(axis=layout.axis)
    method = tflm_spec.LookUpTableCompression(index_bitwidth=bitwidth, mode=mode)
    with contextlib.redirect_stderr(io.StringIO()):
        result = lut.LutCompressor().compress(tensor, method)
    return len(result.encoded_data) + len(result.ancillary_data)


def quantization_layout(tensor: EditorTensor) -> PerTensor | PerChannel:
    """The only LUT layout that decodes correctly in TFLM: the one of the tensor's quantization.

    Measured with tflite-micro 0.dev20261023182759: a per_tensor table on a per-channel
    quantized int8 weight, and a per_channel table on an unquantized float FULLY_CONNECTED
    weight, both compress without complaint but give wrong TFLM outputs.
    """
    quant = tensor.quantization
    if quant is not None and quant.axis is not None and len(np.atleast_1d(quant.scales)) > 1:
        return PerChannel(int(quant.axis))
    return PerTensor()


def values_per_table(array: np.ndarray, layout: PerTensor | PerChannel) -> int:
    """Unique values the largest value table must hold in `layout`."""
    if isinstance(layout, PerChannel):
        return max_unique_along(array, layout.axis)
    return len(np.unique(array))


def choose_compression(layer: str, weight: WeightTensor) -> TensorChoice:
    """The tensor's layout (from its quantization) and the smallest bitwidth its values fit."""
    array = weight.array
    layout = quantization_layout(weight.tensor)
    unique_total = len(np.unique(array))
    channel_axis = layout.axis if isinstance(layout, PerChannel) else 0
    per_channel = max_unique_along(array, channel_axis) if array.ndim else unique_total
    if isinstance(layout, PerChannel) and layout.axis not in channel_axes(array.shape):
        raise IncompressibleTensor(f"tensor {weight.index} ({weight.name}) is quantized per channel on axis "
                                   f"{layout.axis}; TFLM decodes value tables on axis 0 or the last axis only",
                                   f"layer {layer}", "pass --skip-incompressible")
    bits = bits_for(values_per_table(array, layout))
    if bits > MAX_BITWIDTH:
        raise IncompressibleTensor(
            f"tensor {weight.index} ({weight.name}) has {unique_total} unique values "
            f"({per_channel} per channel); a LUT holds at most {2 ** MAX_BITWIDTH}",
            f"layer {layer}", "cluster the layer first (`tinycomp cluster`), or pass --skip-incompressible")
    after = encoded_size(weight.tensor, layout, bits)
    return TensorChoice(layer, weight, unique_total, per_channel, layout, bits, array.nbytes, after)


def smallest_exact(choice: TensorChoice) -> TensorChoice:
    """`choice` with HUFFMAN or PRUNE instead of its LUT when that encodes the tensor in fewer bytes."""
    from dataclasses import replace

    from tinycomp.tflite.encoders import check_decodable, huffman_of, prune_of

    best = choice
    for method, encode in (("huffman", huffman_of), ("pruning", prune_of)):
        if check_decodable(method, choice.weight.tensor) is None:
            size = encode(choice.weight.tensor).size
            if size < best.bytes_after:
                best = replace(choice, method=method, bytes_after=size, lut_bytes=choice.bytes_after)
    return best


@dataclass
class FindResult:
    """The chosen tensors and the ones skipped, with why.

    `choices` includes tensors that their encoding would not shrink (`growing`); the caller
    decides whether to keep them (`without_growing`).
    """

    choices: list[TensorChoice]
    skipped: list[tuple[str, str]]  # (layer or tensor, reason)

    @property
    def growing(self) -> list[TensorChoice]:
        """Choices whose LUT encoding (indices, value tables, metadata) is not smaller than the raw tensor."""
        return [c for c in self.choices if c.bytes_after >= c.bytes_before]

    def without_growing(self) -> FindResult:
        return FindResult([c for c in self.choices if c.bytes_after < c.bytes_before], list(self.skipped))

    def spec(self) -> CompressionSpec:
        return CompressionSpec(tuple(choice.to_spec() for choice in self.choices))

    def smallest_exact(self) -> FindResult:
        """Each choice with the fewest-bytes exact method: LUT, HUFFMAN or PRUNE (`smallest_exact`)."""
        return FindResult([smallest_exact(c) for c in self.choices], list(self.skipped))


def find_tensors(model: EditorModel, layers: list[str] | None, source: str = "model",
                 skip_incompressible: bool = False) -> FindResult:
    """Choose LUT compression for the named layers' weights, or for every weight when `layers` is None.

    With `layers` None, weights with too many values for a LUT are skipped. Weights that LUT
    compression would not shrink are chosen like the others and listed by `FindResult.growing`.
    """
    weights = weight_tensors(model)
    if not weights:
        raise ModelError("the model has no CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED or TRANSPOSE_CONV weights",
                         source, "nothing to compress")
    if layers is None:
        targets = list(zip(layer_names(weights), weights))
    else:
        targets = [(layer, match_layer(weights, layer, source)) for layer in layers]
        _reject_shared(targets, source)
    choices, skipped = [], []
    for layer, weight in targets:
        try:
            choice = choose_compression(layer, weight)
        except IncompressibleTensor as e:
            if not (skip_incompressible or layers is None):
                raise
            skipped.append((layer, e.what))
            continue
        choices.append(choice)
    return FindResult(choices, skipped)


def _reject_shared(targets: list[tuple[str, WeightTensor]], source: str) -> None:
    by_tensor: dict[tuple[int, int], str] = {}
    for layer, weight in targets:
        key = (weight.subgraph, weight.index)
        if key in by_tensor:
            raise ModelError(f"layers {by_tensor[key]!r} and {layer!r} name the same tensor {weight.index}",
                             source, "name each layer once")
        by_tensor[key] = layer
