"""Input statistics of an int8 .tflite's weight operators, measured in the TFLM interpreter.

The output error palettizing a weight causes depends on what the weight multiplies. For one
output channel o of FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D, the accumulator (in the units of
the int32 bias: input scale × the channel's weight scale) changes by Σ_j Δq_oj · x̃_j, where x̃ is the
operator's int8 input minus its zero point and j runs over the channel's weights (for a conv, each
kernel position and input channel, over every output position: padding reads x̃ = 0). So the mean
shift is Σ_j Δq_oj · E[x̃_j] and, neglecting cross terms, the mean squared error Σ_j Δq_oj² · E[x̃_j²].

This module measures E[x̃_j] and E[x̃_j²] per weight element on calibration rows: it adds the
operators' input tensors to the subgraph's outputs with tflite-micro's model_editor (a "probe"
copy of the model, nothing else changed), runs the probe in TFLM worker processes
(`tflm.run_parallel`), and folds the per-element sums of x̃ and x̃² over rows into each weight's
elements (kernel positions for convs, by the operator's stride, dilation and padding).
Nothing here imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tinycomp import tflm
from tinycomp.errors import ModelError
from tinycomp.tflite.find_tensors import WeightTensor
from tinycomp.tflite.model import model_editor, parse_tflite, upgrade_opcodes
from tinycomp.tflite.private import raw

TensorKey = tuple[int, int]  # (subgraph, tensor)
SAME_PADDING = 0  # tflite's Padding enum: SAME 0, VALID 1
OUTPUT_AXIS = {"FULLY_CONNECTED": 0, "CONV_2D": 0, "DEPTHWISE_CONV_2D": 3}


@dataclass(frozen=True)
class Geometry:
    """How one weight operator reads its input: enough to map input elements onto weight elements."""

    op: str
    weight_shape: tuple[int, ...]
    input_index: int  # the operator's input tensor (subgraph 0)
    input_zero_point: int
    bias_index: int | None  # the bias tensor, when the operator has one
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    same_padding: bool = False

    @property
    def output_axis(self) -> int:
        return OUTPUT_AXIS[self.op]


@dataclass(frozen=True)
class InputMoments:
    """E[x̃] and E[x̃²] for every element of one weight tensor (the weight's shape, broadcast over
    output channels), from `samples` input vectors (rows × output positions)."""

    mean: np.ndarray
    second: np.ndarray
    samples: int


def geometry_of(model: Any, weight: WeightTensor, source: str = "model") -> Geometry:
    """The operator that reads `weight` (as its filter input), described for `moments`."""
    subgraph = model.subgraphs[weight.subgraph]
    op = next(o for o in subgraph.operators if len(o.inputs) > 1 and o.inputs[1] is weight.tensor)
    x = op.inputs[0]
    if x is None:
        raise ModelError(f"operator {op.index} ({op.opcode_name}) has no input tensor", source,
                         "palettize this model without --data")
    depth, channels = int(weight.tensor.shape[-1]), int(x.shape[-1]) if len(x.shape) else 0
    if op.opcode_name == "CONV_2D" and depth != channels:
        raise ModelError(f"operator {op.index} is a grouped CONV_2D (filter depth {depth}, {channels} input "
                         "channels), whose input statistics palettize with data does not model", source,
                         "palettize this model without --data")
    zero = int(x.quantization.zero_points[0]) if x.quantization is not None and len(x.quantization.zero_points) else 0
    bias = op.inputs[2] if len(op.inputs) > 2 else None
    bias_index = bias.index if bias is not None and bias.buffer is not None and bias.buffer.data else None
    shape = tuple(int(d) for d in weight.tensor.shape)
    if op.opcode_name == "FULLY_CONNECTED":
        return Geometry(op.opcode_name, shape, x.index, zero, bias_index)
    options = raw(op).builtinOptions
    return Geometry(op.opcode_name, shape, x.index, zero, bias_index,
                    (int(options.strideH), int(options.strideW)),
                    (int(options.dilationHFactor or 1), int(options.dilationWFactor or 1)),
                    int(options.padding) == SAME_PADDING)


def probe_model(model_bytes: bytes, inputs: list[int]) -> tuple[bytes, int]:
    """(the model with tensors `inputs` of subgraph 0 appended to its outputs, how many outputs it had)."""
    model = model_editor().read(bytes(model_bytes))
    upgrade_opcodes(model)
    subgraph = model.subgraphs[0]
    given = len(subgraph.outputs)
    for index in inputs:
        subgraph.outputs.append(subgraph.tensors[index])
    data = bytes(model.build())
    parse_tflite(data, "probe model")
    return data, given


# ---------------------------------------------------------------- inside a worker process

def input_sums(probe: bytes, first_probe: int, x: np.ndarray,
               gram: tuple[Geometry | None, ...] = ()) -> tuple[int, list[np.ndarray], list[np.ndarray], list[Any]]:
    """(rows, Σ x, Σ x², Σ PᵀP) over the rows `x` (float inputs) of every probed tensor (outputs from
    `first_probe` on): the first two summed over rows in the tensor's own shape, zero points not yet
    taken off; the last, for probes whose `gram` geometry is given (else None), the sum over rows of
    PᵀP, P the row's input vectors as the weight reads them (`patches`, zero points taken off)."""
    from tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(bytes(probe), arena_size=tflm.DEFAULT_ARENA_BYTES)
    details = interpreter.get_input_details(0)
    shape = tuple(int(d) for d in details["shape"])
    count = len(interpreter_outputs(probe)) - first_probe
    sums: list[np.ndarray] = []
    squares: list[np.ndarray] = []
    grams: list[Any] = [None] * count
    for row in x:
        interpreter.set_input(tflm.quantize_input(np.asarray(row), details).reshape(shape), 0)
        interpreter.invoke()
        for i in range(count):
            value = np.asarray(interpreter.get_output(first_probe + i), dtype=np.float64)
            if len(sums) <= i:
                sums.append(np.zeros_like(value))
                squares.append(np.zeros_like(value))
            sums[i] += value
            squares[i] += value * value
            geometry = gram[i] if i < len(gram) else None
            if geometry is not None:
                p = patches(value - geometry.input_zero_point, geometry)
                grams[i] = p.T @ p if grams[i] is None else grams[i] + p.T @ p
    return len(x), sums, squares, grams


def patches(x: np.ndarray, geometry: Geometry) -> np.ndarray:
    """One row's input (zero point taken off) as the vectors one output channel's weights multiply:
    [positions, weights per channel] in the weight's own order (FC: [*, I]; conv: (kh, kw, c) per
    output position, padding 0)."""
    if geometry.op == "FULLY_CONNECTED":
        return x.reshape(-1, geometry.weight_shape[1])
    if geometry.op != "CONV_2D":
        raise ValueError(f"no input vectors for {geometry.op}")
    height, width, channels = (int(d) for d in x.shape[-3:])
    image = x.reshape(height, width, channels)
    kernel = (geometry.weight_shape[1], geometry.weight_shape[2])
    (oh, pad_h), (ow, pad_w) = (output_size(n, k, s, d, geometry.same_padding) for n, k, s, d in
                                zip((height, width), kernel, geometry.stride, geometry.dilation))
    out = np.zeros((oh, ow, kernel[0], kernel[1], channels))
    for i in range(kernel[0]):
        rows = np.arange(oh) * geometry.stride[0] + i * geometry.dilation[0] - pad_h
        row_ok = (rows >= 0) & (rows < height)
        for j in range(kernel[1]):
            cols = np.arange(ow) * geometry.stride[1] + j * geometry.dilation[1] - pad_w
            col_ok = (cols >= 0) & (cols < width)
            at = out[:, :, i, j]  # a view: [oh, ow, C]
            at[np.ix_(row_ok, col_ok)] = image[np.ix_(rows[row_ok], cols[col_ok])]
    return out.reshape(oh * ow, -1)


def interpreter_outputs(model_bytes: bytes) -> list[int]:
    """The output tensor indices of subgraph 0."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    subgraph = schema.Model.GetRootAs(model_bytes, 0).Subgraphs(0)
    return [int(subgraph.Outputs(i)) for i in range(subgraph.OutputsLength())]


# ---------------------------------------------------------------- in the parent process

def measure_sums(probe: bytes, first_probe: int, x: np.ndarray, jobs: int = 1, source: str = "model",
                 gram: tuple[Geometry | None, ...] = (), pool: Any = None) -> tuple[int, list[np.ndarray],
                                                                                    list[np.ndarray], list[Any]]:
    """`input_sums` over all of `x`, in up to `jobs` worker processes (row chunks summed; in `pool`, from
    `tflm.worker_pool`, when given)."""
    chunks = [c for c in np.array_split(np.asarray(x), max(1, min(jobs, len(x)))) if len(c)]
    parts = tflm.run_parallel(input_sums, [(probe, first_probe, c, gram) for c in chunks], workers=jobs,
                              source=source, pool=pool)
    return summed(parts)


def start_sums(probe: bytes, first_probe: int, x: np.ndarray, jobs: int, pool: Any,
               gram: tuple[Geometry | None, ...] = ()) -> list[Any]:
    """`measure_sums` started in `pool` (one task per row chunk); `summed(tflm.gather(...))` finishes it."""
    chunks = [c for c in np.array_split(np.asarray(x), max(1, min(jobs, len(x)))) if len(c)]
    return [tflm.submit(pool, input_sums, probe, first_probe, c, gram) for c in chunks]


def summed(parts: list[Any]) -> tuple[int, list[np.ndarray], list[np.ndarray], list[Any]]:
    """The row chunks' `input_sums` added up."""
    rows = sum(p[0] for p in parts)
    total: list[list[Any]] = [[sum(p[k][i] for p in parts) if parts[0][k][i] is not None else None
                               for i in range(len(parts[0][k]))] for k in (1, 2, 3)]
    return rows, total[0], total[1], total[2]


def moments(geometry: Geometry, rows: int, x_sum: np.ndarray, x_square_sum: np.ndarray) -> InputMoments:
    """E[x̃] and E[x̃²] per element of the weight, from one probed input's sums over `rows` rows."""
    z = float(geometry.input_zero_point)
    s1 = x_sum - z * rows  # Σ (x − z)
    s2 = x_square_sum - 2 * z * x_sum + z * z * rows  # Σ (x − z)²
    if geometry.op == "FULLY_CONNECTED":
        features = geometry.weight_shape[1]
        positions = s1.size // features
        mean = s1.reshape(-1, features).sum(axis=0)[None, :]
        second = s2.reshape(-1, features).sum(axis=0)[None, :]
        samples = rows * positions
        return InputMoments(mean / samples, second / samples, samples)
    s1, s2 = s1.reshape(s1.shape[-3:]), s2.reshape(s2.shape[-3:])  # [H, W, C]
    kernel = (geometry.weight_shape[1], geometry.weight_shape[2])
    mean, positions = patch_sums(s1, kernel, geometry)
    second, _ = patch_sums(s2, kernel, geometry)
    samples = rows * positions
    if geometry.op == "CONV_2D":  # weight [O, KH, KW, C]
        return InputMoments(mean[None] / samples, second[None] / samples, samples)
    outputs = geometry.weight_shape[-1]
    multiplier = outputs // int(mean.shape[-1])  # depthwise weight [1, KH, KW, C·M]: channel o reads input channel o // M
    channel = np.arange(outputs) // multiplier
    return InputMoments(mean[None, :, :, channel] / samples, second[None, :, :, channel] / samples, samples)


def output_size(size: int, kernel: int, stride: int, dilation: int, same: bool) -> tuple[int, int]:
    """(output positions, padding before) along one spatial axis, as TFLite computes them."""
    extent = (kernel - 1) * dilation + 1
    out = (size + stride - 1) // stride if same else (size - extent + stride) // stride
    pad = max((out - 1) * stride + extent - size, 0) // 2 if same else 0
    return out, pad


def patch_sums(per_element: np.ndarray, kernel: tuple[int, int], geometry: Geometry) -> tuple[np.ndarray, int]:
    """(Σ over output positions of `per_element` [H, W, C] at each kernel position [KH, KW, C],
    output positions): what each kernel weight multiplies, summed (padding contributes 0)."""
    height, width, channels = per_element.shape
    (oh, pad_h), (ow, pad_w) = (output_size(n, k, s, d, geometry.same_padding) for n, k, s, d in
                                zip((height, width), kernel, geometry.stride, geometry.dilation))
    out = np.zeros((*kernel, channels))
    for i in range(kernel[0]):
        rows = np.arange(oh) * geometry.stride[0] + i * geometry.dilation[0] - pad_h
        rows = rows[(rows >= 0) & (rows < height)]
        for j in range(kernel[1]):
            cols = np.arange(ow) * geometry.stride[1] + j * geometry.dilation[1] - pad_w
            cols = cols[(cols >= 0) & (cols < width)]
            out[i, j] = per_element[np.ix_(rows, cols)].sum(axis=(0, 1))
    return out, oh * ow
