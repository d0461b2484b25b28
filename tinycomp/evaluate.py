"""The task's metric, flash, RAM and latency of models: .tflite in the TFLM interpreter (or the
TFLite interpreter for files TFLM cannot run), Keras models (.h5, .keras, SavedModel) in Keras.

The test set is split across worker processes (TFLM's reference kernels take about 1 ms per
MNIST image). Flash is the file size; gzip_bytes is the gzip-compressed size, the figure TFMOT's
clustering guide publishes; RAM is the TFLM arena the model allocates, which grows when
LUT-compressed weights are decoded at run time.

Every result keeps the model's float outputs on the test rows in memory (`ModelResult.outputs`,
never written to JSON), so `compare_to_baseline` can measure agreement with the baseline: top-1
agreement for classifiers and output SNR for every task. The metric follows the task
(`metrics.choose_task`): accuracy for classify, MSE and SNR for regress.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from tinycomp import bounds, lite_interpreter, tflm
from tinycomp.data import Dataset, check_fits_model
from tinycomp.errors import BudgetExceeded, DataError, InvalidValue
from tinycomp.fileio import is_tflite_file
from tinycomp.metrics import CLASSIFY, Task, choose_task
from tinycomp.models import load_keras_model, predict_outputs
from tinycomp.tflite.model import read_tflite

EVAL_CHUNK_ROWS = 2048  # rows per TFLM work item: bounds the memory a streamed test set takes


@dataclass
class ModelResult:
    """What `eval` measured for one model. New fields go at the end, so older JSON stays readable."""

    path: str
    kind: str  # tflm | tflite | keras
    flash_bytes: int
    accuracy: float | None  # top-1 accuracy for the classify task; None for regress
    samples: int
    arena_bytes: int | None = None
    ms_per_inference: float | None = None
    ratio_vs_baseline: float | None = None
    accuracy_delta_pp: float | None = None
    fits: bool | None = None
    budget_notes: list[str] = field(default_factory=list)
    # With the decoded LUT weights in TFLM's alternate decompression memory of this size, the arena is:
    alt_decompression_bytes: int | None = None
    arena_bytes_with_alt_decompression: int | None = None
    task: Task = CLASSIFY  # CLASSIFY | REGRESS; its name in JSON ("task")
    mse: float | None = None  # regress: mean squared error against the targets
    snr_db: float | None = None  # regress: output SNR in dB against the targets
    agreement_top1: float | None = None  # classify: share of rows with the baseline's top-1 class
    agreement_snr_db: float | None = None  # output SNR in dB against the baseline's outputs
    gzip_bytes: int | None = None  # gzip -9 of the file (TFMOT's published figure)
    runs_in: str | None = None  # TFLM | TFLite | Keras
    notes: list[str] = field(default_factory=list)
    # Paired 95% intervals against the baseline (bounds.Interval as JSON): "delta" (accuracy pp or SNR dB,
    # model − baseline) and "agreement" (top-1, percent; classifiers), over test rows or test groups.
    paired: dict | None = None
    outputs: np.ndarray | None = field(default=None, repr=False, compare=False)  # in memory only

    def to_json(self) -> dict:
        payload = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "outputs"}
        payload["task"] = self.task.name
        return payload


def _plain(value):
    return list(value) if isinstance(value, list) else value


def _rows(data: Dataset, limit: int | None) -> int:
    """How many test rows to evaluate: all, or the first `limit`."""
    return len(data.x_test) if limit is None else min(limit, len(data.x_test))


def gzip_size(path: str | Path) -> int:
    """Bytes of the file gzip-compressed at level 9 (a directory: the sum over its files)."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return sum(len(gzip.compress(f.read_bytes(), 9, mtime=0)) for f in files)


def file_size(path: str | Path) -> int:
    p = Path(path)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def _task_for(data: Dataset, output_shape: tuple, task: Task | None) -> Task:
    """The task object: `task` if given, else chosen from the data's targets and the output shape."""

    return choose_task(data.y_test[:1] if data.labels else None, output_shape, task)


def _scored(result: ModelResult, task: Task, outputs: np.ndarray, y) -> ModelResult:
    scores = task.score(outputs, np.asarray(y))
    result.task, result.outputs = task, outputs
    result.accuracy = scores.get("accuracy")
    result.mse, result.snr_db = scores.get("mse"), scores.get("snr_db")
    return result


def evaluate_tflite(path: str, data: Dataset, limit: int | None = None, jobs: int = 1,
                    on_progress: Callable[[int], None] | None = None, *, task: Task | None = None) -> ModelResult:
    """The task's metric in TFLM over the test set, split into `jobs` processes; arena from the
    first chunk. Files TFLM cannot run (dynamic-range, float16) run in the TFLite interpreter."""

    model = read_tflite(path)
    subgraph = model.model.subgraphs[0]
    input_shape = tuple(int(d) for d in subgraph.inputs[0].shape[1:])
    output_shape = tuple(int(d) for d in subgraph.outputs[0].shape[1:])
    data = data.fit_to(input_shape)
    chosen = _task_for(data, output_shape, task)
    check_fits_model(data, input_shape, int(output_shape[-1]) if output_shape else 1, path, task=chosen,
                     output_shape=output_shape)
    n = _rows(data, limit)
    y = data.y_test[:n]
    why = lite_interpreter.why_not_tflm(model.model)
    if why:
        x = np.asarray(data.x_test[:n])
        outputs, seconds = lite_interpreter.predict(model.data, x)
        if on_progress:
            on_progress(len(x))
        result = ModelResult(path, "tflite", len(model.data), None, len(y), ms_per_inference=1000 * seconds / len(y),
                             gzip_bytes=gzip_size(path), runs_in="TFLite",
                             notes=[lite_interpreter.NOT_ON_MCU_NOTE.format(why=why)])
        return _scored(result, chosen, outputs, y)
    tflm.run_isolated(tflm.input_details, model.data, source=path)  # a refusal becomes one clear error
    chunks = _chunks(n, jobs)
    args = ((model.data, np.asarray(data.x_test[idx[0]:idx[-1] + 1]), i == 0)  # each chunk read when submitted
            for i, idx in enumerate(chunks))
    results = tflm.run_parallel(tflm.predict_chunk, args, workers=min(jobs, len(chunks)), source=path,
                                on_done=(lambda i: on_progress(len(chunks[i]))) if on_progress else None)
    outputs = np.concatenate([r.outputs for r in results])
    invoke_seconds = sum(r.invoke_seconds for r in results)
    alt, arena_with_alt = results[0].decode_memory or (None, None)
    result = ModelResult(path, "tflm", len(model.data), None, len(y),
                         arena_bytes=results[0].arena_bytes, alt_decompression_bytes=alt,
                         arena_bytes_with_alt_decompression=arena_with_alt,
                         ms_per_inference=1000 * invoke_seconds / len(y), gzip_bytes=gzip_size(path), runs_in="TFLM")
    return _scored(result, chosen, outputs, y)


def _chunks(rows: int, jobs: int) -> list[np.ndarray]:
    """Row ranges for the TFLM workers: at least one per job, none over EVAL_CHUNK_ROWS rows, so a
    memory-mapped test set is read a chunk at a time."""
    count = max(1, min(jobs, rows), -(-rows // EVAL_CHUNK_ROWS))
    return [idx for idx in np.array_split(np.arange(rows), count) if len(idx)]


def evaluate_keras(path: str, data: Dataset, limit: int | None = None, *, task: Task | None = None,
                   trust: bool = False) -> ModelResult:
    """The task's metric of a Keras model (.h5, .keras, SavedModel; for comparison: it does not
    run on a microcontroller). `trust` allows models whose loading runs code (see models.load_keras_model)."""
    import time


    model = load_keras_model(path, trust=trust, for_conversion=True, native_keras3=True)
    input_shape, output_shape = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    data = data.fit_to(input_shape)
    chosen = _task_for(data, output_shape, task)
    check_fits_model(data, input_shape, int(output_shape[-1]), path, task=chosen, output_shape=output_shape)
    if limit is not None and limit < 1:
        raise InvalidValue(f"limit must be at least 1, got {limit}", "limit")
    start = time.perf_counter()
    outputs = predict_outputs(model, data, limit=limit)
    seconds = time.perf_counter() - start
    y = data.y_test[:len(outputs)]
    result = ModelResult(path, "keras", file_size(path), None, len(outputs),
                         ms_per_inference=1000 * seconds / len(outputs), gzip_bytes=gzip_size(path), runs_in="Keras")
    return _scored(result, chosen, outputs.reshape(len(outputs), -1), y)


def evaluate_model(path: str, data: Dataset, limit: int | None = None, jobs: int = 1,
                   on_progress: Callable[[int], None] | None = None, *, task: Task | None = None,
                   trust: bool = False) -> ModelResult:
    """evaluate_tflite for .tflite flatbuffers, evaluate_keras for Keras models (by content, not name)."""

    if is_tflite_file(path):
        return evaluate_tflite(str(path), data, limit, jobs, on_progress, task=task)
    result = evaluate_keras(str(path), data, limit, task=task, trust=trust)
    if on_progress:
        on_progress(result.samples)
    return result


def compare_to_baseline(results: list[ModelResult], baseline: ModelResult, targets: np.ndarray | None = None,
                        groups: np.ndarray | None = None) -> None:
    """Fill in size ratio, accuracy delta (percentage points, classifiers) and agreement with the
    baseline's outputs on the same test rows (top-1 agreement for classifiers, output SNR for all).
    With the test rows' `targets`, also the paired 95% intervals of Δ and agreement (`paired`), by test
    group when `groups` (one id per test row) are given."""

    for r in results:
        r.ratio_vs_baseline = baseline.flash_bytes / r.flash_bytes if r.flash_bytes else math.inf
        if r.accuracy is not None and baseline.accuracy is not None:
            r.accuracy_delta_pp = 100.0 * (r.accuracy - baseline.accuracy)
        if r.outputs is None or baseline.outputs is None:
            continue
        if r.outputs.shape != baseline.outputs.shape:
            raise DataError(f"outputs of shape {r.outputs.shape} cannot be compared with the baseline's "
                            f"{baseline.outputs.shape}", r.path, "compare models of the same task on the same rows")
        agreement = r.task.agreement(r.outputs, baseline.outputs)
        r.agreement_top1 = agreement.get("agreement_top1")
        r.agreement_snr_db = agreement.get("agreement_snr_db")
        if targets is not None:
            r.paired = paired_intervals(r, baseline, np.asarray(targets)[:len(r.outputs)],
                                        None if groups is None else np.asarray(groups)[:len(r.outputs)])


def paired_intervals(result: ModelResult, baseline: ModelResult, targets: np.ndarray,
                     groups: np.ndarray | None) -> dict:
    """{"delta": Δ of the task's metric (model − baseline), "agreement": top-1 agreement (classifiers)},
    each a two-sided paired 95% interval as JSON."""
    assert result.outputs is not None and baseline.outputs is not None
    if result.task.has_accuracy:
        delta = bounds.accuracy_drop(targets, baseline.outputs, result.outputs, groups, sided="two")
        agree = bounds.agreement(baseline.outputs, result.outputs, groups, sided="two")
        return {"delta": delta.negated().to_json(), "agreement": agree.to_json()}
    delta = bounds.snr_drop(targets, baseline.outputs, result.outputs, groups, sided="two")
    return {"delta": delta.negated().to_json(), "agreement": None}


def apply_budgets(results: list[ModelResult], flash: int | None, ram: int | None) -> None:
    """Mark each model FITS or not; raise BudgetExceeded when none fits."""
    if flash is None and ram is None:
        return
    for r in results:
        notes = []
        if flash is not None and r.flash_bytes > flash:
            notes.append(f"flash {r.flash_bytes:,} > {flash:,}")
        if r.runs_in == "TFLite":
            notes.append("does not run in TFLM")
        if ram is not None:
            if r.arena_bytes is None:
                notes.append("RAM unknown (not a TFLM model)")
            elif r.arena_bytes > ram:
                notes.append(f"RAM {r.arena_bytes:,} > {ram:,}")
        r.fits, r.budget_notes = not notes, notes


def require_one_fits(results: list[ModelResult]) -> None:
    if results and all(r.fits is False for r in results):
        raise BudgetExceeded("no model fits the flash/RAM budget", ", ".join(r.path for r in results),
                             "compress further or raise the budget")
