"""eval reads only the test rows (never x_train, in bounded memory), and report takes the shared data
options and reopens the data (and preprocessing) the eval JSON records (issues 15 and 19)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from helpers import FRAGMENT, REPO, damage_member, npy_bytes, ok, run_cli, write_zip


def with_x_train(path: Path, source: Path, x_train: np.ndarray) -> Path:
    """`source`'s test split with another x_train (and y_train), compressed."""
    with np.load(source) as f:
        test = {k: f[k] for k in ("x_test", "y_test")}
        labels = f["y_train"]
    return write_zip(path, {"x_train.npy": npy_bytes(x_train), "y_train.npy": npy_bytes(np.resize(labels, len(x_train))),
                            "x_test.npy": npy_bytes(test["x_test"]), "y_test.npy": npy_bytes(test["y_test"])})


def with_zeros_x_train(path: Path, source: Path, rows: int) -> Path:
    """`source`'s test split with an x_train of `rows` zero images, written in chunks (never whole in memory)."""
    with np.load(source) as f:
        arrays = {k: f[k] for k in ("x_test", "y_test")}
        arrays["y_train"] = np.resize(f["y_train"], rows)
    row_shape = arrays["x_test"].shape[1:]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            npy_format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False,
                                                       "shape": (rows, *row_shape)})
            chunk = bytes(int(np.prod(row_shape)) * 10_000)
            for _ in range(rows // 10_000):
                member.write(chunk)
        for key, array in arrays.items():
            archive.writestr(f"{key}.npy", npy_bytes(array))
    return path


def accuracies(eval_json: Path) -> list[float]:
    return [m["accuracy"] for m in json.loads(eval_json.read_text())["models"]]


def test_eval_never_touches_x_train(pipeline, tmp_path):
    """x_train is damaged past its header: eval still gives the same result as on the intact data."""
    damaged = with_x_train(tmp_path / "damaged.npz", pipeline["data"],
                           np.random.default_rng(0).integers(0, 255, (3_000, 16, 16), dtype=np.uint8))
    damage_member(damaged, "x_train.npy")
    models = [pipeline["model_tflite"], pipeline["compressed_tflite"]]
    ok(["eval", *models, "--data", pipeline["data"], "--jobs", "1", "--json", tmp_path / "intact.json"])
    ok(["eval", *models, "--data", damaged, "--jobs", "1", "--json", tmp_path / "damaged.json"])
    assert accuracies(tmp_path / "damaged.json") == accuracies(tmp_path / "intact.json")
    result = run_cli(["quantize", pipeline["model_h5"], "-o", tmp_path / "q.tflite", "--data", damaged])
    assert result.exit_code == 1 and "cannot read x_train" in result.output  # the damage is real: calibration reads it


def test_eval_peak_memory_stays_below_x_train(pipeline, tmp_path):
    """eval on an .npz whose x_train inflates to 410 MB (3.3 GB as float32) stays far below that."""
    rows = 1_600_000
    big = with_zeros_x_train(tmp_path / "big.npz", pipeline["data"], rows)
    assert big.stat().st_size < 2_000_000 and zipfile.ZipFile(big).getinfo("x_train.npy").file_size > rows * 256
    out = tmp_path / "eval.json"
    measure = ("import resource, subprocess, sys; "
               "code = subprocess.run(sys.argv[1:]).returncode; "
               "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "tinycomp", "eval",
                           str(pipeline["model_tflite"]), "--data", str(big), "--jobs", "1", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    code, peak_kib = (int(v) for v in done.stdout.split()[-2:])
    assert code == 0, done.stdout + done.stderr
    assert peak_kib * 1024 < rows * 256 // 2, f"peak RSS {peak_kib} KiB"  # less than half of x_train's raw bytes
    assert json.loads(out.read_text())["dataset"]["train"] == rows


# ---------------------------------------------------------------- report through the Make fragment

def fragment_commands(root: Path, data_options: str) -> dict[str, list[str]]:
    """The eval and report command lines `make -n` prints for build/kws.* with these data options."""
    (root / "Makefile").write_text(f"TINYCOMP_DATA = {data_options}\nTINYCOMP_EVAL_OPTIONS = --limit 40 --jobs 1\n"
                                   f"TINYCOMP_REPORT_OPTIONS = --images 8 --jobs 1\ninclude {FRAGMENT}\n")
    dry = subprocess.run(["make", "-C", str(root), "--no-print-directory", "-n", "build/kws.report/summary.md"],
                         capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    joined = dry.stdout.replace("\\\n", " ")
    commands = {}
    for line in joined.splitlines():
        words = shlex.split(line.split("||")[0])
        if words and words[0] == "tinycomp":
            commands[words[1]] = words[1:]
    return commands


@pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")
def test_report_takes_the_fragments_data_options_and_the_recorded_preprocessing(pipeline, tmp_path, monkeypatch):
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    (root / "build").mkdir()
    shutil.copy(pipeline["data"], root / "data.npz")
    (root / "models" / "kws.h5").touch()
    for step, source in (("float.tflite", "model_tflite"), ("compressed.tflite", "compressed_tflite"),
                         ("plan.yaml", "clustering_spec"), ("planned.h5", "clustered_h5"),
                         ("int8.tflite", "clustered_int8_tflite"), ("compression.yaml", "compression_yaml")):
        shutil.copy(pipeline[source], root / "build" / f"kws.{step}")
    # raw 0..255 inputs (the model was trained on x / 255): eval and report must both apply it, or accuracies differ
    commands = fragment_commands(root, "--data data.npz --input-scale 1 --input-offset 0")
    assert "--input-scale" in commands["report"]
    monkeypatch.chdir(root)
    ok(commands["eval"])
    recorded = json.loads((root / "build" / "kws.eval.json").read_text())["dataset"]
    assert recorded["spec"] == {"source": "npz", "path": "data.npz", "targets": None, "input_scale": 1.0,
                                "input_offset": 0.0, "image_size": None}
    assert recorded["preprocessing"]["reason"] == "explicit: x * 1 + 0"
    result = ok(commands["report"])  # the fragment's report step, as Make runs it
    assert "predictions.png" in result.output and "Warning" not in result.output
    again = ok(["report", "build/kws.eval.json", "-o", "build/again", "--images", "8", "--jobs", "1"])
    assert "predictions.png" in again.output and "Warning" not in again.output  # the recorded spec, no options
    other = run_cli(["report", "build/kws.eval.json", "-o", "build/other", "--images", "8", "--jobs", "1",
                     "--input-scale", str(1 / 255)])
    assert other.exit_code == 0 and "different data or a changed model" in other.output  # the check can fail
