"""Property tests (hypothesis): clustering and compression specs survive a YAML round trip.

LUT compression's round trip in TFLM is in tests/e2e/test_properties_e2e.py.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tinycomp.specs import (
    CLUSTER_INITS,
    ClusteringSpec,
    CompressionSpec,
    LayerClustering,
    PerChannel,
    PerTensor,
    PlanValidation,
    TensorCompression,
    dump_clustering_spec,
    dump_compression_spec,
    parse_clustering_spec,
    parse_compression_spec,
)

# ---------------------------------------------------------------- spec round trips

# Keras accepts any name matching TensorFlow's scope rule; YAML-special words ("true", "null",
# "1e3", "on") and numbers are valid layer names too.
layer_names = st.one_of(
    st.from_regex(r"[A-Za-z0-9.][A-Za-z0-9_.\-/]{0,20}", fullmatch=True),
    st.sampled_from(["true", "false", "null", "on", "off", "yes", "no", "1", "1e3", "0x10", ".5", "~", "dense",
                     "conv2d_1", "model/dense"]),
)
free_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def clustering_specs(draw):
    names = draw(st.lists(layer_names, min_size=1, max_size=6, unique=True))
    layers = tuple(LayerClustering(name=name, clusters=draw(st.integers(2, 256)),
                                   init=draw(st.sampled_from(CLUSTER_INITS)), per_channel=draw(st.booleans()),
                                   preserve_sparsity=draw(st.booleans()))
                   for name in names)
    groups = st.lists(layer_names, max_size=4, unique=True).map(tuple)
    validation = draw(st.none() | st.builds(PlanValidation, st.floats(0.01, 0.99), st.integers(0, 10**6),
                                            st.integers(2, 10**6), groups))
    return ClusteringSpec(layers, validation=validation)


@st.composite
def compression_specs(draw):
    keys = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 500)), min_size=1, max_size=6, unique=True))
    layouts = st.one_of(st.builds(PerTensor), st.builds(PerChannel, st.integers(0, 3)))
    return CompressionSpec(tuple(TensorCompression(subgraph, tensor, draw(st.integers(1, 7)), draw(layouts),
                                                   label=draw(free_text))
                                 for subgraph, tensor in keys))


@settings(max_examples=100, deadline=None)
@given(clustering_specs(), free_text)
def test_clustering_spec_round_trip(spec, header):
    text = dump_clustering_spec(spec, header)
    assert parse_clustering_spec(text, "dumped") == spec


@settings(max_examples=100, deadline=None)
@given(compression_specs(), free_text)
def test_compression_spec_round_trip(spec, header):
    text = dump_compression_spec(spec, header)
    parsed = parse_compression_spec(text, "dumped")
    assert parsed == spec
    assert not parsed.upgraded


@settings(max_examples=50, deadline=None)
@given(compression_specs())
def test_dumped_compression_spec_parses_with_tflite_micro(spec):
    """tinycomp's YAML is tflite-micro's format: its own parser reads the same tensors back."""
    from tflite_micro import compression

    parsed = compression.parse_yaml(dump_compression_spec(spec))
    assert [(t.subgraph, t.tensor) for t in parsed] == [(t.subgraph, t.tensor) for t in spec.tensors]
    assert [t.compression[0].index_bitwidth for t in parsed] == [t.index_bitwidth for t in spec.tensors]


# ---------------------------------------------------------------- LUT round trip in TFLM


