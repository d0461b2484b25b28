"""Merging TFLM_DECODE operators where the TFLM arena, measured, gets smaller.

tflite-micro inserts one TFLM_DECODE operator before each consumer of a compressed tensor. Every
operator costs TFLM arena for its bookkeeping (a NodeAndRegistration, the DECODE kernel's table of
decoder states): about 80 bytes on a 64-bit host. One DECODE operator decodes any number of
tensors (inputs: encoded, ancillary, encoded, ancillary, …; one output per pair), so a DECODE can
be folded into an earlier one. The decoded tensor then lives from that earlier operator on, which
costs arena only if that lengthens it across the arena's peak: whether a merge pays is measured.

Each DECODE of HUFFMAN or PRUNE data (tinycomp's encoders; LUT files stay as tflite-micro writes
them) is tried folded into the DECODE before it, each alone against the same file; the merges that
lower the arena are then applied together, and kept together when that is lowest, else the best
one alone. Outputs are the same bytes (the caller verifies them in TFLM). Nothing here imports
TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tinycomp.tflite.encoded import own_decodes
from tinycomp.tflite.model import model_editor
from tinycomp.tflite.private import apply_flatbuffer_alignment


@dataclass
class MergeResult:
    """The file with DECODE operators merged (or the input, unchanged), and the arenas measured."""

    data: bytes
    merged: int  # DECODE operators folded into an earlier one
    arena_before: int
    arena_after: int


def decode_count(model_bytes: bytes) -> int:
    """How many DECODE operators of HUFFMAN or PRUNE data the file has (in subgraph 0)."""
    model = model_editor().read(bytes(model_bytes))
    return len(own_decodes(model.subgraphs[0])) if model.subgraphs else 0


def merged(model_bytes: bytes, later: Sequence[int]) -> bytes:
    """`model_bytes` with each of the `later` DECODE operators (ordinals among subgraph 0's HUFFMAN
    and PRUNE DECODEs, each ≥ 1) folded into the one before it."""
    editor = model_editor()
    model = editor.read(bytes(model_bytes))
    subgraph = model.subgraphs[0]
    decodes = own_decodes(subgraph)
    into = {k: k - 1 for k in later}
    for k in sorted(into, reverse=True):  # a chain k-1 ← k ← k+1 folds from the end
        target, source = decodes[into[k]], decodes[k]
        target.inputs += source.inputs
        target.outputs += source.outputs
        subgraph.operators.remove(source)
    editor.prune_buffers(model)
    return apply_flatbuffer_alignment(bytes(model.build()))


def merge_decodes(model_bytes: bytes, arenas: Callable[[list[bytes]], list[int]]) -> MergeResult:
    """Fold DECODE operators into the one before them where `arenas` (the TFLM arena of each file,
    measured) says it pays; see the module docstring."""
    count = decode_count(model_bytes)
    candidates = [[k] for k in range(1, count)]
    files = [bytes(model_bytes)] + [merged(model_bytes, c) for c in candidates]
    measured = arenas(files)
    base = measured[0]
    paying = [(arena, c[0], data) for arena, c, data in zip(measured[1:], candidates, files[1:]) if arena < base]
    if not paying:
        return MergeResult(bytes(model_bytes), 0, base, base)
    best_arena, _, best_data = min(paying, key=lambda p: (p[0], p[1]))
    best = MergeResult(best_data, 1, base, best_arena)
    if len(paying) == 1:
        return best
    together = merged(model_bytes, [k for _, k, _ in paying])
    (arena,) = arenas([together])
    return MergeResult(together, len(paying), base, arena) if arena <= best_arena else best
