"""`tinycomp prune`: measured sparsity in the saved kernels, its sidecars, .keras output, cluster keeping
the zeros of a pruned model, and bad input (one `Error:` line, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import ok, one_error_line, run_cli

LAYERS = ("conv2d", "conv2d_1", "dense", "dense_1", "dense_2")


def kernels(path: Path) -> dict[str, np.ndarray]:
    """Each weight layer's kernel as saved in the model file."""
    from tinycomp.models import kernel_of, load_keras_model

    model = load_keras_model(path)
    return {layer.name: np.asarray(kernel_of(layer).numpy()) for layer in model.layers if kernel_of(layer) is not None}


def zeros(values: np.ndarray) -> float:
    return float(np.mean(values == 0))


@pytest.fixture(scope="module")
def pruned(pipeline, tmp_path_factory) -> Path:
    """The pipeline's model with every prunable layer pruned to 60% while fine-tuning 2 epochs."""
    out = tmp_path_factory.mktemp("pruned") / "pruned.h5"
    ok(["prune", pipeline["model_h5"], "--sparsity", "0.6", "--epochs", "2", "--batch-size", "32", "-o", out,
        "--data", pipeline["data"]])
    return out


def test_every_layer_is_pruned_to_its_target_in_the_saved_file(pruned, pipeline):
    saved = kernels(pruned)
    before = kernels(pipeline["model_h5"])
    for name in LAYERS:
        n = saved[name].size
        assert zeros(before[name]) == 0.0
        # TFMOT keeps round(n × 0.4) weights; ties at the threshold can keep one or two more
        assert abs(np.count_nonzero(saved[name]) - round(n * 0.4)) <= 2, name


def test_the_record_holds_measured_sparsity_and_scores_before_and_after(pruned):
    record = json.loads(pruned.with_suffix(".json").read_text())
    saved = kernels(pruned)
    assert record["step"] == "prune"
    assert record["target_sparsity"] == {name: 0.6 for name in LAYERS}
    assert record["sparsity"] == pytest.approx({name: zeros(saved[name]) for name in LAYERS})
    held = record["held_out"]
    assert {"unpruned", "pruned_once", "fine_tuned", "used", "kept"} <= set(held)
    assert held["kept"] == held["fine_tuned" if held["used"] == "fine-tuned" else "pruned_once"]
    assert set(record["test_before"]) == set(record["test_after"]) == {"accuracy"}
    assert record["schedule"]["dense"]["final_sparsity"] == 0.6
    assert record["schedule"]["dense"]["initial_sparsity"] == 0.1


def test_the_effective_spec_reproduces_the_run(pruned, pipeline, tmp_path):
    spec = pruned.with_suffix(".yaml")
    text = spec.read_text()
    assert yaml.safe_load(text)["layers"][2] == {"name": "dense", "sparsity": 0.6}
    assert "measured" in text
    again = tmp_path / "again.h5"
    ok(["prune", pipeline["model_h5"], "--spec", spec, "--epochs", "0", "-o", again, "--data", pipeline["data"]])
    assert json.loads(again.with_suffix(".json").read_text())["target_sparsity"] == {name: 0.6 for name in LAYERS}


def test_one_layer_without_fine_tuning_to_keras_format(pipeline, tmp_path):
    out = tmp_path / "dense_only.keras"
    result = ok(["prune", pipeline["model_h5"], "--layer", "dense", "--sparsity", "0.75", "--epochs", "0",
                 "-o", out, "--data", pipeline["data"]])
    saved = kernels(out)
    assert abs(np.count_nonzero(saved["dense"]) - round(saved["dense"].size * 0.25)) <= 1
    assert all(zeros(saved[name]) == 0.0 for name in LAYERS if name != "dense")
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["held_out"]["used"] == "pruned once" and "fine_tuned" not in record["held_out"]
    assert "dense: 75.00% of the kernel weights are zero" in result.output


def test_cluster_keeps_the_zeros_of_a_pruned_model(pruned, pipeline, tmp_path):
    out = tmp_path / "clustered.h5"
    result = ok(["cluster", pruned, "--layer", "dense=8", "--layer", "conv2d_1=8", "--epochs", "1",
                 "--batch-size", "32", "-o", out, "--data", pipeline["data"]])
    before, after = kernels(pruned), kernels(out)
    for name in ("dense", "conv2d_1"):
        assert np.all(after[name][before[name] == 0] == 0), name  # every pruned weight is still zero
        assert zeros(after[name]) >= zeros(before[name])
        assert 0 in np.unique(after[name]) and np.unique(after[name]).size <= 8
    for name in ("conv2d", "dense_1", "dense_2"):  # not clustered, but fine-tuned: their zeros stay too
        assert np.all(after[name][before[name] == 0] == 0), name
        assert not np.array_equal(after[name], before[name]), name  # they were trained
    spec = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert all(layer["preserve_sparsity"] is True for layer in spec["layers"])
    assert "zeros kept" in result.output
    assert "Kept the zeros of the pruned layers not clustered: conv2d, dense_1, dense_2" in result.output


def test_cluster_of_an_unpruned_model_does_not_pin_a_zero(pipeline, tmp_path):
    out = tmp_path / "clustered.h5"
    ok(["cluster", pipeline["model_h5"], "--layer", "dense=8", "--epochs", "0", "-o", out, "--data", pipeline["data"]])
    spec = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert spec["layers"][0]["preserve_sparsity"] is False
    assert zeros(kernels(out)["dense"]) == 0.0


def test_an_explicit_preserve_sparsity_false_is_kept(pruned, pipeline, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("layers:\n  - name: dense\n    clusters: 8\n    preserve_sparsity: false\n")
    out = tmp_path / "clustered.h5"
    ok(["cluster", pruned, "--spec", spec, "--epochs", "0", "-o", out, "--data", pipeline["data"]])
    assert yaml.safe_load(out.with_suffix(".yaml").read_text())["layers"][0]["preserve_sparsity"] is False


@pytest.fixture(scope="module")
def depthwise_only(tmp_path_factory) -> Path:
    """A model whose only weights are a DepthwiseConv2D's (TFMOT prunes none of them), for the tiny data."""
    import tf_keras

    model = tf_keras.Sequential([
        tf_keras.layers.Input(shape=(16, 16, 1)),
        tf_keras.layers.DepthwiseConv2D(3, depth_multiplier=4, name="depthwise"),
        tf_keras.layers.GlobalAveragePooling2D(name="pool"),
        tf_keras.layers.Softmax(name="softmax"),
    ])
    path = tmp_path_factory.mktemp("depthwise") / "depthwise.h5"
    model.save(path)
    return path


HINT = r"give the fraction of kernel weights to set to zero, at least 0 and below 1, e\.g\. 0\.8"
CASES = [
    ("sparsity-1", ["--sparsity", "1"], 1, rf"sparsity 1 is outside \[0, 1\) \(--sparsity\) — {HINT}"),
    ("sparsity-negative", ["--sparsity", "-0.1"], 1, rf"sparsity -0\.1 is outside \[0, 1\) \(--sparsity\) — {HINT}"),
    ("layer-sparsity-1.5", ["--layer", "dense=1.5"], 1,
     rf"sparsity 1\.5 is outside \[0, 1\) \(--layer dense=1\.5\) — {HINT}"),
    ("layer-without-sparsity", ["--layer", "dense"], 1,
     r"no sparsity for layer 'dense' \(--layer dense\) — write --layer dense=0\.8, or give --sparsity for every "
     r"--layer without one"),
    ("unknown-layer", ["--layer", "nosuch=0.5"], 1,
     r"model has no layer 'nosuch' \(layers\[0\]\.name: nosuch\) — the model's layers are: conv2d, max_pooling2d, "
     r"conv2d_1, max_pooling2d_1, flatten, dense, dense_1, dense_2"),
    ("layer-without-kernel", ["--layer", "flatten=0.5"], 1,
     r"layer 'flatten' \(Flatten\) has no kernel to prune \(layers\[0\]\.name: flatten\) — prune one of: conv2d, "
     r"conv2d_1, dense, dense_1, dense_2"),
    ("no-selection", [], 2,
     r"choose the layers with exactly one of --spec, --layer or --sparsity \(prune\) — e\.g\. --sparsity 0\.8 "
     r"\(every prunable layer\)"),
    ("all-with-layer", ["--all", "--layer", "dense=0.5"], 2,
     r"--all goes with --sparsity alone \(prune\) — give --all --sparsity S, or name the layers"),
]


@pytest.mark.parametrize("args, code, pattern", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_error_line_and_writes_nothing(pipeline, tmp_path, args, code, pattern):
    out = tmp_path / "out.h5"
    result = run_cli(["prune", pipeline["model_h5"], *args, "-o", out, "--data", pipeline["data"]])
    one_error_line(result, code, pattern)
    assert list(tmp_path.iterdir()) == []


def test_bad_spec_sparsity_is_one_error_line(pipeline, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("sparsity: 1.0\nlayers:\n  - name: dense\n")
    result = run_cli(["prune", pipeline["model_h5"], "--spec", spec, "-o", tmp_path / "out.h5",
                      "--data", pipeline["data"]])
    one_error_line(result, 1, rf"sparsity 1 is outside \[0, 1\) \([^()]+spec\.yaml: sparsity\) — {HINT}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_a_model_with_no_prunable_layer_is_one_error_line(depthwise_only, pipeline, tmp_path):
    result = run_cli(["prune", depthwise_only, "--sparsity", "0.5", "-o", tmp_path / "out.h5",
                      "--data", pipeline["data"]])
    one_error_line(result, 1, r"the model has no layer TFMOT can prune \(model\) — pruning needs a Dense or "
                              r"convolution layer with a kernel \(DepthwiseConv2D is not pruned\)")
    assert list(tmp_path.iterdir()) == []


def test_all_with_sparsity_prunes_every_prunable_layer_once(pipeline, tmp_path):
    out = tmp_path / "all.h5"
    ok(["prune", pipeline["model_h5"], "--all", "--sparsity", "0.5", "--epochs", "0", "-o", out,
        "--data", pipeline["data"]])
    saved = kernels(out)
    assert sorted(saved) == sorted(LAYERS)
    for name in LAYERS:
        assert abs(np.count_nonzero(saved[name]) - round(saved[name].size * 0.5)) <= 1, name
