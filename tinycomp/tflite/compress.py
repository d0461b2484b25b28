"""Compression of a .tflite with tflite_micro.compression, checked before and verified after.

LUT entries are encoded by tflite-micro; HUFFMAN and PRUNE entries by tinycomp's encoders
(tinycomp.tflite.encoders), which tflite-micro's compressor calls while they are installed.
Before compressing, every spec entry is checked against the model (subgraph and tensor exist,
the tensor is a constant that may be replaced by a DECODE output, its values fit the index
bitwidth in the chosen layout, its type is one TFLM's decoder writes) so the user gets one
precise error instead of a failure deep inside the compressor. Specs in the tutorial's older form get their layout from the tensor's
quantization. Verification runs both models in TFLM on the same random inputs and requires
identical outputs. With a decode budget, large kernels are sliced first (tinycomp.tflite.slicing):
into the fewest slices that fit (`compress_model`, what `plan` measures), or into the count whose
TFLM arena, measured, is smallest for its flash (`compress_choosing_slices`, `compress
--decode-budget`). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tinycomp import tflm
from tinycomp.errors import CompressionFailed, InterpreterError, ModelError
from tinycomp.specs import CompressionSpec, PerChannel, PerTensor, TensorCompression
from tinycomp.tflite.decode_merge import MergeResult, decode_count, merge_decodes
from tinycomp.tflite.encoded import without_encoded_quantization
from tinycomp.tflite.encoders import check_decodable, huffman_of, prune_of
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
    method: str = "lut"


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
    slice_counts: list[SliceCountChoice] = field(default_factory=list)  # from compress_choosing_slices
    decode_merge: MergeResult | None = None  # from with_merged_decodes


@dataclass
class CountTrial:
    """One slice count of a kernel, measured: the compressed file's TFLM arena and size."""

    slices: int
    arena_bytes: int
    flash_bytes: int


@dataclass
class SliceCountChoice:
    """How many slices a kernel got, and the counts measured to choose it (fewest first)."""

    subgraph: int
    tensor: int
    name: str
    trials: list[CountTrial]
    chosen: int

    @property
    def fewest(self) -> int:
        return self.trials[0].slices


def where(source: str, i: int, suffix: str = "") -> str:
    return f"{source}: tensors[{i}]{suffix}"


def resolve_layouts(spec: CompressionSpec, model: EditorModel) -> CompressionSpec:
    """Give entries without a layout (the tutorial's form) one from the tensor's quantization.

    A per-channel quantized tensor gets per_channel on its quantized dimension, as its values
    repeat per channel, not across the tensor; anything else gets per_tensor.
    """
    resolved = [t if t.layout is not None or t.method != "lut" else
                replace(t, layout=quantization_layout(model.subgraphs[t.subgraph].tensors[t.tensor]))
                for t in spec.tensors]
    return replace(spec, tensors=tuple(resolved))


def check_spec(spec: CompressionSpec, model: EditorModel, source: str) -> None:
    """Raise a precise error for the first spec entry that cannot compress on this model."""
    for i, entry in enumerate(spec.tensors):
        subgraph = require_subgraph(model, entry.subgraph, where(source, i, ".subgraph"))
        tensor = require_tensor(subgraph, entry.tensor, where(source, i, ".tensor"))
        _check_constant(subgraph, tensor, where(source, i, ".tensor"))
        if entry.method != "lut":
            reason = check_decodable(entry.method, tensor)
            if reason is not None:
                raise ModelError(f"tensor {tensor.index} ({tensor.name}): {reason}",
                                 where(source, i, f".compression[0].{entry.method}"),
                                 "use lut or leave the tensor out" if entry.method == "huffman"
                                 else "use lut or huffman, or leave the tensor out")
        elif entry.layout is not None:
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
                   spec_source: str = "spec", decode_budget: int | None = None,
                   slice_counts: dict[tuple[int, int], int] | None = None) -> CompressResult:
    """Compress `model_bytes` as `spec` says (no tensors: unchanged); the returned bytes are validated to parse.

    With `decode_budget`, every compressed kernel whose decoded bytes exceed it is first sliced
    along its output channels (tinycomp.tflite.slicing), into the fewest slices that fit or
    `slice_counts[(subgraph, tensor)]` (spec indices), and each slice is compressed like the
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
    sliced = slice_model(model_bytes, [(t.subgraph, t.tensor) for t in spec.tensors], decode_budget, source,
                         slice_counts)
    result.slicing = sliced
    if sliced.sliced:
        result.unsliced_bytes = len(compressed)
        result.data = _compress(sliced.data, sliced_spec(spec, sliced), spec_source, huffman_bases(model, spec, sliced))
        parse_tflite(result.data, "compressed model")
        result.slicing_cost = len(result.data) - len(compressed)
    return result


def compress_choosing_slices(model_bytes: bytes, spec: CompressionSpec, decode_budget: int, source: str = "model",
                             spec_source: str = "spec", workers: int = 2, patience: int = 2) -> CompressResult:
    """`compress_model` with `decode_budget`, each sliced kernel cut into the slice count chosen by
    the TFLM arena of the compressed file, measured (interpreter set-up in worker processes).

    Every extra slice costs TFLM bookkeeping RAM (its tensors, operators and their state) and
    flash, and saves arena only while the decoded slice is what makes the arena's peak. So, per
    kernel (largest first, the others at their counts so far), counts are measured upward from
    the fewest that fit: a count replaces the best so far when its arena is smaller by at least
    as many bytes as its file is larger (a byte of RAM is worth at least a byte of flash); the
    search stops after `patience` counts in a row that do not. The result's `slice_counts`
    record what was measured.
    """
    fewest = compress_model(model_bytes, spec, source, spec_source, decode_budget)  # errors surface here, not in a worker
    if fewest.slicing is None or not fewest.slicing.sliced:
        return fewest
    search = _SliceCountSearch(model_bytes, spec, decode_budget, source, spec_source, max(1, workers), patience, fewest)
    tflm.run_scheduled(_compressed_with_arena, search.ready, max(1, workers), search.record,
                       source="the sliced and compressed model")
    return search.result()


def with_merged_decodes(result: CompressResult, workers: int = 2) -> CompressResult:
    """`result` with its HUFFMAN and PRUNE DECODE operators merged where the TFLM arena, measured in
    worker processes, gets smaller (tinycomp.tflite.decode_merge); `decode_merge` says what changed."""
    def arenas(files: list[bytes]) -> list[int]:
        return tflm.arenas(files, workers, "the compressed model")

    if decode_count(result.data) < 2:  # nothing to merge (LUT files are left as tflite-micro writes them)
        return result
    merge = merge_decodes(result.data, arenas)
    result.decode_merge = merge
    if merge.merged:
        result.data = merge.data
        parse_tflite(result.data, "compressed model")
    return result


def _compressed_with_arena(model_bytes: bytes, spec: CompressionSpec, decode_budget: int,
                           counts: dict[tuple[int, int], int] | None, source: str, spec_source: str,
                           done: CompressResult | None = None) -> tuple[CompressResult, int | None]:
    """In a worker process: the compressed file with these slice counts (or `done`), and its TFLM arena."""
    result = done or compress_model(model_bytes, spec, source, spec_source, decode_budget, counts)
    return result, tflm.arena_of(result.data)


class _SliceCountSearch:
    """The state of `compress_choosing_slices`: what to measure next, and what was measured.

    Tasks are keyed by (kernel, count); counts are released `workers` ahead of the results they
    wait for and taken in count order, so the choice does not depend on which finishes first.
    """

    def __init__(self, model_bytes: bytes, spec: CompressionSpec, budget: int, source: str, spec_source: str,
                 workers: int, patience: int, fewest: CompressResult) -> None:
        self.args = (model_bytes, spec, budget)
        self.sources = (source, spec_source)
        self.workers, self.patience = workers, patience
        self.best: tuple[CompressResult, int] | None = None  # the chosen file so far, its arena
        self.counts: dict[tuple[int, int], int] = {}
        self.kernels: list[Any] = []  # SlicedTensor, largest first, still to search
        self.channels = 0
        self.choices: list[SliceCountChoice] = []
        self.trials: list[CountTrial] = []
        self.measured: dict[int, tuple[CompressResult, int]] = {}
        self.next_release = self.next_take = 0
        self.misses, self.started, self.fewest = 0, False, fewest

    def _task(self, counts: dict[tuple[int, int], int] | None) -> tuple:
        return (*self.args, counts, *self.sources)

    def ready(self) -> list[tuple[Any, tuple]]:
        if not self.started:
            self.started = True
            return [(None, (*self._task(None), self.fewest))]
        tasks = []
        while self.kernels and self._searching() and self.next_release - self.next_take < self.workers:
            count = self.next_release
            self.next_release += 1
            key = (self.kernels[0].subgraph, self.kernels[0].tensor)
            tasks.append(((key, count), self._task({**self.counts, key: count})))
        return tasks

    def _searching(self) -> bool:
        return self.misses < self.patience and self.next_release <= self.channels

    def record(self, key: Any, value: tuple[CompressResult, int | None]) -> None:
        result, arena = value
        if arena is None:
            raise InterpreterError("TFLM did not report its arena size", "the sliced and compressed model")
        if key is None:
            self.best = (result, arena)
            if result.slicing is not None:
                self.counts = {(s.subgraph, s.tensor): len(s.channels) for s in result.slicing.sliced}
                self.kernels = sorted(result.slicing.sliced, key=lambda s: -s.decoded_bytes)
                self._start_kernel()
            return
        if not self.kernels or key[0] != (self.kernels[0].subgraph, self.kernels[0].tensor):
            return  # measured ahead of a search that has stopped
        self.measured[key[1]] = (result, arena)
        while self.next_take in self.measured and self.misses < self.patience:
            self._take(*self.measured.pop(self.next_take))
        if self.misses >= self.patience or self.next_take > self.channels:
            self._finish_kernel()

    def _start_kernel(self) -> None:
        """Search the next kernel's counts; a kernel already at one channel per slice has nothing to search."""
        while self.kernels:
            kernel = self.kernels[0]
            assert self.best is not None
            self.channels = sum(kernel.channels)
            self.next_release = self.next_take = len(kernel.channels) + 1
            self.misses, self.measured = 0, {}
            self.trials = [CountTrial(len(kernel.channels), self.best[1], len(self.best[0].data))]
            if self.next_take <= self.channels:
                return
            self._finish_kernel(start_next=False)

    def _take(self, result: CompressResult, arena: int) -> None:
        assert self.best is not None
        best, best_arena = self.best
        self.trials.append(CountTrial(self.next_take, arena, len(result.data)))
        if arena < best_arena and best_arena - arena >= len(result.data) - len(best.data):
            self.best, self.misses = (result, arena), 0
        else:
            self.misses += 1
        self.next_take += 1

    def _finish_kernel(self, start_next: bool = True) -> None:
        kernel = self.kernels.pop(0)
        assert self.best is not None and self.best[0].slicing is not None
        key = (kernel.subgraph, kernel.tensor)
        chosen = self.best[0].slicing.slices_of(*key)
        assert chosen is not None
        self.counts[key] = len(chosen.channels)
        self.choices.append(SliceCountChoice(kernel.subgraph, kernel.tensor, kernel.name, self.trials,
                                             len(chosen.channels)))
        if start_next:
            self._start_kernel()

    def result(self) -> CompressResult:
        assert self.best is not None
        result = self.best[0]
        result.slice_counts = self.choices
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


def huffman_bases(model: EditorModel, spec: CompressionSpec, sliced: SliceResult) -> dict[tuple[int, int], Any]:
    """(subgraph, slice index in the sliced model) → the whole kernel's values, for every slice of a
    Huffman-coded kernel: its slices are coded with the kernel's code, so their ancillary data are the
    same bytes and one tensor holds them (tinycomp.tflite.encoded.share_ancillary_tensors)."""
    bases = {}
    for entry in spec.tensors:
        slices = sliced.slices_of(entry.subgraph, entry.tensor)
        if entry.method == "huffman" and slices is not None:
            kernel = model.subgraphs[entry.subgraph].tensors[entry.tensor].array
            bases.update({(entry.subgraph, t): kernel for t in slices.tensors})
    return bases


def _compress(model_bytes: bytes, spec: CompressionSpec, spec_source: str,
              bases: dict[tuple[int, int], Any] | None = None) -> bytes:
    from tflite_micro import compression

    from tinycomp.tflite.encoders import HUFFMAN_BASIS
    from tinycomp.tflite.private import installed_encoders

    entries = spec.to_tflm()
    for entry in entries:  # the plugin reads a Huffman entry's basis from its method object
        if (entry.subgraph, entry.tensor) in (bases or {}):
            setattr(entry.compression[0], HUFFMAN_BASIS, (bases or {})[(entry.subgraph, entry.tensor)])
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), installed_encoders():
            warnings.simplefilter("ignore")
            compressed = bytes(compression.compress(model_bytes, entries))
    except Exception as e:
        raise CompressionFailed(f"tflite-micro could not compress the model: {e}", spec_source) from e
    return without_encoded_quantization(compressed)


def _tensor_report(model: EditorModel, entry: TensorCompression) -> TensorReport:

    tensor = model.subgraphs[entry.subgraph].tensors[entry.tensor]
    if entry.method != "lut":
        encoding = huffman_of(tensor) if entry.method == "huffman" else prune_of(tensor)
        return TensorReport(entry.subgraph, entry.tensor, tensor.name or "", entry.method, 0,
                            len(tensor.buffer.data), encoding.size, entry.method)
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
                     what: str = "compressed model", hint: str = "report this: compression should be lossless") -> int:
    """Run both models in TFLM on the same random inputs; raise unless every output is identical."""
    inputs = random_inputs(original, samples, seed)
    expected, actual = tflm.run_parallel(tflm.run_raw_outputs, [(original, inputs), (compressed, inputs)],
                                         workers=2, source="verification")
    for i, (a, b) in enumerate(zip(expected, actual)):
        if a.shape != b.shape or not np.array_equal(a, b):
            raise CompressionFailed(f"{what} output differs from the original on random input {i}",
                                    "verification", hint)
    return samples
