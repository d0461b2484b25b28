"""Encoding in the format of TFLM's PRUNE DECODE type (2): a bitmask and the values it keeps.

The format is defined by TFLM's `decode_state_prune.cc` (no other document):
- encoded data: one bit per element in tensor order, most significant bit of each byte first;
  1 = the next value of the table, 0 = the element's zero point;
- ancillary data: a 16-byte header `[2, 1, 0, 0, 1, 0 …]` and then the kept values, in tensor
  order, in the tensor's own type (little-endian).

Which zero point an element gets is decided by the decoder from the output tensor's quantization:
per channel when an int8 tensor has more than one channel and a non-zero zero point (channels on
axis 0, or on the last axis), otherwise the first zero point (0 without quantization). The decoder
refuses a quantized axis that is neither, and non-zero zero points on anything but int8;
`zero_point_layout` applies the same rules, so what is refused here is what TFLM would refuse.
Values are compared bit for bit, so -0.0 in a float tensor is kept. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HEADER_BYTES = 16
DECODE_TYPE = 2
# TFLM's DecodeStatePrune::Decode: the element types it writes.
DTYPES = (np.bool_, np.float32, np.int8, np.int16, np.int32, np.int64)


class PruneRefused(ValueError):
    """The decoder would refuse this tensor (its type or quantization)."""


@dataclass(frozen=True)
class PruneEncoding:
    """A tensor encoded for TFLM's PRUNE decoder."""

    encoded: bytes
    ancillary: bytes
    kept: int  # elements different from their zero point

    @property
    def size(self) -> int:
        return len(self.encoded) + len(self.ancillary)


def zero_point_layout(dtype: np.dtype, shape: tuple[int, ...], zero_points: list[int] | None,
                      axis: int | None, channels: int) -> tuple[list[int], int | None]:
    """(zero points, channel axis or None for one zero point) as DecodeStatePrune::Setup resolves them.

    `channels` is the number of scales (TFLM's num_channels_); `zero_points` None means no quantization.
    """
    if np.dtype(dtype).type not in DTYPES:
        raise PruneRefused(f"TFLM's PRUNE decoder does not write {np.dtype(dtype)} tensors")
    if zero_points is None or channels == 0:
        return [0], None
    quantized = axis or 0
    alternate = quantized == len(shape) - 1 and channels > 1
    if not alternate and quantized != 0:
        raise PruneRefused(f"TFLM's PRUNE decoder refuses quantized axis {quantized} of a {len(shape)}-D tensor "
                           "(only axis 0 or the last)")
    nonzero = any(int(z) != 0 for z in zero_points[:channels])
    if np.dtype(dtype) != np.int8 and nonzero:
        raise PruneRefused(f"TFLM's PRUNE decoder needs all zero points 0 for {np.dtype(dtype)} tensors")
    if channels > 1 and nonzero:
        return [int(z) for z in zero_points[:channels]], len(shape) - 1 if alternate else 0
    return [int(zero_points[0])], None


def fill_values(array: np.ndarray, zero_points: list[int], axis: int | None) -> np.ndarray:
    """The zero point each element of `array` decodes to where its mask bit is 0 (flattened)."""
    n = array.size
    if axis is None:
        return np.full(n, zero_points[0]).astype(array.dtype)
    channels = len(zero_points)
    flat = np.arange(n)
    channel = flat % channels if axis == array.ndim - 1 else flat // (n // channels)
    return np.asarray(zero_points)[channel].astype(array.dtype)


def encode(array: np.ndarray, zero_points: list[int], axis: int | None) -> PruneEncoding:
    """The PRUNE encoding of `array` given its resolved zero points (see `zero_point_layout`)."""
    flat = np.ascontiguousarray(array).ravel()
    fill = fill_values(np.asarray(array), zero_points, axis)
    raw = flat.view(np.dtype(f"u{flat.dtype.itemsize}"))  # bit for bit: -0.0 is not 0.0
    keep = raw != fill.view(raw.dtype)
    values = flat[keep].astype(flat.dtype.newbyteorder("<"))
    head = bytearray(HEADER_BYTES)
    head[0], head[1], head[4] = DECODE_TYPE, 1, 1
    return PruneEncoding(np.packbits(keep).tobytes(), bytes(head) + values.tobytes(), int(keep.sum()))
