"""`tinycomp bench-summary`: bytes vs the ideal bound, and where each model's bytes go."""

from __future__ import annotations

import click

from tinycomp.commands.common import CONTEXT


@click.command("bench-summary", context_settings=CONTEXT)
@click.argument("bench_json", type=click.Path())
@click.option("--json", "json_path", type=click.Path(), help="Also write the summary with byte breakdowns as JSON.")
def command(bench_json, json_path):
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
