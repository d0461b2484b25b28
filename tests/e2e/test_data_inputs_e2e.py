"""Data sources and their errors: image directories, .npy, explicit preprocessing, streaming."""

from __future__ import annotations

import numpy as np
import pytest

from tinycomp.data import MappedArray, load_dataset
from tinycomp.metrics import CLASSIFY


def test_streamed_data_is_never_read_whole(tmp_path, monkeypatch):
    """Fine-tuning, calibration and Keras evaluation read a memory-mapped .npy in batches only."""
    import tf_keras

    from tinycomp.cluster import cluster_all_spec, cluster_model
    from tinycomp.data import calibration_samples
    from tinycomp.evaluate import evaluate_keras

    rows, batch = 300, 32
    x = np.random.default_rng(0).normal(size=(rows, 24)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (np.arange(rows) % 3).astype(np.int64))
    data = load_dataset(npy_x=tmp_path / "x.npy", npy_y=tmp_path / "y.npy")
    assert isinstance(np.load(tmp_path / "x.npy", mmap_mode="r"), np.memmap) and data.streamed

    largest = [0]
    original = MappedArray.__getitem__

    def counting(self, index):
        out = original(self, index)
        largest[0] = max(largest[0], len(out) if out.ndim == 2 else 1)
        return out

    monkeypatch.setattr(MappedArray, "__getitem__", counting)
    monkeypatch.setattr(MappedArray, "__array__", lambda *a, **k: pytest.fail("the whole array was read"))
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((24,)), tf_keras.layers.Dense(16, activation="relu", name="d"),
                                 tf_keras.layers.Dense(3, activation="softmax", name="out")])
    model.save(tmp_path / "m.keras")
    result = cluster_model(model, cluster_all_spec(model, 4), data, epochs=1, batch_size=batch)
    assert result.task == CLASSIFY and 0 <= result.test_accuracy <= 1
    assert calibration_samples(data, 20).shape == (20, 24)
    assert evaluate_keras(str(tmp_path / "m.keras"), data).samples == rows
    assert largest[0] <= 256  # the largest read: one evaluation batch, never the 300 rows


def test_tflm_eval_reads_a_streamed_test_set_a_chunk_at_a_time(tmp_path, monkeypatch):
    """A memory-mapped test set larger than one chunk reaches the TFLM workers chunk by chunk."""
    import tf_keras

    from tinycomp import evaluate
    from tinycomp.convert import quantize

    rows, chunk = 700, 64
    x = np.random.default_rng(1).normal(size=(rows, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (np.arange(rows) % 3).astype(np.int64))
    data = load_dataset(npy_x=tmp_path / "x.npy", npy_y=tmp_path / "y.npy")
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((12,)), tf_keras.layers.Dense(3, activation="softmax")])
    path = tmp_path / "m.tflite"
    path.write_bytes(quantize(model, method="int8", calibration=x[:20]))

    read = []
    original = MappedArray.__getitem__

    def counting(self, index):
        out = original(self, index)
        read.append(len(out))
        return out

    monkeypatch.setattr(MappedArray, "__getitem__", counting)
    monkeypatch.setattr(MappedArray, "__array__", lambda *a, **k: pytest.fail("the whole test set was read"))
    monkeypatch.setattr(evaluate, "EVAL_CHUNK_ROWS", chunk)
    result = evaluate.evaluate_tflite(str(path), data, jobs=2)
    assert result.samples == rows and result.runs_in == "TFLM"
    assert max(read) <= chunk and sum(r for r in read if r > 1) >= rows  # every row, never more than a chunk at once
