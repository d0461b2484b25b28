"""Magnitude pruning with TFMOT: wrap the named layers, fine-tune while the sparsity rises, strip, count zeros.

The recipe is TFMOT's (`prune_low_magnitude` with a `PolynomialDecay` schedule, the `UpdatePruningStep`
callback, `strip_pruning`): each layer's kernel weights of smallest magnitude are set to zero, the
fraction rising from INITIAL_SPARSITY to the layer's target over the first RAMP_FRACTION of the
fine-tuning steps, and the rest of the steps train the kept weights under the final mask. The spec
says which layers and what sparsity; every entry is checked against the model before any work starts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinycomp.cluster import VALIDATION_SPLIT, validation_rows_of
from tinycomp.data import Dataset
from tinycomp.errors import InvalidValue, ModelError
from tinycomp.metrics import CLASSIFY, Task
from tinycomp.models import (
    choose_loss,
    compile_for_training,
    kernel_of,
    saved_config,
    score_keras,
    score_of,
    set_seed,
)
from tinycomp.specs import LayerPruning, PruningSpec, check_sparsity
from tinycomp.train import EpochCallback, check_fit_options, fine_tune_data, fit

# The schedule starts here (or at the target, when that is lower): the TFMOT guide's polynomial ramp,
# as in "10% → 80%", so the first mask update removes few weights and training adapts while more go.
INITIAL_SPARSITY = 0.1
# The target is reached after this fraction of the fine-tuning steps; the remaining third trains the
# kept weights under the final mask (prune, then retrain, as Deep Compression does).
RAMP_FRACTION = 2 / 3
# The mask is recomputed this many times on the way up (TFMOT's default is every 100 steps; a fixed
# count keeps the ramp the same on small and large data, and makes sure the last update is the target).
MASK_UPDATES = 10
# Fine-tuning length without --epochs: at least MIN_EPOCHS epochs and at least MIN_STEPS optimizer steps. The
# tutorial CNN pruned to 80% in every layer (at 1e-3) recovered its accuracy in 1,266 steps on full MNIST (3
# epochs) and in 855 on animal silhouettes (15 epochs of 8,096 images; 92.84% vs 92.96% unpruned), but not in
# 171 (3 epochs there: 77.53%): what counts is steps, and small data needs more epochs (docs/prune.md).
MIN_EPOCHS = 3
MIN_STEPS = 800
# TFMOT's registry: these layers have a kernel but TFMOT prunes none of their weights.
UNPRUNABLE_TYPES = ("DepthwiseConv2D",)
# Adam's rate for prune's fine-tune: Adam's default, as TFMOT's pruning guide uses. Pruning removes most of the
# weights, which fine-tuning must make up for, unlike clustering (whose default, 1e-4, keeps a converged model as it
# was): on full MNIST, the tutorial CNN pruned to 80% in every layer over 3 epochs kept 98.82% test accuracy at 1e-3
# (unpruned 98.70%) and 97.47% at 1e-4 (docs/prune.md). The held-out comparison reports any loss either way.
PRUNE_LEARNING_RATE = 1e-3


@dataclass
class PruneResult:
    """The stripped (plain tf_keras) model, its measured sparsity per layer, and its scores before and after."""

    model: Any
    sparsity: dict[str, float]  # layer → fraction of its kernel weights that are exactly zero
    task: Task = CLASSIFY
    test_before: dict[str, float] = field(default_factory=dict)  # the task's metrics of the unpruned model (test split)
    test_after: dict[str, float] = field(default_factory=dict)  # ... of the pruned model
    # the held-out validation rows: scores of the unpruned, the pruned-only and the fine-tuned model, and which is kept
    held_out: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)  # the PolynomialDecay parameters used
    loss: dict = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


def prunable_layers(model) -> list[str]:
    """Names of the layers whose kernel TFMOT prunes (Conv, Dense, ...; not DepthwiseConv2D)."""
    return [layer.name for layer in model.layers
            if kernel_of(layer) is not None and type(layer).__name__ not in UNPRUNABLE_TYPES]


def prune_all_spec(model, sparsity: float) -> PruningSpec:
    """A spec pruning every prunable layer to `sparsity` (for --sparsity without --layer)."""
    names = prunable_layers(model)
    if not names:
        raise ModelError("the model has no layer TFMOT can prune", "model",
                         "pruning needs a Dense or convolution layer with a kernel (DepthwiseConv2D is not pruned)")
    return PruningSpec(tuple(LayerPruning(name, sparsity) for name in names))


def left_out_layers(model) -> list[tuple[str, str]]:
    """(layer, why) for every layer with weights that `prune_all_spec` leaves out."""
    return [(layer.name, f"TFMOT does not prune {type(layer).__name__} layers") for layer in model.layers
            if kernel_of(layer) is not None and type(layer).__name__ in UNPRUNABLE_TYPES]


def validate_spec(model, spec: PruningSpec) -> None:
    """One ModelError naming the layer if any spec entry cannot be applied."""
    if not prunable_layers(model):
        prune_all_spec(model, 0.0)  # raises: no prunable layer
    layers = {layer.name: layer for layer in model.layers}
    for i, entry in enumerate(spec.layers):
        where = f"layers[{i}].name: {entry.name}"
        layer = layers.get(entry.name)
        if layer is None:
            raise ModelError(f"model has no layer {entry.name!r}", where, f"the model's layers are: {', '.join(layers)}")
        if entry.name not in prunable_layers(model):
            kind = type(layer).__name__
            why = "has no kernel to prune" if kernel_of(layer) is None else "is not pruned by TFMOT"
            raise ModelError(f"layer {entry.name!r} ({kind}) {why}", where,
                             f"prune one of: {', '.join(prunable_layers(model))}")
        check_sparsity(entry.sparsity, where)


def schedule_for(sparsity: float, steps: int) -> dict[str, Any]:
    """PolynomialDecay parameters reaching `sparsity` after RAMP_FRACTION of `steps` training steps.

    TFMOT updates the mask at steps 1, 2, ... whose number is a multiple of `frequency` up to
    `end_step`; end_step is such a multiple, so the last update applies the target exactly.
    """
    ramp = max(1, int(steps * RAMP_FRACTION))
    frequency = max(1, ramp // MASK_UPDATES)
    return {"initial_sparsity": min(INITIAL_SPARSITY, sparsity), "final_sparsity": sparsity, "begin_step": 0,
            "end_step": frequency * (ramp // frequency), "frequency": frequency, "power": 3}


def training_steps(data: Dataset, epochs: int, batch_size: int) -> int:
    """Optimizer steps of `fit` over the training rows left after the validation split."""
    rows = int(math.floor(len(data.x_train) * (1.0 - VALIDATION_SPLIT)))
    return epochs * max(1, math.ceil(rows / batch_size))


def default_epochs(data: Dataset, batch_size: int) -> int:
    """MIN_EPOCHS, or more when that many epochs of `data` are fewer than MIN_STEPS optimizer steps."""
    per_epoch = training_steps(data, 1, batch_size)
    return max(MIN_EPOCHS, math.ceil(MIN_STEPS / per_epoch))


def magnitude_prune(model, spec: PruningSpec):
    """A copy of `model` with each spec layer's smallest-magnitude kernel weights set to zero (no training).

    As TFMOT's mask: round(n × (1 − sparsity)) weights are kept, the largest |w|.
    """
    import tf_keras

    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for entry in spec.layers:
        kernel = kernel_of(copy.get_layer(entry.name))
        values = np.asarray(kernel.numpy())
        keep = int(round(values.size * (1.0 - entry.sparsity)))
        flat = values.ravel().copy()
        flat[np.argsort(np.abs(flat), kind="stable")[:values.size - keep]] = 0.0
        kernel.assign(flat.reshape(values.shape))
    return copy


def wrap_layers(model, spec: PruningSpec, steps: int):
    """A copy of `model` with the spec's layers wrapped by `prune_low_magnitude`, keeping trained weights;
    returns (wrapped model, {layer: schedule parameters})."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    schedules = {entry.name: schedule_for(entry.sparsity, steps) for entry in spec.layers}

    def clone_function(layer):
        params = schedules.get(layer.name)
        if params is None:
            return layer
        schedule = tfmot.sparsity.keras.PolynomialDecay(**params)
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)

    return tf_keras.models.clone_model(copy, clone_function=clone_function), schedules


def measured_sparsity(model, names: list[str]) -> dict[str, float]:
    """layer → fraction of its kernel weights that are exactly zero."""
    return {name: zero_fraction(np.asarray(kernel_of(model.get_layer(name)).numpy())) for name in names}


def zero_fraction(values: np.ndarray) -> float:
    return float(np.count_nonzero(values == 0)) / max(1, values.size)


def prune_model(model, spec: PruningSpec, data: Dataset, epochs: int = 3, batch_size: int = 128, seed: int = 0,
                on_epoch: EpochCallback | None = None, learning_rate: float = PRUNE_LEARNING_RATE, *,
                task: Task | None = None) -> PruneResult:
    """Prune the spec's layers of `model` while fine-tuning on `data` (epochs 0: prune once, no training).

    `model` itself is not changed. Three models are scored on the held-out last VALIDATION_SPLIT of
    the training rows: the unpruned model, the model pruned once by magnitude, and the fine-tuned
    pruned one; the fine-tuned one is returned unless the pruned-only model scores higher
    (`PruneResult.held_out` records all three, so a loss against the unpruned model is never silent).
    The task and the loss are chosen as `cluster` chooses them; the learning rate is PRUNE_LEARNING_RATE.
    """
    import tensorflow_model_optimization as tfmot

    check_fit_options(max(epochs, 1), batch_size, VALIDATION_SPLIT)
    if epochs < 0:
        raise InvalidValue(f"epochs must be 0 or more, got {epochs}", "epochs", "e.g. 3, or 0 for no fine-tuning")
    validate_spec(model, spec)
    data, chosen = fine_tune_data(model, data, task, VALIDATION_SPLIT)
    start = time.perf_counter()
    set_seed(seed)
    pruned_once = magnitude_prune(model, spec)
    result_model, tuned, history, loss, schedules = pruned_once, None, {}, None, {}
    if epochs > 0:
        set_seed(seed)
        wrapped, schedules = wrap_layers(model, spec, training_steps(data, epochs, batch_size))
        loss = compile_for_training(wrapped, learning_rate, task=chosen, saved_from=model)
        history = fit(wrapped, data, epochs, batch_size, VALIDATION_SPLIT, on_epoch,
                      callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
        tuned = tfmot.sparsity.keras.strip_pruning(wrapped)
    if loss is None:
        saved = saved_config(model)
        loss = choose_loss(model, task=chosen, saved_loss=saved.saved_loss if saved else None)
    held_out = compare_held_out(model, pruned_once, tuned, data, chosen, epochs)
    if tuned is not None and held_out["used"] == "fine-tuned":
        result_model = tuned
    return PruneResult(result_model, measured_sparsity(result_model, spec.layer_names()), chosen,
                       score_keras(model, data, chosen), score_keras(result_model, data, chosen), held_out,
                       schedules, loss.describe(), history, time.perf_counter() - start)


def compare_held_out(original: Any, pruned_once: Any, tuned: Any | None, data: Dataset, task: Task,
                     epochs: int) -> dict[str, Any]:
    """The held-out validation scores of the unpruned, pruned-only and fine-tuned models, and which is
    kept: the fine-tuned one unless the pruned-only one scores higher."""
    x_val, y_val = validation_rows_of(data)
    compared: dict[str, Any] = {"epochs": epochs, "validation_rows": int(len(x_val)), "metric": task.metric}
    if len(x_val) == 0:
        compared["used"] = "fine-tuned" if tuned is not None else "pruned once"
        return compared
    compared["unpruned"] = score_of(original, x_val, y_val, task)
    compared["pruned_once"] = score_of(pruned_once, x_val, y_val, task)
    used = "pruned once"
    if tuned is not None:
        compared["fine_tuned"] = score_of(tuned, x_val, y_val, task)
        used = "fine-tuned" if compared["fine_tuned"] >= compared["pruned_once"] else "pruned once"
    compared["used"] = used
    compared["kept"] = compared["fine_tuned" if used == "fine-tuned" else "pruned_once"]
    return compared
