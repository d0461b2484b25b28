"""The smallest exact encoding of every weight tensor: LUT, HUFFMAN, PRUNE or none, measured in the file.

TFLM decodes three formats (tinycomp.tflite.encoders): a LUT of the tensor's existing values
(per channel as it is quantized, at most 128 values per table), Huffman codes, and a bitmask
with the values that are not the zero point. Each is exact, so no data and no accuracy question
are involved. Candidates are the constant weight inputs of CONV_2D, DEPTHWISE_CONV_2D,
FULLY_CONNECTED and TRANSPOSE_CONV (the inputs tflite-micro's DECODE insertion is known to serve;
shape and parameter inputs must stay constant).

Every encoding also adds a TFLM_DECODE operator, an ancillary tensor and a decoded copy of the
tensor (names and quantization included), so the choice is made on the written file, not on the
encoded bytes: each method whose encoded bytes are fewer than the tensor's is applied to that
tensor alone and the file measured against the same file rebuilt with nothing compressed (with
`strip`, both as `strip` writes them), as `file_growth` does for LUT. The method that saves the
most is chosen; none when none saves. Per-tensor savings add up (each tensor's DECODE is its own),
which `choose` relies on; the caller measures the whole file.

With a decode budget (`compress --decode-budget`) each trial is measured on the sliced file, the
kernels over the budget cut into the slice count chosen by measured arena
(`tinycomp.tflite.compress.compress_choosing_slices`), and on its TFLM arena as well: every
decoded tensor and DECODE operator costs arena, and slices cost flash that differs by method (a
Huffman-coded kernel's slices share one code and one table; PRUNE slices each keep their values).
A method then saves what it takes off flash and arena together (a byte of RAM is worth at least
a byte of flash, the rule the slice count is chosen by): a small tensor whose DECODE costs more
arena than its encoding saves flash stays as it is. Nothing here imports TensorFlow; the arena is
measured in TFLM worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinycomp import tflm
from tinycomp.specs import CompressionSpec, TensorCompression
from tinycomp.tflite.compress import compress_choosing_slices, compress_model
from tinycomp.tflite.encoders import check_decodable, huffman_of, prune_of
from tinycomp.tflite.file_growth import rebuilt_size
from tinycomp.tflite.find_tensors import IncompressibleTensor, WeightTensor, choose_compression, weight_tensors
from tinycomp.tflite.model import parse_tflite
from tinycomp.tflite.strip import strip_model

METHODS = ("lut", "huffman", "pruning")


@dataclass
class MethodTrial:
    """One method on one tensor: its encoded bytes, and the bytes it adds to the file (negative: saves)."""

    method: str
    encoded_bytes: int | None  # None: the decoder cannot write this tensor
    growth: int | None = None  # None: not measured (refused, or encoded bytes not fewer than the tensor's)
    note: str = ""
    spec: TensorCompression | None = None
    arena_growth: int | None = None  # with a decode budget: the TFLM arena bytes it adds (negative: saves)

    @property
    def saving(self) -> int | None:
        """Bytes it takes off the file (and with a decode budget, off the arena too); None: not measured."""
        if self.growth is None:
            return None
        return -(self.growth + (self.arena_growth or 0))


@dataclass
class LosslessTensor:
    """A weight tensor, the methods tried on it, and the one chosen (None: left as it is)."""

    subgraph: int
    tensor: int
    name: str
    op: str
    shape: tuple[int, ...]
    bytes_before: int
    trials: list[MethodTrial] = field(default_factory=list)
    chosen: str | None = None

    def trial(self, method: str) -> MethodTrial:
        return next(t for t in self.trials if t.method == method)

    @property
    def spec(self) -> TensorCompression | None:
        return self.trial(self.chosen).spec if self.chosen else None


@dataclass
class LosslessChoice:
    """Every weight tensor's trials and choice, and the compression spec they make."""

    tensors: list[LosslessTensor]
    base_bytes: int  # the file rebuilt with nothing compressed (with strip: stripped)
    decode_budget: int | None = None
    base_arena: int | None = None  # with a decode budget: that file's TFLM arena

    @property
    def spec(self) -> CompressionSpec:
        return CompressionSpec(tuple(t.spec for t in self.tensors if t.spec is not None))

    def bytes_by_method(self) -> dict[str, tuple[int, int, int]]:
        """method → (tensors, their bytes before, their encoded bytes); "none" for the tensors left alone."""
        out: dict[str, tuple[int, int, int]] = {}
        for t in self.tensors:
            key = t.chosen or "none"
            after = t.trial(t.chosen).encoded_bytes if t.chosen else t.bytes_before
            n, before, encoded = out.get(key, (0, 0, 0))
            out[key] = (n + 1, before + t.bytes_before, encoded + (after or 0))
        return out


def trials_for(weight: WeightTensor) -> list[MethodTrial]:
    """Each method's spec entry and encoded bytes for one weight tensor (without measuring the file)."""
    trials = []
    try:
        lut = choose_compression(weight.name, weight)
        trials.append(MethodTrial("lut", lut.bytes_after, spec=lut.to_spec()))
    except IncompressibleTensor as e:
        trials.append(MethodTrial("lut", None, note=e.what))
    for method in ("huffman", "pruning"):
        reason = check_decodable(method, weight.tensor)
        if reason is not None:
            trials.append(MethodTrial(method, None, note=reason))
            continue
        size = (huffman_of(weight.tensor) if method == "huffman" else prune_of(weight.tensor)).size
        trials.append(MethodTrial(method, size, spec=TensorCompression(weight.subgraph, weight.index, 0, None,
                                                                       label=weight.name, method=method)))
    return trials


def choose(model_bytes: bytes, source: str = "model", strip: bool = False,
           decode_budget: int | None = None) -> LosslessChoice:
    """Every weight tensor's smallest exact encoding in the written file (or none); with
    `decode_budget`, the one saving the most flash and arena together in the sliced file."""
    model = parse_tflite(model_bytes, source)
    base = rebuilt_size(model_bytes, strip)
    base_arena = None if decode_budget is None else _arena(_written(model_bytes, strip))
    tensors = []
    for weight in weight_tensors(model):
        entry = LosslessTensor(weight.subgraph, weight.index, weight.name, weight.op, weight.shape,
                               len(weight.tensor.buffer.data), trials_for(weight))
        for trial in entry.trials:
            if trial.spec is None or trial.encoded_bytes is None or trial.encoded_bytes >= entry.bytes_before:
                continue
            spec = CompressionSpec((trial.spec,))
            if decode_budget is None:
                data = compress_model(model_bytes, spec, source).data
            else:
                data = compress_choosing_slices(model_bytes, spec, decode_budget, source, "--lossless").data
            data = _written(data, strip)
            trial.growth = len(data) - base
            if base_arena is not None:
                trial.arena_growth = _arena(data) - base_arena
        measured = [t for t in entry.trials if t.saving is not None and t.saving > 0]
        if measured:
            entry.chosen = min(measured, key=lambda t: (-(t.saving or 0), METHODS.index(t.method))).method
        tensors.append(entry)
    return LosslessChoice(tensors, base, decode_budget, base_arena)


def _written(data: bytes, strip: bool) -> bytes:
    """The file as `compress` writes it (with `strip`: stripped)."""
    if strip:
        return strip_model(data).data
    return data


def _arena(data: bytes) -> int:
    return tflm.arenas([data], 1, "the compressed model")[0]
