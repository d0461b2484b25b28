"""Rich tables and progress bars for the CLI: presentation only, no computation."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tinycomp.metrics import CLASSIFY, REGRESS, SNR_CAP_DB, TASKS, Task
from tinycomp.plan.candidates import CONTROL, Candidate, CandidateResult, Shard
from tinycomp.plan.choose import Budget, Plan, SensitivityTable, least_harmful
from tinycomp.plan.request import JointDrop, Measurement, PlanOutcome, PlanRequest

# Piped output (Make logs, CI) gets a wide fixed width so tables and summary lines do not wrap.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)


def warn(message: str) -> None:
    err.print(f"[yellow]Warning:[/yellow] {message}")


def info(message: str) -> None:
    err.print(message)


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator:
    """A progress bar with elapsed time and ETA on stderr; yields `advance(n=1, status="", total=None)`
    (`total` changes the bar's total, for work whose size is known only once it starts)."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   console=err, transient=True, disable=not err.is_terminal)
    with bar:
        task = bar.add_task(description, total=total, status="")

        def advance(n: int = 1, status: str = "", total: int | None = None) -> None:
            if total is not None:
                bar.update(task, total=total)
            bar.update(task, advance=n, status=status)

        yield advance


def epoch_callback(advance):
    """Adapter from Keras epoch callbacks to a progress bar."""
    def on_epoch(epoch: int, epochs: int, logs: dict) -> None:
        shown = " ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()) if k in ("loss", "accuracy", "val_accuracy"))
        advance(1, status=shown)
        err.print(f"  epoch {epoch + 1}/{epochs}: {shown}")
    return on_epoch


def find_tensors_table(result) -> Table:
    table = Table(title="Weight tensors chosen for compression (LUT, or Huffman/pruning when smaller)")
    for column in ("layer", "tensor", "name", "shape", "unique (tensor / max per channel)", "layout", "bits",
                   "bytes before → after"):
        table.add_column(column, justify="right" if column in ("tensor", "bits") else "left")
    for c in result.choices:
        layout = "per_tensor" if type(c.layout).__name__ == "PerTensor" else f"per_channel axis {c.layout.axis}"
        if c.method != "lut":
            layout = f"{c.method} (LUT: {c.lut_bytes:,} bytes)"
        table.add_row(c.layer, str(c.weight.index), c.weight.name, "×".join(map(str, c.weight.shape)),
                      f"{c.unique_total} / {c.unique_per_channel}", layout,
                      str(c.index_bitwidth) if c.method == "lut" else "–",
                      f"{c.bytes_before:,} → {c.bytes_after:,}")
    return table


def compress_table(result) -> Table:
    table = Table(title="Compressed tensors")
    for column in ("tensor", "name", "method", "bits", "bytes before", "bytes after"):
        table.add_column(column, justify="right" if column in ("tensor", "bits", "bytes before", "bytes after") else "left")
    for t in result.tensors:
        method = f"lut {t.layout}" if t.method == "lut" else t.method
        table.add_row(str(t.tensor), t.name, method, str(t.index_bitwidth) if t.method == "lut" else "–",
                      f"{t.bytes_before:,}", f"{t.bytes_after:,}")
    return table


def lossless_table(choice: Any) -> Table:
    """One row per weight tensor: each method's encoded bytes and file growth, and the method chosen."""
    budget = getattr(choice, "decode_budget", None)
    title = ("encoded bytes / bytes the file gains / TFLM arena bytes it gains, − saves; sliced to the decode budget"
             if budget is not None else "encoded bytes / bytes the file gains, − saves")
    table = Table(title=f"Exact encodings per weight tensor ({title})")
    for column in ("tensor", "name", "op", "bytes", "lut", "huffman", "pruning", "chosen"):
        table.add_column(column, justify="left" if column in ("name", "op", "chosen") else "right")
    for t in choice.tensors:
        cells = []
        for trial in t.trials:
            if trial.encoded_bytes is None:
                cells.append("–")
            else:
                growth = f" / {trial.growth:+,}" if trial.growth is not None else ""
                growth += f" / {trial.arena_growth:+,}" if trial.arena_growth is not None else ""
                cells.append(f"{trial.encoded_bytes:,}{growth}")
        name = t.name if len(t.name) <= 48 else "…" + t.name[-47:]
        table.add_row(str(t.tensor), name, t.op, f"{t.bytes_before:,}", *cells, t.chosen or "none")
    return table


def lossless_summary(choice: Any) -> str:
    parts = [f"{method}: {n} tensor{'s' if n != 1 else ''}, {before:,} → {after:,} bytes"
             for method, (n, before, after) in sorted(choice.bytes_by_method().items())]
    return "By method: " + "; ".join(parts)


def slicing_lines(result: Any, budget: int | None) -> list[str]:
    """One line per sliced tensor (slices, channels, largest decoded slice) and one with their flash cost."""
    sliced = result.slicing.sliced
    if not sliced:
        return [f"Decode budget {budget:,} bytes: no compressed tensor decodes to more, nothing sliced"]
    lines = []
    for s in sliced:
        sizes = "/".join(str(c) for c in sorted(set(s.channels), reverse=True))
        lines.append(f"Sliced tensor {s.tensor} ({s.name}, {s.op}): {s.decoded_bytes:,} decoded bytes → "
                     f"{len(s.channels)} slices of {sizes} output channels (≤ {s.largest_slice_bytes:,} bytes each), "
                     f"joined by {s.concatenations} CONCATENATION" + ("s" if s.concatenations > 1 else ""))
    cost = result.slicing_cost
    lines.append(f"Slicing {'costs' if cost >= 0 else 'saves'} {abs(cost):,} flash bytes (compressed without slicing: "
                 f"{result.unsliced_bytes:,}, with: {result.unsliced_bytes + cost:,}, both unstripped"
                 + ("; the slices carry no quantization TFLM does not read" if cost < 0 else "") + ")")
    return lines


def slice_count_lines(result: Any, spec_path: str | None = None) -> list[str]:
    """One line per sliced tensor: why it has that many slices. Chosen by measured TFLM arena: the
    choice, why, and every count measured (arena/flash bytes, unstripped); with the decode budget
    of the spec at `spec_path`: the fewest that fit, as `plan` measured them."""
    if spec_path is not None:
        return [f"Slice count of tensor {s.tensor} ({s.name}): the fewest that fit ({len(s.channels)}), for the "
                f"decode_budget of {spec_path}, whose arena `plan` measured (--decode-budget measures other counts)"
                for s in result.slicing.sliced]
    lines = []
    for c in result.slice_counts:
        fewest = c.trials[0]
        chosen = next(t for t in c.trials if t.slices == c.chosen)
        if c.chosen != fewest.slices:
            why = (f"{c.chosen} slices rather than the fewest that fit ({fewest.slices}): a TFLM arena of "
                   f"{chosen.arena_bytes:,} bytes instead of {fewest.arena_bytes:,}, for "
                   f"{chosen.flash_bytes - fewest.flash_bytes:,} more flash bytes")
        elif any(t.arena_bytes < fewest.arena_bytes for t in c.trials):
            why = f"the fewest that fit ({c.chosen}): more slices saved less arena than they cost flash"
        else:
            why = f"the fewest that fit ({c.chosen}): more slices did not lower the TFLM arena"
        measured = ", ".join(f"{t.slices}: {t.arena_bytes:,}/{t.flash_bytes:,}" for t in c.trials)
        lines.append(f"Slice count of tensor {c.tensor} ({c.name}): {why} (the smallest arena measured where each "
                     f"arena byte saved costs at most one flash byte; slices: arena/flash bytes — {measured})")
    return lines


# The eval table's columns of each task's metrics: on their own, and against a baseline.
EVAL_METRIC_COLUMNS: dict[Task, tuple[str, ...]] = {CLASSIFY: ("accuracy",), REGRESS: ("MSE", "SNR dB")}
EVAL_BASELINE_COLUMNS: dict[Task, tuple[str, ...]] = {CLASSIFY: ("Δ pp", "agree"), REGRESS: ("SNR vs base dB",)}


def eval_table(results, dataset_name: str) -> Table:
    """One row per model; the metric columns are those of the models' tasks (accuracy for
    classifiers, MSE and SNR for regression/reconstruction), never accuracy for a regressor."""
    has_budget = any(r.fits is not None for r in results)
    has_baseline = any(r.ratio_vs_baseline is not None for r in results)
    present = {getattr(r, "task", CLASSIFY) for r in results}
    tasks = [task for task in TASKS.values() if task in present]
    has_gzip = any(getattr(r, "gzip_bytes", None) is not None for r in results)
    table = Table(title=f"Evaluation on {dataset_name} ({results[0].samples:,} test samples)" if results else "Evaluation",
                  caption="flash, arena: bytes (arena: TFLM's); Δ pp, agree: vs --baseline; all fields: --json"
                  if has_baseline else "flash, arena: bytes (arena: TFLM's); all fields: --json")
    # Fits a 100-column terminal: short headers, file names instead of paths when those are unique,
    # "runs in" only when not every model runs in TFLM, and the SNR against the baseline only for regression.
    names, suffix = _short_names([r.path for r in results])
    has_runs_in = any(_runs_in(r) != "TFLM" for r in results)
    columns = [f"model ({suffix})" if suffix else "model"] + (["runs in"] if has_runs_in else []) + ["flash"] + (["gzip"] if has_gzip else []) + ["arena"]
    columns += [column for task in tasks for column in EVAL_METRIC_COLUMNS[task]]
    columns += ["ms/inf"]
    if has_baseline:
        columns += ["× smaller"]
        columns += [column for task in tasks for column in EVAL_BASELINE_COLUMNS[task]]
    columns += ["budget"] if has_budget else []
    for column in columns:  # a long model path wraps rather than being cut to "build/model.tf…"
        table.add_column(column, justify="left" if column == columns[0] or column in ("runs in", "budget") else "right",
                         overflow="fold" if column in (columns[0], "budget") else "ellipsis")
    for r, name in zip(results, names):
        cells = _eval_cells(r)
        cells[columns[0]] = name
        row = [cells.get(column, "–") for column in columns]
        table.add_row(*row)
    return table


def _short_names(paths: list[str]) -> tuple[list[str], str]:
    """File names when they tell the models apart (else the paths as given), without their suffix
    when all share it; and that suffix ('' when kept)."""
    from pathlib import PurePath

    names = [PurePath(p).name for p in paths]
    if len(set(names)) != len(names):
        names = list(paths)
    suffixes = {PurePath(n).suffix for n in names}
    if len(suffixes) == 1 and "" not in suffixes:
        suffix = suffixes.pop()
        return [n[:-len(suffix)] for n in names], suffix
    return names, ""


def _runs_in(r: Any) -> str:
    return getattr(r, "runs_in", None) or ("TFLM" if r.kind == "tflm" else "Keras")


def _eval_cells(r) -> dict[str, str]:
    dash = "–"
    cells = {
        "model": r.path, "runs in": _runs_in(r), "flash": f"{r.flash_bytes:,}",
        "gzip": _num(getattr(r, "gzip_bytes", None), "{:,}"),
        "arena": _num(r.arena_bytes, "{:,}"),
        "accuracy": _num(r.accuracy, "{:.2%}") if getattr(r, "task", CLASSIFY).has_accuracy else dash,
        "MSE": _num(getattr(r, "mse", None), "{:.4g}"), "SNR dB": _num(getattr(r, "snr_db", None), "{:.1f}"),
        "ms/inf": _num(r.ms_per_inference, "{:.3f}"),
        "× smaller": _num(r.ratio_vs_baseline, "{:.2f}"), "Δ pp": _num(r.accuracy_delta_pp, "{:+.2f}"),
        "agree": _num(getattr(r, "agreement_top1", None), "{:.2%}"),
        "SNR vs base dB": _snr(getattr(r, "agreement_snr_db", None)),
    }
    if r.fits is not None:
        cells["budget"] = "[green]FITS[/green]" if r.fits else f"[red]TOO BIG[/red] ({'; '.join(r.budget_notes)})"
    return cells


def _snr(value) -> str:
    """An output SNR in dB; 'identical' at the cap metrics uses for identical outputs."""
    if value is not None and value >= SNR_CAP_DB:
        return "identical"
    return _num(value, "{:.1f}")


def _num(value, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def decoding_note(r: Any, ram_budget: int | None = None) -> str | None:
    """For a LUT-compressed model: what decoding costs in the arena, the two ways out (alternate
    decompression memory, or `compress --decode-budget`), and a decode budget that would fit.

    The suggested budget keeps every decoded slice within the rest of the arena (its size with
    decoding moved out), or within what a RAM budget leaves beside it; each slice adds TFLM
    bookkeeping too (about 0.5 KB per slice on the tutorial model), so the suggestion is a start.
    """
    if r.alt_decompression_bytes is None or r.arena_bytes is None or r.arena_bytes_with_alt_decompression is None:
        return None
    rest = r.arena_bytes_with_alt_decompression
    decoding = r.arena_bytes - rest
    line = (f"{r.path}: decoding compressed weights costs {decoding:,} of its {r.arena_bytes:,} arena bytes. TFLM can decode "
            "into an alternate decompression memory instead (e.g. another RAM bank): with "
            f"{r.alt_decompression_bytes:,} bytes there, the arena is {rest:,}.")
    if ram_budget is not None and r.arena_bytes <= ram_budget:
        return line
    room = rest if ram_budget is None else ram_budget - rest
    suggested = room // 1024
    if r.alt_decompression_bytes > suggested * 1024 > 0:
        fit = "the RAM budget" if ram_budget is not None else "about the rest of the arena"
        line += (f" Or slice the weights: `compress --decode-budget {suggested}KiB` decodes at most "
                 f"{suggested * 1024:,} bytes at a time, to fit {fit} (docs/slicing.md).")
    return line


def eval_notes(results) -> list[str]:
    """One line per model note (e.g. "float16 model: ... will not run on a microcontroller")."""
    return [f"{r.path}: {note}" for r in results for note in getattr(r, "notes", [])]


def paired_lines(results) -> list[str]:
    """One line per model compared with a baseline: its paired 95% intervals of Δ and agreement."""
    from tinycomp.bounds import Interval

    lines = []
    for r in results:
        paired = getattr(r, "paired", None)
        if not paired:
            continue
        delta = Interval.from_json(paired["delta"], r.path)
        parts = [f"Δ {'accuracy' if delta.unit == 'pp' else 'SNR'} {delta.text()}"]
        if paired.get("agreement"):
            parts.append(f"top-1 agreement {Interval.from_json(paired['agreement'], r.path).text()}")
        lines.append(f"{r.path} vs the baseline: " + "; ".join(parts))
    return lines


def task_metrics(metrics: dict) -> str:
    """A task's test metrics in words: 'test accuracy 92.10%' or 'test MSE 0.0123, SNR 18.2 dB'."""
    if metrics.get("accuracy") is not None:
        return f"test accuracy {100 * metrics['accuracy']:.2f}%"
    parts = [f"MSE {metrics['mse']:.4g}" if metrics.get("mse") is not None else "",
             f"SNR {metrics['snr_db']:.1f} dB" if metrics.get("snr_db") is not None else ""]
    return "test " + ", ".join(p for p in parts if p) if any(parts) else "no test metric"


def sensitivity_table(outcome: PlanOutcome) -> Table:
    """`plan`'s per-layer table: every option's score, measured and counted drop, bytes, and the choice."""
    if outcome.backend == "tflite":
        return palettization_table(outcome)
    chosen, task, unit = outcome.plan, outcome.table.task, outcome.table.unit
    t = Table(title="Per-layer sensitivity (one layer clustered at a time; Δ vs the fine-tuned unclustered model)")
    for column in ("layer", "clusters", "bits", f"val {task.metric}", f"measured Δ {unit}", f"counted Δ {unit}",
                   "bytes", "ideal bytes", "plan"):
        t.add_column(column, justify="left" if column in ("layer", "plan") else "right")
    for layer in outcome.table.layers:
        for o in sorted(layer.options, key=lambda o: o.clusters or 10 ** 9):
            mark = "◀" if chosen.choices.get(layer.name) is o else ""
            t.add_row(f"{layer.name} ({layer.kind}{', per channel' if layer.per_channel else ''})"
                      if o is layer.options[0] else "", str(o.clusters) if o.clusters else "none", str(o.bits),
                      task.value_text(o.accuracy) if o.accuracy is not None else "–",
                      f"{o.measured_drop:+.2f}" if o.measured_drop is not None else "–",
                      f"{o.drop:.2f}", f"{o.bytes:,}", f"{o.ideal_bytes:,}", mark)
    return t


def palettization_table(outcome: PlanOutcome) -> Table:
    """A .tflite plan's per-tensor table: every bitwidth's score, measured and counted drop, bytes, the choice."""
    chosen, table = outcome.plan, outcome.table
    unit = table.unit
    t = Table(title="Per-tensor sensitivity (one tensor palettized at a time, zero-shot in TFLM)")
    for column in ("tensor", "bits", "val SNR" if table.task is REGRESS else "val accuracy", f"measured Δ {unit}",
                   f"counted Δ {unit}", "bytes", "plan"):
        t.add_column(column, justify="left" if column in ("tensor", "plan") else "right")
    for layer in table.layers:
        for o in sorted(layer.options, key=lambda o: -(o.bits)):
            mark = "◀" if chosen.choices.get(layer.name) is o else ""
            t.add_row(f"{layer.name} ({layer.kind})" if o is layer.options[0] else "",
                      str(o.bits) if o.clusters else "int8",
                      table.task.score_text(o.accuracy) if o.accuracy is not None else "–",
                      f"{o.measured_drop:+.2f}" if o.measured_drop is not None else "–", f"{o.drop:.2f}",
                      f"{o.bytes:,}", mark)
    return t


def palettization_summary(outcome: PlanOutcome, strip: bool) -> list[str]:
    """A .tflite plan's lines under the table: the validation, the plan's prediction and its arena."""
    chosen, table, task = outcome.plan, outcome.table, outcome.table.task
    return [
        f"Validation: {table.validation_samples:,} validation rows per candidate; the given file "
        f"{task.score_text(table.reference_accuracy)}"
        + (f" (one score is ±{outcome.noise:.2f} {table.unit} on the {outcome.check_rows:,} rows of the check)."
           if outcome.check_rows else " (not checked: --no-check)."),
        f"Plan: {_choice_text(chosen) or 'no tensor palettized'}"
        f"{'; stepped down after the table: ' + ', '.join(chosen.stepped) if chosen.stepped else ''}; "
        f"{chosen.exact_bytes:,} bytes after compress{' --strip' if strip else ''} ({table.int8_bytes:,} given), "
        f"{outcome.budget.task.drop_text()} predicted {chosen.predicted_drop:+.2f} {table.unit}"
        + (f", measured {chosen.checked_drop:+.2f} {table.unit}" if chosen.checked_drop is not None else "")
        + f"; a {chosen.arena_bytes:,}-byte TFLM arena"
        + (f" (left unpalettized for --ram-budget: {', '.join(chosen.uncompressed_for_ram)})"
           if chosen.uncompressed_for_ram else "")
        + (f", with kernels decoding to over {chosen.decode_budget:,} bytes sliced along their output channels "
           "(decode_budget in the spec; palettize passes it to compress)" if chosen.decode_budget is not None else "")
        + ".",
    ]


def validation_lines(outcome: PlanOutcome, data_name: str) -> list[str]:
    """Where the plan's validation rows came from (with, for rows of the training set, how to give groups or
    a validation set), the check's estimate and bounds against the budget, and, once, when the validation
    rows cannot resolve the budget even at zero drop."""
    from tinycomp.bounds import Checked, unresolved_note
    from tinycomp.data.validation import ROWS_NOTE

    source, budget, chosen = outcome.validation, outcome.budget, outcome.plan
    lines = []
    if source is not None:
        lines.append(source.describe(data_name, fine_tunes=outcome.backend != "tflite") + "." if source.kind != "rows" else
                     "Note: " + ROWS_NOTE.format(fraction=source.rows / max(source.rows + source.fit_rows, 1),
                                                 name=data_name, rows=source.rows) + ".")
    checked_plan = outcome.refused or chosen  # a plan that compresses nothing: the check of the least harmful
    if checked_plan.checked_bound is None:
        return lines
    checked = Checked.from_json(checked_plan.checked_bound, "the plan's check")
    limits = [f"{budget.max_drop:g} {checked.drop.unit} budget" if budget.max_drop is not None else "",
              f"{budget.min_agreement:g} % agreement" if budget.min_agreement is not None else ""]
    wanted = " and ".join(part for part in limits if part)
    verdict = ("" if not wanted else
               f": {'within' if checked.within(budget.max_drop, budget.min_agreement) else 'NOT within'} the {wanted}"
               " (decided on the bounds)")
    refused = " (the least harmful plan measured; refused)" if outcome.refused is not None else ""
    lines.append(f"Check{refused}: {budget.task.drop_text()} {checked.text()}{verdict}.")
    note = None if budget.max_drop is None else unresolved_note(checked.drop, budget.max_drop)
    if note:
        lines.append(f"Note: {note}.")
    return lines


def plan_summary(outcome: PlanOutcome, *, credit_fine_tuning: bool) -> list[str]:
    """`plan`'s lines under the table: the validation, the plan's prediction and its arena."""
    table, chosen = outcome.table, outcome.plan
    task, unit = table.task, table.unit
    checked = (f", measured with all its layers clustered at once {chosen.checked_drop:+.2f} {unit}"
               if chosen.checked_drop is not None else "")
    kept = (f"; left uncompressed to meet --ram-budget: {', '.join(chosen.uncompressed_for_ram)}"
            if chosen.uncompressed_for_ram else "")
    sliced = (f"; kernels decoding to over {chosen.decode_budget:,} bytes are sliced along their output channels "
              "(decode_budget in the spec; `compress` applies it)" if chosen.decode_budget is not None else "")
    return [
        f"Validation: {table.validation_samples:,} validation rows (one run's {task.metric} is "
        f"±{outcome.noise:.1f} {unit}). Given model {task.score_text(table.reference_accuracy)}, fine-tuned "
        f"unclustered {task.score_text(table.control_accuracy)} ({table.fine_tune_gain:+.2f} {unit}"
        f"{', credited' if credit_fine_tuning and table.fine_tune_gain > 0 else ''}).",
        f"Plan: {', '.join(f'{n}→{o.clusters} ({o.bits} bit)' for n, o in chosen.clustered().items()) or 'no layer clustered'}"
        f"{f' ({chosen.epochs} fine-tuning epochs)' if chosen.epochs else ' (no fine-tuning)'}"
        f"{'; stepped down after the table: ' + ', '.join(chosen.stepped) if chosen.stepped else ''}; predicted "
        f"{chosen.exact_bytes:,} bytes ({table.int8_bytes:,} int8 uncompressed; additive estimate "
        f"{chosen.predicted_bytes:,}), weights' ideal bound {chosen.ideal_bytes:,} + {table.fixed_bytes:,} other "
        f"bytes; {task.drop_text()} {chosen.predicted_drop:+.2f} {unit} (Σ layers {chosen.sum_drop:.2f} − "
        f"fine-tuning {chosen.credit:.2f}){checked}.",
        f"RAM: a {chosen.arena_bytes:,}-byte TFLM arena, measured on the planned file (decoded LUT weights live "
        f"there while their layer runs){kept}{sliced}.",
    ]


def plan_next_line(outcome: PlanOutcome, model_path: str, output: str, record: Any, seconds: float,
                   calibrated: bool) -> str:
    """What `plan` wrote and the next command of its chain (palettize with the same data when calibrated)."""
    if outcome.backend == "tflite":
        data = " with the same --data/--dataset" if calibrated else ""
        return (f"Wrote {output} and {record}; next: tinycomp palettize {model_path} --spec {output} -o OUT.tflite"
                f"{data}  ({seconds:.1f} s)")
    return (f"Wrote {output} and {record}; next: tinycomp cluster {model_path} --spec {output} -o ...  (the spec "
            f"fine-tunes {outcome.plan.epochs or 0} epochs; {seconds:.0f} s)")


def plan_warning(outcome: PlanOutcome) -> str | None:
    """The one warning of a plan that compresses nothing (every measured plan refused, or nothing fits), if any."""
    if outcome.refused is not None:
        return refused_line(outcome, outcome.refused)
    if not outcome.plan.clustered() and outcome.backend == "keras":
        return nothing_fits_line(outcome)
    return None


def plan_report(outcome: PlanOutcome, request: PlanRequest, model_path: str, output: str, record: Any, *,
                data_name: str, seconds: float) -> list[Any]:
    """What `plan` prints after writing: the sensitivity table, the plan, its validation and check, the next command."""
    summary = (palettization_summary(outcome, request.costs.strip) if outcome.backend == "tflite" else
               plan_summary(outcome, credit_fine_tuning=request.budget.credit_fine_tuning))
    return [sensitivity_table(outcome), *summary, *validation_lines(outcome, data_name),
            plan_next_line(outcome, model_path, output, record, seconds, bool(request.measurement.calibration_rows))]


def refused_line(outcome: PlanOutcome, refused: Plan) -> str:
    """The warning of a plan whose check accepted none of the plans it measured: the least harmful one's
    measurement, and what the chain makes instead."""
    from tinycomp.bounds import Checked, unresolved_note

    unit, budget = outcome.table.unit, outcome.budget
    checked = None if refused.checked_bound is None else Checked.from_json(refused.checked_bound, "the check")
    bound = "" if checked is None else f" (95% upper bound {checked.drop.high:+.2f} {unit})"
    unresolved = checked is not None and budget.max_drop is not None and unresolved_note(checked.drop, budget.max_drop)
    return (f"no plan the check measured is within the {budget.task.drop_text()} of {budget.max_drop:g} {unit} on its "
            f"bound; the least harmful ({_choice_text(refused)}) measured {refused.checked_drop:+.2f} {unit}{bound}. "
            f"The plan compresses nothing: the chain makes the given model as it is ({outcome.table.int8_bytes:,} "
            "bytes)" + (". See the Note on how much validation data would resolve the budget" if unresolved else ""))


def _choice_text(plan: Plan) -> str:
    return ", ".join(f"{name}→{o.bits} bit" for name, o in plan.clustered().items())


def nothing_fits_line(outcome: PlanOutcome) -> str:
    """The one-line warning of a plan that clusters nothing: why, and what the chain will make."""

    budget, table = outcome.budget, outcome.table
    least = least_harmful(table)
    why = (f" (the least harmful single choice, {least[0]}→{least[1].clusters}, counts {least[1].drop:+.2f} "
           f"{table.unit})" if least else "")
    ram = f" and the arena within {budget.ram_bytes:,} bytes" if budget.ram_bytes is not None else ""
    what = (f"no layer can be clustered within an {budget.task.drop_text()} of {budget.max_drop:g} {table.unit}{ram}"
            f"{why}" if least is None or least[1].drop > (budget.max_drop or 0.0) or ram else
            f"no clustered plan was both within the {budget.task.drop_text()} of {budget.max_drop:g} {table.unit} "
            "(as measured) and smaller than the int8 model")
    return f"{what}: the plan clusters nothing, so the chain makes the plain int8 model ({table.int8_bytes:,} bytes)"


class PlanProgressLines:
    """PlanProgress on stderr: what is measured or reused, a bar with ETA over the candidates, one line per
    measured candidate and per check. `kind` is the backend ("keras" or "tflite"); `devices` the
    TensorFlow devices a Keras plan measures on (the caller finds them: rendering imports no TensorFlow)."""

    def __init__(self, model_path: str, data_name: str, task: Task, advance: Callable[..., None] | None = None, *,
                 kind: str = "keras", devices: str = ""):
        self.model_path, self.data_name, self.task, self.advance = model_path, data_name, task, advance
        self.kind, self.devices = kind, devices
        self.total, self.count = 0, 0

    def measuring(self, m: Measurement, task: Task, jobs: int, shard: Shard | None) -> None:
        where = f" in {jobs} processes" if jobs > 1 else ""
        part = f", shard {shard.describe()}" if shard else ""
        if task == REGRESS:
            part += " (regress task: drops in output SNR vs the targets, dB)"
        if self.kind == "tflite":
            bits = sorted({max(1, (c - 1).bit_length()) for c in m.cluster_counts})
            rows = (f" (at most {m.validation_rows:,} of them per candidate, more for the check)"
                    if m.validation_rows else "")
            info(f"Sensitivity of {self.model_path}{part}: one weight tensor at a time palettized to "
                 f"{', '.join(map(str, bits))} bits, zero-shot in TFLM on the last {m.validation_split:g} of "
                 f"{self.data_name}'s training rows{rows}{where}")
            return
        rows = f" ({m.fine_tune_rows or 'all'} fit rows, {m.validation_rows or 'all'} validation rows per candidate)"
        info(f"Sensitivity of {self.model_path}{part}: one layer at a time, cluster counts "
                    f"{', '.join(map(str, m.cluster_counts))}, {m.estimate.announcement}{m.epochs} fine-tuning epochs "
                    f"each, validated on the last {m.validation_split:g} of {self.data_name}'s training rows{rows}"
                    f"{where}; TensorFlow devices: {self.devices}")

    def reusing(self, source: str, table: SensitivityTable) -> None:
        info(f"Sensitivity of {self.model_path} from {source} (measured in {table.seconds:.0f} s); choosing "
                    "under the new budget")

    def merging(self, count: int) -> None:
        info(f"Sensitivity of {self.model_path} from {count} partial tables; choosing")

    def resumed(self, path: str, count: int | None) -> None:
        if count is None:
            info(f"--resume: no {path} yet, measuring every candidate")
        else:
            self.count = count
            info(f"--resume: {count} candidate(s) measured before, in {path}")

    def started(self, candidates: list[Candidate]) -> None:
        self.total = len(candidates)
        if self.advance:
            self.advance(self.count, total=self.total)

    def measured(self, result: CandidateResult) -> None:
        self.count += 1
        what = describe_result(result, self.task, self.kind)
        err.print(f"  [{self.count}/{self.total}] {what}")
        if self.advance:
            self.advance(1, status=what)

    def budget_resolved(self, budget: Budget) -> None:
        info(f"--target-ratio {budget.target_ratio:g}: {self.model_path} is {budget.float32_bytes:,} bytes as "
                    f"float32 .tflite, so the budget is {budget.target_bytes:,} bytes")

    def checked(self, plan: Plan, drop: float, epochs: int) -> None:
        unit = self.task.unit
        measured = bound_text(plan.checked_bound) or f"{drop:+.2f} {unit}"
        if self.kind == "tflite":
            info(f"Checked {_choice_text(plan)} palettized together: drop {measured} on the check's validation rows, "
                 f"predicted {plan.predicted_drop:+.2f}{agreement_text(plan.checked_agreement)}")
            return
        layers = ", ".join(f"{n}→{o.clusters}" for n, o in plan.clustered().items())
        how = f"fine-tuned {epochs} epochs" if epochs else "zero-shot (fine-tuning scored no better)"
        info(f"Checked {layers} clustered together ({how}): drop {measured}, "
             f"predicted {plan.predicted_drop:+.2f} {unit}")

    def stepped(self, plan: Plan, step: str, measured: JointDrop, kept: bool) -> None:
        how = f"fine-tuned {measured.epochs} epochs" if measured.epochs else "zero-shot"
        shown = (measured.checked.drop.text() if measured.checked is not None
                 else f"{measured.drop:+.2f} ± {measured.noise:.2f} {self.task.unit}")
        agreement = (f", agreement {measured.checked.agreement.estimate:.2f} % (lower bound "
                     f"{measured.checked.agreement.low:.2f} %)"
                     if measured.checked is not None and measured.checked.agreement is not None else "")
        info(f"  step {step}: measured {shown}{agreement} ({how}) — "
             + (f"kept ({plan.predicted_bytes:,} bytes predicted)" if kept else "refused"))


def bound_text(checked: dict | None) -> str:
    """The check's drop with its bound and what it rests on, and agreement with its lower bound ('' when the
    check has no bounds: a table recorded before they existed)."""
    if not checked:
        return ""
    from tinycomp.bounds import Checked

    return Checked.from_json(checked, "the plan's check").text()


def agreement_text(agreement: dict[str, float] | None) -> str:
    """"; agreement with the given file: top-1 97.2%, output SNR 31.4 dB" (empty when not measured).

    Accuracy within budget can hide many changed predictions (one wrong made right for each right made
    wrong); agreement shows how far the planned file moved from the given one."""
    if not agreement:
        return ""
    parts = ([f"top-1 {agreement['agreement_top1']:.1%}"] if "agreement_top1" in agreement else []) + \
            ([f"output SNR {agreement['agreement_snr_db']:.1f} dB"] if "agreement_snr_db" in agreement else [])
    return "; agreement with the given file: " + ", ".join(parts)


def describe_result(result: CandidateResult, task: Task, kind: str = "keras") -> str:
    """e.g. 'dense → 4 clusters: zero-shot 97.10%, fine-tuned 98.20% (3 s)' (regress: 'zero-shot SNR 20.30 dB');
    for a .tflite: 'dense → 3 bits: 97.10% (zero-shot, TFLM)'."""
    if kind == "tflite":
        name, _, values = result.key.rpartition("/")
        what = "the given file" if result.key == CONTROL else f"{name} → {max(1, (int(values) - 1).bit_length())} bits"
        return f"{what}: {task.score_text(result.zero_shot or 0.0)} (zero-shot, TFLM)"
    what = ("control (fine-tuned, unclustered)" if result.key == CONTROL
            else "{} → {} clusters".format(*result.key.rsplit("/", 1)))
    measured = [f"{label} {task.score_text(value)}" for label, value in (("zero-shot", result.zero_shot),
                                                                          ("fine-tuned", result.fine_tuned))
                if value is not None]
    return f"{what}: {', '.join(measured)} ({result.seconds:.0f} s)"


def palettize_table(tensors, choices: dict) -> Table:
    """One row per palettized weight: values per table before → after, the change, and its LUT compression
    (`choices`: (subgraph, tensor) → find-tensors' TensorChoice)."""
    table = Table(title="Palettized weight tensors (values per quantization channel)")
    for column in ("layer", "tensor", "op", "shape", "tables", "values before → after", "RMS change (steps)",
                   "LUT bits or method", "bytes → encoded bytes"):
        table.add_column(column, justify="left" if column in ("layer", "op") else "right")
    for t in tensors:
        choice = choices.get(t.key)
        table.add_row(t.layer, str(t.tensor), t.op, "×".join(map(str, t.shape)),
                      f"{t.tables}" + (f" (axis {t.layout.axis})" if type(t.layout).__name__ == "PerChannel" else ""),
                      f"{t.values_before} → {t.values_after}", f"{t.rms_error:.2f}",
                      _encoding(choice), f"{choice.bytes_before:,} → {choice.bytes_after:,}" if choice else "–")
    return table


def _encoding(choice: Any) -> str:
    """A TensorChoice's LUT index bits, or its other method with what LUT would take (`--smallest-exact`)."""
    if choice is None:
        return "–"
    return str(choice.index_bitwidth) if choice.method == "lut" else f"{choice.method} (LUT {choice.lut_bytes:,} B)"
