"""`tinycomp find-tensors`: find layers' weight tensors in a .tflite and write a compression spec."""

from __future__ import annotations

from dataclasses import replace

import click

from tinycomp import render
from tinycomp.commands.common import CONTEXT, exactly_one_of, output_option
from tinycomp.errors import ModelError
from tinycomp.fileio import check_output_path, read_text, write_text_atomic
from tinycomp.specs import CompressionSpec, dump_compression_spec, parse_clustering_spec
from tinycomp.tflite.find_tensors import find_tensors
from tinycomp.tflite.model import read_tflite


@click.command("find-tensors", context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@output_option
@click.option("--clustering", type=click.Path(), help="Clustering spec: compress the layers it names.")
@click.option("--layer", "layers", multiple=True, help="A layer whose weights to compress; repeatable.")
@click.option("--all", "all_layers", is_flag=True, help="Every weight tensor that LUT compression shrinks.")
@click.option("--skip-incompressible", is_flag=True, help="Skip (with a warning) tensors with over 128 unique values.")
@click.option("--keep-growing", is_flag=True,
              help="Keep tensors that LUT compression would not shrink (left out by default, named in one line).")
@click.option("--smallest-exact", is_flag=True,
              help="Write huffman or pruning instead of lut for a tensor when TFLM's HUFFMAN or PRUNE decoder takes "
                   "fewer bytes for it (exact either way; docs/lossless.md).")
def command(model: str, output: str, clustering: str | None, layers: tuple[str, ...], all_layers: bool,
            skip_incompressible: bool, keep_growing: bool, smallest_exact: bool) -> None:
    """Find layers' weight tensors in a .tflite and write a compression spec.

    Picks, per tensor, the layout (per_tensor or per_channel) and the smallest index
    bitwidth (1–7) that fit its actual quantized values with the fewest bytes. Tensors whose
    indices and value tables would take at least as many bytes as the tensor itself (e.g. small
    1×1 convolutions with per-channel tables) are left out and named; --keep-growing keeps them.

    \b
    Examples:
      tinycomp find-tensors build/clustered_int8.tflite --clustering build/clustered.yaml -o build/compression.yaml
      tinycomp find-tensors model_int8.tflite --layer conv2d_1 --layer dense -o compression.yaml
      tinycomp find-tensors pruned_int8.tflite --all --smallest-exact -o compression.yaml
    """
    exactly_one_of({"--clustering": clustering, "--layer": layers, "--all": all_layers},
                   what="choose the tensors with", where="find-tensors", hint="e.g. --clustering build/clustered.yaml")
    run(model_path=model, output=output, clustering=clustering, layers=layers,
        skip_incompressible=skip_incompressible, keep_growing=keep_growing, smallest_exact=smallest_exact)


def run(*, model_path: str, output: str, clustering: str | None, layers: tuple[str, ...],
        skip_incompressible: bool, keep_growing: bool = False, smallest_exact: bool = False) -> None:
    """Layers from `clustering` or `layers`; every compressible tensor when neither is given."""

    names, decode_budget = None, None
    if clustering:
        clustering_spec = parse_clustering_spec(read_text(clustering, "clustering spec"), clustering)
        names, decode_budget = clustering_spec.layer_names(), clustering_spec.decode_budget
    elif layers:
        names = list(dict.fromkeys(layers))
    check_output_path(output, model_path)
    model = read_tflite(model_path)
    if names == [] and clustering:

        header = f"Compression spec for {model_path}, written by tinycomp find-tensors: {clustering} clusters no layer"
        write_text_atomic(output, dump_compression_spec(CompressionSpec(()), header))
        render.warn(f"{clustering} clusters no layer: wrote {output} with no tensors (compress keeps the model as it is)")
        return
    result = find_tensors(model.model, names, str(model_path), skip_incompressible)
    if smallest_exact:
        result = result.smallest_exact()
    for layer, reason in result.skipped:
        render.warn(f"skipped {layer}: {reason}")
    growing = result.growing
    if growing and not keep_growing:
        result = result.without_growing()
    if not result.choices:
        raise _nothing_to_compress(growing, result.skipped, str(model_path))
    if growing:
        render.warn(kept_line(growing) if keep_growing else left_out_line(growing))
    header = f"Compression spec for {model_path}, written by tinycomp find-tensors"
    write_text_atomic(output, dump_compression_spec(replace(result.spec(), decode_budget=decode_budget), header))
    render.out.print(render.find_tensors_table(result))
    before = sum(c.bytes_before for c in result.choices)
    after = sum(c.bytes_after for c in result.choices)
    render.out.print(f"Wrote {output}: {_tensors(len(result.choices))}, {before:,} → {after:,} bytes predicted")


def _tensors(count: int) -> str:
    return f"{count} tensor" + ("" if count == 1 else "s")


def _sizes(choices) -> str:
    """`conv2d (512 → 624 bytes), dense_3 (...)`"""
    return ", ".join(f"{c.layer} ({c.bytes_before:,} → {c.bytes_after:,} bytes)" for c in choices)


def left_out_line(growing) -> str:
    """The one line naming the tensors left out of the spec because LUT compression would not shrink them."""
    them = "it" if len(growing) == 1 else "them"
    return (f"left out {_tensors(len(growing))} that LUT compression would not shrink: {_sizes(growing)}; "
            f"--keep-growing keeps {them}")


def kept_line(growing) -> str:
    return f"kept {_tensors(len(growing))} that LUT compression does not shrink (--keep-growing): {_sizes(growing)}"


def _nothing_to_compress(growing, skipped, source: str):
    """The error when no tensor is left: why (every one would not shrink, or was skipped) and what to do."""

    reasons = [f"LUT compression would not shrink {_sizes(growing)}"] if growing else []
    reasons += [f"{_tensors(len(skipped))} skipped (too many values for a LUT)"] if skipped else []
    hint = ("leave those layers uncompressed, cluster them to fewer values, or pass --keep-growing to write them "
            "anyway" if growing else "cluster layers first, then name them")
    return ModelError("no tensor to compress" + (": " + "; ".join(reasons) if reasons else ""), source, hint)
