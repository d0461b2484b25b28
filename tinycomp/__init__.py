"""tinycomp: make Keras models small enough for microcontrollers, and prove they still work.

The Python API is the functions the commands call (see docs/api.md). They are imported on first
use, so `import tinycomp` stays light and imports no TensorFlow:

    import tinycomp
    data = tinycomp.load_dataset(npz="data.npz")
    model = tinycomp.load_model("model.h5")

Modules here (the library; `commands/` is the file edge, `data/`, `plan/` and `tflite/` are packages):
- `cli`: the command group and the one place errors are rendered; `cli_reference`: docs/cli.md from `--help`.
- `errors`: the one error family; `fileio`: reading inputs, writing outputs atomically; `limits`: size limits.
- `models`: Keras models (the tutorial CNN, safe load, save, compile, seeding); `model_config`: reading a saved
  architecture without deserializing it; `keras3`: Keras 3 files rebuilt as tf_keras; `saved_model`: plain
  SavedModels by their serving signature.
- `train`: training the tutorial model; `prune`: TFMOT magnitude pruning; `cluster`: TFMOT clustering;
  `qat`: quantization-aware training that keeps clusters and zeros; `convert`: float32 and quantized .tflite.
- `specs`: clustering, compression and palettization specs (strict dataclasses, YAML).
- `tflm`: running models in the TFLM interpreter, in worker processes; `lite_interpreter`: models TFLM
  cannot run, evaluated with TensorFlow Lite's interpreter; `native_output`: capturing C++ output.
- `metrics`: the task's metric and agreement; `evaluate`: metric, flash, RAM and latency of models.
- `bounds`: paired confidence bounds of a drop and of agreement against the given model (rows or groups).
- `export`: a .tflite as C++ source; `gate`: budget gates on an eval record; `report`: figures and a summary.
- `records`: typed JSON records (one dataclass and one reader each); `render`: rich tables and progress.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name in `tinycomp` → (module, name there)
_API: dict[str, tuple[str, str]] = {
    # models and data
    "load_model": ("tinycomp.models", "load_keras_model"),
    "save_model": ("tinycomp.models", "save_keras_model"),
    "load_dataset": ("tinycomp.data", "load_dataset"),
    "DataSpec": ("tinycomp.data", "DataSpec"),
    "open_dataset": ("tinycomp.data", "open_dataset"),
    "Dataset": ("tinycomp.data", "Dataset"),
    "calibration_samples": ("tinycomp.data", "calibration_samples"),
    "CLASSIFY": ("tinycomp.metrics", "CLASSIFY"),
    "REGRESS": ("tinycomp.metrics", "REGRESS"),
    "get_task": ("tinycomp.metrics", "get_task"),
    # the pipeline: train → cluster → convert/quantize → find tensors → compress → evaluate
    "train_model": ("tinycomp.train", "train_model"),
    "parse_clustering_spec": ("tinycomp.specs", "parse_clustering_spec"),
    "ClusteringSpec": ("tinycomp.specs", "ClusteringSpec"),
    "LayerClustering": ("tinycomp.specs", "LayerClustering"),
    "cluster_model": ("tinycomp.cluster", "cluster_model"),
    "parse_pruning_spec": ("tinycomp.specs", "parse_pruning_spec"),
    "PruningSpec": ("tinycomp.specs", "PruningSpec"),
    "LayerPruning": ("tinycomp.specs", "LayerPruning"),
    "prune_model": ("tinycomp.prune", "prune_model"),
    "convert_float32": ("tinycomp.convert", "convert_float32"),
    "quantize": ("tinycomp.convert", "quantize"),
    "find_structure": ("tinycomp.qat", "find_structure"),
    "train_qat": ("tinycomp.qat", "train_qat"),
    "read_tflite": ("tinycomp.tflite.model", "read_tflite"),
    "parse_tflite": ("tinycomp.tflite.model", "parse_tflite"),
    "find_tensors": ("tinycomp.tflite.find_tensors", "find_tensors"),
    "compress_model": ("tinycomp.tflite.compress", "compress_model"),
    "strip_model": ("tinycomp.tflite.strip", "strip_model"),
    "evaluate_model": ("tinycomp.evaluate", "evaluate_model"),
    # plan: a cluster count per layer within a budget
    "PlanInputs": ("tinycomp.plan.workflow", "PlanInputs"),
    "plan_model": ("tinycomp.plan.workflow", "plan_model"),
    "write_plan": ("tinycomp.plan.workflow", "write_plan"),
    "read_plan_record": ("tinycomp.plan.workflow", "read_record"),
    "make_plan": ("tinycomp.plan.make", "make_plan"),
    "plan_spec": ("tinycomp.plan.choose", "plan_spec"),
    "Budget": ("tinycomp.plan.choose", "Budget"),
    "Measurement": ("tinycomp.plan.request", "Measurement"),
    "ByteCosts": ("tinycomp.plan.request", "ByteCosts"),
    "PlanRequest": ("tinycomp.plan.request", "PlanRequest"),
    "FAST": ("tinycomp.plan.candidates", "FAST"),
    "FINE_TUNE": ("tinycomp.plan.candidates", "FINE_TUNE"),
    # errors
    "TinycompError": ("tinycomp.errors", "TinycompError"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """The API's names, imported on first use."""
    try:
        module, attribute = _API[name]
    except KeyError:
        raise AttributeError(f"module 'tinycomp' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
