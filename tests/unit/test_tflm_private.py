"""tflite-micro's private APIs that tinycomp uses (all in tinycomp/tflite/private.py) still exist.

If one of these fails after a tflite-micro upgrade, do not silence it: update tinycomp/tflite/private.py (and
strip.py, which relies on the fields checked here) for the new version, then PINNED_VERSION.
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np

from tinycomp.tflite.private import PINNED_VERSION, apply_flatbuffer_alignment, raw


def _tiny_model_bytes() -> bytes:
    from tflite_micro.tensorflow.lite.micro.compression import model_editor as editor
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as tflite

    weights = editor.Tensor(shape=(2, 2), dtype=tflite.TensorType.INT8, name="w",
                            data=np.array([[1, 2], [3, 4]], dtype=np.int8))
    output = editor.Tensor(shape=(2, 2), dtype=tflite.TensorType.INT8, name="out")
    relu = editor.Operator(opcode=tflite.BuiltinOperator.RELU, inputs=[weights], outputs=[output])
    model = editor.Model(subgraphs=[editor.Subgraph(tensors=[weights, output], operators=[relu])])
    return bytes(model.build())


def test_pinned_version_is_the_installed_one():
    assert version("tflite-micro") == PINNED_VERSION, (
        "tflite-micro changed: re-check tinycomp/tflite/private.py against the new version")


def test_model_editor_objects_keep_their_flatbuffer_tables():
    from tflite_micro.tensorflow.lite.micro.compression import model_editor as editor

    model = editor.read(_tiny_model_bytes())
    table = raw(model)
    for name in ("version", "metadata", "metadataBuffer", "signatureDefs"):
        assert hasattr(table, name), f"Model._fb lost {name}"
    for name in ("debugMetadataIndex",):
        assert hasattr(raw(model.subgraphs[0]), name), f"Subgraph._fb lost {name}"
    tensor = model.subgraphs[0].tensors[0]
    for name in ("shapeSignature", "quantization"):
        assert hasattr(raw(tensor), name), f"Tensor._fb lost {name}"


def test_flatbuffer_alignment_keeps_a_parseable_model():
    from tflite_micro.tensorflow.lite.micro.compression import model_editor as editor

    aligned = apply_flatbuffer_alignment(_tiny_model_bytes())
    assert aligned[4:8] == b"TFL3"
    tensor = editor.read(aligned).subgraphs[0].tensors[0]
    assert tensor.array.tolist() == [[1, 2], [3, 4]]
