"""Per-layer sensitivity, measured with TensorFlow (TFMOT clustering, Keras fine-tuning).

Each candidate clusters one layer of the model (TFMOT, as `cluster` does; Conv2D per channel by
default) at one cluster count, fine-tunes briefly, strips the wrappers and measures the accuracy on a
validation split held out from the *training* data (the test set stays for the final measurement):
top-1 accuracy for a classifier, output SNR against the targets in dB for a regression or
reconstruction model (the task, from the data as `cluster` chooses it; see metrics.Task).
The reference is the given model on that split; a "control" run fine-tunes the unclustered model
the same way, so each layer's drop is the cost of clustering alone and the effect of fine-tuning is
one separate number. The same seed is set before every run, so the table is reproducible, and
does not depend on the order candidates are measured in or on the process that measures them.

The fast estimate (`candidates.FAST`) measures every candidate zero-shot and
fine-tunes only those whose zero-shot drop is beyond the noise, on a seeded subset of the fit rows,
measured on a seeded subset of the validation rows; the chosen plan's check (`joint_drop`)
fine-tunes on every fit row and measures on the whole validation split, as `cluster` will.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tinycomp import bounds
from tinycomp.cluster import clusterable_layers, is_conv2d, keep_zeros_callbacks, validate_spec, wrap_layers
from tinycomp.convert import quantize
from tinycomp.data import Dataset, calibration_samples, check_fits_model
from tinycomp.errors import DataError, ModelError
from tinycomp.metrics import Task, choose_task
from tinycomp.models import (
    LossChoice,
    choose_loss,
    compile_for_training,
    kernel_of,
    outputs_of,
    saved_config,
    set_seed,
)
from tinycomp.plan.candidates import (
    CONTROL,
    Candidate,
    CandidateResult,
    Estimate,
    assemble_drops,
    candidates_of,
    fine_tune_limit,
    ruled_out,
)
from tinycomp.plan.choose import LayerSensitivity, Option, Plan, SensitivityTable, counted_drops, plan_spec
from tinycomp.plan.costs import WeightInfo, ideal_bytes, weight_info
from tinycomp.plan.measure import (
    CandidateRows,
    Measurer,
    ResultCallback,
    fine_tuned_outputs,
    measure_in_order,
    measure_in_processes,
    seeded_rows,
)
from tinycomp.plan.request import AUTO_LEARNING_RATES, ByteCosts, JointDrop, Measurement
from tinycomp.specs import MAX_BITWIDTH, ClusteringSpec, LayerClustering
from tinycomp.tflite.find_tensors import bits_for
from tinycomp.train import fit


def eligible_layers(model: Any, *, layers: tuple[str, ...], counts: tuple[int, ...], per_channel_conv: bool) -> list[str]:
    """The named layers (or every clusterable one) with at least one usable cluster count."""
    names = list(layers) if layers else clusterable_layers(model)
    if layers:
        validate_spec(model, ClusteringSpec(tuple(LayerClustering(name=n, clusters=2) for n in names)))
    usable = [n for n in names if usable_counts(model, n, counts, per_channel_conv)]
    if not usable:
        raise ModelError(f"no layer has more weights than {min(counts)} clusters", "plan",
                         "use smaller cluster counts")
    return usable


def usable_counts(model: Any, name: str, counts: tuple[int, ...], per_channel_conv: bool) -> list[int]:
    """The counts below the layer's weights per value table (per channel for Conv2D when per_channel_conv)."""
    kernel = kernel_of(model.get_layer(name))
    size = int(np.prod(kernel.shape))
    per = size // int(kernel.shape[-1]) if (per_channel_conv and is_conv2d(model.get_layer(name))) else size
    return [c for c in counts if c < per and bits_for(c) <= MAX_BITWIDTH]


def split_validation(data: Dataset, validation_split: float, seed: int = 0) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """(fit data, x_val, y_val) of the data's validation split (`Dataset.validation_split`): its own
    validation set, else whole groups held out (chosen by `seed`), else the last `validation_split` of the
    training rows (the fit rows stay unread then: streamed when memory-mapped and large)."""
    split = data.validation_split(validation_split, seed)
    if len(split.fit) < 1:
        raise DataError(f"{len(data.x_train)} training rows leave none to fine-tune on", data.name,
                        "use more data or another validation split")
    return data.validation_rows(split)


def validation_groups(data: Dataset, validation_split: float, seed: int = 0) -> np.ndarray | None:
    """The group of each validation row (None: rows are the unit of the bound)."""
    return data.validation_split(validation_split, seed).val_groups


def task_of(model: Any, data: Dataset, override: Task | None = None) -> Task:
    """The model's task: `override`, else as `cluster` chooses it from the data and the model's output
    (metrics.choose_task)."""
    return choose_task(data.y_test[:1] if data.labels else None, tuple(model.output_shape[1:]), override)


def training_loss(model: Any, data: Dataset, task: Task | None = None) -> LossChoice:
    """The loss `cluster` fine-tunes `model` with: its saved compile config, else from the task (None: the
    data's, see `task_of`; classify: from its output; regress: mean squared error)."""
    saved = saved_config(model)
    return choose_loss(model, task=task or task_of(model, data),
                       saved_loss=saved.saved_loss if saved else None)


def joint_drop(model: Any, data: Dataset, table: SensitivityTable, plan: Plan, *, measurement: Measurement,
               fine_tune_rows: int | None = None) -> JointDrop:
    """The plan's drop vs the given model with all its layers clustered at once, measured on the whole
    validation split zero-shot and, with epochs, fine-tuned for the table's epochs on the fit rows
    (`fine_tune_rows`: a seeded subset of them; None: every row, as `cluster` fine-tunes). Of the two,
    the one whose drop has the lower 95% upper bound counts (the better score on a tie): a fine-tune
    that scores higher on a few validation groups but varies more between them is not preferred."""
    if not plan.clustered():
        return JointDrop(0.0, 0, 0.0)
    fit_data, x_val, y_val = split_validation(data, measurement.validation_split, table.seed)
    if fine_tune_rows:
        rows = seeded_rows(len(fit_data.x_train), fine_tune_rows, seed=table.seed, stream=1)
        fit_data = Dataset(fit_data.name, fit_data.x_train[rows], fit_data.y_train[rows], x_val, y_val)
    spec = plan_spec(table, plan, measurement.init)
    reference = outputs_of(model, x_val)
    loss = training_loss(model, data, table.task)
    groups = validation_groups(data, measurement.validation_split, table.seed)
    targets, options = np.asarray(y_val), []
    for epochs in sorted({0, table.epochs}):
        outputs = clustered_outputs(model, spec, fit_data, x_val, epochs=epochs, batch_size=measurement.batch_size,
                                    seed=table.seed, loss=loss, learning_rate=measurement.rate, task=table.task)
        options.append((epochs, outputs))
    best, checked = bounds.least_bound(table.task.has_accuracy, targets, reference,
                                       [(o, table.task.plan_score(o, targets)) for _, o in options], groups)
    epochs, outputs = options[best]  # lowest bound, then best score, fewest epochs
    drop = table.task.scale * (table.task.plan_score(reference, np.asarray(y_val))
                               - table.task.plan_score(outputs, np.asarray(y_val)))
    # identical outputs have an infinite SNR, which JSON cannot hold: left out
    agreement = {k: v for k, v in table.task.agreement(outputs, reference).items() if np.isfinite(v)}
    return JointDrop(drop, epochs, table.task.paired_noise(reference, outputs, np.asarray(y_val)), agreement, checked)


def clustered_outputs(model: Any, spec: ClusteringSpec, fit_data: Dataset, x_val: np.ndarray, *, epochs: int,
                      batch_size: int, seed: int, loss: LossChoice, learning_rate: float, task: Task) -> np.ndarray:
    """Outputs on x_val of `model` with `spec`'s layers clustered, fine-tuned for `epochs` (0: zero-shot)."""
    import tensorflow_model_optimization as tfmot


    set_seed(seed)
    candidate = wrap_layers(model, spec)
    if epochs > 0:
        compile_for_training(candidate, learning_rate, task=task, loss=loss)
        fit(candidate, fit_data, epochs, batch_size, 0.0,  # a pruned model's other layers stay pruned, as in `cluster`
            callbacks=keep_zeros_callbacks(candidate, set(spec.layer_names())))
    return outputs_of(tfmot.clustering.keras.strip_clustering(candidate), x_val)


def validation_rows(data: Dataset, validation_split: float, seed: int = 0) -> int:
    """How many rows `split_validation` validates on."""
    return data.validation_split(validation_split, seed).source.rows


def int8_for_costs(model: Any, data: Dataset, names: list[str], *, seed: int, costs: ByteCosts) -> tuple[bytes, dict[str, WeightInfo]]:
    """The int8 model byte costs are measured on (as `quantize` makes it, byte-identical for the
    same model, data and seed) and the named layers' weight tensors in it."""
    int8 = quantize(model, method="int8", io=costs.io,
                    calibration=calibration_samples(data, costs.calibration_count, seed),
                    per_tensor_dense=costs.per_tensor_dense)
    return int8, weight_info(int8, names)


@dataclass(frozen=True)
class Prepared:
    """What every candidate shares: the layers and counts, the canonical candidates, the measurer."""

    names: list[str]
    usable: dict[str, list[int]]
    candidates: list[Candidate]
    measurer: Measurer
    control: CandidateResult | None = None  # measured while choosing the learning rate (None: not yet)


def prepare(model: Any, data: Dataset, *, task: Task, measurement: Measurement, seed: int) -> Prepared:
    """Check the data, find the layers and counts, and build the measurer (its rows, loss and reference)."""
    check_fits_model(data, tuple(model.input_shape[1:]), int(model.output_shape[-1]), "model input/output",
                     task=task, output_shape=tuple(model.output_shape[1:]))
    loss = training_loss(model, data, task)
    counts, per_channel_conv = measurement.cluster_counts, measurement.per_channel_conv
    names = eligible_layers(model, layers=measurement.layers, counts=counts, per_channel_conv=per_channel_conv)
    usable = {n: usable_counts(model, n, counts, per_channel_conv) for n in names}
    fit_data, x_val, y_val = split_validation(data, measurement.validation_split, seed)
    fit = seeded_rows(len(fit_data.x_train), measurement.rows("fine_tune_rows"), seed=seed, stream=1)
    val = seeded_rows(len(x_val), measurement.rows("validation_rows"), seed=seed, stream=2)
    groups = validation_groups(data, measurement.validation_split, seed)
    rows = CandidateRows(np.asarray(fit_data.x_train[fit]), np.asarray(fit_data.y_train[fit]), np.asarray(x_val[val]),
                         np.asarray(y_val[val]), None if groups is None else np.asarray(groups)[val])
    reference_outputs = outputs_of(model, rows.x_val)
    reference = task.plan_score(reference_outputs, rows.y_val)
    control = None
    if measurement.learning_rate is None:
        rate, control = chosen_learning_rate(model, rows, reference_outputs, loss=loss, measurement=measurement,
                                             seed=seed, task=task)
        measurement = replace(measurement, learning_rate=rate)
    measurer = Measurer(model, rows, loss=loss, measurement=measurement, seed=seed, reference=reference, task=task)
    return Prepared(names, usable, candidates_of(usable), measurer, control)


def chosen_learning_rate(model: Any, rows: CandidateRows, reference: np.ndarray, *, loss: LossChoice,
                         measurement: Measurement, seed: int, task: Task) -> tuple[float, CandidateResult | None]:
    """The rate of AUTO_LEARNING_RATES whose fine-tuned unclustered control's drop against the given model has
    the lower 95% upper bound on the candidates' validation rows (paired, over their groups when the data has
    groups; ties: the better score, then the first rate), and that control's result; the first rate when
    nothing is fine-tuned (`reference`: the given model's outputs on those rows). A rate that raises the score on a few validation groups but moves the model further
    from the given one (a wider bound) is not preferred: the plan's fine-tunes are to recover the given model."""
    if measurement.epochs == 0:
        return AUTO_LEARNING_RATES[0], None
    fit_data = Dataset("candidate rows", rows.x_fit, rows.y_fit, rows.x_val, rows.y_val)
    measured = []  # (bound, -score, order, rate, score, seconds)
    for order, rate in enumerate(AUTO_LEARNING_RATES):
        start = time.perf_counter()
        outputs = fine_tuned_outputs(model, None, fit_data, rows.x_val, epochs=measurement.epochs,
                                     batch_size=measurement.batch_size, seed=seed, loss=loss, learning_rate=rate,
                                     task=task)
        score = task.plan_score(outputs, rows.y_val)
        bound = bounds.checked(task.has_accuracy, rows.y_val, reference, outputs, rows.groups_val).drop.high
        measured.append((bound, -score, order, rate, score, time.perf_counter() - start))
    _, _, _, rate, score, seconds = min(measured)
    return rate, CandidateResult(CONTROL, fine_tuned=score, seconds=seconds)


def measure_candidates(prepared: Prepared, *, todo: list[Candidate], done: dict[str, CandidateResult], jobs: int = 1,
                       max_drop: float | None = None, on_result: ResultCallback | None = None) -> dict[str, CandidateResult]:
    """Measure what is still missing for `todo` (given the results `done`); returns done + the new results.

    With one job, candidates are measured here in the canonical order, and under an accuracy budget a
    layer's fine-tunes stop once one is too harmful to be chosen (`assemble_drops` would discard them).
    With more, they are measured in `jobs` worker processes, and every fine-tune the zero-shot
    measurement asks for is made; the assembled table is the same."""
    results = dict(done)
    m = prepared.measurer
    if prepared.control is not None and CONTROL not in results and any(c.key == CONTROL for c in todo):
        results[CONTROL] = prepared.control  # measured while choosing the learning rate
        if on_result:
            on_result(prepared.control)
    work = [(c, results.get(c.key)) for c in todo if any(m.measurement.estimate.still_needed(
        c, results.get(c.key), reference=m.reference, noise=m.noise, scale=m.scale))]

    def record(result: CandidateResult) -> None:
        results[result.key] = result
        if on_result:
            on_result(result)

    if jobs > 1 and len(work) > 1:
        measure_in_processes(m, work, jobs=min(jobs, len(work)), on_result=record)
    else:
        hopeless = HopelessLayers(results, estimate=m.measurement.estimate, reference=m.reference,
                                  max_drop=max_drop, noise=m.noise, scale=m.scale)
        measure_in_order(m, work, hopeless=hopeless, on_result=record)
    return results


class HopelessLayers:
    """Whether a candidate's layer already has a larger count whose fine-tuned drop is too harmful to choose."""

    def __init__(self, results: dict[str, CandidateResult], *, estimate: Estimate, reference: float,
                 max_drop: float | None, noise: float, scale: float = 100.0):
        self.results, self.estimate, self.reference = results, estimate, reference
        self.max_drop, self.noise, self.scale = max_drop, noise, scale

    def __call__(self, candidate: Candidate) -> bool:
        control = self.results.get(CONTROL)
        if (not self.estimate.zero_shot or candidate.tensor is None or candidate.values is None or control is None
                or control.fine_tuned is None):
            return False
        limit = fine_tune_limit(self.max_drop, reference=self.reference, control=control.fine_tuned,
                                   noise=self.noise, scale=self.scale)
        prefix = f"{candidate.tensor}/"
        larger = {int(k[len(prefix):]): r for k, r in self.results.items()
                  if k.startswith(prefix) and int(k[len(prefix):]) > candidate.values}
        if limit is None or not larger:
            return False
        drops = assemble_drops(sorted(larger), larger, estimate=self.estimate, reference=self.reference,
                               control=control.fine_tuned, limit=limit, scale=self.scale)
        return ruled_out({c: d.drop for c, d in drops.items() if larger[c].fine_tuned is not None}, candidate.values or 0,
                         limit)


def assemble_table(model: Any, prepared: Prepared, results: dict[str, CandidateResult], *,
                   infos: dict[str, WeightInfo], costs: tuple[dict[str, dict[int, int]], int, int],
                   max_drop: float | None, seconds: float) -> SensitivityTable:
    """The sensitivity table from every candidate's results and the layers' exact byte costs
    ((layer → bits → bytes, once-paid overhead, the int8 file's bytes): `make.byte_costs`)."""
    m = prepared.measurer
    measurement, reference = m.measurement, m.reference
    control = results[CONTROL].fine_tuned
    if control is None:
        raise ValueError("the control was not measured")
    limit = fine_tune_limit(max_drop, reference=reference, control=control, noise=m.noise, scale=m.scale)
    byte_costs, overhead, base = costs
    layers = []
    for name in prepared.names:
        info, counts = infos[name], prepared.usable[name]
        drops = assemble_drops(counts, {c: results[f"{name}/{c}"] for c in counts}, estimate=measurement.estimate,
                               reference=reference, control=control, limit=limit, scale=m.scale)
        options = [Option(None, 8 * info.bytes // max(info.weights, 1), info.bytes, info.bytes)]
        for c in counts:
            b = bits_for(c)
            zero = results[f"{name}/{c}"].zero_shot
            options.append(Option(c, b, byte_costs[name][b], ideal_bytes(info.weights, info.channels, b, c),
                                  measured_drop=drops[c].drop, accuracy=drops[c].accuracy,
                                  fine_tuned=drops[c].fine_tuned,
                                  zero_shot_drop=None if zero is None else m.scale * (reference - zero)))
        counted_drops(options)
        layers.append(LayerSensitivity(name, type(model.get_layer(name)).__name__, info.weights, info.channels,
                                       measurement.per_channel_conv and is_conv2d(model.get_layer(name)), options))
    return SensitivityTable(layers, base, overhead, reference, control,
                            len(m.rows.y_val), measurement.epochs, m.seed, seconds, task=m.task,
                            learning_rate=measurement.learning_rate)
