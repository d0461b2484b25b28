"""Plain SavedModels (no Keras metadata: a tf.Module, a TF 2.3-era or Keras 3 `export`): their serving signature.

Such a model has no layers to cluster, but TFLiteConverter converts and quantizes it through a
concrete function. `SignatureModel` wraps the serving signature (one input, one output) with what
tinycomp's conversion, calibration and evaluation ask of a model: `input_shape`/`output_shape` with
a batch dimension, a call on a batch, and a concrete function with a fixed batch-1 input (TFLM has
no dynamic tensors). Loading a SavedModel reads a TensorFlow graph; it runs no Python code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinycomp.errors import InputFileError, ModelError

SERVING_KEY = "serving_default"
ONE_INPUT_HINT = "export a serving signature with one input tensor and one output tensor"
NOT_KERAS_HINT = ("quantize it with `tinycomp quantize` and compress the int8 .tflite with `tinycomp palettize` "
                  "(no fine-tuning needed)")


@dataclass
class SignatureModel:
    """A SavedModel's serving signature with one input and one output."""

    path: str
    module: Any  # what tf.saved_model.load returned (keeps the variables alive)
    function: Any  # the signature's concrete function
    input_name: str
    input_dtype: Any  # tf.DType
    input_shape: tuple  # with the batch dimension (None or a number)
    output_name: str
    output_shape: tuple

    def __call__(self, x: Any, training: bool = False) -> Any:
        import tensorflow as tf

        return self.function(**{self.input_name: tf.convert_to_tensor(np.asarray(x), self.input_dtype)})[self.output_name]

    def batch1_shape(self) -> list[int]:
        dims = list(self.input_shape[1:])
        if any(d is None for d in dims):
            raise ModelError(f"the serving signature's input shape {self.input_shape} has unknown dimensions",
                             self.path, "TFLM needs fixed shapes: export the signature with a fully specified shape")
        return [1] + [int(d) for d in dims]

    def concrete_function(self) -> Any:
        """The signature as a concrete function of one batch-1 input tensor, returning the one output."""
        import tensorflow as tf

        function = tf.function(lambda x: self.function(**{self.input_name: x})[self.output_name])
        return function.get_concrete_function(tf.TensorSpec(self.batch1_shape(), self.input_dtype))


def load_signature_model(path: str | Path) -> SignatureModel:
    """The serving signature of the SavedModel directory `path` (or its only signature)."""
    import tensorflow as tf

    where = str(path)
    try:
        module = tf.saved_model.load(where)
    except Exception as e:  # TensorFlow raises many types for unreadable SavedModels
        raise InputFileError(f"cannot load SavedModel: {_first_line(e)}", where,
                             "give a directory written by tf.saved_model.save") from e
    signatures = dict(module.signatures)
    if not signatures:
        raise ModelError("the SavedModel has no serving signature", where,
                         "save it with tf.saved_model.save(module, dir, signatures=...)")
    key = SERVING_KEY if SERVING_KEY in signatures else next(iter(signatures)) if len(signatures) == 1 else None
    if key is None:
        raise ModelError(f"the SavedModel has {len(signatures)} signatures and none is {SERVING_KEY!r}", where,
                         f"export the one to convert as {SERVING_KEY!r}")
    function = signatures[key]
    inputs = function.structured_input_signature[1]
    outputs = function.structured_outputs
    if len(inputs) != 1 or not isinstance(outputs, dict) or len(outputs) != 1:
        count = len(outputs) if isinstance(outputs, dict) else "?"
        raise ModelError(f"signature {key!r} has {len(inputs)} inputs and {count} outputs", where, ONE_INPUT_HINT)
    (input_name, spec), (output_name, output) = next(iter(inputs.items())), next(iter(outputs.items()))
    if spec.shape.rank is None or spec.shape.rank < 2:
        raise ModelError(f"signature {key!r} takes an input of shape {spec.shape}; expected a batch of rows", where,
                         ONE_INPUT_HINT)
    return SignatureModel(where, module, function, input_name, spec.dtype, tuple(spec.shape.as_list()),
                          output_name, tuple(output.shape.as_list()))


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]
