"""Models the TFLM interpreter cannot run, evaluated with TensorFlow Lite's interpreter instead.

TFLM refuses dynamic-range ("hybrid": int8 weights feeding float operators) models and has no
float16 kernels. tinycomp's `quantize --method dynamic|float16` writes such files; they are
scored with `tf.lite.Interpreter` (runs in "TFLite") and flagged as not running on a
microcontroller. `why_not_tflm` decides from the flatbuffer alone, before TFLM sees it.
"""

from __future__ import annotations

import time

import numpy as np

from tinycomp.native_output import captured_fds, import_tensorflow_quietly
from tinycomp.tflite.model import schema

NOT_ON_MCU_NOTE = "{why}: evaluated with the TFLite interpreter; this file will not run on a microcontroller (TFLM)"


def why_not_tflm(model) -> str | None:
    """'float16 model' or 'dynamic-range (hybrid) model' when TFLM cannot run the parsed model, else None."""

    types = schema().TensorType
    for subgraph in model.subgraphs:
        if any(t.dtype == types.FLOAT16 for t in subgraph.tensors):
            return "float16 model"
        for op in subgraph.operators:
            if op.opcode_name == "DEQUANTIZE":
                continue
            constant_int8 = any(t is not None and t.dtype == types.INT8 and t.buffer is not None and t.buffer.data
                                for t in op.inputs)
            float_out = any(t is not None and t.dtype == types.FLOAT32 for t in op.outputs)
            if constant_int8 and float_out:
                return "dynamic-range (hybrid) model"
    return None


def predict(model_bytes: bytes, x: np.ndarray) -> tuple[np.ndarray, float]:
    """(float outputs of output 0 for each row of `x`, seconds spent in invoke) with tf.lite.Interpreter."""

    import_tensorflow_quietly()
    import tensorflow as tf

    with captured_fds():
        interpreter = tf.lite.Interpreter(model_content=bytes(model_bytes))
        interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs, spent = [], 0.0
    for row in x:
        interpreter.set_tensor(inp["index"], _quantize(np.asarray(row), inp).reshape(inp["shape"]))
        start = time.perf_counter()
        interpreter.invoke()
        spent += time.perf_counter() - start
        outputs.append(_dequantize(interpreter.get_tensor(out["index"]), out).ravel())
    return np.stack(outputs).astype(np.float32), spent


def _quantize(x: np.ndarray, details: dict) -> np.ndarray:
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, details: dict) -> np.ndarray:
    if np.dtype(details["dtype"]).kind == "f":
        return y.astype(np.float32)
    scale, zero = details["quantization"]
    return (y.astype(np.float32) - zero) * scale
