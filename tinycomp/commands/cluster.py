"""`tinycomp cluster`: cluster chosen layers with TFMOT, fine-tune, strip the wrappers, save."""

from __future__ import annotations

import click

from tinycomp import render
from tinycomp.bounds import Checked
from tinycomp.cluster import (
    cluster_all_spec,
    cluster_model,
    kernel_zero_fraction,
    left_out_layers,
    sparse_kernels,
    validate_spec,
)
from tinycomp.commands.common import (
    CONTEXT,
    data_options,
    exactly_one_of,
    load_model_and_data,
    output_option,
    seed_option,
    task_option,
    trust_option,
    verbatim,
)
from tinycomp.data import DataSpec
from tinycomp.fileio import check_output_path, read_text, sidecar_path, write_json_atomic, write_text_atomic
from tinycomp.metrics import Task
from tinycomp.models import FINE_TUNE_LEARNING_RATE, save_keras_model
from tinycomp.records import ClusterRecord
from tinycomp.specs import (
    CLUSTER_INITS,
    CLUSTERING_EXAMPLE,
    dump_clustering_spec,
    parse_clustering_spec,
    parse_layer_options,
)


@click.command("cluster", context_settings=CONTEXT, epilog=verbatim("Clustering spec example:", CLUSTERING_EXAMPLE))
@click.argument("model", type=click.Path())
@output_option
@click.option("--spec", "spec_path", type=click.Path(), help="Clustering spec YAML (see below).")
@click.option("--layer", "layers", multiple=True, metavar="NAME=CLUSTERS", help="Cluster one layer; repeatable.")
@click.option("--all", "all_layers", type=click.IntRange(min=2), metavar="CLUSTERS",
              help="Cluster every layer with weights to this many clusters (the layers left out are listed).")
@click.option("--init", type=click.Choice(CLUSTER_INITS), default="kmeans++", show_default=True,
              help="Centroid initialisation for --layer/--all.")
@click.option("--epochs", type=click.IntRange(min=0), default=None,
              help="Fine-tuning epochs; 0: cluster without fine-tuning (zero-shot). Default: the spec's `epochs` "
                   "(plan writes the one its check chose), else 2.")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Fine-tuning batch size.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Adam's learning rate for fine-tuning. Default: the spec's `learning_rate` (plan writes the one it "
                   f"fine-tuned with), else {FINE_TUNE_LEARNING_RATE:g} (measured on four real models: 1e-3 can lose a "
                   "converged model's accuracy, 1e-5 recovers few clusters poorly; docs/plan.md).")
@task_option
@trust_option
@seed_option
@data_options
def command(model: str, output: str, spec_path: str | None, layers: tuple[str, ...], all_layers: int | None,
            init: str, epochs: int | None, batch_size: int, learning_rate: float | None, task: Task | None, trust: bool, seed: int,
            data_spec: DataSpec) -> None:
    """Cluster chosen layers' weights with TFMOT, fine-tune, strip, save (.h5, or .keras by -o's name).

    Fine-tuning never makes the model worse: the clustered model is scored on the held-out last 10% of
    the training rows before and after fine-tuning, and the fine-tuned one is kept only when it scores
    no lower (both scores are printed and recorded). A spec from `plan` (with `validation:`) makes what
    the plan's check measured: it fine-tunes without the plan's validation rows (held-out groups, the
    data's x_val, or the last rows) and keeps the fine-tuned model only when its drop against the given
    model has the lower 95% upper bound on them, as the check decided; give it plan's --data. A spec with no layers (`layers: []`, what plan
    writes when nothing fits its budget) clusters nothing: the model is saved unchanged.

    The model may be .h5, .keras or a SavedModel directory; a Keras 3 file is clustered as its tf_keras
    rebuild and written back by Keras 3. Fine-tuning uses the loss the model was
    compiled with when it was saved (else: sparse cross-entropy for classifiers, from logits when
    the output has no softmax; MSE for regression). Writes the effective clustering spec next to
    the output (OUTPUT with .yaml) for `find-tensors --clustering`, and metrics (OUTPUT with .json).

    A pruned layer (at least 1% of its kernel exactly zero, e.g. from `tinycomp prune`) keeps its zeros
    (TFMOT's preserve_sparsity: one centroid is pinned at zero) unless the spec says
    `preserve_sparsity: false`; the effective spec records the choice per layer. Pruned layers that
    are not clustered keep their zeros through the fine-tuning too.

    \b
    Examples:
      tinycomp cluster build/model.h5 --spec specs/clustering.yaml -o build/clustered.h5
      tinycomp cluster build/model.h5 --layer conv2d_1=16 --layer dense=16 -o build/clustered.h5
      tinycomp cluster models/ae.keras --all 16 --data ae.npz --learning-rate 1e-3 -o build/ae16.keras
    """
    exactly_one_of({"--spec": spec_path, "--layer": layers, "--all": all_layers}, what="choose the layers with",
                   where="cluster", hint="e.g. --spec specs/clustering.yaml")
    run(model_path=model, output=output, spec_path=spec_path, layers=layers, all_layers=all_layers, init=init,
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, task=task, trust=trust, seed=seed,
        data_spec=data_spec)


DEFAULT_EPOCHS = 2


def run(*, model_path: str, output: str, spec_path: str | None, layers: tuple[str, ...], all_layers: int | None,
        init: str, epochs: int | None, batch_size: int, seed: int, data_spec: DataSpec,
        learning_rate: float | None = None, task: Task | None = None, trust: bool = False) -> None:

    spec = parse_clustering_spec(read_text(spec_path, "clustering spec"), spec_path) if spec_path else None
    if layers:
        spec = parse_layer_options(layers, init)
    check_output_path(output, model_path)
    model, data = load_model_and_data(model_path, data_spec, trust=trust, task=task)
    if all_layers:
        spec = cluster_all_spec(model, all_layers, init)
        left_out = left_out_layers(model, all_layers)
        if left_out:
            render.warn(f"--all {all_layers} leaves out {len(left_out)} layers with weights: "
                        + "; ".join(f"{name} ({why})" for name, why in left_out))
    assert spec is not None  # exactly one of the three was given
    validate_spec(model, spec)
    if epochs is None:
        epochs = spec.epochs if spec.epochs is not None else DEFAULT_EPOCHS
    if learning_rate is None:
        learning_rate = spec.learning_rate or FINE_TUNE_LEARNING_RATE
    if not spec.layers:
        render.info(f"The spec clusters no layer: {model_path} is saved unchanged")
        epochs = 0
    else:
        render.info(f"Clustering {', '.join(f'{entry.name}→{entry.clusters}' for entry in spec.layers)}; "
                    + (f"fine-tuning {epochs} epochs on {data.name}" if epochs else "no fine-tuning (zero-shot)"))
    with render.progress("fine-tuning", max(epochs, 1)) as advance:
        result = cluster_model(model, spec, data, epochs=epochs, batch_size=batch_size, seed=seed,
                               on_epoch=render.epoch_callback(advance), learning_rate=learning_rate, task=task)
    save_keras_model(result.model, output, like=model, trust=trust)
    spec = result.spec or spec
    write_text_atomic(sidecar_path(output, ".yaml"),
                      dump_clustering_spec(spec, f"Effective clustering of {output} (from {model_path})"))
    record = ClusterRecord(source=str(model_path), dataset=data.describe(), test_accuracy=result.test_accuracy,
                           unique_values=result.unique_values, epochs=epochs, seed=seed, seconds=result.seconds,
                           task=result.task, test_metrics=result.test_metrics, loss=result.loss,
                           learning_rate=learning_rate, batch_size=batch_size, fine_tuning=result.fine_tuning)
    write_json_atomic(sidecar_path(output, ".json"), record.to_json())
    describe_fine_tuning(result.fine_tuning, result.task)
    unclustered = [name for name, _ in sparse_kernels(model, set(spec.layer_names()))]
    if unclustered:
        render.info(f"Kept the zeros of the pruned layers not clustered: {', '.join(unclustered)}")
    kept_zeros = {entry.name for entry in spec.layers if entry.preserve_sparsity}
    for name, count in result.unique_values.items():
        zeros = f", zeros kept ({kernel_zero_fraction(result.model, name):.2%} of the weights)" if name in kept_zeros else ""
        render.out.print(f"  {name}: {count} unique kernel values{zeros}")
    render.out.print(f"Wrote {output} and {sidecar_path(output, '.yaml')}: {render.task_metrics(result.test_metrics)} "
                     f"on {data.name}, {result.seconds:.1f} s")


def describe_fine_tuning(fine_tuning: dict, task: Task) -> None:
    """One line on whether the fine-tuned or the zero-shot model was kept, and why."""

    if "zero_shot" not in fine_tuning:
        return
    text = task.score_text
    scores = (f"{text(fine_tuning['fine_tuned'])} fine-tuned vs {text(fine_tuning['zero_shot'])} "
              f"zero-shot on the {fine_tuning['validation_rows']:,} held-out training rows")
    if "bound" in fine_tuning:  # a plan's spec: decided as its check decided, on its validation rows
        bound = Checked.from_json(fine_tuning["bound"], "the cluster record")
        kept = "fine-tuned" if fine_tuning["used"] else "zero-shot (clustered, not fine-tuned)"
        render.info(f"Kept the {kept} model, as the plan's check decides (the lower 95% upper bound of the drop "
                    f"against the given model on the plan's validation rows): drop {bound.drop.text()}; {scores}")
    elif fine_tuning["used"]:
        render.info(f"Kept the fine-tuned model: {scores}")
    else:
        render.warn(f"Fine-tuning scored lower ({scores}): kept the zero-shot model (clustered, not fine-tuned)")
