"""`tinycomp convert`: a Keras model as a float32 .tflite with a fixed batch-1 input."""

from __future__ import annotations

import click

from tinycomp import render
from tinycomp.commands.common import CONTEXT, load_model, output_option, trust_option
from tinycomp.convert import convert_float32
from tinycomp.fileio import check_keras_model_path, check_output_path, write_bytes_atomic


@click.command("convert", context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@output_option
@trust_option
def command(model: str, output: str, trust: bool) -> None:
    """Convert a model (.h5 or .keras from tf_keras or Keras 3, or a SavedModel) to a float32 .tflite (batch-1 input).

    \b
    Example:
      tinycomp convert build/model.h5 -o build/model.tflite
    """
    run(model_path=model, output=output, trust=trust)


def run(*, model_path: str, output: str, trust: bool = False) -> None:
    import time


    check_keras_model_path(model_path)
    check_output_path(output, model_path)
    start = time.perf_counter()
    data = convert_float32(load_model(model_path, trust=trust, for_conversion=True))
    write_bytes_atomic(output, data)
    render.out.print(f"Wrote {output}: float32, {len(data):,} bytes ({time.perf_counter() - start:.1f} s)")
