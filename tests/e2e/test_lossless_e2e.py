"""HUFFMAN and PRUNE in TFLM: `compress --spec` with them, `compress --lossless`, slicing, and bad specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import deprecated_opcodes, ok, one_error_line, run_cli


def _sparse(model, fraction: float) -> None:
    """Zero the smallest `fraction` of every kernel by magnitude (what pruning leaves)."""
    weights = []
    for w in model.get_weights():
        if w.ndim >= 2:
            w = np.where(np.abs(w) < np.quantile(np.abs(w), fraction), 0, w)
        weights.append(w)
    model.set_weights(weights)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A conv + depthwise + dense int8 file with 80%-zero kernels, its int16x8 twin, and the old-opcode form."""
    import tf_keras

    from tinycomp.convert import quantize

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Input(shape=(12, 12, 2)),
        tf_keras.layers.Conv2D(16, 3, activation="relu", name="conv2d"),
        tf_keras.layers.DepthwiseConv2D(3, activation="relu", name="depthwise"),
        tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(48, activation="relu", name="dense"),
        tf_keras.layers.Dense(4, name="dense_1"),
    ])
    _sparse(model, 0.8)
    calibration = np.random.default_rng(0).uniform(-1, 1, (16, 12, 12, 2)).astype(np.float32)
    contents = {"int8": quantize(model, method="int8", io="int8", calibration=calibration),
                "int16x8": quantize(model, method="int16x8", io="float32", calibration=calibration)}
    contents["old"] = deprecated_opcodes(contents["int8"])
    d = tmp_path_factory.mktemp("lossless")
    paths = {}
    for name, content in contents.items():
        paths[name] = d / f"{name}.tflite"
        paths[name].write_bytes(content)
    return paths


def _weights(path: Path) -> list:
    from tinycomp.tflite.find_tensors import weight_tensors
    from tinycomp.tflite.model import read_tflite

    return weight_tensors(read_tflite(path).model)


def _spec(path: Path, method: str, tensors: list[int]) -> Path:
    lines = ["tensors:"] + [f"  - {{subgraph: 0, tensor: {t}, compression: [{{{method}: }}]}}" for t in tensors]
    path.write_text("\n".join(lines) + "\n")
    return path


def _decode_types(path: Path) -> list[int]:
    """Byte 0 of every TFLM_DECODE operator's ancillary inputs: the DECODE type TFLM dispatches on."""
    from tinycomp.tflite.model import read_tflite

    model = read_tflite(path).model
    return sorted(op.inputs[i].buffer.data[0] for sg in model.subgraphs for op in sg.operators
                  if op.custom_code == "TFLM_DECODE" for i in range(1, len(op.inputs), 2))


@pytest.mark.parametrize(("method", "code"), [("huffman", 1), ("pruning", 2)])
@pytest.mark.parametrize("kind", ["int8", "int16x8"])
def test_every_weight_decodes_bit_identically_in_tflm(files, tmp_path, method, code, kind):
    """`compress` verifies TFLM outputs on random inputs; the file holds the DECODE type asked for."""
    weights = [w.index for w in _weights(files[kind])]
    out = tmp_path / "out.tflite"
    result = ok(["compress", files[kind], "--spec", _spec(tmp_path / "s.yaml", method, weights), "-o", out,
                 "--verify-samples", "12"])
    assert "TFLM outputs identical to the original on 12 random inputs" in result.output
    assert _decode_types(out) == [code] * len(weights)
    assert out.stat().st_size < files[kind].stat().st_size


@pytest.mark.parametrize("method", ["huffman", "pruning"])
def test_decode_budget_slices_every_decoder(files, tmp_path, method):
    dense = next(w for w in _weights(files["int8"]) if w.op == "FULLY_CONNECTED" and w.shape[0] == 48)
    out = tmp_path / "sliced.tflite"
    result = ok(["compress", files["int8"], "--spec", _spec(tmp_path / "s.yaml", method, [dense.index]),
                 "--decode-budget", "4KiB", "-o", out, "--verify-samples", "8"])
    assert "Sliced tensor" in result.output and "identical to the original on 8" in result.output
    types = _decode_types(out)
    assert len(types) > 1 and set(types) == {2 if method == "pruning" else 1}
    if method == "huffman":  # the slices are coded with the kernel's code: one ancillary tensor serves them all
        assert len(_ancillary_tensors(out)) == 1
    else:  # PRUNE slices keep their own values
        assert len(_ancillary_tensors(out)) == len(types)


def _ancillary_tensors(path: Path) -> set[int]:
    from tinycomp.tflite.model import read_tflite

    subgraph = read_tflite(path).model.subgraphs[0]
    return {id(op.inputs[i]) for op in subgraph.operators if op.custom_code == "TFLM_DECODE"
            for i in range(1, len(op.inputs), 2)}


@pytest.mark.parametrize("kind", ["int8", "int16x8", "old"])
def test_lossless_picks_per_tensor_and_is_never_larger(files, tmp_path, kind):
    out = tmp_path / "lossless.tflite"
    result = ok(["compress", files[kind], "--lossless", "-o", out, "--verify-samples", "8"])
    assert "Exact encodings per weight tensor" in result.output and "By method:" in result.output
    assert "identical to the original on 8 random inputs" in result.output
    assert out.stat().st_size < files[kind].stat().st_size
    assert set(_decode_types(out)) <= {0, 1, 2} and _decode_types(out)
    for w in _weights(files[kind]):  # every tensor's row names what it got
        assert f"│ {w.index:>6} │" in result.output or f"│     {w.index} │" in result.output


def test_lossless_choice_is_measured_in_the_file(files):
    """The chosen method saves the most bytes of the written file, and the saving adds up."""
    from tinycomp.tflite.compress import compress_model
    from tinycomp.tflite.lossless import choose

    data = files["int8"].read_bytes()
    choice = choose(data)
    chosen = [t for t in choice.tensors if t.chosen]
    assert chosen
    for t in chosen:
        best = t.trial(t.chosen)
        assert best.growth is not None and best.growth < 0
        assert all(x.growth is None or x.growth >= best.growth for x in t.trials)
    total = len(compress_model(data, choice.spec).data)
    predicted = choice.base_bytes + sum(t.trial(t.chosen).growth for t in chosen)
    assert abs(total - predicted) <= 16 * len(chosen)  # buffer alignment only


def test_lossless_with_strip_is_no_larger_than_strip(files, tmp_path):
    out, stripped = tmp_path / "ls.tflite", tmp_path / "s.tflite"
    ok(["strip", files["int8"], "-o", stripped])
    result = ok(["compress", files["int8"], "--lossless", "--strip", "-o", out, "--verify-samples", "4"])
    assert "Stripped:" in result.output
    assert out.stat().st_size < stripped.stat().st_size


def test_a_decoder_that_lacks_the_type_is_one_error_line(files, tmp_path):
    from tinycomp.tflite.model import read_tflite

    model = read_tflite(files["int8"]).model
    conv = next(op for op in model.subgraphs[0].operators if op.opcode_name == "CONV_2D")
    bias = conv.inputs[2].index
    out = tmp_path / "never.tflite"
    result = run_cli(["compress", files["int8"], "--spec", _spec(tmp_path / "s.yaml", "huffman", [bias]), "-o", out])
    one_error_line(result, 1, rf"tensor {bias} \(.*\): TFLM's Huffman decoder writes int8 or int16 tensors, not "
                              rf"int32 \(.*s.yaml: tensors\[0\].compression\[0\].huffman\) — use lut or leave the "
                              "tensor out")
    assert not out.exists()
    both = run_cli(["compress", files["int8"], "--lossless", "--spec", tmp_path / "s.yaml", "-o", out])
    one_error_line(both, 2, r"give exactly one of --spec or --lossless \(compress\) — .*")
    assert not out.exists()


def test_breakdown_counts_bytes_by_decoder(files, tmp_path):
    """bench-summary's breakdown reads each DECODE's type: the weights of a lossless file by method."""
    from tinycomp.commands.bench_summary import by_method
    from tinycomp.tflite.breakdown import byte_breakdown
    from tinycomp.tflite.lossless import choose
    from tinycomp.tflite.model import read_tflite

    out = tmp_path / "lossless.tflite"
    ok(["compress", files["int8"], "--lossless", "--no-verify", "-o", out])
    f = read_tflite(out)
    b = byte_breakdown(f.model, len(f.data))
    choice = choose(files["int8"].read_bytes())
    expected = {t.chosen or "raw" for t in choice.tensors}
    assert set(b.bytes_by_method()) == expected
    assert sum(n for n, _ in b.bytes_by_method().values()) == len(choice.tensors)
    for method, (n, stored) in b.bytes_by_method().items():
        assert f"{method} {n}: {stored:,}" in by_method(b)
    assert all(w.stored_bytes >= w.ideal_bytes for w in b.weights)


def test_palettize_and_find_tensors_write_the_smallest_exact_method(files, tmp_path):
    """With --smallest-exact, a sparse palettized kernel gets huffman or pruning; compress decodes it exactly."""
    from tinycomp.specs import parse_compression_spec

    out = tmp_path / "p.tflite"
    ok(["palettize", files["int8"], "--bits", "4", "--smallest-exact", "-o", out])
    spec = parse_compression_spec((tmp_path / "p.yaml").read_text())
    assert {t.method for t in spec.tensors} & {"huffman", "pruning"}
    lut_only = tmp_path / "q.tflite"
    ok(["palettize", files["int8"], "--bits", "4", "-o", lut_only])
    assert {t.method for t in parse_compression_spec((tmp_path / "q.yaml").read_text()).tensors} == {"lut"}
    result = ok(["compress", out, "--spec", tmp_path / "p.yaml", "-o", tmp_path / "c.tflite", "--verify-samples", "6"])
    assert "identical to the original on 6" in result.output
    ok(["compress", lut_only, "--spec", tmp_path / "q.yaml", "-o", tmp_path / "d.tflite", "--no-verify"])
    assert (tmp_path / "c.tflite").stat().st_size < (tmp_path / "d.tflite").stat().st_size
    found = ok(["find-tensors", files["int8"], "--all", "--smallest-exact", "-o", tmp_path / "f.yaml"])
    assert "huffman (LUT:" in found.output or "pruning (LUT:" in found.output


def test_int16_tensors_decode_exactly_in_tflm():
    """An int16 constant (ADD(0, w) == w) Huffman-coded with 32-bit tables, and pruned, decodes exactly in TFLM."""
    import warnings

    from tflite_micro import compression, runtime
    from tflite_micro.tensorflow.lite.micro.compression import model_editor as editor
    from tflite_micro.tensorflow.lite.micro.compression import spec
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as tflite

    from tinycomp.tflite.private import apply_flatbuffer_alignment, installed_encoders

    rng = np.random.default_rng(0)
    values = (np.round(rng.laplace(0, 300, (1, 64))) * (rng.random((1, 64)) < 0.5)).astype(np.int16)

    def tensor(name, data=None):
        return editor.Tensor(shape=(1, 64), dtype=tflite.TensorType.INT16, name=name, data=data,
                             quantization=editor.Quantization(scales=[1.0], zero_points=[0]))

    x, w, y = tensor("x"), tensor("w", values), tensor("y")
    add = editor.Operator(opcode=tflite.BuiltinOperator.ADD, inputs=[x, w], outputs=[y])
    graph = editor.Subgraph(tensors=[x, w, y], operators=[add], inputs=[x], outputs=[y])
    model = apply_flatbuffer_alignment(bytes(editor.Model(subgraphs=[graph]).build()))

    def run(data: bytes) -> np.ndarray:
        interpreter = runtime.Interpreter.from_bytes(bytes(data), arena_size=1 << 16)
        interpreter.set_input(np.zeros((1, 64), np.int16), 0)
        interpreter.invoke()
        return interpreter.get_output(0)

    assert np.array_equal(run(model), values)
    for method, header in ((spec.HuffmanCompression(), (1, 1)), (spec.PruningCompression(), (2, 0))):
        with installed_encoders(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = bytes(compression.compress(model, [spec.Tensor(subgraph=0, tensor=1, compression=[method])]))
        [ancillary] = [t for t in editor.read(out).subgraphs[0].tensors if (t.name or "").endswith("_ancillary")]
        assert (ancillary.buffer.data[0], ancillary.buffer.data[5] & 1) == header  # type; 32-bit tables
        assert np.array_equal(run(out), values)


def test_lossless_does_not_import_tensorflow(files, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "l.tflite"
    code = ("import sys\nfrom click.testing import CliRunner\nfrom tinycomp.cli import cli\n"
            f"r = CliRunner().invoke(cli, ['compress', {str(files['int8'])!r}, '--lossless', '--verify-samples', '2', "
            f"'-o', {str(out)!r}])\nassert r.exit_code == 0, r.output\n"
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("method", ["huffman", "pruning"])
def test_decoded_copies_keep_only_what_tflm_reads(files, tmp_path, method):
    """A HUFFMAN or PRUNE DECODE output keeps its scales, not min/max, and one zero point when all are equal."""
    from tinycomp.tflite.model import read_tflite
    from tinycomp.tflite.private import raw

    weights = [w.index for w in _weights(files["int8"])]
    out = tmp_path / "out.tflite"
    ok(["compress", files["int8"], "--spec", _spec(tmp_path / "s.yaml", method, weights), "-o", out,
        "--verify-samples", "8"])
    decoded = [t for sg in read_tflite(out).model.subgraphs for op in sg.operators
               if op.custom_code == "TFLM_DECODE" for t in op.outputs]
    assert len(decoded) == len(weights)
    for t in decoded:
        q = raw(t).quantization
        assert q.scale is not None and len(q.scale) >= 1
        assert q.min is None and q.max is None
        assert len(q.zeroPoint) == 1  # int8 weights: every zero point is 0


def test_lossless_under_a_decode_budget_weighs_flash_and_arena(files, tmp_path):
    """Each trial is measured on the sliced file, flash and TFLM arena; the choice saves the most of both."""
    from tinycomp.tflite.lossless import choose

    choice = choose(files["int8"].read_bytes(), decode_budget=4096)
    assert choice.base_arena and choice.decode_budget == 4096
    measured = [x for t in choice.tensors for x in t.trials if x.growth is not None]
    assert measured and all(x.arena_growth is not None for x in measured)
    assert any(x.arena_growth > 0 for x in measured)  # a decoded copy and its DECODE cost arena
    for t in choice.tensors:
        savings = [x.saving for x in t.trials if x.saving is not None]
        if t.chosen:
            assert t.trial(t.chosen).saving == max(savings) > 0
        else:
            assert all(s <= 0 for s in savings)
    out = tmp_path / "budget.tflite"
    result = ok(["compress", files["int8"], "--lossless", "--decode-budget", "4KiB", "-o", out, "--verify-samples", "8"])
    assert "TFLM arena bytes it gains" in result.output and "identical to the original on 8" in result.output


def test_decode_operators_fold_into_the_one_before_when_the_arena_says_so(files, tmp_path):
    from tinycomp.tflite.compress import verify_identical
    from tinycomp.tflite.decode_merge import decode_count, merge_decodes, merged

    weights = [w.index for w in _weights(files["int8"])]
    out = tmp_path / "pruned.tflite"
    ok(["compress", files["int8"], "--spec", _spec(tmp_path / "s.yaml", "pruning", weights), "-o", out, "--no-verify"])
    data = out.read_bytes()
    count = decode_count(data)
    assert count == len(weights) >= 3
    folded = merged(data, [1, 2])
    assert decode_count(folded) == count - 2
    assert verify_identical(files["int8"].read_bytes(), folded, 8) == 8
    calls = []

    def arenas(values):  # the base, then each merge alone; then the paying ones together
        calls.append(len(values))
        return [100, 90, 101, 95][:len(values)] if len(calls) == 1 else [together]

    together = 85
    result = merge_decodes(data, arenas)
    assert (result.merged, result.arena_before, result.arena_after) == (2, 100, 85)
    assert decode_count(result.data) == count - 2 and calls == [count, 1]
    together, calls = 92, []
    result = merge_decodes(data, arenas)
    assert (result.merged, result.arena_after) == (1, 90) and decode_count(result.data) == count - 1
