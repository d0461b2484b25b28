"""The HUFFMAN and PRUNE encoders against TFLM's own decoder test vectors and a mirror of its decoders."""

from __future__ import annotations

import numpy as np
import pytest

from decode_mirror import huffman_decode, prune_decode
from tinycomp.tflite import huffman, prune_encoding

# decode_state_huffman_test.cc: the code map, the 64 symbols, their encoded bytes and the tables.
CODE_MAP = {"m": "000", "a": "001", "j": "010", "o": "0110", "h": "0111", "d": "1000", "i": "10010",
            "f": "10011", "c": "1010", "g": "101100", "l": "101101", "k": "10111", "e": "1100", "b": "1101",
            "p": "1110", "n": "1111"}
EXPECT = "nmmacnanefdacopjomeckifookhbdbdmjjdmjgojfecpbiibmanbbjbnlgjafejp"
ENCODED = bytes([0xF0, 0x0D, 0x79, 0xFC, 0x9C, 0x1A, 0x6E, 0x4C, 0x32, 0xAF, 0x29, 0xB3, 0x5D, 0xF6, 0x36, 0x02,
                 0x50, 0x15, 0x8C, 0xA7, 0x95, 0xDB, 0x29, 0x68, 0x3F, 0xBA, 0xB7, 0xED, 0xB1, 0x19, 0xE2, 0xE0])
TABLE16 = [0x986D, 0x9861, 0x986A, 0x0005, 0x0806, 0x0809, 0x000E, 0x000F, 0x886F, 0x8868, 0x8864, 0x8864,
           0x9069, 0x9066, 0x8863, 0x8863, 0x0002, 0x906B, 0x8867, 0x886C, 0x8865, 0x8862, 0x8870, 0x886E]
TABLE32 = [0x9800006D, 0x98000061, 0x9800006A, 0x00000005, 0x08000006, 0x08000009, 0x0000000E, 0x0000000F,
           0x8800006F, 0x88000068, 0x88000064, 0x88000064, 0x90000069, 0x90000066, 0x88000063, 0x88000063,
           0x00000002, 0x9000006B, 0x88000067, 0x8800006C, 0x88000065, 0x88000062, 0x88000070, 0x8800006E]
HEADER16 = bytes([1, 1, 0, 0, 1, 2 << 4]) + bytes(10)
HEADER32 = bytes([1, 1, 0, 0, 1, (2 << 4) | 1]) + bytes(10)


def code_map():
    return {ord(s): (int(bits, 2), len(bits)) for s, bits in CODE_MAP.items()}


def expected(dtype) -> np.ndarray:
    return np.array([ord(c) for c in EXPECT], dtype=dtype)


def test_the_mirror_decodes_tflms_own_vectors():
    assert huffman_decode(ENCODED, HEADER16 + np.array(TABLE16, "<u2").tobytes(), 64, np.int8).tolist() == \
        expected(np.int8).tolist()
    for dtype in (np.int8, np.int16):
        assert huffman_decode(ENCODED, HEADER32 + np.array(TABLE32, "<u4").tobytes(), 64, dtype).tolist() == \
            expected(dtype).tolist()


def test_packed_codewords_are_tflms_encoded_bytes():
    packed = huffman.pack_codewords(expected(np.int8), code_map())
    assert packed[:len(ENCODED)] == ENCODED
    assert set(packed[len(ENCODED):]) <= {0}


@pytest.mark.parametrize(("wide", "table"), [(False, TABLE16), (True, TABLE32)])
def test_tables_for_the_code_map_are_tflms_tables(wide, table):
    """Fewest entries, ties to the wider lookup, depth first: the test file's exact layout."""
    assert huffman.build_tables(code_map(), 3, wide) == table
    assert huffman.header(3, wide) == (HEADER32 if wide else HEADER16)


def test_canonical_codes_are_prefix_free_and_counting_up():
    codes = huffman.canonical_codes([5, -3, 7, 0], [2, 1, 3, 3])
    assert codes == {-3: (0b0, 1), 5: (0b10, 2), 0: (0b110, 3), 7: (0b111, 3)}


@pytest.mark.parametrize("limit", [4, 5, 6, 8])
def test_length_limited_codes_keep_the_limit_and_kraft(limit):
    weights = [1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144]
    lengths = huffman.limited_lengths(weights, limit)
    assert max(lengths) <= limit
    assert sum(2.0 ** -n for n in lengths) == 1.0
    cost = sum(w * n for w, n in zip(weights, lengths))
    assert cost >= sum(w * n for w, n in zip(weights, huffman.huffman_lengths(weights)))
    if limit >= max(huffman.huffman_lengths(weights)):
        assert cost == sum(w * n for w, n in zip(weights, huffman.huffman_lengths(weights)))


def skewed(rng, n, dtype, spread):
    values = np.round(rng.laplace(0, spread, n)).clip(np.iinfo(dtype).min, np.iinfo(dtype).max)
    return values.astype(dtype)


@pytest.mark.parametrize(("dtype", "spread", "n"), [(np.int8, 0.3, 2000), (np.int8, 4, 3000), (np.int8, 40, 5000),
                                                    (np.int16, 30, 3000), (np.int16, 3000, 2000)])
def test_round_trip_through_the_mirror(dtype, spread, n):
    rng = np.random.default_rng(n)
    values = skewed(rng, n, dtype, spread)
    enc = huffman.encode(values)
    assert enc.ancillary[5] & 1 == (dtype == np.int16)
    assert huffman_decode(enc.encoded, enc.ancillary, n, dtype).tolist() == values.tolist()
    assert len(enc.encoded) % 4 == 0


def test_the_encoder_picks_the_fewest_bytes_over_root_sizes():
    rng = np.random.default_rng(3)
    values = skewed(rng, 4000, np.int8, 12)
    enc = huffman.encode(values)
    symbols, counts = np.unique(values, return_counts=True)
    for limit in range(8, 14):
        codes = huffman.canonical_codes([int(s) for s in symbols], huffman.limited_lengths(list(counts), limit))
        for root in range(1, limit + 1):
            entries = huffman.build_tables(codes, root, False)
            if entries is None:
                continue
            size = len(huffman.pack_codewords(values, codes)) + 16 + 2 * len(entries)
            assert enc.size <= size


def test_one_value_costs_no_bits_per_element():
    values = np.full(1000, -7, dtype=np.int8)
    enc = huffman.encode(values)
    assert len(enc.encoded) == 4
    assert huffman_decode(enc.encoded, enc.ancillary, 1000, np.int8).tolist() == values.tolist()


def test_int16_needs_wide_tables():
    with pytest.raises(ValueError, match="32-bit"):
        huffman.encode(np.zeros(4, np.int16), wide=False)
    with pytest.raises(ValueError, match="int8 or int16"):
        huffman.encode(np.zeros(4, np.int32))


# ---------------------------------------------------------------- PRUNE

def test_prune_mask_and_values_as_tflms_test_data():
    """decode_state_prune_test.cc's kExpectPrune3 (2 channels, zero points 0): mask bytes 0xA5/0x5A."""
    row = [13, 0, 14, 0, 0, 15, 0, 16]
    chan0 = row + [0, 13, 0, 14, 15, 0, 16, 0] + row * 3
    chan1 = [v + 100 if v else 0 for v in row] * 5
    array = np.array(chan0 + chan1, dtype=np.int8).reshape(2, 5, 8, 1)
    zps, axis = prune_encoding.zero_point_layout(np.dtype(np.int8), array.shape, [0, 0], 0, 2)
    enc = prune_encoding.encode(array, zps, axis)
    assert enc.encoded == bytes([0xA5, 0x5A] + [0xA5] * 8)
    assert enc.ancillary[:16] == bytes([2, 1, 0, 0, 1]) + bytes(11)
    assert list(np.frombuffer(enc.ancillary[16:], np.int8)) == [v for v in chan0 + chan1 if v]


@pytest.mark.parametrize(("shape", "axis"), [((4, 3, 3, 5), 0), ((1, 3, 3, 6), 3), ((7, 9), 0), ((7, 9), 1)])
def test_prune_per_channel_zero_points_round_trip(shape, axis):
    rng = np.random.default_rng(1)
    channels = shape[axis]
    zps = [int(z) for z in rng.integers(-20, 20, channels)]
    array = rng.integers(-128, 128, shape).astype(np.int8)
    zp_along = np.array(zps).reshape([-1 if d == axis else 1 for d in range(len(shape))])
    array = np.where(rng.random(shape) < 0.7, np.broadcast_to(zp_along, shape), array).astype(np.int8)
    layout = prune_encoding.zero_point_layout(np.dtype(np.int8), shape, zps, axis, channels)
    assert layout == (zps, axis)
    enc = prune_encoding.encode(array, *layout)
    assert enc.kept == int((array != np.broadcast_to(zp_along, shape)).sum())
    assert np.array_equal(prune_decode(enc.encoded, enc.ancillary, shape, np.int8, zps, axis), array)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32])
def test_prune_other_types_round_trip(dtype):
    rng = np.random.default_rng(2)
    array = (rng.integers(-300, 300, (6, 10)) * (rng.random((6, 10)) < 0.3)).astype(dtype)
    if dtype == np.float32:
        array[0, 0] = -0.0  # kept: bit for bit it is not the zero point
    enc = prune_encoding.encode(array, *prune_encoding.zero_point_layout(np.dtype(dtype), array.shape, [0] * 6, 0, 6))
    decoded = prune_decode(enc.encoded, enc.ancillary, array.shape, dtype)
    assert decoded.tobytes() == array.tobytes()


@pytest.mark.parametrize(("dtype", "shape", "zps", "axis", "channels", "message"), [
    (np.int16, (4, 2), [0, 3, 0, 0], 0, 4, "zero points 0"),
    (np.int8, (4, 5, 2), [0, 1, 2, 3, 4], 1, 5, "quantized axis 1"),
    (np.int8, (4, 5), [3], 1, 1, "quantized axis 1"),
    (np.uint8, (4,), None, None, 0, "does not write uint8"),
])
def test_prune_refuses_what_the_decoder_refuses(dtype, shape, zps, axis, channels, message):
    with pytest.raises(prune_encoding.PruneRefused, match=message):
        prune_encoding.zero_point_layout(np.dtype(dtype), shape, zps, axis, channels)


def test_prune_all_zero_points_zero_is_one_zero_point():
    assert prune_encoding.zero_point_layout(np.dtype(np.int8), (3, 4), [0, 0, 0], 0, 3) == ([0], None)


def test_slices_coded_with_their_kernels_code_share_ancillary_bytes():
    rng = np.random.default_rng(7)
    kernel = skewed(rng, 6000, np.int8, 6).reshape(60, 100)
    slices = [kernel[:20], kernel[20:41], kernel[41:]]
    encodings = [huffman.encode(s, basis=kernel) for s in slices]
    assert len({e.ancillary for e in encodings}) == 1
    assert encodings[0].ancillary == huffman.encode(kernel).ancillary
    for s, e in zip(slices, encodings):
        assert huffman_decode(e.encoded, e.ancillary, s.size, np.int8).tolist() == s.ravel().tolist()
    with pytest.raises(ValueError, match="every value"):
        huffman.encode(np.array([100], np.int8), basis=np.array([1, 2], np.int8))
