"""plan MODEL.tflite runs each candidate from its tensor's first reader (tflite/cut.py), fed the given
file's activations, and the check from the plan's cuts: every output must be bit-identical to running
the whole palettized file in TFLM. Tiny int8 models (TensorFlow builds them), so all slow."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import int8_models
from tinycomp import tflm
from tinycomp.metrics import CLASSIFY
from tinycomp.plan.tflite_plan import Rows, Runner, TfliteMeasurement, bits_for, measure, prepare, score

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stacks() -> dict[str, tuple[bytes, tuple[int, ...], int]]:
    """{kind: (int8 bytes, input shape, classes)}: a conv/depthwise/dense stack, and dense layers only."""
    import tf_keras

    layers = tf_keras.layers
    builds = {
        "cnn": ((8, 8, 4), [layers.Conv2D(32, 3, activation="relu", name="conv"),
                            layers.DepthwiseConv2D(3, depth_multiplier=2, activation="relu", name="depthwise"),
                            layers.MaxPooling2D(), layers.Flatten(), layers.Dense(40, activation="relu", name="dense"),
                            layers.Dense(5, name="dense_1")]),
        "mlp": ((32,), [layers.Dense(64, activation="relu", name="dense"), layers.Dense(32, activation="relu", name="dense_1"),
                        layers.Dense(16, name="dense_2")]),
    }
    models = int8_models(builds)
    return {kind: (models[kind], shape, int(body[-1].units)) for kind, (shape, body) in builds.items()}


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_cut_candidates_and_checks_equal_the_whole_palettized_files(stacks, kind):
    int8, shape, classes = stacks[kind]
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (48, *shape)).astype(np.float32)
    y = rng.integers(0, classes, 48)
    rows = Rows(x[:20], y[:20], x, y, CLASSIFY)  # the check's rows start with the candidates' rows
    prepared = prepare(int8, TfliteMeasurement(bits=(2, 3)), strip=True, source=kind)
    palettes = prepared.palettes
    with tflm.worker_pool(2) as pool:
        runner = Runner(palettes, rows, pool, 2, check_rows=True)
        results = measure(runner, prepared.candidates)
        assert any(op > 0 for op in runner.op_of.values())  # the candidates are cut, not run whole
        assert np.array_equal(runner.reference, tflm.predict_chunk(int8, x, False).outputs)
        for c in prepared.candidates[1:]:
            choice = {c.layer: bits_for(c.clusters)}
            whole = tflm.predict_chunk(palettes.model_with(choice), rows.x, False).outputs
            assert np.array_equal(tflm.run_rows(*runner.candidate_task(choice)).outputs, whole), c.key
            assert results[c.key].zero_shot == score(whole, rows.y, CLASSIFY)
        names = list(prepared.usable)
        assert len(names) >= 3
        joints = [{names[0]: 2, names[-1]: 3}, {names[-1]: 2}, {n: 3 for n in names}, {names[1]: 2, names[-1]: 2}, {}]
        for choice in joints:
            whole = tflm.predict_chunk(palettes.model_with(choice), x, False).outputs
            assert np.array_equal(runner.run_joint(choice), whole), choice
        assert runner.tails  # the checks above ran from the plans' second tensors on the candidates' rows
