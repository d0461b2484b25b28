"""`tinycomp quantize`: post-training quantization of a Keras model to .tflite, or quantization-aware
training (`--qat EPOCHS`) kept only when it scores no lower than post-training quantization."""

from __future__ import annotations

from typing import Any

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
from tinycomp.errors import ModelError, UsageError
from tinycomp.fileio import (
    check_keras_model_path,
    check_output_path,
    is_tflite_file,
    sidecar_path,
    write_bytes_atomic,
    write_json_atomic,
)
from tinycomp.metrics import Task
from tinycomp.models import FINE_TUNE_LEARNING_RATE

METHODS = ("int8", "int16x8", "dynamic", "float16")
CALIBRATED = ("int8", "int16x8")
IO_TYPES = ("uint8", "int8", "float32")
QAT_ONLY = (("learning_rate", "--learning-rate"), ("batch_size", "--batch-size"), ("jobs", "--jobs"))


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
@click.option("--qat", "qat_epochs", type=click.IntRange(min=1), default=None, metavar="EPOCHS",
              help="int8: quantization-aware training for EPOCHS epochs (TFMOT; clustered layers keep their values "
                   "and zeros stay zero), kept only if it scores no lower than post-training quantization on the "
                   "held-out last 10% of the training rows in TFLM. Writes OUTPUT with .json.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=FINE_TUNE_LEARNING_RATE,
              show_default=True, help="With --qat: Adam's learning rate.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="With --qat: training batch size.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --qat: TFLM worker processes for scoring both int8 files.")
@task_option
@trust_option
@seed_option
@data_options
def command(model: str, output: str, method: str, io_type: str, calibration_samples: int, per_tensor_dense: bool,
            qat_epochs: int | None, learning_rate: float, batch_size: int, jobs: int,
            task: Task | None, trust: bool, seed: int, data_spec: DataSpec) -> None:
    """Post-training quantization of a model (.h5 or .keras from tf_keras or Keras 3, or a SavedModel) to .tflite.

    With --qat EPOCHS: quantization-aware training first. TFMOT's scheme follows the model: cluster-preserving
    when layers are clustered (the clustering spec `cluster` wrote next to the model names them, or a kernel's
    non-zero weights share at most 256 values), prune-preserving when kernels are sparse (at least 10% exact
    zeros), both when both, else plain 8-bit QAT. The loss is the one the model was saved with (as `cluster`
    chooses it). The trained weights are converted exactly as without --qat (--io, --per-tensor-dense,
    calibration), and both int8 files are scored in TFLM on the held-out last 10% of the training rows:
    the QAT file is written only if it scores no lower, else the post-training one (with a warning). OUTPUT
    with .json records both scores, the rows, the scheme and which file was kept.

    \b
    Examples:
      tinycomp quantize build/clustered.h5 -o build/clustered_int8.tflite --method int8 --io uint8
      tinycomp quantize build/clustered.h5 --qat 1 -o build/clustered_int8.tflite --dataset mnist
    """
    if qat_epochs is None:
        source = click.get_current_context().get_parameter_source
        for name, flag in QAT_ONLY:
            if source(name) == click.core.ParameterSource.COMMANDLINE:
                raise UsageError(f"{flag} goes with --qat", flag, "add --qat EPOCHS, or drop it")
    run(model_path=model, output=output, method=method, io_type=io_type, calibration_samples=calibration_samples,
        per_tensor_dense=per_tensor_dense, seed=seed, data_spec=data_spec, task=task, trust=trust,
        qat_epochs=qat_epochs, learning_rate=learning_rate, batch_size=batch_size, jobs=jobs)


def run(*, model_path: str, output: str, method: str, io_type: str, calibration_samples: int,
        per_tensor_dense: bool, seed: int, data_spec: DataSpec, task: Task | None = None, trust: bool = False,
        qat_epochs: int | None = None, learning_rate: float = FINE_TUNE_LEARNING_RATE, batch_size: int = 128,
        jobs: int = 1) -> None:
    import time

    if qat_epochs is not None:
        run_qat(model_path=model_path, output=output, method=method, io_type=io_type,
                calibration_samples=calibration_samples, per_tensor_dense=per_tensor_dense, seed=seed,
                data_spec=data_spec, task=task, trust=trust, epochs=qat_epochs, learning_rate=learning_rate,
                batch_size=batch_size, jobs=jobs)
        return
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
    render.out.print(f"Wrote {output}: {_detail(method, io_type, calibration, per_tensor_dense)}, "
                     f"{len(result):,} bytes ({time.perf_counter() - start:.1f} s)")


def _detail(method: str, io_type: str, calibration: Any, per_tensor_dense: bool) -> str:
    detail = method
    if method == "int8":
        detail += f", {io_type} I/O"
    if calibration is not None:
        detail += f", {len(calibration)} calibration samples"
    if per_tensor_dense and method == "int8":
        detail += ", per-tensor Dense weights"
    return detail


def check_qat_input(model_path: str, method: str) -> None:
    """The errors before any loading: --qat needs int8 and a Keras model, not a .tflite."""
    if method != "int8":
        raise UsageError(f"--qat makes full-integer int8 models, not --method {method}", "--qat",
                         "drop --method, or drop --qat")
    if is_tflite_file(model_path):
        raise ModelError("quantization-aware training needs the Keras model; this is a .tflite file", model_path,
                         f"palettize a .tflite with data instead: tinycomp palettize {model_path} --bits 4 --data ... "
                         "-o ...")
    check_keras_model_path(model_path)


def run_qat(*, model_path: str, output: str, method: str, io_type: str, calibration_samples: int,
            per_tensor_dense: bool, seed: int, data_spec: DataSpec, task: Task | None, trust: bool, epochs: int,
            learning_rate: float, batch_size: int, jobs: int) -> None:
    """quantize --qat: train, convert both, score both in TFLM, write the better (QAT on a tie) and the record."""
    from tinycomp import qat
    from tinycomp.cluster import validation_rows_of
    from tinycomp.metrics import choose_task

    check_qat_input(model_path, method)
    record_path = sidecar_path(output, ".json")
    check_output_path(output, model_path)
    check_output_path(record_path, model_path)
    model, data = load_model_and_data(model_path, data_spec, trust=trust, task=task)
    chosen = choose_task(data.y_test[:1] if data.labels else None, tuple(model.output_shape[1:]), task)
    x_val, y_val = validation_rows_of(data, qat.VALIDATION_SPLIT)
    if len(x_val) == 0:
        raise ModelError(f"{len(data.x_train)} training rows leave none held out to compare QAT with post-training "
                         "quantization", data.name, "use at least 10 training rows")
    structure = qat.find_structure(model, _sidecar_spec(model_path))
    render.info(_structure_line(structure, epochs, data.name))
    with render.progress("quantization-aware training", epochs) as advance:
        result = qat.train_qat(model, data, epochs, structure=structure, batch_size=batch_size,
                               learning_rate=learning_rate, seed=seed, task=chosen,
                               on_epoch=render.epoch_callback(advance))
    calibration = pick_calibration(data, calibration_samples, seed)
    files = {name: quantize_model(m, method="int8", io=io_type, calibration=calibration,
                                  per_tensor_dense=per_tensor_dense) for name, m in (("ptq", model), ("qat", result.model))}
    scores = qat.tflm_scores(files, x_val, y_val, chosen, jobs, source=model_path)
    kept = "qat" if scores["qat"] >= scores["ptq"] else "ptq"
    int8_weights = {name: qat.int8_structure(data_, structure) for name, data_ in files.items()}
    _warn_lost_structure(int8_weights["qat"], structure)
    write_bytes_atomic(output, files[kept])
    record = {
        "step": "quantize-qat", "source": str(model_path), "output": str(output), "dataset": data.describe(),
        "task": chosen.name, "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size, "seed": seed,
        "loss": result.loss, "history": result.history, "seconds": round(result.seconds, 3), **structure.describe(),
        "conversion": {"io": io_type, "per_tensor_dense": per_tensor_dense, "calibration_samples": len(calibration)},
        "scored_on": {"split": "train", "first_row": int(len(data.x_train) - len(x_val)), "rows": int(len(x_val)),
                      "runs_in": "TFLM", "why": "the last 10% of the training rows, held out from QAT"},
        "metric": chosen.metric, "scores": scores, "bytes": {name: len(b) for name, b in files.items()},
        "int8_weights": int8_weights, "kept": kept,
    }
    write_json_atomic(record_path, record)
    _report(output, record_path, chosen, scores, kept, len(x_val))


def _warn_lost_structure(qat_weights: dict[str, dict[str, Any]], structure: Any) -> None:
    """One warning naming the layers whose QAT int8 weights hold more values per output channel than the
    clustered float kernel, or fewer zeros than the sparse one (the preserving schemes should prevent both)."""
    lost = [name for name, found in qat_weights.items()
            if (name in structure.clustered and found["max_per_channel"] > structure.clustered[name]["max_per_channel"])
            or (name in structure.sparse and found["zero_fraction"] < structure.sparse[name] - 1e-6)]
    if lost:
        render.warn(f"QAT did not keep the structure of {', '.join(lost)}: its int8 weights have more values per "
                    "channel or fewer zeros than the model's kernels (see int8_weights in OUTPUT.json)")


def _sidecar_spec(model_path: str):
    """The clustering spec `cluster` wrote next to the model (MODEL with .yaml), or None (no such file, or
    another step's sidecar)."""
    from tinycomp.errors import TinycompError
    from tinycomp.fileio import read_text
    from tinycomp.specs import parse_clustering_spec

    path = sidecar_path(model_path, ".yaml")
    if not path.is_file():
        return None
    text = read_text(path, "clustering spec")
    try:
        return parse_clustering_spec(text, str(path))
    except TinycompError as e:  # another step's sidecar (prune writes one too) is not news; a broken clustering spec is
        if "clusters:" in text:
            render.warn(f"ignored {path}: {e.what}; the weights alone decide what is clustered")
        return None


def _structure_line(structure: Any, epochs: int, data_name: str) -> str:
    parts = []
    if structure.clustered:
        parts.append("clustered " + ", ".join(f"{name} ({info['values']} values)"
                                              for name, info in structure.clustered.items()))
    if structure.sparse:
        parts.append("sparse " + ", ".join(f"{name} ({fraction:.0%} zeros)" for name, fraction in structure.sparse.items()))
    found = "; ".join(parts) or "no clustered or sparse layers"
    return f"Quantization-aware training, {structure.scheme} scheme ({found}): {epochs} epoch(s) on {data_name}"


def _report(output: str, record_path: Any, task: Task, scores: dict[str, float], kept: str, rows: int) -> None:
    text = task.score_text
    compared = f"QAT {text(scores['qat'])} vs post-training {text(scores['ptq'])} on {rows:,} held-out training rows in TFLM"
    if kept == "ptq":
        render.warn(f"QAT scored lower ({compared}): wrote the post-training quantized model")
    render.out.print(f"Wrote {output} ({'QAT' if kept == 'qat' else 'post-training'}; {compared}) and {record_path}")
