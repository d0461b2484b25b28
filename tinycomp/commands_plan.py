"""The file edge of `plan` and `bench-summary` (as commands.py is for the pipeline steps).

Read the model, data and any earlier sensitivity table, call the library (`plan`, `breakdown`),
write the spec and its sidecar atomically, and render the tables.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from tinycomp import render
from tinycomp.commands.common import load_model_and_data as _load_model_and_data
from tinycomp.errors import DataError, InputFileError, ModelError, UsageError
from tinycomp.fileio import (check_input_file, check_output_path, read_bytes, read_json_if_present, read_text,
                             sidecar_path, write_json_atomic, write_text_atomic)


# ---------------------------------------------------------------- plan

def plan(model_path, output, max_drop, target_bytes, clusters, layers, per_channel_conv, epochs, batch_size,
         validation_split, credit_fine_tuning, seed, load_data, per_tensor_dense=False, strip=False,
         sensitivity_path=None, measurement_options=(), target_ratio=None, ram_budget=None, check=True,
         io="uint8"):
    from tinycomp.evaluate import parse_size
    from tinycomp.plan import check_counts, int8_for_costs, plan_spec
    from tinycomp.specs import dump_clustering_spec, parse_clustering_spec

    if [max_drop, target_bytes, target_ratio].count(None) != 2:
        raise UsageError("give exactly one of --max-accuracy-drop, --target-bytes and --target-ratio", "plan",
                         "e.g. --max-accuracy-drop 0.5, --target-bytes 38KiB or --target-ratio 12")
    if sensitivity_path and measurement_options:
        raise UsageError(f"{measurement_options[0]} has no effect with --sensitivity: the table was measured already",
                         "--sensitivity", "drop the option, or measure a new table without --sensitivity")
    budget = PlanBudget(max_drop, parse_size(target_bytes, "--target-bytes"), target_ratio,
                        parse_size(ram_budget, "--ram-budget"), credit_fine_tuning)
    try:
        counts = check_counts(int(c) for c in str(clusters).split(",") if c.strip())
    except ValueError:
        raise UsageError(f"cannot read --clusters {clusters!r}", "--clusters", "write e.g. 2,4,8,16") from None
    check_output_path(output, model_path, sensitivity_path)
    started = time.perf_counter()
    recorded = _recorded_sensitivity(sensitivity_path, per_tensor_dense, strip, io) if sensitivity_path else None
    model, data = _load_model_and_data(model_path, load_data)
    if recorded:
        table, settings = recorded
        _check_same_source(settings, sensitivity_path, model_path, data)
        counts, per_channel_conv, epochs, validation_split, seed = (
            tuple(settings["clusters"]), settings["per_channel_conv"], table.epochs, settings["validation_split"],
            table.seed)
        render.info(f"Sensitivity of {model_path} from {sensitivity_path} (measured in {table.seconds:.0f} s); "
                    "choosing under the new budget")
        int8, infos = int8_for_costs(model, data, [layer.name for layer in table.layers], seed,
                                     per_tensor_dense=per_tensor_dense, io=io)
    else:
        table, int8, infos = _measure_sensitivity(model, data, model_path, layers, counts, per_channel_conv, epochs,
                                                  batch_size, validation_split, seed, per_tensor_dense, strip, io)
    if target_ratio is not None:
        budget.float32_bytes, budget.target_bytes = _ratio_target(model, model_path, target_ratio)
    chosen, tried = _choose_plan(table, int8, infos, strip, budget,
                                 (model, data, batch_size, validation_split) if check else None)
    chain = (f"cluster → quantize{' --per-tensor-dense' if per_tensor_dense else ''}"
             f"{f' --io {io}' if io != 'uint8' else ''} → find-tensors → "
             f"compress{' --strip' if strip else ''}")
    header = (f"Clustering plan for {model_path}, written by tinycomp plan ({budget.describe()}, seed {seed})\n"
              f"predicted {chosen.exact_bytes:,} bytes and a {chosen.arena_bytes:,}-byte TFLM arena after {chain}, "
              f"accuracy drop {chosen.predicted_drop_pp:+.2f} pp on the validation split"
              + (f" (measured with all layers clustered: {chosen.checked_drop_pp:+.2f} pp)"
                 if chosen.checked_drop_pp is not None else "") + "\n"
              f"use: tinycomp cluster {model_path} --spec {output} --epochs {max(epochs, 1)}")
    text = dump_clustering_spec(plan_spec(table, chosen), header)
    parse_clustering_spec(text, str(output))  # what `cluster` will read
    write_text_atomic(output, text)
    write_json_atomic(sidecar_path(output, ".json"), {
        "step": "plan", "source": str(model_path), "source_sha256": _sha256(model_path), "dataset": data.describe(),
        "seed": seed,
        "clusters": list(counts), "per_channel_conv": per_channel_conv, "epochs": epochs,
        "validation_split": validation_split, "credit_fine_tuning": credit_fine_tuning,
        "per_tensor_dense": per_tensor_dense, "io": io, "strip": strip,
        "max_accuracy_drop": max_drop, "target_bytes": budget.target_bytes, "target_ratio": target_ratio,
        "ram_budget": budget.ram_bytes, "float32_bytes": budget.float32_bytes,
        "sensitivity": table.to_json(), "plan": chosen.to_json(),
        "checked": [{"clusters": {n: o.clusters for n, o in p.clustered().items()},
                     "predicted_drop_pp": p.predicted_drop_pp, "checked_drop_pp": p.checked_drop_pp} for p in tried]})
    _print_plan(table, chosen, credit_fine_tuning)
    render.out.print(f"Wrote {output} and {sidecar_path(output, '.json')}; next: tinycomp cluster {model_path} "
                     f"--spec {output} --epochs {max(epochs, 1)} -o ...  ({time.perf_counter() - started:.0f} s)")


@dataclass
class PlanBudget:
    """What `plan` was asked to meet: one objective's budget, and optionally the arena."""

    max_drop_pp: float | None
    target_bytes: int | None
    target_ratio: float | None
    ram_bytes: int | None
    credit_fine_tuning: bool
    float32_bytes: int | None = None  # with target_ratio: the model as float32 .tflite

    def describe(self) -> str:
        text = (f"accuracy drop ≤ {self.max_drop_pp:g} pp" if self.max_drop_pp is not None
                else f"≤ {self.target_bytes:,} bytes")
        if self.target_ratio is not None:
            text += f", {self.target_ratio:g}× smaller than float32's {self.float32_bytes:,}"
        if self.ram_bytes is not None:
            text += f", arena ≤ {self.ram_bytes:,} bytes"
        return text


def _choose_plan(table, int8, infos, strip: bool, budget: PlanBudget, check=None):
    """(the plan within `budget`, with its exact bytes and arena measured on a synthetic file, the
    plans checked); `check` (model, data, batch size, validation split) measures a plan's drop with
    all its layers clustered at once and chooses again if that exceeds the accuracy budget."""
    from tinycomp.plan import (NothingFits, arena_measurer, checked_plan, choose_plan, choose_plan_within_ram,
                               plan_bytes_exact, validation_noise_pp)

    arenas_of = arena_measurer(int8, infos, table, strip)

    def choose(max_drop_pp):
        if budget.ram_bytes is None:
            return choose_plan(table, max_drop_pp, budget.target_bytes, budget.credit_fine_tuning)
        return choose_plan_within_ram(table, budget.ram_bytes, arenas_of, max_drop_pp, budget.target_bytes,
                                      budget.credit_fine_tuning)

    try:
        if check is None:
            chosen, tried = choose(budget.max_drop_pp), []
        else:
            chosen, tried = checked_plan(choose, lambda p: _joint_drop(table, p, *check), budget.max_drop_pp,
                                     validation_noise_pp(table))
            if budget.max_drop_pp is not None and chosen.checked_drop_pp > budget.max_drop_pp:
                render.warn(f"the plan's measured drop {chosen.checked_drop_pp:+.2f} pp is over the budget of "
                            f"{budget.max_drop_pp:g} pp (validation noise ±{validation_noise_pp(table):.2f} pp)")
    except NothingFits as error:
        if budget.target_ratio is None:
            raise
        target, ratio = budget.target_bytes, budget.target_ratio
        what = error.what.replace(f"in {target:,} bytes",
                                  f"in {target:,} bytes ({ratio:g}× smaller than float32's {budget.float32_bytes:,})")
        raise NothingFits(what, "--target-ratio",
                          "lower the ratio or add smaller cluster counts (--clusters 2,4,...)"
                          + (", or raise --ram-budget" if budget.ram_bytes is not None else "")) from None
    chosen.exact_bytes = plan_bytes_exact(int8, infos, chosen, strip)
    if chosen.arena_bytes is None:
        [chosen.arena_bytes] = arenas_of([frozenset(chosen.clustered())])
    return chosen, tried


def _joint_drop(table, plan, model, data, batch_size, validation_split) -> float:
    from tinycomp.plan import joint_drop_pp

    layers = ", ".join(f"{n}→{o.clusters}" for n, o in plan.clustered().items())
    with render.progress("checking the plan", 1) as advance:
        drop = joint_drop_pp(model, data, table, plan, batch_size, validation_split)
        advance()
    render.info(f"Checked {layers} clustered together ({table.epochs} fine-tuning epochs): drop {drop:+.2f} pp, "
                f"predicted {plan.predicted_drop_pp:+.2f} pp")
    return drop


def _print_plan(table, chosen, credit_fine_tuning: bool) -> None:
    from tinycomp.plan import validation_noise_pp

    render.out.print(_plan_table(table, chosen))
    noise = validation_noise_pp(table)
    render.out.print(
        f"Validation: {table.validation_samples:,} held-out training rows (one run's accuracy is ±{noise:.1f} pp). "
        f"Given model {100 * table.reference_accuracy:.2f}%, fine-tuned unclustered {100 * table.control_accuracy:.2f}% "
        f"({table.fine_tune_gain_pp:+.2f} pp{', credited' if credit_fine_tuning and table.fine_tune_gain_pp > 0 else ''}).")
    render.out.print(
        f"Plan: {', '.join(f'{n}→{o.clusters} ({o.bits} bit)' for n, o in chosen.clustered().items())}; predicted "
        f"{chosen.exact_bytes:,} bytes ({table.int8_bytes:,} int8 uncompressed; additive estimate "
        f"{chosen.predicted_bytes:,}), weights' ideal bound {chosen.ideal_bytes:,} + {table.fixed_bytes:,} other bytes; "
        f"accuracy drop {chosen.predicted_drop_pp:+.2f} pp (Σ layers {chosen.sum_drop_pp:.2f} − fine-tuning "
        f"{chosen.credit_pp:.2f})"
        + (f", measured with all its layers clustered at once {chosen.checked_drop_pp:+.2f} pp"
           if chosen.checked_drop_pp is not None else "") + ".")
    kept = (f"; left uncompressed to meet --ram-budget: {', '.join(chosen.uncompressed_for_ram)}"
            if chosen.uncompressed_for_ram else "")
    render.out.print(f"RAM: a {chosen.arena_bytes:,}-byte TFLM arena, measured on the planned file (decoded LUT "
                     f"weights live there while their layer runs){kept}.")


def _ratio_target(model, model_path, ratio: float) -> tuple[int, int]:
    """(bytes of MODEL as the float32 .tflite `convert` writes, the byte budget ratio× smaller)."""
    from tinycomp.convert import convert_float32

    float32_bytes = len(convert_float32(model))
    target = math.floor(float32_bytes / ratio)
    render.info(f"--target-ratio {ratio:g}: {model_path} is {float32_bytes:,} bytes as float32 .tflite, "
                f"so the budget is {target:,} bytes")
    return float32_bytes, target


def _measure_sensitivity(model, data, model_path, layers, counts, per_channel_conv, epochs, batch_size,
                         validation_split, seed, per_tensor_dense, strip, io):
    from tinycomp.plan import sensitivity

    render.info(f"Sensitivity of {model_path}: one layer at a time, cluster counts {', '.join(map(str, counts))}, "
                f"{epochs} fine-tuning epochs each, validated on the last {validation_split:g} of {data.name}'s "
                "training rows")
    with render.progress("sensitivity", 1) as advance:
        def on_step(done, total, what):
            render.err.print(f"  [{done}/{total}] {what}")
            advance(0, status=what)
        measured = sensitivity(model, data, list(layers) or None, counts, per_channel_conv, epochs, batch_size,
                               validation_split, seed, on_step=on_step, per_tensor_dense=per_tensor_dense, io=io,
                               strip=strip)
        advance()
    return measured


def _recorded_sensitivity(path, per_tensor_dense: bool, strip: bool, io: str = "uint8"):
    """(SensitivityTable, the sidecar's settings) from an earlier `plan`'s OUTPUT.json."""
    from tinycomp.plan import SensitivityTable

    payload = read_json_if_present(check_input_file(path, "sensitivity table"))
    try:
        if payload.get("step") != "plan":
            raise ValueError("not written by plan")
        table = SensitivityTable.from_json(payload["sensitivity"])
        settings = {k: payload[k] for k in ("source_sha256", "dataset", "clusters", "per_channel_conv",
                                             "validation_split", "per_tensor_dense", "strip")}
        settings["io"] = payload.get("io", "uint8")  # tables from before plan had --io
    except (AttributeError, KeyError, TypeError, ValueError):
        raise InputFileError("not a sensitivity table written by `tinycomp plan`", str(path),
                             "give the .json that `plan -o PLAN.yaml` wrote next to PLAN.yaml") from None
    for flag, wanted, recorded in (("--per-tensor-dense", per_tensor_dense, settings["per_tensor_dense"]),
                                   ("--strip", strip, settings["strip"])):
        if wanted != recorded:
            raise UsageError(f"the table's byte costs were measured {'with' if recorded else 'without'} {flag}",
                             str(path), f"{'add' if recorded else 'drop'} {flag}, or measure a new table")
    if io != settings["io"]:
        raise UsageError(f"the table's byte costs were measured with --io {settings['io']}", str(path),
                         f"give --io {settings['io']}, or measure a new table")
    return table, settings


def _check_same_source(settings: dict, path, model_path, data) -> None:
    if settings["source_sha256"] != _sha256(model_path):
        raise ModelError(f"the sensitivity table was measured on another model than {model_path}", str(path),
                         "measure again: run plan without --sensitivity")
    if settings["dataset"] != data.describe():
        raise DataError(f"the sensitivity table was measured on other data ({settings['dataset'].get('name')})",
                        str(path), "give the same --dataset/--data as when it was measured")


def _sha256(path) -> str:
    import hashlib

    return hashlib.sha256(read_bytes(path, "model")).hexdigest()


def _plan_table(table, chosen):
    from rich.table import Table

    t = Table(title="Per-layer sensitivity (one layer clustered at a time; Δ vs the fine-tuned unclustered model)")
    for column in ("layer", "clusters", "bits", "val accuracy", "measured Δ pp", "counted Δ pp", "bytes",
                   "ideal bytes", "plan"):
        t.add_column(column, justify="left" if column in ("layer", "plan") else "right")
    for layer in table.layers:
        for o in sorted(layer.options, key=lambda o: o.clusters or 10 ** 9):
            mark = "◀" if chosen.choices.get(layer.name) is o else ""
            t.add_row(f"{layer.name} ({layer.kind}{', per channel' if layer.per_channel else ''})"
                      if o is layer.options[0] else "", str(o.clusters) if o.clusters else "none", str(o.bits),
                      f"{100 * o.accuracy:.2f}%" if o.accuracy is not None else "–",
                      f"{o.measured_pp:+.2f}" if o.measured_pp is not None else "–",
                      f"{o.drop_pp:.2f}", f"{o.bytes:,}", f"{o.ideal_bytes:,}", mark)
    return t


# ---------------------------------------------------------------- bench-summary

def bench_summary(bench_json, json_path):
    import json as _json

    from tinycomp.breakdown import byte_breakdown
    from tinycomp.tflite_model import read_tflite

    try:
        bench = _json.loads(read_text(bench_json, "eval JSON"))
        models, baseline = bench["models"], bench.get("baseline")
    except (ValueError, KeyError, TypeError) as e:
        raise InputFileError(f"not a `tinycomp eval --json` file: {e}", str(bench_json),
                             "write it with tinycomp eval ... --json FILE") from None
    if json_path:
        check_output_path(json_path, bench_json)
    base = next((m for m in models if m["path"] == baseline), None)
    rows = []
    for m in models:
        if not str(m["path"]).endswith(".tflite"):
            continue
        f = read_tflite(m["path"])
        b = byte_breakdown(f.model, len(f.data))
        rows.append((m, b))
    render.out.print(_bench_table(rows, base))
    for m, b in rows:
        if any(w.compressed for w in b.weights):
            render.out.print(_breakdown_table(m["path"], b))
    if json_path:
        write_json_atomic(json_path, {"source": str(bench_json), "baseline": baseline,
                                      "models": [{**m, "breakdown": b.to_json()} for m, b in rows]})


def _bench_table(rows, base):
    from rich.table import Table

    t = Table(title="Bytes, accuracy and the ideal bound" + (f" (vs {base['path']})" if base else ""))
    for column in ("model", "bytes", "× smaller", "TFLM accuracy", "Δ pp", "arena bytes", "ideal bound",
                   "bytes / ideal", "… + biases", "non-weight bytes"):
        t.add_column(column, justify="left" if column == "model" else "right", overflow="fold")
    for m, b in rows:
        ratio = base["flash_bytes"] / m["flash_bytes"] if base else None
        delta = 100 * (m["accuracy"] - base["accuracy"]) if base else None
        t.add_row(m["path"], f"{m['flash_bytes']:,}", f"{ratio:.2f}" if ratio else "–", f"{100 * m['accuracy']:.2f}%",
                  f"{delta:+.2f}" if delta is not None else "–",
                  f"{m['arena_bytes']:,}" if m.get("arena_bytes") is not None else "–",
                  f"{b.ideal_bytes:,}", f"{b.file_bytes / b.ideal_bytes:.3f}",
                  f"{b.file_bytes / b.ideal_with_constants:.3f}", f"{b.non_weight_bytes:,}")
    return t


def _breakdown_table(path, b):
    from rich.table import Table

    t = Table(title=f"Where the {b.file_bytes:,} bytes of {path} go")
    for column in ("part", "shape", "bits", "indices / raw", "value tables", "LUT header", "bytes", "ideal"):
        t.add_column(column, justify="left" if column in ("part", "shape") else "right")
    for w in b.weights:
        t.add_row(f"{w.layer} weights", "×".join(map(str, w.shape)), str(w.bits), f"{w.index_bytes:,}",
                  f"{w.table_bytes:,}", f"{w.header_bytes:,}", f"{w.stored_bytes:,}", f"{w.ideal_bytes:,}")
    for label, value in (("biases and other constants", b.other_constants),
                         ("quantization scales + zero points", b.quantization), ("tensor names", b.names),
                         ("operators, tensor tables, metadata, alignment", b.structure)):
        t.add_row(label, "", "", "", "", "", f"{value:,}", "")
    t.add_row("total", "", "", "", "", "", f"{b.file_bytes:,}", f"{b.ideal_bytes:,}")
    return t
