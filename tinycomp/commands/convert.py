"""`tinycomp convert`: a Keras model as a float32 .tflite with a fixed batch-1 input."""

from __future__ import annotations

import click

from tinycomp.commands.common import CONTEXT, output_option


@click.command("convert", context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@output_option
def command(model: str, output: str) -> None:
    """Convert a Keras .h5 to a float32 .tflite (fixed batch-1 input, as TFLM needs).

    \b
    Example:
      tinycomp convert build/model.h5 -o build/model.tflite
    """
    run(model_path=model, output=output)


def run(*, model_path: str, output: str) -> None:
    import time

    from tinycomp import render
    from tinycomp.convert import convert_float32
    from tinycomp.fileio import check_h5_file, check_output_path, write_bytes_atomic
    from tinycomp.models import load_keras_model
    from tinycomp.native_output import import_tensorflow_quietly

    check_h5_file(model_path)
    check_output_path(output, model_path)
    import_tensorflow_quietly()
    start = time.perf_counter()
    data = convert_float32(load_keras_model(model_path))
    write_bytes_atomic(output, data)
    render.out.print(f"Wrote {output}: float32, {len(data):,} bytes ({time.perf_counter() - start:.1f} s)")
