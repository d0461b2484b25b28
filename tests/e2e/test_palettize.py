"""palettize and plan on real int8 .tflite files (tiny tf_keras models converted with `quantize`):
depthwise kernels on axis 3, per-tensor dense weights, int16x8, files with deprecated_builtin_code;
`compress` takes the written spec as it is; plan's spec, shards and errors. All slow."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import CLASSES, deprecated_opcodes, ok, run_cli
from tinycomp.specs import PerTensor, parse_compression_spec, parse_palettization_spec

# ---------------------------------------------------------------- real int8 files (TensorFlow to build them)

def _train_tiny(model, data) -> None:
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=3, batch_size=32, verbose=0)


@pytest.fixture(scope="module")
def int8_files(tmp_path_factory, tiny_npz) -> dict[str, Path]:
    """Tiny trained CNNs as int8 .tflite files: conv + depthwise + dense (per channel), the same with
    per-tensor dense weights, an int16x8 file, and an old-style file whose operator codes are kept in
    deprecated_builtin_code only (as TensorFlow before 2.4 wrote them)."""
    import tf_keras

    from tinycomp.convert import quantize
    from tinycomp.data import load_dataset

    data = load_dataset(npz=tiny_npz)
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Input(shape=data.input_shape),
        tf_keras.layers.Conv2D(8, 3, activation="relu", name="conv2d"),
        tf_keras.layers.DepthwiseConv2D(3, activation="relu", name="depthwise"),
        tf_keras.layers.MaxPooling2D(2),
        tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(32, activation="relu", name="dense"),
        tf_keras.layers.Dense(CLASSES, activation="softmax", name="dense_1"),
    ])
    _train_tiny(model, data)
    d = tmp_path_factory.mktemp("int8_files")
    calibration = data.x_train[:20]
    files = {"per_channel": quantize(model, method="int8", io="uint8", calibration=calibration),
             "per_tensor": quantize(model, method="int8", io="uint8", calibration=calibration, per_tensor_dense=True),
             "int16x8": quantize(model, method="int16x8", io="float32", calibration=calibration)}
    files["old"] = deprecated_opcodes(files["per_channel"])
    paths = {}
    for name, content in files.items():
        paths[name] = d / f"{name}.tflite"
        paths[name].write_bytes(content)
    paths["data"] = tiny_npz
    return paths


def _weights(path: Path) -> dict:
    from tinycomp.tflite.model import read_tflite
    from tinycomp.tflite.palettize import palettizable_weights

    return {w.index: w for w in palettizable_weights(read_tflite(path).model)}


def _values_per_channel(weight) -> int:
    from tinycomp.tflite.find_tensors import quantization_layout
    from tinycomp.tflite.levels import most_values

    return most_values(np.asarray(weight.array), quantization_layout(weight.tensor))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["per_channel", "per_tensor", "int16x8", "old"])
def test_palettize_then_compress_takes_the_spec(int8_files, tmp_path, kind):
    source = int8_files[kind]
    out = tmp_path / "p.tflite"
    result = ok(["palettize", source, "--bits", "2", "-o", out])
    assert "Wrote" in result.output
    before, after = _weights(source), _weights(out)
    assert {w.op for w in before.values()} == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    in_spec = {t.tensor for t in parse_compression_spec((tmp_path / "p.yaml").read_text()).tensors}
    assert in_spec
    for index, weight in after.items():
        assert weight.array.dtype == np.int8
        if index in in_spec:
            assert _values_per_channel(weight) <= 4
        else:  # left out of the spec (LUT would not make the file smaller): its int8 values are kept
            assert np.array_equal(weight.array, before[index].array)
    depthwise = next(w for w in after.values() if w.op == "DEPTHWISE_CONV_2D")
    assert depthwise.tensor.quantization.axis == 3  # clustered per channel on axis 3
    ok(["compress", out, "--spec", tmp_path / "p.yaml", "-o", tmp_path / "c.tflite"])  # verified identical in TFLM
    assert (tmp_path / "c.tflite").stat().st_size < source.stat().st_size


def test_a_spec_with_no_tensors_leaves_the_model_as_it_is(int8_files, tmp_path):
    source = int8_files["per_channel"]
    (tmp_path / "plan.yaml").write_text("tensors: []\n")
    result = ok(["palettize", source, "--spec", tmp_path / "plan.yaml", "-o", tmp_path / "p.tflite"])
    assert "The spec palettizes no tensor" in result.output
    assert (tmp_path / "p.tflite").read_bytes() == source.read_bytes()
    assert parse_compression_spec((tmp_path / "p.yaml").read_text()).tensors == ()
    ok(["compress", tmp_path / "p.tflite", "--spec", tmp_path / "p.yaml", "-o", tmp_path / "c.tflite"])


@pytest.mark.slow
def test_palettize_changes_nothing_but_the_chosen_weights(int8_files, tmp_path):
    from tinycomp.tflite.find_tensors import quantization_layout
    from tinycomp.tflite.model import read_tflite

    source = int8_files["per_tensor"]
    out = tmp_path / "p.tflite"
    ok(["palettize", source, "--bits", "3", "--tensor", "dense", "-o", out])
    a, b = read_tflite(source).model, read_tflite(out).model
    [dense] = [w for w in _weights(source).values() if w.name.split("/")[-2] == "dense"]
    assert isinstance(quantization_layout(dense.tensor), PerTensor)  # --per-tensor-dense: one table
    assert len(np.unique(_weights(out)[dense.index].array)) <= 8
    assert [op.opcode for op in a.subgraphs[0].operators] == [op.opcode for op in b.subgraphs[0].operators]
    for ta, tb in zip(a.subgraphs[0].tensors, b.subgraphs[0].tensors):
        assert (ta.name, list(ta.shape), ta.dtype) == (tb.name, list(tb.shape), tb.dtype)
        qa, qb = ta.quantization, tb.quantization
        assert (qa is None) == (qb is None)
        if qa is not None:
            assert np.array_equal(qa.scales, qb.scales) and np.array_equal(qa.zero_points, qb.zero_points)
        if ta.index != dense.index and ta.buffer is not None:
            assert bytes(ta.buffer.data) == bytes(tb.buffer.data)


@pytest.mark.slow
def test_old_files_read_their_deprecated_opcodes(int8_files, tmp_path):
    from tinycomp.tflite.model import read_tflite

    old = read_tflite(int8_files["old"]).model
    new = read_tflite(int8_files["per_channel"]).model
    assert [op.opcode for op in old.subgraphs[0].operators] == [op.opcode for op in new.subgraphs[0].operators]
    result = ok(["palettize", int8_files["old"], "--bits", "3", "-o", tmp_path / "p.tflite"])
    assert "deprecated_builtin_code" in result.output
    same = ok(["palettize", int8_files["per_channel"], "--bits", "3", "-o", tmp_path / "q.tflite"])
    assert same.exit_code == 0
    assert (tmp_path / "p.yaml").read_text().split("tensors:")[1] == (tmp_path / "q.yaml").read_text().split("tensors:")[1]


@pytest.mark.slow
def test_palettized_outputs_stay_close_at_5_bits(int8_files, tmp_path):
    """Zero-shot palettization at 32 levels per channel barely moves the outputs (TFLM, test rows).
    (At 6 bits no tensor of this tiny model would make the compressed file smaller: palettize refuses.)"""
    from tinycomp import tflm
    from tinycomp.data import load_dataset
    from tinycomp.metrics import top1_agreement

    out = tmp_path / "p.tflite"
    ok(["palettize", int8_files["per_channel"], "--bits", "5", "-o", out])
    x = np.asarray(load_dataset(npz=int8_files["data"]).x_test[:100])
    a, b = tflm.run_parallel(tflm.predict_chunk, [(int8_files["per_channel"].read_bytes(), x, False),
                                                  (out.read_bytes(), x, False)], workers=2)
    assert top1_agreement(b.outputs, a.outputs) >= 0.95


@pytest.mark.slow
def test_palettize_errors_on_what_it_cannot_do(int8_files, tmp_path, pipeline):
    result = run_cli(["palettize", int8_files["per_channel"], "--bits", "3", "--tensor", "dens", "-o",
                      tmp_path / "p.tflite"])
    assert result.exit_code != 0
    assert result.output.splitlines()[-1].startswith(
        f"Error: no weight tensor of layer 'dens' in the model ({int8_files['per_channel']}) — layers with weights here:")
    float_model = pipeline["model_tflite"]
    result = run_cli(["palettize", float_model, "--bits", "3", "-o", tmp_path / "f.tflite"])
    assert result.exit_code != 0
    assert "holds float32 values; palettize clusters int8 weights" in result.output
    spec = tmp_path / "s.yaml"
    spec.write_text("tensors:\n  - subgraph: 0\n    tensor: 0\n    bits: 3\n")
    result = run_cli(["palettize", int8_files["per_channel"], "--spec", spec, "-o", tmp_path / "p.tflite"])
    assert result.output.splitlines()[-1] == (
        f"Error: tensor 0 of subgraph 0 is not a weight of FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D "
        f"({spec}: tensors[0].tensor) — is this spec for a different model? `tinycomp plan` writes one")


@pytest.mark.slow
def test_palettize_compress_and_tflite_plan_do_not_import_tensorflow(int8_files, tmp_path):
    source, out = int8_files["per_channel"], tmp_path / "p.tflite"
    code = ("import sys\nfrom click.testing import CliRunner\nfrom tinycomp.cli import cli\n"
            f"r = CliRunner().invoke(cli, ['palettize', {str(source)!r}, '--bits', '3', '-o', {str(out)!r}])\n"
            "assert r.exit_code == 0, r.output\n"
            f"r = CliRunner().invoke(cli, ['compress', {str(out)!r}, '--spec', {str(tmp_path / 'p.yaml')!r}, '-o', "
            f"{str(tmp_path / 'c.tflite')!r}])\nassert r.exit_code == 0, r.output\n"
            f"r = CliRunner().invoke(cli, ['plan', {str(source)!r}, '--max-accuracy-drop', '3', '--layer', 'dense', "
            f"'--data', {str(int8_files['data'])!r}, '-o', {str(tmp_path / 'plan.yaml')!r}])\n"
            "assert r.exit_code == 0, r.output\n"
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- plan on a .tflite

@pytest.mark.slow
def test_plan_tflite_writes_the_spec_palettize_takes(int8_files, tmp_path):
    """The plan's candidates are calibrated as `palettize --data` calibrates (weights and biases), so
    `palettize --spec PLAN --data` makes exactly the file the plan measured, and compress its exact bytes."""
    from tinycomp.data import load_dataset
    from tinycomp.plan import Measurement
    from tinycomp.plan.workflow import PlanInputs
    from tinycomp.tflite.model import parse_tflite

    source, data = int8_files["per_channel"], ["--data", int8_files["data"]]
    plan = tmp_path / "plan.yaml"
    result = ok(["plan", source, "--max-accuracy-drop", "5", "-o", plan, "--jobs", "2", *data])
    assert "Plan:" in result.output and "measured" in result.output
    spec = parse_palettization_spec(plan.read_text(), str(plan))
    record = json.loads((tmp_path / "plan.json").read_text())
    assert record["step"] == "plan" and record["backend"] == "tflite" and record["schema_version"] == 1
    assert record["calibration_rows"] == 512 and "--data/--dataset (as given to plan)" in plan.read_text()
    assert record["plan"]["checked_drop_pp"] is not None
    assert record["plan"]["checked_drop_pp"] <= 5 + record["noise"]
    out = tmp_path / "planned.tflite"
    ok(["palettize", source, "--spec", plan, "-o", out, *data])
    weights = _weights(out)
    for entry in spec.tensors:
        assert _values_per_channel(weights[entry.tensor]) <= 2 ** entry.bits
    ok(["compress", out, "--spec", tmp_path / "planned.yaml", "-o", tmp_path / "c.tflite"])
    assert (tmp_path / "c.tflite").stat().st_size == record["plan"]["exact_bytes"]  # the plan's bytes are the file's
    inputs = PlanInputs.of(source.read_bytes(), load_dataset(npz=int8_files["data"]), str(source))
    backend = inputs.backend(Measurement(cluster_counts=(4, 8, 16, 32, 64), calibration_rows=512))
    choice = {name: option["bits"] for name, option in record["plan"]["choices"].items() if option["clusters"]}
    with backend.opened(1):
        measured = parse_tflite(backend.palettes.model_with(choice)).subgraphs[0].tensors
    made = parse_tflite(out.read_bytes()).subgraphs[0].tensors
    given = parse_tflite(source.read_bytes()).subgraphs[0].tensors
    changed = [i for i, t in enumerate(given) if t.buffer is not None and t.buffer.data
               and not np.array_equal(t.array, made[i].array)]
    assert len(changed) > len(choice)  # the weights and their operators' corrected biases
    for i, t in enumerate(made):
        if t.buffer is not None and t.buffer.data:
            assert np.array_equal(t.array, measured[i].array), t.name


def test_plan_tflite_slices_before_it_leaves_a_tensor_unpalettized(int8_files, tmp_path):
    """Under a RAM budget the unsliced plan misses, plan writes a decode budget; palettize passes it to
    compress through its spec, and the chain's file has the plan's exact bytes and arena."""
    from tinycomp.tflm import arena_of, run_parallel

    source, data = int8_files["per_channel"], ["--data", int8_files["data"]]
    ok(["plan", source, "--max-accuracy-drop", "50", "--no-check", "-o", tmp_path / "loose.yaml", *data])
    loose = json.loads((tmp_path / "loose.json").read_text())["plan"]
    assert loose["choices"]["dense"]["clusters"] is not None  # the 288×32 dense kernel (9,216 decoded bytes)
    budget = loose["arena_bytes"] - 2048
    plan = tmp_path / "plan.yaml"
    result = ok(["plan", source, "--max-accuracy-drop", "50", "--no-check", "--ram-budget", str(budget), "-o", plan, *data])
    assert "sliced along their output channels" in result.output
    spec = parse_palettization_spec(plan.read_text(), str(plan))
    record = json.loads((tmp_path / "plan.json").read_text())["plan"]
    assert spec.decode_budget is not None and record["arena_bytes"] <= budget
    assert record["choices"]["dense"]["clusters"] is not None and not record["uncompressed_for_ram"]
    out = tmp_path / "planned.tflite"
    ok(["palettize", source, "--spec", plan, "-o", out, *data])
    assert f"decode_budget: {spec.decode_budget}" in (tmp_path / "planned.yaml").read_text()
    compressed = tmp_path / "c.tflite"
    assert "Sliced tensor" in ok(["compress", out, "--spec", tmp_path / "planned.yaml", "-o", compressed]).output
    assert compressed.stat().st_size == record["exact_bytes"]
    assert run_parallel(arena_of, [(compressed.read_bytes(),)], 1) == [record["arena_bytes"]]


@pytest.mark.slow
def test_plan_tflite_shards_merge_to_the_unsharded_plan(int8_files, tmp_path):
    source, data = int8_files["per_tensor"], ["--data", int8_files["data"]]
    ok(["plan", source, "--target-bytes", "12000", "-o", tmp_path / "whole.yaml", "--no-check", *data])
    for i in (1, 2):
        ok(["plan", source, "--shard", f"{i}/2", "-o", tmp_path / f"part{i}.json", *data])
    ok(["plan", source, "--merge", tmp_path / "part1.json", tmp_path / "part2.json", "--target-bytes", "12000",
        "-o", tmp_path / "merged.yaml", "--no-check", *data])
    whole = parse_palettization_spec((tmp_path / "whole.yaml").read_text())
    assert parse_palettization_spec((tmp_path / "merged.yaml").read_text()) == whole


@pytest.mark.slow
def test_plan_tflite_resumes_and_rechooses_from_its_record(int8_files, tmp_path):
    """--resume measures only what the progress file lacks (here: nothing), and --sensitivity re-chooses
    from the record without measuring a candidate; both give the plan the first run gave."""
    source, data = int8_files["per_channel"], ["--data", int8_files["data"]]
    first = tmp_path / "first.yaml"
    ok(["plan", source, "--max-accuracy-drop", "5", "-o", first, *data])
    record = json.loads((tmp_path / "first.json").read_text())
    progress = tmp_path / "again.partial.json"
    partial = {"step": "plan-partial", "schema_version": 1, "source_sha256": record["source_sha256"],
               "dataset": record["dataset"], "seed": 0, "shard": "1/1", "task": "classify",
               "candidates": [], "results": [],
               "measurement": None}
    ok(["plan", source, "--shard", "1/1", "-o", tmp_path / "whole.json", *data])
    whole = json.loads((tmp_path / "whole.json").read_text())
    partial.update(measurement=whole["measurement"], candidates=whole["candidates"], results=whole["results"])
    progress.write_text(json.dumps(partial))
    resumed = ok(["plan", source, "--max-accuracy-drop", "5", "--resume", "-o", tmp_path / "again.yaml", *data])
    assert f"{len(whole['results'])} candidate(s) measured before" in resumed.output
    assert "zero-shot, TFLM)" not in resumed.output  # no candidate measured again
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["plan"]["choices"] == record["plan"]["choices"]
    started = time.perf_counter()
    rechosen = ok(["plan", source, "--max-accuracy-drop", "5", "--sensitivity", tmp_path / "first.json",
                   "-o", tmp_path / "re.yaml", *data])
    assert time.perf_counter() - started < 30 and "zero-shot, TFLM)" not in rechosen.output
    assert parse_palettization_spec((tmp_path / "re.yaml").read_text()) == parse_palettization_spec(first.read_text())


@pytest.mark.slow
def test_plan_tflite_refuses_keras_options_and_foreign_parts(int8_files, tmp_path):
    source, data = int8_files["per_channel"], ["--data", int8_files["data"]]
    result = run_cli(["plan", source, "--max-accuracy-drop", "1", "--epochs", "3", "-o", tmp_path / "p.yaml", *data])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: --epochs has no effect on a .tflite: plan measures its candidates zero-shot in TFLM, without "
        "fine-tuning or quantizing (--epochs) — drop the option")
    ok(["plan", source, "--shard", "1/2", "-o", tmp_path / "part1.json", *data])
    result = run_cli(["plan", int8_files["per_tensor"], "--merge", tmp_path / "part1.json", "--max-accuracy-drop", "1",
                      "-o", tmp_path / "m.yaml", *data])
    assert result.exit_code != 0
    assert result.output.splitlines()[-1] == (
        f"Error: the partial table was measured on another model than {int8_files['per_tensor']} "
        f"({tmp_path / 'part1.json'}) — merge the parts of this model")


@pytest.mark.slow
def test_tensors_left_out_of_the_spec_keep_their_int8_values(int8_files, tmp_path):
    """A palettized tensor that stays uncompressed would cost accuracy and save nothing."""
    from tinycomp.specs import parse_compression_spec
    from tinycomp.tflite.model import parse_tflite

    out = tmp_path / "p.tflite"
    result = ok(["palettize", int8_files["per_channel"], "--bits", "4", "-o", out])
    assert "kept their int8 values" in result.output
    compressed = {t.tensor for t in parse_compression_spec((tmp_path / "p.yaml").read_text()).tensors}
    before, after = (parse_tflite(p.read_bytes()).subgraphs[0] for p in (int8_files["per_channel"], out))
    weighted = [(op.inputs[1].index, i) for i, op in enumerate(before.operators)
                if op.opcode_name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")]
    left_out = [(t, i) for t, i in weighted if t not in compressed]
    assert compressed and left_out
    for t, _ in weighted:
        same = np.array_equal(before.tensors[t].array, after.tensors[t].array)
        assert same == (t not in compressed)
    for _, i in left_out:
        bias_before, bias_after = before.operators[i].inputs[2], after.operators[i].inputs[2]
        assert np.array_equal(bias_before.array, bias_after.array)


@pytest.mark.slow
def test_strip_chooses_tensors_for_the_stripped_file(int8_files, tmp_path):
    """--strip keeps exactly the tensors whose compression alone makes the *stripped* file smaller."""
    from tinycomp.specs import CompressionSpec, parse_compression_spec
    from tinycomp.tflite.compress import compress_model
    from tinycomp.tflite.file_growth import file_growth
    from tinycomp.tflite.palettize import compression_choices, palettize_model
    from tinycomp.tflite.strip import strip_model

    out = tmp_path / "s.tflite"
    ok(["palettize", int8_files["per_channel"], "--bits", "4", "--strip", "-o", out])
    assert "--bits 4 --strip" in (tmp_path / "s.yaml").read_text()
    chosen = {t.tensor for t in parse_compression_spec((tmp_path / "s.yaml").read_text()).tensors}
    result = palettize_model(int8_files["per_channel"].read_bytes(), 4)
    choices = compression_choices(result.data, result.tensors).choices
    growth = file_growth(result.data, choices, strip=True)
    base = strip_model(result.data).bytes_after
    for choice, grown in zip(choices, growth):
        alone = compress_model(result.data, CompressionSpec((choice.to_spec(),))).data
        assert grown == strip_model(alone).bytes_after - base
    assert chosen == {c.weight.index for c, g in zip(choices, growth) if g < 0 and c.bytes_after < c.bytes_before}
    assert chosen
    ok(["compress", out, "--spec", tmp_path / "s.yaml", "--strip", "-o", tmp_path / "c.tflite"])
    ok(["strip", int8_files["per_channel"], "-o", tmp_path / "int8_stripped.tflite"])
    assert (tmp_path / "c.tflite").stat().st_size < (tmp_path / "int8_stripped.tflite").stat().st_size
