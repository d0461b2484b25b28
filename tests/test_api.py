"""The Python API: importable from `tinycomp` without TensorFlow, and the docs/api.md example runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tinycomp

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_import_tinycomp_imports_no_tensorflow_and_every_api_name_resolves():
    code = ("import sys, tinycomp; heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tf_keras', 'tflite_micro')]; names = [getattr(tinycomp, n) for n in tinycomp.__all__]; "
            "print(heavy, len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", str(len(tinycomp.__all__))]


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tinycomp.nope  # noqa: B018


@pytest.mark.slow
def test_the_documented_example_runs(pipeline, tmp_path, monkeypatch, capsys):
    [example] = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    shutil.copy(pipeline["model_h5"], tmp_path / "model.h5")
    shutil.copy(pipeline["data"], tmp_path / "data.npz")
    monkeypatch.chdir(tmp_path)
    exec(compile(example, str(DOC), "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"plan: [\d,]+ bytes predicted, accuracy drop [+-]\d+\.\d\d pp", printed)
    assert re.search(r"[\d,]+ bytes, TFLM arena [\d,]+ bytes, accuracy \d+\.\d\d%", printed)
    for name in ("plan.yaml", "plan.json", "model.tflite"):
        assert (tmp_path / name).stat().st_size > 0
    assert not (tmp_path / "plan.partial.json").exists()
