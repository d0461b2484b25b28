"""The tinycomp command line: declares commands and options and calls the library.

Errors of the TinycompError family are rendered in one place (`TinycompGroup.invoke`) as
`Error: <what> (<where>) — <what to do>`; tracebacks only with --debug.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback

import click

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ start-up chatter out of the output

from tinycomp import __version__  # noqa: E402
from tinycomp.errors import TinycompError  # noqa: E402
from tinycomp.specs import CLUSTER_INITS, CLUSTERING_EXAMPLE, COMPRESSION_EXAMPLE, LEGACY_COMPRESSION_EXAMPLE  # noqa: E402

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class TinycompGroup(click.Group):
    """A group that renders tinycomp errors as one `Error:` line."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TinycompError as e:
            if _debug(ctx):
                raise
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("Error: interrupted — no output was written", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as e:  # a bug, not a user error: still one line unless --debug
            if _debug(ctx):
                raise
            where = traceback.extract_tb(e.__traceback__)[-1]
            click.echo(f"Error: internal error: {type(e).__name__}: {e} ({os.path.basename(where.filename)}:"
                       f"{where.lineno}) — re-run with --debug and report it", err=True)
            ctx.exit(1)


def _verbatim(title: str, block: str) -> str:
    """Help text that shows `block` as written (click's \\b marker stops re-wrapping)."""
    return f"{title}\n\n\b\n{block.rstrip()}"


def _debug(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("debug")) or os.environ.get("TINYCOMP_DEBUG") == "1"


@click.group(cls=TinycompGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="tinycomp")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Make Keras models small enough for microcontrollers, and prove they still work.

    \b
    The TFLM compression tutorial as steps that read and write files:
      train → cluster → convert / quantize → find-tensors → compress → eval
    \b
    Example (the whole pipeline on the bundled MNIST sample):
      tinycomp train -o build/model.h5 --dataset mnist-sample
      tinycomp cluster build/model.h5 --spec specs/clustering.yaml -o build/clustered.h5 --dataset mnist-sample
      tinycomp quantize build/clustered.h5 -o build/clustered_int8.tflite --dataset mnist-sample
      tinycomp find-tensors build/clustered_int8.tflite --clustering build/clustered.yaml -o build/compression.yaml
      tinycomp compress build/clustered_int8.tflite --spec build/compression.yaml -o build/compressed.tflite
      tinycomp eval build/*.tflite --baseline build/model.tflite --dataset mnist-sample
    """
    ctx.obj = {"debug": debug}


# ---------------------------------------------------------------- shared options

def data_options(fn):
    """--dataset / --data, shared by train, cluster, quantize and eval."""
    @click.option("--dataset", type=click.Choice(["mnist", "mnist-sample", "fashion_mnist"]), default="mnist",
                  show_default=True,
                  help="mnist: full MNIST if cached or online, else the bundled 5,000-digit sample (with a warning).")
    @click.option("--data", "npz", type=click.Path(dir_okay=True), default=None,
                  help="An .npz with x_train, y_train, x_test, y_test (overrides --dataset).")
    @functools.wraps(fn)
    def wrapper(*args, dataset, npz, **kwargs):
        from tinycomp import render
        from tinycomp.data import load_dataset

        loader = functools.partial(load_dataset, dataset, npz, warn=render.warn)
        return fn(*args, load_data=loader, **kwargs)
    return wrapper


def output_option(fn):
    return click.option("-o", "--output", required=True, type=click.Path(), help="File to write.")(fn)


def seed_option(fn):
    return click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")(fn)


# ---------------------------------------------------------------- train

@cli.command(context_settings=CONTEXT)
@output_option
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--validation-split", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True)
@seed_option
@data_options
def train(output, epochs, batch_size, validation_split, seed, load_data):
    """Train the tutorial CNN and save it as .h5.

    Writes metrics and the dataset actually used next to the model (OUTPUT with .json).

    \b
    Example:
      tinycomp train -o build/model.h5 --dataset mnist-sample --epochs 3
    """
    from tinycomp import commands

    commands.train(output, epochs, batch_size, validation_split, seed, load_data)


# ---------------------------------------------------------------- cluster

@cli.command(context_settings=CONTEXT, epilog=_verbatim("Clustering spec example:", CLUSTERING_EXAMPLE))
@click.argument("model", type=click.Path())
@output_option
@click.option("--spec", "spec_path", type=click.Path(), help="Clustering spec YAML (see below).")
@click.option("--layer", "layers", multiple=True, metavar="NAME=CLUSTERS", help="Cluster one layer; repeatable.")
@click.option("--all", "all_layers", type=click.IntRange(min=2), metavar="CLUSTERS",
              help="Cluster every layer with weights to this many clusters.")
@click.option("--init", type=click.Choice(CLUSTER_INITS), default="kmeans++", show_default=True,
              help="Centroid initialisation for --layer/--all.")
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True, help="Fine-tuning epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@seed_option
@data_options
def cluster(model, output, spec_path, layers, all_layers, init, epochs, batch_size, seed, load_data):
    """Cluster chosen layers' weights with TFMOT, fine-tune, strip, save .h5.

    Writes the effective clustering spec next to the output (OUTPUT with .yaml) for
    `find-tensors --clustering`, and metrics (OUTPUT with .json).

    \b
    Examples:
      tinycomp cluster build/model.h5 --spec specs/clustering.yaml -o build/clustered.h5
      tinycomp cluster build/model.h5 --layer conv2d_1=16 --layer dense=16 -o build/clustered.h5
    """
    from tinycomp import commands

    commands.cluster(model, output, spec_path, layers, all_layers, init, epochs, batch_size, seed, load_data)


# ---------------------------------------------------------------- convert / quantize

@cli.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@output_option
def convert(model, output):
    """Convert a Keras .h5 to a float32 .tflite (fixed batch-1 input, as TFLM needs).

    \b
    Example:
      tinycomp convert build/model.h5 -o build/model.tflite
    """
    from tinycomp import commands

    commands.convert(model, output)


@cli.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@output_option
@click.option("--method", type=click.Choice(["int8", "dynamic", "float16"]), default="int8", show_default=True,
              help="int8: full-integer with calibration; dynamic: int8 weights, float activations; float16 weights.")
@click.option("--io", "io_type", type=click.Choice(["uint8", "int8", "float32"]), default="uint8", show_default=True,
              help="Input/output type for --method int8.")
@click.option("--calibration-samples", type=int, default=100, show_default=True,
              help="Training images used to calibrate int8 ranges.")
@click.option("--per-tensor-dense", is_flag=True,
              help="int8: one weight scale per Dense layer instead of per output channel (smaller LUTs and "
                   "quantization tables for clustered Dense layers).")
@seed_option
@data_options
def quantize(model, output, method, io_type, calibration_samples, per_tensor_dense, seed, load_data):
    """Post-training quantization of a Keras .h5 to .tflite.

    \b
    Example:
      tinycomp quantize build/clustered.h5 -o build/clustered_int8.tflite --method int8 --io uint8
    """
    from tinycomp import commands

    commands.quantize(model, output, method, io_type, calibration_samples, per_tensor_dense, seed, load_data)


# ---------------------------------------------------------------- find-tensors / compress

@cli.command("find-tensors", context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@output_option
@click.option("--clustering", type=click.Path(), help="Clustering spec: compress the layers it names.")
@click.option("--layer", "layers", multiple=True, help="A layer whose weights to compress; repeatable.")
@click.option("--all", "all_layers", is_flag=True, help="Every weight tensor that LUT compression shrinks.")
@click.option("--skip-incompressible", is_flag=True, help="Skip (with a warning) tensors with over 128 unique values.")
def find_tensors(model, output, clustering, layers, all_layers, skip_incompressible):
    """Find layers' weight tensors in a .tflite and write a compression spec.

    Picks, per tensor, the layout (per_tensor or per_channel) and the smallest index
    bitwidth (1–7) that fit its actual quantized values with the fewest bytes.

    \b
    Examples:
      tinycomp find-tensors build/clustered_int8.tflite --clustering build/clustered.yaml -o build/compression.yaml
      tinycomp find-tensors model_int8.tflite --layer conv2d_1 --layer dense -o compression.yaml
    """
    from tinycomp import commands

    commands.find_tensors(model, output, clustering, layers, all_layers, skip_incompressible)


@cli.command(context_settings=CONTEXT,
             epilog=_verbatim("Spec format (tflite-micro's current one):", COMPRESSION_EXAMPLE)
             + "\n\n" + _verbatim("The tutorial's older form is accepted; each tensor's layout is then taken "
                                  "from its quantization:", LEGACY_COMPRESSION_EXAMPLE))
@click.argument("model", type=click.Path())
@output_option
@click.option("--spec", "spec_path", required=True, type=click.Path(), help="Compression spec YAML.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check TFLM outputs of compressed and original models are identical on random inputs.")
@click.option("--verify-samples", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--strip", "strip_", is_flag=True,
              help="Also remove what TFLM does not read (names, signatures, metadata), as `tinycomp strip`.")
def compress(model, output, spec_path, verify, verify_samples, strip_):
    """LUT-compress tensors of a .tflite with tflite_micro.compression.

    \b
    Example:
      tinycomp compress build/clustered_int8.tflite --spec build/compression.yaml -o build/compressed.tflite
    """
    from tinycomp import commands

    commands.compress(model, output, spec_path, verify, verify_samples, strip=strip_)


# ---------------------------------------------------------------- eval

@cli.command("eval", context_settings=CONTEXT)
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--baseline", type=click.Path(), help="Model to compare size and accuracy against.")
@click.option("--limit", type=int, default=None, help="Evaluate only the first N test samples.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--json", "json_path", type=click.Path(), help="Also write the results as JSON (for CI).")
@click.option("--flash-budget", help="e.g. 64KiB: mark models FITS / TOO BIG; exit 1 if none fits.")
@click.option("--ram-budget", help="e.g. 100KiB of TFLM arena.")
@data_options
def eval_(models, baseline, limit, jobs, json_path, flash_budget, ram_budget, load_data):
    """Accuracy, flash, RAM and latency: .tflite in the TFLM interpreter, .h5 in Keras.

    \b
    Example:
      tinycomp eval build/model.tflite build/compressed.tflite --baseline build/model.tflite --json build/eval.json
    """
    from tinycomp import commands

    commands.evaluate(models, baseline, limit, jobs, json_path, flash_budget, ram_budget, load_data)


# ---------------------------------------------------------------- strip / export / report

@cli.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@output_option
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check TFLM outputs of stripped and original models are identical on random inputs.")
@click.option("--verify-samples", type=click.IntRange(min=1), default=32, show_default=True)
def strip(model, output, verify, verify_samples):
    """Remove what TFLM does not read at run time from a .tflite.

    Drops tensor and subgraph names, signature defs, the description, shape signatures,
    quantization min/max and metadata TFLM does not look up (min_runtime_version,
    CONVERSION_METADATA); keeps OfflineMemoryAllocation and everything compressed models'
    DECODE operators read. Also available as `tinycomp compress --strip`.

    \b
    Example:
      tinycomp strip build/compressed.tflite -o build/compressed_stripped.tflite
    """
    from tinycomp import commands_extra

    commands_extra.strip(model, output, verify, verify_samples)


@cli.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="C++ source file to write, e.g. model_data.cc.")
@click.option("--header", type=click.Path(), help="Header to write  [default: OUTPUT with .h]")
@click.option("--symbol", default="g_model", show_default=True,
              help="C name of the array; its length is SYMBOL_len.")
def export(model, output, header, symbol):
    """Write a .tflite as a C array to compile into firmware (as the TFLM examples do).

    The .cc holds `alignas(16) const unsigned char SYMBOL[] = {...};` and
    `const unsigned int SYMBOL_len`; the header declares both.

    \b
    Example:
      tinycomp export build/compressed.tflite -o firmware/model_data.cc --symbol g_model
    """
    from tinycomp import commands_extra

    commands_extra.export(model, output, header, symbol)


@cli.command(context_settings=CONTEXT)
@click.argument("eval_json", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="Directory to write the report to.")
@click.option("--dataset", type=click.Choice(["mnist", "mnist-sample", "fashion_mnist"]), default=None,
              help="Test images for predictions.png  [default: the eval JSON's dataset]")
@click.option("--data", "npz", type=click.Path(dir_okay=True), default=None,
              help="An .npz with x_train, y_train, x_test, y_test (overrides --dataset).")
@click.option("--baseline", type=click.Path(), help="Model for the 'base' predictions  [default: the eval's baseline]")
@click.option("--model", type=click.Path(), help="Model for the 'comp' predictions  [default: the eval's last model]")
@click.option("--images", type=click.IntRange(min=0, max=64), default=16, show_default=True,
              help="Images in predictions.png; 0: no predictions.png (no data or TFLM needed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed for picking images.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--max-drop", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Verdict: accuracy may fall at most this many percentage points below the baseline.")
def report(eval_json, output, dataset, npz, baseline, model, images, seed, jobs, max_drop):
    """Figures and a markdown summary from `tinycomp eval --json` (for people and CI).

    Writes to OUTPUT/: size_vs_accuracy.png (flash bytes vs accuracy, one point per model),
    predictions.png (test images with true label and both models' TFLM predictions,
    mistakes in red) and summary.md (the results table with a verdict per model).

    \b
    Example:
      tinycomp eval build/model.tflite build/compressed.tflite --baseline build/model.tflite --json build/eval.json
      tinycomp report build/eval.json -o build/report
    """
    from tinycomp import commands_extra

    commands_extra.report(eval_json, output, dataset, npz, baseline, model, images, seed, jobs, max_drop)


# ---------------------------------------------------------------- plan / bench-summary

@cli.command(context_settings=CONTEXT)
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
def plan(ctx, model, output, max_drop, target_bytes, target_ratio, ram_budget, clusters, layers, per_channel_conv,
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


@cli.command("bench-summary", context_settings=CONTEXT)
@click.argument("bench_json", type=click.Path())
@click.option("--json", "json_path", type=click.Path(), help="Also write the summary with byte breakdowns as JSON.")
def bench_summary(bench_json, json_path):
    """Bytes vs the ideal bound, and where each compressed model's bytes go, from `eval --json`.

    The ideal bound of the weights is Σ weights × bits / 8 + value tables (raw bytes for
    uncompressed weights); the rest of a file is biases, quantization parameters, names and
    flatbuffer structure, listed per part.

    \b
    Example:
      tinycomp eval build/model.tflite build/planned.tflite --baseline build/model.tflite --json build/bench.json
      tinycomp bench-summary build/bench.json
    """
    from tinycomp import commands_plan

    commands_plan.bench_summary(bench_json, json_path)


def main() -> None:
    cli(prog_name="tinycomp")


if __name__ == "__main__":
    sys.exit(main())
