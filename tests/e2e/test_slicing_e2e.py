"""Slicing compressed kernels along output channels (`compress --decode-budget`) on tiny int8 models:
one- and two-layer models (per-channel weights, as the converter makes them) are quantized, sliced and
compressed, and their TFLM outputs must be identical to the unsliced int8 model's.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import int8_models, ok, run_cli
from tinycomp.specs import CompressionSpec, PerChannel, TensorCompression, dump_compression_spec, parse_compression_spec
from tinycomp.tflite.slicing import concat_groups

# ---------------------------------------------------------------- tiny int8 models (slow)

@pytest.fixture(scope="module")
def tiny_models() -> dict[str, bytes]:
    """int8 models: dense (24 outputs, 12 bytes per channel), conv (22 outputs, 27 bytes per
    channel), two (two Dense layers), depthwise (a 400-byte DepthwiseConv2D kernel, then a Dense
    layer of 6 outputs with 64 bytes per channel)."""
    import tf_keras


    layers = tf_keras.layers
    builds = {
        "dense": ((12,), [layers.Dense(24, activation="relu", bias_initializer="random_uniform", name="dense")]),
        "conv": ((6, 6, 3), [layers.Conv2D(22, 3, activation="relu", bias_initializer="random_uniform", name="conv")]),
        "two": ((12,), [layers.Dense(30, activation="relu", bias_initializer="random_uniform", name="dense"), layers.Dense(5, name="dense_1")]),
        "depthwise": ((6, 6, 8), [layers.DepthwiseConv2D(5, depth_multiplier=2, name="depthwise"),
                                  layers.Flatten(), layers.Dense(6, name="dense")]),
    }
    return int8_models(builds)


def weights(model_bytes: bytes) -> list:
    """The weight tensors (input 1 of each FC/CONV_2D/DEPTHWISE_CONV_2D), in operator order."""
    from tinycomp.tflite.model import parse_tflite

    return [op.inputs[1] for op in parse_tflite(model_bytes).subgraphs[0].operators
            if op.opcode_name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")]


def spec_for(model_bytes: bytes) -> CompressionSpec:
    """Every weight tensor, 7-bit per-channel LUT on its quantized axis (fits any tiny layer)."""
    return CompressionSpec(tuple(TensorCompression(0, int(w.index), 7, PerChannel(int(w.quantization.axis or 0)))
                                 for w in weights(model_bytes)))


@pytest.mark.slow
@pytest.mark.parametrize("kind,budget,slices", [("dense", 100, 3), ("dense", 12, 24), ("conv", 300, 2),
                                                ("conv", 27, 22), ("two", 13 * 12, 3)])
def test_sliced_models_give_identical_outputs_in_tflm(tiny_models, kind, budget, slices):
    from tinycomp.tflite.compress import compress_model, verify_identical
    from tinycomp.tflite.model import parse_tflite

    original = tiny_models[kind]
    result = compress_model(original, spec_for(original), kind, decode_budget=budget)
    [sliced] = result.slicing.sliced
    assert len(sliced.channels) == slices and max(sliced.channels) * sliced.decoded_bytes // sum(sliced.channels) <= budget
    assert sliced.concatenations == sum(len(level) for level in concat_groups(slices))
    assert verify_identical(original, result.data, samples=8) == 8
    ops = [op.opcode_name for op in parse_tflite(result.data).subgraphs[0].operators]
    assert ops.count("TFLM_DECODE") == slices + (len(weights(original)) - 1)
    assert ops.count("CONCATENATION") == sliced.concatenations
    assert result.slicing_cost == len(result.data) - result.unsliced_bytes


@pytest.mark.slow
def test_each_slice_has_only_its_channels_quantization(tiny_models):
    from tinycomp.tflite.model import parse_tflite
    from tinycomp.tflite.slicing import slice_model

    original = tiny_models["dense"]
    [kernel] = weights(original)
    result = slice_model(original, [(0, int(kernel.index))], 100)
    model = parse_tflite(result.data)
    scales = np.asarray(kernel.quantization.scales)
    start = 0
    for k, index in enumerate(result.sliced[0].tensors):
        tensor = model.subgraphs[0].tensors[index]
        count = result.sliced[0].channels[k]
        assert tensor.name == f"dense/w{k}"
        assert np.array_equal(tensor.array, kernel.array[start:start + count])
        assert np.allclose(tensor.quantization.scales, scales[start:start + count])
        assert list(tensor.quantization.zero_points) == [0]  # all zero: kept once, TFLM broadcasts it
        [op] = [op for op in model.subgraphs[0].operators if op.inputs[1:2] == [tensor]]
        assert op.inputs[2].quantization is None  # per-channel FC never reads the bias's quantization
        start += count
    assert all(t is not kernel for t in model.subgraphs[0].tensors)
    assert len(result.data) < len(original) + 3 * 400  # no kernel bytes kept twice


@pytest.mark.slow
def test_one_channel_slices_keep_the_bias_scale_tflm_checks(tiny_models):
    from tinycomp.tflite.compress import compress_model, verify_identical
    from tinycomp.tflite.model import parse_tflite

    original = tiny_models["dense"]
    [kernel] = weights(original)
    result = compress_model(original, spec_for(original), "dense", decode_budget=12)  # 24 slices of one channel
    model = parse_tflite(result.data)
    fcs = [op for op in model.subgraphs[0].operators if op.opcode_name == "FULLY_CONNECTED"]
    assert len(fcs) == 24
    for k, op in enumerate(fcs):  # TFLM's per-tensor path checks bias scale == input scale × filter scale
        assert np.allclose(op.inputs[2].quantization.scales, [kernel.quantization.scales[k] *
                                                              op.inputs[0].quantization.scales[0]], rtol=1e-6)
    assert verify_identical(original, result.data, samples=8) == 8


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Compression of tensor")
def test_without_a_budget_or_under_it_the_file_is_what_tflite_micro_writes(tiny_models, tmp_path):
    """...less the stale quantization tflite-micro's writer leaves on encoded tensors (tinycomp.tflite.encoded)."""
    from tflite_micro import compression

    from tinycomp.tflite.encoded import without_encoded_quantization

    original = tiny_models["two"]
    spec = spec_for(original)
    model, spec_path = tmp_path / "m.tflite", tmp_path / "spec.yaml"
    model.write_bytes(original)
    spec_path.write_text(dump_compression_spec(spec))
    expected = without_encoded_quantization(bytes(compression.compress(original, spec.to_tflm())))
    ok(["compress", model, "--spec", spec_path, "-o", tmp_path / "plain.tflite", "--no-verify"])
    result = ok(["compress", model, "--spec", spec_path, "-o", tmp_path / "big.tflite", "--no-verify",
                 "--decode-budget", "1MiB"])
    assert (tmp_path / "plain.tflite").read_bytes() == expected == (tmp_path / "big.tflite").read_bytes()
    assert "nothing sliced" in result.output


@pytest.mark.slow
def test_the_specs_decode_budget_slices_and_the_option_overrides_it(tiny_models, tmp_path):
    original = tiny_models["dense"]
    model, spec_path = tmp_path / "m.tflite", tmp_path / "spec.yaml"
    model.write_bytes(original)
    spec_path.write_text(dump_compression_spec(CompressionSpec(spec_for(original).tensors, decode_budget=100)))
    result = ok(["compress", model, "--spec", spec_path, "-o", tmp_path / "a.tflite"])
    assert "3 slices of 8 output channels" in result.output and "identical to the original" in result.output
    assert "Slice count of tensor " in result.output and "the fewest that fit (3), for the decode_budget of" \
        in result.output  # the spec's budget (plan's) gets the fewest slices, as planned
    result = ok(["compress", model, "--spec", spec_path, "-o", tmp_path / "b.tflite", "--decode-budget", "150"])
    assert "2 slices of 12 output channels" in result.output
    assert b"dense/w0" in (tmp_path / "a.tflite").read_bytes()
    ok(["compress", model, "--spec", spec_path, "-o", tmp_path / "c.tflite", "--strip"])
    assert b"dense/w0" not in (tmp_path / "c.tflite").read_bytes()  # strip removes the slices' names


@pytest.mark.slow
def test_a_budget_under_one_channel_is_one_error_line_and_writes_nothing(tiny_models, tmp_path):
    original = tiny_models["conv"]
    [kernel] = weights(original)
    model, spec_path, out = tmp_path / "m.tflite", tmp_path / "spec.yaml", tmp_path / "out.tflite"
    model.write_bytes(original)
    spec_path.write_text(dump_compression_spec(spec_for(original)))
    result = run_cli(["compress", model, "--spec", spec_path, "-o", out, "--decode-budget", "20"])
    assert result.exit_code == 2 and not out.exists()
    assert result.output == (f"Error: a decode budget of 20 bytes is smaller than one output channel of tensor "
                             f"{kernel.index} ({kernel.name}), which decodes to 27 bytes (--decode-budget) — the "
                             "smallest decode budget that works is 27 bytes\n")
    result = run_cli(["compress", model, "--spec", spec_path, "-o", out, "--decode-budget", "a lot"])
    assert result.exit_code == 2 and not out.exists()
    assert result.output.startswith("Error: Invalid value for '--decode-budget': cannot read size 'a lot'")


@pytest.mark.slow
def test_depthwise_kernels_stay_whole_with_one_line(tiny_models, tmp_path):
    original = tiny_models["depthwise"]
    model, spec_path = tmp_path / "m.tflite", tmp_path / "spec.yaml"
    model.write_bytes(original)
    spec_path.write_text(dump_compression_spec(spec_for(original)))
    result = ok(["compress", model, "--spec", spec_path, "-o", tmp_path / "out.tflite", "--decode-budget", "100"])
    lines = [line for line in result.output.splitlines() if "stays whole" in line]
    assert len(lines) == 1 and "DEPTHWISE_CONV_2D is not sliced" in lines[0]
    assert "Sliced tensor" in result.output  # the Dense after it is sliced


@pytest.mark.slow
def test_a_plans_decode_budget_reaches_compress_through_find_tensors(pipeline, tmp_path):
    """plan writes decode_budget into the clustering spec; find-tensors copies it; compress applies it."""
    from tinycomp.tflite.model import read_tflite

    spec = parse_compression_spec(pipeline["compression_yaml"].read_text())
    model = read_tflite(pipeline["clustered_int8_tflite"]).model
    kernels = [model.subgraphs[t.subgraph].tensors[t.tensor] for t in spec.tensors]
    largest = max(kernels, key=lambda k: len(k.buffer.data))
    budget = len(largest.buffer.data) // 2  # two slices of the largest kernel
    clustering = tmp_path / "clustered.yaml"
    clustering.write_text(f"decode_budget: {budget}\n" + pipeline["clustered_yaml"].read_text())
    ok(["find-tensors", pipeline["clustered_int8_tflite"], "--clustering", clustering, "-o", tmp_path / "c.yaml"])
    assert parse_compression_spec((tmp_path / "c.yaml").read_text()).decode_budget == budget
    result = ok(["compress", pipeline["clustered_int8_tflite"], "--spec", tmp_path / "c.yaml", "--strip",
                 "-o", tmp_path / "sliced.tflite"])
    assert f"Sliced tensor {largest.index} ({largest.name}" in result.output and " 2 slices " in result.output
    assert "identical to the original" in result.output


def test_two_sliced_layers_in_a_row_stay_exact(tiny_models):
    from tinycomp.tflite.compress import compress_model, verify_identical
    from tinycomp.tflite.model import parse_tflite

    original = tiny_models["two"]
    result = compress_model(original, spec_for(original), "two", decode_budget=60)
    assert [len(s.channels) for s in result.slicing.sliced] == [6, 3]  # 12 and 30 bytes per channel
    assert verify_identical(original, result.data, samples=8) == 8
    names = [t.name for t in parse_tflite(result.data).subgraphs[0].tensors if t.name and "/w" in t.name]
    assert len(names) == len(set(names)) and "dense/w5" in names and "dense_1/w2" in names


@pytest.mark.slow
def test_the_option_chooses_each_slice_count_by_measured_arena(tiny_models, tmp_path):
    from tinycomp import tflm
    from tinycomp.tflite.compress import compress_choosing_slices, compress_model

    original = tiny_models["two"]
    spec = spec_for(original)
    model, spec_path, out = tmp_path / "m.tflite", tmp_path / "spec.yaml", tmp_path / "out.tflite"
    model.write_bytes(original)
    spec_path.write_text(dump_compression_spec(spec))
    result = ok(["compress", model, "--spec", spec_path, "-o", out, "--decode-budget", "60"])
    lines = [line for line in result.output.splitlines() if line.startswith("Slice count of tensor")]
    assert len(lines) == 2 and "identical to the original" in result.output

    chosen = compress_choosing_slices(original, spec, 60, workers=1)
    assert out.read_bytes() == chosen.data  # the same choice every time
    counts = {(c.subgraph, c.tensor): c.chosen for c in chosen.slice_counts}
    assert compress_model(original, spec, decode_budget=60, slice_counts=counts).data == chosen.data
    for choice in chosen.slice_counts:
        assert [t.slices for t in choice.trials] == list(range(choice.fewest, choice.fewest + len(choice.trials)))
        winner = next(t for t in choice.trials if t.slices == choice.chosen)
        assert winner is choice.trials[0] or winner.arena_bytes < choice.trials[0].arena_bytes
        for later in choice.trials[choice.trials.index(winner) + 1:]:  # none saves as much arena as it costs flash
            saved, cost = winner.arena_bytes - later.arena_bytes, later.flash_bytes - winner.flash_bytes
            assert not (saved > 0 and saved >= cost)
    last = chosen.slice_counts[-1]
    assert tflm.run_isolated(tflm.arena_of, chosen.data) == next(t.arena_bytes for t in last.trials if t.slices == last.chosen)
