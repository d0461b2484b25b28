"""Keras 3 model files: loaded by Keras 3 after the safety check, rebuilt as tf_keras, checked, written back.

TFMOT clusters tf_keras models only, and tf_keras cannot read Keras 3 files (InputLayer has
`batch_shape`, dtypes are policy objects, functional nodes are stored as call arguments). So a
Keras 3 model is loaded by Keras 3 (safe mode, and only after `model_config.check_safe` has read
its config as data), and its config is translated into tf_keras's form layer by layer:

- Keras 3 serialized objects lose `module`/`registered_name`; dtype policies become their names;
- InputLayer `batch_shape` becomes `batch_input_shape`;
- options that tf_keras's layer does not have are dropped when unset (None/False/empty) and refused
  otherwise (e.g. a LoRA rank), naming the layer and the option;
- functional nodes `{"args": [keras tensors], "kwargs": ...}` become `[[layer, node, tensor, kwargs]]`.

The tf_keras model is built from that config (built-in tf_keras classes only), given the Keras 3
weights layer by layer, and both models must give the same outputs on random inputs
(`check_same_outputs`) before anything else runs. Writing back (`save_as_keras3`) copies tf_keras
weights into the user's Keras 3 model, so `cluster -o x.keras` gives a file Keras 3 loads.
"""

from __future__ import annotations

import inspect
import os
import warnings
from typing import Any

import numpy as np

from tinycomp import fileio
from tinycomp.errors import InputFileError, ModelError, OutputFileError
from tinycomp.model_config import without_tf_keras_equivalent

NO_EQUIVALENT_HINT = ("cluster and plan need tf_keras layers; convert the Keras 3 model with `tinycomp convert` "
                      "(or `quantize`) and compress the .tflite with `tinycomp palettize`")
# tf_keras's Layer takes these as keyword arguments besides each class's own parameters.
LAYER_BASE_KEYS = frozenset({"name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
                             "batch_size", "weights", "activity_regularizer", "autocast", "implementation"})
MODEL_KEYS = ("name", "trainable", "input_layers", "output_layers", "build_input_shape")
MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
DTYPE_POLICIES = frozenset({"DTypePolicy", "FloatDTypePolicy", "Policy"})
CHECK_ROWS = 16
RELATIVE_TOLERANCE = 1e-4  # of the largest output magnitude (at least 1): float32 round-off, not a change


def load_native(path: str | os.PathLike, *, trust: bool = False) -> Any:
    """The Keras 3 model in the file, not compiled; in safe mode unless `trust` (call `check_safe` first)."""
    import keras

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.saving.load_model(str(path), compile=False, safe_mode=not trust)
    except Exception as e:  # Keras raises many types for files it cannot read
        raise InputFileError(f"cannot load Keras 3 model: {_first_line(e)}", str(path),
                             "give a .keras or .h5 file written by Keras 3 model.save") from e


def check_has_equivalents(saved: Any) -> None:
    """One ModelError naming every layer (class) tf_keras has no built-in layer for."""

    missing = without_tf_keras_equivalent(saved)
    if missing:
        listed = ", ".join(f"{name} ({class_name})" for name, class_name in missing)
        raise ModelError(f"Keras 3 layers with no tf_keras equivalent: {listed}", str(saved.path), NO_EQUIVALENT_HINT)


def to_tf_keras(model3: Any, where: str) -> Any:
    """A tf_keras model with the architecture and weights of the Keras 3 `model3`, checked to give the
    same outputs on random inputs."""
    import tf_keras

    config = translate_model(type(model3).__name__, model3.get_config(), where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls = tf_keras.Sequential if config["class_name"] == "Sequential" else tf_keras.Model
            model = cls.from_config(config["config"])
    except ModelError:
        raise
    except Exception as e:  # tf_keras raises TypeError/ValueError for configs it cannot build
        raise ModelError(f"cannot rebuild the Keras 3 model in tf_keras: {_first_line(e)}", where,
                         NO_EQUIVALENT_HINT) from e
    copy_weights(model3, model, where)
    check_same_outputs(model3, model, where)
    return model


def translate_model(class_name: str, config: dict, where: str) -> dict:
    """A Keras 3 Sequential/Functional config in tf_keras's form ({"class_name", "config"})."""
    layers = []
    node_offsets = _node_offsets(config.get("layers", []))
    node_counts = {str(layer.get("name")): len(layer.get("inbound_nodes") or []) for layer in config.get("layers", [])}
    for layer in config.get("layers", []):
        layer_class = str(layer.get("class_name"))
        layer_config = layer.get("config") or {}
        if layer_class in MODEL_CLASSES:
            inner = translate_model(layer_class, layer_config, where)
            entry: dict[str, Any] = {"class_name": inner["class_name"], "config": inner["config"]}
        else:
            entry = {"class_name": layer_class, "config": translate_layer(layer_class, layer_config, where)}
        if "name" in layer:
            entry["name"] = layer["name"]
        if "inbound_nodes" in layer:
            nodes = [translate_node(node, str(layer.get("name")), where) for node in layer["inbound_nodes"]]
            entry["inbound_nodes"] = [_renumber(node, node_offsets, node_counts, where) for node in nodes]
        layers.append(entry)
    translated: dict[str, Any] = {key: config[key] for key in MODEL_KEYS if key in config}
    translated["layers"] = layers
    return {"class_name": "Sequential" if class_name == "Sequential" else "Functional", "config": translated}


def _node_offsets(layers: list) -> dict[str, int]:
    """1 for nested models built on an Input: tf_keras counts the node that built them as their node 0,
    Keras 3 does not."""
    offsets = {}
    for layer in layers:
        if layer.get("class_name") in MODEL_CLASSES:
            inner = (layer.get("config") or {}).get("layers") or [{}]
            built_on_input = layer.get("class_name") != "Sequential" or inner[0].get("class_name") == "InputLayer"
            offsets[str(layer.get("name"))] = int(built_on_input)
    return offsets


def _renumber(node: list, offsets: dict[str, int], counts: dict[str, int], where: str) -> list:
    """The node with tf_keras's node indices, every reference checked to exist (tf_keras's rebuild loops
    forever on a node it can never reach)."""
    renumbered = []
    for name, node_index, tensor_index, kwargs in node:
        if name not in counts or not 0 <= node_index < max(counts[name], 1):
            raise ModelError(f"the model config refers to node {node_index} of layer {name!r}, which it does not have",
                             where, "save the model again with Keras 3 model.save")
        renumbered.append([name, node_index + offsets.get(name, 0), tensor_index, kwargs])
    return renumbered


def translate_layer(class_name: str, config: dict, where: str) -> dict:
    """One layer's Keras 3 config as the tf_keras layer of the same class takes it."""
    import tf_keras

    cls = getattr(tf_keras.layers, class_name, None)
    name = config.get("name", "?")
    if not (isinstance(cls, type) and issubclass(cls, tf_keras.layers.Layer)):
        raise ModelError(f"Keras 3 layers with no tf_keras equivalent: {name} ({class_name})", where,
                         NO_EQUIVALENT_HINT)
    accepted = accepted_keys(cls)
    translated = {}
    for key, value in config.items():
        value = plain(value)
        if class_name == "InputLayer" and key == "batch_shape":
            key = "batch_input_shape"
        if key not in accepted:
            if value in (None, False, [], {}, ""):
                continue  # a Keras 3 option left unset
            raise ModelError(f"layer {name!r} ({class_name}) sets the Keras 3 option {key}={value!r}, which tf_keras "
                             "does not have", where, NO_EQUIVALENT_HINT)
        translated[key] = value
    return translated


def accepted_keys(cls: type) -> frozenset[str]:
    """The keyword arguments a tf_keras layer class takes: its own and its bases' up to tf_keras's Layer."""
    import tf_keras

    keys = set(LAYER_BASE_KEYS)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is tf_keras.layers.Layer:  # its **kwargs are LAYER_BASE_KEYS
            break
        parameters = inspect.signature(init).parameters
        keys.update(p.name for p in parameters.values()
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self")
        if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
            break
    return frozenset(keys)


def plain(value: Any) -> Any:
    """A Keras 3 config value in tf_keras's form: dtype policies → their names; serialized objects
    (initializers, regularizers, constraints) → {"class_name", "config"} without unset (None) fields."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "class_name" in value and "config" in value:
        inner = value["config"]
        if value["class_name"] in DTYPE_POLICIES and isinstance(inner, dict):
            return inner.get("name")
        if isinstance(inner, dict):
            inner = {k: plain(v) for k, v in inner.items() if v is not None}
        return {"class_name": value["class_name"], "config": inner}
    return {k: plain(v) for k, v in value.items()}


def translate_node(node: Any, layer_name: str, where: str) -> list:
    """A Keras 3 functional node ({"args", "kwargs"}) as tf_keras's [[layer, node, tensor, kwargs], ...]."""
    if not isinstance(node, dict):  # already in tf_keras's form
        return node
    history: list[list] = []
    _collect_tensors(node.get("args", []), history)
    kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if v is not None}
    in_kwargs: list[list] = []
    _collect_tensors(kwargs, in_kwargs)
    if in_kwargs or not history:
        raise ModelError(f"layer {layer_name!r} is called in a way tf_keras cannot rebuild "
                         f"({'tensor keyword arguments' if in_kwargs else 'no input tensors'})", where,
                         NO_EQUIVALENT_HINT)
    entries = [[str(h[0]), int(h[1]), int(h[2]), {}] for h in history]
    entries[0][3] = kwargs
    return entries


def _collect_tensors(value: Any, found: list[list]) -> None:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            found.append(list((value.get("config") or {}).get("keras_history") or ["?", 0, 0]))
            return
        for v in value.values():
            _collect_tensors(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect_tensors(v, found)


def copy_weights(source: Any, target: Any, where: str) -> None:
    """Give each layer of `target` the weights of `source`'s layer of the same name (top level; a
    nested model's weights as one list)."""
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            target.get_layer(layer.name).set_weights(weights)
        except ValueError as e:
            raise ModelError(f"the weights of layer {layer.name!r} do not fit its rebuilt layer: {_first_line(e)}",
                             where, NO_EQUIVALENT_HINT) from e


def check_same_outputs(reference: Any, rebuilt: Any, where: str, *, seed: int = 0) -> float:
    """The largest output difference of the two models on random inputs; ModelError when it is more than
    float32 round-off (RELATIVE_TOLERANCE of the largest output)."""
    shape = tuple(int(d) for d in reference.inputs[0].shape[1:])
    given = getattr(reference.inputs[0], "dtype", "float32")
    dtype = np.dtype(str(getattr(given, "name", given)))  # a tf.DType (tf_keras) or a name (Keras 3)
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        x = rng.integers(0, 2, size=(CHECK_ROWS, *shape)).astype(dtype)
    else:
        x = rng.standard_normal((CHECK_ROWS, *shape)).astype(np.float32)
    expected = np.asarray(reference(x, training=False), dtype=np.float64)
    got = np.asarray(rebuilt(x, training=False), dtype=np.float64)
    if expected.shape != got.shape:
        raise ModelError(f"the rebuilt model's outputs have shape {got.shape}, the Keras 3 model's {expected.shape}",
                         where, NO_EQUIVALENT_HINT)
    difference = float(np.max(np.abs(expected - got))) if expected.size else 0.0
    if not difference <= RELATIVE_TOLERANCE * max(1.0, float(np.max(np.abs(expected)))):
        raise ModelError(f"the tf_keras rebuild of the Keras 3 model gives different outputs on random inputs "
                         f"(largest difference {difference:.3g})", where, NO_EQUIVALENT_HINT)
    return difference


def save_as_keras3(model: Any, source_path: str | os.PathLike, output: str | os.PathLike, *, trust: bool = False,
                   training_config: dict | None = None) -> None:
    """Write tf_keras `model` (rebuilt from the Keras 3 file `source_path`, e.g. clustered) as a Keras 3
    file: the source model with `model`'s weights, checked to give the same outputs, compiled with its
    saved `training_config` when Keras 3 can rebuild that safely."""

    model3 = load_native(source_path, trust=trust)
    copy_weights(model, model3, str(output))
    check_same_outputs(model, model3, str(output))
    if training_config:
        _compile_as_saved(model3, training_config)
    try:
        with fileio.atomic_path(output) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model3.save(str(tmp))
    except OSError as e:
        raise OutputFileError(f"cannot write Keras model: {e.strerror or e}", str(output)) from e


def _compile_as_saved(model3: Any, training_config: dict) -> None:
    """Compile with the saved loss and optimizer (fresh state, built so that Keras 3 loads the file without
    a warning); when Keras 3 cannot rebuild them without custom code, the file is written uncompiled."""
    import keras

    loss = training_config.get("loss")
    optimizer = training_config.get("optimizer") or training_config.get("optimizer_config") or "adam"
    if loss is None:
        return
    try:
        loss = keras.losses.deserialize(loss) if isinstance(loss, dict) else keras.losses.get(loss)
        optimizer = keras.optimizers.deserialize(optimizer) if isinstance(optimizer, dict) else keras.optimizers.get(
            optimizer)
    except Exception:  # a custom loss or optimizer, not registered in this process
        return
    model3.compile(optimizer=optimizer, loss=loss)
    model3.optimizer.build(model3.trainable_variables)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
