"""Huffman encoding in the format of TFLM's HUFFMAN DECODE type (1), with the fewest bytes.

The format is defined by TFLM's `decode_state_huffman.cc` (no other document):
- ancillary data: a 16-byte header `[1, 1, 0, 0, 1, (root_bits - 1) << 4 | wide, 0 …]` and then the
  lookup tables; `wide` (bit 0) selects 32-bit table entries (int8 or int16 output), otherwise
  16-bit ones (int8 output only);
- encoded data: the codewords, packed most significant bit first into 32-bit words stored
  big-endian; the decoder reads one word ahead, so the stream is padded with zero words.

Decoding one value reads `root_bits` bits and looks them up in the root table (2**root_bits
entries). An entry either holds a value (top bit set: the 4-bit count says how many of the bits
just read belong to the codeword, the rest are put back) or points to a sub-table (top bit clear:
the count is the bits of the next lookup minus one, the low bits the sub-table's distance from the
pointing entry, at most 0x7FF for 16-bit entries). Sub-tables are laid out depth first after the
root, as in TFLM's test data.

`encode` builds canonical codes limited to each length from the shortest possible to the
unlimited Huffman code's, and for each one the root size and sub-table widths with the fewest
table entries (ties: the wider lookup, which decodes faster), and keeps the combination with the
fewest bytes in all. Pure numpy; nothing here imports tflite-micro.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

HEADER_BYTES = 16
DECODE_TYPE = 1
MAX_LOOKUP_BITS = 15  # a value entry's 4-bit count says how many bits of a lookup were the codeword's
WIDE_OFFSET_LIMIT = 0x07FFFFFF
NARROW_OFFSET_LIMIT = 0x07FF


@dataclass(frozen=True)
class HuffmanEncoding:
    """A tensor Huffman-encoded for TFLM: the codeword words and the header with its tables."""

    encoded: bytes
    ancillary: bytes
    root_bits: int
    max_code_length: int
    table_entries: int

    @property
    def size(self) -> int:
        return len(self.encoded) + len(self.ancillary)


Code = tuple[int, int]  # (codeword, length in bits)


# ---------------------------------------------------------------- code lengths

def huffman_lengths(weights: Sequence[int]) -> list[int]:
    """Unlimited Huffman code lengths for positive `weights` (one symbol: length 1)."""
    if len(weights) == 1:
        return [1]
    heap: list[tuple[int, int, list[int]]] = [(w, i, [i]) for i, w in enumerate(weights)]
    heapq.heapify(heap)
    lengths = [0] * len(weights)
    tie = len(weights)
    while len(heap) > 1:
        w1, _, a = heapq.heappop(heap)
        w2, _, b = heapq.heappop(heap)
        for i in a + b:
            lengths[i] += 1
        heapq.heappush(heap, (w1 + w2, tie, a + b))
        tie += 1
    return lengths


def limited_lengths(weights: Sequence[int], limit: int) -> list[int]:
    """Optimal code lengths of at most `limit` bits (package-merge); needs 2**limit >= len(weights)."""
    n = len(weights)
    if n == 1:
        return [1]
    if (1 << limit) < n:
        raise ValueError(f"{n} symbols need codes longer than {limit} bits")
    order = sorted(range(n), key=lambda i: (weights[i], i))
    leaves = [(weights[i], i, None) for i in order]  # (weight, symbol or -1, children)
    current: list[tuple[int, int, tuple | None]] = list(leaves)
    for _ in range(limit - 1):
        packages = [(current[k][0] + current[k + 1][0], -1, (current[k], current[k + 1]))
                    for k in range(0, len(current) - 1, 2)]
        current = _merge(leaves, packages)
    lengths = [0] * n
    stack = list(current[:2 * n - 2])
    while stack:
        weight, symbol, children = stack.pop()
        if children is None:
            lengths[symbol] += 1
        else:
            stack.extend(children)
    return lengths


def _merge(a: list, b: list) -> list:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        if a[i][0] <= b[j][0]:
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out + a[i:] + b[j:]


def canonical_codes(symbols: Sequence[int], lengths: Sequence[int]) -> dict[int, Code]:
    """Canonical codewords: by length, then by symbol value, counting up."""
    codes: dict[int, Code] = {}
    code, previous = 0, 0
    for length, symbol in sorted(zip(lengths, symbols)):
        code <<= length - previous
        codes[symbol] = (code, length)
        code += 1
        previous = length
    return codes


# ---------------------------------------------------------------- tables

def _children(rest: list[tuple[int, int, int]], width: int) -> dict[int, list[tuple[int, int, int]]]:
    """The codes longer than `width` bits, grouped by their first `width` bits (the sub-tables needed)."""
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for code, length, symbol in rest:
        if length > width:
            top = code >> (length - width)
            groups.setdefault(top, []).append((code & ((1 << (length - width)) - 1), length - width, symbol))
    return groups


@lru_cache(maxsize=65536)
def _best_width(rest: tuple[tuple[int, int, int], ...]) -> tuple[int, int]:
    """(entries, width) of the sub-table tree with the fewest entries for these codes (ties: wider)."""
    longest = max(length for _, length, _ in rest)
    best: tuple[int, int] | None = None
    for width in range(1, min(longest, MAX_LOOKUP_BITS) + 1):
        groups = _children(list(rest), width).values()
        entries = (1 << width) + sum(_best_width(tuple(group))[0] for group in groups)
        if best is None or entries <= best[0]:
            best = (entries, width)
    assert best is not None
    return best


def table_entries(codes: Mapping[int, Code], root_bits: int) -> int:
    """How many entries the tables for `codes` take with a root of `root_bits` bits."""
    return (1 << root_bits) + sum(_best_width(tuple(g))[0] for g in _children(_sorted(codes), root_bits).values())


def _sorted(codes: Mapping[int, Code]) -> list[tuple[int, int, int]]:
    return sorted((code, length, symbol) for symbol, (code, length) in codes.items())


def build_tables(codes: Mapping[int, Code], root_bits: int, wide: bool) -> list[int] | None:
    """The table entries for `codes` with a root of `root_bits` bits, laid out depth first; None when
    a sub-table is further from its pointer than the entry format can say.

    Sub-table widths are the fewest-entries ones (`_best_width`). A single code decodes with no bits at all: every root entry holds it and puts back every bit.
    """
    entries: list[int] = []
    found, count_shift, limit = (0x80000000, 27, WIDE_OFFSET_LIMIT) if wide else (0x8000, 11, NARROW_OFFSET_LIMIT)
    mask = 0xFFFF if wide else 0xFF
    rest = _sorted(codes)
    if len(rest) == 1:
        return [found | (rest[0][2] & mask)] * (1 << root_bits)

    def place(rest: list[tuple[int, int, int]], width: int) -> bool:
        start = len(entries)
        entries.extend([0] * (1 << width))
        for code, length, symbol in rest:
            if length <= width:  # the entry says how many of the bits read are this codeword's
                first = code << (width - length)
                for k in range(first, first + (1 << (width - length))):
                    entries[start + k] = found | (length << count_shift) | (symbol & mask)
        for top, group in sorted(_children(rest, width).items()):
            child_width = _best_width(tuple(group))[1]
            offset = len(entries) - (start + top)
            if offset > limit:
                return False
            entries[start + top] = ((child_width - 1) << count_shift) | offset
            if not place(group, child_width):
                return False
        return True

    return entries if place(rest, root_bits) else None


def table_bytes(entries: Sequence[int], wide: bool) -> bytes:
    return np.asarray(entries, dtype="<u4" if wide else "<u2").tobytes()


def header(root_bits: int, wide: bool) -> bytes:
    head = bytearray(HEADER_BYTES)
    head[0], head[1], head[4] = DECODE_TYPE, 1, 1
    head[5] = ((root_bits - 1) << 4) | int(wide)
    return bytes(head)


# ---------------------------------------------------------------- codewords

def pack_codewords(values: np.ndarray, codes: Mapping[int, Code]) -> bytes:
    """The codewords of `values` (flattened) MSB first in big-endian 32-bit words, zero-padded so the
    decoder's look-ahead (at most MAX_LOOKUP_BITS past the last codeword) stays inside the words."""
    flat = np.asarray(values).ravel().astype(np.int64)
    symbols = np.array(sorted(codes), dtype=np.int64)
    index = np.searchsorted(symbols, flat)
    code_of = np.array([codes[int(s)][0] for s in symbols], dtype=np.int64)
    length_of = np.array([codes[int(s)][1] for s in symbols], dtype=np.int64)
    if len(codes) == 1:  # decoded with no bits: see build_tables
        length_of[:] = 0
    code, length = code_of[index], length_of[index]
    total = int(length.sum())
    words = max(1, math.ceil((total + MAX_LOOKUP_BITS) / 32))
    out = np.zeros(words * 32, dtype=np.uint8)
    position = 0
    for start in range(0, len(flat), 1 << 16):  # bounded memory: one bit matrix per chunk
        c, n = code[start:start + (1 << 16)], length[start:start + (1 << 16)]
        longest = int(n.max()) if n.size else 0
        if not longest:
            continue
        column = np.arange(longest)
        keep = column[None, :] < n[:, None]
        shift = np.clip(n[:, None] - 1 - column[None, :], 0, None)
        bits = ((c[:, None] >> shift) & 1).astype(np.uint8)[keep]
        out[position:position + len(bits)] = bits
        position += len(bits)
    return np.packbits(out).tobytes()


# ---------------------------------------------------------------- the encoder

def encode(values: np.ndarray, wide: bool | None = None, basis: np.ndarray | None = None) -> HuffmanEncoding:
    """The fewest-bytes TFLM Huffman encoding of an int8 or int16 array (16-bit tables for int8,
    32-bit for int16 unless `wide` says otherwise).

    With `basis` (an array holding every value of `values`, e.g. the whole kernel `values` is a
    slice of), the code and tables are the fewest-bytes ones for `basis` and only the codewords are
    `values`': slices of one kernel encoded so get identical ancillary data, which one tensor can
    hold for all of them.
    """
    array = np.asarray(values)
    if array.dtype not in (np.int8, np.int16):
        raise ValueError(f"TFLM's Huffman decoder writes int8 or int16, not {array.dtype}")
    wide = array.dtype == np.int16 if wide is None else wide
    if array.dtype == np.int16 and not wide:
        raise ValueError("int16 values need 32-bit tables")
    statistics = array if basis is None else np.asarray(basis)
    if basis is not None and (statistics.dtype != array.dtype or not np.isin(array, statistics).all()):
        raise ValueError("the basis of a Huffman code must hold every value it encodes, in the same type")
    symbols, counts = np.unique(statistics.ravel(), return_counts=True)
    symbols_list, weights = [int(s) for s in symbols], [int(c) for c in counts]
    natural = max(huffman_lengths(weights))
    shortest = max(1, math.ceil(math.log2(len(symbols_list)))) if len(symbols_list) > 1 else 1
    entry_bytes = 4 if wide else 2
    best: tuple[int, int, int, dict[int, Code]] | None = None  # (bytes, root bits, max length, codes)
    for limit in range(shortest, natural + 1):
        lengths = limited_lengths(weights, limit) if limit < natural else huffman_lengths(weights)
        codes = canonical_codes(symbols_list, lengths)
        bits = sum(c * length for c, length in zip(weights, lengths)) if len(weights) > 1 else 0
        stream = 4 * max(1, math.ceil((bits + MAX_LOOKUP_BITS) / 32))
        for root in range(1, min(max(lengths), MAX_LOOKUP_BITS) + 1):
            size = HEADER_BYTES + stream + entry_bytes * table_entries(codes, root)
            if best is None or size < best[0]:
                if build_tables(codes, root, wide) is not None:
                    best = (size, root, max(lengths), codes)
    assert best is not None, "a root table as wide as the longest code needs no sub-tables"
    _, root, longest, codes = best
    entries = build_tables(codes, root, wide)
    assert entries is not None
    return HuffmanEncoding(pack_codewords(array, codes), header(root, wide) + table_bytes(entries, wide),
                           root, longest, len(entries))
