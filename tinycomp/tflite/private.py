"""The one place that touches tflite-micro's private APIs.

tflite-micro's `model_editor` wraps each flatbuffer object and keeps the generated object API
table (`schema_py_generated.*T`) in a private `_fb` attribute; some fields TFLM ignores (signature
defs, shape signatures, metadata buffer lists, debug metadata indices) are reachable only there.
Its compress module aligns buffers with the private `_apply_flatbuffer_alignment`. Both are
pinned with tflite-micro's version in pyproject.toml; tests/test_tflm_private.py fails loudly if a
new version renames or removes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

PINNED_VERSION = "0.dev20261023182759"


def raw(wrapper: Any) -> Any:
    """The generated object-API table behind a model_editor Model, Subgraph or Tensor."""
    return wrapper._fb


def apply_flatbuffer_alignment(model_bytes: bytes) -> bytes:
    """`model_bytes` with buffers aligned the way tflite-micro's compressor writes them."""
    from tflite_micro.tensorflow.lite.micro.compression.compress import _apply_flatbuffer_alignment

    return bytes(_apply_flatbuffer_alignment(bytearray(model_bytes)))


def buffer_data_span(model_bytes: bytes, buffer_index: int) -> tuple[int, int]:
    """(offset, length) of buffer `buffer_index`'s data inside the flatbuffer bytes.

    Read with the generated schema's table accessor (`_tab`, flatbuffers' Table), so a tensor's
    values can be replaced in place by the same number of bytes without rebuilding the file.
    """
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    buffer = schema.Model.GetRootAs(model_bytes, 0).Buffers(buffer_index)
    table = buffer._tab
    field = table.Offset(4)  # Buffer.data
    if not field:
        return 0, 0
    return table.Vector(field), table.VectorLen(field)


@contextlib.contextmanager
def fast_buffer_packing() -> Iterator[None]:
    """While active, `model_editor`'s build writes each buffer's data with one copy, not one Python call per byte.

    Its compiler hands the generated `BufferT` a list of ints, which `BufferT.Pack` writes byte by byte
    (about a second per MB); given a uint8 array, the same generated Pack takes its numpy path,
    which writes the same bytes (tests check it). For the thread that builds: other threads building
    meanwhile would take the fast path too, with the same result.
    """
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    original = schema.BufferT.Pack

    def pack(self: Any, builder: Any) -> Any:
        if self.data is not None and not isinstance(self.data, np.ndarray):
            self.data = np.frombuffer(bytes(self.data), dtype=np.uint8)
        return original(self, builder)

    schema.BufferT.Pack = pack
    try:
        yield
    finally:
        schema.BufferT.Pack = original


def packed_indices(indices: np.ndarray, bitwidth: int) -> bytes:
    """`lut.pack_indices` in numpy: each index in `bitwidth` bits, most significant first, zero-padded to
    whole bytes (the same bytes; tests check it)."""
    flat = np.asarray(indices).ravel().astype(np.int64)
    if flat.size == 0:
        return b""
    bits = (flat[:, None] >> np.arange(bitwidth - 1, -1, -1)) & 1
    return np.packbits(bits.astype(np.uint8).ravel()).tobytes()


@contextlib.contextmanager
def fast_index_packing() -> Iterator[None]:
    """While active, tflite-micro's LUT compressor packs indices with numpy (`packed_indices`), not one
    Python string format per weight (about a second per 100,000 weights)."""
    from tflite_micro.tensorflow.lite.micro.compression import lut

    original = lut.pack_indices
    lut.pack_indices = packed_indices
    try:
        yield
    finally:
        lut.pack_indices = original


def replace_buffers(data: bytes, values: dict[int, bytes], source: str = "model") -> bytes:
    """`data` with the buffers `values` names ({buffer index: bytes}) overwritten in place: the same sizes
    at the same places, no rebuild (model_editor's Python rebuild takes about a second per file)."""
    from tinycomp.errors import ModelError

    out = bytearray(data)
    for index, new in values.items():
        start, length = buffer_data_span(data, index)
        if length != len(new):
            raise ModelError(f"buffer {index} holds {length} bytes, not {len(new)}", source)
        out[start:start + length] = new
    return bytes(out)
