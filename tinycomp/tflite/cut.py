"""Cutting a .tflite at an operator: the model that runs only the operators from there on.

Palettizing one weight tensor changes nothing before the first operator that reads it, so a
candidate can be measured from that operator on: the activations entering it (every tensor
produced before it and read by it or a later operator: the *live* tensors) are the given file's,
computed once. `suffix_model(data, op)` is the model of operators `op`, `op + 1`, ... whose inputs
are the live tensors at `op`, with the same shapes, types and quantization; its outputs are the
given model's outputs, then any `extra_outputs` (tensors of the given model, e.g. the live tensors
at a later cut, or at every cut with `op` 0). Fed the given model's activations, it computes
bit-identical outputs in TFLM (same operators, same weights, same kernels; tests check it).

Only single-subgraph models without variable tensors are cut (`why_not_cut`): control flow
operators run other subgraphs, and state carried between invokes would break the equivalence.
Edited with tflite-micro's model_editor; signature defs and metadata (which index tensors of the
given file) are dropped from the cut model, buffers are re-aligned as tflite-micro's compressor does.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tinycomp.errors import ModelError
from tinycomp.tflite.model import model_editor, parse_tflite
from tinycomp.tflite.private import apply_flatbuffer_alignment, raw


@dataclass(frozen=True)
class CutModel:
    """A suffix model's bytes, the given model's tensor indices of its inputs and extra outputs (in order),
    and where each kept constant tensor's data now lives ({given tensor index: buffer index})."""

    data: bytes
    inputs: tuple[int, ...]
    extra_outputs: tuple[int, ...]
    outputs: int  # how many outputs the given model has (the extra outputs come after them)
    buffers: dict[int, int]


def why_not_cut(model: object) -> str | None:
    """Why the model cannot be cut into a prefix and a suffix (None: it can)."""

    subgraphs = model.subgraphs  # type: ignore[attr-defined]
    if len(subgraphs) != 1:
        return f"it has {len(subgraphs)} subgraphs"
    if any(t.is_variable for t in subgraphs[0].tensors):
        return "it has variable (stateful) tensors"
    return None


def _is_activation(tensor: object) -> bool:
    buffer = tensor.buffer  # type: ignore[attr-defined]
    return buffer is None or not buffer.data


def live_tensors(model: object, op: int) -> list[int]:
    """The tensors (indices, ascending) a suffix starting at operator `op` needs as inputs: activations
    read by operators `op`, ... or by the model's outputs that are not produced by those operators."""

    subgraph = model.subgraphs[0]  # type: ignore[attr-defined]
    operators = subgraph.operators
    if not 0 <= op < len(operators):
        raise ModelError(f"operator {op} does not exist; the subgraph has {len(operators)}", "cut")
    produced_after = {t.index for o in operators[op:] for t in o.outputs if t is not None}
    read = [t for o in operators[op:] for t in o.inputs if t is not None] + list(subgraph.outputs)
    return sorted({t.index for t in read if _is_activation(t) and t.index not in produced_after})


def first_reader(model: object, tensor: int) -> int:
    """The index of the first operator that reads tensor `tensor` (of subgraph 0)."""

    for o in model.subgraphs[0].operators:  # type: ignore[attr-defined]
        if any(t is not None and t.index == tensor for t in o.inputs):
            return int(o.index)
    raise ModelError(f"no operator reads tensor {tensor}", "cut")


def suffix_model(data: bytes, op: int, extra_outputs: Sequence[int] = (), source: str = "model") -> CutModel:
    """The model of operators `op`, ... of `data` (see the module docstring); `op` 0 keeps every operator
    and only adds `extra_outputs`."""

    model = parse_tflite(data, source)
    reason = why_not_cut(model)
    if reason:
        raise ModelError(f"cannot cut this model: {reason}", source)
    subgraph = model.subgraphs[0]
    tensors = list(subgraph.tensors)
    inputs = live_tensors(model, op) if op else [t.index for t in subgraph.inputs]
    given_outputs = len(subgraph.outputs)
    subgraph.operators[:] = subgraph.operators[op:]
    subgraph.inputs[:] = [tensors[i] for i in inputs]
    subgraph.outputs[:] = list(subgraph.outputs) + [tensors[i] for i in extra_outputs]
    kept = {id(t) for o in subgraph.operators for t in o.inputs + o.outputs if t is not None}
    kept |= {id(t) for t in list(subgraph.inputs) + list(subgraph.outputs)}
    subgraph.tensors[:] = [t for t in tensors if id(t) in kept]
    raw(model).signatureDefs = []
    model.metadata = {}
    editor = model_editor()
    editor.prune_buffers(model)
    built = apply_flatbuffer_alignment(bytes(model.build()))
    buffers = {i: int(tensors[i].buffer.index) for i in range(len(tensors))
               if id(tensors[i]) in kept and not _is_activation(tensors[i])}
    parse_tflite(built, f"{source} (cut at operator {op})")
    return CutModel(built, tuple(inputs), tuple(extra_outputs), given_outputs, buffers)
