"""Unit tier: no TensorFlow, no subprocess. A test that imports TensorFlow or tf_keras, or starts a
process, fails here; it belongs in tests/e2e."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")


def _heavy_loaded() -> list[str]:
    return [name for name in HEAVY if name in sys.modules]


@pytest.fixture(autouse=True)
def unit_tier_guard(monkeypatch):
    """Fail the test that imports TensorFlow or starts a process."""
    already = _heavy_loaded()

    def refuse(*args, **kwargs):
        raise AssertionError("a unit test started a process: move it to tests/e2e")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield
    loaded = [name for name in _heavy_loaded() if name not in already]
    assert not loaded, f"a unit test imported {', '.join(loaded)}: move it to tests/e2e"
