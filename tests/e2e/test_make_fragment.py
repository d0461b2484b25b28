"""The Make fragment users include (tinycomp/make/tinycomp.mk), `tinycomp makefile`, and `make compressed`."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import FRAGMENT

REPO = Path(__file__).resolve().parents[2]
NAMES = ("kws", "person-det")
STEPS = ("float.tflite", "plan.yaml", "plan.json", "planned.h5", "planned.yaml", "int8.tflite", "compression.yaml",
         "compressed.tflite", "compressed.cc", "compressed.h", "eval.json", "report/summary.md", "budgets.ok")

pytestmark = pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")



def test_makefile_command_imports_nothing_heavy():
    code = ("import sys, tinycomp.commands.makefile; "
            "print(sorted(x for x in ('tensorflow', 'tf_keras', 'numpy', 'tflite_micro') if x in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
                         ).stdout
    assert out.strip() == "[]"


def user_project(root: Path, makefile_body: str, data: str = "data.npz") -> Path:
    """A user's directory: models/kws.h5 and models/person-det.h5 (empty: for dry runs), data, a Makefile."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        (root / "models" / f"{name}.h5").touch()
    (root / data).touch()
    (root / "Makefile").write_text(f"TINYCOMP_DATA = --data {data}\n{makefile_body}")
    return root


def make(root: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(root), "--no-print-directory", *args], capture_output=True, text=True,
                          **kwargs)


def test_fragment_rules_for_every_model_keep_the_users_default_goal(tmp_path):
    user_project(tmp_path, f"TINYCOMP_FLASH_BUDGET = 64KiB\nTINYCOMP_RAM_BUDGET = 100KiB\ninclude {FRAGMENT}\n"
                           "firmware: build/kws.compressed.cc\n\t@echo firmware\n")
    dry = make(tmp_path, "-n")
    assert dry.returncode == 0, dry.stderr
    # the user's first target stays the default goal: only kws, and only what its C array needs
    assert "echo firmware" in dry.stdout and "person-det" not in dry.stdout and " eval " not in dry.stdout
    everything = make(tmp_path, "-n", "tinycomp-all")
    assert everything.returncode == 0, everything.stderr
    for name in NAMES:
        for command in (f"tinycomp convert models/{name}.h5 -o build/{name}.float.tflite",
                        f"tinycomp plan models/{name}.h5 --max-accuracy-drop 0.5 --ram-budget 100KiB "
                        f"--per-tensor-dense --strip  -o build/{name}.plan.yaml --data data.npz",
                        f"tinycomp cluster models/{name}.h5 --spec build/{name}.plan.yaml  -o build/{name}.planned.h5",
                        f"tinycomp quantize build/{name}.planned.h5 -o build/{name}.int8.tflite --per-tensor-dense",
                        f"tinycomp find-tensors build/{name}.int8.tflite --clustering build/{name}.planned.yaml",
                        f"tinycomp compress build/{name}.int8.tflite --spec build/{name}.compression.yaml --strip",
                        f"--baseline build/{name}.float.tflite --flash-budget 64KiB",
                        f"tinycomp report build/{name}.eval.json -o build/{name}.report --max-drop 0.5",
                        f"tinycomp gate build/{name}.eval.json --model build/{name}.compressed.tflite"):
            assert command in everything.stdout, command
    assert "--symbol g_kws_model" in everything.stdout and "--symbol g_person_det_model" in everything.stdout


def test_tinycomp_prune_adds_the_prune_step_before_plan_and_cluster(tmp_path):
    user_project(tmp_path, f"TINYCOMP_PRUNE = 0.8\nTINYCOMP_PRUNE_OPTIONS = --epochs 2\ninclude {FRAGMENT}\n")
    (tmp_path / "models" / "vendor.tflite").touch()
    dry = make(tmp_path, "-n", "tinycomp-all")
    assert dry.returncode == 0, dry.stderr
    for name in NAMES:
        for command in (f"tinycomp prune models/{name}.h5 --sparsity 0.8 --epochs 2 -o build/{name}.pruned.h5 "
                        "--data data.npz",
                        f"tinycomp convert models/{name}.h5 -o build/{name}.float.tflite",  # the baseline: unpruned
                        f"tinycomp plan build/{name}.pruned.h5 --max-accuracy-drop 0.5",
                        f"tinycomp cluster build/{name}.pruned.h5 --spec build/{name}.plan.yaml"):
            assert command in dry.stdout, command
    # an int8 .tflite model has no Keras model to prune
    assert "tinycomp plan models/vendor.tflite" in dry.stdout and "vendor.pruned" not in dry.stdout
    without = make(user_project(tmp_path / "plain", f"include {FRAGMENT}\n"), "-n", "tinycomp-all")
    assert without.returncode == 0 and " prune " not in without.stdout and "pruned" not in without.stdout


def test_tinycomp_qat_trains_in_the_int8_step(tmp_path):
    user_project(tmp_path, f"TINYCOMP_QAT = 2\ninclude {FRAGMENT}\n")
    dry = make(tmp_path, "-n", "build/kws.int8.tflite")
    assert dry.returncode == 0, dry.stderr
    assert "tinycomp quantize build/kws.planned.h5 -o build/kws.int8.tflite --per-tensor-dense --qat 2" in dry.stdout
    user_project(tmp_path, f"include {FRAGMENT}\n")  # empty by default: post-training quantization only
    assert "--qat" not in make(tmp_path, "-n", "build/kws.int8.tflite").stdout


def test_fragment_rules_for_an_int8_tflite_model(tmp_path):
    """models/NAME.tflite goes plan → palettize → compress → export → eval → report → gate, with no Keras step."""
    user_project(tmp_path, f"include {FRAGMENT}\n")
    (tmp_path / "models" / "vendor.tflite").touch()
    dry = make(tmp_path, "-n", "tinycomp-all")
    assert dry.returncode == 0, dry.stderr
    for command in ("tinycomp plan models/vendor.tflite --max-accuracy-drop 0.5 --strip  -o build/vendor.plan.yaml",
                    "tinycomp palettize models/vendor.tflite --spec build/vendor.plan.yaml  -o build/vendor.palettized.tflite",
                    "tinycomp compress build/vendor.palettized.tflite --spec build/vendor.palettized.yaml --strip",
                    "tinycomp export build/vendor.compressed.tflite -o build/vendor.compressed.cc",
                    "tinycomp eval models/vendor.tflite build/vendor.compressed.tflite",
                    "--baseline models/vendor.tflite",
                    "tinycomp report build/vendor.eval.json -o build/vendor.report",
                    "tinycomp gate build/vendor.eval.json --model build/vendor.compressed.tflite",
                    "tinycomp compress models/vendor.tflite --lossless --strip -o build/vendor.lossless.tflite"):
        assert command in dry.stdout, command
    vendor = [line for line in dry.stdout.splitlines() if "vendor" in line]
    assert not any(step in line for line in vendor for step in ("convert ", "cluster ", "quantize ", "find-tensors "))


def test_fragment_reruns_only_what_depends_on_a_changed_input(tmp_path):
    """With every output in place (touched in build order), the data re-runs the steps that read it, a model its chain."""
    user_project(tmp_path, f"include {FRAGMENT}\n")
    for name in NAMES:
        for step in STEPS:
            (tmp_path / "build" / f"{name}.{step}").parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "build" / f"{name}.{step}").touch()
            time.sleep(0.01)
    assert make(tmp_path, "-q", "tinycomp-all").returncode == 0  # up to date: a second run does nothing
    nothing = make(tmp_path, "tinycomp-all")
    assert "Nothing to be done" in nothing.stdout, nothing.stdout + nothing.stderr
    time.sleep(0.01)
    (tmp_path / "models" / "kws.h5").touch()
    model_changed = make(tmp_path, "-n", "tinycomp-all").stdout
    assert "tinycomp plan models/kws.h5" in model_changed and "person-det" not in model_changed
    (tmp_path / "build" / "kws.float.tflite").touch()
    for step in STEPS[1:]:
        (tmp_path / "build" / f"kws.{step}").touch()
        time.sleep(0.01)
    time.sleep(0.01)
    (tmp_path / "data.npz").touch()
    data_changed = make(tmp_path, "-n", "tinycomp-all").stdout
    assert "tinycomp plan models/kws.h5" in data_changed and "tinycomp plan models/person-det.h5" in data_changed
    assert " convert " not in data_changed  # convert does not read the data


def test_repo_makefile_runs_the_chain_on_any_model_without_training(tmp_path):
    project = user_project(tmp_path, "")
    build = tmp_path / "out"
    dry = make(REPO, "-n", f"MODEL={project / 'models' / 'kws.h5'}", f"DATA=--data {project / 'data.npz'}",
               "FLASH_BUDGET=64KiB", "ACCURACY_DROP=1", f"BUILD={build}", "TINYCOMP=tinycomp", "STAMP=", "compressed")
    assert dry.returncode == 0, dry.stderr
    lines = [line for line in dry.stdout.splitlines() if line.startswith("tinycomp ")]
    assert [line.split()[1] for line in lines] == ["convert", "plan", "cluster", "quantize", "find-tensors", "compress",
                                                   "eval", "report", "export", "gate"]
    assert f"-o {build}/kws.compressed.tflite" in dry.stdout and "--max-accuracy-drop 1 " in dry.stdout
    assert "--flash-budget 64KiB" in dry.stdout and f"{build}/kws.budgets.ok" in dry.stdout
    missing = make(REPO, "STAMP=", "compressed")
    assert missing.returncode == 2 and "Error: give the model, e.g. make MODEL=models/kws.h5" in missing.stderr


# ---------------------------------------------------------------- the real thing, on tiny models

@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, tiny_npz) -> Path:
    """models/kws.h5 and models/person-det.h5: two small trained CNNs for the tiny 16×16 data."""
    import tf_keras

    from tinycomp.data import load_dataset

    data = load_dataset(npz=tiny_npz)
    root = tmp_path_factory.mktemp("user_project")
    (root / "models").mkdir()
    for name, width in zip(NAMES, (8, 12)):
        tf_keras.utils.set_random_seed(0)
        model = tf_keras.Sequential([
            tf_keras.layers.Input(shape=data.input_shape),
            tf_keras.layers.Conv2D(4, 3, activation="relu", name="conv2d"),
            tf_keras.layers.MaxPooling2D(2),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(width, activation="relu", name="dense"),
            tf_keras.layers.Dense(4, activation="softmax", name="dense_1"),
        ])
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        model.fit(data.x_train, data.y_train, epochs=3, verbose=0)
        model.save(root / "models" / f"{name}.h5", save_format="h5")
    shutil.copy(tiny_npz, root / "data.npz")
    return root


@pytest.mark.slow
def test_user_makefile_builds_two_models_with_make_j2(tiny_models):
    """The fragment in a user's Makefile: both models with -j2, then nothing, then a budget gate that fails,
    then (dry) only the touched model's chain. person-det's plan is offered only conv2d at 2 clusters,
    whose per-channel value tables cost more than its 36 int8 weights: the fewest-byte plan clusters
    nothing, and its chain still makes every file."""
    root = tiny_models
    (root / "Makefile").write_text(
        "TINYCOMP_DATA = --data data.npz\nTINYCOMP_FLASH_BUDGET = 1MiB\nTINYCOMP_RAM_BUDGET = 1MiB\n"
        "TINYCOMP_ACCURACY_DROP = 5\nTINYCOMP_PLAN_OPTIONS = --clusters 4,16 --epochs 1\n"
        "TINYCOMP_CLUSTER_OPTIONS = --epochs 1\nTINYCOMP_QUANTIZE_OPTIONS = --calibration-samples 20\n"
        "TINYCOMP_COMPRESS_OPTIONS = --verify-samples 4\nTINYCOMP_EVAL_OPTIONS = --limit 100 --jobs 1\n"
        "TINYCOMP_REPORT_OPTIONS = --images 4 --jobs 1\n"
        f"include {FRAGMENT}\nall: tinycomp-all\n"
        "build/person-det.plan.yaml: TINYCOMP_PLAN_OPTIONS = --layer conv2d --clusters 2 --epochs 0\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    args = ["-j2", f"TINYCOMP={sys.executable} -m tinycomp"]
    first = make(root, *args, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    for name in NAMES:
        for step in STEPS:
            assert (root / "build" / f"{name}.{step}").is_file(), f"{name}.{step}"
        assert (root / "build" / f"{name}.budgets.ok").read_text().startswith(
            f"PASS build/{name}.compressed.tflite: flash ")
        evaluated = json.loads((root / "build" / f"{name}.eval.json").read_text())
        compressed = evaluated["models"][-1]
        assert compressed["path"] == f"build/{name}.compressed.tflite" and compressed["fits"] is True
        assert compressed["flash_bytes"] < evaluated["models"][0]["flash_bytes"]
        assert f"g_{name.replace('-', '_')}_model[" in (root / "build" / f"{name}.compressed.cc").read_text()
    assert "the plan clusters nothing" in first.stderr
    assert "layers: []" in (root / "build" / "person-det.plan.yaml").read_text()
    assert "tensors: []" in (root / "build" / "person-det.compression.yaml").read_text()
    assert "layers: []" not in (root / "build" / "kws.plan.yaml").read_text()

    again = make(root, *args, env=env)
    assert "Nothing to be done" in again.stdout, again.stdout

    # a budget that fails: the gate fails after the eval JSON and the report are written
    (root / "build" / "kws.eval.json").unlink()
    failed = make(root, *args, "TINYCOMP_RAM_BUDGET=1KiB", "build/kws.budgets.ok", env=env)
    assert failed.returncode == 2
    assert "Error: build/kws.compressed.tflite fails its budget: TOO BIG (RAM " in failed.stderr
    assert not (root / "build" / "kws.budgets.ok").exists()
    evaluated = json.loads((root / "build" / "kws.eval.json").read_text())
    assert evaluated["ram_budget"] == 1024 and [m["fits"] for m in evaluated["models"]] == [False, False]
    assert "TOO BIG" in (root / "build" / "kws.report" / "summary.md").read_text()

    # a touched model: its chain only (each of those steps ran for real above)
    time.sleep(1.1)
    (root / "models" / "kws.h5").touch()
    third = make(root, "-n", *args, env=env)
    assert third.returncode == 0, third.stdout + third.stderr
    assert " plan models/kws.h5" in third.stdout and "person-det" not in third.stdout
