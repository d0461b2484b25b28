"""`plan --shard/--merge/--resume/--jobs`: partial tables (pure), and sharded or parallel runs giving the plan of one run."""

from __future__ import annotations

import json

import pytest

from helpers import ok, run_cli

PLAN = ["--clusters", "2,4", "--epochs", "1", "--estimate", "fast", "--seed", "5", "--fine-tune-rows", "200",
        "--validation-rows", "60"]


def _plan_json(path):
    payload = json.loads(path.read_text())
    return {**payload["sensitivity"], "seconds": 0}, payload["plan"]


@pytest.fixture(scope="module")
def unsharded(pipeline, tmp_path_factory):
    d = tmp_path_factory.mktemp("unsharded")
    ok(["plan", pipeline["model_h5"], "--max-accuracy-drop", "5", *PLAN, "-o", d / "plan.yaml",
        "--data", pipeline["data"]])
    return d / "plan.json"


def test_two_shards_merged_one_in_two_processes_give_the_plan_of_one_run(pipeline, unsharded, tmp_path):
    """Shard 1/2 measured in this process and shard 2/2 in two worker processes (--jobs 2): merged, the
    plan of one unsharded run in one process (one measurement covers both paths)."""
    data = ["--data", pipeline["data"]]
    for i, jobs in ((1, "1"), (2, "2")):
        ok(["plan", pipeline["model_h5"], "--shard", f"{i}/2", "--jobs", jobs, *PLAN, "-o", tmp_path / f"part{i}.json",
            *data])
        assert not (tmp_path / f"part{i}.partial.json").exists()
    ok(["plan", pipeline["model_h5"], "--merge", tmp_path / "part1.json", tmp_path / "part2.json",
        "--max-accuracy-drop", "5", "-o", tmp_path / "merged.yaml", *data])
    assert _plan_json(tmp_path / "merged.json") == _plan_json(unsharded)
    result = run_cli(["plan", pipeline["model_h5"], "--merge", tmp_path / "part1.json", "--max-accuracy-drop", "5",
                      "-o", tmp_path / "half.yaml", *data])
    assert result.exit_code == 1 and result.output.strip().splitlines()[-1].startswith("Error: no part measured")


def test_resume_measures_only_what_is_missing(pipeline, unsharded, tmp_path):
    data = ["--data", pipeline["data"]]
    ok(["plan", pipeline["model_h5"], "--shard", "1/1", *PLAN, "-o", tmp_path / "all.json", *data])
    whole = json.loads((tmp_path / "all.json").read_text())
    interrupted = {**whole, "results": whole["results"][:2]}  # as if stopped after two candidates
    (tmp_path / "p.partial.json").write_text(json.dumps(interrupted))
    result = ok(["plan", pipeline["model_h5"], "--max-accuracy-drop", "5", *PLAN, "--resume", "-o", tmp_path / "p.yaml",
                 *data])
    assert "2 candidate(s) measured before" in result.output
    assert result.output.count("] control") == 0  # the control was among the two
    assert _plan_json(tmp_path / "p.json") == _plan_json(unsharded)
    assert not (tmp_path / "p.partial.json").exists()


@pytest.mark.parametrize("content, error", [
    ("{not json", "Error: not a partial sensitivity table written by `tinycomp plan`"),
    ('{"step": "plan-partial", "schema_version": 1, "source_sha256": "00", "dataset": {}, "measurement": {}, '
     '"seed": 5, "shard": "1/1", "candidates": [], "results": []}',
     "Error: the partial table was measured with other model than this run"),
])
def test_a_corrupt_or_foreign_partial_table_stops_resume(pipeline, tmp_path, content, error):
    (tmp_path / "p.partial.json").write_text(content)
    result = run_cli(["plan", pipeline["model_h5"], "--max-accuracy-drop", "5", *PLAN, "--resume",
                      "-o", tmp_path / "p.yaml", "--data", pipeline["data"]])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith(f"{error} ({tmp_path / 'p.partial.json'})")


@pytest.mark.slow
def test_plan_fine_tunes_with_the_task_loss_and_names_the_snr_budget_for_regression(tmp_path):
    import numpy as np
    import tf_keras

    from tinycomp.data import Dataset
    from tinycomp.models import save_keras_model
    from tinycomp.plan.sensitivity import training_loss

    x = np.random.default_rng(0).random((40, 8), dtype=np.float32)
    logits = tf_keras.Sequential([tf_keras.layers.Input((8,)), tf_keras.layers.Dense(3, name="out")])
    labels = Dataset("d", x, np.arange(40) % 3, x, np.arange(40) % 3)
    assert training_loss(logits, labels).describe()["from_logits"] is True  # a linear output on a classifier
    np.savez(tmp_path / "regress.npz", x_train=x, y_train=x[:, :3], x_test=x, y_test=x[:, :3])
    save_keras_model(logits, tmp_path / "regress.h5")
    result = run_cli(["plan", tmp_path / "regress.h5", "--max-accuracy-drop", "1", "-o", tmp_path / "p.yaml",
                      "--data", tmp_path / "regress.npz"])
    assert training_loss(logits, Dataset("d", x, x[:, :3], x, x[:, :3])).describe()["loss"] == "mean_squared_error"
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith(
        "Error: --max-accuracy-drop is a top-1 accuracy budget, but regress.npz makes this a regress task")


def test_make_plan_sharded_measures_every_shard_then_merges(tmp_path):
    """A dry run of `make plan-sharded SHARDS=3`: one `plan --shard I/3` per part, then one merge of all parts."""
    import shutil
    import subprocess
    from pathlib import Path

    if not shutil.which("make"):
        pytest.skip("make is not installed")
    build = tmp_path / "build"
    repo = Path(__file__).resolve().parents[2]
    dry = subprocess.run(["make", "-C", str(repo), "-n", f"BUILD={build}", "TINYCOMP=tinycomp", "STAMP=",
                          "SHARDS=3", "plan-sharded"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    plans = [line for line in dry.stdout.splitlines() if line.startswith("tinycomp plan ")]
    parts = [f"{build}/plan_part_{i}_of_3.json" for i in (1, 2, 3)]
    assert [line.split(" --shard ")[1].split()[0] for line in plans[:3]] == ["1/3", "2/3", "3/3"]
    assert all(f"-o {part}" in line for part, line in zip(parts, plans[:3], strict=True))
    assert len(plans) == 4 and f"--merge {' '.join(parts)} --max-accuracy-drop 0.5" in plans[3]
    assert f"-o {build}/plan_sharded.yaml" in plans[3]
