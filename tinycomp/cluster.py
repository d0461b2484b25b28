"""Weight clustering with TFMOT: wrap the named layers, fine-tune, strip, count unique weights.

The recipe is the TFLM tutorial's (`cluster_weights` on selected layers, k-means++ centroids,
2 epochs of fine-tuning, `strip_clustering`); the spec says which layers and how many clusters.
Every layer in the spec is checked against the model before any work starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tinycomp.data import Dataset
from tinycomp.errors import InvalidValue, ModelError, SpecError
from tinycomp.metrics import CLASSIFY, Task
from tinycomp.models import (
    FINE_TUNE_LEARNING_RATE,
    choose_loss,
    compile_for_training,
    kernel_of,
    outputs_of,
    saved_config,
    score_keras,
    score_of,
    set_seed,
)
from tinycomp.specs import ClusteringSpec, LayerClustering, PlanValidation
from tinycomp.train import EpochCallback, check_fit_options, fine_tune_data, fit

# spec init name → tfmot.clustering.keras.CentroidInitialization member
CENTROID_INITS = {
    "kmeans++": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density": "DENSITY_BASED",
    "random": "RANDOM",
}
VALIDATION_SPLIT = 0.1
# TFMOT's registry lists DepthwiseConv2D with no clusterable weights ("big unrecoverable accuracy loss").
UNCLUSTERABLE_TYPES = ("DepthwiseConv2D",)
# A kernel with at least this share of exact zeros was pruned (a trained float kernel has none): unless the
# spec says otherwise, its zeros are kept (TFMOT's preserve_sparsity: one centroid pinned at 0, zeros masked).
SPARSE_KERNEL_ZEROS = 0.01


@dataclass
class ClusterResult:
    """The stripped (plain tf_keras) model, its test accuracy and unique kernel values per layer."""

    model: Any
    test_accuracy: float | None  # None for the regress task: see test_metrics
    unique_values: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    history: dict[str, list[float]] = field(default_factory=dict)
    task: Task = CLASSIFY
    test_metrics: dict[str, float] = field(default_factory=dict)  # the task's metrics on the test split
    loss: dict = field(default_factory=dict)  # LossChoice.describe(): loss, from_logits and why
    # {"epochs", "used"} and, when fine-tuned, the validation scores zero-shot and fine-tuned (see better_of)
    fine_tuning: dict = field(default_factory=dict)
    spec: ClusteringSpec | None = None  # the spec as applied: preserve_sparsity decided for every layer


def cluster_model(model, spec: ClusteringSpec, data: Dataset, epochs: int = 2, batch_size: int = 128,
                  seed: int = 0, on_epoch: EpochCallback | None = None,
                  learning_rate: float = FINE_TUNE_LEARNING_RATE, *, task: Task | None = None) -> ClusterResult:
    """Cluster the spec's layers of `model`, fine-tune on `data` (epochs 0: not at all), strip the wrappers.

    `model` itself is not changed. Fine-tuning never makes the result worse: the zero-shot model
    (clustered, not fine-tuned) and the fine-tuned one are scored on the held-out last
    VALIDATION_SPLIT of the training rows, and the fine-tuned one is returned only when it scores
    no lower (`ClusterResult.fine_tuning` records both scores and which was kept). A spec with a plan's
    `validation` fine-tunes without the plan's validation rows and keeps what the plan's check kept
    (`as_the_plan_decides`), so the chain makes the model the check measured. A spec without
    layers clusters nothing and returns an unchanged copy.

    Adam's learning rate (`learning_rate`, models.FINE_TUNE_LEARNING_RATE, 1e-4) was chosen by
    measurement on four real models: 1e-3 (the TFLM tutorial's) loses a converged model's accuracy,
    1e-5 (TFMOT's guide) recovers few-cluster layers poorly.

    `task` (CLASSIFY | REGRESS, default from the data: see metrics.choose_task) picks the
    metric and, unless the model was saved with a compile config, the fine-tuning loss
    (models.choose_loss). Data without labels is reconstructed (y = x).

    A layer whose `preserve_sparsity` the spec leaves open (None) keeps its zeros when its kernel is
    sparse (`with_sparsity_decided`), and so does every sparse layer the spec does not cluster while
    the model is fine-tuned (`keep_zeros_callbacks`): clustering a pruned model keeps it pruned.
    """
    import tensorflow_model_optimization as tfmot

    check_fit_options(max(epochs, 1), batch_size, VALIDATION_SPLIT)
    if epochs < 0:
        raise InvalidValue(f"epochs must be 0 or more, got {epochs}", "epochs", "e.g. 2, or 0 for no fine-tuning")
    validate_spec(model, spec)
    spec = with_sparsity_decided(model, spec)
    data, chosen = fine_tune_data(model, data, task, VALIDATION_SPLIT)
    start = time.perf_counter()
    set_seed(seed)
    zero_shot = tfmot.clustering.keras.strip_clustering(wrap_layers(model, spec))
    result_model, history, loss, fine_tuning = zero_shot, {}, None, {"epochs": 0, "used": False}
    if epochs > 0 and spec.layers:
        split = None if spec.validation is None else planned_split(data, spec.validation)
        set_seed(seed)  # the same centroids as the zero-shot model
        clustered = wrap_layers(model, spec)
        loss = compile_for_training(clustered, learning_rate, task=chosen, saved_from=model)
        callbacks = keep_zeros_callbacks(clustered, set(spec.layer_names()))
        if split is None:
            history = fit(clustered, data, epochs, batch_size, VALIDATION_SPLIT, on_epoch, callbacks=callbacks)
            tuned = tfmot.clustering.keras.strip_clustering(clustered)
            fine_tuning = better_of(zero_shot, tuned, data, chosen, epochs)
        else:  # as the plan's check fine-tuned: without its validation rows, decided on them
            fit_rows, x_val, y_val = data.validation_rows(split)
            history = fit(clustered, fit_rows, epochs, batch_size, 0.0, on_epoch, callbacks=callbacks)
            tuned = tfmot.clustering.keras.strip_clustering(clustered)
            fine_tuning = as_the_plan_decides(model, zero_shot, tuned, x_val, y_val, split, chosen, epochs)
        result_model = tuned if fine_tuning["used"] else zero_shot
    if loss is None:
        saved = saved_config(model)
        loss = choose_loss(model, task=chosen, saved_loss=saved.saved_loss if saved else None)
    metrics = score_keras(result_model, data, chosen)
    unique = {name: count_unique_kernel_values(result_model, name) for name in spec.layer_names()}
    return ClusterResult(result_model, metrics.get("accuracy"), unique, time.perf_counter() - start, history,
                         chosen, metrics, loss.describe(), fine_tuning, spec)


def kernel_zero_fraction(model, layer_name: str) -> float:
    """The share of a layer's kernel weights that are exactly zero."""
    values = np.asarray(kernel_of(model.get_layer(layer_name)).numpy())
    return float(np.count_nonzero(values == 0)) / max(1, values.size)


def sparse_kernels(model, skip: set[str]) -> list[tuple[str, Any]]:
    """(name, kernel variable) of every layer not in `skip` whose kernel is at least SPARSE_KERNEL_ZEROS zeros."""
    found = []
    for layer in model.layers:
        kernel = kernel_of(layer) if layer.name not in skip else None
        if kernel is not None and kernel_zero_fraction(model, layer.name) >= SPARSE_KERNEL_ZEROS:
            found.append((layer.name, kernel))
    return found


def keep_zeros_callbacks(model, skip: set[str]) -> list:
    """Keras callbacks that keep the zeros of the sparse kernels of `model`'s layers not in `skip` (the ones
    not clustered) through fine-tuning: after every batch each such kernel is multiplied by its zero mask."""
    import tf_keras

    masks = [(kernel, (np.asarray(kernel.numpy()) != 0).astype(np.float32)) for _, kernel in sparse_kernels(model, skip)]
    if not masks:
        return []

    class _KeepZeros(tf_keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            for kernel, mask in masks:
                kernel.assign(kernel * mask)

    return [_KeepZeros()]


def with_sparsity_decided(model, spec: ClusteringSpec) -> ClusteringSpec:
    """`spec` with every open `preserve_sparsity` (None) decided: True for a kernel with at least
    SPARSE_KERNEL_ZEROS of exact zeros (a pruned one) and at least 3 clusters (one is pinned at 0), else False."""
    layers = tuple(entry if entry.preserve_sparsity is not None else
                   replace(entry, preserve_sparsity=entry.clusters >= 3
                           and kernel_zero_fraction(model, entry.name) >= SPARSE_KERNEL_ZEROS)
                   for entry in spec.layers)
    return replace(spec, layers=layers)


def validation_rows_of(data: Dataset, split: float = VALIDATION_SPLIT) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the rows `fit` holds out for validation: the last `split` of the training rows, as Keras
    splits them (the first floor(n × (1 − split)) rows train)."""
    import math

    start = int(math.floor(len(data.x_train) * (1.0 - split)))
    return np.asarray(data.x_train[start:]), np.asarray(data.y_train[start:])


def better_of(zero_shot: Any, tuned: Any, data: Dataset, task: Task, epochs: int) -> dict[str, Any]:
    """Which model `cluster` keeps: the fine-tuned one unless it scores below the zero-shot one on the
    held-out validation rows; returns what was compared and the verdict."""

    x_val, y_val = validation_rows_of(data)
    if len(x_val) == 0:
        return {"epochs": epochs, "used": True, "validation_rows": 0}
    before, after = score_of(zero_shot, x_val, y_val, task), score_of(tuned, x_val, y_val, task)
    return {"epochs": epochs, "used": after >= before, "validation_rows": int(len(x_val)),
            "metric": task.metric, "zero_shot": before, "fine_tuned": after}


def planned_split(data: Dataset, validation: PlanValidation) -> Any:
    """The plan's validation split of `data` (the spec's `validation`); a DataError when `data` is not the
    data the plan was given (another row count, other held-out groups) or leaves no row to fine-tune on."""
    from tinycomp.errors import DataError

    hint = "give cluster the --data/--dataset given to plan"
    if len(data.x_train) != validation.training_rows:
        raise DataError(f"{data.name} has {len(data.x_train):,} training rows, but the plan validated on "
                        f"{validation.training_rows:,}", "spec: validation.training_rows", hint)
    split = data.validation_split(validation.split, validation.seed)
    held_out = tuple(split.source.held_out)  # empty unless whole groups are held out
    if held_out != validation.held_out_groups:
        planned = (f"held-out groups {', '.join(validation.held_out_groups)} of groups_train"
                   if validation.held_out_groups else "no held-out groups")
        given = f"groups {', '.join(held_out)}" if held_out else "no groups"
        raise DataError(f"the plan validated on {planned}, but {data.name} holds out {given}",
                        "spec: validation.held_out_groups", hint)
    if len(split.fit) < 1:
        raise DataError(f"the plan's validation (split {validation.split}, seed {validation.seed}) leaves none of "
                        f"{data.name}'s {len(data.x_train):,} training rows to fine-tune on", "spec: validation", hint)
    return split


def as_the_plan_decides(model: Any, zero_shot: Any, tuned: Any, x_val: np.ndarray, y_val: np.ndarray, split: Any,
                        task: Task, epochs: int) -> dict[str, Any]:
    """Which model `cluster` keeps for a plan's spec, decided as the plan's check decided
    (`bounds.least_bound` on the plan's validation rows `x_val`, `y_val` of `split`): the one whose drop
    against the given `model` has the lower 95% upper bound (ties: the better score, then zero-shot)."""
    from tinycomp import bounds

    targets, reference = np.asarray(y_val), outputs_of(model, x_val)
    before, after = outputs_of(zero_shot, x_val), outputs_of(tuned, x_val)
    scores = task.plan_score(before, targets), task.plan_score(after, targets)
    best, checked = bounds.least_bound(task.has_accuracy, targets, reference, list(zip((before, after), scores)),
                                       split.val_groups)
    return {"epochs": epochs, "used": best == 1, "validation_rows": int(len(targets)), "metric": task.metric,
            "zero_shot": scores[0], "fine_tuned": scores[1], "decided_on": "the plan's validation rows",
            "validation": split.source.to_json(), "bound": checked.to_json()}


def validate_spec(model, spec: ClusteringSpec) -> None:
    """Fail with a ModelError/SpecError naming the layer if any spec entry cannot be applied."""
    layers = {layer.name: layer for layer in model.layers}
    for i, entry in enumerate(spec.layers):
        where = f"layers[{i}].name: {entry.name}"
        layer = layers.get(entry.name)
        if layer is None:
            raise ModelError(f"model has no layer {entry.name!r}", where,
                             f"the model's layers are: {', '.join(layers)}")
        kernel = kernel_of(layer)
        if kernel is None:
            raise ModelError(f"layer {entry.name!r} ({type(layer).__name__}) has no weights to cluster", where,
                             f"layers with weights: {', '.join(clusterable_layers(model)) or 'none'}")
        if type(layer).__name__ in UNCLUSTERABLE_TYPES:
            raise ModelError(f"TFMOT does not cluster {type(layer).__name__} layers ({entry.name!r})", where,
                             f"cluster one of: {', '.join(clusterable_layers(model))}")
        _check_options(layer, kernel, entry, where)


def _check_options(layer, kernel, entry: LayerClustering, where: str) -> None:
    if entry.init not in CENTROID_INITS:
        raise SpecError(f"unknown centroid initialisation {entry.init!r}", where,
                        f"choose one of {', '.join(CENTROID_INITS)}")
    if entry.per_channel and not is_conv2d(layer):
        raise SpecError(f"per-channel clustering is for Conv2D only; {entry.name!r} is a {type(layer).__name__}",
                        where, "set per_channel: false for this layer")
    if entry.preserve_sparsity and entry.clusters < 3:
        raise SpecError("preserve_sparsity needs at least 3 clusters (one is pinned to zero)", where,
                        "use more clusters or preserve_sparsity: false")
    size = int(np.prod(kernel.shape))
    per = size // int(kernel.shape[-1]) if entry.per_channel else size
    unit = "weights per output channel" if entry.per_channel else "kernel weights"
    # TFMOT silently skips a Conv2D whose weights do not outnumber the clusters; refuse instead.
    if entry.clusters >= per:
        raise ModelError(f"{entry.clusters} clusters for {per} {unit} in {entry.name!r}", where,
                         f"use fewer than {per} clusters")


def is_conv2d(layer) -> bool:
    import tf_keras

    return isinstance(layer, tf_keras.layers.Conv2D) and not isinstance(layer, tf_keras.layers.Conv2DTranspose)


def clusterable_layers(model) -> list[str]:
    """Names of the layers whose kernel TFMOT can cluster."""
    return [layer.name for layer in model.layers
            if kernel_of(layer) is not None and type(layer).__name__ not in UNCLUSTERABLE_TYPES]


def cluster_all_spec(model, clusters: int, init: str = "kmeans++") -> ClusteringSpec:
    """A spec clustering every clusterable kernel to `clusters` values (for `--all`).

    Layers with no more kernel weights than `clusters`, and DepthwiseConv2D (which TFMOT does
    not cluster), are left out; `left_out_layers` lists them with the reason.
    """
    names = [name for name in clusterable_layers(model)
             if int(np.prod(kernel_of(model.get_layer(name)).shape)) > clusters]
    if not names:
        raise ModelError(f"no layer has more than {clusters} kernel weights to cluster", "model",
                         "use fewer clusters")
    return ClusteringSpec(tuple(LayerClustering(name=name, clusters=clusters, init=init) for name in names))


def left_out_layers(model, clusters: int) -> list[tuple[str, str]]:
    """(layer name, why) for every layer with weights that `cluster_all_spec(model, clusters)` leaves out."""
    left = []
    for layer in model.layers:
        kernel = kernel_of(layer)
        if kernel is None:
            continue
        kind = type(layer).__name__
        if kind in UNCLUSTERABLE_TYPES:
            left.append((layer.name, f"TFMOT does not cluster {kind} layers"))
        elif int(np.prod(kernel.shape)) <= clusters:
            left.append((layer.name, f"{int(np.prod(kernel.shape))} kernel weights, not more than {clusters} clusters"))
    return left


def wrap_layers(model, spec: ClusteringSpec):
    """A copy of `model` with the spec's layers wrapped by `cluster_weights`, keeping trained weights.

    clone_model re-initialises weights, so the model is first cloned and given the original
    weights; that copy's layers are then reused (unwrapped) or wrapped in the second clone, so
    the k-means centroids start from the trained kernels. An open `preserve_sparsity` is decided as
    `with_sparsity_decided` does, so `plan`'s candidates keep a pruned model's zeros as `cluster` will.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras

    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    entries = {entry.name: entry for entry in with_sparsity_decided(model, spec).layers}

    def clone_function(layer):
        entry = entries.get(layer.name)
        if entry is None:
            return layer
        init = getattr(tfmot.clustering.keras.CentroidInitialization, CENTROID_INITS[entry.init])
        return tfmot.clustering.keras.cluster_weights(
            layer, number_of_clusters=entry.clusters, cluster_centroids_init=init,
            cluster_per_channel=entry.per_channel, preserve_sparsity=bool(entry.preserve_sparsity))

    return tf_keras.models.clone_model(copy, clone_function=clone_function)


def count_unique_kernel_values(model, layer_name: str) -> int:
    """Number of distinct values in a layer's kernel."""
    kernel = kernel_of(model.get_layer(layer_name))
    return int(np.unique(np.asarray(kernel.numpy())).size)
