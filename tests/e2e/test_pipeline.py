"""The real chain on tiny data: sizes shrink, compression is lossless in TFLM, Make is incremental."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ok, run_cli

REPO = Path(__file__).resolve().parents[2]


def test_sizes_shrink_along_the_chain(pipeline):
    sizes = {k: pipeline[k].stat().st_size for k in ("model_tflite", "model_int8_tflite", "clustered_int8_tflite",
                                                      "compressed_tflite")}
    assert sizes["compressed_tflite"] < sizes["clustered_int8_tflite"] < sizes["model_tflite"]
    assert sizes["model_int8_tflite"] < sizes["model_tflite"] / 3


def test_compressed_outputs_equal_uncompressed_in_tflm(pipeline):
    from tinycomp.tflite.compress import verify_identical

    original = pipeline["clustered_int8_tflite"].read_bytes()
    compressed = pipeline["compressed_tflite"].read_bytes()
    assert verify_identical(original, compressed, samples=20, seed=7) == 20


def test_compression_spec_names_the_clustered_layers(pipeline):
    from tinycomp.specs import PerChannel, parse_compression_spec

    text = pipeline["compression_yaml"].read_text()
    spec = parse_compression_spec(text)
    assert len(spec.tensors) == 2
    assert "# conv2d_1: " in text and "# dense: " in text and "dense_1" not in text
    # 8 clusters, int8 per-channel quantized: at most 8 values per channel → 3 bits per channel
    assert all(t.index_bitwidth == 3 and isinstance(t.layout, PerChannel) for t in spec.tensors)


def test_eval_reports_identical_accuracy_for_compressed_and_int8(pipeline, tmp_path):
    out = tmp_path / "eval.json"
    ok(["eval", pipeline["model_tflite"], pipeline["clustered_int8_tflite"], pipeline["compressed_tflite"],
        pipeline["clustered_h5"], "--baseline", pipeline["model_tflite"], "--data", pipeline["data"],
        "--json", out, "--jobs", "2"])
    report = json.loads(out.read_text())
    by_name = {Path(m["path"]).name: m for m in report["models"]}
    assert report["dataset"]["test"] == 200
    compressed, int8 = by_name["compressed.tflite"], by_name["clustered_int8.tflite"]
    assert compressed["accuracy"] == int8["accuracy"]
    assert compressed["flash_bytes"] < int8["flash_bytes"]
    assert compressed["arena_bytes"] > int8["arena_bytes"]  # decoded weights live in the arena
    # ... unless TFLM decodes them into its alternate decompression memory, which must hold the largest
    assert int8["alt_decompression_bytes"] is None and int8["arena_bytes_with_alt_decompression"] is None
    assert compressed["alt_decompression_bytes"] >= max(_decoded_bytes(pipeline))
    assert compressed["arena_bytes_with_alt_decompression"] < compressed["arena_bytes"]
    assert by_name["model.tflite"]["accuracy"] > 0.8  # the blob task is easy
    assert abs(compressed["accuracy_delta_pp"]) <= 5.0
    assert by_name["model.tflite"]["ratio_vs_baseline"] == 1.0


def _decoded_bytes(pipeline) -> list[int]:
    """The int8 bytes of each tensor the pipeline's compression spec compresses."""
    import yaml

    from tinycomp.tflite.model import read_tflite

    model = read_tflite(pipeline["clustered_int8_tflite"]).model
    spec = yaml.safe_load(pipeline["compression_yaml"].read_text())
    return [len(model.subgraphs[t["subgraph"]].tensors[t["tensor"]].buffer.data) for t in spec["tensors"]]


def test_eval_budget_gate(pipeline):
    small = run_cli(["eval", pipeline["compressed_tflite"], "--data", pipeline["data"], "--limit", "10",
                     "--flash-budget", "1KiB"])
    assert small.exit_code == 1
    assert "Error: no model fits the flash/RAM budget" in small.output
    roomy = run_cli(["eval", pipeline["compressed_tflite"], "--data", pipeline["data"], "--limit", "10",
                     "--flash-budget", "10MiB", "--ram-budget", "10MiB"])
    assert roomy.exit_code == 0 and "FITS" in roomy.output


def test_tutorial_spec_form_gives_the_same_model(pipeline, tmp_path):
    from tinycomp.specs import parse_compression_spec

    spec = parse_compression_spec(pipeline["compression_yaml"].read_text())
    legacy = tmp_path / "legacy.yaml"
    legacy.write_text("tensors:\n" + "".join(
        f"  - subgraph: {t.subgraph}\n    tensor: {t.tensor}\n    compression:\n      lut:\n"
        f"        index_bitwidth: {t.index_bitwidth}\n" for t in spec.tensors))
    out = tmp_path / "legacy.tflite"
    result = ok(["compress", pipeline["clustered_int8_tflite"], "--spec", legacy, "-o", out])
    assert "older spec form" in result.output
    assert out.read_bytes() == pipeline["compressed_tflite"].read_bytes()


def test_find_tensors_matches_whole_layer_names(dense_names_model, tmp_path):
    from tinycomp.tflite.find_tensors import find_tensors
    from tinycomp.tflite.model import read_tflite

    model = read_tflite(dense_names_model).model
    chosen = {}
    for layer in ("dense", "dense_1", "dense_10"):
        result = find_tensors(model, [layer], skip_incompressible=True)
        names = [c.weight.name for c in result.choices] + [reason for _, reason in result.skipped]
        chosen[layer] = names
    assert any("/dense_1/" in n for n in chosen["dense_1"]) and len(chosen["dense_1"]) == 1
    assert all("/dense_1/" not in n and "/dense_10/" not in n for n in chosen["dense"])
    assert all("/dense_10/" in n for n in chosen["dense_10"])
    # dense_1 was clustered to 4 values: a 2-bit LUT
    only = find_tensors(model, ["dense_1"]).choices[0]
    assert only.index_bitwidth == 2 and only.unique_per_channel <= 4


def test_find_tensors_unknown_layer_lists_the_real_ones(dense_names_model, tmp_path):
    out = tmp_path / "spec.yaml"
    result = run_cli(["find-tensors", dense_names_model, "--layer", "dense_2", "-o", out])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: no weight tensor of layer 'dense_2' in the model ({dense_names_model}) "
                                     "— layers with weights here: dense, dense_1, dense_10")
    assert not out.exists()


def test_find_tensors_refuses_a_tensor_with_too_many_values_unless_skipped(pipeline, tmp_path):
    import numpy as np

    from tinycomp.tflite.model import parse_tflite

    model = parse_tflite(pipeline["model_int8_tflite"].read_bytes())
    conv = next(op for op in model.subgraphs[0].operators if op.opcode_name == "CONV_2D" and
                "conv2d_1" in (op.inputs[1].name or ""))
    weight = conv.inputs[1]
    per_channel = int(np.prod(weight.shape[1:]))  # 3*3*16 = 144 weights per output channel
    assert per_channel > 128
    values = np.arange(per_channel) - per_channel // 2
    weight.array = np.tile(values, (weight.shape[0], 1)).reshape(weight.shape).astype(np.int8)
    edited = tmp_path / "unclusterable.tflite"
    edited.write_bytes(bytes(model.build()))
    out = tmp_path / "spec.yaml"
    result = run_cli(["find-tensors", edited, "--layer", "conv2d_1", "-o", out])
    assert result.exit_code == 1 and not out.exists()
    assert result.output.startswith(f"Error: tensor {weight.index} ({weight.name}) has 144 unique values "
                                    "(144 per channel); a LUT holds at most 128 (layer conv2d_1)")
    skipped = run_cli(["find-tensors", edited, "--layer", "conv2d_1", "--layer", "dense", "--skip-incompressible",
                       "--keep-growing", "-o", out])
    assert skipped.exit_code == 0 and "skipped conv2d_1" in skipped.output and out.exists()


def test_compress_refuses_a_layout_that_decodes_wrongly(pipeline, tmp_path):
    from dataclasses import replace

    from tinycomp.specs import PerTensor, dump_compression_spec, parse_compression_spec

    spec = parse_compression_spec(pipeline["compression_yaml"].read_text())
    wrong = replace(spec, tensors=(replace(spec.tensors[0], layout=PerTensor(), index_bitwidth=7),))
    path = tmp_path / "wrong.yaml"
    path.write_text(dump_compression_spec(wrong))
    out = tmp_path / "c.tflite"
    result = run_cli(["compress", pipeline["clustered_int8_tflite"], "--spec", path, "-o", out])
    assert result.exit_code == 1 and not out.exists()
    assert "quantized per-channel (axis 0), decodes to wrong outputs in TFLM" in result.output
    assert result.output.strip().endswith("— use `per_channel: {axis: 0}`, as `tinycomp find-tensors` writes")


@pytest.mark.slow
def test_make_demo_is_incremental(tmp_path, tiny_npz):
    """The Makefile on tiny data: builds everything, then does nothing, then (dry) would redo the
    clustering a touched spec feeds, not the training (each step ran for real in the first build)."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    build = tmp_path / "build"
    spec = tmp_path / "clustering.yaml"
    shutil.copy(REPO / "specs" / "clustering.yaml", spec)
    make = ["make", "-C", str(REPO), "-j2", f"BUILD={build}", f"TINYCOMP={sys.executable} -m tinycomp", "STAMP=",
            f"DATA=--data {tiny_npz}", "EPOCHS=1", f"CLUSTERING_SPEC={spec}", "demo"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.run(make, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Evaluation on tiny.npz" in first.stdout
    outputs = sorted(p.name for p in build.iterdir())
    assert {"model.h5", "model.tflite", "model_int8.tflite", "clustered.h5", "clustered.yaml", "clustered_int8.tflite",
            "compression.yaml", "compressed.tflite", "compressed_sliced.tflite", "eval.json"} <= set(outputs)
    again = subprocess.run(make, capture_output=True, text=True, env=env)
    assert "Nothing to be done" in again.stdout, again.stdout
    time.sleep(1.1)
    spec.touch()
    third = subprocess.run([*make, "-n"], capture_output=True, text=True, env=env)
    assert third.returncode == 0, third.stdout + third.stderr
    assert " cluster " in third.stdout and " train " not in third.stdout and " convert " not in third.stdout


def test_make_bench_chains_every_plan(tmp_path):
    """A dry run of `make bench`: each plan goes through the real chain and every model is evaluated."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    build = tmp_path / "build"
    dry = subprocess.run(["make", "-C", str(REPO), "-n", f"BUILD={build}", "TINYCOMP=tinycomp", "STAMP=", "bench"],
                         capture_output=True, text=True)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    lines = dry.stdout.splitlines()
    plans = [line for line in lines if line.startswith("tinycomp plan ")]
    assert [("--sensitivity" in line, "--target-ratio 12" in line, "--ram-budget 100KiB" in line) for line in plans] \
        == [(False, False, False), (True, True, False), (True, False, True)]
    for suffix in ("", "_12x", "_ram"):
        assert f"tinycomp compress {build}/planned{suffix}_int8.tflite --spec {build}/planned{suffix}_compression.yaml " \
               f"--strip -o {build}/planned{suffix}.tflite" in dry.stdout
    assert f"tinycomp report {build}/bench.json --model {build}/planned.tflite -o {build}/bench_report" in dry.stdout
    [evaluation] = [line for line in lines if line.startswith("tinycomp eval ")]
    assert evaluation.startswith(f"tinycomp eval {build}/model.tflite {build}/compressed.tflite {build}/planned.tflite "
                                 f"{build}/planned_12x.tflite {build}/planned_ram.tflite {build}/deep.tflite --baseline")
    # Deep Compression: prune → cluster (the pruned model) → quantize → compress --lossless
    assert f"tinycomp prune {build}/model.h5 --sparsity 0.8 -o {build}/pruned.h5" in dry.stdout
    assert f"tinycomp cluster {build}/pruned.h5 --spec specs/clustering.yaml -o {build}/deep.h5" in dry.stdout
    assert f"tinycomp compress {build}/deep_int8.tflite --lossless --strip -o {build}/deep.tflite" in dry.stdout


def test_per_tensor_dense_quantization_gives_smaller_lossless_luts(pipeline, tmp_path):
    from tinycomp.specs import PerChannel, PerTensor
    from tinycomp.tflite.find_tensors import find_tensors
    from tinycomp.tflite.model import read_tflite

    int8, spec, out = tmp_path / "pt_int8.tflite", tmp_path / "pt.yaml", tmp_path / "pt.tflite"
    ok(["quantize", pipeline["clustered_h5"], "-o", int8, "--per-tensor-dense", "--calibration-samples", "20",
        "--data", pipeline["data"]])
    ok(["find-tensors", int8, "--clustering", pipeline["clustered_yaml"], "-o", spec])
    choices = find_tensors(read_tflite(int8).model, ["conv2d_1", "dense"]).choices
    layouts = {c.layer: (c.layout, c.index_bitwidth) for c in choices}
    assert layouts["dense"] == (PerTensor(), 3)  # 8 clusters → exactly 8 int8 values in the whole tensor
    assert isinstance(layouts["conv2d_1"][0], PerChannel)
    result = ok(["compress", int8, "--spec", spec, "-o", out])  # verification in TFLM is on by default
    assert "TFLM outputs identical" in result.output
    assert out.stat().st_size < pipeline["compressed_tflite"].stat().st_size


def test_compressing_a_tensor_that_does_not_pay_warns(pipeline, tmp_path):
    """RESHAPE's 2-value shape input compresses (TFLM decodes it correctly) but grows: say so."""
    from tinycomp.tflite.model import read_tflite

    graph = read_tflite(pipeline["clustered_int8_tflite"]).model.subgraphs[0]
    [reshape] = [op for op in graph.operators if op.opcode_name == "RESHAPE"]
    index = graph.tensors.index(reshape.inputs[1])
    spec = tmp_path / "shape.yaml"
    spec.write_text(f"tensors:\n  - subgraph: 0\n    tensor: {index}\n    compression:\n"
                    "      - lut:\n          index_bitwidth: 1\n          per_tensor:\n")
    result = run_cli(["compress", pipeline["clustered_int8_tflite"], "--spec", spec, "-o", tmp_path / "out.tflite",
                      "--verify-samples", "2"])
    assert result.exit_code == 0, result.output
    assert (f"Warning: tensor {index} (arith.constant) takes 25 bytes compressed against 8 uncompressed: its value "
            f"table and LUT header cost more than the indices save; leave it out of {spec}") in result.output
    assert " bytes larger); TFLM outputs identical" in result.output


@pytest.mark.slow
def test_an_empty_plan_goes_through_the_chain(pipeline, tmp_path):
    """A spec that clusters nothing (what plan writes when nothing fits): cluster saves the model
    unchanged, find-tensors finds nothing, compress writes the int8 model (stripped)."""
    import numpy as np

    from tinycomp.models import load_keras_model

    spec = tmp_path / "empty.yaml"
    spec.write_text("epochs: 0\nlayers: []\n")
    data = ["--data", pipeline["data"]]
    ok(["cluster", pipeline["model_h5"], "--spec", spec, "-o", tmp_path / "same.h5", *data])
    before, after = load_keras_model(pipeline["model_h5"]), load_keras_model(tmp_path / "same.h5")
    assert all(np.array_equal(a, b) for a, b in zip(before.get_weights(), after.get_weights()))
    ok(["quantize", tmp_path / "same.h5", "-o", tmp_path / "same_int8.tflite", "--calibration-samples", "20", *data])
    ok(["find-tensors", tmp_path / "same_int8.tflite", "--clustering", tmp_path / "same.yaml",
        "-o", tmp_path / "nothing.yaml"])
    ok(["compress", tmp_path / "same_int8.tflite", "--spec", tmp_path / "nothing.yaml", "--strip",
        "-o", tmp_path / "same.tflite"])
    assert (tmp_path / "same.tflite").stat().st_size <= (tmp_path / "same_int8.tflite").stat().st_size


@pytest.mark.slow
def test_cluster_epochs_0_is_zero_shot_and_a_worse_fine_tune_is_not_kept(pipeline, tmp_path):
    import json

    data = ["--data", pipeline["data"]]
    ok(["cluster", pipeline["model_h5"], "--layer", "dense=4", "--epochs", "0", "-o", tmp_path / "zs.h5", *data])
    record = json.loads((tmp_path / "zs.json").read_text())
    assert record["epochs"] == 0 and record["fine_tuning"] == {"epochs": 0, "used": False}
    # a learning rate far too large wrecks the fine-tune: the zero-shot model is kept
    result = ok(["cluster", pipeline["model_h5"], "--layer", "dense=4", "--epochs", "1", "--learning-rate", "10",
                 "-o", tmp_path / "kept.h5", *data])
    record = json.loads((tmp_path / "kept.json").read_text())
    tuning = record["fine_tuning"]
    assert tuning["fine_tuned"] < tuning["zero_shot"] and tuning["used"] is False
    assert "kept the zero-shot model" in result.output
    assert record["test_accuracy"] == json.loads((tmp_path / "zs.json").read_text())["test_accuracy"]
