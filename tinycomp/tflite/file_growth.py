"""What LUT-compressing one tensor does to the bytes of the whole file, measured with tflite-micro.

`find_tensors.encoded_size` counts the indices, value tables and header a tensor becomes. The file
also gets, per compressed tensor, a TFLM_DECODE operator, an ancillary tensor and a decoded output
tensor, each with a name (the original's plus `_ancillary` / `_decoded`), and the decoded tensor
carries a copy of the original's quantization (tflite-micro 0.dev20261023182759 also leaves the
encoded tensor's own copy in place: its writer does not clear it). On small per-channel kernels of
real models (1×1 convolutions with 64 channels, 4 KB) those cost about as much as the indices
save, so a tensor can shrink by `encoded_size` and still make the file larger.

`file_growth` measures that exactly: each tensor is compressed alone by tflite-micro's compressor
and the file is compared with the same file rebuilt by the same writer with nothing compressed
(the writer also drops unreferenced and duplicate buffers, which is not the tensor's doing).
About 0.15 s per tensor on a 260 KB model. With `strip`, both files are measured as `strip` writes
them: names cost nothing there, so more small tensors pay. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence

from tinycomp.specs import CompressionSpec
from tinycomp.tflite.compress import compress_model
from tinycomp.tflite.find_tensors import FindResult, TensorChoice
from tinycomp.tflite.model import model_editor
from tinycomp.tflite.private import apply_flatbuffer_alignment
from tinycomp.tflite.strip import strip_model


def rebuilt_size(model_bytes: bytes, strip: bool = False) -> int:
    """Bytes of `model_bytes` as tflite-micro's compressor writes a file, with nothing compressed
    (with `strip`: as `strip` then writes it)."""
    if strip:
        return strip_model(model_bytes).bytes_after
    editor = model_editor()
    model = editor.read(bytes(model_bytes))
    editor.dedupe_buffers(model)
    editor.prune_buffers(model)
    return len(apply_flatbuffer_alignment(bytes(model.build())))


def file_growth(model_bytes: bytes, choices: Sequence[TensorChoice], source: str = "model",
                strip: bool = False) -> list[int]:
    """Bytes the file gains (negative: saves) when each of `choices` alone is LUT-compressed (with
    `strip`: the file as `compress --strip` writes it, against the stripped uncompressed file)."""
    base = rebuilt_size(model_bytes, strip)
    growth = []
    for choice in choices:
        data = compress_model(model_bytes, CompressionSpec((choice.to_spec(),)), source).data
        growth.append((strip_model(data).bytes_after if strip else len(data)) - base)
    return growth


def growing_in_file(model_bytes: bytes, choices: Sequence[TensorChoice], source: str = "model",
                    strip: bool = False) -> list[tuple[TensorChoice, int]]:
    """The choices whose compression alone does not make the file smaller, with their growth in bytes."""
    return [(c, g) for c, g in zip(choices, file_growth(model_bytes, choices, source, strip)) if g >= 0]


def keep_shrinking(model_bytes: bytes, found: FindResult, source: str = "model",
                   strip: bool = False) -> tuple[FindResult, list[tuple[TensorChoice, int | None]]]:
    """`found` without the tensors whose compression would not make the file smaller, and those left out
    with the bytes each would add to the file (None: not measured, its encoding alone is not smaller)."""
    cheap = {id(c) for c in found.growing}
    measured = [c for c in found.choices if id(c) not in cheap]
    growth = dict(zip(map(id, measured), file_growth(model_bytes, measured, source, strip)))
    left_out = [(c, growth.get(id(c))) for c in found.choices if id(c) in cheap or growth[id(c)] >= 0]
    out = {id(c) for c, _ in left_out}
    return FindResult([c for c in found.choices if id(c) not in out], list(found.skipped)), left_out
