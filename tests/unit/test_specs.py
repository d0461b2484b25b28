"""Spec parsing: the examples in --help parse, errors name the key path, dumps read back."""

import pytest

from tinycomp.errors import SpecError
from tinycomp.specs import (
    CLUSTERING_EXAMPLE,
    COMPRESSION_EXAMPLE,
    LEGACY_COMPRESSION_EXAMPLE,
    PerChannel,
    PerTensor,
    PlanValidation,
    dump_clustering_spec,
    dump_compression_spec,
    parse_clustering_spec,
    parse_compression_spec,
    parse_layer_options,
)


def test_help_examples_parse():
    spec = parse_compression_spec(COMPRESSION_EXAMPLE)
    assert [(t.tensor, t.index_bitwidth, t.layout) for t in spec.tensors] == [(7, 4, PerChannel(0)), (9, 2, PerTensor()),
                                                                            (11, 0, None), (13, 0, None)]
    assert not spec.upgraded
    clustering = parse_clustering_spec(CLUSTERING_EXAMPLE)
    assert [(layer.name, layer.clusters) for layer in clustering.layers] == [("conv2d_1", 16), ("dense", 16)]


def test_repo_clustering_spec_is_the_tutorial_recipe():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "specs" / "clustering.yaml").read_text()
    spec = parse_clustering_spec(text)
    assert [(layer.name, layer.clusters, layer.init) for layer in spec.layers] == [("conv2d_1", 16, "kmeans++"), ("dense", 16, "kmeans++")]


def test_tutorial_form_is_accepted_and_marked_for_upgrade():
    spec = parse_compression_spec(LEGACY_COMPRESSION_EXAMPLE)
    assert spec.upgraded and spec.tensors[0].layout is None and spec.tensors[0].index_bitwidth == 4


def test_dump_is_readable_by_tflite_micro_and_by_us():
    from tflite_micro import compression

    spec = parse_compression_spec(COMPRESSION_EXAMPLE)
    text = dump_compression_spec(spec, "header")
    assert parse_compression_spec(text) == spec
    upstream = compression.parse_yaml(text)
    assert [(t.tensor, getattr(t.compression[0], "index_bitwidth", type(t.compression[0]).__name__))
            for t in upstream] == [(7, 4), (9, 2), (11, "HuffmanCompression"), (13, "PruningCompression")]
    assert [type(t.compression[0]) for t in upstream] == [type(t.compression[0]) for t in spec.to_tflm()[:2]] + \
        [type(t.compression[0]) for t in spec.to_tflm()[2:]]
    assert [t.method for t in spec.tensors] == ["lut", "lut", "huffman", "pruning"]
    clustering = parse_clustering_spec(CLUSTERING_EXAMPLE)
    assert parse_clustering_spec(dump_clustering_spec(clustering)) == clustering


@pytest.mark.parametrize("text, message", [
    ("tensors:\n  - {subgraph: 0, tensor: 1, compression: [{lut: {index_bitwdith: 4, per_tensor: }}]}",
     "unknown key 'index_bitwdith' (s.yaml: tensors[0].compression[0].lut.index_bitwdith) — allowed keys here: "
     "index_bitwidth, per_tensor, per_channel"),
    ("tensors:\n  - {subgraph: 0, tensor: 1, compression: [{lut: {index_bitwidth: 8, per_tensor: }}]}",
     "8 is out of range (s.yaml: tensors[0].compression[0].lut.index_bitwidth) — use a value in 1–7"),
    ("tensors:\n  - {subgraph: 0, tensor: 1, compression: [{lut: {index_bitwidth: true, per_tensor: }}]}",
     "expected an integer, got a boolean (True) (s.yaml: tensors[0].compression[0].lut.index_bitwidth)"),
    ("tensors:\n  - {subgraph: 0, tensor: 1, compression: [{lut: {index_bitwidth: 4, per_channel: {axis: 0}, "
     "per_tensor: }}]}",
     "per_tensor and per_channel are contradictory (s.yaml: tensors[0].compression[0].lut) — give exactly one"),
    ("tensors:\n  - {subgraph: 0, tensor: 3, compression: [{huffman: {bits: 4}}]}",
     "huffman takes no parameters, got a mapping (s.yaml: tensors[0].compression[0].huffman) — write `huffman:` alone"),
    ("tensors:\n  - {subgraph: 0, tensor: 3, compression: [{pruning: , lut: {index_bitwidth: 2, per_tensor: }}]}",
     "2 compression methods given (pruning, lut) (s.yaml: tensors[0].compression[0]) — give exactly one: `lut:`, "
     "`huffman:` or `pruning:`"),
    ("tensors:\n  - {subgraph: 0, tensor: 3, compression: [{prune: }]}",
     "unknown key 'prune' (s.yaml: tensors[0].compression[0].prune) — allowed keys here: lut, huffman, pruning"),
    ("", "spec is empty (s.yaml) — see `tinycomp --help` of the command for an example"),
])
def test_compression_spec_errors_name_the_key_path(text, message):
    with pytest.raises(SpecError) as e:
        parse_compression_spec(text, "s.yaml")
    assert str(e.value) == message


def test_empty_specs_mean_nothing_to_do_and_round_trip():
    from tinycomp.specs import ClusteringSpec, dump_clustering_spec, dump_compression_spec, parse_clustering_spec

    assert parse_compression_spec("tensors: []", "s.yaml").tensors == ()
    assert parse_compression_spec(dump_compression_spec(parse_compression_spec("tensors: []")), "s.yaml").tensors == ()
    empty = ClusteringSpec((), epochs=0)
    assert parse_clustering_spec(dump_clustering_spec(empty, "nothing fits"), "s.yaml") == empty
    assert parse_clustering_spec("epochs: 3\nlayers:\n  - {name: dense, clusters: 4}", "s.yaml").epochs == 3
    tuned = ClusteringSpec((), epochs=2, learning_rate=1e-4)
    assert parse_clustering_spec(dump_clustering_spec(tuned), "s.yaml") == tuned
    with pytest.raises(SpecError, match="expected a number above 0"):
        parse_clustering_spec("learning_rate: 0\nlayers: []", "s.yaml")
    with pytest.raises(SpecError, match="-1 is out of range"):
        parse_clustering_spec("epochs: -1\nlayers: []", "s.yaml")


def test_clustering_spec_errors():
    with pytest.raises(SpecError, match=r"1 is out of range \(c.yaml: layers\[0\].clusters\) — use a value in 2–256"):
        parse_clustering_spec("layers:\n  - name: dense\n    clusters: 1\n", "c.yaml")
    with pytest.raises(SpecError, match=r"'kmeans' is not a valid choice \(c.yaml: init\)"):
        parse_clustering_spec("init: kmeans\nlayers:\n  - {name: dense, clusters: 4}\n", "c.yaml")
    with pytest.raises(SpecError, match=r"layer dense is listed twice \(c.yaml: layers\[1\]\)"):
        parse_clustering_spec("layers:\n  - {name: dense, clusters: 4}\n  - {name: dense, clusters: 8}\n", "c.yaml")


def test_a_plans_validation_rows_are_read_strictly():
    spec = parse_clustering_spec("epochs: 2\nvalidation:\n  split: 0.5\n  seed: 3\n  training_rows: 60\n"
                                 "  held_out_groups: [1, s2]\nlayers: []\n", "c.yaml")
    assert spec.validation == PlanValidation(0.5, 3, 60, ("1", "s2"))
    assert parse_clustering_spec(dump_clustering_spec(spec), "dumped") == spec
    rows = "training_rows: 60"
    for text, message in (
            (f"validation: {{split: 1.5, seed: 0, {rows}}}", "expected a fraction between 0 and 1, got float 1.5 "
                                                             "(c.yaml: validation.split) — e.g. 0.2"),
            (f"validation: {{split: 1, seed: 0, {rows}}}", "expected a fraction between 0 and 1, got int 1 "
                                                           "(c.yaml: validation.split) — e.g. 0.2"),
            (f"validation: {{split: 0.2, {rows}}}", "missing key 'seed' (c.yaml: validation) — add `seed:`"),
            ("validation: {split: 0.2, seed: 0}", "missing key 'training_rows' (c.yaml: validation) — add "
                                                  "`training_rows:`"),
            (f"validation: {{split: 0.2, seed: -1, {rows}}}", "-1 is out of range (c.yaml: validation.seed) — use a "
                                                              "value >= 0"),
            (f"validation: {{split: 0.2, seed: 0, {rows}, held_out_groups: [1, 1]}}",
             "group 1 is listed twice (c.yaml: validation.held_out_groups[1]) — list each group once"),
            (f"validation: {{split: 0.2, seed: 0, {rows}, groups: 3}}",
             "unknown key 'groups' (c.yaml: validation.groups) — allowed keys here: split, seed, training_rows, "
             "held_out_groups")):
        with pytest.raises(SpecError) as error:
            parse_clustering_spec(text + "\nlayers: []\n", "c.yaml")
        assert str(error.value) == message


def test_layer_options():
    spec = parse_layer_options(("conv2d_1=16", "dense=8"))
    assert [(layer.name, layer.clusters) for layer in spec.layers] == [("conv2d_1", 16), ("dense", 8)]
    with pytest.raises(SpecError, match="write it as NAME=CLUSTERS"):
        parse_layer_options(("dense",))


def test_cluster_refuses_data_other_than_the_plans():
    """`cluster` with a plan's `validation:` checks the data is the plan's: its row count, its held-out groups."""
    import numpy as np

    from tinycomp.cluster import planned_split
    from tinycomp.data import Dataset
    from tinycomp.errors import DataError

    x, y = np.zeros((60, 2), np.float32), np.zeros(60, int)
    data = Dataset("d.npz", x, y, x[:4], y[:4], groups_train=np.arange(60) % 6)
    split = data.validation_split(0.4, 1)
    held_out = tuple(split.source.held_out)
    assert planned_split(data, PlanValidation(0.4, 1, 60, held_out)).val.tolist() == split.val.tolist()
    with pytest.raises(DataError) as error:
        planned_split(data, PlanValidation(0.4, 1, 61, held_out))
    assert str(error.value) == ("d.npz has 60 training rows, but the plan validated on 61 (spec: "
                                "validation.training_rows) — give cluster the --data/--dataset given to plan")
    with pytest.raises(DataError) as error:
        planned_split(data, PlanValidation(0.4, 1, 60, ()))
    assert str(error.value) == (f"the plan validated on no held-out groups, but d.npz holds out groups "
                                f"{', '.join(held_out)} (spec: validation.held_out_groups) — give cluster the "
                                "--data/--dataset given to plan")
