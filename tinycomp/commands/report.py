"""`tinycomp report`: figures and a markdown summary from `tinycomp eval --json`.

The metric follows the models' task: accuracy and its drop for classifiers, MSE and output SNR for
regression models; predictions.png (class predictions on test images) only for classifiers.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from tinycomp import render, tflm
from tinycomp import report as rep
from tinycomp.commands.common import CONTEXT, DataOptions, open_data, recorded_data_options
from tinycomp.data import BUILTIN, Dataset, DataSpec, check_fits_model
from tinycomp.errors import DataError, OutputFileError
from tinycomp.fileio import read_text, write_bytes_atomic
from tinycomp.metrics import CLASSIFY, REGRESS, Task
from tinycomp.records import EvalRecord
from tinycomp.tflite.model import read_tflite


@click.command("report", context_settings=CONTEXT)
@click.argument("eval_json", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Directory to write the report to.")
@click.option("--baseline", type=click.Path(), help="Model for the 'base' predictions  [default: the eval's baseline]")
@click.option("--model", type=click.Path(), help="Model for the 'comp' predictions  [default: the eval's last model]")
@click.option("--images", type=click.IntRange(min=0, max=64), default=16, show_default=True,
              help="Images in predictions.png; 0: no predictions.png (no data or TFLM needed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed for picking images.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--max-drop", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Verdict for classifiers: accuracy may fall at most this many percentage points below the "
                   "baseline.")
@click.option("--min-snr", type=float, default=None, metavar="DB",
              help="Verdict for every task (the one for regression models): output SNR against the baseline's "
                   "outputs of at least DB decibels  [default: no SNR verdict]")
@recorded_data_options
def command(eval_json: str, output: str, baseline: str | None, model: str | None, images: int, seed: int,
            jobs: int | None, max_drop: float, min_snr: float | None, data_options: DataOptions) -> None:
    """Figures and a markdown summary from `tinycomp eval --json` (for people and CI).

    Writes to OUTPUT/: size_vs_accuracy.png (flash bytes vs the task's metric, one point per
    model: accuracy for classifiers, output SNR in dB for regression models), predictions.png
    (classifiers with image inputs: test images with true label and both models' TFLM
    predictions, mistakes in red) and summary.md (the results table with the task's metrics and
    a verdict per model).

    predictions.png reads the test rows of the data the eval JSON records (source, path and
    preprocessing); the data options name other data, or change the recorded preprocessing.

    \b
    Example:
      tinycomp eval build/model.tflite build/compressed.tflite --baseline build/model.tflite --json build/eval.json
      tinycomp report build/eval.json -o build/report
      tinycomp report build/ae.eval.json -o build/ae.report --min-snr 30
    """
    run(eval_json=eval_json, output=output, data_options=data_options, baseline=baseline, model=model, images=images,
        seed=seed, jobs=jobs, max_drop=max_drop, min_snr=min_snr)


def _report_dir(output: str) -> Path:
    """The report directory, checked before any work; it is created only when everything is ready to write."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise OutputFileError("the report output is a file, not a directory", str(out), "give a directory, e.g. -o report/")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputFileError("output directory's parent does not exist", str(parent), "create it first (mkdir -p)")
    if not os.access(out if out.exists() else parent, os.W_OK):
        raise OutputFileError("report directory is not writable", str(out), "choose another -o/--output")
    return out


def _write_report(out: Path, files: dict[str, bytes]) -> None:
    """Create the directory and write every file (each atomically), only once all of them are made:
    a failed report leaves no half-written directory behind."""
    try:
        out.mkdir(exist_ok=True)
    except OSError as e:
        raise OutputFileError(f"cannot create the report directory: {e.strerror}", str(out)) from e
    for name, content in files.items():
        write_bytes_atomic(out / name, content)


def recorded_spec(record: EvalRecord) -> DataSpec | None:
    """The DataSpec eval recorded (`dataset.spec`); for eval JSON from before specs, a built-in
    dataset's name with the recorded explicit preprocessing; else None."""
    if "spec" in record.dataset:
        return DataSpec.from_json(record.dataset["spec"], record.source)
    name = record.dataset_name
    if name not in BUILTIN:
        return None
    preprocessing = record.dataset.get("preprocessing") or {}
    if not str(preprocessing.get("reason", "")).startswith("explicit"):
        return DataSpec(name)
    return DataSpec(name, input_scale=float(preprocessing["scale"]), input_offset=float(preprocessing["offset"]))


def report_dataset(options: DataOptions, record: EvalRecord, eval_json: str) -> Dataset:
    """The test rows of the data the options name, else of the data the eval JSON records (a relative
    path that is not found from here is tried relative to the JSON's folder, as models are)."""
    if options.dataset is not None or options.path is not None:
        return open_data(options.spec(), splits=("test",))
    recorded = recorded_spec(record)
    if recorded is None:
        raise DataError(f"the eval JSON was measured on {record.dataset_name!r}, which is not a built-in dataset",
                        record.source, "give the same data with --data FILE.npz (or --images 0 for no predictions.png)")
    return open_data(options.over(_beside_json(recorded, eval_json)), splits=("test",))


def _beside_json(spec: DataSpec, eval_json: str) -> DataSpec:
    """`spec` with its recorded relative paths resolved against the eval JSON's folder when they do not
    exist from the current directory but do there; says which path is used."""
    path, targets = _resolve_beside(spec.path, eval_json), _resolve_beside(spec.targets, eval_json)
    for key, was, now in (("path", spec.path, path), ("targets", spec.targets, targets)):
        if now != was:
            render.info(f"the eval JSON records {key} {was}, relative to its folder: using {now}")
    return replace(spec, path=path, targets=targets)


def _pick_models(report: EvalRecord, baseline: str | None, model: str | None) -> tuple[str | None, str | None]:
    """Baseline and compared .tflite: the options, else the eval's baseline and its last TFLM model."""
    tflite = [m.path for m in report.models if m.kind == "tflm"]
    first = baseline or (report.baseline if report.baseline and not str(report.baseline).endswith(".h5") else None)
    first = first or (tflite[0] if tflite else None)
    second = model or next((p for p in reversed(tflite) if p != first), None)
    return first, second


def run(*, eval_json: str, output: str, data_options: DataOptions, baseline: str | None,
        model: str | None, images: int, seed: int, jobs: int | None, max_drop: float,
        min_snr: float | None = None) -> None:

    parsed = EvalRecord.from_json(read_text(eval_json, "eval JSON"), str(eval_json))
    out = _report_dir(output)
    figures, notes = [], []
    files: dict[str, bytes] = {}
    metric, shown = rep.plot_metric(parsed), rep.plotted(parsed)
    if shown:
        files["size_vs_accuracy.png"] = rep.size_vs_accuracy_png(parsed)
        figures.append((f"Size vs {metric.name}", "size_vs_accuracy.png"))
    else:
        notes.append(f"no model in the eval JSON has its {metric.name}: no size_vs_accuracy.png")
    left_out = [m.path for m in parsed.models if all(m is not plotted for plotted in shown)]
    if shown and left_out:
        notes.append(f"size_vs_accuracy.png plots {metric.name}, so it leaves out the models of another task: "
                     f"{', '.join(left_out)}")
    if images:
        notes += _predictions(parsed, files, figures, eval_json=eval_json, data_options=data_options,
                              baseline=baseline, model=model, images=images, seed=seed, jobs=jobs)
    files["summary.md"] = rep.summary_markdown(parsed, figures, max_drop, notes, min_snr_db=min_snr).encode()
    _write_report(out, files)
    written = ", ".join(name for _, name in figures)
    render.out.print(f"Wrote {out}/: summary.md, {written} ({len(parsed.models)} models from {eval_json})")


def _predictions(parsed: EvalRecord, files: dict[str, bytes], figures: list[tuple[str, str]], *, eval_json: str,
                 data_options: DataOptions, baseline: str | None, model: str | None, images: int, seed: int,
                 jobs: int | None) -> list[str]:
    """Draw predictions.png for two classifiers with image inputs; otherwise say why not. Returns notes."""
    first, second = _pick_models(parsed, baseline, model)
    if first is None or second is None:
        render.warn("predictions.png needs two TFLM models (the eval JSON has fewer); give --baseline and --model")
        return []
    regressors = [p for p in (first, second) if not _task_of(parsed, p).has_accuracy]
    if regressors:
        named = [os.path.basename(p) for p in dict.fromkeys(regressors)]
        what = "is a regression model" if len(named) == 1 else "are regression models"
        note = (f"predictions.png shows class predictions, so it is drawn for classifiers only; "
                f"{' and '.join(named)} {what} (task {REGRESS.name}): no predictions.png")
        render.info(note)
        return [note]
    return _draw_predictions(parsed, files, figures, (first, second), eval_json=eval_json, data_options=data_options,
                             images=images, seed=seed, jobs=jobs)


def _task_of(parsed: EvalRecord, path: str) -> Task:
    """The task eval recorded for `path`; for a model not in the eval JSON, the record's only task."""
    recorded = {m.path: m.task for m in parsed.models}
    if path in recorded:
        return recorded[path]
    return REGRESS if REGRESS in parsed.tasks else CLASSIFY


def _draw_predictions(parsed: EvalRecord, files: dict[str, bytes], figures: list[tuple[str, str]], pair: tuple[str, str], *,
                      eval_json: str, data_options: DataOptions, images: int, seed: int, jobs: int | None) -> list[str]:

    first, second = pair
    paths = [_resolve_model_path(p, eval_json) for p in pair]
    models = [read_tflite(p) for p in paths]
    data = report_dataset(data_options, parsed, eval_json)
    for m in models:
        input_shape = tuple(int(d) for d in m.model.subgraphs[0].inputs[0].shape[1:])
        data = data.fit_to(input_shape)  # as eval does: (T, C) rows for a (T, C) model, H×W×1 images for H×W
        check_fits_model(data, input_shape, int(m.model.subgraphs[0].outputs[0].shape[-1]), m.source, task=CLASSIFY)
    if not rep.can_show_images(data.x_test[:1]):
        render.warn(f"the rows of {data.name} are not images {data.input_shape}; predictions.png skipped")
        return []
    n = min(parsed.samples, len(data.x_test))
    x, y = data.x_test[:n], data.y_test[:n]
    with render.progress("predicting in TFLM", 1) as advance:
        predicted = rep.predict_tflm([m.data for m in models], x, jobs or tflm.default_jobs(), paths)
        advance()
    notes = _check_accuracy(parsed, pair, predicted, y, data.name)
    chosen = rep.pick_examples(y, predicted[0], predicted[1], images, seed)
    notable = int(np.sum((predicted[0][chosen] != y[chosen]) | (predicted[1][chosen] != y[chosen])
                         | (predicted[0][chosen] != predicted[1][chosen])))
    subtitle = (f"{len(chosen)} of the first {n:,} {data.name} test images: {notable} where a model errs or "
                f"they disagree (shown first, red frame = a mistake), {len(chosen) - notable} at random")
    names = rep.display_names([first, second]) if first != second else {first: os.path.basename(first)}
    files["predictions.png"] = (rep.predictions_png(
        x[chosen], y[chosen], predicted[0][chosen], predicted[1][chosen], names[first], names[second], subtitle))
    figures.append(("TFLM predictions", "predictions.png"))
    return notes


def _check_accuracy(parsed: EvalRecord, paths: tuple[str, str], predicted: list[np.ndarray], y: np.ndarray,
                    dataset_name: str) -> list[str]:
    """Warn when the predictions do not reproduce eval's accuracy (different data or models)."""

    notes = []
    recorded = {m.path: m.accuracy for m in parsed.models if m.accuracy is not None}
    for path, p in zip(paths, predicted):
        if path in recorded and abs(float(np.mean(p == y)) - recorded[path]) > 1e-9:
            note = (f"{os.path.basename(path)} scores {100 * float(np.mean(p == y)):.2f}% on these {dataset_name} "
                    f"images but {100 * recorded[path]:.2f}% in the eval JSON: different data or a changed model")
            render.warn(note)
            notes.append(note)
    return notes


def _resolve_model_path(path: str, eval_json: str) -> str:
    """A model path from the eval JSON: as written (relative to the current directory) if it exists,
    else relative to the JSON's directory."""
    return _resolve_beside(path, eval_json) or path


def _resolve_beside(path: str | None, eval_json: str) -> str | None:
    """A path recorded in the eval JSON: as written if it exists (or is absolute), else relative to the JSON's
    folder when it exists there, else as written (the reader then says it is missing)."""
    if path is None or Path(path).exists() or Path(path).is_absolute():
        return path
    beside = Path(eval_json).parent / path
    return str(beside) if beside.exists() else path
