"""`tinycomp palettize`: cluster an int8 .tflite's weights to few values per channel, no training."""

from __future__ import annotations

from dataclasses import replace

import click

from tinycomp import render
from tinycomp.commands.common import CONTEXT, exactly_one_of, output_option, verbatim
from tinycomp.errors import ModelError, UsageError
from tinycomp.fileio import check_output_path, read_bytes, read_text, write_bytes_atomic, write_text_atomic
from tinycomp.specs import PALETTIZATION_EXAMPLE, dump_compression_spec, parse_palettization_spec
from tinycomp.tflite.file_growth import keep_shrinking
from tinycomp.tflite.find_tensors import TensorChoice
from tinycomp.tflite.palettize import compression_choices, palettize_model, spec_bits


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
def command(model: str, output: str, bits: int | None, spec_path: str | None, tensors: tuple[str, ...]) -> None:
    """Palettize an int8 .tflite: at most 2^BITS weight values per channel, without training.

    Every chosen weight tensor gets the optimal ≤2^BITS int8 levels of each value table (per
    channel where it is quantized per channel, else per tensor): exact 1-D k-means over the
    table's values, so its values stay int8 on the tensor's own scales and nothing else changes.
    Works on any int8 .tflite: from `quantize`, another framework's converter, or a model zoo.

    Also writes OUTPUT without .tflite plus .yaml: the compression spec of the palettized tensors,
    for `tinycomp compress` as it is. Tensors whose LUT compression would not make the file smaller
    (measured: each tensor compressed alone, with its DECODE operator and tensors) are left out and named.

    \b
    Examples:
      tinycomp palettize build/model_int8.tflite --bits 3 -o build/palettized.tflite
      tinycomp compress build/palettized.tflite --spec build/palettized.yaml -o build/compressed.tflite
      tinycomp plan build/model_int8.tflite --max-accuracy-drop 0.5 -o build/plan.yaml --dataset mnist
      tinycomp palettize build/model_int8.tflite --spec build/plan.yaml -o build/planned.tflite
    """
    exactly_one_of({"--bits": bits, "--spec": spec_path}, what="give", where="palettize",
                   hint="e.g. --bits 3, or --spec PLAN.yaml from `tinycomp plan MODEL.tflite`")
    if tensors and spec_path:

        raise UsageError("--tensor goes with --bits; the spec names its tensors itself", "--tensor",
                         "drop --tensor, or list the tensors in the spec")
    run(model_path=model, output=output, bits=bits, spec_path=spec_path, tensors=tensors)


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


def run(*, model_path: str, output: str, bits: int | None, spec_path: str | None, tensors: tuple[str, ...]) -> None:

    yaml_path = spec_output(output)
    check_output_path(output, model_path, spec_path)
    check_output_path(yaml_path, model_path, spec_path)
    data = read_bytes(model_path, ".tflite model")
    if spec_path:
        spec = parse_palettization_spec(read_text(spec_path, "palettization spec"), spec_path)
        per_tensor, names = spec_bits(spec)
        result = palettize_model(data, per_tensor, names=names, source=spec_path)
    else:
        assert bits is not None
        result = palettize_model(data, bits, tensors=list(dict.fromkeys(tensors)) or None, source=str(model_path))
    if result.upgraded_opcodes:
        render.info(f"{model_path} keeps {result.upgraded_opcodes} operator code(s) in deprecated_builtin_code "
                    "(TensorFlow before 2.4); written with the builtin codes newer TensorFlow writes")
    for tensor, reason in result.skipped:
        render.warn(f"skipped {tensor}: {reason}")
    found = compression_choices(result.data, result.tensors)
    kept, growing = keep_shrinking(result.data, found, output)
    if not kept.choices:
        raise ModelError(f"LUT compression would not shrink the file for any palettized tensor: {_sizes(growing)}",
                         str(model_path), "palettize larger weight tensors, or fewer bits")
    if growing:
        render.warn(f"left out of {yaml_path} {len(growing)} tensor(s) whose LUT compression would not make the "
                    f"file smaller: {_sizes(growing)}")
    header = (f"Compression spec for {output}, written by tinycomp palettize "
              f"({'--spec ' + spec_path if spec_path else f'--bits {bits}'})")
    write_bytes_atomic(output, result.data)
    decode_budget = spec.decode_budget if spec_path else None  # the plan's RAM budget reaches compress
    write_text_atomic(yaml_path, dump_compression_spec(replace(kept.spec(), decode_budget=decode_budget), header))
    render.out.print(render.palettize_table(result.tensors, {(c.weight.subgraph, c.weight.index): c for c in found.choices}))
    before = sum(c.bytes_before for c in kept.choices)
    after = sum(c.bytes_after for c in kept.choices)
    render.out.print(f"Wrote {output} ({len(result.data):,} bytes; {len(data):,} before) and {yaml_path} "
                     f"({len(kept.choices)} tensor(s), {before:,} → {after:,} bytes predicted); next: tinycomp compress "
                     f"{output} --spec {yaml_path} -o ...")
