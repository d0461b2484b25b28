"""`tinycomp quantize`: post-training quantization of a Keras model to .tflite."""

from __future__ import annotations

import click

from tinycomp import render
from tinycomp.commands.common import (
    CONTEXT,
    data_options,
    load_model,
    load_model_and_data,
    output_option,
    seed_option,
    task_option,
    trust_option,
)
from tinycomp.convert import quantize as quantize_model
from tinycomp.data import DataSpec
from tinycomp.data import calibration_samples as pick_calibration
from tinycomp.fileio import check_keras_model_path, check_output_path, write_bytes_atomic
from tinycomp.metrics import Task

METHODS = ("int8", "int16x8", "dynamic", "float16")
CALIBRATED = ("int8", "int16x8")
IO_TYPES = ("uint8", "int8", "float32")


@click.command("quantize", context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@output_option
@click.option("--method", type=click.Choice(METHODS), default="int8", show_default=True,
              help="int8: full-integer with calibration (runs in TFLM); int16x8: 16-bit activations, 8-bit weights, "
                   "calibrated (runs in TFLM); dynamic: int8 weights, float activations; float16 weights (these two "
                   "do not run in TFLM: eval uses the TFLite interpreter).")
@click.option("--io", "io_type", type=click.Choice(IO_TYPES), default="uint8", show_default=True,
              help="Input/output type for --method int8.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=100, show_default=True,
              help="Training rows used to calibrate int8/int16x8 ranges.")
@click.option("--per-tensor-dense", is_flag=True,
              help="int8: one weight scale per Dense layer instead of per output channel (smaller LUTs and "
                   "quantization tables for clustered Dense layers).")
@task_option
@trust_option
@seed_option
@data_options
def command(model: str, output: str, method: str, io_type: str, calibration_samples: int, per_tensor_dense: bool,
            task: Task | None, trust: bool, seed: int, data_spec: DataSpec) -> None:
    """Post-training quantization of a model (.h5 or .keras from tf_keras or Keras 3, or a SavedModel) to .tflite.

    \b
    Example:
      tinycomp quantize build/clustered.h5 -o build/clustered_int8.tflite --method int8 --io uint8
    """
    run(model_path=model, output=output, method=method, io_type=io_type, calibration_samples=calibration_samples,
        per_tensor_dense=per_tensor_dense, seed=seed, data_spec=data_spec, task=task, trust=trust)


def run(*, model_path: str, output: str, method: str, io_type: str, calibration_samples: int,
        per_tensor_dense: bool, seed: int, data_spec: DataSpec, task: Task | None = None, trust: bool = False) -> None:
    import time


    check_keras_model_path(model_path)
    check_output_path(output, model_path)
    start = time.perf_counter()
    if method in CALIBRATED:
        model, data = load_model_and_data(model_path, data_spec, trust=trust, task=task, for_conversion=True)
        calibration = pick_calibration(data, calibration_samples, seed)
    else:
        model, calibration = load_model(model_path, trust=trust, for_conversion=True), None
    result = quantize_model(model, method=method, io=io_type, calibration=calibration,
                            per_tensor_dense=per_tensor_dense)
    write_bytes_atomic(output, result)
    detail = method
    if method == "int8":
        detail += f", {io_type} I/O"
    if calibration is not None:
        detail += f", {len(calibration)} calibration samples"
    if per_tensor_dense and method == "int8":
        detail += ", per-tensor Dense weights"
    render.out.print(f"Wrote {output}: {detail}, {len(result):,} bytes ({time.perf_counter() - start:.1f} s)")
