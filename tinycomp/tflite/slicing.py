"""Slicing weight tensors along their output channels, so LUT decoding never needs a whole tensor.

tflite-micro's compression inserts a TFLM_DECODE operator right before each consumer of a
compressed tensor; its output, the decoded int8 weights, lives in the arena until that consumer
has run. A kernel of C output channels whose decoded bytes exceed a decode budget is split here
into slices of whole channels that fit (sizes differ by at most one channel): the fewest, or as
many as the caller asks (`counts`; `tinycomp.tflite.compress.compress_choosing_slices` picks them
by measured arena). Each slice gets its own consumer (FULLY_CONNECTED or CONV_2D, with the
original's builtin options), its share of the bias, and its own quantization holding only its
channels' scales; the slice outputs are joined by CONCATENATION on the output's channel axis (a
tree of them when there are more than TFLM's 10 inputs per CONCATENATION). Per-output-channel
maths is independent, so the outputs are the same bytes.

Every slice adds tensors and operators, so the slices carry only what TFLM reads (each byte is
repeated in the compressed file, where the DECODE output copies the kernel's quantization):
- a zero-point array whose values are all equal is kept as its first value, which TFLM's
  allocator broadcasts (int8 weights and biases: all 0);
- a bias slice has no quantization when its kernel slice is per-channel (more than one scale):
  TFLM's per-channel FULLY_CONNECTED and CONV_2D compute their multipliers from the input, filter
  and output scales only; the per-tensor path checks the bias scale, so a one-channel slice keeps it.

Slice tensors get short names (`dense/w0`, `dense/b0`, `dense/y0`, `dense/c0`), which `strip`
removes. DEPTHWISE_CONV_2D kernels, and kernels with more than one consumer, are left whole: the
result names them with the reason. Edits use tflite-micro's model_editor; no TensorFlow.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

from tinycomp.errors import InvalidValue
from tinycomp.tflite.model import model_editor, parse_tflite, schema
from tinycomp.tflite.private import raw

MAX_CONCAT_INPUTS = 10  # TFLM concatenation.cc: kMaxInputNum


@dataclass
class SlicedTensor:
    """One kernel split into slices: where it was, and where its slices are in the sliced model."""

    subgraph: int
    tensor: int  # index in the model before slicing
    name: str
    op: str  # FULLY_CONNECTED or CONV_2D
    decoded_bytes: int
    channels: list[int]  # output channels per slice
    tensors: list[int] = field(default_factory=list)  # the slices' kernel indices after slicing
    concatenations: int = 0

    @property
    def largest_slice_bytes(self) -> int:
        return self.decoded_bytes // sum(self.channels) * max(self.channels)


@dataclass
class LeftWhole:
    """A kernel over the budget that is not sliced, and why."""

    subgraph: int
    tensor: int
    name: str
    decoded_bytes: int
    reason: str


@dataclass
class SliceResult:
    """The sliced flatbuffer, what was sliced or left whole, and old → new tensor indices."""

    data: bytes
    sliced: list[SlicedTensor]
    left_whole: list[LeftWhole]
    index_map: dict[tuple[int, int], int]  # (subgraph, old index) → new index, for tensors kept as they were

    def slices_of(self, subgraph: int, tensor: int) -> SlicedTensor | None:
        return next((s for s in self.sliced if (s.subgraph, s.tensor) == (subgraph, tensor)), None)


def slice_channels(channels: int, channel_bytes: int, budget: int, count: int | None = None) -> list[int]:
    """Output channels per slice: `count` slices (default: the fewest whose slices are each
    ≤ `budget` decoded bytes), as equal as possible, larger first.

    Raises ValueError when one channel alone is over the budget, or when `count` slices do not
    fit the budget or exceed the channels.
    """
    fewest = fewest_slices(channels, channel_bytes, budget)
    count = fewest if count is None else count
    if not fewest <= count <= channels:
        raise ValueError(f"{count} slices of {channels} channels: at least {fewest} fit the budget, at most {channels}")
    base, extra = divmod(channels, count)
    return [base + 1] * extra + [base] * (count - extra)


def fewest_slices(channels: int, channel_bytes: int, budget: int) -> int:
    """The fewest slices of whole channels, each ≤ `budget` decoded bytes (ValueError: a channel is over it)."""
    per_slice = budget // channel_bytes if channel_bytes else channels
    if per_slice < 1:
        raise ValueError("one channel exceeds the budget")
    return math.ceil(channels / per_slice)


def concat_groups(count: int, limit: int = MAX_CONCAT_INPUTS) -> list[list[int]]:
    """The levels of a CONCATENATION tree over `count` inputs, each node ≤ `limit` inputs, in order.

    Each level is a list of group sizes; the last level has one group. One level when count ≤ limit.
    """
    levels = []
    while True:
        groups = math.ceil(count / limit)
        base, extra = divmod(count, groups)
        levels.append([base + 1] * extra + [base] * (groups - extra))
        if groups == 1:
            return levels
        count = groups


def _op_names() -> dict[int, str]:
    ops = schema().BuiltinOperator
    return {ops.FULLY_CONNECTED: "FULLY_CONNECTED", ops.CONV_2D: "CONV_2D",
            ops.DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D", ops.TRANSPOSE_CONV: "TRANSPOSE_CONV"}


def short_base(name: str | None, index: int) -> str:
    """'sequential/dense/MatMul' → 'dense'; the layer component of a kernel's name, else 't<index>'."""
    parts = [p for p in (name or "").split(";")[0].split("/") if p]
    return parts[-2] if len(parts) >= 2 else (parts[0] if parts else f"t{index}")


def check_budget(model_bytes: bytes, tensors: list[tuple[int, int]], budget: int, source: str = "model") -> None:
    """InvalidValue("decode_budget") naming the tensor when one output channel of a tensor that
    would be sliced decodes to more than `budget` bytes, with the smallest budget that works."""
    model = parse_tflite(model_bytes, source)
    sliceable = [(s, t) for s, t in tensors if not isinstance(_sliceable(model, s, t), (str, type(None)))]
    channel_bytes = {(s, t): _channel_bytes(model, s, t) for s, t in sliceable}
    over = [(b, key) for key, b in channel_bytes.items()
            if b > budget and len(model.subgraphs[key[0]].tensors[key[1]].buffer.data) > budget]
    if over:
        worst, (s, t) = max(over)
        name = model.subgraphs[s].tensors[t].name
        raise InvalidValue(f"a decode budget of {budget:,} bytes is smaller than one output channel of tensor {t} "
                           f"({name}), which decodes to {worst:,} bytes", "decode_budget",
                           f"the smallest decode budget that works is {max(channel_bytes.values()):,} bytes")


def _channel_bytes(model: Any, s: int, t: int) -> int:
    tensor = model.subgraphs[s].tensors[t]
    return len(tensor.buffer.data) // int(tensor.shape[0])


def _sliceable(model: Any, s: int, t: int) -> Any:
    """The consumer to slice the kernel (s, t) for, None if it has no consumer or data, or why not (a str)."""
    subgraph = model.subgraphs[s]
    tensor = subgraph.tensors[t]
    if tensor.buffer is None or not tensor.buffer.data or not tensor.shape:
        return None
    consumers = subgraph.consumers_of(tensor)
    if not consumers:
        return None
    names = _op_names()
    if len(consumers) > 1:
        return f"{len(consumers)} operators read it"
    op = consumers[0]
    kind = names.get(op.opcode, op.opcode_name)
    if kind == "DEPTHWISE_CONV_2D":
        return ("DEPTHWISE_CONV_2D is not sliced: its output channels follow its input channels, so slicing "
                "needs a SPLIT of the input activations too")
    if kind not in ("FULLY_CONNECTED", "CONV_2D") or len(op.inputs) < 2 or op.inputs[1] is not tensor:
        return f"{kind} is not sliced (only FULLY_CONNECTED and CONV_2D weights)"
    if len(op.outputs) != 1:
        return f"{kind} with {len(op.outputs)} outputs is not sliced"
    if tensor.quantization is None:
        return "unquantized weights are not sliced"
    q = tensor.quantization
    if q.axis not in (None, 0):
        return f"its quantization is per channel along axis {q.axis}, not the output channels"
    return op


def slice_model(model_bytes: bytes, tensors: list[tuple[int, int]], budget: int,
                source: str = "model", counts: dict[tuple[int, int], int] | None = None) -> SliceResult:
    """Slice each listed kernel (subgraph, tensor) whose decoded bytes exceed `budget`: into
    `counts[(subgraph, tensor)]` slices where given (ValueError unless that many fit the budget,
    see `slice_channels`), else into the fewest that fit.

    The returned bytes are those of `model_bytes` when nothing needs slicing. Raises
    InvalidValue("decode_budget") when a channel alone is over the budget (see `check_budget`).
    """
    check_budget(model_bytes, tensors, budget, source)
    model = parse_tflite(model_bytes, source)
    sliced, whole = [], []
    for s, t in tensors:
        tensor = model.subgraphs[s].tensors[t]
        decoded = len(tensor.buffer.data) if tensor.buffer is not None else 0
        if decoded <= budget:
            continue
        found = _sliceable(model, s, t)
        if isinstance(found, str):
            whole.append(LeftWhole(s, t, tensor.name or "", decoded, found))
        elif found is not None:
            channels = slice_channels(int(tensor.shape[0]), decoded // int(tensor.shape[0]), budget,
                                      (counts or {}).get((s, t)))
            sliced.append((SlicedTensor(s, t, tensor.name or "", _op_names()[found.opcode], decoded, channels),
                           tensor, found))
    if not sliced:
        identity = {(s, i): i for s, sg in enumerate(model.subgraphs) for i in range(len(sg.tensors))}
        return SliceResult(model_bytes, [], whole, identity)
    originals = {s: list(sg.tensors) for s, sg in enumerate(model.subgraphs)}
    kernels, bases = {}, set()
    for info, tensor, op in sliced:
        base = short_base(tensor.name, info.tensor)
        base = base if base not in bases else f"{base}.{info.tensor}"  # names stay unique
        bases.add(base)
        kernels[id(tensor)] = _slice_op(model, model.subgraphs[info.subgraph], op, info, base)
    model_editor().prune_buffers(model)
    data = bytes(model.build())
    index_map = {}
    for s, sg in enumerate(model.subgraphs):
        position = {id(t): i for i, t in enumerate(sg.tensors)}
        index_map.update({(s, old): position[id(t)] for old, t in enumerate(originals[s]) if id(t) in position})
    for info, tensor, _ in sliced:
        info.tensors = [_position(model, info.subgraph, k) for k in kernels[id(tensor)]]
    parse_tflite(data, "sliced model")
    return SliceResult(data, [info for info, _, _ in sliced], whole, index_map)


def _position(model: Any, subgraph: int, tensor: Any) -> int:
    """The tensor's index in the built model (the compiler numbers tensors in list order)."""
    return next(i for i, t in enumerate(model.subgraphs[subgraph].tensors) if t is tensor)


def _slice_op(model: Any, subgraph: Any, op: Any, info: SlicedTensor, base: str) -> list:
    """Replace `op` in `subgraph` by one op per slice and the CONCATENATION tree, naming the new
    tensors `base/...`; returns the slice kernels."""
    editor = model_editor()
    kernel, bias = op.inputs[1], op.inputs[2] if len(op.inputs) > 2 else None
    output = op.outputs[0]
    ops, outputs, kernels = [], [], []
    start = 0
    for k, count in enumerate(info.channels):
        part = slice(start, start + count)
        start += count
        w_quantization = _quantization_part(kernel, part)
        w = subgraph.add_tensor(shape=(count, *kernel.shape[1:]), dtype=kernel.dtype,
                                data=kernel.array[part].copy(), quantization=w_quantization, name=f"{base}/w{k}")
        kernels.append(w)
        b = None
        if bias is not None:
            per_channel = w_quantization is not None and len(w_quantization.scales) > 1
            b = subgraph.add_tensor(shape=(count,), dtype=bias.dtype, data=bias.array[part].copy(),
                                    quantization=None if per_channel else _quantization_part(bias, part),
                                    name=f"{base}/b{k}")
        y = subgraph.add_tensor(shape=(*output.shape[:-1], count), dtype=output.dtype,
                                quantization=_per_tensor_copy(output), name=f"{base}/y{k}")
        outputs.append(y)
        inputs = [op.inputs[0], w, b, *op.inputs[3:]]
        ops.append(editor.Operator(opcode=op.opcode, custom_code=op.custom_code, inputs=inputs, outputs=[y],
                                   _fb=_operator_table(op)))
    ops += _concatenations(model, subgraph, outputs, output, base, len(output.shape) - 1)
    info.concatenations = len(ops) - len(info.channels)
    at = subgraph.operators.index(op)
    subgraph.operators[at:at + 1] = ops
    for gone in (kernel, bias):
        if gone is not None and not any(gone in o.inputs for o in subgraph.operators):
            subgraph.tensors.remove(gone)
    return kernels


def _operator_table(op: Any) -> Any:
    """A copy of the op's flatbuffer table (builtin options and all), without its tensor indices."""
    table = copy.deepcopy(raw(op))
    table.inputs, table.outputs = [], []
    return table


def _quantization_part(tensor: Any, part: slice) -> Any:
    """The tensor's Quantization with only the channels in `part` (per-tensor: the same values, a new
    object); zero points that are all equal are kept once (TFLM's allocator broadcasts them)."""
    q = tensor.quantization
    if q is None:
        return None
    editor = model_editor()
    scales = q.scales if isinstance(q.scales, list) else [q.scales]
    zeros = q.zero_points if isinstance(q.zero_points, list) else [q.zero_points]
    if len(scales) == 1:
        return editor.Quantization(scales=list(scales), zero_points=list(zeros[:1]), axis=q.axis)
    zeros = zeros[:1] if len(set(zeros)) == 1 else zeros[part]
    return editor.Quantization(scales=list(scales[part]), zero_points=list(zeros), axis=q.axis)


def _per_tensor_copy(tensor: Any) -> Any:
    q = tensor.quantization
    if q is None:
        return None
    return model_editor().Quantization(scales=list(q.scales) if isinstance(q.scales, list) else q.scales,
                                       zero_points=list(q.zero_points) if isinstance(q.zero_points, list)
                                       else q.zero_points, axis=q.axis)


def _concatenations(model: Any, subgraph: Any, inputs: list, output: Any, base: str, axis: int) -> list:
    """CONCATENATION ops joining `inputs` (in order) into `output`, as a tree of ≤ 10 inputs per op."""
    editor, fb = model_editor(), schema()
    _register_concatenation(model)
    ops, level, counter = [], inputs, 0
    for sizes in concat_groups(len(inputs)):
        joined, start = [], 0
        for size in sizes:
            group = level[start:start + size]
            start += size
            if len(sizes) == 1:
                target = output
            else:
                target = subgraph.add_tensor(shape=(*output.shape[:-1], sum(t.shape[-1] for t in group)),
                                             dtype=output.dtype, quantization=_per_tensor_copy(output),
                                             name=f"{base}/c{counter}")
                counter += 1
            table = fb.OperatorT()
            table.builtinOptionsType = fb.BuiltinOptions.ConcatenationOptions
            table.builtinOptions = fb.ConcatenationOptionsT()
            table.builtinOptions.axis = axis
            ops.append(editor.Operator(opcode=fb.BuiltinOperator.CONCATENATION, inputs=list(group),
                                       outputs=[target], _fb=table))
            joined.append(target)
        level = joined
    return ops


def _register_concatenation(model: Any) -> None:
    """An operator code for CONCATENATION that older readers understand too (deprecated_builtin_code)."""
    editor, fb = model_editor(), schema()
    code = fb.BuiltinOperator.CONCATENATION
    if any(oc.builtin_code == code and not oc.custom_code for oc in model.operator_codes):
        return
    opcode = editor.OperatorCode(builtin_code=code, version=2)
    raw(opcode).deprecatedBuiltinCode = code
    model.operator_codes.append(opcode)
