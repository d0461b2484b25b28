"""Keras → TFLite flatbuffer bytes: float32, and int8 / dynamic-range / float16 quantization.

The model is a tf_keras model, a Keras 3 model (converted directly) or a plain SavedModel's serving
signature (saved_model.SignatureModel).

Conversion goes through a tf.function concrete function with a fixed batch-1 input shape, as
the TFLM tutorial does: TFLM has no dynamic tensors, and a Keras model converted directly may
get a dynamic batch dimension. The int8 representative dataset walks the given calibration
samples in order (the tutorial draws them with np.random), so the same model and samples give
byte-identical .tflite bytes on every run.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tinycomp.errors import DataError, InvalidValue, ModelError
from tinycomp.native_output import captured_fds
from tinycomp.saved_model import SignatureModel

METHODS = ("int8", "int16x8", "dynamic", "float16")
IO_TYPES = ("uint8", "int8", "float32")


def convert_float32(model) -> bytes:
    """Float32 TFLite model with a batch-1 input."""
    return _convert(_converter(model))


def quantize(model, method: str = "int8", io: str = "uint8", calibration: np.ndarray | None = None,
             per_tensor_dense: bool = False) -> bytes:
    """Quantized TFLite model.

    int8: full-integer (TFLITE_BUILTINS_INT8) calibrated on `calibration` (rows shaped like the
    model input), with input/output tensors of type `io`. int16x8: 16-bit activations and 8-bit
    weights (EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8), calibrated the same
    way, float32 input/output; TFLM runs it. dynamic: int8 weights, float
    activations, no calibration. float16: float16 weights. `io` only applies to int8; dynamic
    and float16 models always take and return float32.

    `per_tensor_dense` quantizes FULLY_CONNECTED weights with one scale per tensor instead of
    one per output channel: a dense layer clustered to k values then holds exactly k int8
    values, so its LUT needs one small table, and the per-channel scales (12 bytes per
    channel, repeated by the DECODE output) disappear from the file.
    """
    import tensorflow as tf

    if method not in METHODS:
        raise InvalidValue(f"unknown quantization method {method!r}", "method", f"choose one of {', '.join(METHODS)}")
    if io not in IO_TYPES:
        raise InvalidValue(f"unknown input/output type {io!r}", "io", f"choose one of {', '.join(IO_TYPES)}")
    converter = _converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if method == "int8":
        samples = _check_calibration(model, calibration)
        converter.representative_dataset = lambda: _representative(samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = getattr(tf, io)
        converter.inference_output_type = getattr(tf, io)
        # The converter's only switch for this; it exists since TF 2.13.
        converter._experimental_disable_per_channel_quantization_for_dense_layers = per_tensor_dense
    elif method == "int16x8":
        samples = _check_calibration(model, calibration)
        converter.representative_dataset = lambda: _representative(samples)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif method == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return _convert(converter)


def batch1_input_shape(model) -> list[int]:
    """The model's single input shape with the batch dimension fixed to 1."""

    if isinstance(model, SignatureModel):
        return model.batch1_shape()
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        raise ModelError(f"the model has {len(inputs)} inputs; conversion supports exactly one",
                         "model inputs", "give a single-input Keras model")
    dims = list(inputs[0].shape)[1:]
    if any(d is None for d in dims):
        raise ModelError(f"the model input shape {tuple(inputs[0].shape)} has unknown dimensions", "model input",
                         "TFLM needs fixed shapes: build the model with a fully specified Input shape")
    return [1] + [int(d) for d in dims]


def _converter(model):
    import tensorflow as tf


    if isinstance(model, SignatureModel):  # a plain SavedModel: its serving signature at batch 1
        return tf.lite.TFLiteConverter.from_concrete_functions([model.concrete_function()], model.module)
    shape = batch1_input_shape(model)
    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec(shape=shape, dtype=tf.float32))
    # Passing the model as trackable object keeps its variables alive during conversion.
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)


def _check_calibration(model, calibration: np.ndarray | None) -> np.ndarray:
    if calibration is None or len(calibration) == 0:
        raise DataError("int8 quantization needs calibration samples", "calibration",
                        "pass representative inputs (e.g. 100 training images), or use --method dynamic")
    samples = np.asarray(calibration, dtype=np.float32)
    expected = tuple(batch1_input_shape(model)[1:])
    if samples.shape[1:] != expected and int(np.prod(samples.shape[1:])) == int(np.prod(expected)) and (
            samples.shape[1:] == expected + (1,) or samples.shape[1:] + (1,) == expected):
        samples = samples.reshape((len(samples), *expected))  # only a trailing channel axis of 1 differs
    if samples.shape[1:] != expected:
        raise DataError(f"calibration rows have shape {samples.shape[1:]} but the model expects {expected}",
                        "calibration", "use the dataset the model was trained on")
    return samples


def _representative(samples: np.ndarray) -> Iterator[list[np.ndarray]]:
    for sample in samples:
        yield [sample[np.newaxis]]


def _convert(converter) -> bytes:
    try:
        with captured_fds():  # the converter prints MLIR diagnostics from C++
            return bytes(converter.convert())
    except Exception as e:  # converter errors are long MLIR dumps; keep the line that says why
        raise ModelError(f"TFLite conversion failed: {_reason(e)}", "tf.lite.TFLiteConverter",
                         "check that every layer has a TFLite builtin operator") from e


def _reason(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    flagged = [line for line in lines if "error:" in line.lower()]
    reason = (flagged or lines or [type(error).__name__])[0]
    return reason[:300]
