"""The Python API: every name importable from `tinycomp`, without TensorFlow (the unit tier's guard checks)."""

from __future__ import annotations

import pytest

import tinycomp


def test_every_api_name_resolves_without_importing_tensorflow():
    assert all(getattr(tinycomp, name) is not None for name in tinycomp.__all__)
    assert tinycomp.plan_model.__module__ == "tinycomp.plan.workflow" and "quantize" in dir(tinycomp)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tinycomp.nope  # noqa: B018
