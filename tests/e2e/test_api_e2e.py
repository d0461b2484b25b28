"""The Python API example in docs/api.md runs as written (plan, cluster, quantize, compress, evaluate)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


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
