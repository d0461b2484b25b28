"""Pure-Python mirrors of TFLM's HUFFMAN and PRUNE decoders, line by line, for round-trip tests.

They follow `decode_state_huffman.cc` (GetNextBits, PutBackBits, the 16- and 32-bit table walks)
and `decode_state_prune.cc` (DecompressToBuffer, DecompressToBufferPerChannelInt8) as written,
reading only the bytes the C++ reads, so an encoding that decodes here decodes there; the e2e
tests check TFLM itself.
"""

from __future__ import annotations

import numpy as np


class _Bits:
    """The C++ codeword reader's state: head_offset, head_hold and head_next over big-endian words."""

    def __init__(self, encoded: bytes):
        self.words = np.frombuffer(encoded, dtype=">u4")
        self.offset, self.hold, self.next = 32, int(self.words[0]), 1

    def get(self, count: int) -> int:
        assert 0 < count <= 31
        output = 0
        if count > self.offset:
            mask = (1 << self.offset) - 1
            output = (self.hold & mask) << (count - self.offset)
            count -= self.offset
            assert self.next < len(self.words), "read past the codeword words"
            self.hold = int(self.words[self.next])
            self.next += 1
            self.offset = 32
        shift = self.offset - count
        output |= (self.hold >> shift) & ((1 << count) - 1)
        self.offset -= count
        return output

    def put_back(self, count: int) -> None:
        self.offset += count
        if self.offset > 32:
            self.offset -= 32
            self.next -= 1
            self.hold = int(self.words[self.next - 1])


def huffman_decode(encoded: bytes, ancillary: bytes, count: int, dtype: type) -> np.ndarray:
    """What DecodeStateHuffman writes for `count` values of `dtype` (np.int8 or np.int16)."""
    assert ancillary[0] == 1 and ancillary[1] == 1 and ancillary[4] == 1
    wide = bool(ancillary[5] & 1)
    if not wide:
        assert dtype == np.int8, "16-bit tables decode to int8 only (Setup refuses others)"
    root = ((ancillary[5] & 0xF0) >> 4) + 1
    table = np.frombuffer(ancillary[16:], dtype="<u4" if wide else "<u2")
    found, count_mask, count_shift, value_mask = ((0x80000000, 0x78000000, 27, 0x07FFFFFF) if wide
                                                  else (0x8000, 0x7800, 11, 0x07FF))
    out = np.zeros(count, dtype=dtype)
    if count == 0:
        return out
    bits = _Bits(encoded)
    for i in range(count):
        used = root
        offset = bits.get(used)
        value = int(table[offset])
        while not value & found:
            used = ((value & count_mask) >> count_shift) + 1
            index = bits.get(used)
            offset += (value & value_mask) + index
            value = int(table[offset])
        width = 8 if dtype == np.int8 else 16  # `*buffer++ = table_value` keeps the low bits
        low = value & ((1 << width) - 1)
        out[i] = low - (1 << width) if low >> (width - 1) else low
        residual = (value & count_mask) >> count_shift
        if used > residual:
            bits.put_back(used - residual)
    return out


def prune_decode(encoded: bytes, ancillary: bytes, shape: tuple[int, ...], dtype: type,
                 zero_points: list[int] | None = None, axis: int | None = None) -> np.ndarray:
    """What DecodeStatePrune writes: the value table in order where the mask bit is 1, else the
    element's channel's zero point (`zero_points` per channel along `axis`, or one for all)."""
    assert ancillary[0] == 2 and ancillary[1] == 1 and ancillary[4] == 1
    n = int(np.prod(shape))
    values = np.frombuffer(ancillary[16:], dtype=np.dtype(dtype).newbyteorder("<"))
    mask = np.unpackbits(np.frombuffer(encoded, dtype=np.uint8))[:n].astype(bool)
    zps = [0] if not zero_points else zero_points
    channels = len(zps)
    flat = np.arange(n)
    if channels > 1 and any(zps):
        last = axis == len(shape) - 1
        channel = flat % channels if last else flat // (n // channels)
        fill = np.asarray(zps)[channel]
    else:
        fill = np.full(n, zps[0])
    out = fill.astype(dtype)
    assert int(mask.sum()) == len(values), "the value table holds one value per 1 bit"
    out[mask] = values
    return out.reshape(shape)
