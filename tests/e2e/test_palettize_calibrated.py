"""palettize with data on tiny int8 models (tests/helpers.int8_models) in TFLM: the probe's input
statistics are the model's real inputs, the bias correction restores each channel's mean output,
the command records the rows it used, and without data nothing changes. All slow."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import int8_models, ok


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, bytes]:
    """int8 I/O models: conv (SAME, stride 2) → depthwise → dense on 8×8×4 inputs (the dense kernel large
    enough for LUT compression to shrink the file); two Dense layers (the
    last linear), also as an int16x8 file; one Dense layer with a zero bias (the converter stores none)."""
    import tf_keras

    layers = tf_keras.layers
    builds = {
        "cnn": ((8, 8, 4), [layers.Conv2D(16, 3, strides=2, padding="same", activation="relu",
                                          bias_initializer="random_uniform", name="conv"),
                            layers.DepthwiseConv2D(3, depth_multiplier=2, activation="relu", name="depthwise"),
                            layers.Flatten(), layers.Dense(32, name="dense")]),
        "dense": ((12,), [layers.Dense(16, activation="relu", bias_initializer="random_uniform", name="dense"),
                          layers.Dense(4, bias_initializer="random_uniform", name="dense_1")]),
        "nobias": ((12,), [layers.Dense(4, name="dense")]),
    }
    models = int8_models(builds)
    import tf_keras

    from tinycomp.convert import quantize

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.layers.Input(shape=(12,)), *builds["dense"][1]])
    calibration = np.random.default_rng(0).uniform(-1, 1, (16, 12)).astype(np.float32)
    models["int16x8"] = quantize(model, method="int16x8", io="float32", calibration=calibration)
    return models


def _rows(shape: tuple[int, ...], n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, *shape)).astype(np.float32)


@pytest.mark.slow
def test_probe_moments_of_the_first_layer_are_its_quantized_inputs(tiny_models):
    """The first conv reads the model input itself: its moments from TFLM equal the quantized rows' by hand."""
    from tinycomp import tflm
    from tinycomp.tflite.activations import geometry_of, measure_sums, moments, probe_model
    from tinycomp.tflite.model import parse_tflite
    from tinycomp.tflite.palettize import palettizable_weights

    model_bytes = tiny_models["cnn"]
    model = parse_tflite(model_bytes)
    weights = palettizable_weights(model)
    geometries = [geometry_of(model, w) for w in weights]
    assert [g.op for g in geometries] == ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"]
    probe, first = probe_model(model_bytes, [g.input_index for g in geometries])
    x = _rows((8, 8, 4))
    gram = (geometries[0], None, geometries[2])
    rows, sums, squares, grams = measure_sums(probe, first, x, jobs=2, gram=gram)
    assert rows == len(x) and grams[1] is None
    details = tflm.run_isolated(tflm.input_details, model_bytes)
    q = np.stack([tflm.quantize_input(row, {"dtype": details["dtype"], "quantization_parameters": {
        "scales": details["quantization_parameters"]["scales"],
        "zero_points": [int(z) for z in details["quantization_parameters"]["zero_points"]]}}) for row in x])
    np.testing.assert_allclose(sums[0].reshape(8, 8, 4), q.astype(float).sum(axis=0))
    found = moments(geometries[0], rows, sums[0], squares[0])
    assert found.mean.shape == (1, 3, 3, 4) and found.samples == len(x) * 16  # 4×4 output positions
    assert np.all(found.second >= found.mean ** 2 - 1e-9)
    for i in (0, 2):  # E[p pᵀ]'s diagonal is the second moment of each weight's input
        found = moments(geometries[i], rows, sums[i], squares[i])
        np.testing.assert_allclose(np.diag(grams[i]) / found.samples, found.second.ravel())


@pytest.mark.slow
def test_bias_correction_restores_the_mean_outputs(tiny_models):
    """On the calibration rows, the corrected palettized model's mean outputs (a linear last layer,
    corrected for its own and the first layer's shift) are closer to the int8 model's than the
    uncorrected one's; a layer without a bias is palettized and left uncorrected."""
    from tinycomp import tflm
    from tinycomp.tflite.levels import Calibration
    from tinycomp.tflite.palettize import palettize_model

    model_bytes = tiny_models["dense"]
    x = _rows((12,), 200)
    plain = palettize_model(model_bytes, 2)
    corrected = palettize_model(model_bytes, 2, calibration=Calibration(x, weighted=False, sequential=True, jobs=2))
    assert all(t.bias_shift is not None for t in corrected.tensors)
    assert corrected.calibration is not None and corrected.calibration["count"] == 200
    runs = tflm.run_parallel(tflm.predict_chunk, [(m, x, False) for m in (model_bytes, plain.data, corrected.data)],
                             workers=2)
    reference, uncorrected, fixed = (r.outputs.mean(axis=0) for r in runs)
    assert np.abs(fixed - reference).sum() < 0.5 * np.abs(uncorrected - reference).sum()
    wide = palettize_model(tiny_models["int16x8"], 2, calibration=Calibration(x, jobs=1))  # int16 inputs, int64 biases
    assert all(t.bias_shift is not None for t in wide.tensors)
    runs = tflm.run_parallel(tflm.predict_chunk, [(m, x, False) for m in (tiny_models["int16x8"], wide.data,
                                                                          palettize_model(tiny_models["int16x8"], 2).data)],
                             workers=2)
    reference, fixed, uncorrected = (r.outputs.mean(axis=0) for r in runs)
    assert np.abs(fixed - reference).sum() < np.abs(uncorrected - reference).sum()
    nobias = palettize_model(tiny_models["nobias"], 2, calibration=Calibration(x, jobs=1))
    assert [t.bias_shift for t in nobias.tensors] == [None] and nobias.tensors[0].weighted


@pytest.mark.slow
def test_palettize_with_data_records_its_rows_and_compresses(tiny_models, tmp_path):
    source = tmp_path / "cnn.tflite"
    source.write_bytes(tiny_models["cnn"])
    data = tmp_path / "d.npz"
    rng = np.random.default_rng(1)
    np.savez(data, x_train=rng.uniform(-1, 1, (300, 8, 8, 4)).astype(np.float32), y_train=rng.integers(0, 5, 300),
             x_test=rng.uniform(-1, 1, (50, 8, 8, 4)).astype(np.float32), y_test=rng.integers(0, 5, 50))
    out = tmp_path / "p.tflite"
    result = ok(["palettize", source, "--bits", "3", "--data", data, "--calibration-rows", "100", "--jobs", "2",
                 "-o", out])
    assert "Calibrating on 100 of d.npz's 300 training rows (seed 0)" in result.output
    record = json.loads((tmp_path / "p.json").read_text())
    assert record["calibration"]["split"] == "train" and len(record["calibration"]["rows"]) == 100
    assert record["calibration"]["rows"] == sorted(set(record["calibration"]["rows"]))
    assert record["dataset"]["name"] == "d.npz" and record["bits"] == 3
    assert "calibrated on 100 training rows of d.npz" in (tmp_path / "p.yaml").read_text()
    ok(["compress", out, "--spec", tmp_path / "p.yaml", "-o", tmp_path / "c.tflite"])
    again = tmp_path / "q.tflite"
    ok(["palettize", source, "--bits", "3", "--data", data, "--calibration-rows", "100", "-o", again])
    assert again.read_bytes() == out.read_bytes()  # deterministic, whatever the worker count


@pytest.mark.slow
def test_without_data_nothing_but_the_weights_changes_and_no_record(tiny_models, tmp_path):
    from tinycomp.specs import parse_compression_spec
    from tinycomp.tflite.model import parse_tflite
    from tinycomp.tflite.palettize import palettize_model

    source = tmp_path / "cnn.tflite"
    source.write_bytes(tiny_models["cnn"])
    out = tmp_path / "p.tflite"
    ok(["palettize", source, "--bits", "3", "-o", out])
    assert not (tmp_path / "p.json").exists()
    assert "calibrated" not in (tmp_path / "p.yaml").read_text()
    expected = parse_tflite(palettize_model(tiny_models["cnn"], 3).data)
    a, b = parse_tflite(tiny_models["cnn"]), parse_tflite(out.read_bytes())
    in_spec = {t.tensor for t in parse_compression_spec((tmp_path / "p.yaml").read_text()).tensors}
    for op in a.subgraphs[0].operators:
        if op.opcode_name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
            t = op.inputs[1].index  # palettized as the library does, or (left out of the spec) as it was
            source = expected if t in in_spec else a
            assert np.array_equal(b.subgraphs[0].tensors[t].array, source.subgraphs[0].tensors[t].array)
    weights = {op.inputs[1].index for op in a.subgraphs[0].operators if len(op.inputs) > 1 and op.inputs[1].buffer
               and op.inputs[1].buffer.data}
    for ta, tb in zip(a.subgraphs[0].tensors, b.subgraphs[0].tensors):
        if ta.index not in weights and ta.buffer is not None:
            assert bytes(ta.buffer.data) == bytes(tb.buffer.data)  # biases included


def _editor_model(kind: str) -> bytes:
    """Tiny int8 models TFLM runs that calibration must not mis-model: a grouped CONV_2D (filter depth 2,
    4 input channels), and one FULLY_CONNECTED weight and bias read by two operators."""
    from tinycomp.tflite.model import model_editor, schema

    editor, fb = model_editor(), schema()
    types, ops = fb.TensorType, fb.BuiltinOperator
    rng = np.random.default_rng(0)

    def tensor(shape, name, scale, data=None, dtype=types.INT8, axis=None, zero=0):
        zeros = [zero] * len(scale) if isinstance(scale, list) else zero
        return editor.Tensor(shape=shape, dtype=dtype, name=name, data=None if data is None else data.tobytes(),
                             quantization=editor.Quantization(scales=scale, zero_points=zeros, axis=axis))

    if kind == "grouped":
        x, y = tensor((1, 6, 6, 4), "x", 0.05), tensor((1, 6, 6, 8), "y", 0.1)
        w = tensor((8, 3, 3, 2), "conv/w", [0.01] * 8, rng.integers(-127, 128, (8, 3, 3, 2)).astype(np.int8), axis=0)
        b = tensor((8,), "conv/b", [0.0005] * 8, rng.integers(-500, 500, 8).astype(np.int32), types.INT32, axis=0)
        options = fb.Conv2DOptionsT()
        options.padding, options.strideH, options.strideW = fb.Padding.SAME, 1, 1
        op = editor.Operator(opcode=ops.CONV_2D, inputs=[x, w, b], outputs=[y])
        op._fb.builtinOptionsType, op._fb.builtinOptions = fb.BuiltinOptions.Conv2DOptions, options
        subgraph = editor.Subgraph(tensors=[x, w, b, y], operators=[op], inputs=[x], outputs=[y])
    else:
        x, h, y = tensor((1, 16), "x", 0.05, zero=-10), tensor((1, 16), "h", 0.05, zero=-10), tensor((1, 16), "y", 0.1)
        w = tensor((16, 16), "a/w", 0.01, rng.integers(-127, 128, (16, 16)).astype(np.int8))
        b = tensor((16,), "a/b", 0.0005, rng.integers(-2000, 2000, 16).astype(np.int32), types.INT32)
        operators = [editor.Operator(opcode=ops.FULLY_CONNECTED, inputs=[x, w, b], outputs=[h]),
                     editor.Operator(opcode=ops.FULLY_CONNECTED, inputs=[h, w, b], outputs=[y])]
        subgraph = editor.Subgraph(tensors=[x, w, b, h, y], operators=operators, inputs=[x], outputs=[y])
    return bytes(editor.Model(subgraphs=[subgraph]).build())


def test_grouped_conv_and_weights_read_twice_are_not_mis_calibrated():
    from tinycomp.errors import ModelError
    from tinycomp.tflite.levels import Calibration
    from tinycomp.tflite.model import parse_tflite
    from tinycomp.tflite.palettize import palettize_model

    grouped = _editor_model("grouped")
    palettize_model(grouped, 2)  # without data: fine
    with pytest.raises(ModelError) as error:
        palettize_model(grouped, 2, calibration=Calibration(np.random.default_rng(1).uniform(
            -1, 1, (8, 6, 6, 4)).astype(np.float32)), source="g.tflite")
    assert str(error.value).startswith("operator 0 is a grouped CONV_2D (filter depth 2, 4 input channels)")
    shared = _editor_model("shared")
    x = np.random.default_rng(1).uniform(-0.3, 0.6, (64, 16)).astype(np.float32)
    result = palettize_model(shared, 2, calibration=Calibration(x))
    assert result.calibration["without_data_read_by_several_operators"] == ["a/w"]
    assert np.array_equal(parse_tflite(result.data).subgraphs[0].tensors[2].array,
                          parse_tflite(shared).subgraphs[0].tensors[2].array)  # the shared bias is left alone
    assert result.data == palettize_model(shared, 2).data  # palettized as without data
