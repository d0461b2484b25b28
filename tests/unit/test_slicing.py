"""Slicing compressed kernels along output channels (`compress --decode-budget`), without TensorFlow:
the slice and concatenation-tree arithmetic against brute force, the specs' `decode_budget` key,
eval's table at 100 columns and its decoding note, and plan's choice with slicing (fake arenas).
Tiny models sliced and run in TFLM: tests/e2e/test_slicing_e2e.py.
"""

from __future__ import annotations

import itertools
import math

import pytest

from tinycomp.plan.choose import LayerSensitivity, Option, SensitivityTable, counted_drops
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


@pytest.mark.parametrize("channels,channel_bytes,budget", [(128, 800, 16384), (7, 3, 10), (10, 1, 10)])
def test_any_count_from_the_fewest_to_one_channel_each_fits(channels, channel_bytes, budget):
    fewest = len(slice_channels(channels, channel_bytes, budget))
    for count in range(fewest, channels + 1):
        sizes = slice_channels(channels, channel_bytes, budget, count)
        assert len(sizes) == count and sum(sizes) == channels and max(sizes) - min(sizes) <= 1
        assert max(sizes) * channel_bytes <= budget and sizes == sorted(sizes, reverse=True)
    for count in (fewest - 1, channels + 1):
        with pytest.raises(ValueError):
            slice_channels(channels, channel_bytes, budget, count)


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


# ---------------------------------------------------------------- plan: slicing before leaving a layer out

DECODED = {"a": 1000, "b": 5000, "c": 200}  # bytes each layer's decoded weights take in the arena


def _table() -> SensitivityTable:
    """Three layers (as in test_plan): a 1,000, b 5,000 and c 200 int8 weight bytes."""
    def layer(name: str, weights: int, rows: list) -> LayerSensitivity:
        options = [Option(None, 8, weights, weights)]
        options += [Option(c, c.bit_length() - 1, b, b, measured_drop=d) for c, b, d in rows]
        counted_drops(options)
        return LayerSensitivity(name, "Dense", weights, 1, False, options)

    return SensitivityTable([
        layer("a", 1000, [(2, 150, 2.0), (4, 280, 0.6), (16, 520, 0.1)]),
        layer("b", 5000, [(2, 700, 1.5), (4, 1300, 0.3), (16, 2600, 0.0)]),
        layer("c", 200, [(2, 120, 0.4), (4, 150, 0.2)]),
    ], int8_bytes=1000 + 5000 + 200 + 3000, reference_accuracy=0.9, control_accuracy=0.9)


def _arenas(combine, calls: list):
    """A fake arena measurement: 1,000 bytes of activations plus the decoded layers, combined."""
    def arenas_of(sets):
        calls.append(list(sets))
        return [1000 + combine([DECODED[n] for n in s] or [0]) for s in sets]
    return arenas_of


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
    plan = choose_plan_within_ram(table, Budget(max_drop=10.0, ram_bytes=3000), _arenas(max, []), _fake_slicing(calls))
    assert plan.uncompressed_for_ram == [] and "b" in plan.clustered()  # b (5,000 decoded bytes) is sliced instead
    assert plan.clustered() == choose_plan(table, Budget(max_drop=10.0)).clustered()
    # the largest budget that fits: 2,000 (3 slices of b): 1,000 + 1,667 + 100 × 2 more slices; 2,500 needs 3,600
    assert plan.decode_budget == 2000 and plan.arena_bytes == 2867
    assert plan_spec(table, plan).decode_budget == 2000
    assert calls[0][0] == 2500  # largest first: b in two slices


def test_ram_budget_leaves_a_layer_out_when_slicing_cannot_fit():
    from test_plan import _arenas, _table

    from tinycomp.plan.choose import Budget, choose_plan_within_ram

    calls: list = []
    plan = choose_plan_within_ram(_table(), Budget(max_drop=10.0, ram_bytes=1900), _arenas(max, []),
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


# ---------------------------------------------------------------- compress: the slice count chosen by arena (fast)

def fake_result(channels: dict[int, int], counts: dict[int, int], flash: int):
    """A CompressResult whose kernels (tensor → output channels) are cut into `counts` slices."""
    from tinycomp.tflite.compress import CompressResult
    from tinycomp.tflite.slicing import SlicedTensor, SliceResult

    sliced = [SlicedTensor(0, t, f"k{t}", "FULLY_CONNECTED", 100 * c, slice_channels(c, 1, c, counts[t]))
              for t, c in channels.items()]
    return CompressResult(b"x" * flash, [], 0, slicing=SliceResult(b"", sliced, [], {}))


def choose(channels: dict[int, int], fewest: dict[int, int], measure, last_first: bool = False, workers: int = 2):
    """Run the slice-count search as tflm.run_scheduled would, with `measure(counts) → (arena, flash)`
    instead of TFLM; results come back in release order, or the last released first."""
    from tinycomp.tflite.compress import _SliceCountSearch

    search = _SliceCountSearch(b"", None, 0, "m", "s", workers, 2, fake_result(channels, fewest, measure(fewest)[1]))
    seen: list[dict[int, int]] = []
    in_flight = list(search.ready())
    while in_flight:
        key, args = in_flight.pop(-1 if last_first else 0)
        counts = {t: n for (_, t), n in (args[3] or {}).items()} or dict(fewest)
        seen.append(counts)
        arena, flash = measure(counts)
        search.record(key, (args[-1] if key is None else fake_result(channels, counts, flash), arena))
        in_flight += search.ready()
    return search.result(), seen


def u_shaped(counts: dict[int, int]) -> tuple[int, int]:
    """Arena: the decoded slice (1,000 bytes per channel of 40) until a 10,000-byte floor, plus 500 per
    slice of bookkeeping; flash 400 per slice."""
    n = counts[7]
    return max(math.ceil(40 / n) * 1000, 10_000) + 500 * n, 70_000 + 400 * n


@pytest.mark.parametrize("last_first", [False, True])
def test_the_count_with_the_smallest_arena_wins_whatever_order_results_arrive_in(last_first):
    result, _ = choose({7: 40}, {7: 2}, u_shaped, last_first)
    [choice] = result.slice_counts
    arenas = {t.slices: t.arena_bytes for t in choice.trials}
    assert choice.chosen == 4 == min(arenas, key=arenas.get)  # 10,000 + 2,000
    assert list(arenas) == [2, 3, 4, 5, 6]  # stops after two counts in a row that do not win
    assert len(result.slicing.sliced[0].channels) == 4


def test_more_slices_must_save_at_least_the_flash_they_cost():
    def costly(counts):  # each slice saves 300 arena bytes and costs 400 flash bytes
        return 30_000 - 300 * counts[7], 70_000 + 400 * counts[7]

    result, _ = choose({7: 40}, {7: 2}, costly)
    [choice] = result.slice_counts
    assert choice.chosen == choice.fewest == 2 and [t.slices for t in choice.trials] == [2, 3, 4]


def test_equal_arenas_keep_the_fewer_slices():
    result, _ = choose({7: 40}, {7: 2}, lambda counts: (20_000, 70_000 - counts[7]))
    assert result.slice_counts[0].chosen == 2


def test_each_kernel_is_searched_with_the_others_at_their_chosen_counts():
    def two(counts):  # kernel 7 (40 channels) is best at 4 slices, kernel 9 (8 channels) at 2
        a, b = counts[7], counts[9]
        return max(math.ceil(40 / a) * 1000, 10_000) + 500 * a + abs(b - 2) * 600, 70_000 + 100 * (a + b)

    result, seen = choose({7: 40, 9: 8}, {7: 2, 9: 1}, two)
    assert [(c.tensor, c.chosen) for c in result.slice_counts] == [(7, 4), (9, 2)]  # the larger kernel first
    assert all(counts[7] == 4 for counts in seen if counts[9] != 1)


def test_a_kernel_already_at_one_channel_per_slice_is_not_measured_again():
    result, seen = choose({7: 3}, {7: 3}, lambda counts: (5_000, 1_000))
    assert seen == [{7: 3}] and result.slice_counts[0].chosen == 3
