"""Safe loading: a model whose loading would run code is refused unless trusted; formats and structure."""

from __future__ import annotations

import pytest

from tinycomp.errors import InputFileError


def test_tflite_is_refused_clearly_and_a_plain_savedmodel_is_told_apart(tmp_path):
    from tinycomp.fileio import check_keras_model_path

    fake = tmp_path / "m.tflite"
    fake.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(32))
    with pytest.raises(InputFileError, match="this is a .tflite flatbuffer, not a Keras model"):
        check_keras_model_path(fake)
    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(InputFileError, match="not a SavedModel"):
        check_keras_model_path(d)
    (d / "saved_model.pb").write_bytes(b"x")
    from tinycomp.fileio import keras_model_format

    assert keras_model_format(d) == "signature"  # no keras_metadata.pb: convert/quantize use its serving signature
