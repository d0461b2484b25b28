"""`tinycomp prune`: magnitude-prune chosen layers with TFMOT while fine-tuning, strip the wrappers, save."""

from __future__ import annotations

import click

from tinycomp import render
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
from tinycomp.errors import UsageError
from tinycomp.fileio import check_output_path, read_text, sidecar_path, write_json_atomic, write_text_atomic
from tinycomp.metrics import Task
from tinycomp.models import save_keras_model
from tinycomp.prune import (
    MIN_EPOCHS,
    MIN_STEPS,
    PRUNE_LEARNING_RATE,
    default_epochs,
    left_out_layers,
    prune_all_spec,
    prune_model,
    validate_spec,
)
from tinycomp.records import PruneRecord
from tinycomp.specs import (
    PRUNING_EXAMPLE,
    PruningSpec,
    check_sparsity,
    dump_pruning_spec,
    parse_prune_layer_options,
    parse_pruning_spec,
)


@click.command("prune", context_settings=CONTEXT, epilog=verbatim("Pruning spec example:", PRUNING_EXAMPLE))
@click.argument("model", type=click.Path())
@output_option
@click.option("--sparsity", type=float, default=None, metavar="S",
              help="Target sparsity in [0, 1): the fraction of kernel weights set to zero in every prunable layer "
                   "(with --layer: in each layer given without =S).")
@click.option("--all", "all_layers", is_flag=True,
              help="Prune every prunable layer to --sparsity (what --sparsity alone does; the layers left out are listed).")
@click.option("--layer", "layers", multiple=True, metavar="NAME[=S]", help="Prune one layer; repeatable.")
@click.option("--spec", "spec_path", type=click.Path(), help="Pruning spec YAML (see below).")
@click.option("--epochs", type=click.IntRange(min=0), default=None,
              help=f"Fine-tuning epochs; the sparsity rises over the first two thirds of them. 0: prune once by "
                   f"magnitude, no fine-tuning. Default: the spec's `epochs`, else {MIN_EPOCHS}, or more on small "
                   f"data: enough for {MIN_STEPS} optimizer steps (80% pruning recovered in 855 steps, not in 171: "
                   "docs/prune.md).")
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Fine-tuning batch size.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help=f"Adam's learning rate for fine-tuning. Default: the spec's `learning_rate`, else "
                   f"{PRUNE_LEARNING_RATE:g} (TFMOT's; on full MNIST at 80% sparsity it kept the unpruned accuracy, "
                   "1e-4 lost 1.2 pp: docs/prune.md).")
@task_option
@trust_option
@seed_option
@data_options
def command(model: str, output: str, sparsity: float | None, all_layers: bool, layers: tuple[str, ...],
            spec_path: str | None, epochs: int | None, batch_size: int, learning_rate: float | None,
            task: Task | None, trust: bool, seed: int, data_spec: DataSpec) -> None:
    """Prune the smallest-magnitude weights of chosen layers with TFMOT while fine-tuning, strip, save
    (.h5, or .keras by -o's name).

    TFMOT's prune_low_magnitude with a PolynomialDecay schedule: the sparsity rises from 10% (or the
    target, when lower) to the target over the first two thirds of the fine-tuning steps, and the
    rest train the kept weights with the pruned ones held at zero (UpdatePruningStep); the wrappers
    are stripped before saving. The unpruned model, the model pruned once without fine-tuning and the
    fine-tuned one are scored on the held-out last 10% of the training rows; the fine-tuned one is
    kept unless the pruned-only one scores higher, and the scores before and after are printed and
    recorded, with a warning when pruning lost any.

    Writes the effective pruning spec (OUTPUT with .yaml) and a record (OUTPUT with .json) with the
    sparsity measured in the saved kernels (their share of exact zeros) and the scores. Loading,
    Keras 3 files, data and the fine-tuning loss work as in `cluster`; `cluster` on the pruned model
    keeps its zeros.

    \b
    Examples:
      tinycomp prune build/model.h5 --sparsity 0.8 -o build/pruned.h5
      tinycomp prune build/model.h5 --layer conv2d_1=0.5 --layer dense=0.9 -o build/pruned.h5
      tinycomp prune build/model.h5 --layer dense --sparsity 0.8 --epochs 0 -o build/pruned.keras
      tinycomp prune models/kws.h5 --spec pruning.yaml --data kws.npz -o build/kws_pruned.h5
    """
    exactly_one_of({"--spec": spec_path, "--layer": layers, "--sparsity": sparsity if not layers else None},
                   what="choose the layers with", where="prune", hint="e.g. --sparsity 0.8 (every prunable layer)")
    if all_layers and (layers or spec_path):
        raise UsageError("--all goes with --sparsity alone", "prune", "give --all --sparsity S, or name the layers")
    if sparsity is not None:
        check_sparsity(sparsity, "--sparsity")
    run(model_path=model, output=output, spec_path=spec_path, layers=layers, sparsity=sparsity, epochs=epochs,
        batch_size=batch_size, learning_rate=learning_rate, task=task, trust=trust, seed=seed, data_spec=data_spec)


def run(*, model_path: str, output: str, spec_path: str | None, layers: tuple[str, ...], sparsity: float | None,
        epochs: int | None, batch_size: int, seed: int, data_spec: DataSpec, learning_rate: float | None = None,
        task: Task | None = None, trust: bool = False) -> None:
    spec = parse_pruning_spec(read_text(spec_path, "pruning spec"), spec_path) if spec_path else None
    if layers:
        spec = parse_prune_layer_options(layers, sparsity)
    check_output_path(output, model_path)
    model, data = load_model_and_data(model_path, data_spec, trust=trust, task=task)
    if spec is None:
        assert sparsity is not None  # exactly one way of choosing layers was given
        spec = prune_all_spec(model, sparsity)
        left_out = left_out_layers(model)
        if left_out:
            render.warn(f"--sparsity leaves out {len(left_out)} layers with weights: "
                        + "; ".join(f"{name} ({why})" for name, why in left_out))
    validate_spec(model, spec)
    if epochs is None:
        epochs = spec.epochs if spec.epochs is not None else default_epochs(data, batch_size)
    if learning_rate is None:
        learning_rate = spec.learning_rate or PRUNE_LEARNING_RATE
    render.info(f"Pruning {', '.join(f'{e.name}→{e.sparsity:.0%}' for e in spec.layers)}; "
                + (f"fine-tuning {epochs} epochs on {data.name}" if epochs else "once by magnitude, no fine-tuning"))
    with render.progress("fine-tuning", max(epochs, 1)) as advance:
        result = prune_model(model, spec, data, epochs=epochs, batch_size=batch_size, seed=seed,
                             on_epoch=render.epoch_callback(advance), learning_rate=learning_rate, task=task)
    save_keras_model(result.model, output, like=model, trust=trust)
    write_outputs(output, model_path, spec, result, data, epochs, seed, learning_rate, batch_size)
    describe(result, output, data.name)


def write_outputs(output: str, model_path: str, spec: PruningSpec, result, data, epochs: int, seed: int,
                  learning_rate: float, batch_size: int) -> None:
    """OUTPUT.yaml (the effective spec, measured sparsity as comments) and OUTPUT.json (the record)."""
    notes = {name: f"measured: {value:.4f} of the kernel weights are zero" for name, value in result.sparsity.items()}
    effective = PruningSpec(spec.layers, epochs, learning_rate)
    write_text_atomic(sidecar_path(output, ".yaml"),
                      dump_pruning_spec(effective, f"Effective pruning of {output} (from {model_path})", notes))
    record = PruneRecord(source=str(model_path), dataset=data.describe(),
                         target_sparsity={e.name: e.sparsity for e in spec.layers}, sparsity=result.sparsity,
                         epochs=epochs, seed=seed, seconds=result.seconds, task=result.task,
                         test_before=result.test_before, test_after=result.test_after, held_out=result.held_out,
                         schedule=result.schedule, loss=result.loss, learning_rate=learning_rate,
                         batch_size=batch_size)
    write_json_atomic(sidecar_path(output, ".json"), record.to_json())


def describe(result, output: str, data_name: str) -> None:
    """The sparsity per layer, the held-out scores before and after (a warning on a loss), the test metrics."""
    for name, value in result.sparsity.items():
        render.out.print(f"  {name}: {value:.2%} of the kernel weights are zero")
    held, text = result.held_out, result.task.score_text
    if "unpruned" in held:
        tuned = f", fine-tuned {text(held['fine_tuned'])}" if "fine_tuned" in held else ""
        line = (f"Held-out {held['metric']} on {held['validation_rows']:,} training rows: unpruned "
                f"{text(held['unpruned'])}, pruned once {text(held['pruned_once'])}{tuned}; kept the {held['used']} model")
        (render.warn if held["kept"] < held["unpruned"] else render.info)(
            line + (" — it scores below the unpruned model" if held["kept"] < held["unpruned"] else ""))
    render.out.print(f"Wrote {output}, {sidecar_path(output, '.yaml')} and {sidecar_path(output, '.json')}: "
                     f"{render.task_metrics(result.test_after)} on {data_name} "
                     f"(unpruned: {render.task_metrics(result.test_before)}), {result.seconds:.1f} s")
