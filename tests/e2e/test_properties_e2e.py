"""Property tests (hypothesis): LUT compression is lossless in TFLM.

The round trip: one-layer int8 models (Dense, Conv2D, DepthwiseConv2D) are quantized once; each
example overwrites the weight tensor through tflite-micro's model_editor with random int8 values
holding at most 2^b unique values per value table (per tensor, or per channel along the
quantized axis: axis 0 for Dense/Conv2D, the last axis for DepthwiseConv2D), compresses it with
`compress_model` at index bitwidth b (1–7) and requires TFLM outputs identical to the
uncompressed model via `verify_identical`. Per-tensor layouts are exercised on weights whose
quantization was edited to a single scale, since TFLM decodes a table in the layout of the
tensor's quantization. DepthwiseConv2D always stays per-channel: TFLM refuses per-tensor
quantized int8 depthwise weights ("failed to allocate tensors") even without compression.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import int8_models
from tinycomp.specs import (
    CompressionSpec,
    PerChannel,
    PerTensor,
    TensorCompression,
)

KINDS = ("dense", "conv", "depthwise")


@pytest.fixture(scope="module")
def base_models() -> dict[str, bytes]:
    """One tiny int8 model per weight operator, quantized once (per-channel weights, as the converter makes)."""
    import tf_keras


    layers = tf_keras.layers
    builds = {
        "dense": ((12,), [layers.Dense(6, name="dense")]),
        "conv": ((6, 6, 3), [layers.Conv2D(5, 3, name="conv")]),
        "depthwise": ((6, 6, 4), [layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise")]),
    }
    return int8_models(builds)


def weight_of(model):
    for op in model.subgraphs[0].operators:
        if op.opcode_name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
            return op.inputs[1]
    raise AssertionError("no weight operator")


def lut_values(rng: np.random.Generator, shape: tuple, bits: int, axis: int | None) -> np.ndarray:
    """Random int8 weights with at most 2**bits unique values per tensor (axis None) or per slice along `axis`."""
    def table_draw(size):
        count = int(rng.integers(1, 2 ** bits + 1))
        table = rng.choice(np.arange(-127, 128), size=count, replace=False)
        return table[rng.integers(0, count, size=size)]

    if axis is None:
        return table_draw(shape).astype(np.int8)
    moved = np.stack([table_draw(tuple(np.delete(shape, axis))) for _ in range(shape[axis])])
    return np.moveaxis(moved, 0, axis).astype(np.int8)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), per_channel=st.booleans(), bits=st.integers(1, 7),
       seed=st.integers(0, 2 ** 32 - 1))
def test_lut_compression_is_lossless_in_tflm(base_models, kind, per_channel, bits, seed):
    from tinycomp.tflite.compress import compress_model, verify_identical
    from tinycomp.tflite.model import model_editor, parse_tflite

    editor = model_editor()
    model = editor.read(base_models[kind])
    weight = weight_of(model)
    quant = weight.quantization
    assert len(np.atleast_1d(quant.scales)) > 1
    axis = int(quant.axis)
    assert axis == (weight.array.ndim - 1 if kind == "depthwise" else 0)
    per_channel = per_channel or kind == "depthwise"  # TFLM's DEPTHWISE_CONV_2D requires per-channel int8 weights
    rng = np.random.default_rng(seed)
    values = lut_values(rng, tuple(weight.array.shape), bits, axis if per_channel else None)
    weight.array = values
    if not per_channel:  # one scale: the layout TFLM decodes per tensor
        weight.quantization = editor.Quantization(scales=float(np.atleast_1d(quant.scales)[0]), zero_points=0)
    original = bytes(model.build())
    assert np.array_equal(weight_of(parse_tflite(original)).array, values)

    layout = PerChannel(axis) if per_channel else PerTensor()
    spec = CompressionSpec((TensorCompression(0, weight.index, bits, layout),))
    result = compress_model(original, spec, kind, "property spec")
    assert len(result.data) != len(original) or result.data != original
    assert verify_identical(original, result.data, samples=4, seed=seed % 1000) == 4
