"""tinycomp export: a .tflite as a 16-byte-aligned C array that compiles and round-trips."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from helpers import ok, run_cli


def test_export_cli_compiles(pipeline, tmp_path):
    cc = tmp_path / "model_data.cc"
    result = ok(["export", pipeline["compressed_tflite"], "-o", cc])
    header = tmp_path / "model_data.h"
    data = pipeline["compressed_tflite"].read_bytes()
    assert f"Wrote {cc} and {header}: g_model[{len(data):,}]" in result.output
    from tinycomp.export import parse_c_array

    assert parse_c_array(cc.read_text()) == data
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    obj = tmp_path / "model_data.o"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-c", cc, "-o", obj], check=True, cwd=tmp_path)
    if shutil.which("nm"):  # the const array and its length have external linkage
        symbols = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
        assert re.search(r" R g_model$", symbols, re.M) and re.search(r" R g_model_len$", symbols, re.M)


def test_export_cli_header_elsewhere(pipeline, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "include").mkdir()
    cc, header = tmp_path / "src" / "net.cc", tmp_path / "include" / "net.h"
    ok(["export", pipeline["model_int8_tflite"], "-o", cc, "--header", header, "--symbol", "net_tflite"])
    assert '#include "../include/net.h"' in cc.read_text()
    assert "extern const unsigned char net_tflite[];" in header.read_text()
    assert "#ifndef NET_H_" in header.read_text()
    if shutil.which("g++"):
        subprocess.run(["g++", "-std=c++17", "-c", cc, "-o", tmp_path / "net.o"], check=True)


def test_export_cli_bad_symbol(pipeline, tmp_path):
    cc = tmp_path / "model_data.cc"
    result = run_cli(["export", pipeline["compressed_tflite"], "-o", cc, "--symbol", "9model"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: '9model' is not a C identifier (--symbol) — use letters, digits and underscores, "
        "not starting with a digit, e.g. g_model"]
    assert list(tmp_path.iterdir()) == []


def test_export_cli_not_tflite(pipeline, tmp_path):
    cc = tmp_path / "model_data.cc"
    result = run_cli(["export", pipeline["compression_yaml"], "-o", cc])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: not a .tflite flatbuffer (no TFL3 file identifier) ({pipeline['compression_yaml']}) — "
        "re-create it with `tinycomp convert` or `tinycomp quantize`"]
    assert list(tmp_path.iterdir()) == []
