"""The stale quantization tflite-micro leaves on LUT-encoded tensors, and its removal.

tflite-micro 0.dev20261023182759's compressor rewrites each compressed tensor into packed uint8
indices and sets its wrapper's quantization to None, but `model_editor`'s writer only copies a
quantization that is set and keeps the one read from the file otherwise: the encoded tensor keeps
the original's scales, zero points and min/max. The TFLM_DECODE operator reads only the value
tables (the ancillary tensor) and its output tensor's quantization, which is a copy of the same
parameters, so the stale copy only costs flash: 12–20 bytes per output channel per compressed
tensor (1,280 bytes for a 64-channel kernel with min/max). `compress` removes it, and checks as
always that the TFLM outputs are unchanged. Nothing here imports TensorFlow.
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


def without_encoded_quantization(model_bytes: bytes) -> bytes:
    """`model_bytes` (a LUT-compressed model) without the stale quantization of its encoded tensors.

    Unchanged when no encoded tensor has one; otherwise rebuilt and re-aligned as tflite-micro's
    compressor writes files.
    """
    editor = model_editor()
    model = editor.read(bytes(model_bytes))
    if not clear_encoded_quantization(model):
        return bytes(model_bytes)
    # Metadata values live in buffers no tensor references: the writer re-adds them, so prune the old ones.
    editor.prune_buffers(model)
    return apply_flatbuffer_alignment(bytes(model.build()))
