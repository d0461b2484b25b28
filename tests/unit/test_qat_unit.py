"""quantize --qat without TensorFlow: which layers count as clustered or sparse, the scheme chosen from
that, and the errors given before any model is loaded (tests/e2e/test_qat.py trains real models)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import one_error_line, run_cli
from tinycomp.qat import MAX_CLUSTER_VALUES, SPARSE_FRACTION, Structure, find_structure
from tinycomp.specs import ClusteringSpec, LayerClustering


class _Kernel:
    def __init__(self, values: np.ndarray):
        self.values = values
        self.shape = values.shape

    def numpy(self) -> np.ndarray:
        return self.values


class Dense:
    def __init__(self, name: str, values: np.ndarray):
        self.name, self.kernel = name, _Kernel(values)


class Conv2D(Dense):
    pass


class Flatten:
    name = "flatten"


class _Model:
    def __init__(self, *layers):
        self.layers = list(layers)


def clustered_values(shape: tuple[int, ...], k: int, rng) -> np.ndarray:
    return rng.choice(rng.normal(size=k), size=shape).astype(np.float32)


def test_trained_kernels_are_neither_clustered_nor_sparse():
    rng = np.random.default_rng(0)
    model = _Model(Dense("dense", rng.normal(size=(64, 32)).astype(np.float32)), Flatten())
    structure = find_structure(model)
    assert structure == Structure() and structure.scheme == "default-8bit"


def test_few_shared_values_are_clusters_and_exact_zeros_are_sparsity():
    rng = np.random.default_rng(1)
    pruned = rng.normal(size=(64, 32)).astype(np.float32)
    pruned[rng.random(pruned.shape) < 0.8] = 0
    model = _Model(Dense("dense", clustered_values((64, 32), 16, rng)), Dense("dense_1", pruned))
    structure = find_structure(model)
    assert list(structure.clustered) == ["dense"] and structure.clustered["dense"]["values"] == 16
    assert list(structure.sparse) == ["dense_1"] and 0.75 < structure.sparse["dense_1"] < 0.85
    assert structure.scheme == "prune-cluster-preserve"
    assert find_structure(_Model(Dense("dense_1", pruned))).scheme == "prune-preserve"
    assert find_structure(_Model(model.layers[0])).scheme == "cluster-preserve"


def test_pruned_kernels_are_not_clustered_by_their_zeros():
    """An 80%-pruned small kernel has few distinct values only because of its zeros."""
    rng = np.random.default_rng(2)
    pruned = rng.normal(size=(64, 10)).astype(np.float32)
    pruned[rng.random(pruned.shape) < 0.8] = 0
    assert len(np.unique(pruned)) <= MAX_CLUSTER_VALUES
    structure = find_structure(_Model(Dense("dense_2", pruned)))
    assert structure.clustered == {} and structure.sparse["dense_2"] >= SPARSE_FRACTION


def test_per_channel_clustered_conv_and_the_sidecar():
    rng = np.random.default_rng(3)
    per_channel = np.stack([clustered_values((3, 3, 16), 8, rng) for _ in range(64)], axis=-1)  # 512 values in all
    assert len(np.unique(per_channel)) > MAX_CLUSTER_VALUES
    found = find_structure(_Model(Conv2D("conv2d_1", per_channel)))
    assert found.clustered["conv2d_1"]["max_per_channel"] == 8
    small = clustered_values((4, 5), 8, rng)  # too small to tell from the weights: 20 weights, 8 values
    assert find_structure(_Model(Dense("dense", small))).clustered == {}
    sidecar = ClusteringSpec((LayerClustering(name="dense", clusters=8),))
    assert find_structure(_Model(Dense("dense", small)), sidecar).clustered["dense"]["by"].startswith("clustering sidecar")
    stale = ClusteringSpec((LayerClustering(name="dense", clusters=4),))  # weights changed since: not clustered
    assert find_structure(_Model(Dense("dense", small)), stale).clustered == {}


@pytest.mark.parametrize(("flag", "value"), [("--learning-rate", "1e-3"), ("--batch-size", "64"), ("--jobs", "2")])
def test_qat_options_need_qat(tmp_path, flag, value):
    result = run_cli(["quantize", tmp_path / "m.h5", "-o", tmp_path / "q.tflite", flag, value])
    one_error_line(result, 2, f"{flag} goes with --qat \\({flag}\\) — add --qat EPOCHS, or drop it")


def test_qat_needs_int8(tmp_path):
    result = run_cli(["quantize", tmp_path / "m.h5", "-o", tmp_path / "q.tflite", "--qat", "1", "--method", "dynamic"])
    one_error_line(result, 2, "--qat makes full-integer int8 models, not --method dynamic \\(--qat\\) — "
                              "drop --method, or drop --qat")


def test_qat_refuses_a_tflite_and_points_to_palettize(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    result = run_cli(["quantize", model, "-o", tmp_path / "q.tflite", "--qat", "1"])
    one_error_line(result, 1, "quantization-aware training needs the Keras model; this is a .tflite file "
                              f"\\({model}\\) — palettize a .tflite with data instead: tinycomp palettize {model} "
                              "--bits 4 --data \\.\\.\\. -o \\.\\.\\.")


def test_lost_clusters_or_zeros_are_one_warning(monkeypatch):
    from tinycomp import render
    from tinycomp.commands.quantize import _warn_lost_structure

    warned: list[str] = []
    monkeypatch.setattr(render, "warn", warned.append)
    structure = Structure(clustered={"dense": {"values": 16, "max_per_channel": 16, "by": "weights"}},
                          sparse={"conv2d": 0.8})
    _warn_lost_structure({"dense": {"max_per_channel": 16, "zero_fraction": 0.0},
                          "conv2d": {"max_per_channel": 9, "zero_fraction": 0.8}}, structure)
    assert warned == []
    _warn_lost_structure({"dense": {"max_per_channel": 17, "zero_fraction": 0.0},
                          "conv2d": {"max_per_channel": 9, "zero_fraction": 0.79}}, structure)
    assert len(warned) == 1 and "QAT did not keep the structure of dense, conv2d" in warned[0]
