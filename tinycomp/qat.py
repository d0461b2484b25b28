"""Quantization-aware training with TFMOT, keeping a model's clusters and zeros.

`find_structure` reads which layers are clustered (few distinct kernel values, or named by
`cluster`'s spec sidecar and holding no more values than it says) and which are sparse (many exact
zeros); `scheme_for` picks TFMOT's scheme from that: plain 8-bit QAT, cluster-preserving (CQAT),
prune-preserving (PQAT) or both (PCQAT). `train_qat` wraps the model in that scheme, fine-tunes it
with the model's own loss and returns a plain tf_keras model with the trained weights, which the
caller converts exactly as post-training quantization does (`convert.quantize`), so the int8 file
has PTQ's operators, tensor order, names and weight layouts. `tflm_scores` measures int8 files on
the same rows in TFLM, for keeping QAT only when it does not score lower.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinycomp import tflm
from tinycomp.data import Dataset
from tinycomp.errors import InvalidValue, ModelError
from tinycomp.metrics import CLASSIFY, Task
from tinycomp.models import (
    FINE_TUNE_LEARNING_RATE,
    choose_loss,
    compile_for_training,
    kernel_of,
    saved_config,
    set_seed,
)
from tinycomp.specs import ClusteringSpec
from tinycomp.train import EpochCallback, check_enough_training_data, check_fit_options, fit

VALIDATION_SPLIT = 0.1  # the last 10% of the training rows: not trained on, they decide QAT vs PTQ
# A kernel is clustered when its non-zero weights take at most MAX_CLUSTER_VALUES distinct values, each
# shared by at least MIN_SHARING weights on average (per output channel for Conv2D clustered per channel);
# a trained, unclustered kernel has about as many values as weights. TFMOT preserves at most 1024.
MAX_CLUSTER_VALUES = 256
MIN_SHARING = 4
# A kernel is sparse when at least this fraction of its weights is exactly zero; trained, unpruned
# float kernels have next to none.
SPARSE_FRACTION = 0.1
SCHEMES = {  # (clustered, sparse) → the scheme's name as recorded
    (False, False): "default-8bit",
    (True, False): "cluster-preserve",
    (False, True): "prune-preserve",
    (True, True): "prune-cluster-preserve",
}
_UNSUPPORTED = re.compile(r"Layer (\S+?):<class '([^']+)'> is not supported")


@dataclass
class Structure:
    """What QAT must keep: clustered layers (layer → its distinct kernel values, and how that was
    decided) and sparse layers (layer → fraction of exact zeros)."""

    clustered: dict[str, dict[str, Any]] = field(default_factory=dict)
    sparse: dict[str, float] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return SCHEMES[(bool(self.clustered), bool(self.sparse))]

    def describe(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "clustered_layers": self.clustered,
                "sparse_layers": {name: round(fraction, 6) for name, fraction in self.sparse.items()}}


@dataclass
class QatResult:
    """The model with the QAT-trained weights (plain tf_keras, same layers as the input), and how it was trained."""

    model: Any
    structure: Structure
    history: dict[str, list[float]]
    loss: dict[str, Any]
    seconds: float


def find_structure(model, sidecar: ClusteringSpec | None = None) -> Structure:
    """The clustered and sparse layers of `model` (see MAX_CLUSTER_VALUES, SPARSE_FRACTION).

    `sidecar` is the clustering spec `cluster` wrote next to the model: a layer it names counts as
    clustered when its kernel holds no more distinct values (per output channel when clustered per
    channel) than the spec's clusters, whatever its size; the weights decide every other layer.
    """
    named = {entry.name: entry for entry in (sidecar.layers if sidecar else ())}
    structure = Structure()
    for layer in model.layers:
        kernel = kernel_of(layer)
        if kernel is None:
            continue
        weights = np.asarray(kernel.numpy())
        zeros = float(np.mean(weights == 0)) if weights.size else 0.0
        if zeros >= SPARSE_FRACTION:
            structure.sparse[layer.name] = zeros
        clustered = _clustered(weights, layer, named.get(layer.name))
        if clustered is not None:
            structure.clustered[layer.name] = clustered
    return structure


def _clustered(weights: np.ndarray, layer, entry) -> dict[str, Any] | None:
    total = int(np.unique(weights).size)
    per_channel = _max_unique_per_channel(weights) if weights.ndim > 1 else total
    if entry is not None:
        count = per_channel if entry.per_channel else total
        if count <= entry.clusters:
            return {"values": total, "max_per_channel": per_channel, "by": "clustering sidecar and weights"}
    nonzero = weights[weights != 0]
    if nonzero.size and _shared(nonzero):
        return {"values": total, "max_per_channel": per_channel, "by": "weights"}
    if type(layer).__name__ == "Conv2D" and weights.ndim == 4:
        channels = [w[w != 0] for w in np.moveaxis(weights, -1, 0)]
        if all(c.size == 0 or _shared(c) for c in channels) and any(c.size for c in channels):
            return {"values": total, "max_per_channel": per_channel, "by": "weights (per output channel)"}
    return None


def _shared(values: np.ndarray) -> bool:
    distinct = int(np.unique(values).size)
    return distinct <= MAX_CLUSTER_VALUES and distinct * MIN_SHARING <= values.size


def _max_unique_per_channel(weights: np.ndarray) -> int:
    rows = np.moveaxis(weights, -1, 0).reshape(weights.shape[-1], -1)
    return max(int(np.unique(row).size) for row in rows)


def scheme_for(structure: Structure):
    """TFMOT's quantize scheme for the structure, or None for the default 8-bit scheme."""
    import tensorflow_model_optimization as tfmot

    combine = tfmot.experimental.combine
    if structure.clustered:
        return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=bool(structure.sparse))
    if structure.sparse:
        return combine.Default8BitPrunePreserveQuantizeScheme()
    return None


def qat_model(model, structure: Structure):
    """A copy of `model` wrapped for QAT in the structure's scheme; one ModelError naming the layers
    TFMOT cannot quantize (and their types) when it refuses."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    scheme = scheme_for(structure)
    quantization = tfmot.quantization.keras
    try:
        annotated = quantization.quantize_annotate_model(copy)
        # CQAT warns "No clustering performed" for every layer that is not clustered: expected, not news
        with quantization.quantize_scope(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No clustering performed", category=UserWarning)
            return quantization.quantize_apply(annotated, scheme) if scheme else quantization.quantize_apply(annotated)
    except (RuntimeError, ValueError) as e:
        raise _unsupported(model, scheme, e) from e


def _unsupported(model, scheme, error: Exception) -> ModelError:
    """The ModelError for a model TFMOT refuses to quantize: the layers its registry does not support."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_module,
    )

    registry = scheme.get_quantize_registry() if scheme else registry_module.Default8BitQuantizeRegistry()
    refused = [(layer.name, type(layer).__name__) for layer in model.layers if not registry.supports(layer)]
    match = _UNSUPPORTED.search(str(error))
    if match and not refused:
        refused = [(match.group(1), match.group(2).rsplit(".", 1)[-1])]
    what = (", ".join(f"{name} ({kind})" for name, kind in refused) if refused
            else str(error).strip().splitlines()[0][:300])
    scheme_name = type(scheme).__name__ if scheme else "Default8BitQuantizeScheme"
    return ModelError(f"TFMOT cannot quantize-annotate layer(s) {what} with {scheme_name}", "quantize --qat",
                      "use post-training quantization (quantize without --qat), or replace the layer with one TFMOT "
                      "supports (Conv2D, DepthwiseConv2D, Dense, pooling, ReLU, ...)")


def train_qat(model, data: Dataset, epochs: int, *, structure: Structure, batch_size: int = 128,
              learning_rate: float = FINE_TUNE_LEARNING_RATE, seed: int = 0, task: Task = CLASSIFY,
              on_epoch: EpochCallback | None = None) -> QatResult:
    """QAT-fine-tune `model` (not changed) on `data` for `epochs` in the structure's scheme, with the
    loss the model was saved with (models.compile_for_training); the last VALIDATION_SPLIT of the
    training rows are held out. Returns a copy of `model` holding the trained weights: clustered
    kernels keep their values, zeros of sparse kernels stay zero."""

    check_fit_options(epochs, batch_size, VALIDATION_SPLIT)
    check_enough_training_data(data, VALIDATION_SPLIT)
    if learning_rate <= 0:
        raise InvalidValue(f"learning rate must be positive, got {learning_rate}", "learning_rate", "e.g. 1e-4")
    start = time.perf_counter()
    set_seed(seed)
    wrapped = qat_model(model, structure)
    # the loss is chosen from the model itself: TFMOT's wrappers hide the output activation
    saved = saved_config(model)
    loss = choose_loss(model, task=task, saved_loss=saved.saved_loss if saved else None)
    compile_for_training(wrapped, learning_rate, task=task, loss=loss)
    history = fit(wrapped, data, epochs, batch_size, VALIDATION_SPLIT, on_epoch)
    trained = trained_copy(model, wrapped, structure)
    return QatResult(trained, structure, history, loss.describe(), time.perf_counter() - start)


def trained_copy(model, wrapped, structure: Structure):
    """A copy of `model` with the weights of the QAT model `wrapped` (each layer from its QuantizeWrapper,
    `quant_NAME`, or its unwrapped twin); sparse kernels get their zeros back exactly."""
    import tf_keras

    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    by_name = {layer.name: layer for layer in wrapped.layers}
    for layer in copy.layers:
        if not layer.weights:
            continue
        source = by_name.get("quant_" + layer.name, by_name.get(layer.name))
        if source is None:
            raise ModelError(f"the QAT model has no layer for {layer.name!r}", "quantize --qat",
                             "report this model: TFMOT's transforms changed its layers")
        layer.set_weights(_weights_for(layer, source))
        if layer.name in structure.sparse:
            original = kernel_of(model.get_layer(layer.name)).numpy()
            kernel = kernel_of(layer)
            kernel.assign(np.where(original == 0, 0, kernel.numpy()).astype(kernel.dtype.as_numpy_dtype))
    return copy


def _weights_for(layer, source) -> list[np.ndarray]:
    """`layer`'s weights as trained in `source`, its QAT twin, matched by variable name (`dense/kernel:0`):
    a QuantizeWrapper tracks the kernel itself, so its inner layer no longer lists it."""
    variables = {_short_name(v.name): v for v in source.weights}
    found = []
    for weight in layer.weights:
        variable = variables.get(_short_name(weight.name))
        if variable is None:
            raise ModelError(f"the QAT model has no weight {weight.name!r} for layer {layer.name!r}", "quantize --qat",
                             "report this model: TFMOT's wrapper changed its weights")
        found.append(np.asarray(variable.numpy()))
    return found


def _short_name(name: str) -> str:
    """`model/dense/kernel:0` → `dense/kernel`: the layer and the weight."""
    return "/".join(name.split(":")[0].split("/")[-2:])


def tflm_scores(files: dict[str, bytes], x: np.ndarray, y: np.ndarray, task: Task, jobs: int = 1,
                source: str = "model") -> dict[str, float]:
    """The task's score (accuracy, or SNR in dB) of each int8 file on rows (x, y), run in TFLM workers."""
    chunks = [idx for idx in np.array_split(np.arange(len(x)), max(1, min(jobs, len(x)))) if len(idx)]
    args, owners = [], []
    for name, data in files.items():
        for idx in chunks:
            args.append((data, np.asarray(x[idx[0]:idx[-1] + 1]), False))
            owners.append(name)
    results = tflm.run_parallel(tflm.predict_chunk, args, workers=max(1, jobs), source=source)
    scores = {}
    for name in files:
        outputs = np.concatenate([r.outputs for r, owner in zip(results, owners) if owner == name])
        scores[name] = float(task.plan_score(outputs, np.asarray(y)))
    return scores


def int8_structure(model_bytes: bytes, structure: Structure) -> dict[str, dict[str, Any]]:
    """For each clustered or sparse layer, its int8 weight tensor in `model_bytes`: distinct values (in
    all, and at most per output channel) and the fraction of zeros, to check QAT kept the structure."""
    from tinycomp.tflite.find_tensors import match_layer, max_unique_along, weight_tensors
    from tinycomp.tflite.model import parse_tflite

    weights = weight_tensors(parse_tflite(model_bytes))
    found = {}
    for name in dict.fromkeys([*structure.clustered, *structure.sparse]):
        array = np.asarray(match_layer(weights, name, "int8 model").array)
        found[name] = {"values": int(np.unique(array).size),
                       "max_per_channel": max_unique_along(array, 0) if array.ndim > 1 else int(np.unique(array).size),
                       "zero_fraction": round(float(np.mean(array == 0)), 6)}
    return found
