"""`tinycomp eval`: the task's metric, agreement with a baseline, flash, RAM and latency, with budgets.

With --json, the results are written before a failed budget exits 1, so CI keeps them.
"""

from __future__ import annotations

import click

from tinycomp import render, tflm
from tinycomp.commands.common import CONTEXT, SIZE, data_options, open_data, task_option, trust_option
from tinycomp.data import DataSpec
from tinycomp.evaluate import apply_budgets, compare_to_baseline, evaluate_model, require_one_fits
from tinycomp.fileio import check_output_path, is_tflite_file, write_json_atomic
from tinycomp.metrics import Task
from tinycomp.native_output import import_tensorflow_quietly
from tinycomp.records import EvalRecord


@click.command("eval", context_settings=CONTEXT)
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--baseline", type=click.Path(),
              help="Model to compare against: size ratio, Δ accuracy, top-1 agreement and output SNR.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N test samples.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--json", "json_path", type=click.Path(), help="Also write the results as JSON (for CI).")
@click.option("--flash-budget", type=SIZE, help="e.g. 64KiB: mark models FITS / TOO BIG; exit 1 if none fits.")
@click.option("--ram-budget", type=SIZE, help="e.g. 100KiB of TFLM arena.")
@task_option
@trust_option
@data_options
def command(models: tuple[str, ...], baseline: str | None, limit: int | None, jobs: int | None,
            json_path: str | None, flash_budget: int | None, ram_budget: int | None, task: Task | None, trust: bool,
            data_spec: DataSpec) -> None:
    """Metric, agreement, flash, RAM and latency of .tflite files (in TFLM) and Keras models.

    The metric follows the task: top-1 accuracy for classifiers, MSE and output SNR for
    regression and reconstruction. With --baseline every model also gets its agreement with
    the baseline: top-1 agreement (classifiers) and output SNR in dB (all). Files TFLM cannot
    run (dynamic-range, float16) are evaluated with the TFLite interpreter, marked "TFLite".
    Sizes are the file's bytes and its gzip -9 bytes (the figure TFMOT's guide publishes).

    \b
    Example:
      tinycomp eval build/model.tflite build/compressed.tflite --baseline build/model.tflite --json build/eval.json
    """
    run(models=models, baseline=baseline, limit=limit, jobs=jobs, json_path=json_path, flash_budget=flash_budget,
        ram_budget=ram_budget, data_spec=data_spec, task=task, trust=trust)


def run(*, models: tuple[str, ...], baseline: str | None, limit: int | None, jobs: int | None,
        json_path: str | None, flash_budget: int | None, ram_budget: int | None, data_spec: DataSpec,
        task: Task | None = None, trust: bool = False) -> None:

    if json_path:
        check_output_path(json_path, *models)
    jobs = jobs or tflm.default_jobs()
    data = open_data(data_spec, splits=("test",))  # eval reads only the test rows
    paths = list(dict.fromkeys([*models, *([baseline] if baseline else [])]))
    results = {}
    count = len(data.x_test) if limit is None else min(limit, len(data.x_test))
    with render.progress("evaluating", count * len(paths)) as advance:
        for path in paths:
            if not is_tflite_file(path):
                import_tensorflow_quietly()
            results[path] = evaluate_model(path, data, limit, jobs, on_progress=advance, task=task, trust=trust)
    shown = [results[p] for p in models]
    if baseline:
        compare_to_baseline(shown, results[baseline], data.y_test[:count], data.groups_test)
    apply_budgets(shown, flash_budget, ram_budget)
    render.out.print(render.eval_table(shown, data.name))
    for line in render.eval_notes(shown) + render.paired_lines(shown):
        render.out.print(line)
    for r in shown:
        note = render.decoding_note(r, ram_budget)
        if note:
            render.out.print(note)
    if json_path:  # written before require_one_fits, so a failed budget still leaves the results for CI
        record = EvalRecord(models=shown, baseline=baseline, dataset=data.describe(), flash_budget=flash_budget,
                            ram_budget=ram_budget)
        write_json_atomic(json_path, record.to_json())
    require_one_fits(shown)

