"""Slicing compressed kernels along output channels (`compress --decode-budget`).

Fast tests check the slice and concatenation-tree arithmetic against brute force and the specs'
`decode_budget` key. Slow tests quantize tiny one- and two-layer int8 models (per-channel
weights, as the converter makes them), slice and compress them, and require TFLM outputs
identical to the unsliced int8 model's.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from conftest import ok, run_cli
from tinycomp.specs import (
    ClusteringSpec,
    CompressionSpec,
    LayerClustering,
    PerChannel,
    TensorCompression,
    dump_clustering_spec,
    dump_compression_spec,
    parse_clustering_spec,
    parse_compression_spec,
)
from tinycomp.tflite.slicing import MAX_CONCAT_INPUTS, concat_groups, short_base, slice_channels

# ---------------------------------------------------------------- arithmetic (fast)


@pytest.mark.parametrize("channels,channel_bytes,budget", list(itertools.product((1, 7, 10, 128), (1, 3, 800),
                                                                                  (800, 1000, 16384, 10 ** 6))))
def test_slices_are_the_fewest_that_fit_and_differ_by_at_most_one(channels, channel_bytes, budget):
    sizes = slice_channels(channels, channel_bytes, budget)
    assert sum(sizes) == channels and max(sizes) - min(sizes) <= 1
    assert max(sizes) * channel_bytes <= budget
    fewest = next(n for n in range(1, channels + 1) if math.ceil(channels / n) * channel_bytes <= budget)
    assert len(sizes) == fewest


def test_a_channel_over_the_budget_cannot_be_sliced():
    with pytest.raises(ValueError):
        slice_channels(4, 800, 799)


@pytest.mark.parametrize("count", [1, 2, 9, 10, 11, 26, 100, 101, 1000])
def test_concatenation_tree_takes_at_most_ten_inputs_per_node(count):
    levels = concat_groups(count)
    inputs = count
    for sizes in levels:
        assert sum(sizes) == inputs and max(sizes) <= MAX_CONCAT_INPUTS and max(sizes) - min(sizes) <= 1
        inputs = len(sizes)
    assert len(levels[-1]) == 1
    assert len(levels) == next(depth for depth in itertools.count(1) if MAX_CONCAT_INPUTS ** depth >= count)


def test_slice_names_are_short():
    assert short_base("sequential/dense/MatMul", 7) == "dense"
    assert short_base("sequential_1/conv2d_1/Conv2D;x/y", 3) == "conv2d_1"
    assert short_base("", 3) == "t3"


def test_specs_carry_the_decode_budget_and_omit_it_when_unset():
    layers = (LayerClustering("dense", 16),)
    assert "decode_budget" not in dump_clustering_spec(ClusteringSpec(layers))
    assert parse_clustering_spec(dump_clustering_spec(ClusteringSpec(layers, 16384))).decode_budget == 16384
    tensors = (TensorCompression(0, 7, 4, PerChannel(0)),)
    assert "decode_budget" not in dump_compression_spec(CompressionSpec(tensors))
    text = dump_compression_spec(CompressionSpec(tensors, decode_budget=4096))
    assert parse_compression_spec(text).decode_budget == 4096
    from tflite_micro import compression  # upstream's parser still reads the file
    assert [t.tensor for t in compression.parse_yaml(text)] == [7]


# ---------------------------------------------------------------- tiny int8 models (slow)

@pytest.fixture(scope="module")
def tiny_models() -> dict[str, bytes]:
    """int8 models: dense (24 outputs, 12 bytes per channel), conv (22 outputs, 27 bytes per
    channel), two (two Dense layers), depthwise (a 400-byte DepthwiseConv2D kernel, then a Dense
    layer of 6 outputs with 64 bytes per channel)."""
    import tf_keras

    from tinycomp.convert import quantize

    layers = tf_keras.layers
    builds = {
        "dense": ((12,), [layers.Dense(24, activation="relu", bias_initializer="random_uniform", name="dense")]),
        "conv": ((6, 6, 3), [layers.Conv2D(22, 3, activation="relu", bias_initializer="random_uniform", name="conv")]),
        "two": ((12,), [layers.Dense(30, activation="relu", bias_initializer="random_uniform", name="dense"), layers.Dense(5, name="dense_1")]),
        "depthwise": ((6, 6, 8), [layers.DepthwiseConv2D(5, depth_multiplier=2, name="depthwise"),
                                  layers.Flatten(), layers.Dense(6, name="dense")]),
    }
    models = {}
    for kind, (shape, body) in builds.items():
        tf_keras.utils.set_random_seed(0)
        model = tf_keras.Sequential([layers.Input(shape=shape), *body])
        calibration = np.random.default_rng(0).uniform(-1, 1, (16, *shape)).astype(np.float32)
        models[kind] = quantize(model, method="int8", io="int8", calibration=calibration)
    return models


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
    assert result.slicing_cost is not None and result.slicing_cost > 0


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
        [op] = [op for op in model.subgraphs[0].operators if op.inputs[1:2] == [tensor]]
        assert len(op.inputs[2].quantization.scales) == count  # the bias slice too
        start += count
    assert all(t is not kernel for t in model.subgraphs[0].tensors)
    assert len(result.data) < len(original) + 3 * 400  # no kernel bytes kept twice


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Compression of tensor")
def test_without_a_budget_or_under_it_the_file_is_what_tflite_micro_writes(tiny_models, tmp_path):
    from tflite_micro import compression

    original = tiny_models["two"]
    spec = spec_for(original)
    model, spec_path = tmp_path / "m.tflite", tmp_path / "spec.yaml"
    model.write_bytes(original)
    spec_path.write_text(dump_compression_spec(spec))
    expected = bytes(compression.compress(original, spec.to_tflm()))
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


# ---------------------------------------------------------------- eval: the table and the decoding note (fast)

def demo_results() -> list:
    """`make demo`'s five files with the tutorial's sizes (arena 16,400 int8, 108,624 compressed)."""
    from tinycomp.evaluate import ModelResult

    rows = [("build/model.tflite", 469_692, 48_000), ("build/model_int8.tflite", 127_864, 16_400),
            ("build/clustered_int8.tflite", 127_864, 16_400), ("build/compressed.tflite", 79_296, 108_624),
            ("build/compressed_16k.tflite", 82_768, 24_368)]
    return [ModelResult(path, "tflm", flash, 0.9871, 10_000, arena, 1.234, 469_692 / flash, -0.01,
                        agreement_top1=0.9987, agreement_snr_db=41.5, gzip_bytes=flash - 9_000, runs_in="TFLM") for path, flash, arena in rows]


def test_eval_table_fits_100_columns_without_breaking_names():
    from rich.console import Console

    from tinycomp.render import eval_table

    console = Console(width=100, record=True)
    console.print(eval_table(demo_results(), "MNIST"))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "model (.tflite)" in text
    for name in ("model", "model_int8", "clustered_int8", "compressed", "compressed_16k"):
        assert f"│ {name} " in text  # whole, on one line
    assert "82,768" in text and "24,368" in text and "99.87%" in text


def test_eval_table_keeps_paths_that_share_a_file_name():
    from rich.console import Console

    from tinycomp.render import eval_table

    results = demo_results()[:2]
    results[1].path = "other/model.tflite"
    console = Console(width=200, record=True)
    console.print(eval_table(results, "MNIST"))
    text = console.export_text()
    assert "│ build/model " in text and "│ other/model " in text


def test_decoding_note_suggests_a_decode_budget_that_would_fit():
    from tinycomp.render import decoding_note

    compressed = demo_results()[3]
    compressed.alt_decompression_bytes, compressed.arena_bytes_with_alt_decompression = 102_400, 16_400
    line = decoding_note(compressed)
    assert "costs 92,224 of its 108,624 arena bytes" in line and "`compress --decode-budget 16KiB`" in line
    assert "`compress --decode-budget 47KiB`" in decoding_note(compressed, ram_budget=64 * 1024)
    assert "--decode-budget" not in decoding_note(compressed, ram_budget=16_000)  # nothing would fit
    assert "--decode-budget" not in decoding_note(compressed, ram_budget=200_000)  # it fits already
    assert decoding_note(demo_results()[1]) is None  # int8: nothing decoded


# ---------------------------------------------------------------- plan: slicing before leaving a layer out (fast)

def _fake_slicing(calls: list, bookkeeping: int = 100, channels: int = 10):
    """Decode budgets of test_plan's layers (10 output channels each) and a fake arena: 1,000 bytes of
    activations, the largest decoded slice, and `bookkeeping` bytes per slice beyond one per layer."""
    from test_plan import DECODED
    from tinycomp.plan.choose import Slicing

    def slices(n: str, budget: int) -> int:
        per_channel = DECODED[n] // channels
        return math.ceil(channels / max(1, budget // per_channel))

    def budgets(names: frozenset) -> list[int]:
        found = {math.ceil(channels / k) * (DECODED[n] // channels) for n in names for k in range(1, channels + 1)}
        floor = max(DECODED[n] // channels for n in names)
        return sorted((b for b in found if floor <= b < max(DECODED[n] for n in names)), reverse=True)

    def arenas(names: frozenset, tried: list[int]) -> list[int]:
        calls.append(list(tried))
        return [1000 + max(math.ceil(DECODED[n] / slices(n, b)) for n in names)
                + bookkeeping * sum(slices(n, b) - 1 for n in names) for b in tried]

    return Slicing(budgets, arenas, batch=2)


def test_ram_budget_slices_before_leaving_a_layer_uncompressed():
    from test_plan import _arenas, _table
    from tinycomp.plan.choose import Budget, choose_plan, choose_plan_within_ram, plan_spec

    calls: list = []
    table = _table()
    plan = choose_plan_within_ram(table, Budget(max_drop_pp=10.0, ram_bytes=3000), _arenas(max, []), _fake_slicing(calls))
    assert plan.uncompressed_for_ram == [] and "b" in plan.clustered()  # b (5,000 decoded bytes) is sliced instead
    assert plan.clustered() == choose_plan(table, Budget(max_drop_pp=10.0)).clustered()
    # the largest budget that fits: 2,000 (3 slices of b): 1,000 + 1,667 + 100 × 2 more slices; 2,500 needs 3,600
    assert plan.decode_budget == 2000 and plan.arena_bytes == 2867
    assert plan_spec(table, plan).decode_budget == 2000
    assert calls[0][0] == 2500  # largest first: b in two slices


def test_ram_budget_leaves_a_layer_out_when_slicing_cannot_fit():
    from test_plan import _arenas, _table
    from tinycomp.plan.choose import Budget, choose_plan_within_ram

    calls: list = []
    plan = choose_plan_within_ram(_table(), Budget(max_drop_pp=10.0, ram_bytes=1900), _arenas(max, []),
                                  _fake_slicing(calls, bookkeeping=400))
    assert "b" not in plan.clustered() and plan.uncompressed_for_ram == ["b"]
    assert plan.decode_budget == 500 and plan.arena_bytes == 1900  # then a (1,000 decoded) fits in two slices
    tried = [b for batch in calls for b in batch]
    assert len(tried) < 10 and tried == sorted(tried, reverse=True)  # stopped once the arena rose again


def test_decode_budgets_are_every_distinct_slicing_largest_first():
    from tinycomp.plan.costs import WeightInfo, decode_budgets
    from tinycomp.specs import PerTensor

    infos = {"dense": WeightInfo("dense", 0, 7, 102_400, 102_400, 1, PerTensor(), (128, 800), "FULLY_CONNECTED"),
             "conv": WeightInfo("conv", 0, 9, 4_608, 4_608, 32, PerChannel(0), (32, 3, 3, 16), "CONV_2D"),
             "dw": WeightInfo("dw", 0, 3, 9_000, 9_000, 1000, PerChannel(3), (1, 3, 3, 1000), "DEPTHWISE_CONV_2D")}
    budgets = decode_budgets(infos, frozenset(infos))
    assert budgets == sorted(set(budgets), reverse=True) and budgets[0] < 102_400 and budgets[-1] == 800
    for budget in (100_000, 16_384, 15_200, 4_000, 801):  # brute force: each budget's slicing appears once
        slicing = (len(slice_channels(128, 800, budget)), len(slice_channels(32, 144, budget)) if budget >= 144 else 0)
        listed = [b for b in budgets if b <= budget]
        assert listed and (len(slice_channels(128, 800, listed[0])),
                           len(slice_channels(32, 144, listed[0]))) == slicing


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
