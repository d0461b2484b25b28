"""`tinycomp palettize`: cluster an int8 .tflite's weights to few values per channel, no training."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from tinycomp import render
from tinycomp.commands.common import CONTEXT, exactly_one_of, optional_data_options, output_option, verbatim
from tinycomp.data.spec import DataSpec
from tinycomp.errors import ModelError, UsageError
from tinycomp.fileio import (
    check_output_path,
    read_bytes,
    read_text,
    sidecar_path,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from tinycomp.specs import (
    PALETTIZATION_EXAMPLE,
    CalibrationExclusion,
    CompressionSpec,
    dump_compression_spec,
    parse_palettization_spec,
)
from tinycomp.tflite.calibrated import DEFAULT_CALIBRATION_ROWS
from tinycomp.tflite.file_growth import keep_shrinking
from tinycomp.tflite.find_tensors import TensorChoice
from tinycomp.tflite.palettize import compression_choices, palettize_model, restore_weights, spec_bits

if TYPE_CHECKING:
    import numpy as np

    from tinycomp.data.dataset import Dataset
    from tinycomp.tflite.palettize import PalettizeResult

DATASET_HELP = ("A built-in dataset whose training rows calibrate the palettization (see --data)  "
                "[default: no data: the levels depend on the weights alone]")


@click.command("palettize", context_settings=CONTEXT,
               epilog=verbatim("--spec format (what `tinycomp plan MODEL.tflite` writes):", PALETTIZATION_EXAMPLE))
@click.argument("model", type=click.Path())
@output_option
@click.option("--bits", type=click.IntRange(1, 7), default=None,
              help="At most 2^BITS weight values per quantization channel (1–7), for every chosen tensor.")
@click.option("--spec", "spec_path", type=click.Path(), default=None,
              help="Instead of --bits: the bits of each tensor (the spec `tinycomp plan MODEL.tflite` writes).")
@click.option("--tensor", "tensors", multiple=True, metavar="NAME",
              help="With --bits: only this weight (tensor index, tensor name or layer name); repeatable "
                   "[default: every FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D weight].")
@click.option("--strip", is_flag=True,
              help="With --bits: choose the tensors for `compress --strip`, whose file has no names: a tensor is "
                   "left out only when compressing it would not make the stripped file smaller.")
@click.option("--calibration-rows", type=click.IntRange(min=1), default=DEFAULT_CALIBRATION_ROWS, show_default=True,
              help="With --data/--dataset: how many training rows (chosen at random with --seed; with --spec, not "
                   "the plan's validation rows its `calibration:` names) calibrate.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --data/--dataset: which rows calibrate.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --data/--dataset: TFLM worker processes.")
@click.option("--smallest-exact", is_flag=True,
              help="In the written spec, huffman or pruning instead of lut for a tensor when TFLM's HUFFMAN or PRUNE "
                   "decoder takes fewer bytes for it (exact either way; docs/lossless.md).")
@optional_data_options(DATASET_HELP)
def command(model: str, output: str, bits: int | None, spec_path: str | None, tensors: tuple[str, ...], strip: bool,
            calibration_rows: int, seed: int, jobs: int, smallest_exact: bool, data_spec: DataSpec | None) -> None:
    """Palettize an int8 .tflite: at most 2^BITS weight values per channel, without training.

    Every chosen weight tensor gets the optimal ≤2^BITS int8 levels of each value table (per
    channel where it is quantized per channel, else per tensor): exact 1-D k-means over the
    table's values, so its values stay int8 on the tensor's own scales. Without data nothing
    else changes. Works on any int8 .tflite: from `quantize`, another framework's converter, or a
    model zoo.

    With --data or --dataset, --calibration-rows training rows run through the model in TFLM
    first, and each layer's input statistics choose its levels for the layer's output error
    (each weight's error weighed by the variance of the input it multiplies; FC and conv weights
    then rounded to them with error feedback, GPTQ-style) and correct its bias (each output
    channel's mean shift goes back into its int32 bias). The rows used are recorded in OUTPUT
    with .json. docs/palettize.md has the measurements.

    Also writes OUTPUT without .tflite plus .yaml: the compression spec of the palettized tensors,
    for `tinycomp compress` as it is. With --bits, tensors whose LUT compression would not make the
    file smaller (measured: each tensor compressed alone, with its DECODE operator and tensors; with
    --strip, in the file `compress --strip` writes) are left out, named, and keep their int8 values;
    with --spec, the plan's choice stands.

    \b
    Examples:
      tinycomp palettize build/model_int8.tflite --bits 3 -o build/palettized.tflite
      tinycomp palettize build/model_int8.tflite --bits 3 --data my.npz -o build/palettized.tflite
      tinycomp compress build/palettized.tflite --spec build/palettized.yaml -o build/compressed.tflite
      tinycomp palettize model_int8.tflite --bits 4 --strip -o p.tflite && tinycomp compress p.tflite --spec p.yaml --strip -o c.tflite
      tinycomp palettize pruned_int8.tflite --bits 4 --smallest-exact -o p.tflite
      tinycomp plan build/model_int8.tflite --max-accuracy-drop 0.5 -o build/plan.yaml --dataset mnist
      tinycomp palettize build/model_int8.tflite --spec build/plan.yaml --dataset mnist -o build/planned.tflite
    """
    exactly_one_of({"--bits": bits, "--spec": spec_path}, what="give", where="palettize",
                   hint="e.g. --bits 3, or --spec PLAN.yaml from `tinycomp plan MODEL.tflite`")
    if tensors and spec_path:

        raise UsageError("--tensor goes with --bits; the spec names its tensors itself", "--tensor",
                         "drop --tensor, or list the tensors in the spec")
    if strip and spec_path:
        raise UsageError("--strip goes with --bits; with --spec the plan chose its tensors (`plan --strip` for "
                         "stripped bytes)", "--strip", "drop --strip")
    if data_spec is None:
        for name, flag in (("calibration_rows", "--calibration-rows"), ("seed", "--seed"), ("jobs", "--jobs")):
            if click.get_current_context().get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
                raise UsageError(f"{flag} goes with data", flag, "give --data or --dataset too, or drop it")
    run(model_path=model, output=output, bits=bits, spec_path=spec_path, tensors=tensors, data_spec=data_spec,
        calibration_rows=calibration_rows, seed=seed, jobs=jobs, strip=strip, smallest_exact=smallest_exact)


def _sizes(growing: list[tuple[TensorChoice, int | None]]) -> str:
    """conv2d (2,560 → 2,320 bytes, file +16 bytes): the tensor's encoding, and the file's growth when measured."""
    return ", ".join(f"{c.layer} ({c.bytes_before:,} → {c.bytes_after:,} bytes"
                     + (f", file {g:+,} bytes)" if g is not None else ")") for c, g in growing)


def spec_output(output: str) -> str:
    """OUT.tflite → OUT.yaml (UsageError for an output that is not a .tflite)."""

    if not output.lower().endswith(".tflite"):
        raise UsageError(f"the output {output!r} is not a .tflite file name", "-o/--output",
                         "e.g. -o build/palettized.tflite (the compression spec goes next to it as .yaml)")
    return output[: -len(".tflite")] + ".yaml"


def run(*, model_path: str, output: str, bits: int | None, spec_path: str | None, tensors: tuple[str, ...],
        data_spec: DataSpec | None = None, calibration_rows: int = DEFAULT_CALIBRATION_ROWS, seed: int = 0,
        jobs: int = 1, strip: bool = False, smallest_exact: bool = False) -> None:

    yaml_path = spec_output(output)
    record_path = sidecar_path(output, ".json")
    check_output_path(output, model_path, spec_path)
    check_output_path(yaml_path, model_path, spec_path)
    if data_spec is not None:
        check_output_path(record_path, model_path, spec_path)
    data = read_bytes(model_path, ".tflite model")
    spec = parse_palettization_spec(read_text(spec_path, "palettization spec"), spec_path) if spec_path else None
    if spec is not None and spec_path and not spec.tensors:
        write_unchanged(model_path, data, output, yaml_path, spec_path)
        return
    excluded = spec.calibration if spec is not None else None  # the plan's validation rows
    if excluded is not None and data_spec is None:
        raise UsageError("the spec's plan palettized with calibration on data (its `calibration:` key), so without "
                         "data palettize would not make the file the plan measured", f"{spec_path}: calibration",
                         "give the --data/--dataset given to plan")
    calibration, rows, dataset = None, None, None
    if data_spec is not None:
        from tinycomp.commands.common import open_data
        from tinycomp.tflite.calibrated import calibration_of, calibration_pool

        dataset = open_data(data_spec, splits=("train",))
        pool = None if excluded is None else calibration_pool(dataset, excluded, str(spec_path))
        calibration, rows = calibration_of(data, dataset, calibration_rows, seed, jobs, str(model_path), pool)
        render.info(f"Calibrating on {len(rows):,} of {dataset.name}'s {len(dataset.x_train):,} training rows "
                    f"(seed {seed}{'' if excluded is None else '; not ' + excluded.describe() + ', as the spec says'}"
                    ") in TFLM: levels weighed by each layer's input variances, weights rounded to them "
                    "with error feedback, biases corrected for the mean output shift")
    if spec is not None and spec_path:
        per_tensor, names = spec_bits(spec)
        result = palettize_model(data, per_tensor, names=names, source=spec_path, calibration=calibration)
    else:
        assert bits is not None
        result = palettize_model(data, bits, tensors=list(dict.fromkeys(tensors)) or None, source=str(model_path),
                                 calibration=calibration)
    if result.upgraded_opcodes:
        render.info(f"{model_path} keeps {result.upgraded_opcodes} operator code(s) in deprecated_builtin_code "
                    "(TensorFlow before 2.4); written with the builtin codes newer TensorFlow writes")
    for tensor, reason in result.skipped:
        render.warn(f"skipped {tensor}: {reason}")
    calibrated = result.calibration or {}
    if calibrated.get("without_data_read_by_several_operators"):
        render.warn("palettized without calibration (read by several operators, whose inputs differ): "
                    + ", ".join(calibrated["without_data_read_by_several_operators"]))
    if calibrated.get("without_error_feedback_memory_bound"):
        render.warn("no error feedback for (its input statistics would need too much memory): "
                    + ", ".join(calibrated["without_error_feedback_memory_bound"]))
    found = compression_choices(result.data, result.tensors, smallest_exact=smallest_exact)
    growing: list[tuple[TensorChoice, int | None]]
    if spec_path:  # the plan chose these tensors by the exact bytes of the file it measured (e.g. stripped)
        kept, growing = found.without_growing(), [(c, None) for c in found.growing]
    else:
        kept, growing = keep_shrinking(result.data, found, output, strip)
    if not kept.choices:
        raise ModelError(f"LUT compression would not shrink the file for any palettized tensor: {_sizes(growing)}",
                         str(model_path), "palettize larger weight tensors, or fewer bits")
    if growing:
        render.warn(f"left out of {yaml_path} {len(growing)} tensor(s) whose LUT compression would not make the "
                    f"{'stripped ' if strip else ''}file smaller, and kept their int8 values: {_sizes(growing)}")
        left_out = {(c.weight.subgraph, c.weight.index) for c, _ in growing}
        result = replace(result, data=restore_weights(result.data, data, left_out),
                         tensors=[t for t in result.tensors if t.key not in left_out])
    header = (f"Compression spec for {output}, written by tinycomp palettize "
              f"({'--spec ' + spec_path if spec_path else f'--bits {bits}' + (' --strip' if strip else '')})")
    if dataset is not None and rows is not None:
        header += (f"\ncalibrated on {len(rows):,} training rows of {dataset.name} (seed {seed}; the rows are listed "
                   f"in {record_path})" + (f", not on {excluded.describe()}" if excluded is not None else ""))
    write_bytes_atomic(output, result.data)
    if dataset is not None and rows is not None:
        write_json_atomic(record_path, palettize_record(model_path, data, output, result, bits, spec_path, dataset,
                                                        rows, seed, excluded))
    decode_budget = spec.decode_budget if spec is not None else None  # the plan's RAM budget reaches compress
    write_text_atomic(yaml_path, dump_compression_spec(replace(kept.spec(), decode_budget=decode_budget), header))
    render.out.print(render.palettize_table(result.tensors, {(c.weight.subgraph, c.weight.index): c for c in found.choices}))
    before = sum(c.bytes_before for c in kept.choices)
    after = sum(c.bytes_after for c in kept.choices)
    render.out.print(f"Wrote {output} ({len(result.data):,} bytes; {len(data):,} before)"
                     + (f", {record_path}" if dataset is not None else "") + f" and {yaml_path} "
                     f"({len(kept.choices)} tensor(s), {before:,} → {after:,} bytes predicted); next: tinycomp compress "
                     f"{output} --spec {yaml_path} -o ...")


def write_unchanged(model_path: str, data: bytes, output: str, yaml_path: str, spec_path: str) -> None:
    """A spec with no tensors (`plan` found nothing within its budget): OUTPUT is the model as given, and the
    compression spec lists no tensor, so the chain after it runs and compresses nothing."""
    header = f"Compression spec for {output}, written by tinycomp palettize --spec {spec_path}: no tensor palettized"
    write_bytes_atomic(output, data)
    write_text_atomic(yaml_path, dump_compression_spec(CompressionSpec(()), header))
    render.info(f"The spec palettizes no tensor: {model_path} is written unchanged")
    render.out.print(f"Wrote {output} ({len(data):,} bytes, unchanged) and {yaml_path} (no tensors); next: "
                     f"tinycomp compress {output} --spec {yaml_path} -o ...")


def excluded_json(excluded: CalibrationExclusion | None) -> dict[str, Any]:
    """The spec's calibration exclusion as the record keeps it (nothing without one)."""
    if excluded is None:
        return {}
    return {"excluded": {"training_rows": excluded.training_rows, "exclude_groups": list(excluded.exclude_groups),
                         "exclude_last_rows": excluded.exclude_last_rows}}


def palettize_record(model_path: str, data: bytes, output: str, result: PalettizeResult, bits: int | None,
                     spec_path: str | None, dataset: Dataset, rows: np.ndarray, seed: int,
                     excluded: CalibrationExclusion | None = None) -> dict[str, Any]:
    """What a data-aware palettize did and with which data: the sidecar OUTPUT.json."""
    import hashlib

    return {"step": "palettize", "source": str(model_path), "source_sha256": hashlib.sha256(data).hexdigest(),
            "output": str(output), "bits": bits, "spec": spec_path, "dataset": dataset.describe(),
            "calibration": {"split": "train", "seed": seed, "rows": [int(r) for r in rows], **excluded_json(excluded),
                            **(result.calibration or {})},
            "tensors": [{"subgraph": t.subgraph, "tensor": t.tensor, "name": t.name, "layer": t.layer, "bits": t.bits,
                         "rms_change_steps": t.rms_error, "weighted": t.weighted,
                         "bias_rms_change_steps": t.bias_shift} for t in result.tensors]}
