"""`tinycomp find-tensors`: find layers' weight tensors in a .tflite and write a compression spec."""

from __future__ import annotations

import click

from tinycomp.commands.common import CONTEXT, exactly_one_of, output_option


@click.command("find-tensors", context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@output_option
@click.option("--clustering", type=click.Path(), help="Clustering spec: compress the layers it names.")
@click.option("--layer", "layers", multiple=True, help="A layer whose weights to compress; repeatable.")
@click.option("--all", "all_layers", is_flag=True, help="Every weight tensor that LUT compression shrinks.")
@click.option("--skip-incompressible", is_flag=True, help="Skip (with a warning) tensors with over 128 unique values.")
def command(model: str, output: str, clustering: str | None, layers: tuple[str, ...], all_layers: bool,
            skip_incompressible: bool) -> None:
    """Find layers' weight tensors in a .tflite and write a compression spec.

    Picks, per tensor, the layout (per_tensor or per_channel) and the smallest index
    bitwidth (1–7) that fit its actual quantized values with the fewest bytes.

    \b
    Examples:
      tinycomp find-tensors build/clustered_int8.tflite --clustering build/clustered.yaml -o build/compression.yaml
      tinycomp find-tensors model_int8.tflite --layer conv2d_1 --layer dense -o compression.yaml
    """
    exactly_one_of({"--clustering": clustering, "--layer": layers, "--all": all_layers},
                   what="choose the tensors with", where="find-tensors", hint="e.g. --clustering build/clustered.yaml")
    run(model_path=model, output=output, clustering=clustering, layers=layers,
        skip_incompressible=skip_incompressible)


def run(*, model_path: str, output: str, clustering: str | None, layers: tuple[str, ...],
        skip_incompressible: bool) -> None:
    """Layers from `clustering` or `layers`; every compressible tensor when neither is given."""
    from tinycomp import render
    from tinycomp.errors import ModelError
    from tinycomp.fileio import check_output_path, read_text, write_text_atomic
    from tinycomp.find_tensors import find_tensors
    from tinycomp.specs import dump_compression_spec, parse_clustering_spec
    from tinycomp.tflite_model import read_tflite

    names = None
    if clustering:
        names = parse_clustering_spec(read_text(clustering, "clustering spec"), clustering).layer_names()
    elif layers:
        names = list(dict.fromkeys(layers))
    check_output_path(output, model_path)
    model = read_tflite(model_path)
    result = find_tensors(model.model, names, str(model_path), skip_incompressible)
    for layer, reason in result.skipped:
        render.warn(f"skipped {layer}: {reason}")
    for choice in result.choices:
        if choice.bytes_after >= choice.bytes_before:
            render.warn(f"{choice.layer}: LUT compression makes tensor {choice.weight.index} larger "
                        f"({choice.bytes_before:,} → {choice.bytes_after:,} bytes); was the layer clustered?")
    if not result.choices:
        raise ModelError("no tensor to compress", str(model_path), "cluster layers first, then name them")
    header = f"Compression spec for {model_path}, written by tinycomp find-tensors"
    write_text_atomic(output, dump_compression_spec(result.spec(), header))
    render.out.print(render.find_tensors_table(result))
    before = sum(c.bytes_before for c in result.choices)
    after = sum(c.bytes_after for c in result.choices)
    render.out.print(f"Wrote {output}: {len(result.choices)} tensors, {before:,} → {after:,} bytes predicted")
