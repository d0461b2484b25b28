"""Measuring candidates with TensorFlow, in this process or in N worker processes.

A `Measurer` holds the model, the training loss of its task, the rows candidates fine-tune on (a
seeded subset of the fit split when `Measurement.fine_tune_rows` is set) and the validation rows
they are measured on (a seeded subset when `Measurement.validation_rows` is set). Every candidate
starts from the same seed, so its result does not depend on which candidates ran before it, in
which process: `measure_in_processes` gives the table `measure_in_order` gives.

Worker processes are started with the spawn method; each sets TensorFlow's intra- and inter-op
threads to its share of the cores before any TensorFlow op runs, loads the model from a file the
parent wrote, and the rows from .npy files.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tinycomp.cluster import is_conv2d, keep_zeros_callbacks, wrap_layers
from tinycomp.data import Dataset
from tinycomp.metrics import CLASSIFY, Task
from tinycomp.models import (
    LossChoice,
    compile_for_training,
    load_keras_model,
    outputs_of,
    save_keras_model,
    set_seed,
)
from tinycomp.native_output import import_tensorflow_quietly
from tinycomp.plan.candidates import Candidate, CandidateResult
from tinycomp.plan.request import Measurement
from tinycomp.specs import ClusteringSpec, LayerClustering
from tinycomp.train import fit

ResultCallback = Callable[[CandidateResult], None]


def seeded_rows(total: int, wanted: int | None, *, seed: int, stream: int) -> np.ndarray:
    """All row indices, or a sorted seeded random subset of `wanted` of them (`stream` separates uses)."""
    if wanted is None or wanted >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng([seed, stream]).choice(total, size=wanted, replace=False))


def fine_tuned_accuracy(model: Any, spec: ClusteringSpec | None, fit_data: Dataset, x_val: np.ndarray,
                        y_val: np.ndarray, *, epochs: int, batch_size: int, seed: int, loss: LossChoice,
                        learning_rate: float, task: Task = CLASSIFY) -> float:
    """Validation score of `model` (the task's: accuracy, or SNR in dB) with `spec`'s layers clustered
    (None: unclustered), fine-tuned for `epochs` (0: measured zero-shot) with the task's `loss`."""
    return task.plan_score(fine_tuned_outputs(model, spec, fit_data, x_val, epochs=epochs, batch_size=batch_size,
                                              seed=seed, loss=loss, learning_rate=learning_rate, task=task), y_val)


def fine_tuned_outputs(model: Any, spec: ClusteringSpec | None, fit_data: Dataset, x_val: np.ndarray, *, epochs: int,
                       batch_size: int, seed: int, loss: LossChoice, learning_rate: float,
                       task: Task = CLASSIFY) -> np.ndarray:
    """Outputs on `x_val` of `model` as `fine_tuned_accuracy` makes it."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    set_seed(seed)
    if spec is None:
        if epochs == 0:
            return outputs_of(model, x_val)
        candidate = tf_keras.models.clone_model(model)
        candidate.set_weights(model.get_weights())
    else:
        candidate = wrap_layers(model, spec)
    if epochs > 0:
        compile_for_training(candidate, learning_rate, task=task, loss=loss)
        fit(candidate, fit_data, epochs, batch_size, 0.0,  # a pruned model's other layers stay pruned, as in `cluster`
            callbacks=keep_zeros_callbacks(candidate, set(spec.layer_names()) if spec is not None else set()))
    if spec is not None:
        candidate = tfmot.clustering.keras.strip_clustering(candidate)
    return outputs_of(candidate, x_val)


@dataclass(frozen=True)
class CandidateRows:
    """The rows candidates fine-tune on and are measured on."""

    x_fit: np.ndarray
    y_fit: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    groups_val: np.ndarray | None = None  # the group of each validation row (None: rows are the unit)


class Measurer:
    """Measures one candidate at a time: zero-shot and/or fine-tuned validation accuracy."""

    def __init__(self, model: Any, rows: CandidateRows, *, loss: LossChoice, measurement: Measurement, seed: int,
                 reference: float, task: Task = CLASSIFY):
        self.model, self.rows, self.loss = model, rows, loss
        self.measurement, self.seed, self.reference, self.task = measurement, seed, reference, task
        self.noise = task.noise(reference, len(rows.y_val))
        self.scale = task.scale

    def spec_of(self, candidate: Candidate) -> ClusteringSpec | None:
        if candidate.tensor is None or candidate.values is None:
            return None
        per_channel = self.measurement.per_channel_conv and is_conv2d(self.model.get_layer(candidate.tensor))
        return ClusteringSpec((LayerClustering(name=candidate.tensor, clusters=candidate.values,
                                               init=self.measurement.init, per_channel=per_channel),))

    def accuracy(self, candidate: Candidate, *, epochs: int) -> float:
        r = self.rows
        fit_data = Dataset("candidate rows", r.x_fit, r.y_fit, r.x_val, r.y_val)
        return fine_tuned_accuracy(self.model, self.spec_of(candidate), fit_data, r.x_val, r.y_val,
                                   epochs=epochs, batch_size=self.measurement.batch_size, seed=self.seed,
                                   loss=self.loss, learning_rate=self.measurement.rate, task=self.task)

    def measure(self, candidate: Candidate, previous: CandidateResult | None = None, *,
                hopeless: bool = False) -> CandidateResult:
        """What `still_needed` says is missing for `candidate`, added to `previous`."""
        start = time.perf_counter()
        result = previous or CandidateResult(candidate.key)
        def needed(result: CandidateResult) -> tuple[bool, bool]:
            return self.measurement.estimate.still_needed(candidate, result, reference=self.reference,
                                                          noise=self.noise, hopeless=hopeless, scale=self.scale)

        if needed(result)[0]:
            result = replace(result, zero_shot=self.accuracy(candidate, epochs=0))
        tune = needed(result)[1]
        if tune:
            result = replace(result, fine_tuned=self.accuracy(candidate, epochs=self.measurement.epochs))
        return replace(result, seconds=result.seconds + time.perf_counter() - start)


Work = tuple[Candidate, CandidateResult | None]


def measure_in_order(measurer: Measurer, work: list[Work], *, hopeless: Callable[[Candidate], bool],
                     on_result: ResultCallback) -> None:
    """Measure in this process, in the given (canonical) order; `hopeless(candidate)` is asked just before
    each candidate is measured, so it can depend on the results reported so far."""
    for candidate, previous in work:
        on_result(measurer.measure(candidate, previous, hopeless=hopeless(candidate)))


# ---------------------------------------------------------------- worker processes

@dataclass(frozen=True)
class WorkerSetup:
    """What a worker process needs to build its Measurer (all picklable)."""

    model_path: str
    rows_dir: str
    loss: LossChoice
    measurement: Measurement
    seed: int
    reference: float
    threads: int
    task: Task = CLASSIFY


_MEASURER: Measurer | None = None


def _start_worker(setup: WorkerSetup) -> None:
    """Runs first in each worker: TensorFlow's threads, before any op; then the model and rows."""
    global _MEASURER
    import_tensorflow_quietly()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(setup.threads)
    tf.config.threading.set_inter_op_parallelism_threads(setup.threads)
    model = load_keras_model(setup.model_path, trust=True)  # the parent wrote it from the model it loaded
    rows = CandidateRows(*(np.load(Path(setup.rows_dir) / f"{name}.npy") for name in ("x_fit", "y_fit", "x_val", "y_val")))
    _MEASURER = Measurer(model, rows, loss=setup.loss, measurement=setup.measurement, seed=setup.seed,
                         reference=setup.reference, task=setup.task)


def _measure_in_worker(work: Work) -> CandidateResult:
    assert _MEASURER is not None, "worker not started"
    return _MEASURER.measure(*work)


def threads_per_worker(jobs: int, cores: int | None = None) -> int:
    """Each worker's share of the cores (at least one thread)."""
    return max(1, (cores or os.cpu_count() or 1) // max(jobs, 1))


def measure_in_processes(measurer: Measurer, work: list[Work], *, jobs: int, on_result: ResultCallback) -> None:
    """Measure in `jobs` spawned worker processes; results are reported as they arrive."""
    with tempfile.TemporaryDirectory(prefix="tinycomp-plan-") as tmp:
        model_path = str(Path(tmp) / "model.h5")
        save_keras_model(measurer.model, model_path)
        for name in ("x_fit", "y_fit", "x_val", "y_val"):
            np.save(Path(tmp) / f"{name}.npy", np.asarray(getattr(measurer.rows, name)))
        setup = WorkerSetup(model_path, tmp, measurer.loss, measurer.measurement, measurer.seed, measurer.reference,
                            threads_per_worker(jobs), measurer.task)
        context = multiprocessing.get_context("spawn")
        with context.Pool(jobs, initializer=_start_worker, initargs=(setup,)) as pool:
            for result in _unordered(pool, work):
                on_result(result)


def _unordered(pool: Any, work: list[Work]) -> Iterator[CandidateResult]:
    yield from pool.imap_unordered(_measure_in_worker, work, chunksize=1)
