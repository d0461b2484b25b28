"""The one place that touches tflite-micro's private APIs.

tflite-micro's `model_editor` wraps each flatbuffer object and keeps the generated object API
table (`schema_py_generated.*T`) in a private `_fb` attribute; some fields TFLM ignores (signature
defs, shape signatures, metadata buffer lists, debug metadata indices) are reachable only there.
Its compress module aligns buffers with the private `_apply_flatbuffer_alignment`. Both are
pinned with tflite-micro's version in pyproject.toml; tests/test_tflm_private.py fails loudly if a
new version renames or removes them.
"""

from __future__ import annotations

from typing import Any

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
