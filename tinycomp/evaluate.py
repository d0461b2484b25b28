"""Accuracy, flash, RAM and latency of models: .tflite in the TFLM interpreter, .h5 in Keras.

The test set is split across worker processes (TFLM's reference kernels take about 1 ms per
MNIST image). Flash is the file size; RAM is the TFLM arena the model allocates, which grows
when LUT-compressed weights are decoded at run time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinycomp import tflm
from tinycomp.data import Dataset, check_fits_model
from tinycomp.errors import BudgetExceeded, UsageError
from tinycomp.tflite_model import read_tflite

SIZE_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1024, "M": 1000**2, "MB": 1000**2, "MIB": 1024**2}


@dataclass
class ModelResult:
    """What `eval` measured for one model."""

    path: str
    kind: str  # tflm | keras
    flash_bytes: int
    accuracy: float
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

    def to_json(self) -> dict:
        return asdict(self)


def parse_size(text: str | None, option: str) -> int | None:
    """'64KiB' → 65536, '100KB' → 100000, '2048' → 2048."""
    if text is None:
        return None
    cleaned = text.strip().upper().replace(" ", "")
    number = cleaned.rstrip("KMIB")
    unit = cleaned[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in SIZE_UNITS or value < 0:
        raise UsageError(f"cannot read size {text!r}", option, "write e.g. 65536, 64KiB, 100KB or 1MiB")
    return int(value * SIZE_UNITS[unit])


def test_subset(data: Dataset, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1", "--limit")
    n = len(data.x_test) if limit is None else min(limit, len(data.x_test))
    return data.x_test[:n], data.y_test[:n]


def evaluate_tflite(path: str, data: Dataset, limit: int | None = None, jobs: int = 1,
                    on_progress: Callable[[int], None] | None = None) -> ModelResult:
    """Accuracy in TFLM over the test set, split into `jobs` processes; arena from the first chunk."""
    model = read_tflite(path)
    details = tflm.run_isolated(tflm.input_details, model.data, source=path)
    input_shape = tuple(details["shape"][1:])
    outputs = model.model.subgraphs[0].outputs[0].shape
    check_fits_model(data, input_shape, int(outputs[-1]), path)
    x, y = test_subset(data, limit)
    chunks = np.array_split(np.arange(len(x)), max(1, min(jobs, len(x))))
    args = [(model.data, x[idx], i == 0) for i, idx in enumerate(chunks)]
    results = tflm.run_parallel(tflm.predict_chunk, args, workers=jobs, source=path,
                                on_done=(lambda i: on_progress(len(chunks[i]))) if on_progress else None)
    predictions = np.concatenate([r.predictions for r in results])
    invoke_seconds = sum(r.invoke_seconds for r in results)
    alt, arena_with_alt = results[0].decode_memory or (None, None)
    return ModelResult(path, "tflm", len(model.data), float(np.mean(predictions == y)), len(y),
                       arena_bytes=results[0].arena_bytes, alt_decompression_bytes=alt,
                       arena_bytes_with_alt_decompression=arena_with_alt,
                       ms_per_inference=1000 * invoke_seconds / len(y))


def evaluate_keras(path: str, data: Dataset, limit: int | None = None) -> ModelResult:
    """Accuracy of a Keras .h5 model (for comparison; it does not run on a microcontroller)."""
    import time

    from tinycomp.models import load_keras_model

    model = load_keras_model(path)
    check_fits_model(data, tuple(model.input_shape[1:]), int(model.output_shape[-1]), path)
    x, y = test_subset(data, limit)
    start = time.perf_counter()
    predictions = np.argmax(model.predict(x, batch_size=256, verbose=0), axis=1)
    seconds = time.perf_counter() - start
    return ModelResult(path, "keras", Path(path).stat().st_size, float(np.mean(predictions == y)), len(y),
                       ms_per_inference=1000 * seconds / len(y))


def compare_to_baseline(results: list[ModelResult], baseline: ModelResult) -> None:
    """Fill in size ratio and accuracy delta (percentage points) against `baseline`."""
    for r in results:
        r.ratio_vs_baseline = baseline.flash_bytes / r.flash_bytes if r.flash_bytes else math.inf
        r.accuracy_delta_pp = 100.0 * (r.accuracy - baseline.accuracy)


def apply_budgets(results: list[ModelResult], flash: int | None, ram: int | None) -> None:
    """Mark each model FITS or not; raise BudgetExceeded when none fits."""
    if flash is None and ram is None:
        return
    for r in results:
        notes = []
        if flash is not None and r.flash_bytes > flash:
            notes.append(f"flash {r.flash_bytes:,} > {flash:,}")
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
