"""The weights a .tflite plan palettizes (`Palettes`: each weight's palettized values per bitwidth,
calibrated as `palettize --data` does them, and the files made of them), which weights and bitwidths to
plan (`plannable`, `worth_measuring`), the float32 size, and the spec `palettize --spec` reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinycomp.errors import ModelError
from tinycomp.plan.candidates import (
    Candidate,
    candidates_of,
)
from tinycomp.plan.choose import (
    Plan,
)
from tinycomp.plan.costs import _synthetic
from tinycomp.plan.request import Measurement
from tinycomp.specs import (
    PalettizationSpec,
    TensorBits,
)
from tinycomp.tflite.compress import compress_model
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
from tinycomp.tflite.private import replace_buffers
from tinycomp.tflite.strip import strip_model


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


def worth_measuring(costs: dict[str, dict[int, int]], raw: dict[str, int]) -> dict[str, list[int]]:
    """Each tensor's bitwidths whose compressed bytes are below its int8 bytes (the others can never be chosen:
    leaving the tensor as it is costs fewer bytes at no drop)."""
    kept = {name: [b for b, cost in sorted(by_bits.items()) if cost < raw[name]] for name, by_bits in costs.items()}
    return {name: bits for name, bits in kept.items() if bits}


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
