"""Bad inputs across the subcommands: each ends in one `Error:` line, the right exit code and no output.

Every case builds its arguments from the session `pipeline` artifacts and a fresh tmp dir, runs
the CLI in-process, and checks (1) the exit code (1 for errors, 2 for usage errors), (2) the
exact `Error: <what> (<where>) — <what to do>` line (a regex where a path or library message
varies), (3) that no Python traceback was printed and (4) that the `-o`/`--json` target does not
exist afterwards (or, when the target is an input, is byte-for-byte unchanged).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from helpers import run_cli


def test_corpus_is_big_enough():
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


# ---------------------------------------------------------------- helpers


def tensors_of(path: Path) -> dict[str, int]:
    """Indices of the interesting tensors of the pipeline's int8 model, found through the graph."""
    from tinycomp.tflite.model import read_tflite

    model = read_tflite(path).model
    sg = model.subgraphs[0]
    found: dict[str, int] = {"count": len(sg.tensors)}
    for op in sg.operators:
        name = op.opcode_name
        if name == "RESHAPE" and len(op.inputs) > 1 and op.inputs[1] is not None:
            found["reshape_shape"] = op.inputs[1].index
        if name == "CONV_2D" and "activation" not in found:
            found["activation"] = op.outputs[0].index
            found["conv2d_weights"] = op.inputs[1].index  # unclustered first conv
        if name == "FULLY_CONNECTED" and "dense_weights" not in found:
            found["dense_weights"] = op.inputs[1].index
    return found


def lut_spec(tensor, bits="4", layout="per_channel:\n            axis: 0", subgraph="0", extra="") -> str:
    return (f"tensors:\n  - subgraph: {subgraph}\n    tensor: {tensor}\n    compression:\n      - lut:\n"
            f"          index_bitwidth: {bits}\n          {layout}\n{extra}")


def save_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def tiny_arrays(p) -> dict[str, np.ndarray]:
    with np.load(p["data"]) as f:
        return {k: f[k] for k in f.files}


@dataclass
class Ctx:
    p: dict  # pipeline paths
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    t: dict  # tensor indices of clustered_int8

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def spec(self, text: str, name: str = "spec.yaml") -> Path:
        return self.write(name, text)

    def npz(self, **changes) -> Path:
        arrays = tiny_arrays(self.p)
        for key, value in changes.items():
            if value is None:
                arrays.pop(key)
            else:
                arrays[key] = value
        return save_npz(self.tmp / "bad.npz", **arrays)


@dataclass
class Case:
    id: str
    build: Callable[[Ctx], tuple[list, Path]]  # → (args, output path that must not appear / must not change)
    error: str  # regex for the text after "Error: ", matched in full
    code: int = 1


P = lambda ctx: ctx.p  # noqa: E731


def _out(ctx: Ctx, name: str = "out.tflite") -> Path:
    return ctx.tmp / name


def _h5(ctx: Ctx) -> Path:
    return ctx.p["model_h5"]


def _int8(ctx: Ctx) -> Path:
    return ctx.p["clustered_int8_tflite"]


def _compress(ctx: Ctx, spec_text: str, model: Path | None = None, out: Path | None = None):
    out = out or _out(ctx)
    return ["compress", model or _int8(ctx), "--spec", ctx.spec(spec_text), "-o", out, "--no-verify"], out


def _find(ctx: Ctx, model: Path, *extra, out: Path | None = None):
    out = out or _out(ctx, "compression.yaml")
    return ["find-tensors", model, "-o", out, *extra], out


def _quantize(ctx: Ctx, npz: Path, *extra):
    out = _out(ctx, "q.tflite")
    return ["quantize", _h5(ctx), "-o", out, "--data", npz, "--calibration-samples", "5", *extra], out


def _eval(ctx: Ctx, model: Path, *extra, npz: Path | None = None):
    out = _out(ctx, "eval.json")
    return ["eval", model, "--limit", "5", "--jobs", "1", "--data", npz or ctx.p["data"], "--json", out, *extra], out


def _truncated(ctx: Ctx) -> Path:
    data = _int8(ctx).read_bytes()
    return ctx.write("truncated.tflite", data[: len(data) // 3])


def _random_tflite(ctx: Ctx) -> Path:
    return ctx.write("random.tflite", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _missing(ctx: Ctx, name: str) -> Path:
    return ctx.tmp / name


def _dir(ctx: Ctx) -> Path:
    d = ctx.tmp / "a_directory.h5"
    d.mkdir()
    return d


def _empty(ctx: Ctx, name: str) -> Path:
    return ctx.write(name, b"")


def _readonly_dir(ctx: Ctx) -> Path:
    """A directory that reports itself unwritable (as root, chmod alone does not stop writes)."""
    d = ctx.tmp / "readonly"
    d.mkdir()
    d.chmod(0o555)
    real_access = os.access
    ctx.monkeypatch.setattr("tinycomp.fileio.os.access",
                            lambda path, mode, *a, **k: False if (Path(path) == d and mode & os.W_OK)
                            else real_access(path, mode, *a, **k))
    return d


ANY_PATH = r"[^()]+"
PIPE = r"[^()]*"

CASES = [
    # ------------------------------------------------ input files (convert / quantize / find-tensors / compress)
    Case("convert-missing-file",
         lambda c: (["convert", _missing(c, "nope.h5"), "-o", _out(c)], _out(c)),
         rf"Keras model not found \({ANY_PATH}nope\.h5\) — check the path"),
    Case("convert-directory",
         lambda c: (["convert", _dir(c), "-o", _out(c)], _out(c)),
         rf"directory is not a SavedModel \(no saved_model\.pb\) \({ANY_PATH}a_directory\.h5\) "
         r"— give a Keras model: an \.h5 or \.keras file \(tf_keras or Keras 3\) or a SavedModel directory"),
    Case("convert-empty-file",
         lambda c: (["convert", _empty(c, "empty.h5"), "-o", _out(c)], _out(c)),
         rf"Keras model is empty \({ANY_PATH}empty\.h5\) — re-create it with the step that writes it"),
    Case("convert-tflite-given-for-h5",
         lambda c: (["convert", _int8(c), "-o", _out(c)], _out(c)),
         rf"this is a \.tflite flatbuffer, not a Keras model \({ANY_PATH}\) "
         r"— give a Keras model: an \.h5 or \.keras file \(tf_keras or Keras 3\) or a SavedModel directory"),
    Case("quantize-random-bytes-h5",
         lambda c: (["quantize", c.write("random.h5", b"\x00junk" * 100), "-o", _out(c), "--method", "dynamic"],
                    _out(c)),
         rf"not a Keras model \(neither \.h5, \.keras nor a SavedModel directory\) \({ANY_PATH}random\.h5\) "
         r"— give a Keras model: an \.h5 or \.keras file \(tf_keras or Keras 3\) or a SavedModel directory"),
    Case("convert-truncated-h5",
         lambda c: (["convert", c.write("cut.h5", _h5(c).read_bytes()[:3000]), "-o", _out(c)], _out(c)),
         rf"cannot load Keras model: .+ \({ANY_PATH}cut\.h5\) — give an \.h5 written by `tinycomp train` or "
         r"`cluster`, or by tf_keras model\.save"),
    Case("compress-missing-model",
         lambda c: _compress(c, lut_spec(c.t["dense_weights"]), model=_missing(c, "gone.tflite")),
         rf"\.tflite model not found \({ANY_PATH}gone\.tflite\) — check the path"),
    Case("compress-empty-tflite",
         lambda c: _compress(c, lut_spec(c.t["dense_weights"]), model=_empty(c, "empty.tflite")),
         rf"\.tflite model is empty \({ANY_PATH}empty\.tflite\) — re-create it with the step that writes it"),
    Case("compress-truncated-tflite",
         lambda c: _compress(c, lut_spec(c.t["dense_weights"]), model=_truncated(c)),
         rf"malformed \.tflite flatbuffer: an offset points outside its [0-9,]+ bytes, so the file is truncated or corrupt \({ANY_PATH}truncated\.tflite\) — "
         r"re-create it with `tinycomp convert` or `tinycomp quantize`"),
    Case("find-tensors-random-bytes-tflite",
         lambda c: _find(c, _random_tflite(c), "--all"),
         rf"not a \.tflite flatbuffer \(no TFL3 file identifier\) \({ANY_PATH}random\.tflite\) — "
         r"re-create it with `tinycomp convert` or `tinycomp quantize`"),
    Case("compress-h5-given-for-tflite",
         lambda c: _compress(c, lut_spec(c.t["dense_weights"]), model=_h5(c)),
         rf"this is a Keras \.h5 model, not a \.tflite flatbuffer \({ANY_PATH}model\.h5\) — convert it first: "
         r"`tinycomp convert` or `tinycomp quantize`"),
    Case("eval-truncated-tflite",
         lambda c: _eval(c, _truncated(c)),
         rf"malformed \.tflite flatbuffer: an offset points outside its [0-9,]+ bytes, so the file is truncated or corrupt \({ANY_PATH}truncated\.tflite\) — "
         r"re-create it with `tinycomp convert` or `tinycomp quantize`"),
    # ------------------------------------------------ layers and clusters
    Case("cluster-unknown-layer",
         lambda c: (["cluster", _h5(c), "--layer", "nosuch=4", "-o", _out(c, "c.h5"), "--data", c.p["data"],
                     "--epochs", "1"], _out(c, "c.h5")),
         r"model has no layer 'nosuch' \(layers\[0\]\.name: nosuch\) — the model's layers are: conv2d, .*dense_2"),
    Case("cluster-one-cluster",
         lambda c: (["cluster", _h5(c), "--layer", "dense=1", "-o", _out(c, "c.h5")], _out(c, "c.h5")),
         r"1 clusters is out of range \(--layer dense=1\) — use 2–256 clusters"),
    Case("cluster-more-clusters-than-weights",
         lambda c: (["cluster", _h5(c), "--layer", "dense_2=256", "-o", _out(c, "c.h5"), "--data", c.p["data"],
                     "--epochs", "1"], _out(c, "c.h5")),
         r"256 clusters for 256 kernel weights in 'dense_2' \(layers\[0\]\.name: dense_2\) — "
         r"use fewer than 256 clusters"),
    Case("find-tensors-unknown-layer",
         lambda c: _find(c, _int8(c), "--layer", "nosuch"),
         rf"no weight tensor of layer 'nosuch' in the model \({ANY_PATH}clustered_int8\.tflite\) — "
         r"layers with weights here: conv2d, conv2d_1, dense, dense_1, dense_2"),
    Case("find-tensors-h5-given-for-tflite",
         lambda c: _find(c, _h5(c), "--layer", "dense"),
         rf"this is a Keras \.h5 model, not a \.tflite flatbuffer \({ANY_PATH}model\.h5\) — convert it first: "
         r"`tinycomp convert` or `tinycomp quantize`"),
    # ------------------------------------------------ specs
    Case("cluster-yaml-syntax-error",
         lambda c: (["cluster", _h5(c), "--spec", c.spec("layers:\n  - name: dense\n   clusters: [8\n"),
                     "-o", _out(c, "c.h5")], _out(c, "c.h5")),
         rf"YAML syntax error: .+ \({ANY_PATH}spec\.yaml:\d+:\d+\) — fix the YAML syntax"),
    Case("find-tensors-clustering-unknown-key",
         lambda c: _find(c, _int8(c), "--clustering", c.spec("layers:\n  - name: dense\n    clusterz: 8\n")),
         rf"unknown key 'clusterz' \({ANY_PATH}spec\.yaml: layers\[0\]\.clusterz\) — allowed keys here: "
         r"name, clusters, init, per_channel, preserve_sparsity"),
    Case("compress-unknown-key-index_bitwdith",
         lambda c: _compress(c, lut_spec(c.t["dense_weights"]).replace("index_bitwidth", "index_bitwdith")),
         rf"unknown key 'index_bitwdith' \({ANY_PATH}spec\.yaml: tensors\[0\]\.compression\[0\]\.lut\."
         r"index_bitwdith\) — allowed keys here: index_bitwidth, per_tensor, per_channel"),
    Case("compress-empty-spec",
         lambda c: _compress(c, "# nothing here\n"),
         rf"spec is empty \({ANY_PATH}spec\.yaml\) — see `tinycomp --help` of the command for an example"),
    Case("compress-tensor-negative",
         lambda c: _compress(c, lut_spec(-1)),
         rf"-1 is out of range \({ANY_PATH}spec\.yaml: tensors\[0\]\.tensor\) — use a value >= 0"),
    Case("compress-tensor-past-end",
         lambda c: _compress(c, lut_spec(999)),
         rf"tensor 999 does not exist; the subgraph has \d+ tensors \({ANY_PATH}spec\.yaml: tensors\[0\]\.tensor\) — "
         r"is this spec for a different model\? run `tinycomp find-tensors` on this model"),
    Case("compress-subgraph-out-of-range",
         lambda c: _compress(c, lut_spec(c.t["dense_weights"], subgraph=3)),
         rf"subgraph 3 does not exist; the model has 1 \({ANY_PATH}spec\.yaml: tensors\[0\]\.subgraph\) — "
         r"is this spec for a different model\? run `tinycomp find-tensors` on this model"),
    *[Case(f"compress-bitwidth-{bits}",
           lambda c, bits=bits: _compress(c, lut_spec(c.t["dense_weights"], bits=bits)),
           rf"{bits} is out of range \({ANY_PATH}spec\.yaml: tensors\[0\]\.compression\[0\]\.lut\.index_bitwidth\) — "
           r"use a value in 1–7")
      for bits in (0, 8, 99)],
    Case("compress-bitwidth-not-integer",
         lambda c: _compress(c, lut_spec(c.t["dense_weights"], bits="four")),
         rf"expected an integer, got str 'four' \({ANY_PATH}spec\.yaml: tensors\[0\]\.compression\[0\]\.lut\."
         r"index_bitwidth\)"),
    Case("compress-both-layouts",
         lambda c: _compress(c, lut_spec(c.t["dense_weights"], layout="per_tensor:\n          per_channel: {axis: 0}")),
         rf"per_tensor and per_channel are contradictory \({ANY_PATH}spec\.yaml: tensors\[0\]\.compression\[0\]\.lut\)"
         r" — give exactly one"),
    Case("compress-activation-tensor",
         lambda c: _compress(c, lut_spec(c.t["activation"])),
         rf"tensor \d+ \([^()]+\) is not a constant: the model computes it at run time \({ANY_PATH}spec\.yaml: "
         r"tensors\[0\]\.tensor\) — compress weight tensors; `tinycomp find-tensors` lists them"),
    Case("compress-parameter-input-must-stay-constant",
         lambda c: _compress(c, lut_spec(1, layout="per_tensor:"), model=c.p["transpose_tflite"]),
         rf"tensor 1 \([^()]*\) must stay constant: TRANSPOSE rejects a non-constant 'perm' at input 1 "
         rf"\(operator 1\) \({ANY_PATH}spec\.yaml: tensors\[0\]\.tensor\) — compress only "
         r"filter/weight inputs of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED"),
    Case("compress-too-many-unique-values",
         lambda c: _compress(c, lut_spec(c.t["conv2d_weights"], bits=1)),
         rf"tensor \d+ \(sequential/conv2d/Conv2D\) has up to \d+ unique values per channel; index_bitwidth 1 holds 2 "
         rf"\({ANY_PATH}spec\.yaml: tensors\[0\]\.compression\[0\]\.lut\.index_bitwidth\) — use index_bitwidth \d"),
    Case("compress-same-tensor-twice",
         lambda c: _compress(c, lut_spec(c.t["dense_weights"]) + lut_spec(c.t["dense_weights"]).replace("tensors:\n", "")),
         rf"tensor \(subgraph, index\) \(0, \d+\) is listed twice \({ANY_PATH}spec\.yaml: tensors\[1\]\) — "
         r"list each tensor \(subgraph, index\) once"),
    Case("compress-spec-for-different-model",
         lambda c: _compress(c, c.p["compression_yaml"].read_text(), model=c.p["model_int8_tflite"]),
         rf"tensor \d+ \([^()]+\) has .*unique values.*; index_bitwidth \d holds \d+ \({ANY_PATH}spec\.yaml: "
         r"tensors\[0\]\.compression\[0\]\.lut\.index_bitwidth\) — .+"),
    # ------------------------------------------------ datasets
    Case("quantize-npz-missing-keys",
         lambda c: _quantize(c, c.npz(y_test=None)),
         rf"dataset is missing y_test \({ANY_PATH}bad\.npz\) — an \.npz needs the arrays x_train, y_train, x_test, "
         r"y_test"),
    Case("quantize-npz-wrong-label-shape",
         lambda c: _quantize(c, c.npz(y_train=np.zeros((600, 2), np.int64))),
         rf"y_train has shape \(600, 2\); expected \(600,\), one label per x_train row \({ANY_PATH}bad\.npz\)"),
    Case("quantize-npz-negative-label",
         lambda c: _quantize(c, c.npz(y_train=np.full(600, -1, np.int64))),
         rf"y_train has a negative label \(-1\) \({ANY_PATH}bad\.npz\) — labels must be 0\.\.N-1"),
    Case("quantize-npz-labels-beyond-model-outputs",
         lambda c: _quantize(c, c.npz(y_train=np.arange(600) % 9, y_test=np.arange(200) % 9)),
         rf"the data has labels up to 8 but the model has 4 outputs \({ANY_PATH}model\.h5\) — "
         r"use the dataset the model was trained on"),
    Case("quantize-npz-input-shape-mismatch",
         lambda c: _quantize(c, c.npz(x_train=np.zeros((600, 28, 28), np.uint8), x_test=np.zeros((200, 28, 28), np.uint8))),
         rf"the data's rows have shape \(28, 28, 1\) but the model expects \(16, 16, 1\) \({ANY_PATH}model\.h5\) — "
         r"use the dataset the model was trained on"),
    Case("quantize-npz-not-a-zip",
         lambda c: _quantize(c, c.write("junk.npz", b"PK\x03\x04 not really a zip" * 10)),
         rf"not a readable \.npz file: .+ \({ANY_PATH}junk\.npz\) — save it with numpy\.savez\(path, x_train=\.\.\., "
         r"y_train=\.\.\., x_test=\.\.\., y_test=\.\.\.\)"),
    Case("quantize-zero-calibration-samples",
         lambda c: (["quantize", _h5(c), "-o", _out(c), "--calibration-samples", "0"], _out(c)),
         r"Invalid value for '--calibration-samples': 0 is not in the range x>=1 \(tinycomp quantize\) — "
         r"see 'tinycomp quantize --help'", 2),
    Case("eval-npz-input-shape-mismatch",
         lambda c: _eval(c, _int8(c), npz=c.npz(x_train=np.zeros((600, 28, 28), np.uint8),
                                                 x_test=np.zeros((200, 28, 28), np.uint8))),
         rf"the data's rows have shape \(28, 28, 1\) but the model expects \(16, 16, 1\) \({ANY_PATH}\.tflite\) — "
         r"use the dataset the model was trained on"),
    Case("eval-limit-zero",
         lambda c: _eval(c, _int8(c), "--limit", "0"),
         r"Invalid value for '--limit': 0 is not in the range x>=1 \(tinycomp eval\) — see 'tinycomp eval --help'", 2),
    Case("eval-bad-flash-budget",
         lambda c: _eval(c, _int8(c), "--flash-budget", "lots"),
         r"Invalid value for '--flash-budget': cannot read size 'lots': write e\.g\. 65536, 64KiB, 100KB or 1MiB "
         r"\(tinycomp eval\) — see 'tinycomp eval --help'", 2),
    # ------------------------------------------------ outputs
    Case("convert-output-directory-missing",
         lambda c: (["convert", _h5(c), "-o", c.tmp / "no" / "such" / "dir" / "m.tflite"],
                    c.tmp / "no" / "such" / "dir" / "m.tflite"),
         rf"output directory does not exist \({ANY_PATH}no/such/dir\) — create it first \(mkdir -p\)"),
    Case("find-tensors-output-directory-read-only",
         lambda c: _find(c, _int8(c), "--all", out=_readonly_dir(c) / "compression.yaml"),
         rf"output directory is not writable \({ANY_PATH}readonly\) — choose another -o/--output"),
    Case("compress-output-is-a-directory",
         lambda c: _compress(c, lut_spec(c.t["dense_weights"]), out=_dir(c)),
         rf"output path is a directory \({ANY_PATH}a_directory\.h5\) — give a file name, e\.g\. -o build/model\.tflite"),
    Case("convert-output-equals-input",
         lambda c: (["convert", _h5(c), "-o", _h5(c)], _h5(c)),
         rf"output path is the same as an input \({ANY_PATH}model\.h5\) — write to a different file"),
    Case("compress-output-equals-spec",
         lambda c: (lambda spec: (["compress", _int8(c), "--spec", spec, "-o", spec], spec))(
             c.spec(lut_spec(c.t["dense_weights"]))),
         rf"output path is the same as an input \({ANY_PATH}spec\.yaml\) — write to a different file"),
    Case("eval-json-equals-model",
         lambda c: (lambda m: (["eval", m, "--limit", "5", "--data", c.p["data"], "--json", m], m))(
             c.write("copy.tflite", _int8(c).read_bytes())),
         rf"output path is the same as an input \({ANY_PATH}copy\.tflite\) — write to a different file"),
    # ------------------------------------------------ usage
    Case("cluster-two-layer-selections",
         lambda c: (["cluster", _h5(c), "--all", "8", "--layer", "dense=8", "-o", _out(c, "c.h5")], _out(c, "c.h5")),
         r"choose the layers with exactly one of --spec, --layer or --all \(cluster\) — e\.g\. --spec "
         r"specs/clustering\.yaml", 2),
]


@pytest.fixture(scope="module")
def transpose_tflite(tmp_path_factory) -> Path:
    """An int8 .tflite whose TRANSPOSE takes its permutation from constant tensor 1 (which must stay constant)."""
    import tf_keras

    from tinycomp.convert import quantize

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.layers.Input(shape=(8, 8, 1)), tf_keras.layers.Conv2D(2, 3, name="conv"),
                                 tf_keras.layers.Permute((3, 1, 2), name="permute")])
    calibration = np.random.default_rng(0).uniform(0, 1, (5, 8, 8, 1)).astype(np.float32)
    path = tmp_path_factory.mktemp("transpose") / "transpose_int8.tflite"
    path.write_bytes(quantize(model, method="int8", io="int8", calibration=calibration))
    from tinycomp.tflite.model import read_tflite

    ops = read_tflite(path).model.subgraphs[0].operators
    assert [op.opcode_name for op in ops] == ["CONV_2D", "TRANSPOSE"] and ops[1].inputs[1].index == 1
    return path


@pytest.fixture(scope="module")
def tensor_indices(pipeline) -> dict:
    return tensors_of(pipeline["clustered_int8_tflite"])


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error: ")]


def assert_clean_error(result, code: int, pattern: str) -> None:
    __tracebackhide__ = True
    output = result.output
    assert "Traceback" not in output, output
    assert "internal error" not in output, output
    assert result.exit_code == code, f"exit {result.exit_code}, expected {code}:\n{output}"
    lines = error_lines(output)
    assert len(lines) == 1, f"expected one Error: line:\n{output}"
    assert re.fullmatch(pattern, lines[0][len("Error: "):]), f"\n{lines[0]}\ndoes not match\n{pattern}"


def snapshot(path: Path):
    if path.is_file():
        return path.read_bytes()
    return "dir" if path.is_dir() else None


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, pipeline, tensor_indices, transpose_tflite, tmp_path, monkeypatch):
    ctx = Ctx({**pipeline, "transpose_tflite": transpose_tflite}, tmp_path, monkeypatch, tensor_indices)
    args, target = case.build(ctx)
    before = snapshot(Path(target))
    result = run_cli(args)
    assert_clean_error(result, case.code, case.error)
    assert snapshot(Path(target)) == before, f"{target} was written or changed"
    leftovers = [p.name for p in Path(target).parent.glob(".*.tmp*")] if Path(target).parent.is_dir() else []
    assert not leftovers, f"temporary files left behind: {leftovers}"


# ---------------------------------------------------------------- a previous good target survives

def test_failed_run_keeps_previous_target(pipeline, tensor_indices, tmp_path):
    target = tmp_path / "compressed.tflite"
    good = pipeline["compressed_tflite"].read_bytes()
    target.write_bytes(good)
    spec = tmp_path / "spec.yaml"
    spec.write_text(lut_spec(tensor_indices["activation"]))
    result = run_cli(["compress", pipeline["clustered_int8_tflite"], "--spec", spec, "-o", target, "--no-verify"])
    assert_clean_error(result, 1, r"tensor \d+ .* is not a constant: .*")
    assert target.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compressed.tflite", "spec.yaml"]


def test_failure_while_writing_keeps_previous_target(pipeline, tmp_path, monkeypatch):
    """A failure after the temporary file was opened (here: the rename) leaves the old target and no temp file."""
    target = tmp_path / "compression.yaml"
    target.write_text("previous good spec\n")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tinycomp.fileio.os.replace", broken_replace)
    result = run_cli(["find-tensors", pipeline["clustered_int8_tflite"], "--clustering", pipeline["clustered_yaml"],
                      "-o", target])
    assert_clean_error(result, 1, rf"cannot write output: No space left on device \({ANY_PATH}compression\.yaml\)")
    assert target.read_text() == "previous good spec\n"
    assert [p.name for p in tmp_path.iterdir()] == ["compression.yaml"]


def test_interrupt_keeps_previous_target(pipeline, tmp_path, monkeypatch):
    """Ctrl-C while the output is being written: exit 130, old target intact, no temporary file."""
    target = tmp_path / "model.tflite"
    target.write_bytes(b"previous")
    real_write = Path.write_bytes

    def interrupted(self, data):
        real_write(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", interrupted)
    result = run_cli(["convert", pipeline["model_h5"], "-o", target])
    monkeypatch.undo()
    assert result.exit_code == 130, result.output
    assert error_lines(result.output) == ["Error: interrupted — no output was written"]
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


# ---------------------------------------------------------------- --debug


def test_debug_traceback_on_the_command_line(tmp_path):
    """The real entry point prints a Python traceback with --debug (and none without)."""
    import subprocess
    import sys

    missing = tmp_path / "missing.tflite"
    base = [sys.executable, "-m", "tinycomp"]
    plain = subprocess.run([*base, "find-tensors", missing, "--all", "-o", tmp_path / "c.yaml"],
                           capture_output=True, text=True, timeout=120)
    debug = subprocess.run([*base, "--debug", "find-tensors", missing, "--all", "-o", tmp_path / "c.yaml"],
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().endswith(f"Error: .tflite model not found ({missing}) — check the path")
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr
    assert "InputFileError: .tflite model not found" in debug.stderr


def test_tflm_refusal_is_one_line_with_tflm_reason(pipeline, tmp_path):
    """What TFLM's C++ prints about a model it refuses goes into the Error line, not above it."""
    import subprocess
    import sys

    from tinycomp.tflite.model import model_editor

    editor = model_editor()
    model = editor.read(pipeline["model_int8_tflite"].read_bytes())
    softmax = next(op for op in model.subgraphs[0].operators if op.opcode_name == "SOFTMAX")
    softmax.inputs[0]._fb.type = 7  # INT16: the FULLY_CONNECTED before it no longer matches
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(model.build()))
    run = subprocess.run([sys.executable, "-m", "tinycomp", "eval", bad, "--limit", "4", "--jobs", "1",
                          "--data", pipeline["data"]], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert re.fullmatch(r"Error: the TFLM interpreter refused the model: .*fully_connected\.cc:\d+ "
                        r"input->type != output->type \(INT8 != INT16\).* \(.*bad\.tflite\) — .*", lines[0]), lines[0]
