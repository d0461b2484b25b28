"""Where the bytes of a .tflite go, and the ideal bound of its weights.

Works on plain and compressed models (read from the graph: the filter input of CONV_2D,
DEPTHWISE_CONV_2D, FULLY_CONNECTED and TRANSPOSE_CONV, which in a compressed model is the output
of a TFLM_DECODE operator fed by the encoded data and the ancillary data, whose byte 0 is the
decoder: 0 LUT, 1 HUFFMAN, 2 PRUNE).

The ideal bound of a LUT-compressed weight tensor is what no LUT encoder can beat for its index
bitwidth: ceil(weights × bits / 8) + its value tables (int8: one byte per value); a Huffman or
PRUNE tensor's is its codewords or bitmask and its tables or kept values (what it stores, without
the 16-byte header), with `bits` its encoded bits per weight, rounded up; an uncompressed tensor's
bound is its raw bytes. The rest of the file (biases, quantization parameters, tensor names,
operators, metadata, flatbuffer structure) is reported separately. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from tinycomp.tflite.find_tensors import WEIGHT_INPUT, layer_name, weight_ops
from tinycomp.tflite.model import DECODE_OP

if TYPE_CHECKING:
    from tinycomp.tflite.model import EditorModel, EditorTensor

LUT_HEADER_BYTES = 16  # tflite-micro's DCM header at the start of every ancillary tensor
DECODE_METHODS = {0: "lut", 1: "huffman", 2: "pruning"}  # byte 0 of the ancillary data
SCALE_BYTES, ZERO_POINT_BYTES = 4, 8  # float32 scales, int64 zero points


@dataclass
class WeightBytes:
    """One weight tensor: its bytes in the file and its ideal bound."""

    layer: str
    tensor: int
    shape: list[int]
    weights: int
    bits: int  # LUT index bitwidth, or 8 × item size when stored raw
    compressed: bool
    index_bytes: int  # packed indices (compressed) or raw data
    table_bytes: int  # value tables (without the 16-byte header)
    header_bytes: int
    ideal_bytes: int
    method: str = "raw"  # raw (uncompressed), lut, huffman or pruning

    @property
    def stored_bytes(self) -> int:
        return self.index_bytes + self.table_bytes + self.header_bytes


@dataclass
class ByteBreakdown:
    """A .tflite's bytes by kind."""

    file_bytes: int
    weights: list[WeightBytes] = field(default_factory=list)
    other_constants: int = 0  # biases and any other constant buffers
    quantization: int = 0  # scales (4 bytes each) and zero points (8 bytes each)
    names: int = 0  # tensor names

    @property
    def weight_bytes(self) -> int:
        return sum(w.stored_bytes for w in self.weights)

    @property
    def ideal_bytes(self) -> int:
        return sum(w.ideal_bytes for w in self.weights)

    def bytes_by_method(self) -> dict[str, tuple[int, int]]:
        """method (raw, lut, huffman, pruning) → (weight tensors, their stored bytes)."""
        out: dict[str, tuple[int, int]] = {}
        for w in self.weights:
            n, stored = out.get(w.method, (0, 0))
            out[w.method] = (n + 1, stored + w.stored_bytes)
        return out

    @property
    def ideal_with_constants(self) -> int:
        """The bound with biases and other constants counted as stored (for readings of "weights"
        that include them, as Keras' get_weights does)."""
        return self.ideal_bytes + self.other_constants

    @property
    def structure(self) -> int:
        """Operators, tensor tables, metadata, flatbuffer offsets and alignment."""
        return self.file_bytes - self.weight_bytes - self.other_constants - self.quantization - self.names

    @property
    def non_weight_bytes(self) -> int:
        return self.file_bytes - self.weight_bytes

    def to_json(self) -> dict:
        payload = asdict(self)
        for w, row in zip(self.weights, payload["weights"]):
            row["stored_bytes"] = w.stored_bytes
        payload.update(bytes_by_method={k: {"tensors": n, "bytes": b} for k, (n, b) in self.bytes_by_method().items()},
                       weight_bytes=self.weight_bytes, ideal_bytes=self.ideal_bytes, structure=self.structure,
                       non_weight_bytes=self.non_weight_bytes, ideal_with_constants=self.ideal_with_constants,
                       bytes_per_ideal=self.file_bytes / self.ideal_bytes,
                       bytes_per_ideal_with_constants=self.file_bytes / self.ideal_with_constants)
        return payload


def _data(tensor: EditorTensor) -> bytes:
    return bytes(tensor.buffer.data) if tensor is not None and tensor.buffer is not None and tensor.buffer.data else b""


def byte_breakdown(model: EditorModel, file_bytes: int) -> ByteBreakdown:
    """Break down a parsed model (`model.parse_tflite`) of `file_bytes` bytes."""
    result = ByteBreakdown(file_bytes)
    ops = weight_ops()
    counted: set[tuple[int, int]] = set()
    for s, subgraph in enumerate(model.subgraphs):
        decoded = {}  # DECODE output tensor index → (encoded tensor, ancillary tensor)
        for op in subgraph.operators:
            if op.opcode_name == DECODE_OP:
                for i, out in enumerate(op.outputs):
                    decoded[out.index] = (op.inputs[2 * i], op.inputs[2 * i + 1])
        weights = []
        for op in subgraph.operators:
            if op.opcode not in ops or len(op.inputs) <= WEIGHT_INPUT or op.inputs[WEIGHT_INPUT] is None:
                continue
            tensor = op.inputs[WEIGHT_INPUT]
            if (s, tensor.index) in counted or (not _data(tensor) and tensor.index not in decoded):
                continue
            counted.add((s, tensor.index))
            weights.append((tensor, decoded.get(tensor.index), op.opcode_name))
        names = [layer_name(t.name or "", t.index) for t, _, _ in weights]
        seen_ops: dict[str, int] = {}
        for (tensor, source, op_name), layer in zip(weights, names):
            seen_ops[op_name] = seen_ops.get(op_name, 0) + 1
            if not tensor.name:  # a stripped model: name the weight by its operator
                layer = f"{op_name} #{seen_ops[op_name]}"
            result.weights.append(_weight_bytes(layer, tensor, source))
            if source:
                counted |= {(s, source[0].index), (s, source[1].index)}
        for tensor in subgraph.tensors:
            result.names += len(tensor.name or "")
            quant = tensor.quantization
            if quant is not None and quant.scales is not None:
                result.quantization += (SCALE_BYTES * len(np.atleast_1d(quant.scales))
                                        + ZERO_POINT_BYTES * len(np.atleast_1d(quant.zero_points)))
            if (s, tensor.index) not in counted:
                result.other_constants += len(_data(tensor))
    return result


def _weight_bytes(layer: str, tensor: EditorTensor, source: EditorTensor | None) -> WeightBytes:
    shape = [int(d) for d in tensor.shape]
    weights = int(math.prod(shape))
    if source is None:
        raw = len(_data(tensor))
        bits = 8 * raw // max(weights, 1)
        return WeightBytes(layer, tensor.index, shape, weights, bits, False, raw, 0, 0, raw)
    encoded, ancillary = (_data(t) for t in source)
    method = DECODE_METHODS.get(ancillary[0], f"type {ancillary[0]}") if ancillary else "lut"
    tables = max(len(ancillary) - LUT_HEADER_BYTES, 0)
    if method == "lut":
        bits = ancillary[5] & 0x07 if len(ancillary) > 5 else 8
        ideal = math.ceil(weights * bits / 8) + tables
    else:
        bits = math.ceil(8 * len(encoded) / max(weights, 1))
        ideal = len(encoded) + tables
    return WeightBytes(layer, tensor.index, shape, weights, bits, True, len(encoded), tables,
                       len(ancillary) - tables, ideal, method)
