"""The pruning spec (parse, dump, --layer options) and the pruning schedule, without TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from tinycomp.errors import SpecError
from tinycomp.prune import INITIAL_SPARSITY, schedule_for
from tinycomp.specs import (
    LayerPruning,
    PruningSpec,
    dump_pruning_spec,
    parse_prune_layer_options,
    parse_pruning_spec,
)


def test_spec_default_sparsity_and_per_layer_override():
    spec = parse_pruning_spec("sparsity: 0.8\nepochs: 4\nlearning_rate: 0.001\nlayers:\n"
                              "  - name: conv2d_1\n  - name: dense\n    sparsity: 0.9\n")
    assert spec == PruningSpec((LayerPruning("conv2d_1", 0.8), LayerPruning("dense", 0.9)), 4, 0.001)


def test_dump_reads_back_equal_with_notes_as_comments():
    spec = PruningSpec((LayerPruning("conv2d_1", 0.5), LayerPruning("dense 1", 0.0)), 0, 1e-4)
    text = dump_pruning_spec(spec, "header", {"dense 1": "measured: 0.0000"})
    assert "  # measured: 0.0000" in text and text.startswith("# header\n")
    assert parse_pruning_spec(text) == spec


@pytest.mark.parametrize("text, message", [
    ("layers:\n  - name: dense\n", "no sparsity for this layer (pruning spec: layers[0])"),
    ("layers:\n  - name: dense\n    sparsity: 1\n", "sparsity 1 is outside [0, 1) (pruning spec: layers[0].sparsity)"),
    ("layers:\n  - name: dense\n    sparsity: -0.5\n", "sparsity -0.5 is outside [0, 1)"),
    ("layers:\n  - name: dense\n    sparsity: true\n", "expected a sparsity (a number in [0, 1)), got a boolean (True)"),
    ("layers:\n  - name: dense\n    clusters: 8\n", "unknown key 'clusters' (pruning spec: layers[0].clusters)"),
    ("sparsity: 0.5\nlayers: []\n", "no layers listed (pruning spec: layers)"),
    ("sparsity: 0.5\nlayers:\n  - name: d\n  - name: d\n", "layer d is listed twice (pruning spec: layers[1])"),
])
def test_bad_specs_name_the_key(text, message):
    with pytest.raises(SpecError) as error:
        parse_pruning_spec(text)
    assert str(error.value).startswith(message)


def test_layer_options():
    assert parse_prune_layer_options(("dense=0.5", "conv2d_1"), 0.8) == PruningSpec(
        (LayerPruning("dense", 0.5), LayerPruning("conv2d_1", 0.8)))
    for bad, message in (("dense=", "cannot read --layer 'dense='"), ("=0.5", "cannot read --layer '=0.5'"),
                         ("dense=x", "cannot read sparsity 'x'"), ("dense=1", "sparsity 1 is outside [0, 1)")):
        with pytest.raises(SpecError) as error:
            parse_prune_layer_options((bad,), None)
        assert str(error.value).startswith(message), str(error.value)
    with pytest.raises(SpecError, match="layer 'dense' is given twice"):
        parse_prune_layer_options(("dense=0.5", "dense=0.6"), None)


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 10, 31, 422, 1266, 10_000])
@pytest.mark.parametrize("sparsity", [0.0, 0.05, 0.5, 0.8, 0.99])
def test_schedule_reaches_the_target_at_a_mask_update_within_the_steps(steps, sparsity):
    s = schedule_for(sparsity, steps)
    assert 1 <= s["end_step"] <= steps
    assert s["end_step"] % s["frequency"] == 0  # TFMOT updates the mask at multiples of frequency: the last is the target
    assert s["final_sparsity"] == sparsity and s["initial_sparsity"] == min(INITIAL_SPARSITY, sparsity)
    if steps >= 30:
        assert s["end_step"] <= steps * 2 / 3 + 1  # a third of the steps train under the final mask


@pytest.mark.parametrize("rows, batch, expected", [
    (60_000, 128, 3),   # full MNIST: 422 steps per epoch, 3 epochs are 1,266 steps
    (8_096, 128, 15),   # 57 steps per epoch: 15 epochs for 800 steps
    (600, 32, 48),      # 17 steps per epoch
    (10, 128, 800),     # one step per epoch
])
def test_default_epochs_give_at_least_min_steps(rows, batch, expected):
    from types import SimpleNamespace

    from tinycomp.prune import MIN_STEPS, default_epochs, training_steps

    data = SimpleNamespace(x_train=np.zeros((rows, 1)))
    assert default_epochs(data, batch) == expected
    assert training_steps(data, expected, batch) >= MIN_STEPS
