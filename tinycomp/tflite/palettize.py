"""Post-training palettization of an int8 .tflite: at most 2^bits weight values per quantization channel.

Each chosen weight tensor (the constant filter input of FULLY_CONNECTED, CONV_2D and
DEPTHWISE_CONV_2D) is clustered one value table at a time: per channel along its quantized
dimension when it is quantized per channel (axis 0 for FC and conv, axis 3 for depthwise), else
over the whole tensor. The levels are the exact 1-D k-means optimum of the table's int8 values
(`kmeans.optimal_levels`), rounded to integers, so the values stay int8 on the tensor's own scales
and zero points, and nothing else in the file changes. The result is what TFLM's LUT compression
needs: few distinct values per value table. No training, no TensorFlow.

Files from TensorFlow before 2.4 keep their operators in `deprecated_builtin_code`; they are read
(and written) with the builtin codes newer TensorFlow writes (`model.upgrade_opcodes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tinycomp.errors import ModelError
from tinycomp.specs import MAX_BITWIDTH, MIN_BITWIDTH, PalettizationSpec, PerChannel
from tinycomp.tflite.calibrated import palettize_calibrated
from tinycomp.tflite.find_tensors import (
    WEIGHT_INPUT,
    FindResult,
    WeightTensor,
    choose_compression,
    match_layer,
    quantization_layout,
    weight_tensors,
)
from tinycomp.tflite.levels import (
    Calibration,
    PalettizedTensor,
    buffer_readers,
    palettize_weight,
)
from tinycomp.tflite.model import model_editor, parse_tflite, schema, upgrade_opcodes

if TYPE_CHECKING:
    from tinycomp.tflite.model import EditorModel

PALETTIZED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
NO_WEIGHTS_HINT = "palettize takes an int8 model: `tinycomp quantize`, or a vendor's int8 .tflite"

TensorKey = tuple[int, int]  # (subgraph, tensor)


@dataclass
class PalettizeResult:
    """The palettized flatbuffer, what was done to each tensor, and the tensors left alone (with why)."""

    data: bytes
    tensors: list[PalettizedTensor]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (tensor, reason)
    upgraded_opcodes: int = 0  # operator codes read from deprecated_builtin_code
    calibration: dict[str, Any] | None = None  # how calibration data was used (None: no data)


def palettizable_weights(model: EditorModel) -> list[WeightTensor]:
    """The constant weight tensors of FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D, in graph order."""
    return [w for w in weight_tensors(model) if w.op in PALETTIZED_OPS]


def describe(weight: WeightTensor) -> str:
    return f"tensor {weight.index} ({weight.name or 'unnamed'})"


def why_not(weight: WeightTensor) -> str | None:
    """Why `weight` cannot be palettized for TFLM's LUT (None: it can)."""
    if weight.tensor.dtype != schema().TensorType.INT8:
        return (f"{describe(weight)} holds {np.dtype(weight.array.dtype).name} values; palettize clusters int8 "
                "weights (quantize the model to int8 first)")
    layout = quantization_layout(weight.tensor)
    if isinstance(layout, PerChannel) and layout.axis not in (0, weight.array.ndim - 1):
        return (f"{describe(weight)} is quantized per channel on axis {layout.axis}; TFLM decodes value tables on "
                "axis 0 or the last axis only")
    return None


def select_weights(model: EditorModel, names: list[str] | None, source: str = "model") -> list[WeightTensor]:
    """The weights `names` name (a tensor index, a tensor name, or a layer name as a whole path
    component), or every palettizable weight when `names` is None."""
    weights = palettizable_weights(model)
    if not weights:
        raise ModelError("the model has no FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D weights", source,
                         "nothing to palettize")
    if names is None:
        return weights
    chosen: dict[TensorKey, WeightTensor] = {}
    for name in names:
        weight = find_weight(weights, name, source)
        chosen[(weight.subgraph, weight.index)] = weight
    return list(chosen.values())


def find_weight(weights: list[WeightTensor], name: str, source: str) -> WeightTensor:
    """One weight by tensor index (subgraph 0), exact tensor name, or layer name."""
    if name.isdigit():
        found = [w for w in weights if w.subgraph == 0 and w.index == int(name)]
        if not found:
            listed = ", ".join(str(w.index) for w in weights if w.subgraph == 0)
            raise ModelError(f"tensor {name} is not a weight of FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D",
                             source, f"weight tensors here: {listed}")
        return found[0]
    exact = [w for w in weights if w.name == name]
    if len(exact) == 1:
        return exact[0]
    return match_layer(weights, name, source)


def check_bits(bits: int, where: str) -> None:
    if not MIN_BITWIDTH <= bits <= MAX_BITWIDTH:
        raise ModelError(f"{bits} bits is out of range", where, f"use {MIN_BITWIDTH}–{MAX_BITWIDTH} bits")


def palettize_model(model_bytes: bytes, bits: Mapping[TensorKey, int] | int, *, tensors: list[str] | None = None,
                    source: str = "model", names: Mapping[TensorKey, str | None] | None = None,
                    calibration: Calibration | None = None) -> PalettizeResult:
    """Palettize `model_bytes`: every chosen weight to `bits` (an int: one for all of them; a mapping:
    (subgraph, tensor) → bits for exactly those tensors).

    `tensors` (with an int `bits`) names the weights to palettize (see `select_weights`); by default
    every palettizable weight. With a mapping, `names` may give each tensor's expected name, checked
    against the model. Weights that cannot be palettized are skipped and listed when chosen by
    default, an error when named. With `calibration`, the levels and biases are chosen from the
    model's inputs on those rows (see `Calibration`); without, only the weights' values count.
    """

    parse_tflite(model_bytes, source)  # validates before the editor reads it
    model = model_editor().read(bytes(model_bytes))
    upgraded = upgrade_opcodes(model)
    if isinstance(bits, int):
        check_bits(bits, "bits")
        chosen = [(w, bits) for w in select_weights(model, tensors, source)]
        named = tensors is not None
    else:
        chosen = [(w, b) for w, b in _weights_of(model, bits, names or {}, source)]
        named = True
    done, skipped, usable = [], [], []
    shared = _shared_buffers(model, {(w.subgraph, w.index) for w, _ in chosen})
    for weight, b in chosen:
        reason = why_not(weight) or shared.get((weight.subgraph, weight.index))
        if reason:
            if named:
                raise ModelError(reason, source, "leave this tensor out")
            skipped.append((describe(weight), reason))
            continue
        usable.append((weight, b))
    if not usable:
        raise ModelError("no weight tensor could be palettized" + (f": {skipped[0][1]}" if skipped else ""), source,
                         NO_WEIGHTS_HINT)
    if calibration is None:
        for weight, b in usable:
            new, report = palettize_weight(weight, b)
            weight.tensor.array = new
            done.append(report)
        used = None
    else:
        done, used = palettize_calibrated(model_bytes, model, usable, calibration, source)
    data = bytes(model.build())
    parse_tflite(data, "palettized model")
    return PalettizeResult(data, done, skipped, upgraded, used)


def _weights_of(model: EditorModel, bits: Mapping[TensorKey, int], names: Mapping[TensorKey, str | None],
                source: str) -> list[tuple[WeightTensor, int]]:
    """The weights a per-tensor bits mapping names, each checked to be a palettizable weight (and named as expected)."""
    weights = {(w.subgraph, w.index): w for w in palettizable_weights(model)}
    found = []
    for i, (key, b) in enumerate(bits.items()):
        where = f"{source}: tensors[{i}]"
        check_bits(b, where + ".bits")
        s, t = key
        if key not in weights:
            what = (f"subgraph {s} does not exist" if not 0 <= s < len(model.subgraphs) else
                    f"tensor {t} of subgraph {s} is not a weight of FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D")
            raise ModelError(what, where + ".tensor", "is this spec for a different model? `tinycomp plan` writes one")
        expected = names.get(key)
        if expected is not None and expected != weights[key].name:
            raise ModelError(f"tensor {t} is named {weights[key].name!r} in the model, not {expected!r}",
                             where + ".name", "is this spec for a different model? `tinycomp plan` writes one")
        found.append((weights[key], b))
    return found


def _shared_buffers(model: EditorModel, chosen: set[TensorKey]) -> dict[TensorKey, str]:
    """Chosen tensors whose buffer another, unchosen tensor reads too (palettizing would change that one)."""
    shared = {}
    for keys in buffer_readers(model):
        others = [k for k in keys if k not in chosen]
        if len(keys) > 1 and others:
            for key in keys:
                if key in chosen:
                    shared[key] = (f"tensor {key[1]} shares its data with tensor {others[0][1]}, which is not "
                                   "palettized")
    return shared


def spec_bits(spec: PalettizationSpec) -> tuple[dict[TensorKey, int], dict[TensorKey, str | None]]:
    """A palettization spec as the (bits, names) mappings `palettize_model` takes."""
    return ({(t.subgraph, t.tensor): t.bits for t in spec.tensors},
            {(t.subgraph, t.tensor): t.name for t in spec.tensors})


def compression_choices(palettized_bytes: bytes, done: list[PalettizedTensor],
                        source: str = "palettized model") -> FindResult:
    """find-tensors' choice (layout from the quantization, smallest bitwidth, exact bytes) for each
    palettized tensor of the palettized file: a `FindResult` whose `growing` LUT would not shrink."""

    model = parse_tflite(palettized_bytes, source)
    weights = {(w.subgraph, w.index): w for w in palettizable_weights(model)}
    return FindResult([choose_compression(t.layer, weights[t.key]) for t in done], [])



BIAS_INPUT = 2  # bias input position of FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D


def restore_weights(palettized: bytes, original: bytes, keys: set[TensorKey]) -> bytes:
    """`palettized` with the weight tensors `keys`, and the biases of the operators that read them, as in
    `original` (the same graph: palettize changes buffer values only).

    A palettized tensor that LUT compression leaves uncompressed costs accuracy and saves no byte:
    palettize puts its int8 values back (and the bias, which calibration may have corrected).
    """
    editor = model_editor()
    model, source = editor.read(bytes(palettized)), editor.read(bytes(original))
    for s, (subgraph, before) in enumerate(zip(model.subgraphs, source.subgraphs)):
        for op, op_before in zip(subgraph.operators, before.operators):
            inputs = list(op.inputs)
            if op.opcode_name not in PALETTIZED_OPS or len(inputs) <= WEIGHT_INPUT or inputs[WEIGHT_INPUT] is None:
                continue
            if (s, inputs[WEIGHT_INPUT].index) not in keys:
                continue
            for position in (WEIGHT_INPUT, BIAS_INPUT):
                if position < len(inputs) and inputs[position] is not None and inputs[position].buffer is not None \
                        and inputs[position].buffer.data:
                    inputs[position].array = op_before.inputs[position].array
    editor.prune_buffers(model)  # metadata values: the writer re-adds them (else each rebuild adds a copy)
    data = bytes(model.build())
    parse_tflite(data, "palettized model")
    return data
