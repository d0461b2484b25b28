"""Removing from a .tflite what the TFLM interpreter never reads at run time.

Tensor and subgraph names, signature defs, the model description, shape signatures,
quantization min/max and metadata entries TFLM does not look up are debugging or converter
bookkeeping; on a microcontroller they only cost flash. Two quantization savings are TFLM-specific:
- a per-channel zero-point array whose values are all equal (always so for int8 weights and
  biases, all 0) is reduced to its first value; TFLM's allocator broadcasts a shorter array
  ("as a space-saving optimization", micro_allocator.cc), saving 8 bytes per channel. tf.lite's
  interpreter rejects such a model, so a stripped model is for TFLM only.
- the LUT-encoded inputs of TFLM_DECODE operators keep the original tensor's quantization in
  tflite-micro 0.dev20261023182759 (its writer does not clear it), although they now hold packed
  uint8 indices; DECODE reads the value tables and its output tensor's quantization, never these.
What TFLM reads is kept: every buffer a tensor uses (including the encoded weights and
ancillary data of LUT-compressed tensors, which the TFLM_DECODE operators read), the operator
codes and options, and the metadata entries the runtime looks up by name (`OfflineMemoryAllocation`, and the older
`COMPRESSION_METADATA`). `min_runtime_version` and `CONVERSION_METADATA` are written by the
converter and never read by TFLM.

Tensors keep their order and indices (OfflineMemoryAllocation is indexed by tensor). The
result is re-aligned with tflite-micro's flatbuffer aligner, as `compression.compress` does:
TFLM expects buffers aligned to 16 bytes, which the Python flatbuffers builder ignores.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tinycomp.tflite.compress import verify_identical
from tinycomp.tflite.encoded import clear_encoded_quantization, clear_min_max, reduce_zero_points
from tinycomp.tflite.model import model_editor, parse_tflite
from tinycomp.tflite.private import apply_flatbuffer_alignment, raw

# Metadata the TFLM runtime looks up by name (micro_allocator.cc, micro_compression.h).
TFLM_METADATA = ("OfflineMemoryAllocation", "COMPRESSION_METADATA")


@dataclass
class StripResult:
    """The stripped flatbuffer and what was removed (item counts, by kind)."""

    data: bytes
    bytes_before: int
    bytes_after: int
    removed: dict[str, int]
    dropped_metadata: list[str] = field(default_factory=list)
    verified_samples: int = 0

    @property
    def bytes_saved(self) -> int:
        return self.bytes_before - self.bytes_after


def strip_model(model_bytes: bytes, source: str = "model") -> StripResult:
    """Strip `model_bytes` of everything TFLM does not read; the result is validated to parse."""
    editor = model_editor()
    model = parse_tflite(model_bytes, source)
    removed: dict[str, int] = {}

    def count(kind: str, n: int) -> None:
        if n:
            removed[kind] = removed.get(kind, 0) + n

    tensors = list(editor.iter_tensors(model))
    referenced = {id(t.buffer) for t in tensors if t.buffer is not None}
    metadata_buffers = {entry.buffer for entry in raw(model).metadata or []} | set(raw(model).metadataBuffer or [])
    count("unreferenced buffers", sum(1 for i, b in enumerate(model.buffers)
                                      if i and i not in metadata_buffers and id(b) not in referenced))

    count("tensor names", _clear(tensors, lambda t: t.name, lambda t: setattr(t, "name", None)))
    count("shape signatures", _clear(tensors, lambda t: raw(t).shapeSignature is not None,
                                     lambda t: setattr(raw(t), "shapeSignature", None)))
    count("quantization min/max", sum(clear_min_max(t) for t in tensors))
    count("quantization of LUT-encoded tensors", clear_encoded_quantization(model))
    count("repeated zero points", sum(reduce_zero_points(t) for t in tensors))
    count("empty tensor buffers", _clear(tensors, lambda t: t.buffer is not None and not t.buffer.data
                                         and not t.is_variable, lambda t: setattr(t, "buffer", None)))
    count("subgraph names", _clear(model.subgraphs, lambda s: s.name, lambda s: setattr(s, "name", None)))
    # A subgraph's debug metadata is a metadata entry, found by its index.
    _clear(model.subgraphs, lambda s: raw(s).debugMetadataIndex is not None and raw(s).debugMetadataIndex >= 0,
           lambda s: setattr(raw(s), "debugMetadataIndex", -1))
    count("signature defs", len(raw(model).signatureDefs or []))
    raw(model).signatureDefs = None
    count("description", 1 if model.description else 0)
    model.description = None

    dropped = [name for name in model.metadata if name not in TFLM_METADATA]
    for name in dropped:
        del model.metadata[name]
    count("metadata entries", len(dropped))
    raw(model).metadataBuffer = None  # deprecated list of metadata buffer indices; TFLM does not read it

    # Metadata values live in buffers no tensor references: prune them all, the writer re-adds the kept ones.
    editor.prune_buffers(model)

    stripped = bytes(align(bytes(model.build())))
    parse_tflite(stripped, "stripped model")
    return StripResult(stripped, len(model_bytes), len(stripped), removed, dropped)


def _clear(items: Any, present: Callable[[Any], bool], clear: Callable[[Any], None]) -> int:
    n = 0
    for item in items:
        if present(item):
            clear(item)
            n += 1
    return n


def align(model_bytes: bytes) -> bytes:
    """Re-pack through tflite-micro's C++ aligner (buffers aligned to 16 bytes, as TFLM expects).

    The same step `compression.compress` ends with; its helper is private, but the tflite-micro
    version is pinned.
    """
    return apply_flatbuffer_alignment(model_bytes)


def verify_stripped(original: bytes, stripped: bytes, samples: int = 32) -> int:
    """TFLM outputs of both models on the same random inputs must be identical."""

    return verify_identical(original, stripped, samples, what="stripped model",
                            hint="report this: stripping should not change outputs; use the unstripped model")
