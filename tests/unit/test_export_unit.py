"""tinycomp export: a .tflite as a 16-byte-aligned C array that compiles and round-trips."""

from __future__ import annotations

import re

import pytest


def test_to_c_source_round_trips():
    from tinycomp.export import BYTES_PER_LINE, parse_c_array, to_c_source

    data = bytes(range(256)) * 3 + b"\x01\x02"
    cc, h = to_c_source(data, "g_model", "model_data.h")
    assert parse_c_array(cc) == data
    assert "alignas(16) const unsigned char g_model[] = {" in cc
    assert f"const unsigned int g_model_len = {len(data)};" in cc
    assert '#include "model_data.h"' in cc
    rows = [line for line in cc.splitlines() if line.startswith("    0x")]
    assert all(len(re.findall("0x", row)) == BYTES_PER_LINE for row in rows[:-1])
    assert "#ifndef MODEL_DATA_H_" in h and "#define MODEL_DATA_H_" in h and h.rstrip().endswith("MODEL_DATA_H_")
    assert "extern const unsigned char g_model[];" in h and "extern const unsigned int g_model_len;" in h


@pytest.mark.parametrize("symbol", ["9model", "g-model", "", "int", "__model", "_Model", "g_"])
def test_bad_symbols(symbol):
    from tinycomp.errors import InvalidValue
    from tinycomp.export import check_symbol

    with pytest.raises(InvalidValue) as error:
        check_symbol(symbol)
    assert error.value.field == "symbol" and error.value.exit_code == 2
