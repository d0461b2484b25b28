"""plan MODEL.tflite runs each candidate from its tensor's first reader (tflite/cut.py), fed the given
file's activations, and the check from the plan's cuts: every output must be bit-identical to running
the whole palettized file in TFLM. Tiny int8 models (TensorFlow builds them), so all slow."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import int8_models
from tinycomp import tflm
from tinycomp.metrics import CLASSIFY
from tinycomp.plan.request import Measurement
from tinycomp.plan.tflite_palettes import plannable, tflite_candidates
from tinycomp.plan.tflite_rows import PlanRows, score
from tinycomp.plan.tflite_runner import Runner
from tinycomp.plan.tflite_schedule import measure

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
    rows = PlanRows(x[:20], y[:20], x, y, CLASSIFY)  # the check's rows start with the candidates' rows
    palettes, usable = plannable(int8, Measurement(cluster_counts=(4, 8)), kind)
    candidates = tflite_candidates(usable)
    with tflm.worker_pool(2) as pool:
        runner = Runner(palettes, rows, pool, 2, check_rows=True)
        results = measure(runner, candidates)
        assert any(op > 0 for op in runner.op_of.values())  # the candidates are cut, not run whole
        assert np.array_equal(runner.reference, tflm.predict_chunk(int8, x, False).outputs)
        for c in candidates[1:]:
            choice = {c.tensor: c.bits}
            whole = tflm.predict_chunk(palettes.model_with(choice), rows.x, False).outputs
            assert np.array_equal(tflm.run_rows(*runner.candidate_task(choice)).outputs, whole), c.key
            assert results[c.key].zero_shot == score(whole, rows.y, CLASSIFY)
        names = list(usable)
        assert len(names) >= 3
        joints = [{names[0]: 2, names[-1]: 3}, {names[-1]: 2}, {n: 3 for n in names}, {names[1]: 2, names[-1]: 2}, {}]
        for choice in joints:
            whole = tflm.predict_chunk(palettes.model_with(choice), x, False).outputs
            assert np.array_equal(runner.run_joint(choice), whole), choice
        assert runner.tails  # the checks above ran from the plans' second tensors on the candidates' rows


def _skip_model() -> bytes:
    """x→FC l0→s→FC l1→a (4,096 wide)→FC l2→b→FC l3→c, then ADD(s, c): s stays live across the wide part."""
    from tinycomp.tflite.model import model_editor, schema

    editor, types, ops = model_editor(), schema().TensorType, schema().BuiltinOperator
    rng = np.random.default_rng(0)

    def tensor(shape, name, scale, data=None):
        values = None if data is None else rng.integers(-127, 128, data).astype(np.int8).tobytes()
        return editor.Tensor(shape=shape, dtype=types.INT8, name=name, data=values,
                             quantization=editor.Quantization(scales=scale, zero_points=0))

    x = tensor((1, 4), "x", 0.1)
    w0, s = tensor((8, 4), "l0/w", 0.02, (8, 4)), tensor((1, 8), "s", 0.2)
    w1, a = tensor((4096, 8), "l1/w", 0.02, (4096, 8)), tensor((1, 4096), "a", 0.2)
    w2, b = tensor((8, 4096), "l2/w", 0.002, (8, 4096)), tensor((1, 8), "b", 0.3)
    w3, c = tensor((8, 8), "l3/w", 0.02, (8, 8)), tensor((1, 8), "c", 0.3)
    out = tensor((1, 8), "out", 0.4)

    def fc(i, w, o):
        return editor.Operator(opcode=ops.FULLY_CONNECTED, inputs=[i, w, None], outputs=[o])

    operators = [fc(x, w0, s), fc(s, w1, a), fc(a, w2, b), fc(b, w3, c),
                 editor.Operator(opcode=ops.ADD, inputs=[s, c], outputs=[out])]
    subgraph = editor.Subgraph(tensors=[x, w0, s, w1, a, w2, b, w3, c, out], operators=operators, inputs=[x],
                               outputs=[out])
    return bytes(editor.Model(subgraphs=[subgraph]).build())


def test_cuts_stay_monotone_when_the_cache_overflows_across_a_skip_connection(monkeypatch):
    """The wide activation overflows the cache at l2's cut; l1's cut would only need `s`, which l3's cut
    caches anyway, but running l1 from its cut while l2 runs whole would measure the wrong model."""
    from tinycomp.plan import tflite_runner

    monkeypatch.setattr(tflite_runner, "MAX_CACHED_BYTES", 20_000)
    data = _skip_model()
    palettes, usable = plannable(data, Measurement(cluster_counts=(4,)), "skip")
    x = np.random.default_rng(1).uniform(-1, 1, (10, 4)).astype(np.float32)
    y = np.zeros(10, int)
    with tflm.worker_pool(1) as pool:
        runner = Runner(palettes, PlanRows(x, y, x, y, CLASSIFY), pool, 1, check_rows=True)
        cut = sorted(op for op in runner.op_of.values() if op)
        uncut = [name for name, op in runner.op_of.items() if not op]
        assert cut and uncut and all(runner.op_of[name] == 0 for name in ("l0", "l1", "l2"))
        measure(runner, tflite_candidates(usable))
        for choice in ({"l1": 2, "l2": 2}, {"l1": 2, "l3": 2}, {"l0": 2, "l1": 2, "l2": 2, "l3": 2}):
            whole = tflm.run_rows(palettes.model_with(choice), (x,), True).outputs
            assert np.array_equal(runner.run_joint(choice), whole), choice
