"""Per-layer sensitivity, measured with TensorFlow (TFMOT clustering, Keras fine-tuning).

Each candidate clusters one layer of the model (TFMOT, as `cluster` does; Conv2D per channel by
default) at one cluster count, fine-tunes briefly, strips the wrappers and measures the accuracy on a
validation split held out from the *training* data (the test set stays for the final measurement).
The reference is the given model on that split; a "control" run fine-tunes the unclustered model
the same way, so each layer's drop is the cost of clustering alone and the effect of fine-tuning is
one separate number. The same seed is set before every run, so the table is reproducible.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinycomp.errors import DataError, ModelError
from tinycomp.find_tensors import bits_for
from tinycomp.plan.choose import LayerSensitivity, Option, Plan, SensitivityTable, counted_drops, plan_spec
from tinycomp.plan.costs import WeightInfo, final_size, ideal_bytes, layer_byte_costs, weight_info
from tinycomp.plan.request import ByteCosts, Measurement
from tinycomp.specs import MAX_BITWIDTH, ClusteringSpec, LayerClustering

# on_step(done, total, what) after each measured candidate
StepCallback = Callable[[int, int, str], None]


def eligible_layers(model, *, layers: tuple[str, ...], counts: tuple[int, ...], per_channel_conv: bool) -> list[str]:
    """The named layers (or every clusterable one) with at least one usable cluster count."""
    from tinycomp.cluster import clusterable_layers, validate_spec

    names = list(layers) if layers else clusterable_layers(model)
    if layers:
        validate_spec(model, ClusteringSpec(tuple(LayerClustering(name=n, clusters=2) for n in names)))
    usable = [n for n in names if usable_counts(model, n, counts, per_channel_conv)]
    if not usable:
        raise ModelError(f"no layer has more weights than {min(counts)} clusters", "plan",
                         "use smaller cluster counts")
    return usable


def is_conv2d(model, name: str) -> bool:
    from tinycomp.cluster import _is_conv2d

    return _is_conv2d(model.get_layer(name))


def usable_counts(model, name: str, counts, per_channel_conv: bool) -> list[int]:
    """The counts below the layer's weights per value table (per channel for Conv2D when per_channel_conv)."""
    from tinycomp.models import kernel_of

    kernel = kernel_of(model.get_layer(name))
    size = int(np.prod(kernel.shape))
    per = size // int(kernel.shape[-1]) if (per_channel_conv and is_conv2d(model, name)) else size
    return [c for c in counts if c < per and bits_for(c) <= MAX_BITWIDTH]


def split_validation(data, validation_split: float):
    """(fit data, x_val, y_val): the last `validation_split` of the training rows are held out."""
    from tinycomp.data import Dataset

    n = len(data.x_train)
    held = int(round(n * validation_split))
    if held < 1 or n - held < 1:
        raise DataError(f"{n} training rows cannot be split {1 - validation_split:g}/{validation_split:g}",
                        data.name, "use more data or another validation split")
    fit_data = Dataset(data.name, data.x_train[:n - held], data.y_train[:n - held],
                       data.x_train[n - held:], data.y_train[n - held:])
    return fit_data, data.x_train[n - held:], data.y_train[n - held:]


def fine_tuned_accuracy(model, spec: ClusteringSpec | None, fit_data, x_val, y_val, *, epochs: int, batch_size: int,
                        seed: int) -> float:
    """Validation accuracy of `model` with `spec`'s layers clustered (None: unclustered), fine-tuned."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from tinycomp.cluster import FINE_TUNE_LEARNING_RATE, wrap_layers
    from tinycomp.models import compile_for_training, evaluate_keras, set_seed
    from tinycomp.train import fit

    set_seed(seed)
    if spec is None:
        candidate = tf_keras.models.clone_model(model)
        candidate.set_weights(model.get_weights())
    else:
        candidate = wrap_layers(model, spec)
    if epochs > 0:
        compile_for_training(candidate, FINE_TUNE_LEARNING_RATE)
        fit(candidate, fit_data, epochs, batch_size, 0.0)
    if spec is not None:
        candidate = tfmot.clustering.keras.strip_clustering(candidate)
    return evaluate_keras(candidate, x_val, y_val)


def joint_drop_pp(model, data, table: SensitivityTable, plan: Plan, *, measurement: Measurement) -> float:
    """The plan's accuracy drop vs the given model with all its layers clustered at once and
    fine-tuned as each candidate was (same epochs, seed and validation split)."""
    fit_data, x_val, y_val = split_validation(data, measurement.validation_split)
    accuracy = fine_tuned_accuracy(model, plan_spec(table, plan, measurement.init), fit_data, x_val, y_val,
                                   epochs=table.epochs, batch_size=measurement.batch_size, seed=table.seed)
    return 100.0 * (table.reference_accuracy - accuracy)


def int8_for_costs(model, data, names: list[str], *, seed: int, costs: ByteCosts) -> tuple[bytes, dict[str, WeightInfo]]:
    """The int8 model byte costs are measured on (as `quantize` makes it, byte-identical for the
    same model, data and seed) and the named layers' weight tensors in it."""
    from tinycomp.convert import quantize
    from tinycomp.data import calibration_samples

    int8 = quantize(model, method="int8", io=costs.io,
                    calibration=calibration_samples(data, costs.calibration_count, seed),
                    per_tensor_dense=costs.per_tensor_dense)
    return int8, weight_info(int8, names)


def sensitivity(model, data, *, measurement: Measurement, costs: ByteCosts, seed: int,
                max_drop_pp: float | None = None, on_step: StepCallback | None = None) -> tuple[SensitivityTable, bytes, dict[str, WeightInfo]]:
    """Measure every eligible layer at every usable cluster count; returns the table, the int8
    model bytes the costs were measured on, and the layers' WeightInfo.

    `costs` makes the byte costs those of `quantize --per-tensor-dense --io IO` and `compress
    --strip`: pass what the real chain will use. With `measurement.estimate == "fast"` (see
    `fast_drops`), `max_drop_pp` (the accuracy budget, if any) stops fine-tuning a layer's smaller
    counts once one is too harmful to be chosen.
    """
    from tinycomp.data import check_fits_model
    from tinycomp.models import evaluate_keras

    counts, per_channel_conv, epochs = measurement.cluster_counts, measurement.per_channel_conv, measurement.epochs
    check_fits_model(data, tuple(model.input_shape[1:]), int(model.output_shape[-1]), "model input/output")
    names = eligible_layers(model, layers=measurement.layers, counts=counts, per_channel_conv=per_channel_conv)
    fit_data, x_val, y_val = split_validation(data, measurement.validation_split)
    start = time.perf_counter()

    int8, infos = int8_for_costs(model, data, names, seed=seed, costs=costs)
    usable = {n: usable_counts(model, n, counts, per_channel_conv) for n in names}
    byte_costs, overhead = layer_byte_costs(int8, infos, {n: sorted({bits_for(c) for c in cs})
                                                          for n, cs in usable.items()}, costs.strip)

    def run(spec: ClusteringSpec | None) -> float:
        return fine_tuned_accuracy(model, spec, fit_data, x_val, y_val, epochs=epochs,
                                   batch_size=measurement.batch_size, seed=seed)

    def zero_shot(spec: ClusteringSpec) -> float:
        return fine_tuned_accuracy(model, spec, fit_data, x_val, y_val, epochs=0,
                                   batch_size=measurement.batch_size, seed=seed)

    total = 1 + sum(len(cs) for cs in usable.values())
    reference = evaluate_keras(model, x_val, y_val)
    control = run(None) if epochs > 0 else reference
    steps = Steps(total, on_step)
    steps.done(f"control (fine-tuned, unclustered): {100 * control:.2f}%")
    measure = fine_tuned_drops if measurement.estimate == "fine-tune" else fast_drops
    limit = _fine_tune_limit(max_drop_pp, reference, control, len(x_val))
    table_layers = []
    for name in names:
        info = infos[name]
        per_channel = per_channel_conv and is_conv2d(model, name)

        def spec_of(c: int, name: str = name, per_channel: bool = per_channel) -> ClusteringSpec:
            return ClusteringSpec((LayerClustering(name=name, clusters=c, init=measurement.init,
                                                   per_channel=per_channel),))

        drops = measure(usable[name], run=lambda c, spec_of=spec_of: run(spec_of(c)),
                        zero_shot=lambda c, spec_of=spec_of: zero_shot(spec_of(c)), reference=reference,
                        control=control, noise_pp=limit.noise_pp, limit_pp=limit.pp,
                        report=lambda c, d, name=name: steps.done(f"{name} → {c} clusters: {d.describe()}"))
        options = [Option(None, 8 * info.bytes // max(info.weights, 1), info.bytes, info.bytes)]
        for c in usable[name]:
            b = bits_for(c)
            options.append(Option(c, b, byte_costs[name][b], ideal_bytes(info.weights, info.channels, b, c),
                                  measured_pp=drops[c].drop_pp, accuracy=drops[c].accuracy,
                                  fine_tuned=drops[c].fine_tuned if measurement.estimate == "fast" else None))
        counted_drops(options)
        table_layers.append(LayerSensitivity(name, type(model.get_layer(name)).__name__, info.weights, info.channels,
                                             per_channel, options))
    table = SensitivityTable(table_layers, final_size(int8, costs.strip), overhead, reference, control, len(x_val),
                             epochs, seed, time.perf_counter() - start)
    return table, int8, infos


@dataclass(frozen=True)
class Drop:
    """One candidate's measured drop (pp) and accuracy; fine_tuned False for a zero-shot estimate."""

    drop_pp: float
    accuracy: float
    fine_tuned: bool

    def describe(self) -> str:
        return f"{100 * self.accuracy:.2f}%" + ("" if self.fine_tuned else " (zero-shot)")


@dataclass(frozen=True)
class FineTuneLimit:
    """The noise of one validation accuracy and the drop above which a candidate cannot be chosen."""

    noise_pp: float
    pp: float | None  # None: no accuracy budget, no limit


def _fine_tune_limit(max_drop_pp: float | None, reference: float, control: float, samples: int) -> FineTuneLimit:
    """A candidate whose fine-tuned drop (vs the control) exceeds the budget plus the most fine-tuning
    can credit plus one noise cannot be part of any plan within the budget (other layers' counted
    drops are ≥ 0)."""
    noise = 100.0 * (control * (1 - control) / max(samples, 1)) ** 0.5
    if max_drop_pp is None:
        return FineTuneLimit(noise, None)
    return FineTuneLimit(noise, max_drop_pp + max(0.0, 100.0 * (control - reference)) + noise)


DropOf = Callable[[int], float]


def fine_tuned_drops(counts: list[int], *, run: DropOf, zero_shot: DropOf, reference: float, control: float,
                     noise_pp: float, limit_pp: float | None, report: Callable) -> dict[int, Drop]:
    """Every count fine-tuned (the reference method): drop vs the fine-tuned control."""
    drops = {}
    for c in counts:
        accuracy = run(c)
        drops[c] = Drop(100.0 * (control - accuracy), accuracy, True)
        report(c, drops[c])
    return drops


def fast_drops(counts: list[int], *, run: DropOf, zero_shot: DropOf, reference: float, control: float,
               noise_pp: float, limit_pp: float | None, report: Callable) -> dict[int, Drop]:
    """Zero-shot first, fine-tune only where it can change the choice.

    Every count is clustered without fine-tuning and measured against the given model (cheap: no
    training). Going from many clusters to few, a count whose zero-shot drop is within the noise
    of one validation accuracy keeps it (fine-tuning could not show it better); the others are
    fine-tuned as in `fine_tuned_drops`, until one's fine-tuned drop exceeds `limit_pp`: fewer
    clusters are then assumed no better (the isotonic assumption the choice makes anyway) and keep
    their zero-shot drops, which overstate the fine-tuned ones, so the error is on the safe side.
    """
    zero = {c: zero_shot(c) for c in counts}
    drops: dict[int, Drop] = {}
    hopeless = False
    for c in sorted(counts, reverse=True):
        estimate = Drop(100.0 * (reference - zero[c]), zero[c], False)
        if hopeless or estimate.drop_pp <= noise_pp:
            drops[c] = estimate
        else:
            accuracy = run(c)
            drops[c] = Drop(100.0 * (control - accuracy), accuracy, True)
            hopeless = limit_pp is not None and drops[c].drop_pp > limit_pp
        report(c, drops[c])
    return {c: drops[c] for c in counts}


class Steps:
    """Counts measured candidates for the progress callback."""

    def __init__(self, total: int, on_step: StepCallback | None):
        self.total, self.count, self.on_step = total, 0, on_step

    def done(self, what: str) -> None:
        self.count += 1
        if self.on_step:
            self.on_step(self.count, self.total, what)
