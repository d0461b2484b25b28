"""Same inputs and seed → same outputs.

convert, quantize, find-tensors and compress are byte-identical run to run (tested below on the
pipeline's artifacts). train and cluster with the same --seed on CPU give identical weights:
`models.set_seed` seeds Python, NumPy and TensorFlow and turns on TF op determinism.

Limits (documented, not tested): GPU kernels and a different TensorFlow/oneDNN build or CPU
instruction set can change float results, so trained weights are reproducible per machine and
version, not across them. The .h5 files of two runs hold identical weights but are not
guaranteed byte-identical (HDF5 layout is the library's business); compare weights, not bytes.
The `mnist` dataset falls back to the bundled sample when full MNIST is not cached, so pin
`--dataset` or `--data` to reproduce a run elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import ok


def twice(tmp_path: Path, name: str, make_args) -> tuple[bytes, bytes]:
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run / name
        out.parent.mkdir()
        ok(make_args(out))
        outputs.append(out.read_bytes())
    return outputs[0], outputs[1]


def test_convert_is_byte_identical(pipeline, tmp_path):
    a, b = twice(tmp_path, "model.tflite", lambda out: ["convert", pipeline["model_h5"], "-o", out])
    assert a == b
    assert a == pipeline["model_tflite"].read_bytes()  # also equal to the fixture's earlier run


@pytest.mark.parametrize("method", ["int8", "dynamic", "float16"])
def test_quantize_is_byte_identical(pipeline, tmp_path, method):
    a, b = twice(tmp_path, "q.tflite", lambda out: ["quantize", pipeline["clustered_h5"], "-o", out, "--method", method,
                                                    "--calibration-samples", "20", "--data", pipeline["data"]])
    assert a == b
    if method == "int8":
        assert a == pipeline["clustered_int8_tflite"].read_bytes()


def test_quantize_seed_picks_the_calibration_samples(pipeline, tmp_path):
    """The seed is the only source of variation: another seed draws other calibration images."""
    a, b = twice(tmp_path, "q.tflite", lambda out: ["quantize", pipeline["model_h5"], "-o", out, "--seed", "7",
                                                    "--calibration-samples", "5", "--data", pipeline["data"]])
    assert a == b
    assert a != pipeline["model_int8_tflite"].read_bytes()


def test_find_tensors_is_byte_identical(pipeline, tmp_path):
    a, b = twice(tmp_path, "compression.yaml", lambda out: ["find-tensors", pipeline["clustered_int8_tflite"],
                                                            "--clustering", pipeline["clustered_yaml"], "-o", out])
    assert a == b
    # the header names the input path only, so it matches the fixture's spec too
    assert a == pipeline["compression_yaml"].read_bytes()


def test_compress_is_byte_identical(pipeline, tmp_path):
    a, b = twice(tmp_path, "compressed.tflite", lambda out: ["compress", pipeline["clustered_int8_tflite"], "--spec",
                                                             pipeline["compression_yaml"], "-o", out, "--no-verify"])
    assert a == b == pipeline["compressed_tflite"].read_bytes()


def h5_weights(path: Path) -> list[np.ndarray]:
    from tinycomp.models import load_keras_model

    return [np.asarray(w) for w in load_keras_model(path).get_weights()]


def test_train_is_reproducible_with_seed(pipeline, tmp_path):
    args = lambda out, seed: ["train", "-o", out, "--epochs", "1", "--batch-size", "64", "--seed", seed,  # noqa: E731
                              "--data", pipeline["data"]]
    paths = {}
    for run, seed in (("a", 5), ("b", 5), ("c", 6)):
        paths[run] = tmp_path / run / "model.h5"
        paths[run].parent.mkdir()
        ok(args(paths[run], seed))
    a, b, c = (h5_weights(paths[r]) for r in "abc")
    assert len(a) == len(b) == len(c) > 0
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), "same seed, different weights"
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True)), "the seed has no effect"


def test_cluster_is_reproducible_with_seed(pipeline, tmp_path):
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run / "clustered.h5"
        out.parent.mkdir()
        ok(["cluster", pipeline["model_h5"], "--layer", "dense=8", "-o", out, "--epochs", "1", "--seed", "3",
            "--data", pipeline["data"]])
        outs.append(out)
    a, b = (h5_weights(p) for p in outs)
    assert len(a) == len(b) > 0
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), "same seed, different clustered weights"
    assert (outs[0].with_suffix(".yaml").read_text().splitlines()[1:]
            == outs[1].with_suffix(".yaml").read_text().splitlines()[1:])
