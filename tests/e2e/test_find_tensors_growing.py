"""find-tensors leaves out tensors that LUT compression would not shrink, names them in one line,
and keeps them with --keep-growing (issue 9, item 8).

The fixture is an int8 model with a tiny 1×1 convolution (16 output channels × 3 inputs = 48
bytes) clustered by hand to 4 values: after per-channel quantization each channel keeps ≤ 4
values, so its LUT needs 2-bit indices (12 bytes) plus a 16-channel value table padded to the
largest per-channel count (48 bytes) and the 16-byte ancillary header: 76 bytes, more than the 48
it replaces. The clustered `dense` (16 × 256) shrinks; the unclustered `dense_1` (4 × 16, 16
values per channel) grows too (64 → 112 bytes).
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import ok, run_cli

pytestmark = pytest.mark.slow  # the fixture converts a model with TensorFlow

POINTWISE = "pointwise (48 → 76 bytes)"
DENSE_1 = "dense_1 (64 → 112 bytes)"


@pytest.fixture(scope="module")
def growing_model(tmp_path_factory):
    """An int8 .tflite: pointwise 1×1 Conv2D (grows under LUT), dense (shrinks), dense_1 (grows)."""
    import tf_keras

    from tinycomp.convert import quantize

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Input(shape=(4, 4, 3)),
        tf_keras.layers.Conv2D(16, 1, name="pointwise"),
        tf_keras.layers.Flatten(name="flatten"),
        tf_keras.layers.Dense(16, activation="relu", name="dense"),
        tf_keras.layers.Dense(4, activation="softmax", name="dense_1"),
    ])
    for layer in ("pointwise", "dense"):  # clustered by hand to 4 values: a test fixture, not product code
        kernel, bias = model.get_layer(layer).get_weights()
        centroids = np.linspace(kernel.min(), kernel.max(), 4)
        clustered = centroids[np.abs(kernel[..., None] - centroids).argmin(-1)]
        model.get_layer(layer).set_weights([clustered.astype(np.float32), bias])
    calibration = np.random.default_rng(0).random((20, 4, 4, 3)).astype(np.float32)
    path = tmp_path_factory.mktemp("growing") / "growing_int8.tflite"
    path.write_bytes(quantize(model, method="int8", io="uint8", calibration=calibration))
    return path


def _tensor_indices(path) -> list[int]:
    from tinycomp.specs import parse_compression_spec

    return [t.tensor for t in parse_compression_spec(path.read_text()).tensors]


def test_the_library_reports_growing_tensors_and_leaves_the_choice_to_the_caller(growing_model):
    from tinycomp.tflite.find_tensors import find_tensors
    from tinycomp.tflite.model import read_tflite

    found = find_tensors(read_tflite(growing_model).model, None)
    assert [c.layer for c in found.choices] == ["pointwise", "dense", "dense_1"]
    assert [(c.layer, c.bytes_before, c.bytes_after) for c in found.growing] == [
        ("pointwise", 48, 76), ("dense_1", 64, 112)]
    assert [c.layer for c in found.without_growing().choices] == ["dense"]


def test_all_leaves_out_growing_tensors_and_names_them_in_one_line(growing_model, tmp_path):
    out = tmp_path / "spec.yaml"
    result = ok(["find-tensors", growing_model, "--all", "-o", out])
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == [f"Warning: left out 2 tensors that LUT compression would not shrink: {POINTWISE}, {DENSE_1}; "
                        "--keep-growing keeps them"]
    assert len(_tensor_indices(out)) == 1
    assert result.stdout.splitlines()[-1] == f"Wrote {out}: 1 tensor, 4,096 → 1,104 bytes predicted"


def test_named_layers_leave_out_the_growing_one(growing_model, tmp_path):
    clustering = tmp_path / "clustered.yaml"
    clustering.write_text("layers:\n  - name: pointwise\n    clusters: 4\n  - name: dense\n    clusters: 4\n")
    out = tmp_path / "spec.yaml"
    result = ok(["find-tensors", growing_model, "--clustering", clustering, "-o", out])
    assert result.stderr.splitlines() == [
        f"Warning: left out 1 tensor that LUT compression would not shrink: {POINTWISE}; --keep-growing keeps it"]
    assert "pointwise" not in out.read_text() and "dense/" in out.read_text()


def test_keep_growing_keeps_them_and_says_so(growing_model, tmp_path):
    out = tmp_path / "spec.yaml"
    result = ok(["find-tensors", growing_model, "--all", "--keep-growing", "-o", out])
    assert result.stderr.splitlines() == [
        f"Warning: kept 2 tensors that LUT compression does not shrink (--keep-growing): {POINTWISE}, {DENSE_1}"]
    assert len(_tensor_indices(out)) == 3
    assert "pointwise" in out.read_text()


def test_when_every_tensor_would_grow_the_error_says_why(growing_model, tmp_path):
    out = tmp_path / "spec.yaml"
    result = run_cli(["find-tensors", growing_model, "--layer", "pointwise", "--layer", "dense_1", "-o", out])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"Error: no tensor to compress: LUT compression would not shrink {POINTWISE}, {DENSE_1} ({growing_model}) — "
        "leave those layers uncompressed, cluster them to fewer values, or pass --keep-growing to write them anyway"]
    assert not out.exists()
    kept = ok(["find-tensors", growing_model, "--layer", "pointwise", "--keep-growing", "-o", out])
    assert "kept 1 tensor that LUT compression does not shrink (--keep-growing): " + POINTWISE in kept.stderr
    assert len(_tensor_indices(out)) == 1
