"""Edge helpers shared by the subcommand modules: option declarations, the SIZE type, loading a
model with its data, the exactly-one-of check and the strip summary.

Nothing here imports TensorFlow at module level: `tinycomp --help` must stay fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from tinycomp.errors import UsageError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DATASET_CHOICES = ("mnist", "mnist-sample", "fashion_mnist")
SIZE_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1024, "M": 1000**2, "MB": 1000**2, "MIB": 1024**2}


def verbatim(title: str, block: str) -> str:
    """Help text that shows `block` as written (click's \\b marker stops re-wrapping)."""
    return f"{title}\n\n\b\n{block.rstrip()}"


def parse_size(text: str) -> int:
    """'64KiB' → 65536, '100KB' → 100000, '2048' → 2048; ValueError when unreadable."""
    cleaned = text.strip().upper().replace(" ", "")
    number = cleaned.rstrip("KMIB")
    unit = cleaned[len(number):]
    value = float(number)  # ValueError for non-numbers
    if unit not in SIZE_UNITS or value < 0:
        raise ValueError(text)
    return int(value * SIZE_UNITS[unit])


class SizeType(click.ParamType):
    """A byte count with an optional unit: 65536, 64KiB, 100KB, 1MiB."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError:
            self.fail(f"cannot read size {value!r}: write e.g. 65536, 64KiB, 100KB or 1MiB", param, ctx)


SIZE = SizeType()


def exactly_one_of(given: dict[str, object], *, what: str, where: str, hint: str) -> None:
    """UsageError unless exactly one of `given` (option name as typed → value) has a value.

    The message reads "<what> exactly one of --a, --b or --c".
    """
    present = [name for name, value in given.items() if value is not None and value not in (False, (), "")]
    if len(present) != 1:
        names = list(given)
        listed = ", ".join(names[:-1]) + f" or {names[-1]}"
        raise UsageError(f"{what} exactly one of {listed}", where, hint)


def data_options(fn: Callable) -> Callable:
    """--dataset / --data; the command receives `load_data`, a function that loads them."""
    @click.option("--dataset", type=click.Choice(DATASET_CHOICES), default="mnist", show_default=True,
                  help="mnist: full MNIST if cached or online, else the bundled 5,000-digit sample (with a warning).")
    @click.option("--data", "npz", type=click.Path(dir_okay=True), default=None,
                  help="An .npz with x_train, y_train, x_test, y_test (overrides --dataset).")
    @functools.wraps(fn)
    def wrapper(*args: Any, dataset: str, npz: str | None, **kwargs: Any) -> Any:
        from tinycomp import render
        from tinycomp.data import load_dataset

        loader = functools.partial(load_dataset, dataset, npz, warn=render.warn)
        return fn(*args, load_data=loader, **kwargs)
    return wrapper


def output_option(fn: Callable) -> Callable:
    return click.option("-o", "--output", required=True, type=click.Path(), help="File to write.")(fn)


def seed_option(fn: Callable) -> Callable:
    return click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")(fn)


def load_model_and_data(model_path: str, load_data: Callable) -> tuple[Any, Any]:
    """The Keras model at `model_path` and the data, checked to fit each other."""
    from tinycomp.data import check_fits_model
    from tinycomp.fileio import check_h5_file
    from tinycomp.models import load_keras_model
    from tinycomp.native_output import import_tensorflow_quietly

    import_tensorflow_quietly()
    check_h5_file(model_path)
    data = load_data()
    model = load_keras_model(model_path)
    check_fits_model(data, tuple(model.input_shape[1:]), int(model.output_shape[-1]), str(model_path))
    return model, data


def strip_summary(result: Any) -> str:
    """One line: bytes before → after and what `strip` removed."""
    removed = ", ".join(f"{kind} ({n})" for kind, n in result.removed.items()) or "nothing"
    return (f"{result.bytes_before:,} → {result.bytes_after:,} bytes ({result.bytes_saved:,} saved); "
            f"removed {removed}")
