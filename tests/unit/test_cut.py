"""tflite/cut.py on a model built with model_editor (no TensorFlow, no TFLM): which tensors are live at a
cut, what the suffix model keeps, and where its weights are. The outputs' bit-identity in TFLM is
tests/e2e/test_plan_cut_e2e.py's."""

from __future__ import annotations

import numpy as np
import pytest

from tinycomp.errors import ModelError
from tinycomp.plan.tflite_rows import CHECK_MULTIPLE, row_sets
from tinycomp.tflite.cut import first_reader, live_tensors, suffix_model, why_not_cut
from tinycomp.tflite.model import model_editor, parse_tflite, schema
from tinycomp.tflite.private import buffer_data_span, fast_buffer_packing

X, W1, H1, W2, H2, OUT = range(6)


def tiny_dag() -> bytes:
    """x → FC(w1) → h1 → FC(w2) → h2; ADD(h1, h2) → out: h1 is live past the second FC (a skip connection)."""
    editor, types, ops = model_editor(), schema().TensorType, schema().BuiltinOperator

    def tensor(shape: tuple[int, ...], name: str, scale: float, data: np.ndarray | None = None):
        return editor.Tensor(shape=shape, dtype=types.INT8, name=name,
                             data=None if data is None else data.astype(np.int8).tobytes(),
                             quantization=editor.Quantization(scales=scale, zero_points=0))

    rng = np.random.default_rng(0)
    t = [tensor((1, 4), "x", 0.1), tensor((3, 4), "w1", 0.02, rng.integers(-127, 128, (3, 4))),
         tensor((1, 3), "h1", 0.2), tensor((3, 3), "w2", 0.03, rng.integers(-127, 128, (3, 3))),
         tensor((1, 3), "h2", 0.3), tensor((1, 3), "out", 0.4)]
    operators = [editor.Operator(opcode=ops.FULLY_CONNECTED, inputs=[t[X], t[W1], None], outputs=[t[H1]]),
                 editor.Operator(opcode=ops.FULLY_CONNECTED, inputs=[t[H1], t[W2], None], outputs=[t[H2]]),
                 editor.Operator(opcode=ops.ADD, inputs=[t[H1], t[H2]], outputs=[t[OUT]])]
    subgraph = editor.Subgraph(tensors=t, operators=operators, inputs=[t[X]], outputs=[t[OUT]])
    return bytes(editor.Model(subgraphs=[subgraph]).build())


def test_live_tensors_are_the_activations_made_before_the_cut_and_read_after_it():
    model = parse_tflite(tiny_dag())
    assert live_tensors(model, 0) == [X]
    assert live_tensors(model, 1) == [H1]
    assert live_tensors(model, 2) == [H1, H2]  # the skip connection's h1 is still needed by ADD
    assert first_reader(model, W2) == 1 and first_reader(model, H1) == 1
    with pytest.raises(ModelError):
        live_tensors(model, 3)


def test_suffix_model_keeps_the_later_operators_with_the_same_tensors():
    given = parse_tflite(tiny_dag())
    cut = suffix_model(tiny_dag(), 1, [H1])
    model = parse_tflite(cut.data)
    subgraph = model.subgraphs[0]
    assert cut.inputs == (H1,) and cut.outputs == 1 and cut.extra_outputs == (H1,)
    assert [op.opcode for op in subgraph.operators] == [op.opcode for op in given.subgraphs[0].operators[1:]]
    assert [t.name for t in subgraph.inputs] == ["h1"]
    assert [t.name for t in subgraph.outputs] == ["out", "h1"]
    assert "x" not in {t.name for t in subgraph.tensors} and "w1" not in {t.name for t in subgraph.tensors}
    for new, old in zip(subgraph.inputs, [given.subgraphs[0].tensors[H1]]):
        assert tuple(new.shape) == tuple(old.shape) and new.dtype == old.dtype
        assert list(new.quantization.scales) == list(old.quantization.scales)
    assert set(cut.buffers) == {W2}  # w1 and its buffer are gone; w2's data is where the map says
    start, length = buffer_data_span(cut.data, cut.buffers[W2])
    assert cut.data[start:start + length] == given.subgraphs[0].tensors[W2].buffer.data


def test_a_cut_at_operator_0_only_adds_outputs():
    cut = suffix_model(tiny_dag(), 0, [H1, H2])
    subgraph = parse_tflite(cut.data).subgraphs[0]
    assert len(subgraph.operators) == 3 and cut.inputs == (X,)
    assert [t.name for t in subgraph.outputs] == ["out", "h1", "h2"]
    assert set(cut.buffers) == {W1, W2}


def test_models_with_state_or_several_subgraphs_are_not_cut():
    model = parse_tflite(tiny_dag())
    assert why_not_cut(model) is None
    model.subgraphs[0].tensors[H1].is_variable = True
    assert "variable" in (why_not_cut(model) or "")
    model = parse_tflite(tiny_dag())
    model.subgraphs.append(model.subgraphs[0])
    assert "2 subgraphs" in (why_not_cut(model) or "")


@pytest.mark.parametrize("bitwidth", range(1, 8))
def test_fast_index_packing_writes_the_bytes_tflite_micro_writes(bitwidth):
    from tflite_micro.tensorflow.lite.micro.compression import lut

    from tinycomp.tflite.private import fast_index_packing, packed_indices

    rng = np.random.default_rng(bitwidth)
    for size in (0, 1, 7, 8, 9, 1000, 1003):
        indices = rng.integers(0, 2 ** bitwidth, size).reshape(-1, 1) if size else np.zeros(0, int)
        assert packed_indices(indices, bitwidth) == lut.pack_indices(indices, bitwidth)
    original = lut.pack_indices
    with fast_index_packing():
        assert lut.pack_indices is packed_indices
    assert lut.pack_indices is original


def test_fast_buffer_packing_writes_the_same_bytes():
    slow = bytes(model_editor().read(tiny_dag()).build())
    with fast_buffer_packing():
        fast = bytes(model_editor().read(tiny_dag()).build())
    assert fast == slow
    assert bytes(model_editor().read(tiny_dag()).build()) == slow  # and the patch is gone afterwards


@pytest.mark.parametrize("held,wanted", [(100, 20), (100, 60), (100, 0), (30, 20), (10, 50)])
@pytest.mark.parametrize("multiple", sorted({1, 2, CHECK_MULTIPLE}))
def test_check_rows_start_with_the_candidate_rows_then_fresh_ones(held, wanted, multiple):
    rows, check = row_sets(held, wanted, seed=3, multiple=multiple)
    assert list(check[:len(rows)]) == list(rows)
    assert len(set(check.tolist())) == len(check) and set(check.tolist()) <= set(range(held))
    expected = held if not wanted else min(held, multiple * wanted)
    assert len(rows) == min(held, wanted or held) and len(check) == expected
    again = row_sets(held, wanted, seed=3, multiple=multiple)
    assert all(np.array_equal(a, b) for a, b in zip((rows, check), again))


def tiny_runner(monkeypatch: pytest.MonkeyPatch | None = None, cache_limit: int | None = None):
    """The plan's Runner on the tiny DAG (no worker pool: nothing here runs TFLM)."""
    from tinycomp.metrics import CLASSIFY
    from tinycomp.plan import tflite_palettes, tflite_rows, tflite_runner
    from tinycomp.plan.request import Measurement

    if cache_limit is not None and monkeypatch is not None:
        monkeypatch.setattr(tflite_runner, "MAX_CACHED_BYTES", cache_limit)
    palettes, _ = tflite_palettes.plannable(tiny_dag(), Measurement(cluster_counts=(4,)), "tiny")
    x = np.zeros((5, 4), np.float32)
    rows = tflite_rows.PlanRows(x[:3], np.zeros(3), x, np.zeros(5), CLASSIFY)
    return tflite_runner.Runner(palettes, rows, None, 1, check_rows=True), palettes


def test_each_tensor_is_cut_at_its_first_reader_and_its_values_land_in_the_cut_model():
    runner, palettes = tiny_runner()
    assert runner.op_of == {"w1": 0, "w2": 1}  # w1's first reader is the first operator: the whole file
    assert runner.live == {1: [H1]} and runner.cached == [H1]
    template, op = runner.model_with({"w2": 2})
    assert op == 1 and template.extra == ()  # no later cut: no tail to return
    start, length = buffer_data_span(template.data, template.buffers[W2])
    assert template.data[start:start + length] == palettes.array("w2", 2).tobytes()
    whole, op = runner.model_with({"w1": 2, "w2": 2})
    assert op == 0 and template.extra == () and whole.extra == (H1,)  # the whole file returns w2's cut input
    for name, index in (("w1", W1), ("w2", W2)):
        start, length = buffer_data_span(whole.data, whole.buffers[index])
        assert whole.data[start:start + length] == palettes.array(name, 2).tobytes()


def test_cuts_whose_activations_would_not_fit_the_cache_run_whole(monkeypatch):
    runner, _ = tiny_runner(monkeypatch, cache_limit=5 * 3 - 1)  # h1 is 3 bytes a row, 5 rows
    assert runner.op_of == {"w1": 0, "w2": 0} and runner.cached == []
    runner, _ = tiny_runner(monkeypatch, cache_limit=5 * 3)
    assert runner.op_of == {"w1": 0, "w2": 1}


def test_plan_refuses_weights_outside_subgraph_0():
    """Candidates, cuts and the check address subgraph 0's tensors by index: another subgraph's weight
    would be measured as subgraph 0's tensor of the same index."""
    import numpy as np

    from tinycomp.errors import ModelError
    from tinycomp.plan.request import Measurement
    from tinycomp.plan.tflite_palettes import plannable
    from tinycomp.tflite.model import model_editor, schema

    editor, types, ops = model_editor(), schema().TensorType, schema().BuiltinOperator

    def subgraph(tag: str, seed: int):
        def tensor(shape, name, scale, data=None):
            return editor.Tensor(shape=shape, dtype=types.INT8, name=name,
                                 data=None if data is None else data.astype(np.int8).tobytes(),
                                 quantization=editor.Quantization(scales=scale, zero_points=0))
        x, y = tensor((1, 16), f"x{tag}", 0.1), tensor((1, 16), f"y{tag}", 0.2)
        w = tensor((16, 16), f"{tag}/w/MatMul", 0.02, np.random.default_rng(seed).integers(-127, 128, (16, 16)))
        op = editor.Operator(opcode=ops.FULLY_CONNECTED, inputs=[x, w, None], outputs=[y])
        return editor.Subgraph(tensors=[x, w, y], operators=[op], inputs=[x], outputs=[y])

    data = bytes(editor.Model(subgraphs=[subgraph("a", 1), subgraph("b", 2)]).build())
    with pytest.raises(ModelError) as error:
        plannable(data, Measurement(cluster_counts=(4,)), "m.tflite")
    assert str(error.value) == ("the model has weight tensors in subgraph 1; plan measures the weights of subgraph 0 "
                                "only (m.tflite) — palettize such a model with `tinycomp palettize --bits N`, then "
                                "compress and eval it")
