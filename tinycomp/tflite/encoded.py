"""The stale quantization tflite-micro leaves on LUT-encoded tensors, and its removal.

tflite-micro 0.dev20261023182759's compressor rewrites each compressed tensor into packed uint8
indices and sets its wrapper's quantization to None, but `model_editor`'s writer only copies a
quantization that is set and keeps the one read from the file otherwise: the encoded tensor keeps
the original's scales, zero points and min/max. The TFLM_DECODE operator reads only the value
tables (the ancillary tensor) and its output tensor's quantization, which is a copy of the same
parameters, so the stale copy only costs flash: 12–20 bytes per output channel per compressed
tensor (1,280 bytes for a 64-channel kernel with min/max). `compress` removes it, and checks as
always that the TFLM outputs are unchanged.

Files with HUFFMAN or PRUNE tensors (tinycomp's own encoders; LUT files are left as tflite-micro
writes them) are tidied further, each time only in what TFLM reads the same way:
- the decoded copy of such a tensor keeps its scales and quantized dimension but not its min/max
  (never read) and, when its zero points are all equal (int8 weights: all 0), only the first, which
  TFLM's allocator broadcasts to every channel: 16 bytes per output channel (about 4 KB for a
  256-channel kernel);
- DECODE operators whose ancillary data are the same bytes (slices of one kernel Huffman-coded
  with the kernel's code, `tinycomp.tflite.huffman.encode(basis=...)`) read one ancillary tensor:
  one tensor less per slice, in the file and in TFLM's arena (a TfLiteEvalTensor each).
Nothing here imports TensorFlow.
"""

from __future__ import annotations

from typing import Any

from tinycomp.tflite.model import DECODE_OP, model_editor
from tinycomp.tflite.private import apply_flatbuffer_alignment, raw


def clear_encoded_quantization(model: Any) -> int:
    """Drop the quantization of the constant tensors only TFLM_DECODE operators read; how many had one."""
    n = 0
    for subgraph in model.subgraphs:
        consumers: dict[int, set[str]] = {}
        for op in subgraph.operators:
            for t in op.inputs:
                if t is not None:
                    consumers.setdefault(id(t), set()).add(op.opcode_name)
        for t in subgraph.tensors:
            if consumers.get(id(t)) == {DECODE_OP} and t.buffer is not None and has_quantization(t):
                t.quantization = None
                raw(t).quantization = None
                n += 1
    return n


def has_quantization(tensor: Any) -> bool:
    return tensor.quantization is not None or raw(tensor).quantization is not None


OWN_DECODERS = (1, 2)  # byte 0 of the ancillary data: HUFFMAN, PRUNE (0 is LUT)


def own_decodes(subgraph: Any) -> list[Any]:
    """The DECODE operators of `subgraph` whose every ancillary tensor is HUFFMAN or PRUNE data."""
    found = []
    for op in subgraph.operators:
        if op.opcode_name != DECODE_OP:
            continue
        ancillaries = op.inputs[1::2]
        if ancillaries and all(a is not None and a.buffer is not None and a.buffer.data
                               and a.buffer.data[0] in OWN_DECODERS for a in ancillaries):
            found.append(op)
    return found


def trim_decoded_quantization(model: Any) -> int:
    """Drop min/max and repeated zero points from the outputs of HUFFMAN and PRUNE DECODE operators;
    how many tensors changed."""
    n = 0
    for subgraph in model.subgraphs:
        for op in own_decodes(subgraph):
            for t in op.outputs:
                n += int(bool(clear_min_max(t) | reduce_zero_points(t)))
    return n


def share_ancillary_tensors(model: Any) -> int:
    """Let HUFFMAN and PRUNE DECODE operators whose ancillary data are equal read one tensor; how many
    tensors that removes. A model with offline memory allocations (indexed by tensor) is left alone."""
    if "OfflineMemoryAllocation" in model.metadata:
        return 0
    removed = 0
    for subgraph in model.subgraphs:
        first: dict[tuple, Any] = {}
        gone: list[Any] = []
        for op in own_decodes(subgraph):
            for k in range(1, len(op.inputs), 2):
                tensor = op.inputs[k]
                key = (bytes(tensor.buffer.data), tensor.dtype, tuple(tensor.shape))
                kept = first.setdefault(key, tensor)
                if kept is not tensor:
                    op.inputs[k] = kept
                    gone.append(tensor)
        for tensor in gone:
            if not any(t is tensor for o in subgraph.operators for t in o.inputs):
                subgraph.tensors[:] = [t for t in subgraph.tensors if t is not tensor]
                removed += 1
    return removed


def clear_min_max(tensor: Any) -> bool:
    """Remove the tensor's quantization min/max (TFLM never reads them); whether it had any."""
    q = raw(tensor).quantization
    if q is None or (_length(q.min) == 0 and _length(q.max) == 0):
        return False
    q.min = q.max = None
    return True


def reduce_zero_points(tensor: Any) -> bool:
    """Keep one of the tensor's zero points when all are equal (TFLM broadcasts it); whether it changed."""
    q = tensor.quantization
    zero_points = None if q is None or isinstance(q.zero_points, int) else list(q.zero_points)
    if not zero_points or len(zero_points) < 2 or len(set(zero_points)) != 1:
        return False
    q.zero_points = zero_points[:1]
    return True


def _length(values: Any) -> int:
    return 0 if values is None else len(values)


def without_encoded_quantization(model_bytes: bytes) -> bytes:
    """`model_bytes` (a compressed model) without the stale quantization of its encoded tensors and,
    where HUFFMAN or PRUNE decode, with the tidying described above.

    Unchanged when there is nothing to remove; otherwise rebuilt and re-aligned as tflite-micro's
    compressor writes files.
    """
    editor = model_editor()
    model = editor.read(bytes(model_bytes))
    changed = clear_encoded_quantization(model)
    changed += trim_decoded_quantization(model) + share_ancillary_tensors(model)
    if not changed:
        return bytes(model_bytes)
    # Metadata values live in buffers no tensor references: the writer re-adds them, so prune the old ones.
    editor.prune_buffers(model)
    return apply_flatbuffer_alignment(bytes(model.build()))
