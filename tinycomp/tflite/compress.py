"""LUT compression of a .tflite with tflite_micro.compression, checked before and verified after.

Before compressing, every spec entry is checked against the model (subgraph and tensor exist,
the tensor is a constant that may be replaced by a DECODE output, its values fit the index
bitwidth in the chosen layout) so the user gets one precise error instead of a failure deep
inside the compressor. Specs in the tutorial's older form get their layout from the tensor's
quantization. Verification runs both models in TFLM on the same random inputs and requires
identical outputs. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from tinycomp import tflm
from tinycomp.errors import CompressionFailed, ModelError
from tinycomp.specs import CompressionSpec, PerChannel, PerTensor, TensorCompression
from tinycomp.tflite.encoded import without_encoded_quantization
from tinycomp.tflite.find_tensors import bits_for, encoded_size, max_unique_along, quantization_layout
from tinycomp.tflite.model import parse_tflite, require_subgraph, require_tensor, upgraded_bytes
from tinycomp.tflite.slicing import SliceResult, slice_model

if TYPE_CHECKING:
    from tinycomp.tflite.model import EditorModel, EditorSubgraph, EditorTensor


@dataclass
class TensorReport:
    """Bytes of one tensor before and after compression."""

    subgraph: int
    tensor: int
    name: str
    layout: str
    index_bitwidth: int
    bytes_before: int
    bytes_after: int


@dataclass
class CompressResult:
    """The compressed flatbuffer and what changed."""

    data: bytes
    tensors: list[TensorReport]
    bytes_before: int
    verified_samples: int = 0
    slicing: SliceResult | None = None  # with a decode budget: what was sliced (see tinycomp.tflite.slicing)
    unsliced_bytes: int | None = None  # with slices: the same compression without slicing
    slicing_cost: int | None = None  # with slices: the flash bytes they cost (sliced − unsliced compressed file)


def where(source: str, i: int, suffix: str = "") -> str:
    return f"{source}: tensors[{i}]{suffix}"


def resolve_layouts(spec: CompressionSpec, model: EditorModel) -> CompressionSpec:
    """Give entries without a layout (the tutorial's form) one from the tensor's quantization.

    A per-channel quantized tensor gets per_channel on its quantized dimension, as its values
    repeat per channel, not across the tensor; anything else gets per_tensor.
    """
    resolved = [t if t.layout is not None else
                replace(t, layout=quantization_layout(model.subgraphs[t.subgraph].tensors[t.tensor]))
                for t in spec.tensors]
    return replace(spec, tensors=tuple(resolved))


def check_spec(spec: CompressionSpec, model: EditorModel, source: str) -> None:
    """Raise a precise error for the first spec entry that cannot compress on this model."""
    for i, entry in enumerate(spec.tensors):
        subgraph = require_subgraph(model, entry.subgraph, where(source, i, ".subgraph"))
        tensor = require_tensor(subgraph, entry.tensor, where(source, i, ".tensor"))
        _check_constant(subgraph, tensor, where(source, i, ".tensor"))
        if entry.layout is not None:
            _check_fits(tensor, entry, where(source, i, ".compression[0].lut"))


def _check_constant(subgraph: EditorSubgraph, tensor: EditorTensor, at: str) -> None:
    from tflite_micro.tensorflow.lite.micro.compression import constant_inputs

    if tensor.buffer is None or not tensor.buffer.data:
        raise ModelError(f"tensor {tensor.index} ({tensor.name}) is not a constant: the model computes it at run time",
                         at, "compress weight tensors; `tinycomp find-tensors` lists them")
    uses = constant_inputs.find_uses(subgraph, tensor)
    if uses:
        raise ModelError(f"tensor {tensor.index} ({tensor.name}) must stay constant: {uses[0].describe()}", at,
                         "compress only filter/weight inputs of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED")


def _check_fits(tensor: EditorTensor, entry: TensorCompression, at: str) -> None:
    array = tensor.array
    expected = quantization_layout(tensor)
    if entry.layout != expected:
        raise ModelError(f"a {_layout_name(entry.layout)} value table on tensor {tensor.index} ({tensor.name}), which is "
                         f"quantized {_layout_name(expected)}, decodes to wrong outputs in TFLM", at,
                         f"use {_layout_yaml(expected)}, as `tinycomp find-tensors` writes")
    if isinstance(entry.layout, PerChannel):
        axis = entry.layout.axis
        if array.ndim == 0 or axis not in (0, array.ndim - 1):
            raise ModelError(f"per_channel axis {axis} is not allowed for a tensor of shape {list(array.shape)}",
                             at + ".per_channel.axis", f"use axis 0 or {max(array.ndim - 1, 0)}")
        unique, what = max_unique_along(array, axis), f"up to {max_unique_along(array, axis)} unique values per channel"
    else:
        unique = len(np.unique(array))
        what = f"{unique} unique values"
    if bits_for(unique) > entry.index_bitwidth:
        raise ModelError(f"tensor {tensor.index} ({tensor.name}) has {what}; index_bitwidth "
                         f"{entry.index_bitwidth} holds {2 ** entry.index_bitwidth}", at + ".index_bitwidth",
                         f"use index_bitwidth {bits_for(unique)}" + (" or per_channel" if isinstance(entry.layout, PerTensor) else "")
                         if bits_for(unique) <= 7 else "cluster this layer first")


def _layout_name(layout: PerTensor | PerChannel | None) -> str:
    return f"per-channel (axis {layout.axis})" if isinstance(layout, PerChannel) else "per-tensor"


def _layout_yaml(layout: PerTensor | PerChannel | None) -> str:
    return f"`per_channel: {{axis: {layout.axis}}}`" if isinstance(layout, PerChannel) else "`per_tensor:`"


def compress_model(model_bytes: bytes, spec: CompressionSpec, source: str = "model",
                   spec_source: str = "spec", decode_budget: int | None = None) -> CompressResult:
    """Compress `model_bytes` as `spec` says (no tensors: unchanged); the returned bytes are validated to parse.

    With `decode_budget`, every compressed kernel whose decoded bytes exceed it is first sliced
    along its output channels (tinycomp.tflite.slicing), and each slice is compressed like the
    kernel; without it the bytes are those tflite-micro writes for `spec`, unchanged.
    """
    model = parse_tflite(model_bytes, source)
    check_spec(spec, model, spec_source)
    spec = resolve_layouts(spec, model)
    check_spec(spec, model, spec_source)
    reports = [_tensor_report(model, entry) for entry in spec.tensors]
    if not spec.tensors:  # a plan that clusters nothing: the model as it is
        return CompressResult(bytes(model_bytes), reports, len(model_bytes))
    size = len(model_bytes)
    # an old file's operator codes are upgraded first: tflite-micro's rebuild keys them by builtin_code
    model_bytes = upgraded_bytes(model_bytes, source)
    compressed = _compress(model_bytes, spec, spec_source)
    parse_tflite(compressed, "compressed model")
    result = CompressResult(compressed, reports, size)
    if decode_budget is None:
        return result
    sliced = slice_model(model_bytes, [(t.subgraph, t.tensor) for t in spec.tensors], decode_budget, source)
    result.slicing = sliced
    if sliced.sliced:
        result.unsliced_bytes = len(compressed)
        result.data = _compress(sliced.data, sliced_spec(spec, sliced), spec_source)
        parse_tflite(result.data, "compressed model")
        result.slicing_cost = len(result.data) - len(compressed)
    return result


def sliced_spec(spec: CompressionSpec, sliced: SliceResult) -> CompressionSpec:
    """`spec` for the sliced model: each sliced kernel's entry once per slice, other indices moved."""
    entries = []
    for entry in spec.tensors:
        slices = sliced.slices_of(entry.subgraph, entry.tensor)
        if slices is None:
            entries.append(replace(entry, tensor=sliced.index_map[(entry.subgraph, entry.tensor)]))
        else:
            entries += [replace(entry, tensor=t) for t in slices.tensors]
    return replace(spec, tensors=tuple(entries))


def _compress(model_bytes: bytes, spec: CompressionSpec, spec_source: str) -> bytes:
    from tflite_micro import compression

    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            compressed = bytes(compression.compress(model_bytes, spec.to_tflm()))
    except Exception as e:
        raise CompressionFailed(f"tflite-micro could not compress the model: {e}", spec_source) from e
    return without_encoded_quantization(compressed)


def _tensor_report(model: EditorModel, entry: TensorCompression) -> TensorReport:

    tensor = model.subgraphs[entry.subgraph].tensors[entry.tensor]
    assert entry.layout is not None, "resolve_layouts runs before compression"
    layout = "per_tensor" if isinstance(entry.layout, PerTensor) else f"per_channel (axis {entry.layout.axis})"
    return TensorReport(entry.subgraph, entry.tensor, tensor.name or "", layout, entry.index_bitwidth,
                        len(tensor.buffer.data), encoded_size(tensor, entry.layout, entry.index_bitwidth))


def random_inputs(model_bytes: bytes, count: int, seed: int = 0) -> np.ndarray:
    """`count` random inputs over the full range of the model's input type."""
    details = tflm.run_isolated(tflm.input_details, model_bytes)
    shape, dtype = tuple(details["shape"]), np.dtype(details["dtype"])
    rng = np.random.default_rng(seed)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=(count, *shape), endpoint=True, dtype=dtype)
    return rng.uniform(0.0, 1.0, size=(count, *shape)).astype(dtype)


def verify_identical(original: bytes, compressed: bytes, samples: int = 32, seed: int = 0,
                     what: str = "compressed model", hint: str = "report this: LUT compression should be lossless") -> int:
    """Run both models in TFLM on the same random inputs; raise unless every output is identical."""
    inputs = random_inputs(original, samples, seed)
    expected, actual = tflm.run_parallel(tflm.run_raw_outputs, [(original, inputs), (compressed, inputs)],
                                         workers=2, source="verification")
    for i, (a, b) in enumerate(zip(expected, actual)):
        if a.shape != b.shape or not np.array_equal(a, b):
            raise CompressionFailed(f"{what} output differs from the original on random input {i}",
                                    "verification", hint)
    return samples
