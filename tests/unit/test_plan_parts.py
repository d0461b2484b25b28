"""`plan --shard/--merge/--resume/--jobs`: partial tables (pure), and sharded or parallel runs giving the plan of one run."""

from __future__ import annotations

import json

import pytest

from helpers import run_cli
from tinycomp.errors import InputFileError, InvalidValue
from tinycomp.plan.candidates import CandidateResult, PartialTable, Shard, candidates_of, merge_parts

USABLE = {"conv": [2, 4, 8], "dense": [2, 4]}


def _part(shard: Shard, **changes) -> PartialTable:
    mine = shard.select(candidates_of(USABLE))
    results = [CandidateResult(c.key, zero_shot=0.9, fine_tuned=0.85 if c.values == 2 else None) for c in mine]
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


def test_merge_and_sensitivity_exclude_each_other(tmp_path):
    result = run_cli(["plan", "m.h5", "--merge", "a.json", "--sensitivity", "b.json", "--max-accuracy-drop", "1",
                      "-o", tmp_path / "p.yaml"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == ("Error: --merge and --sensitivity exclude each other "
                                                      "(--sensitivity) — measure a shard, merge shards, or re-choose "
                                                      "from a table, one at a time")




def test_plan_check_line_shows_agreement_with_the_given_file():
    from tinycomp.plan import Plan
    from tinycomp.render import agreement_text

    assert agreement_text({"agreement_top1": 0.9723, "agreement_snr_db": 31.42}) == \
        "; agreement with the given file: top-1 97.2%, output SNR 31.4 dB"
    assert agreement_text({"agreement_snr_db": 12.0}) == "; agreement with the given file: output SNR 12.0 dB"
    assert agreement_text(None) == "" and agreement_text({}) == ""
    plan = Plan(choices={}, predicted_bytes=0, predicted_drop=0.0, sum_drop=0.0, credit=0.0, ideal_bytes=0,
                objective="fewest bytes", budget=0.5, checked_agreement={"agreement_top1": 0.5})
    assert Plan.from_json(plan.to_json()).checked_agreement == {"agreement_top1": 0.5}
    assert Plan.from_json({k: v for k, v in plan.to_json().items() if k != "checked_agreement"}).checked_agreement is None
