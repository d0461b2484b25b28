"""`tinycomp plan`: bits per layer (a Keras model: cluster counts) or per weight tensor (an int8 .tflite) within a budget."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import click

from tinycomp import render
from tinycomp.commands.common import (
    CONTEXT,
    SIZE,
    capped_jobs,
    data_options,
    exactly_one_of,
    is_tflite,
    load_model_and_data,
    open_data,
    options_given,
    output_option,
    parse_counts,
    parse_learning_rate,
    seed_option,
    task_option,
    trust_option,
)
from tinycomp.data.spec import DataSpec
from tinycomp.errors import UsageError
from tinycomp.fileio import check_output_path, read_bytes, sidecar_path
from tinycomp.metrics import CLASSIFY, REGRESS, Task
from tinycomp.models import FINE_TUNE_LEARNING_RATE
from tinycomp.plan import Budget, ByteCosts, Measurement, PlanRequest, workflow
from tinycomp.plan.candidates import ESTIMATES, Shard
from tinycomp.plan.request import DEFAULT_VALIDATION_SPLIT, TFLITE_CANDIDATE_COUNTS
from tinycomp.tflite.calibrated import DEFAULT_CALIBRATION_ROWS
from tinycomp.tflm import default_jobs


@click.command("plan", context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@click.argument("parts", nargs=-1, type=click.Path(), metavar="[PART.json ...]")
@output_option
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0), metavar="PP",
              help="Fewest bytes with the predicted top-1 accuracy drop vs MODEL at most PP percentage points "
                   "(classifiers).")
@click.option("--max-snr-drop", type=click.FloatRange(min=0), metavar="DB",
              help="Instead, for a regression or reconstruction model: fewest bytes with the predicted drop of the "
                   "output SNR (vs the targets) at most DB decibels.")
@click.option("--target-bytes", type=SIZE,
              help="Instead: the smallest predicted drop (accuracy, or SNR for regression) in at most SIZE bytes "
                   "(e.g. 39141, 38KiB).")
@click.option("--target-ratio", type=click.FloatRange(min=1), metavar="R",
              help="Instead: the smallest predicted drop at least R times smaller than MODEL as a "
                   "float32 .tflite (the file `convert` writes), e.g. 12.")
@click.option("--min-agreement", type=click.FloatRange(0, 100), metavar="PCT",
              help="Classifiers, with --max-accuracy-drop: also keep top-1 agreement with MODEL on the validation rows "
                   "at least PCT percent (its 95% lower bound, like the drop's upper bound), e.g. --min-agreement 97")
@click.option("--ram-budget", "ram_bytes", type=SIZE,
              help="Also keep the TFLM arena of the planned file within SIZE (e.g. 100KiB): large decoded weights "
                   "are sliced (a decode_budget in the spec, see `compress --decode-budget`), and layers that "
                   "still do not fit stay uncompressed.")
@click.option("--clusters", "cluster_counts", default="2,4,8,16,32,64", show_default=True,
              help="Cluster counts to measure per layer (bits = log2 of the count).")
@click.option("--layer", "layers", multiple=True, help="Plan only this layer; repeatable (default: all clusterable).")
@click.option("--per-channel-conv/--per-tensor-conv", default=True, show_default=True,
              help="Cluster Conv2D kernels per output channel.")
@click.option("--epochs", type=click.IntRange(min=0), default=2, show_default=True,
              help="Fine-tuning epochs per candidate and for the check (the spec records what `cluster` should use).")
@click.option("--estimate", type=click.Choice(list(ESTIMATES)), default="fast", show_default=True,
              help="fast: every candidate zero-shot, fine-tuning (on --fine-tune-rows) only those beyond the noise, "
                   "then step the plan down while its measured bound allows (full MNIST at 0.5 pp: 22.76x smaller "
                   "than float32 in 4.1-6.6x one cluster run; docs/plan.md). fine-tune: every candidate fine-tuned "
                   "on every row as well (full MNIST: 23.06x in 13.9x one cluster run).")
@click.option("--fine-tune-rows", type=click.IntRange(min=0), default=None,
              help="Fit rows each candidate fine-tunes on (a seeded subset; 0: all). Default: 4096 with --estimate "
                   "fast, all with fine-tune. The chosen plan's check fine-tunes on all of them.")
@click.option("--validation-rows", type=click.IntRange(min=0), default=None,
              help="Validation rows each candidate is measured on (a seeded subset; 0: all). Default: 2048 with "
                   "--estimate fast, all with fine-tune. The chosen plan's check is measured on all of them.")
@click.option("--learning-rate", "learning_rate_text", default="auto", show_default=True, metavar="RATE|auto",
              help="Adam's learning rate for every fine-tune. auto: the unclustered model is fine-tuned at "
                   f"{FINE_TUNE_LEARNING_RATE:g} and 1e-3 and the rate whose drop against the given model has the "
                   "lower 95% upper bound on validation is used (ties: the better score; the spec records it for "
                   "`cluster`).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Measure candidates in N worker processes, each with its share of the cores' TensorFlow threads "
                   "(the same table as one process). For a .tflite the default is one TFLM worker per core.")
@click.option("--shard", metavar="I/N",
              help="Measure only shard I of N of the candidates and write that partial table to OUTPUT (a .json); "
                   "no budget needed. Then --merge every shard's part.")
@click.option("--merge", is_flag=True,
              help="Merge the partial tables PART.json ... that `--shard` wrote (same model, data and options; every "
                   "candidate once), then choose as without it.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run: measure only the candidates OUTPUT.partial.json (written after "
                   "every candidate) lacks.")
@click.option("--calibration-rows", type=click.IntRange(min=0), default=DEFAULT_CALIBRATION_ROWS, show_default=True,
              help="A .tflite's candidates are palettized with data as `palettize --data` does, on this many training "
                   "rows chosen with --seed (0: without data).")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--validation-split", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              help="Fraction of the training rows held out to measure accuracy: the last rows, or with groups "
                   "(groups_train in an .npz, --groups with .npy) that fraction of the groups, chosen by --seed, "
                   "never fine-tuned on. A validation set in the data (x_val/y_val, --val-data) is used instead. "
                   "Default: what `tinycomp train` held out of MODEL (its .json), else 0.2.")
@click.option("--credit-fine-tuning/--no-credit-fine-tuning", default=True, show_default=True,
              help="Count the accuracy fine-tuning alone gains against the layers' drops.")
@click.option("--refine/--no-refine", default=True, show_default=True,
              help="With a drop budget: after the table's choice (when the check measured it zero-shot), step the "
                   "layers with the most bytes saved per drop down one option at a time, each step measured with all "
                   "layers clustered, while the drop's 95% upper bound stays within the budget; then, while the "
                   "bound leaves budget, the step saving the most bytes measured as the check measures.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Cluster the chosen layers together, fine-tune and measure the drop (per-layer drops need not "
                   "add up); with a drop budget, choose again if the drop's 95% upper bound is over it.")
@click.option("--per-tensor-dense", is_flag=True,
              help="Measure bytes as `quantize --per-tensor-dense` will quantize (give it there too).")
@click.option("--io", type=click.Choice(["uint8", "int8", "float32"]), default="uint8", show_default=True,
              help="Measure bytes as `quantize --io` will make the input/output (give it there too).")
@click.option("--strip", is_flag=True,
              help="Measure bytes as `compress --strip` will write them (give it there too).")
@click.option("--sensitivity", "sensitivity_path", type=click.Path(), metavar="PLAN_JSON",
              help="Reuse the sensitivity table an earlier plan wrote (its OUTPUT .json) instead of measuring "
                   "again: a new budget in seconds. Same model, data, --per-tensor-dense and --strip.")
@task_option
@trust_option
@seed_option
@data_options
@click.pass_context
def command(ctx: click.Context, model: str, parts: tuple[str, ...], output: str, max_accuracy_drop: float | None,
            max_snr_drop: float | None, target_bytes: int | None, target_ratio: float | None, ram_bytes: int | None,
            min_agreement: float | None, cluster_counts: str, layers: tuple[str, ...], per_channel_conv: bool, epochs: int, estimate: str,
            fine_tune_rows: int | None, validation_rows: int | None, learning_rate_text: str, jobs: int,
            shard: str | None, merge: bool, resume: bool, calibration_rows: int, batch_size: int,
            validation_split: float | None,
            credit_fine_tuning: bool, refine: bool, check: bool, per_tensor_dense: bool, io: str, strip: bool,
            sensitivity_path: str | None, task: Task | None, trust: bool, seed: int, data_spec: DataSpec) -> None:
    """Choose bits per layer (mixed bitwidth) within a budget and write the spec of the chain.

    A Keras MODEL: clusters one layer at a time over the cluster counts (zero-shot, and fine-tuned
    when that is needed), measures the drop on validation rows (top-1 accuracy; for regression the
    output SNR in dB, --max-snr-drop) and each layer's compressed bytes exactly with tflite-micro,
    and writes the spec for `cluster` (OUTPUT) and the sensitivity table (OUTPUT with .json). An
    int8 MODEL.tflite (any framework) is planned without TensorFlow: each weight tensor palettized
    to 2–6 bits in TFLM, bits per tensor written for `palettize --spec` (docs/palettize.md).

    The choice is checked with all its layers compressed at once and chosen again when over budget,
    then (--refine) stepped down while the budget allows. Every accept or refuse compares the paired
    95% upper bound of the drop vs MODEL with the budget (with --min-agreement, also agreement's lower
    bound); its spread comes from the validation rows, or from whole held-out groups when the data
    has groups (groups_train: subjects, sessions; docs/data.md). When no plan's bound fits, the plan
    compresses nothing, says so, and names how many groups or rows would resolve the budget; the
    chain then makes the plain int8 model. The plan says whether MODEL was trained on its validation
    rows (from `tinycomp train`'s record). --ram-budget slices large decoded weights
    (docs/slicing.md). Give --per-tensor-dense, --io and --strip as to quantize and compress, so the
    bytes are the chain's. --sensitivity re-chooses from an earlier table; --jobs, --shard/--merge
    and --resume split or continue the measuring (docs/plan.md).

    \b
    Example:
      tinycomp plan build/model.h5 --max-accuracy-drop 0.5 --per-tensor-dense --strip -o build/plan.yaml
      tinycomp cluster build/model.h5 --spec build/plan.yaml -o build/planned.h5
      tinycomp quantize build/planned.h5 --per-tensor-dense -o build/planned_int8.tflite
      tinycomp find-tensors build/planned_int8.tflite --clustering build/planned.yaml -o build/planned_spec.yaml
      tinycomp compress build/planned_int8.tflite --spec build/planned_spec.yaml --strip -o build/planned.tflite
      tinycomp plan build/model.h5 --target-ratio 12 --sensitivity build/plan.json --per-tensor-dense --strip -o build/plan_12x.yaml
      tinycomp plan build/model.h5 --max-accuracy-drop 0.5 --ram-budget 64KiB --sensitivity build/plan.json --per-tensor-dense --strip -o build/plan_64k_ram.yaml
      tinycomp plan build/model.h5 --jobs 2 --max-accuracy-drop 0.5 --per-tensor-dense --strip -o build/plan.yaml
      tinycomp plan build/model.h5 --shard 1/2 -o build/part1.json   (and 2/2, e.g. on another machine)
      tinycomp plan build/model.h5 --merge build/part1.json build/part2.json --max-accuracy-drop 0.5 --per-tensor-dense --strip -o build/plan.yaml
      tinycomp plan build/model.h5 --max-accuracy-drop 0.5 --resume -o build/plan.yaml   (after an interruption)
      tinycomp plan build/int8.tflite --max-accuracy-drop 0.5 --data d.npz -o build/pal.yaml   (then palettize --spec)
    """
    check_modes(parts=parts, merge=merge, shard=shard, sensitivity_path=sensitivity_path, resume=resume)
    if not shard:
        exactly_one_of({"--max-accuracy-drop": max_accuracy_drop, "--max-snr-drop": max_snr_drop,
                        "--target-bytes": target_bytes, "--target-ratio": target_ratio}, what="give", where="plan",
                       hint="e.g. --max-accuracy-drop 0.5 (a classifier), --max-snr-drop 1 (a regression model), "
                            "--target-bytes 38KiB or --target-ratio 12")
    if min_agreement is not None and max_accuracy_drop is None:
        raise UsageError("--min-agreement goes with --max-accuracy-drop", "--min-agreement",
                         "give both, e.g. --max-accuracy-drop 1 --min-agreement 97")
    tflite = is_tflite(model)
    for flag in options_given(ctx, KERAS_ONLY if tflite else ["calibration_rows"]):
        raise UsageError(f"{flag} has no effect on a .tflite: plan measures its candidates zero-shot in TFLM, without "
                         "fine-tuning or quantizing" if tflite else f"{flag} is for a .tflite's palettization", flag,
                         "drop the option")
    given = options_given(ctx, MEASUREMENT_OPTIONS)
    for flag, used in (("--sensitivity", sensitivity_path), ("--merge", merge)):
        if used and given:
            raise UsageError(f"{given[0]} has no effect with {flag}: the table was measured already", flag,
                             f"drop the option, or measure a new table without {flag}")
    counts = TFLITE_CANDIDATE_COUNTS if tflite and not options_given(ctx, ["cluster_counts"]) else parse_counts(cluster_counts)
    measurement = Measurement(cluster_counts=counts, layers=layers, per_channel_conv=per_channel_conv,
                              epochs=0 if tflite else epochs, estimate=ESTIMATES[estimate], batch_size=batch_size,
                              validation_split=validation_split or DEFAULT_VALIDATION_SPLIT, fine_tune_rows=fine_tune_rows,
                              validation_rows=validation_rows, learning_rate=parse_learning_rate(learning_rate_text),
                              task=task, calibration_rows=calibration_rows if tflite else 0)
    jobs = default_jobs() if tflite and not options_given(ctx, ["jobs"]) else capped_jobs(jobs)  # TFLM: every core
    if shard:
        run_shard(model_path=model, output=output, measurement=measurement, seed=seed, shard=Shard.parse(shard),
                  jobs=jobs, resume=resume, trust=trust, data_spec=data_spec, split_given=validation_split is not None)
        return
    budget_task, max_drop = (CLASSIFY, max_accuracy_drop) if max_snr_drop is None else (REGRESS, max_snr_drop)
    request = PlanRequest(
        budget=Budget(max_drop=max_drop, target_bytes=target_bytes, target_ratio=target_ratio, ram_bytes=ram_bytes,
                      credit_fine_tuning=credit_fine_tuning and not tflite, task=budget_task,
                      min_agreement=min_agreement),
        measurement=measurement, costs=ByteCosts(per_tensor_dense=per_tensor_dense, io=io, strip=strip), check=check,
        seed=seed, refine=refine)
    run(model_path=model, output=output, request=request, sensitivity_path=sensitivity_path,
        parts=parts if merge else (), resume=resume, jobs=jobs, trust=trust, data_spec=data_spec,
        split_given=validation_split is not None)


# plan's options that fine-tune or quantize a Keras model: nothing of the kind happens to a .tflite
KERAS_ONLY = ("epochs", "estimate", "fine_tune_rows", "learning_rate_text", "per_channel_conv", "credit_fine_tuning",
              "per_tensor_dense", "io", "batch_size", "trust")
# Options that change how the table is measured: refused when the table is reused (--sensitivity, --merge).
MEASUREMENT_OPTIONS = ("cluster_counts", "layers", "per_channel_conv", "epochs", "estimate", "batch_size",
                       "validation_split", "seed", "fine_tune_rows", "validation_rows", "learning_rate_text", "task",
                       "calibration_rows")


def check_modes(*, parts: tuple[str, ...], merge: bool, shard: str | None, sensitivity_path: str | None,
                resume: bool) -> None:
    """UsageError for PART files without --merge, and for modes that exclude each other."""
    if parts and not merge:
        raise UsageError(f"unexpected argument {parts[0]!r}", "plan", "partial tables are given with --merge")
    if merge and not parts:
        raise UsageError("--merge needs the partial tables", "--merge", "e.g. --merge build/plan-part-*.json")
    modes = [name for name, used in (("--shard", shard), ("--merge", merge), ("--sensitivity", sensitivity_path))
             if used]
    if len(modes) > 1:
        raise UsageError(f"{modes[0]} and {modes[1]} exclude each other", modes[1],
                         "measure a shard, merge shards, or re-choose from a table, one at a time")
    if resume and (merge or sensitivity_path):
        raise UsageError("--resume continues a measurement; nothing is measured here", "--resume", "drop --resume")


def run(*, model_path: str, output: str, request: PlanRequest, sensitivity_path: str | None, parts: tuple[str, ...],
        resume: bool, jobs: int, trust: bool, data_spec: DataSpec, split_given: bool = True) -> None:
    """Read any recorded table or parts, the model and data; make the plan; write the spec and its record; render."""
    check_output_path(output, model_path, sensitivity_path, *parts)
    started = time.perf_counter()
    recorded = (sensitivity_path, workflow.read_record(sensitivity_path)) if sensitivity_path else None
    read_parts = [(path, workflow.read_part(path)) for path in parts]
    inputs = load_inputs(model_path, data_spec, trust, request.measurement.task)
    progress = progress_lines(inputs)
    if recorded or read_parts:
        request, outcome = workflow.plan_model(inputs, request, recorded=recorded, parts=read_parts, progress=progress)
    else:
        measurement, line = workflow.with_validation_of_training(inputs, request.measurement, request.seed,
                                                                 split_given=split_given)
        request = replace(request, measurement=measurement)
        render.info(line)
        with render.progress("sensitivity", 0) as advance:
            progress.advance = advance
            request, outcome = workflow.plan_model(inputs, request, output=output, resume=resume, jobs=jobs, progress=progress)
    warning = render.plan_warning(outcome)
    if warning:
        render.warn(warning)
    workflow.write_plan(output, inputs, request, outcome)
    for line in render.plan_report(outcome, request, model_path, output, sidecar_path(output, ".json"),
                                   data_name=inputs.data.name, seconds=time.perf_counter() - started):
        render.out.print(line)


def run_shard(*, model_path: str, output: str, measurement: Measurement, seed: int, shard: Shard, jobs: int,
              resume: bool, trust: bool, data_spec: DataSpec, split_given: bool = True) -> None:
    """Measure one shard of the candidates into the partial table OUTPUT (written after every candidate)."""
    check_output_path(output, model_path)
    started = time.perf_counter()
    inputs = load_inputs(model_path, data_spec, trust, measurement.task)
    measurement, line = workflow.with_validation_of_training(inputs, measurement, seed, split_given=split_given)
    render.info(line)
    with render.progress(f"shard {shard.describe()}", 0) as advance:
        part = workflow.measure_shard_to(output, inputs, measurement, seed=seed, shard=shard, resume=resume, jobs=jobs,
                                progress=progress_lines(inputs, advance))
    render.out.print(f"Wrote {output}: shard {shard.describe()}, {len(part.results)} of the candidates "
                     f"({time.perf_counter() - started:.0f} s); next: tinycomp plan {model_path} --merge PART.json ... "
                     "with a budget")


def load_inputs(model_path: str, data_spec: DataSpec, trust: bool, task: Task | None) -> workflow.PlanInputs:
    """The model (a Keras model, or a .tflite's bytes) and data, checked to fit each other, with the task chosen once."""
    if is_tflite(model_path):
        return workflow.PlanInputs.of(read_bytes(model_path, ".tflite model"), open_data(data_spec), model_path, task)
    model, data = load_model_and_data(model_path, data_spec, trust=trust, task=task)
    return workflow.PlanInputs.of(model, data, model_path, task)


def progress_lines(inputs: workflow.PlanInputs, advance: Any = None) -> render.PlanProgressLines:
    """Progress on stderr; a Keras plan names TensorFlow's devices (a GPU, when present, is used)."""
    from tinycomp.models import devices  # TensorFlow only when called: a .tflite plan does not

    return render.PlanProgressLines(inputs.model_path, inputs.data.name, inputs.task, advance, kind=inputs.kind,
                                    devices="" if inputs.kind == "tflite" else devices())
