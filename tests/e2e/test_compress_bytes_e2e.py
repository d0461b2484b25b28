"""The bytes `compress` writes: no stale quantization on LUT-encoded tensors, outputs unchanged, and
palettize-style file growth measured per tensor (tinycomp.tflite.encoded, tinycomp.tflite.file_growth)."""

from __future__ import annotations

import pytest

from helpers import int8_models
from tinycomp.specs import CompressionSpec, PerChannel, TensorCompression


@pytest.fixture(scope="module")
def conv_model() -> bytes:
    """A 64-output conv (per-channel quantized, like real models' 1×1 convolutions) and a small dense layer."""
    import tf_keras

    from tinycomp.tflite.palettize import palettize_model

    layers = tf_keras.layers
    int8 = int8_models({"conv": ((6, 6, 16), [layers.Conv2D(64, 1, activation="relu", name="conv"),
                                             layers.Flatten(), layers.Dense(4, name="dense")])})["conv"]
    return palettize_model(int8, 4).data  # at most 16 values per channel


def _weights(model_bytes: bytes) -> list:
    from tinycomp.tflite.model import parse_tflite

    return [op.inputs[1] for op in parse_tflite(model_bytes).subgraphs[0].operators
            if op.opcode_name in ("FULLY_CONNECTED", "CONV_2D")]


def _spec(model_bytes: bytes) -> CompressionSpec:
    return CompressionSpec(tuple(TensorCompression(0, int(w.index), 4, PerChannel(int(w.quantization.axis or 0)))
                                 for w in _weights(model_bytes)))


@pytest.mark.slow
def test_compress_drops_the_stale_quantization_of_encoded_tensors_and_keeps_outputs(conv_model):
    import contextlib
    import io
    import warnings

    from tflite_micro import compression

    from tinycomp.tflite.compress import compress_model, verify_identical
    from tinycomp.tflite.encoded import has_quantization
    from tinycomp.tflite.model import DECODE_OP, parse_tflite

    spec = _spec(conv_model)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        raw_tflm = bytes(compression.compress(conv_model, spec.to_tflm()))
    ours = compress_model(conv_model, spec).data
    encoded = [op.inputs[0] for op in parse_tflite(ours).subgraphs[0].operators if op.opcode_name == DECODE_OP]
    stale = [op.inputs[0] for op in parse_tflite(raw_tflm).subgraphs[0].operators if op.opcode_name == DECODE_OP]
    assert len(encoded) == 2 and not any(has_quantization(t) for t in encoded)
    assert all(has_quantization(t) for t in stale), "tflite-micro fixed its writer: drop tinycomp.tflite.encoded"
    # 64 scales (4 bytes) + 64 zero points (8 bytes) of the conv, 4 + 8 of the dense layer, at least
    assert len(raw_tflm) - len(ours) >= 64 * 12 + 4 * 12
    verify_identical(conv_model, ours, 16)


@pytest.mark.slow
def test_file_growth_is_what_compressing_each_tensor_alone_does_to_the_file(conv_model):
    from tinycomp.tflite.compress import compress_model
    from tinycomp.tflite.file_growth import file_growth, rebuilt_size
    from tinycomp.tflite.find_tensors import choose_compression, weight_tensors
    from tinycomp.tflite.model import parse_tflite

    model = parse_tflite(conv_model)
    choices = [choose_compression(w.name, w) for w in weight_tensors(model)]
    growth = file_growth(conv_model, choices)
    base = rebuilt_size(conv_model)
    for choice, grown in zip(choices, growth):
        alone = compress_model(conv_model, CompressionSpec((choice.to_spec(),))).data
        assert grown == len(alone) - base
    # 16-value tables of 64 channels, 4-bit indices, DECODE and its tensors cost more than 1,024 int8 weights save
    assert [c.weight.shape for c in choices][0] == (64, 1, 1, 16) and growth[0] > 0
    assert growth[1] < 0  # 9,216 dense weights at 4 bits do pay
