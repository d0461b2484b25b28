"""`tinycomp plan`: choose a cluster count per layer (mixed bitwidth) within a budget."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import click

from tinycomp import render
from tinycomp.commands.common import (
    CONTEXT,
    SIZE,
    data_options,
    exactly_one_of,
    load_model_and_data,
    output_option,
    seed_option,
    task_option,
    trust_option,
)
from tinycomp.errors import DataError, FieldError, InputFileError, ModelError, UsageError
from tinycomp.models import DEFAULT_LEARNING_RATE
from tinycomp.plan import Budget, ByteCosts, CheckedPlan, Measurement, Plan, PlanOutcome, PlanRecord, PlanRequest
from tinycomp.plan.candidates import CONTROL, NOT_A_PART, PART_HINT, Candidate, CandidateResult, PartialTable, Shard
from tinycomp.plan.units import METRIC, score_text, unit_of


@click.command("plan", context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@click.argument("parts", nargs=-1, type=click.Path(), metavar="[PART.json ...]")
@output_option
@click.option("--max-accuracy-drop", "max_drop", type=click.FloatRange(min=0), metavar="PP",
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
@click.option("--ram-budget", type=SIZE,
              help="Also keep the TFLM arena of the planned file within SIZE (e.g. 100KiB): large decoded weights "
                   "are sliced (a decode_budget in the spec, see `compress --decode-budget`), and layers that "
                   "still do not fit stay uncompressed.")
@click.option("--clusters", default="2,4,8,16,32,64", show_default=True,
              help="Cluster counts to measure per layer (bits = log2 of the count).")
@click.option("--layer", "layers", multiple=True, help="Plan only this layer; repeatable (default: all clusterable).")
@click.option("--per-channel-conv/--per-tensor-conv", default=True, show_default=True,
              help="Cluster Conv2D kernels per output channel.")
@click.option("--epochs", type=click.IntRange(min=0), default=2, show_default=True,
              help="Fine-tuning epochs per candidate; give `cluster --epochs` at least as many.")
@click.option("--estimate", type=click.Choice(["fine-tune", "fast"]), default="fine-tune", show_default=True,
              help="fast: cluster every candidate without fine-tuning (zero-shot), then fine-tune only the ones "
                   "that can still be chosen; fine-tune: fine-tune every candidate.")
@click.option("--fine-tune-rows", type=click.IntRange(min=0), default=None,
              help="Fit rows each candidate fine-tunes on (a seeded subset; 0: all). Default: 4096 with --estimate "
                   "fast, all with fine-tune. The chosen plan's check fine-tunes on all of them.")
@click.option("--validation-rows", type=click.IntRange(min=0), default=None,
              help="Validation rows each candidate is measured on (a seeded subset; 0: all). Default: 2048 with "
                   "--estimate fast, all with fine-tune. The chosen plan's check is measured on all of them.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_LEARNING_RATE,
              show_default=True, help="Adam's learning rate for every fine-tune (as `cluster --learning-rate`).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Measure candidates in N worker processes, each with its share of the cores' TensorFlow threads "
                   "(the same table as one process).")
@click.option("--shard", "shard_text", metavar="I/N",
              help="Measure only shard I of N of the candidates and write that partial table to OUTPUT (a .json); "
                   "no budget needed. Then --merge every shard's part.")
@click.option("--merge", is_flag=True,
              help="Merge the partial tables PART.json ... that `--shard` wrote (same model, data and options; every "
                   "candidate once), then choose as without it.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run: measure only the candidates OUTPUT.partial.json (written after "
                   "every candidate) lacks.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--validation-split", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Last fraction of the training rows held out to measure accuracy.")
@click.option("--credit-fine-tuning/--no-credit-fine-tuning", default=True, show_default=True,
              help="Count the accuracy fine-tuning alone gains against the layers' drops.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Cluster the chosen layers together, fine-tune and measure the drop (per-layer drops need not "
                   "add up); with --max-accuracy-drop, choose again if it is over budget by more than the noise.")
@click.option("--per-tensor-dense", is_flag=True,
              help="Measure bytes as `quantize --per-tensor-dense` will quantize (give it there too).")
@click.option("--io", "io_type", type=click.Choice(["uint8", "int8", "float32"]), default="uint8", show_default=True,
              help="Measure bytes as `quantize --io` will make the input/output (give it there too).")
@click.option("--strip", "strip_", is_flag=True,
              help="Measure bytes as `compress --strip` will write them (give it there too).")
@click.option("--sensitivity", "sensitivity_path", type=click.Path(), metavar="PLAN_JSON",
              help="Reuse the sensitivity table an earlier plan wrote (its OUTPUT .json) instead of measuring "
                   "again: a new budget in seconds. Same model, data, --per-tensor-dense and --strip.")
@task_option
@trust_option
@seed_option
@data_options
@click.pass_context
def command(ctx: click.Context, model: str, parts: tuple[str, ...], output: str, max_drop: float | None,
            max_snr_drop: float | None, target_bytes: int | None, target_ratio: float | None, ram_budget: int | None, clusters: str,
            layers: tuple[str, ...], per_channel_conv: bool, epochs: int, estimate: str, fine_tune_rows: int | None,
            validation_rows: int | None, learning_rate: float, jobs: int, shard_text: str | None, merge: bool, resume: bool, batch_size: int,
            validation_split: float, credit_fine_tuning: bool, check: bool, per_tensor_dense: bool, io_type: str,
            strip_: bool, sensitivity_path: str | None, task: str | None, trust: bool, seed: int, load_data: Callable) -> None:
    """Choose a cluster count per layer (mixed bitwidth) and write a clustering spec.

    Clusters one layer at a time over the cluster counts, fine-tunes briefly and measures the
    accuracy drop on held-out training rows (for a regression or reconstruction model, e.g. an
    autoencoder: the drop of the output SNR vs the targets in dB, budgeted with --max-snr-drop); measures each layer's compressed bytes exactly with
    tflite-micro; then picks the counts with the fewest bytes within the accuracy budget (or the
    smallest drop within --target-bytes or --target-ratio). Writes the spec for `cluster`
    (OUTPUT) and the sensitivity table with the predictions (OUTPUT with .json).

    Per-layer drops need not add up, so the choice is checked before it is written: its
    layers are clustered together, fine-tuned and measured, and a choice over the accuracy
    budget is made again (--no-check skips this). LUT decoding costs RAM: the planned file's
    TFLM arena is measured and printed; --ram-budget slices large weights so that they decode
    one slice at a time (docs/slicing.md) and leaves uncompressed the layers that still would
    not fit.

    The byte predictions match the real chain when --per-tensor-dense, --io and --strip are given
    to plan as to quantize and compress (`make bench` runs this chain). --sensitivity re-chooses
    from an earlier plan's table under another budget without measuring again.

    --estimate fast measures every candidate zero-shot and fine-tunes only those it cannot settle,
    on subsets of the rows (--fine-tune-rows, --validation-rows); the check uses every row. --jobs N
    measures in N processes; --shard I/N measures a part of the candidates (e.g. one CI job each) and
    --merge chooses from all parts. The table is written after every candidate to
    OUTPUT.partial.json, and --resume measures only what it lacks. TensorFlow uses a GPU when one is
    present; the devices are printed.

    \b
    Example:
      tinycomp plan build/model.h5 --max-accuracy-drop 0.5 --per-tensor-dense --strip -o build/plan.yaml
      tinycomp cluster build/model.h5 --spec build/plan.yaml --epochs 2 -o build/planned.h5
      tinycomp quantize build/planned.h5 --per-tensor-dense -o build/planned_int8.tflite
      tinycomp find-tensors build/planned_int8.tflite --clustering build/planned.yaml -o build/planned_spec.yaml
      tinycomp compress build/planned_int8.tflite --spec build/planned_spec.yaml --strip -o build/planned.tflite
      tinycomp plan build/model.h5 --target-ratio 12 --sensitivity build/plan.json --per-tensor-dense --strip -o build/plan_12x.yaml
      tinycomp plan build/model.h5 --max-accuracy-drop 0.5 --ram-budget 64KiB --sensitivity build/plan.json --per-tensor-dense --strip -o build/plan_64k_ram.yaml
      tinycomp plan build/model.h5 --estimate fast --jobs 2 --max-accuracy-drop 0.5 --per-tensor-dense --strip -o build/plan.yaml
      tinycomp plan build/model.h5 --estimate fast --shard 1/2 -o build/part1.json   (and 2/2, e.g. on another machine)
      tinycomp plan build/model.h5 --merge build/part1.json build/part2.json --max-accuracy-drop 0.5 --per-tensor-dense --strip -o build/plan.yaml
      tinycomp plan build/model.h5 --max-accuracy-drop 0.5 --resume -o build/plan.yaml   (after an interruption)
    """
    check_modes(parts=parts, merge=merge, shard_text=shard_text, sensitivity_path=sensitivity_path, resume=resume)
    if not shard_text:
        exactly_one_of({"--max-accuracy-drop": max_drop, "--max-snr-drop": max_snr_drop, "--target-bytes": target_bytes,
                        "--target-ratio": target_ratio}, what="give", where="plan",
                       hint="e.g. --max-accuracy-drop 0.5 (a classifier), --max-snr-drop 1 (a regression model), "
                            "--target-bytes 38KiB or --target-ratio 12")
    given = [p.opts[0] for p in ctx.command.params if p.name in MEASUREMENT_OPTIONS
             and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    for flag, used in (("--sensitivity", sensitivity_path), ("--merge", merge)):
        if used and given:
            raise UsageError(f"{given[0]} has no effect with {flag}: the table was measured already", flag,
                             f"drop the option, or measure a new table without {flag}")
    with options_named():
        measurement = Measurement(cluster_counts=parse_counts(clusters), layers=layers,
                                  per_channel_conv=per_channel_conv, epochs=epochs, estimate=estimate,
                                  batch_size=batch_size, validation_split=validation_split,
                                  fine_tune_rows=fine_tune_rows, validation_rows=validation_rows,
                                  learning_rate=learning_rate, task=task)
        how = How(jobs=capped_jobs(jobs), shard=Shard.parse(shard_text) if shard_text else None,
                  parts=parts if merge else (), resume=resume, trust=trust)
        if how.shard:
            run_shard(model_path=model, output=output, measurement=measurement, seed=seed, how=how,
                      load_data=load_data)
            return
        request = PlanRequest(
            budget=Budget(max_drop_pp=max_drop if max_snr_drop is None else max_snr_drop, target_bytes=target_bytes,
                          target_ratio=target_ratio, ram_bytes=ram_budget, credit_fine_tuning=credit_fine_tuning,
                          task="classify" if max_snr_drop is None else "regress"),
            measurement=measurement,
            costs=ByteCosts(per_tensor_dense=per_tensor_dense, io=io_type, strip=strip_), check=check, seed=seed)
        run(model_path=model, output=output, request=request, sensitivity_path=sensitivity_path, how=how,
            load_data=load_data)


MEASUREMENT_OPTIONS = ("clusters", "layers", "per_channel_conv", "epochs", "estimate", "batch_size", "validation_split",
                       "seed", "fine_tune_rows", "validation_rows", "learning_rate", "task")

# The request's fields (InvalidValue.field, NothingFits.field) and the options they come from.
OPTION_OF_FIELD = {
    "max_drop_pp": "--max-accuracy-drop", "max_snr_drop": "--max-snr-drop", "target_bytes": "--target-bytes", "target_ratio": "--target-ratio",
    "ram_bytes": "--ram-budget", "budget": "plan", "cluster_counts": "--clusters", "layers": "--layer",
    "epochs": "--epochs", "estimate": "--estimate", "batch_size": "--batch-size", "validation_split": "--validation-split",
    "fine_tune_rows": "--fine-tune-rows", "validation_rows": "--validation-rows", "learning_rate": "--learning-rate", "shard": "--shard", "merge": "--merge",
    "per_tensor_dense": "--per-tensor-dense", "strip": "--strip", "io": "--io",
}


@contextlib.contextmanager
def options_named() -> Iterator[None]:
    """Re-raise the library's field errors with the option the field came from as their `where`."""
    try:
        yield
    except FieldError as error:
        option = OPTION_OF_FIELD.get(error.field or "", "plan")
        raise error.located(f"{option}, {error.where}" if error.where else option) from None


def parse_counts(text: str) -> tuple[int, ...]:
    """'2,4,8' → (2, 4, 8); UsageError when unreadable (the range is checked by Measurement)."""
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise UsageError(f"cannot read --clusters {text!r}", "--clusters", "write e.g. 2,4,8,16") from None


@dataclass(frozen=True)
class How:
    """How the candidates are measured: processes, one shard of them, merged parts, or resumed."""

    jobs: int = 1
    shard: Shard | None = None
    parts: tuple[str, ...] = ()
    resume: bool = False
    trust: bool = False  # --trust-model: load a model whose loading runs code


def check_modes(*, parts: tuple[str, ...], merge: bool, shard_text: str | None, sensitivity_path: str | None,
                resume: bool) -> None:
    """UsageError for PART files without --merge, and for modes that exclude each other."""
    if parts and not merge:
        raise UsageError(f"unexpected argument {parts[0]!r}", "plan", "partial tables are given with --merge")
    if merge and not parts:
        raise UsageError("--merge needs the partial tables", "--merge", "e.g. --merge build/plan-part-*.json")
    modes = [name for name, used in (("--shard", shard_text), ("--merge", merge), ("--sensitivity", sensitivity_path))
             if used]
    if len(modes) > 1:
        raise UsageError(f"{modes[0]} and {modes[1]} exclude each other", modes[1],
                         "measure a shard, merge shards, or re-choose from a table, one at a time")
    if resume and (merge or sensitivity_path):
        raise UsageError("--resume continues a measurement; nothing is measured here", "--resume", "drop --resume")


def capped_jobs(jobs: int) -> int:
    """--jobs, at most the number of cores (more processes only compete for them)."""
    import os

    cores = os.cpu_count() or 1
    if jobs > cores:
        render.warn(f"--jobs {jobs} is more than the {cores} cores; using {cores}")
    return min(jobs, cores)


def run(*, model_path: str, output: str, request: PlanRequest, sensitivity_path: str | None, how: How,
        load_data: Callable) -> None:
    """Read the model, data and any recorded table or parts; make the plan; write the spec and its record; render."""
    from tinycomp.fileio import check_output_path, sidecar_path, write_json_atomic, write_text_atomic
    from tinycomp.plan import make_plan, plan_spec
    from tinycomp.specs import dump_clustering_spec, parse_clustering_spec

    check_output_path(output, model_path, sensitivity_path, *how.parts)
    started = time.perf_counter()
    record = read_record(sensitivity_path) if sensitivity_path else None
    parts = [(path, read_part(path)) for path in how.parts]
    model, data = load_model_and_data(model_path, load_data, trust=how.trust, task=request.measurement.task)
    task = task_of(model, data, request.measurement.task)
    request = replace(request, budget=budget_of_task(request.budget, task, data))
    sha256 = file_sha256(model_path)
    if record and sensitivity_path:
        check_same_source(record, sensitivity_path=sensitivity_path, model_path=model_path, sha256=sha256, data=data,
                          task=task)
        request = replace(request, measurement=record.measurement(batch_size=request.measurement.batch_size),
                          seed=record.seed)
        render.info(f"Sensitivity of {model_path} from {sensitivity_path} (measured in {record.sensitivity.seconds:.0f} "
                    "s); choosing under the new budget")
        outcome = make_plan(model, data, request, recorded=record.sensitivity, recorded_costs=record.costs,
                            progress=RenderedProgress(model_path, task=task))
    elif parts:
        request = request_of_parts(parts, request=request, model_path=model_path, sha256=sha256, data=data, task=task)
        render.info(f"Sensitivity of {model_path} from {len(parts)} partial tables; choosing")
        outcome = make_plan(model, data, request, parts=parts, progress=RenderedProgress(model_path, task=task))
    else:
        announce_measurement(model_path, request.measurement, data.name, how.jobs, task=task)
        partial = PartialWriter(sidecar_path(output, ".partial.json"),
                                origin(sha256, data, request.measurement, request.seed, Shard(), task))
        done = partial.resumed(model_path) if how.resume else {}
        with render.progress("sensitivity", 0) as advance:
            outcome = make_plan(model, data, request, jobs=how.jobs, done=done,
                                progress=RenderedProgress(model_path, advance, partial, task))
    unit = unit_of(task)
    if outcome.over_budget:
        render.warn(f"the plan's measured drop {outcome.plan.checked_drop_pp:+.2f} {unit} is over the budget of "
                    f"{outcome.budget.max_drop_pp:g} {unit} (validation noise ±{outcome.noise_pp:.2f} {unit})")
    chosen, epochs = outcome.plan, request.measurement.epochs
    text = dump_clustering_spec(plan_spec(outcome.table, chosen), spec_header(model_path, output, request, outcome))
    parse_clustering_spec(text, str(output))  # what `cluster` will read
    write_text_atomic(output, text)
    write_json_atomic(sidecar_path(output, ".json"),
                      plan_record(model_path=model_path, sha256=sha256, data=data, request=request,
                                  outcome=outcome).to_json())
    remove_partial(sidecar_path(output, ".partial.json"))
    print_plan(outcome, credit_fine_tuning=request.budget.credit_fine_tuning)
    render.out.print(f"Wrote {output} and {sidecar_path(output, '.json')}; next: tinycomp cluster {model_path} "
                     f"--spec {output} --epochs {max(epochs, 1)} -o ...  ({time.perf_counter() - started:.0f} s)")


def run_shard(*, model_path: str, output: str, measurement: Measurement, seed: int, how: How,
              load_data: Callable) -> None:
    """Measure one shard of the candidates into the partial table OUTPUT (written after every candidate)."""
    from tinycomp.fileio import check_output_path, sidecar_path, write_json_atomic
    from tinycomp.plan.sensitivity import measure_shard

    check_output_path(output, model_path)
    started = time.perf_counter()
    model, data = load_model_and_data(model_path, load_data, trust=how.trust, task=measurement.task)
    task = task_of(model, data, measurement.task)
    shard = how.shard
    assert shard is not None
    announce_measurement(model_path, measurement, data.name, how.jobs, shard, task=task)
    partial = PartialWriter(sidecar_path(output, ".partial.json"),
                            origin(file_sha256(model_path), data, measurement, seed, shard, task))
    done = partial.resumed(model_path) if how.resume else {}
    with render.progress(f"shard {shard.describe()}", 0) as advance:
        progress = RenderedProgress(model_path, advance, partial, task)
        with options_named():
            measure_shard(model, data, measurement=measurement, seed=seed, shard=shard, jobs=how.jobs,
                          done=done, on_start=progress.started, on_result=progress.measured)
    write_json_atomic(output, partial.part.to_json())
    remove_partial(sidecar_path(output, ".partial.json"))
    render.out.print(f"Wrote {output}: shard {shard.describe()}, {len(partial.part.results)} of the candidates "
                     f"({time.perf_counter() - started:.0f} s); next: tinycomp plan {model_path} --merge PART.json ... "
                     "with a budget")


def origin(sha256: str, data, measurement: Measurement, seed: int, shard: Shard, task: str = "classify") -> PartialTable:
    """An empty partial table: what its results will be measured on."""
    return PartialTable(source_sha256=sha256, dataset=as_json(data.describe()), measurement=as_json(measurement.to_json()),
                        seed=seed, shard=shard, candidates=[], task=task)


def task_of(model, data, override: str | None = None) -> str:
    from tinycomp.plan.sensitivity import task_of as sensitivity_task_of

    return sensitivity_task_of(model, data, override)


def budget_of_task(budget: Budget, task: str, data) -> Budget:
    """The budget in the task's unit; UsageError naming the right option when the drop budget is the other task's."""
    if budget.max_drop_pp is not None and budget.task != task:
        if task == "regress":
            raise UsageError(f"--max-accuracy-drop is a top-1 accuracy budget, but {data.name} makes this a regress "
                             "task (no class labels): plan measures its drops in output SNR (dB)", "--max-accuracy-drop",
                             "give --max-snr-drop DB instead, e.g. --max-snr-drop 1")
        raise UsageError(f"--max-snr-drop is an output SNR budget, but {data.name} makes this a classify task "
                         "(integer labels): plan measures its drops in top-1 accuracy (pp)", "--max-snr-drop",
                         "give --max-accuracy-drop PP instead, e.g. --max-accuracy-drop 0.5")
    return replace(budget, task=task)


def as_json(value):
    """`value` as it reads back from a JSON file (tuples become lists), so records compare equal."""
    import json

    return json.loads(json.dumps(value))


class PartialWriter:
    """The partial table next to the output, rewritten atomically after every measured candidate."""

    def __init__(self, path, part: PartialTable):
        self.path, self.part = path, part

    def resumed(self, model_path: str) -> dict[str, CandidateResult]:
        """The results a resumed run keeps; InputFileError when the file is not one of this run's."""
        from pathlib import Path

        if not Path(self.path).exists():
            render.info(f"--resume: no {self.path} yet, measuring every candidate")
            return {}
        found = read_part(str(self.path))
        differs = found.same_origin(self.part)
        if differs or found.shard != self.part.shard:
            raise InputFileError(f"the partial table was measured with other {differs or 'shard'} than this run",
                                 str(self.path), f"delete it, or run plan on {model_path} with the options it was "
                                 "measured with")
        self.part = replace(self.part, candidates=found.candidates, results=list(found.results))
        render.info(f"--resume: {len(found.results)} candidate(s) measured before, in {self.path}")
        return {r.key: r for r in found.results}

    def started(self, candidates: list[Candidate]) -> None:
        keys = [c.key for c in candidates]
        if self.part.candidates and self.part.candidates != keys:
            raise InputFileError("the partial table lists other candidates than this run", str(self.path),
                                 "delete it and measure again")
        self.part = replace(self.part, candidates=keys)

    def add(self, result: CandidateResult) -> None:
        from tinycomp.fileio import write_json_atomic

        kept = [r for r in self.part.results if r.key != result.key]
        self.part = replace(self.part, results=kept + [result])
        write_json_atomic(self.path, self.part.to_json())


def remove_partial(path) -> None:
    from pathlib import Path

    Path(path).unlink(missing_ok=True)


def read_part(path: str) -> PartialTable:
    """A partial table `plan --shard` (or an interrupted plan) wrote; InputFileError if it is not one."""
    from tinycomp.fileio import check_input_file, read_json_if_present

    return PartialTable.from_json(read_json_if_present(check_input_file(path, "partial table")), str(path))


def request_of_parts(parts: list[tuple[str, PartialTable]], *, request: PlanRequest, model_path: str, sha256: str,
                     data, task: str = "classify") -> PlanRequest:
    """The request with the parts' measurement options and seed; the parts must be of this model and data."""
    source, first = parts[0]
    if first.source_sha256 != sha256:
        raise ModelError(f"the partial table was measured on another model than {model_path}", source,
                         "merge the parts of this model")
    if not same_data(first.dataset, data.describe()):
        raise DataError(f"the partial table was measured on other data ({first.dataset.get('name')})", source,
                        "give the same --dataset/--data as the shards")
    if first.task != task:
        raise InputFileError(f"the partial table was measured for a {first.task} task, and this model and data make "
                             f"a {task} task", source, "merge the parts of this model and data")
    try:
        measurement = Measurement.from_json(first.measurement)
    except (KeyError, TypeError, ValueError, FieldError):
        raise InputFileError(NOT_A_PART, source, PART_HINT) from None
    return replace(request, measurement=measurement, seed=first.seed)


def same_data(recorded: dict, now: dict) -> bool:
    """The data a table was measured on is this data (keys older tables lack are not compared)."""
    now = as_json(now)
    return all(now.get(key) == value for key, value in recorded.items())


def announce_measurement(model_path: str, m: Measurement, data_name: str, jobs: int,
                         shard: Shard | None = None, *, task: str = "classify") -> None:
    how = ("zero-shot, then fine-tuning only the candidates that can be chosen, "
           if m.estimate == "fast" else "")
    rows = (f" ({m.fine_tune_rows or 'all'} fit rows, {m.validation_rows or 'all'} validation rows per candidate)")
    where = f" in {jobs} processes" if jobs > 1 else ""
    part = f", shard {shard.describe()}" if shard else ""
    if task == "regress":
        part += " (regress task: drops in output SNR vs the targets, dB)"
    render.info(f"Sensitivity of {model_path}{part}: one layer at a time, cluster counts "
                f"{', '.join(map(str, m.cluster_counts))}, {how}{m.epochs} fine-tuning epochs each, validated on the "
                f"last {m.validation_split:g} of {data_name}'s training rows{rows}{where}; "
                f"TensorFlow devices: {devices()}")


def devices() -> str:
    """TensorFlow's devices (a GPU, when present, is used without any option)."""
    import tensorflow as tf

    return ", ".join(d.name for d in tf.config.list_logical_devices()) or "none"


class RenderedProgress:
    """PlanProgress on stderr: a bar with ETA over the candidates, one line per measured candidate and per
    check; every result also goes to the partial table, when there is one."""

    def __init__(self, model_path: str, advance: Callable | None = None, partial: PartialWriter | None = None,
                 task: str = "classify"):
        self.model_path, self.advance, self.partial, self.task = model_path, advance, partial, task
        self.total, self.count = 0, 0

    def started(self, candidates: list[Candidate]) -> None:
        if self.partial:
            self.partial.started(candidates)
            self.count = len(self.partial.part.results)
        self.total = len(candidates)
        if self.advance:
            self.advance(self.count, total=self.total)

    def measured(self, result: CandidateResult) -> None:
        if self.partial:
            self.partial.add(result)
        self.count += 1
        what = describe_result(result, self.task)
        render.err.print(f"  [{self.count}/{self.total}] {what}")
        if self.advance:
            self.advance(1, status=what)

    def budget_resolved(self, budget: Budget) -> None:
        render.info(f"--target-ratio {budget.target_ratio:g}: {self.model_path} is {budget.float32_bytes:,} bytes as "
                    f"float32 .tflite, so the budget is {budget.target_bytes:,} bytes")

    def checked(self, plan: Plan, drop_pp: float, epochs: int) -> None:
        layers = ", ".join(f"{n}→{o.clusters}" for n, o in plan.clustered().items())
        unit = unit_of(self.task)
        render.info(f"Checked {layers} clustered together ({epochs} fine-tuning epochs): drop {drop_pp:+.2f} {unit}, "
                    f"predicted {plan.predicted_drop_pp:+.2f} {unit}")


def describe_result(result: CandidateResult, task: str = "classify") -> str:
    """e.g. 'dense → 4 clusters: zero-shot 97.10%, fine-tuned 98.20% (3 s)' (regress: 'zero-shot SNR 20.30 dB')."""
    what = ("control (fine-tuned, unclustered)" if result.key == CONTROL
            else "{} → {} clusters".format(*result.key.rsplit("/", 1)))
    measured = [f"{label} {score_text(task, value)}" for label, value in (("zero-shot", result.zero_shot),
                                                                    ("fine-tuned", result.fine_tuned))
                if value is not None]
    return f"{what}: {', '.join(measured)} ({result.seconds:.0f} s)"


def spec_header(model_path: str, output: str, request: PlanRequest, outcome: PlanOutcome) -> str:
    """The comment at the top of the written spec: budget, prediction, the chain and the next command."""
    costs, chosen = request.costs, outcome.plan
    chain = (f"cluster → quantize{' --per-tensor-dense' if costs.per_tensor_dense else ''}"
             f"{f' --io {costs.io}' if costs.io != 'uint8' else ''} → find-tensors → "
             f"compress{' --strip' if costs.strip else ''}")
    unit, what = outcome.table.unit, outcome.budget.drop_text()
    checked = (f" (measured with all layers clustered: {chosen.checked_drop_pp:+.2f} {unit})"
               if chosen.checked_drop_pp is not None else "")
    return (f"Clustering plan for {model_path}, written by tinycomp plan ({outcome.budget.describe()}, "
            f"seed {request.seed})\n"
            f"predicted {chosen.exact_bytes:,} bytes and a {chosen.arena_bytes:,}-byte TFLM arena after {chain}, "
            f"{what} {chosen.predicted_drop_pp:+.2f} {unit} on the validation split{checked}\n"
            f"use: tinycomp cluster {model_path} --spec {output} --epochs {max(request.measurement.epochs, 1)}")


def plan_record(*, model_path: str, sha256: str, data, request: PlanRequest, outcome: PlanOutcome) -> PlanRecord:
    """The sidecar: what the plan was made from, the table and the choice."""
    m, costs, budget = request.measurement, request.costs, outcome.budget
    return PlanRecord(
        source=str(model_path), source_sha256=sha256, dataset=data.describe(), seed=request.seed,
        clusters=list(m.cluster_counts), per_channel_conv=m.per_channel_conv, epochs=m.epochs,
        validation_split=m.validation_split, credit_fine_tuning=budget.credit_fine_tuning,
        per_tensor_dense=costs.per_tensor_dense, io=costs.io, strip=costs.strip,
        max_accuracy_drop=budget.max_drop_pp if budget.task == "classify" else None,
        max_snr_drop=budget.max_drop_pp if budget.task == "regress" else None, target_bytes=budget.target_bytes, target_ratio=budget.target_ratio,
        ram_budget=budget.ram_bytes, float32_bytes=budget.float32_bytes, sensitivity=outcome.table,
        plan=outcome.plan, checked=[CheckedPlan.of(p) for p in outcome.tried], estimate=m.estimate,
        fine_tune_rows=m.fine_tune_rows or 0, validation_rows=m.validation_rows or 0,
        learning_rate=m.learning_rate, task=outcome.table.task)


def read_record(path: str) -> PlanRecord:
    """The PlanRecord an earlier `plan` wrote (its OUTPUT.json)."""
    from tinycomp.fileio import check_input_file, read_json_if_present

    return PlanRecord.from_json(read_json_if_present(check_input_file(path, "sensitivity table")), str(path))


def check_same_source(record: PlanRecord, *, sensitivity_path: str, model_path: str, sha256: str, data,
                      task: str = "classify") -> None:
    if record.source_sha256 != sha256:
        raise ModelError(f"the sensitivity table was measured on another model than {model_path}",
                         str(sensitivity_path), "measure again: run plan without --sensitivity")
    if not same_data(record.dataset, data.describe()):
        raise DataError(f"the sensitivity table was measured on other data ({record.dataset.get('name')})",
                        str(sensitivity_path), "give the same --dataset/--data as when it was measured")
    if record.task != task:
        raise InputFileError(f"the sensitivity table was measured for a {record.task} task (drops in "
                             f"{unit_of(record.task)}), and this model and data make a {task} task",
                             str(sensitivity_path), "measure again: run plan without --sensitivity")


def file_sha256(path: str) -> str:
    import hashlib

    from tinycomp.fileio import read_bytes

    return hashlib.sha256(read_bytes(path, "model")).hexdigest()


def print_plan(outcome: PlanOutcome, *, credit_fine_tuning: bool) -> None:
    table, chosen = outcome.table, outcome.plan
    task, unit = table.task, table.unit
    render.out.print(sensitivity_table(outcome))
    render.out.print(
        f"Validation: {table.validation_samples:,} held-out training rows (one run's {METRIC[task]} is "
        f"±{outcome.noise_pp:.1f} {unit}). Given model {score_text(task, table.reference_accuracy)}, fine-tuned "
        f"unclustered {score_text(task, table.control_accuracy)} ({table.fine_tune_gain_pp:+.2f} {unit}"
        f"{', credited' if credit_fine_tuning and table.fine_tune_gain_pp > 0 else ''}).")
    render.out.print(
        f"Plan: {', '.join(f'{n}→{o.clusters} ({o.bits} bit)' for n, o in chosen.clustered().items())}; predicted "
        f"{chosen.exact_bytes:,} bytes ({table.int8_bytes:,} int8 uncompressed; additive estimate "
        f"{chosen.predicted_bytes:,}), weights' ideal bound {chosen.ideal_bytes:,} + {table.fixed_bytes:,} other bytes; "
        f"{'SNR' if task == 'regress' else 'accuracy'} drop {chosen.predicted_drop_pp:+.2f} {unit} (Σ layers {chosen.sum_drop_pp:.2f} − fine-tuning "
        f"{chosen.credit_pp:.2f})"
        + (f", measured with all its layers clustered at once {chosen.checked_drop_pp:+.2f} {unit}"
           if chosen.checked_drop_pp is not None else "") + ".")
    kept = (f"; left uncompressed to meet --ram-budget: {', '.join(chosen.uncompressed_for_ram)}"
            if chosen.uncompressed_for_ram else "")
    sliced = (f"; kernels decoding to over {chosen.decode_budget:,} bytes are sliced along their output channels "
              "(decode_budget in the spec; `compress` applies it)" if chosen.decode_budget is not None else "")
    render.out.print(f"RAM: a {chosen.arena_bytes:,}-byte TFLM arena, measured on the planned file (decoded LUT "
                     f"weights live there while their layer runs){kept}{sliced}.")


def sensitivity_table(outcome: PlanOutcome):
    from rich.table import Table

    chosen, task, unit = outcome.plan, outcome.table.task, outcome.table.unit
    t = Table(title="Per-layer sensitivity (one layer clustered at a time; Δ vs the fine-tuned unclustered model)")
    for column in ("layer", "clusters", "bits", "val SNR" if task == "regress" else "val accuracy",
                   f"measured Δ {unit}", f"counted Δ {unit}", "bytes", "ideal bytes", "plan"):
        t.add_column(column, justify="left" if column in ("layer", "plan") else "right")
    for layer in outcome.table.layers:
        for o in sorted(layer.options, key=lambda o: o.clusters or 10 ** 9):
            mark = "◀" if chosen.choices.get(layer.name) is o else ""
            t.add_row(f"{layer.name} ({layer.kind}{', per channel' if layer.per_channel else ''})"
                      if o is layer.options[0] else "", str(o.clusters) if o.clusters else "none", str(o.bits),
                      (f"{o.accuracy:.2f} dB" if task == "regress" else f"{100 * o.accuracy:.2f}%")
                      if o.accuracy is not None else "–",
                      f"{o.measured_pp:+.2f}" if o.measured_pp is not None else "–",
                      f"{o.drop_pp:.2f}", f"{o.bytes:,}", f"{o.ideal_bytes:,}", mark)
    return t
