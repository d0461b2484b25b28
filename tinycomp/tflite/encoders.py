"""tinycomp's HUFFMAN and PRUNE encoders as tflite-micro compressor plugins.

`tflite_micro.compression.compress` encodes each spec entry with the plugin registered for its
method's class and inserts the DECODE operators itself; its own `huffman` and `pruning` plugins
only raise "not yet implemented". These classes follow its plugin protocol (`decode_type`,
`compress(tensor, method) -> CompressionResult`) with `tinycomp.tflite.huffman` and
`tinycomp.tflite.prune_encoding`; `tinycomp.tflite.private.installed_encoders` registers them
while tinycomp compresses. `check_decodable` says, before anything is written, why TFLM's decoder
would refuse a tensor. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinycomp.tflite import huffman, prune_encoding

HUFFMAN_DTYPES = (np.int8, np.int16)  # DecodeStateHuffman::Decode
HUFFMAN_BASIS = "tinycomp_basis"  # set on a tflite-micro HuffmanCompression: code the tensor with this array's code


def quantization_of(tensor: Any) -> tuple[list[int] | None, int | None, int]:
    """(zero points or None, quantized axis, channels) of a model_editor tensor, as TFLM reads them."""
    q = tensor.quantization
    if q is None:
        return None, None, 0
    scales = [q.scales] if isinstance(q.scales, (int, float)) else list(q.scales)
    zeros = [q.zero_points] if isinstance(q.zero_points, int) else list(q.zero_points)
    return zeros, q.axis, len(scales)


def check_decodable(method: str, tensor: Any) -> str | None:
    """Why TFLM's `method` decoder ("huffman" or "pruning") refuses `tensor`, or None when it decodes it."""
    array = tensor.array
    if array is None:
        return "it has no values"
    if method == "huffman":
        if array.dtype.type not in HUFFMAN_DTYPES:
            return f"TFLM's Huffman decoder writes int8 or int16 tensors, not {array.dtype}"
        return None
    try:
        prune_encoding.zero_point_layout(array.dtype, tuple(array.shape), *quantization_of(tensor))
    except prune_encoding.PruneRefused as e:
        return str(e)
    return None


def huffman_of(tensor: Any, basis: np.ndarray | None = None) -> huffman.HuffmanEncoding:
    return huffman.encode(tensor.array, basis=basis)


def prune_of(tensor: Any) -> prune_encoding.PruneEncoding:
    array = tensor.array
    layout = prune_encoding.zero_point_layout(array.dtype, tuple(array.shape), *quantization_of(tensor))
    return prune_encoding.encode(array, *layout)


class _Plugin:
    """One tflite-micro compressor plugin: `decode_type` and `compress(tensor, method)`."""

    method = ""
    code = 0

    @property
    def decode_type(self) -> Any:
        from tflite_micro.tensorflow.lite.micro.compression import decode

        return decode.DecodeType(self.code, self.method.upper())

    def encode(self, tensor: Any, method: Any) -> tuple[bytes, bytes]:
        raise NotImplementedError

    def compress(self, tensor: Any, method: Any) -> Any:
        from tflite_micro.tensorflow.lite.micro.compression import compressor

        reason = check_decodable(self.method, tensor)
        if reason is not None:
            raise compressor.CompressionError(f"tensor {tensor.name!r}: {reason}")
        encoded, ancillary = self.encode(tensor, method)
        return compressor.CompressionResult(encoded_data=encoded, ancillary_data=ancillary)


class HuffmanPlugin(_Plugin):
    method, code = "huffman", huffman.DECODE_TYPE

    def encode(self, tensor: Any, method: Any) -> tuple[bytes, bytes]:
        enc = huffman_of(tensor, getattr(method, HUFFMAN_BASIS, None))
        return enc.encoded, enc.ancillary


class PrunePlugin(_Plugin):
    method, code = "pruning", prune_encoding.DECODE_TYPE

    def encode(self, tensor: Any, method: Any) -> tuple[bytes, bytes]:
        enc = prune_of(tensor)
        return enc.encoded, enc.ancillary
