"""tinycomp strip and compress --strip: smaller files, identical TFLM outputs, TFLM's metadata kept."""

from __future__ import annotations

import subprocess
import sys

from helpers import ok, run_cli


def _read(path):
    from tinycomp.tflite.model import read_tflite

    return read_tflite(path).model


def _decode_ops(model) -> int:
    return sum(op.custom_code == "TFLM_DECODE" for sg in model.subgraphs for op in sg.operators)


def test_strip_removes_names_signatures_and_unread_metadata(pipeline):
    from tinycomp.tflite.strip import strip_model, verify_stripped

    for key in ("model_int8_tflite", "compressed_tflite"):
        data = pipeline[key].read_bytes()
        result = strip_model(data, key)
        assert result.bytes_before == len(data) and result.bytes_after == len(result.data) < len(data)
        assert result.removed["tensor names"] > 0 and result.removed["signature defs"] == 1
        assert set(result.dropped_metadata) == {"min_runtime_version", "CONVERSION_METADATA"}
        before, after = _read(pipeline[key]), strip_model(data).data
        from tinycomp.tflite.model import parse_tflite

        stripped = parse_tflite(after)
        assert not any(t.name for sg in stripped.subgraphs for t in sg.tensors)
        assert not stripped._fb.signatureDefs and not stripped.description and stripped.metadata == {}
        # the graph TFLM runs is untouched: same tensors, operators and DECODE operators
        assert [len(sg.tensors) for sg in stripped.subgraphs] == [len(sg.tensors) for sg in before.subgraphs]
        assert [op.opcode_name for op in stripped.subgraphs[0].operators] == \
               [op.opcode_name for op in before.subgraphs[0].operators]
        assert _decode_ops(stripped) == _decode_ops(before)
        _assert_quantization_stripped(stripped)
        assert verify_stripped(data, result.data, samples=8) == 8
        assert strip_model(result.data).data == result.data  # stripping twice changes nothing


def _assert_quantization_stripped(model):
    """Zero points are one value per tensor; DECODE's encoded inputs carry no quantization."""
    for sg in model.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            if q is not None and not isinstance(q.zero_points, int):
                assert len(q.zero_points) == 1, (t.index, q.zero_points)
        for op in sg.operators:
            if op.custom_code == "TFLM_DECODE":
                assert all(t.quantization is None and t._fb.quantization is None for t in op.inputs)


def test_strip_reduces_per_channel_zero_points_and_encoded_quantization(pipeline):
    """`compress` already drops the encoded tensors' stale quantization; strip does it too, for files
    compressed by tflite-micro directly."""
    import contextlib
    import io
    import warnings

    from tflite_micro import compression

    from tinycomp.specs import parse_compression_spec
    from tinycomp.tflite.compress import resolve_layouts
    from tinycomp.tflite.model import parse_tflite
    from tinycomp.tflite.strip import strip_model

    def encoded_with_quantization(model):
        return [t for sg in model.subgraphs for op in sg.operators if op.custom_code == "TFLM_DECODE"
                for t in op.inputs if t._fb.quantization is not None]

    assert not encoded_with_quantization(parse_tflite(pipeline["compressed_tflite"].read_bytes()))
    int8 = pipeline["clustered_int8_tflite"].read_bytes()
    spec = resolve_layouts(parse_compression_spec(pipeline["compression_yaml"].read_text()), parse_tflite(int8))
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        data = bytes(compression.compress(int8, spec.to_tflm()))
    before = parse_tflite(data)
    encoded = encoded_with_quantization(before)
    per_channel = [t for sg in before.subgraphs for t in sg.tensors if t not in encoded
                   and t.quantization is not None and len(t.quantization.scales) > 1]
    assert per_channel and encoded  # what tflite-micro's writer leaves behind
    result = strip_model(data)
    assert result.removed["repeated zero points"] == len(per_channel)
    assert result.removed["quantization of LUT-encoded tensors"] == len(encoded)
    after = parse_tflite(result.data)
    # scales stay per channel: only the zero points, all 0 for int8 weights, shrink
    assert [len(t.quantization.scales) for t in per_channel] == \
           [len(after.subgraphs[0].tensors[t.index].quantization.scales) for t in per_channel]


def test_strip_keeps_metadata_tflm_reads(pipeline):
    from tinycomp.tflite.model import parse_tflite
    from tinycomp.tflite.strip import strip_model

    model = _read(pipeline["model_int8_tflite"])
    model.metadata["OfflineMemoryAllocation"] = b"\x00" * 16
    model.metadata["my_notes"] = b"hello"
    result = strip_model(bytes(model.build()))
    kept = parse_tflite(result.data).metadata
    assert kept == {"OfflineMemoryAllocation": b"\x00" * 16}
    assert "my_notes" in result.dropped_metadata


def test_strip_cli(pipeline, tmp_path):
    out = tmp_path / "stripped.tflite"
    result = ok(["strip", pipeline["compressed_tflite"], "-o", out, "--verify-samples", "4"])
    size = pipeline["compressed_tflite"].stat().st_size
    assert out.stat().st_size < size
    assert f"Wrote {out}: {size:,} → {out.stat().st_size:,} bytes" in result.output
    assert "TFLM outputs identical to the original on 4 random inputs" in result.output


def test_strip_cli_bad_input(pipeline, tmp_path):
    out = tmp_path / "out.tflite"
    result = run_cli(["strip", pipeline["model_h5"], "-o", out])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: this is a Keras .h5 model, not a .tflite flatbuffer ({pipeline['model_h5']}) — convert it first: "
        "`tinycomp convert` or `tinycomp quantize`"]
    assert not out.exists()
    result = run_cli(["strip", pipeline["model_int8_tflite"], "-o", pipeline["model_int8_tflite"]])
    assert result.exit_code == 1 and "output path is the same as an input" in result.output


def test_compress_strip(pipeline, tmp_path):
    out = tmp_path / "compressed_stripped.tflite"
    result = ok(["compress", pipeline["clustered_int8_tflite"], "--spec", pipeline["compression_yaml"], "-o", out,
                 "--strip", "--verify-samples", "4"])
    assert out.stat().st_size < pipeline["compressed_tflite"].stat().st_size
    assert "Stripped: " in result.output
    assert "TFLM outputs identical to the original on 4 random inputs" in result.output
    assert _decode_ops(_read(out)) == _decode_ops(_read(pipeline["compressed_tflite"])) > 0


def test_strip_export_report_do_not_import_tensorflow(pipeline):
    code = ("import sys\n"
            "from tinycomp.tflite.strip import strip_model\n"
            "from tinycomp.export import to_c_source\n"
            "import tinycomp.report, tinycomp.commands.strip, tinycomp.commands.export, tinycomp.commands.report\n"
            f"data = open({str(pipeline['compressed_tflite'])!r}, 'rb').read()\n"
            "to_c_source(strip_model(data).data)\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
