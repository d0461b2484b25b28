"""`plan --shard/--merge/--resume/--jobs`: partial tables (pure), and sharded or parallel runs giving the plan of one run."""

from __future__ import annotations

import json

import pytest

from conftest import ok, run_cli
from tinycomp.errors import InputFileError, InvalidValue
from tinycomp.plan.candidates import CandidateResult, PartialTable, Shard, candidates_of, merge_parts

USABLE = {"conv": [2, 4, 8], "dense": [2, 4]}


def _part(shard: Shard, **changes) -> PartialTable:
    mine = shard.select(candidates_of(USABLE))
    results = [CandidateResult(c.key, zero_shot=0.9, fine_tuned=0.85 if c.clusters == 2 else None) for c in mine]
    fields = dict(source_sha256="ab" * 32, dataset={"name": "d", "train": 10}, measurement={"estimate": "fast"},
                  seed=0, shard=shard, candidates=[c.key for c in mine], results=results)
    return PartialTable(**{**fields, **changes})


def test_shards_cover_every_candidate_exactly_once():
    candidates = candidates_of(USABLE)
    assert [c.key for c in candidates] == ["control", "conv/8", "conv/4", "conv/2", "dense/4", "dense/2"]
    for count in (1, 2, 4, 6, 7):
        picked = [c.key for i in range(1, count + 1) for c in Shard(i, count).select(candidates)]
        assert sorted(picked) == sorted(c.key for c in candidates)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "2"])
def test_a_bad_shard_names_the_field(text):
    with pytest.raises(InvalidValue) as caught:
        Shard.parse(text)
    assert caught.value.field == "shard"


def test_parts_round_trip_and_merge():
    parts = [(f"p{i}.json", PartialTable.from_json(json.loads(json.dumps(_part(Shard(i, 3)).to_json())), f"p{i}.json"))
             for i in (1, 2, 3)]
    merged = merge_parts(parts, candidates=candidates_of(USABLE))
    assert sorted(merged) == sorted(c.key for c in candidates_of(USABLE))
    assert merged["conv/2"].fine_tuned == 0.85 and merged["conv/4"].fine_tuned is None


@pytest.mark.parametrize("parts, error", [
    ([_part(Shard(1, 2))], "no part measured 'conv/8' (3 candidate(s) missing) (a.json)"),
    ([_part(Shard(1, 2)), _part(Shard(1, 2))], "'control' is measured in a.json too (b.json)"),
    ([_part(Shard(1, 2)), _part(Shard(2, 2), seed=1)], "measured with other seed than a.json (b.json)"),
    ([_part(Shard(1, 2)), _part(Shard(2, 2), source_sha256="cd" * 32)], "measured with other model than a.json (b.json)"),
    ([_part(Shard(1, 2)), _part(Shard(2, 2), dataset={"name": "e"})], "measured with other data than a.json (b.json)"),
    ([_part(Shard(1, 2)), _part(Shard(2, 2), results=[])], "shard 2/2 is incomplete (no result for 'conv/8') (b.json)"),
])
def test_parts_that_do_not_belong_together_are_one_clear_error(parts, error):
    with pytest.raises(InputFileError) as caught:
        merge_parts(list(zip(["a.json", "b.json"], parts)), candidates=candidates_of(USABLE))
    assert str(caught.value).split(" — ")[0] == error


@pytest.mark.parametrize("payload", [None, [], {"step": "plan"}, {**_part(Shard()).to_json(), "schema_version": 9},
                                     {**_part(Shard()).to_json(), "results": [{"key": "x/2", "zero_shot": 0.5}]},
                                     {**_part(Shard()).to_json(), "results": [{"key": "conv/2", "zero_shot": 7}]},
                                     {**_part(Shard()).to_json(), "shard": "2/1"}])
def test_a_corrupt_or_foreign_part_is_an_input_error(payload):
    with pytest.raises(InputFileError) as caught:
        PartialTable.from_json(payload, "p.json")
    assert caught.value.where == "p.json"


# ---------------------------------------------------------------- through the CLI, on the tiny pipeline model

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


def test_two_shards_merged_give_the_plan_of_one_run(pipeline, unsharded, tmp_path):
    data = ["--data", pipeline["data"]]
    for i in (1, 2):
        ok(["plan", pipeline["model_h5"], "--shard", f"{i}/2", *PLAN, "-o", tmp_path / f"part{i}.json", *data])
        assert not (tmp_path / f"part{i}.partial.json").exists()
    ok(["plan", pipeline["model_h5"], "--merge", tmp_path / "part1.json", tmp_path / "part2.json",
        "--max-accuracy-drop", "5", "-o", tmp_path / "merged.yaml", *data])
    assert _plan_json(tmp_path / "merged.json") == _plan_json(unsharded)
    result = run_cli(["plan", pipeline["model_h5"], "--merge", tmp_path / "part1.json", "--max-accuracy-drop", "5",
                      "-o", tmp_path / "half.yaml", *data])
    assert result.exit_code == 1 and result.output.strip().splitlines()[-1].startswith("Error: no part measured")


def test_two_processes_give_the_plan_of_one(pipeline, unsharded, tmp_path):
    ok(["plan", pipeline["model_h5"], "--max-accuracy-drop", "5", *PLAN, "--jobs", "2", "-o", tmp_path / "p.yaml",
        "--data", pipeline["data"]])
    assert _plan_json(tmp_path / "p.json") == _plan_json(unsharded)


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


def test_merge_and_sensitivity_exclude_each_other(tmp_path):
    result = run_cli(["plan", "m.h5", "--merge", "a.json", "--sensitivity", "b.json", "--max-accuracy-drop", "1",
                      "-o", tmp_path / "p.yaml"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == ("Error: --merge and --sensitivity exclude each other "
                                                      "(--sensitivity) — measure a shard, merge shards, or re-choose "
                                                      "from a table, one at a time")


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
    repo = Path(__file__).resolve().parents[1]
    dry = subprocess.run(["make", "-C", str(repo), "-n", f"BUILD={build}", "TINYCOMP=tinycomp", "STAMP=",
                          "SHARDS=3", "plan-sharded"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    plans = [line for line in dry.stdout.splitlines() if line.startswith("tinycomp plan ")]
    parts = [f"{build}/plan_part_{i}_of_3.json" for i in (1, 2, 3)]
    assert [line.split(" --shard ")[1].split()[0] for line in plans[:3]] == ["1/3", "2/3", "3/3"]
    assert all(f"-o {part}" in line for part, line in zip(parts, plans[:3], strict=True))
    assert len(plans) == 4 and f"--merge {' '.join(parts)} --max-accuracy-drop 0.5" in plans[3]
    assert f"-o {build}/plan_sharded.yaml" in plans[3]
