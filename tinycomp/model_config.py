"""Reading a Keras model's saved architecture without deserializing it, and refusing unsafe ones.

Loading a Keras model can run code: a Lambda layer stores its Python function's bytecode, and
`tf_keras.models.load_model` runs it (for .h5 even with `safe_mode=True`). So before anything is
deserialized, the architecture JSON is read as plain data:

- .h5: the `model_config` attribute of the HDF5 root (and `training_config` for the loss);
- .keras (a zip, tf_keras "keras v3" or Keras 3): `config.json` (with its `compile_config`);
- SavedModel directory written by tf_keras: the root node's JSON metadata in `keras_metadata.pb`.

Which Keras wrote the file is read too (`keras_version`: 2 for tf_keras, 3 for Keras 3, from the
.keras zip's `metadata.json` or the .h5's `keras_version` attribute). Every layer class is checked
against the built-in layers of that Keras (tf_keras: also TFMOT's clustering wrappers); Lambda
layers and unknown classes are refused with `UnsafeModelError` naming the layer. Subclassed, multi-input and multi-output models are refused with one
`ModelError` saying what is supported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tinycomp import limits
from tinycomp.errors import InputFileError, ModelError, UnsafeModelError

MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})
# TFMOT's clustering wrappers: tinycomp loads models saved mid-clustering inside cluster_scope().
TFMOT_CLASSES = frozenset({"ClusterWeights", "ClusterWeightsMHA", "ClusterWeightsRNN"})
# Built-in layers that tf_keras adds for raw TF ops in Functional models: the op is stored by its
# TF API name (e.g. "math.add") and looked up, not stored as code.
TF_OP_CLASSES = frozenset({"TFOpLambda", "SlicingOpLambda", "ClassMethod", "InstanceMethod", "InstanceProperty"})
METADATA_MAX_BYTES = 64 * 1024  # a .keras zip's metadata.json holds a version and a date
CODE_CLASSES = frozenset({"Lambda"})  # built-in, but they carry Python bytecode
# Keras 3 layers that wrap another framework's objects (a pickled torch module, a SavedModel at a path, JAX
# functions): not deserialized without --trust-model.
KERAS3_FOREIGN_CLASSES = frozenset({"TorchModuleWrapper", "TFSMLayer", "JaxLayer", "FlaxLayer"})
SUPPORTED = ("supported: Functional and Sequential tf_keras models with one input and one output "
             "(Conv1D/Conv2D, DepthwiseConv2D, SeparableConv2D, Dense, BatchNormalization, Add/Concatenate, pooling...)")
TRUST_HINT = "re-run with --trust-model if you trust this file"
LOAD_HINTS = {
    "h5": "give an .h5 written by `tinycomp train` or `cluster`, or by tf_keras model.save",
    "keras": "give a .keras file written by tinycomp or by model.save('model.keras') (tf_keras or Keras 3)",
    "savedmodel": "give a SavedModel directory written by tf_keras model.save(dir)",
}


@dataclass(frozen=True)
class SavedModelConfig:
    """The saved architecture and training configuration, read as data (nothing deserialized)."""

    path: Path
    format: str  # h5 | keras | savedmodel
    config: dict  # {"class_name": ..., "config": {...}} of the model
    training_config: dict | None  # {"loss": ...} as saved by model.compile, or None
    keras_version: int = 2  # 2: tf_keras (Keras 2), 3: Keras 3

    @property
    def saved_loss(self):
        """The saved loss (a name or a {"class_name", "config"} dict), or None."""
        return (self.training_config or {}).get("loss")


def read_saved_config(path: str | Path, fmt: str) -> SavedModelConfig:
    """The model's architecture and training config from the file, without running any of it."""
    p = Path(path)
    readers = {"h5": _read_h5, "keras": _read_keras_zip, "savedmodel": _read_saved_model}
    try:
        config, training = readers[fmt](p)
        recorded = _keras_version(p, fmt)
    except (InputFileError, ModelError):
        raise
    except Exception as e:  # h5py, zip, JSON and protobuf errors all mean "cannot read the architecture"
        raise InputFileError(f"cannot load Keras model: {_first_line(e)}", str(p), LOAD_HINTS[fmt]) from e
    if not isinstance(config, dict) or "class_name" not in config:
        raise InputFileError("the file has no model architecture (weights only?)", str(p),
                             "save the whole model with model.save(), not model.save_weights()")
    version = recorded if recorded is not None else (3 if _looks_like_keras3(config) else 2)
    return SavedModelConfig(p, fmt, config, training if isinstance(training, dict) else None, version)


def _looks_like_keras3(config: dict) -> bool:
    """For files that record no Keras version: Keras 3's InputLayer has `batch_shape` (tf_keras's
    `batch_input_shape`)."""
    return any(class_name == "InputLayer" and "batch_shape" in (layer.get("config") or {})
               for _name, class_name, layer in iter_layers(config))


def _keras_version(p: Path, fmt: str) -> int | None:
    """3 when Keras 3 wrote the file, 2 for tf_keras (from the recorded version), None when none is recorded."""
    version = ""
    if fmt == "h5":
        import h5py

        with h5py.File(p, "r") as f:
            version = f.attrs.get("keras_version", "")
    elif fmt == "keras":
        import zipfile

        with zipfile.ZipFile(p) as z:
            if "metadata.json" in z.namelist():
                with z.open("metadata.json") as f:
                    metadata = json.loads(f.read(METADATA_MAX_BYTES))
                version = metadata.get("keras_version", "") if isinstance(metadata, dict) else ""
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    if not version:
        return None
    return 3 if str(version).startswith("3.") else 2


def _read_h5(p: Path) -> tuple[dict | None, dict | None]:
    import h5py

    with h5py.File(p, "r") as f:
        return (_json_attr(limits.read_h5_attribute(f.attrs, "model_config", str(p))),
                _json_attr(limits.read_h5_attribute(f.attrs, "training_config", str(p))))


def _json_attr(value) -> dict | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return json.loads(value)


def _read_keras_zip(p: Path) -> tuple[dict, dict | None]:
    import zipfile

    limits.check_keras_archive(p)
    with zipfile.ZipFile(p) as z:
        config = json.loads(limits.read_config_member(z, "config.json", str(p)))
    compile_config = config.get("compile_config") if isinstance(config, dict) else None
    return config, compile_config


def _read_saved_model(p: Path) -> tuple[dict, dict | None]:
    serialized = limits.read_config_file(p / "keras_metadata.pb", "keras_metadata.pb")  # size checked first
    from tf_keras.protobuf import saved_metadata_pb2  # a protobuf message definition; parsing runs no model code

    metadata = saved_metadata_pb2.SavedMetadata()
    metadata.ParseFromString(serialized)
    roots = [node for node in metadata.nodes if node.node_path == "root"]
    if not roots:
        raise InputFileError("keras_metadata.pb has no root model", str(p), "save the model with tf_keras model.save(dir)")
    root = json.loads(roots[0].metadata)
    if "config" not in root or not root.get("is_graph_network", True):
        raise ModelError(f"subclassed model {root.get('class_name', '?')!r} cannot be read", str(p), SUPPORTED)
    return {"class_name": root.get("class_name"), "config": root["config"]}, root.get("training_config")


def check_structure(saved: SavedModelConfig) -> None:
    """Refuse subclassed, multi-input and multi-output models (from the saved config)."""
    where = str(saved.path)
    root = saved.config
    if root.get("class_name") not in MODEL_CLASSES:
        raise ModelError(f"subclassed model {root.get('class_name')!r} is not supported", where, SUPPORTED)
    config = root.get("config") or {}
    if not isinstance(config.get("layers"), list):
        raise ModelError(f"model {root.get('class_name')!r} has no layer list (subclassed?)", where, SUPPORTED)
    for key, what in (("input_layers", "inputs"), ("output_layers", "outputs")):
        count = _count_endpoints(config.get(key))
        if count > 1:
            raise ModelError(f"the model has {count} {what}", where, SUPPORTED)


def _count_endpoints(endpoints) -> int:
    """input_layers/output_layers is [name, node, tensor] for one endpoint or a list of those."""
    if not endpoints:
        return 0
    if isinstance(endpoints[0], str):
        return 1
    return len(endpoints)


def check_safe(saved: SavedModelConfig) -> None:
    """Raise UnsafeModelError for the first layer whose loading would run code from the file."""
    allowed = allowed_classes() if saved.keras_version < 3 else keras3_allowed_classes()
    keras_name = "tf_keras" if saved.keras_version < 3 else "Keras 3"
    for name, class_name, layer in iter_layers(saved.config):
        if class_name in CODE_CLASSES:
            raise UnsafeModelError(f"model has a {class_name} layer {name!r} whose Python code would run on load",
                                   str(saved.path), TRUST_HINT)
        registered = layer.get("registered_name")
        module = layer.get("module")
        foreign_module = (saved.keras_version >= 3 and isinstance(module, str)
                          and module.split(".")[0] != "keras")
        if class_name not in allowed or registered not in (None, class_name) or foreign_module:
            shown = registered or class_name
            raise UnsafeModelError(f"model has a custom layer {name!r} of class {shown!r}, which is not a built-in "
                                   f"{keras_name} layer; loading it would run code from outside {keras_name}",
                                   str(saved.path), TRUST_HINT)


def iter_layers(model_config: dict) -> Iterator[tuple[str, str, dict]]:
    """(layer name, class name, layer dict) for every layer, nested models and wrapped layers included."""
    config = model_config.get("config") or {}
    for layer in config.get("layers", []) if isinstance(config, dict) else []:
        if not isinstance(layer, dict):
            continue
        class_name = str(layer.get("class_name"))
        layer_config: dict = layer["config"] if isinstance(layer.get("config"), dict) else {}
        name = str(layer.get("name") or layer_config.get("name") or "?")
        yield name, class_name, layer
        if class_name in MODEL_CLASSES:
            yield from iter_layers(layer)
        inner = layer_config.get("layer")
        if isinstance(inner, dict) and "class_name" in inner:  # ClusterWeights, TimeDistributed, Bidirectional
            inner_name = str((inner.get("config") or {}).get("name") or "?")
            yield inner_name, str(inner["class_name"]), inner
            if inner["class_name"] in MODEL_CLASSES:
                yield from iter_layers(inner)


_ALLOWED: frozenset[str] | None = None


def allowed_classes() -> frozenset[str]:
    """Class names that deserialize without running code from the file."""
    global _ALLOWED
    if _ALLOWED is None:
        import tf_keras

        builtin = {name for name, obj in vars(tf_keras.layers).items()
                   if isinstance(obj, type) and issubclass(obj, tf_keras.layers.Layer)}
        _ALLOWED = frozenset((builtin - CODE_CLASSES) | MODEL_CLASSES | TFMOT_CLASSES | TF_OP_CLASSES | {"InputLayer"})
    return _ALLOWED


_KERAS3_ALLOWED: frozenset[str] | None = None


def keras3_allowed_classes() -> frozenset[str]:
    """Keras 3's built-in layer classes (Lambda excepted): Keras 3 deserializes them in safe mode without
    running code from the file."""
    global _KERAS3_ALLOWED
    if _KERAS3_ALLOWED is None:
        import keras

        builtin = {name for name, obj in vars(keras.layers).items()
                   if isinstance(obj, type) and issubclass(obj, keras.layers.Layer)}
        _KERAS3_ALLOWED = frozenset((builtin - CODE_CLASSES - KERAS3_FOREIGN_CLASSES) | MODEL_CLASSES | {"InputLayer"})
    return _KERAS3_ALLOWED


def without_tf_keras_equivalent(saved: SavedModelConfig) -> list[tuple[str, str]]:
    """(layer name, class) of every layer of a Keras 3 model that tf_keras has no built-in layer for."""
    tf_keras_classes = allowed_classes() - TFMOT_CLASSES - TF_OP_CLASSES
    return [(name, class_name) for name, class_name, _layer in iter_layers(saved.config)
            if class_name not in tf_keras_classes]


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
