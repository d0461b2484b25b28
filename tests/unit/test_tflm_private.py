"""tflite-micro's private APIs that tinycomp uses (all in tinycomp/tflite/private.py) still exist.

If one of these fails after a tflite-micro upgrade, do not silence it: update tinycomp/tflite/private.py (and
strip.py, which relies on the fields checked here) for the new version, then PINNED_VERSION.
"""

from __future__ import annotations

import warnings
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


def test_compressor_table_is_keyed_by_spec_class_and_restored():
    from tflite_micro.tensorflow.lite.micro.compression import spec

    from tinycomp.tflite.encoders import HuffmanPlugin, PrunePlugin
    from tinycomp.tflite.private import compressor_table, installed_encoders

    table = compressor_table()
    stubs = table[spec.HuffmanCompression], table[spec.PruningCompression]
    assert spec.LookUpTableCompression in table
    with installed_encoders():
        assert isinstance(table[spec.HuffmanCompression], HuffmanPlugin)
        assert isinstance(table[spec.PruningCompression], PrunePlugin)
    assert (table[spec.HuffmanCompression], table[spec.PruningCompression]) == stubs


def test_compress_reaches_the_installed_encoders():
    """tflite-micro's `compress` looks its plugins up in the table at call time (a DECODE op is inserted)."""
    from tflite_micro.tensorflow.lite.micro.compression import compress, model_editor, spec

    from tinycomp.tflite.private import installed_encoders

    for method in (spec.HuffmanCompression(), spec.PruningCompression()):
        with installed_encoders(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 4 bytes of weights grow: expected here
            out = compress(_tiny_model_bytes(), [spec.Tensor(subgraph=0, tensor=0, compression=[method])])
        ops = [op.opcode_name for op in model_editor.read(bytes(out)).subgraphs[0].operators]
        assert "TFLM_DECODE" in ops, ops
