"""Reading and validating .tflite flatbuffers with tflite-micro's own model reader.

The TFLM interpreter is C++ and trusts its input, so every .tflite is checked here first:
file identifier, a full parse by `model_editor.read`, index ranges and buffer sizes. Nothing
here imports TensorFlow.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from tinycomp.errors import InputFileError, ModelError
from tinycomp.fileio import HDF5_MAGIC, TFLITE_IDENTIFIER, read_bytes
from tinycomp.tflite.private import raw

if TYPE_CHECKING:  # tflite-micro ships no type information: these are Any to mypy, and names to readers
    from tflite_micro.tensorflow.lite.micro.compression.model_editor import Model as EditorModel
    from tflite_micro.tensorflow.lite.micro.compression.model_editor import Subgraph as EditorSubgraph
    from tflite_micro.tensorflow.lite.micro.compression.model_editor import Tensor as EditorTensor

DECODE_OP = "TFLM_DECODE"  # the custom operator tflite-micro's compression inserts
REMAKE_HINT = "re-create it with `tinycomp convert` or `tinycomp quantize`"


@dataclass
class TfliteFile:
    """A validated .tflite: its bytes, the parsed model and where it came from."""

    data: bytes
    model: Any  # tflite_micro model_editor.Model
    source: str


def model_editor() -> ModuleType:
    """tflite-micro's model reader/writer module (imported lazily: it is not small)."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor as editor

    return editor


def schema() -> ModuleType:
    """tflite-micro's generated flatbuffer schema module."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def read_tflite(path: str | Path) -> TfliteFile:
    """Read and validate a .tflite file."""
    data = read_bytes(path, ".tflite model")
    return TfliteFile(data, parse_tflite(data, str(path)), str(path))


def parse_tflite(data: bytes, source: str = "model") -> EditorModel:
    """Parse and validate flatbuffer bytes; raise InputFileError/ModelError on anything malformed."""
    _check_header(data, source)
    try:
        model = model_editor().read(bytes(data))
    except Exception as e:  # the generated reader raises whatever a bad offset leads to
        raise InputFileError(f"malformed .tflite flatbuffer: {_reason(e, len(data))}", source, REMAKE_HINT) from e
    _check_model(model, data, source)
    upgrade_opcodes(model)
    return model


def builtin_code(operator_code: Any) -> int:
    """An operator code's builtin operator: the larger of `builtin_code` and `deprecated_builtin_code`.

    Files from TensorFlow before 2.4 (e.g. public benchmarks' reference models) only set the
    deprecated int8 field; the newer int32 field then reads 0 (ADD). TensorFlow's own
    `GetBuiltinCode` takes the maximum of the two, and so does this.
    """
    fb = raw(operator_code)
    return max(int(fb.builtinCode or 0), int(fb.deprecatedBuiltinCode or 0))


def upgrade_opcodes(model: EditorModel) -> int:
    """Set every operator code's and operator's builtin code to `builtin_code` (what newer TensorFlow
    writes); returns how many operator codes changed.

    Needed before `model.build()`: model_editor keys operator codes by the plain builtin_code, so an
    old file's CONV_2D, FULLY_CONNECTED, ... would all collapse into one code (ADD).
    """
    changed = 0
    for code in model.operator_codes:
        fb = raw(code)
        real = builtin_code(code)
        if int(fb.builtinCode or 0) != real:
            fb.builtinCode = real
            changed += 1
    if changed:
        for subgraph in model.subgraphs:
            for op in subgraph.operators:
                op.opcode = model.operator_codes[op.opcode_index].builtin_code
    return changed


def upgraded_bytes(data: bytes, source: str = "model") -> bytes:
    """`data`, rebuilt with every builtin code set as newer TensorFlow writes it (unchanged when already so)."""
    model = model_editor().read(bytes(data))
    if not upgrade_opcodes(model):
        return data
    rebuilt = bytes(model.build())
    parse_tflite(rebuilt, source)
    return rebuilt


def _check_header(data: bytes, source: str) -> None:
    if data[:8] == HDF5_MAGIC:
        raise InputFileError("this is a Keras .h5 model, not a .tflite flatbuffer", source,
                             "convert it first: `tinycomp convert` or `tinycomp quantize`")
    if len(data) < 16 or data[4:8] != TFLITE_IDENTIFIER:
        raise InputFileError("not a .tflite flatbuffer (no TFL3 file identifier)", source, REMAKE_HINT)
    root = int.from_bytes(data[:4], "little")
    if root + 4 > len(data):
        raise InputFileError("truncated .tflite flatbuffer (root table past the end)", source, REMAKE_HINT)


def _check_model(model: EditorModel, data: bytes, source: str) -> None:
    fb = raw(model)
    if fb.version != 3:
        raise InputFileError(f"unsupported .tflite schema version {fb.version}", source, REMAKE_HINT)
    if not model.subgraphs:
        raise InputFileError("the .tflite model has no subgraphs", source, REMAKE_HINT)
    for buffer in fb.buffers or []:
        if getattr(buffer, "offset", 0) or getattr(buffer, "size", 0):
            raise InputFileError("the .tflite model keeps buffers outside the flatbuffer (over 2 GB)", source,
                                 "tinycomp handles models whose buffers are inside the file")
    for s, subgraph in enumerate(model.subgraphs):
        if not subgraph.inputs or not subgraph.outputs:
            raise InputFileError(f"subgraph {s} has no inputs or outputs", source, REMAKE_HINT)
        for tensor in subgraph.tensors:
            _check_tensor(tensor, s, source)
        for op in subgraph.operators:
            if op.opcode_index is None or not 0 <= op.opcode_index < len(model.operator_codes):
                raise InputFileError(f"operator {op.index} of subgraph {s} has an invalid opcode index",
                                     source, REMAKE_HINT)


def _check_tensor(tensor: EditorTensor, subgraph: int, source: str) -> None:
    where = f"{source}: subgraph {subgraph}, tensor {tensor.index}"
    shape = [int(d) for d in tensor.shape]
    if any(d < -1 for d in shape) or len(shape) > 8:
        raise InputFileError(f"tensor has an invalid shape {shape}", where, REMAKE_HINT)
    try:
        itemsize = np.dtype(tensor.numpy_dtype).itemsize
    except Exception as e:
        raise InputFileError(f"tensor has an unknown type {tensor.dtype}", where, REMAKE_HINT) from e
    if tensor.buffer is not None and tensor.buffer.data and tensor.dtype != schema().TensorType.STRING:
        expected = math.prod(max(d, 0) for d in shape) * itemsize
        if len(tensor.buffer.data) != expected:
            raise InputFileError(f"tensor data holds {len(tensor.buffer.data)} bytes but its shape "
                                 f"{shape} needs {expected}", where, REMAKE_HINT)


def _reason(e: Exception, size: int) -> str:
    """Why the reader failed, in words; an offset past the end is by far the most common case."""
    if isinstance(e, (struct.error, IndexError)):
        return f"an offset points outside its {size:,} bytes, so the file is truncated or corrupt"
    return f"{type(e).__name__}: {_short(e)}"


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return text[:120]


def require_subgraph(model: EditorModel, index: int, where: str) -> EditorSubgraph:
    """The subgraph at `index` or a ModelError saying how many there are."""
    if not 0 <= index < len(model.subgraphs):
        raise ModelError(f"subgraph {index} does not exist; the model has {len(model.subgraphs)}", where,
                         "is this spec for a different model? run `tinycomp find-tensors` on this model")
    return model.subgraphs[index]


def require_tensor(subgraph: EditorSubgraph, index: int, where: str) -> EditorTensor:
    """The tensor at `index` or a ModelError saying how many there are."""
    if not 0 <= index < len(subgraph.tensors):
        raise ModelError(f"tensor {index} does not exist; the subgraph has {len(subgraph.tensors)} tensors", where,
                         "is this spec for a different model? run `tinycomp find-tensors` on this model")
    return subgraph.tensors[index]
