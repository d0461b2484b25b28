"""`tinycomp eval`: accuracy, flash, RAM and latency of models, with budgets for CI.

With --json, the results are written before a failed budget exits 1, so CI keeps them.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from tinycomp.commands.common import CONTEXT, SIZE, data_options


@click.command("eval", context_settings=CONTEXT)
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--baseline", type=click.Path(), help="Model to compare size and accuracy against.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N test samples.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--json", "json_path", type=click.Path(), help="Also write the results as JSON (for CI).")
@click.option("--flash-budget", type=SIZE, help="e.g. 64KiB: mark models FITS / TOO BIG; exit 1 if none fits.")
@click.option("--ram-budget", type=SIZE, help="e.g. 100KiB of TFLM arena.")
@data_options
def command(models: tuple[str, ...], baseline: str | None, limit: int | None, jobs: int | None,
            json_path: str | None, flash_budget: int | None, ram_budget: int | None, load_data: Callable) -> None:
    """Accuracy, flash, RAM and latency: .tflite in the TFLM interpreter, .h5 in Keras.

    \b
    Example:
      tinycomp eval build/model.tflite build/compressed.tflite --baseline build/model.tflite --json build/eval.json
    """
    run(models=models, baseline=baseline, limit=limit, jobs=jobs, json_path=json_path, flash_budget=flash_budget,
        ram_budget=ram_budget, load_data=load_data)


def run(*, models: tuple[str, ...], baseline: str | None, limit: int | None, jobs: int | None,
        json_path: str | None, flash_budget: int | None, ram_budget: int | None, load_data: Callable) -> None:
    from tinycomp import render, tflm
    from tinycomp.evaluate import apply_budgets, compare_to_baseline, evaluate_keras, evaluate_tflite, require_one_fits
    from tinycomp.fileio import check_output_path, write_json_atomic
    from tinycomp.native_output import import_tensorflow_quietly
    from tinycomp.records import EvalRecord

    if json_path:
        check_output_path(json_path, *models)
    jobs = jobs or tflm.default_jobs()
    data = load_data()
    paths = list(dict.fromkeys([*models, *([baseline] if baseline else [])]))
    results = {}
    count = len(data.x_test) if limit is None else min(limit, len(data.x_test))
    with render.progress("evaluating", count * len(paths)) as advance:
        for path in paths:
            if str(path).endswith(".h5"):
                import_tensorflow_quietly()
                results[path] = evaluate_keras(path, data, limit)
                advance(count)
            else:
                results[path] = evaluate_tflite(path, data, limit, jobs, on_progress=advance)
    shown = [results[p] for p in models]
    if baseline:
        compare_to_baseline(shown, results[baseline])
    apply_budgets(shown, flash_budget, ram_budget)
    render.out.print(render.eval_table(shown, data.name))
    for r in shown:
        if r.alt_decompression_bytes is not None and r.arena_bytes is not None \
                and r.arena_bytes_with_alt_decompression is not None:
            decoding = r.arena_bytes - r.arena_bytes_with_alt_decompression
            render.out.print(f"{r.path}: decoding LUT weights costs {decoding:,} of its {r.arena_bytes:,} arena bytes. "
                             "TFLM can decode into an alternate decompression memory instead (e.g. another RAM bank): "
                             f"with {r.alt_decompression_bytes:,} bytes there, the arena is "
                             f"{r.arena_bytes_with_alt_decompression:,}.")
    if json_path:  # written before require_one_fits, so a failed budget still leaves the results for CI
        record = EvalRecord(models=shown, baseline=baseline, dataset=data.describe(), flash_budget=flash_budget,
                            ram_budget=ram_budget)
        write_json_atomic(json_path, record.to_json())
    require_one_fits(shown)
