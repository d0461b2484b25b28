"""`tinycomp plan MODEL.tflite`: index bits per weight tensor of an int8 .tflite, measured zero-shot in TFLM.

The edge of `plan` for a .tflite input (commands/plan.py dispatches here): which of plan's options
apply, reading the model and data, rendering, and writing the palettization spec (OUTPUT), its
record (OUTPUT with .json) or a shard's partial table. The work is `plan.tflite_plan`'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import click

from tinycomp import render
from tinycomp.commands.common import open_data
from tinycomp.data.spec import DataSpec
from tinycomp.errors import FieldError, InputFileError, UsageError
from tinycomp.fileio import (
    check_input_file,
    check_output_path,
    is_tflite_file,
    read_bytes,
    read_json_if_present,
    sidecar_path,
    write_json_atomic,
    write_text_atomic,
)
from tinycomp.metrics import CLASSIFY, REGRESS, Task
from tinycomp.plan.candidates import CONTROL, Candidate, CandidateResult, PartialTable, Shard
from tinycomp.plan.choose import Budget, check_counts
from tinycomp.plan.tflite_plan import (
    CHECK_MULTIPLE,
    DEFAULT_BITS,
    DEFAULT_VALIDATION_ROWS,
    TfliteMeasurement,
    measure_shard,
    plan_tflite,
    sha256,
    task_of,
)
from tinycomp.specs import dump_palettization_spec, parse_palettization_spec
from tinycomp.tflite.find_tensors import bits_for

# plan's options that fine-tune or quantize a Keras model: nothing of the kind happens to a .tflite
KERAS_ONLY = ("epochs", "estimate", "fine_tune_rows", "learning_rate", "per_channel_conv", "credit_fine_tuning",
              "per_tensor_dense", "io", "sensitivity_path", "resume", "batch_size", "trust")
OPTION_OF_FIELD = {"max_drop_pp": "--max-accuracy-drop", "max_snr_drop": "--max-snr-drop",
                   "target_bytes": "--target-bytes", "target_ratio": "--target-ratio", "ram_bytes": "--ram-budget",
                   "cluster_counts": "--clusters", "max_accuracy_drop": "--max-accuracy-drop", "validation_split": "--validation-split",
                   "validation_rows": "--validation-rows", "shard": "--shard", "merge": "--merge", "task": "--task"}


def is_tflite(path: str) -> bool:
    """The model argument is a .tflite: by its content, or by its name when it does not exist yet."""

    return is_tflite_file(path) or path.lower().endswith(".tflite")


@dataclass(frozen=True)
class Options:
    """The plan options that apply to a .tflite."""

    model: str
    output: str
    parts: tuple[str, ...]
    merge: bool
    shard_text: str | None
    max_drop: float | None
    max_snr_drop: float | None
    target_bytes: int | None
    target_ratio: float | None
    ram_budget: int | None
    clusters: tuple[int, ...] | None  # None: plan's .tflite default (2–6 bits)
    layers: tuple[str, ...]
    validation_split: float
    validation_rows: int | None
    jobs: int
    strip: bool
    check: bool
    task: Task | None
    seed: int


def as_json(value):
    """`value` as it reads back from a JSON file (tuples become lists), so records compare equal."""
    import json

    return json.loads(json.dumps(value))


def reject_keras_options(ctx: click.Context) -> None:
    """UsageError for an option given on the command line that only means something for a Keras model."""
    for param in ctx.command.params:
        if param.name in KERAS_ONLY and ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE:
            flag = max(param.opts, key=len)
            raise UsageError(f"{flag} has no effect on a .tflite: plan measures its candidates zero-shot in TFLM, "
                             "without fine-tuning or quantizing", flag, "drop the option")


def run(options: Options, data_spec: DataSpec) -> None:
    """Measure (or one shard, or merge parts), choose, check; write the spec and its record."""

    try:
        measurement = TfliteMeasurement(
            bits=bits_of(options.clusters) if options.clusters else DEFAULT_BITS, tensors=options.layers,
            validation_split=options.validation_split, task=options.task,
            validation_rows=DEFAULT_VALIDATION_ROWS if options.validation_rows is None else options.validation_rows)
        shard = Shard.parse(options.shard_text) if options.shard_text else None
        if shard:
            run_shard(options, measurement, shard, data_spec)
        else:
            budget = Budget(max_drop=options.max_drop if options.max_snr_drop is None else options.max_snr_drop,
                            target_bytes=options.target_bytes, target_ratio=options.target_ratio,
                            ram_bytes=options.ram_budget, credit_fine_tuning=False,
                            task=CLASSIFY if options.max_snr_drop is None else REGRESS)
            run_plan(options, budget, measurement, data_spec)
    except FieldError as error:
        option = OPTION_OF_FIELD.get(error.field or "", "plan")
        raise error.located(f"{option}, {error.where}" if error.where else option) from None


def bits_of(counts: tuple[int, ...]) -> tuple[int, ...]:
    """Cluster counts → index bitwidths (8 values per channel: 3 bits)."""

    return tuple(sorted({bits_for(c) for c in check_counts(counts)}))


def origin(int8: bytes, data: Any, measurement: Any, seed: int, shard: Shard, task: Task) -> PartialTable:

    return PartialTable(source_sha256=sha256(int8), dataset=as_json(data.describe()),
                        measurement=as_json(measurement.to_json()), seed=seed, shard=shard, candidates=[], task=task)


class Progress:
    """One line per measured candidate on stderr."""

    def __init__(self, task: Task):
        self.task, self.total, self.count = task, 0, 0

    def started(self, candidates: list[Candidate]) -> None:
        self.total = len(candidates)

    def measured(self, result: CandidateResult) -> None:
        self.count += 1
        what = ("the given file" if result.key == CONTROL else
                "{} → {} bits".format(result.key.rsplit("/", 1)[0], int(result.key.rsplit("/", 1)[1]).bit_length() - 1))
        value = self.task.score_text(result.zero_shot or 0.0)
        render.err.print(f"  [{self.count}/{self.total}] {what}: {value} (zero-shot, TFLM)")


def run_plan(options: Options, budget, measurement, data_spec: DataSpec) -> None:

    check_output_path(options.output, options.model, *options.parts)
    started = time.perf_counter()
    int8 = read_bytes(options.model, ".tflite model")
    data = open_data(data_spec)
    task = task_of(int8, data, measurement, options.model)
    parts = None
    if options.merge:
        parts = [(path, read_part(path)) for path in options.parts]
        check_parts(parts, origin(int8, data, measurement, options.seed, Shard(), task))
        render.info(f"Sensitivity of {options.model} from {len(parts)} partial tables; choosing")
    else:
        render.info(f"Sensitivity of {options.model}: one weight tensor at a time palettized to "
                    f"{', '.join(map(str, measurement.bits))} bits, zero-shot in TFLM on the last "
                    f"{measurement.validation_split:g} of {data.name}'s training rows"
                    + (f" (at most {measurement.validation_rows:,} of them per candidate, "
                       + (f"{CHECK_MULTIPLE}× as many for the check)" if CHECK_MULTIPLE > 1 else "the same for the check)")
                       if measurement.validation_rows else "")
                    + (f", in {options.jobs} processes" if options.jobs > 1 else ""))
    progress = Progress(task)

    def checked(plan, drop: float) -> None:
        chosen = ", ".join(f"{n}→{o.bits} bit" for n, o in plan.clustered().items())
        noise = f" ±{plan.checked_noise:.2f}" if plan.checked_noise is not None else ""
        render.info(f"Checked {chosen} palettized together: drop {drop:+.2f}{noise} {task.unit} on the check's "
                    f"validation rows, predicted {plan.predicted_drop:+.2f}{agreement_text(plan.checked_agreement)}")

    outcome = plan_tflite(int8, data, budget, measurement, seed=options.seed, jobs=options.jobs,
                          strip=options.strip, check=options.check, source=options.model, parts=parts,
                          on_start=progress.started, on_result=progress.measured, on_checked=checked)
    chosen, table = outcome.plan, outcome.table
    if outcome.over_budget:
        render.warn(f"the plan's measured drop {chosen.checked_drop:+.2f} {table.unit} is over the budget of "
                    f"{outcome.budget.max_drop:g} {table.unit} (validation noise ±{outcome.noise:.2f})")
    header = (f"Palettization plan for {options.model}, written by tinycomp plan ({outcome.budget.describe()}, "
              f"seed {options.seed})\n"
              f"predicted {chosen.exact_bytes:,} bytes and a {chosen.arena_bytes:,}-byte TFLM arena after palettize → "
              f"compress{' --strip' if options.strip else ''}; {outcome.budget.task.drop_text()} "
              f"{chosen.predicted_drop:+.2f} {table.unit} on the validation split"
              + (f" (measured with all tensors palettized: {chosen.checked_drop:+.2f} {table.unit})"
                 if chosen.checked_drop is not None else "")
              + f"\nuse: tinycomp palettize {options.model} --spec {options.output} -o OUT.tflite")
    text = dump_palettization_spec(outcome.spec, header)
    parse_palettization_spec(text, options.output)  # what `palettize --spec` will read
    write_text_atomic(options.output, text)
    record = {"step": "plan-tflite", "source": options.model, "source_sha256": sha256(int8),
              "dataset": data.describe(), "seed": options.seed, "measurement": measurement.to_json(),
              "strip": options.strip, "budget": outcome.budget.describe(), "noise": outcome.noise,
              "check_rows": outcome.check_rows,
              "sensitivity": table.to_json(), "plan": chosen.to_json(), "checked": [p.to_json() for p in outcome.tried]}
    write_json_atomic(sidecar_path(options.output, ".json"), as_json(record))
    render.out.print(sensitivity_table(outcome))
    render.out.print(
        f"Validation: {table.validation_samples:,} held-out training rows per candidate; the given file "
        f"{task.score_text(table.reference_accuracy)} (one score is ±{outcome.noise:.2f} {table.unit} on the "
        f"{outcome.check_rows:,} rows of the check).")
    render.out.print(
        f"Plan: {', '.join(f'{n}→{o.bits} bit' for n, o in chosen.clustered().items())}; {chosen.exact_bytes:,} bytes "
        f"after compress ({table.int8_bytes:,} given), {outcome.budget.task.drop_text()} predicted "
        f"{chosen.predicted_drop:+.2f} {table.unit}"
        + (f", measured {chosen.checked_drop:+.2f} {table.unit}" if chosen.checked_drop is not None else "")
        + f"; a {chosen.arena_bytes:,}-byte TFLM arena"
        + (f" (left unpalettized for --ram-budget: {', '.join(chosen.uncompressed_for_ram)})"
           if chosen.uncompressed_for_ram else "")
        + (f", with kernels decoding to over {chosen.decode_budget:,} bytes sliced along their output channels "
           "(decode_budget in the spec; palettize passes it to compress)" if chosen.decode_budget is not None else "")
        + ".")
    render.out.print(f"Wrote {options.output} and {sidecar_path(options.output, '.json')}; next: tinycomp palettize "
                     f"{options.model} --spec {options.output} -o OUT.tflite  ({time.perf_counter() - started:.1f} s)")


def run_shard(options: Options, measurement, shard: Shard, data_spec: DataSpec) -> None:

    check_output_path(options.output, options.model)
    started = time.perf_counter()
    int8 = read_bytes(options.model, ".tflite model")
    data = open_data(data_spec)
    task = task_of(int8, data, measurement, options.model)
    part = origin(int8, data, measurement, options.seed, shard, task)
    progress = Progress(task)
    keys: list[str] = []

    def on_start(candidates: list[Candidate]) -> None:
        keys.extend(c.key for c in candidates)
        progress.started(candidates)

    results = measure_shard(int8, data, measurement, shard, seed=options.seed, jobs=options.jobs, strip=options.strip,
                            source=options.model, on_start=on_start, on_result=progress.measured)
    from dataclasses import replace

    part = replace(part, candidates=keys, results=[results[k] for k in keys])
    write_json_atomic(options.output, part.to_json())
    render.out.print(f"Wrote {options.output}: shard {shard.describe()}, {len(keys)} of the candidates "
                     f"({time.perf_counter() - started:.1f} s); next: tinycomp plan {options.model} --merge PART.json "
                     "... with a budget")


def read_part(path: str) -> PartialTable:

    return PartialTable.from_json(read_json_if_present(check_input_file(path, "partial table")), str(path))


def agreement_text(agreement: dict[str, float] | None) -> str:
    """"; agreement with the given file: top-1 97.2%, output SNR 31.4 dB" (empty when not measured).

    Accuracy within budget can hide many changed predictions (one wrong made right for each right made
    wrong); agreement shows how far the planned file moved from the given one."""
    if not agreement:
        return ""
    parts = ([f"top-1 {agreement['agreement_top1']:.1%}"] if "agreement_top1" in agreement else []) + \
            ([f"output SNR {agreement['agreement_snr_db']:.1f} dB"] if "agreement_snr_db" in agreement else [])
    return "; agreement with the given file: " + ", ".join(parts)


def check_parts(parts: list[tuple[str, PartialTable]], expected: PartialTable) -> None:
    """InputFileError for a part measured on another model, data, measurement options, seed or task."""

    for source, part in parts:
        differs = expected.same_origin(part)
        if differs:
            raise InputFileError(f"the partial table was measured with other {differs} than this run", source,
                                 "merge the parts `plan MODEL.tflite --shard` wrote with the same model, data and "
                                 "options")


def sensitivity_table(outcome):
    from rich.table import Table

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
