"""`tinycomp plan`: choose a cluster count per layer (mixed bitwidth) within a budget."""

from __future__ import annotations

import click

from tinycomp.commands.common import CONTEXT, data_options, output_option, seed_option


@click.command("plan", context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@output_option
@click.option("--max-accuracy-drop", "max_drop", type=click.FloatRange(min=0), metavar="PP",
              help="Fewest bytes with the predicted accuracy drop vs MODEL at most PP percentage points.")
@click.option("--target-bytes", metavar="SIZE",
              help="Instead: the smallest predicted accuracy drop in at most SIZE bytes (e.g. 39141, 38KiB).")
@click.option("--target-ratio", type=click.FloatRange(min=1), metavar="R",
              help="Instead: the smallest predicted accuracy drop at least R times smaller than MODEL as a "
                   "float32 .tflite (the file `convert` writes), e.g. 12.")
@click.option("--ram-budget", metavar="SIZE",
              help="Also keep the TFLM arena of the planned file within SIZE (e.g. 100KiB): layers whose decoded "
                   "weights do not fit stay uncompressed.")
@click.option("--clusters", default="2,4,8,16,32,64", show_default=True,
              help="Cluster counts to measure per layer (bits = log2 of the count).")
@click.option("--layer", "layers", multiple=True, help="Plan only this layer; repeatable (default: all clusterable).")
@click.option("--per-channel-conv/--per-tensor-conv", default=True, show_default=True,
              help="Cluster Conv2D kernels per output channel.")
@click.option("--epochs", type=click.IntRange(min=0), default=2, show_default=True,
              help="Fine-tuning epochs per candidate; give `cluster --epochs` at least as many.")
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
@seed_option
@data_options
@click.pass_context
def command(ctx, model, output, max_drop, target_bytes, target_ratio, ram_budget, clusters, layers, per_channel_conv,
         epochs, batch_size, validation_split, credit_fine_tuning, check, per_tensor_dense, io_type, strip_,
         sensitivity_path, seed, load_data):
    """Choose a cluster count per layer (mixed bitwidth) and write a clustering spec.

    Clusters one layer at a time over the cluster counts, fine-tunes briefly and measures the
    accuracy drop on held-out training rows; measures each layer's compressed bytes exactly with
    tflite-micro; then picks the counts with the fewest bytes within the accuracy budget (or the
    smallest drop within --target-bytes or --target-ratio). Writes the spec for `cluster`
    (OUTPUT) and the sensitivity table with the predictions (OUTPUT with .json).

    Per-layer drops need not add up, so the choice is checked before it is written: its
    layers are clustered together, fine-tuned and measured, and a choice over the accuracy
    budget is made again (--no-check skips this). LUT decoding costs RAM: the planned file's
    TFLM arena is measured and printed, and --ram-budget leaves uncompressed the layers whose
    decoded weights would not fit.

    The byte predictions match the real chain when --per-tensor-dense, --io and --strip are given
    to plan as to quantize and compress (`make bench` runs this chain). --sensitivity re-chooses
    from an earlier plan's table under another budget without measuring again.

    \b
    Example:
      tinycomp plan build/model.h5 --max-accuracy-drop 0.5 --per-tensor-dense --strip -o build/plan.yaml
      tinycomp cluster build/model.h5 --spec build/plan.yaml --epochs 2 -o build/planned.h5
      tinycomp quantize build/planned.h5 --per-tensor-dense -o build/planned_int8.tflite
      tinycomp find-tensors build/planned_int8.tflite --clustering build/planned.yaml -o build/planned_spec.yaml
      tinycomp compress build/planned_int8.tflite --spec build/planned_spec.yaml --strip -o build/planned.tflite
      tinycomp plan build/model.h5 --target-ratio 12 --sensitivity build/plan.json --per-tensor-dense --strip -o build/plan_12x.yaml
      tinycomp plan build/model.h5 --max-accuracy-drop 0.5 --ram-budget 64KiB --sensitivity build/plan.json --per-tensor-dense --strip -o build/plan_64k_ram.yaml
    """
    from tinycomp import commands_plan

    measurement = [p.opts[0] for p in ctx.command.params if p.name in MEASUREMENT_OPTIONS
                   and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    commands_plan.plan(model, output, max_drop, target_bytes, clusters, layers, per_channel_conv, epochs, batch_size,
                       validation_split, credit_fine_tuning, seed, load_data, per_tensor_dense, strip_,
                       sensitivity_path, measurement, target_ratio, ram_budget, check, io_type)


MEASUREMENT_OPTIONS = ("clusters", "layers", "per_channel_conv", "epochs", "batch_size", "validation_split", "seed")
