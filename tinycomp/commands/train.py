"""`tinycomp train`: train the tutorial CNN and save it, with a metrics sidecar."""

from __future__ import annotations

from pathlib import Path

import click

from tinycomp import render
from tinycomp.commands.common import CONTEXT, data_options, open_data, output_option, seed_option
from tinycomp.data import DataSpec
from tinycomp.errors import DataError
from tinycomp.fileio import check_output_path, sidecar_path, write_json_atomic
from tinycomp.models import save_keras_model
from tinycomp.native_output import import_tensorflow_quietly
from tinycomp.records import TrainRecord
from tinycomp.train import train_model


@click.command("train", context_settings=CONTEXT)
@output_option
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--validation-split", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True)
@seed_option
@data_options
def command(output: str, epochs: int, batch_size: int, validation_split: float, seed: int,
            data_spec: DataSpec) -> None:
    """Train the tutorial CNN and save it (.h5, or .keras when OUTPUT ends in .keras).

    Writes metrics and the dataset actually used next to the model (OUTPUT with .json).

    \b
    Example:
      tinycomp train -o build/model.h5 --dataset mnist-sample --epochs 3
    """
    run(output=output, epochs=epochs, batch_size=batch_size, validation_split=validation_split, seed=seed,
        data_spec=data_spec)


def run(*, output: str, epochs: int, batch_size: int, validation_split: float, seed: int,
        data_spec: DataSpec) -> None:

    check_output_path(output)
    data = open_data(data_spec)
    if not data.has_class_labels:

        raise DataError("train builds the tutorial's image classifier, and this data has no class labels", data.name,
                        "train your own model in Keras, then start from `tinycomp cluster` or `plan`")
    import_tensorflow_quietly()
    render.info(f"Training the tutorial CNN on {data.name} ({len(data.x_train):,} images, {epochs} epochs)")
    with render.progress("training", epochs) as advance:
        result = train_model(data, epochs=epochs, batch_size=batch_size, validation_split=validation_split,
                             seed=seed, on_epoch=render.epoch_callback(advance))
    save_keras_model(result.model, output)
    record = TrainRecord(dataset=data.describe(), test_accuracy=result.test_accuracy, epochs=epochs,
                         batch_size=batch_size, validation_split=validation_split, seed=seed, seconds=result.seconds,
                         history=result.history,
                         validation=None if result.validation is None else result.validation.to_json())
    write_json_atomic(sidecar_path(output, ".json"), record.to_json())
    if result.validation is not None:
        render.info(result.validation.describe(data.name, fine_tunes=False, label="held out of training"))
    render.out.print(f"Wrote {output} ({Path(output).stat().st_size:,} bytes): test accuracy "
                     f"{100 * result.test_accuracy:.2f}% on {data.name} ({len(data.x_test):,} images), "
                     f"{result.seconds:.1f} s")
