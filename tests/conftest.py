"""Fixtures for both tiers: tiny synthetic data built on the fly (nothing binary is committed).

Tiers are chosen by place: tests/unit never imports TensorFlow or starts a process (its conftest
fails a test that does); tests/e2e trains, converts, runs TFLM and starts processes.
`make test-fast` runs tests/unit, `make test` both.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from helpers import make_blob_images

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    """An .npz with 600 train / 200 test 16×16 images in 4 classes."""
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    x_train, y_train = make_blob_images(600, seed=1)
    x_test, y_test = make_blob_images(200, seed=2)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path
