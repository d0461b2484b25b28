"""Safe loading: a model whose loading would run code is refused unless trusted; formats and structure."""

from __future__ import annotations

import pytest

from tinycomp.errors import ModelError, UnsafeModelError


def _lambda_model(marker):
    """A model whose Lambda function writes `marker` when it runs (at build time and at load time)."""
    import tf_keras

    source = f"def scale(v):\n    open({str(marker)!r}, 'w').write('ran')\n    return v * 2.0\n"
    namespace: dict = {}
    exec(source, namespace)  # a real Python function with the path as a constant, as an attacker would write
    inputs = tf_keras.Input((4,))
    x = tf_keras.layers.Lambda(namespace["scale"], name="scale")(inputs)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="dense")(x))


@pytest.mark.parametrize("suffix", [".h5", ".keras", ""])
def test_lambda_model_is_refused_without_trust_and_runs_nothing(tmp_path, suffix):
    from tinycomp.models import load_keras_model

    marker = tmp_path / "pwned.txt"
    path = tmp_path / f"evil{suffix or '_savedmodel'}"
    model = _lambda_model(marker)
    model.save(str(path), **({"save_format": "tf"} if not suffix else {}))
    marker.unlink()
    with pytest.raises(UnsafeModelError) as caught:
        load_keras_model(path)
    message = str(caught.value)
    assert "Lambda layer 'scale'" in message and "--trust-model" in message and str(path) in message
    assert not marker.exists()
    loaded = load_keras_model(path, trust=True)
    assert marker.exists()  # trusted: its code ran, as the user allowed
    assert loaded.output_shape == (None, 2)


def test_unknown_custom_layer_is_named(tmp_path):
    import tf_keras

    from tinycomp.models import load_keras_model

    class Doubler(tf_keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inputs = tf_keras.Input((3,))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(Doubler(name="doubler")(inputs)))
    path = tmp_path / "custom.h5"
    model.save(path)
    with pytest.raises(UnsafeModelError, match="custom layer 'doubler' of class 'Doubler'"):
        load_keras_model(path)


def test_multi_input_and_multi_output_models_are_refused(tmp_path):
    import tf_keras

    from tinycomp.models import load_keras_model

    a, b = tf_keras.Input((3,)), tf_keras.Input((3,))
    two_in = tf_keras.Model([a, b], tf_keras.layers.Dense(2)(tf_keras.layers.Add()([a, b])))
    two_out = tf_keras.Model(a, [tf_keras.layers.Dense(2)(a), tf_keras.layers.Dense(1)(a)])
    for name, model, what in (("in.h5", two_in, "2 inputs"), ("out.keras", two_out, "2 outputs")):
        model.save(tmp_path / name)
        with pytest.raises(ModelError, match=f"the model has {what}.*supported: Functional and Sequential"):
            load_keras_model(tmp_path / name)


def test_subclassed_model_is_refused(tmp_path):
    from helpers import save_subclassed_model
    from tinycomp.models import load_keras_model

    save_subclassed_model(tmp_path / "sub", inputs=3)
    with pytest.raises(ModelError, match="subclassed model.*supported: Functional and Sequential"):
        load_keras_model(tmp_path / "sub")


def test_clustered_wrappers_load_and_keras_format_round_trips(tmp_path):
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from tinycomp.models import load_keras_model, save_keras_model

    model = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(4, name="d")])
    clustered = tfmot.clustering.keras.cluster_weights(
        model, number_of_clusters=2, cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR)
    for name in ("c.h5", "c.keras"):
        save_keras_model(clustered, tmp_path / name)
        assert type(load_keras_model(tmp_path / name).layers[0]).__name__ == "ClusterWeights"
    import zipfile

    assert "config.json" in zipfile.ZipFile(tmp_path / "c.keras").namelist()
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left
