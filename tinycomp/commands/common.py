"""Edge helpers shared by the subcommand modules: option declarations, the SIZE type, loading a
model with its data, the exactly-one-of check and the strip summary.

Nothing here imports TensorFlow at module level: `tinycomp --help` must stay fast.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import click

from tinycomp import data as data_layer
from tinycomp import render
from tinycomp.commands import CONTEXT  # noqa: F401  (re-exported: the commands import it from here)
from tinycomp.data import check_fits_model, open_dataset
from tinycomp.data.spec import DataSpec
from tinycomp.errors import UsageError
from tinycomp.fileio import check_keras_model_path, is_tflite_file
from tinycomp.metrics import TASKS, Task, choose_task, get_task
from tinycomp.models import load_keras_model
from tinycomp.native_output import import_tensorflow_quietly

if TYPE_CHECKING:
    from tinycomp.data import Dataset

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


def _given(value: object) -> bool:
    """Whether an option has a value: a flag that is set, a non-empty tuple or string, any number (0 too)."""
    if value is None or value is False:  # `is`, not `in`: 0 == False, and a budget of 0 is a value
        return False
    return value not in ((), "")


def exactly_one_of(given: dict[str, object], *, what: str, where: str, hint: str) -> None:
    """UsageError unless exactly one of `given` (option name as typed → value) has a value.

    The message reads "<what> exactly one of --a, --b or --c".
    """
    present = [name for name, value in given.items() if _given(value)]
    if len(present) != 1:
        names = list(given)
        listed = ", ".join(names[:-1]) + f" or {names[-1]}"
        raise UsageError(f"{what} exactly one of {listed}", where, hint)


DATA_HELP = ("Your data (overrides --dataset): an .npz with x_train, y_train, x_test, y_test (y optional: without "
             "labels the targets are the inputs); an .npy of inputs (with --targets); or a directory of images in "
             "one subfolder per class. For data larger than memory use .npy (memory-mapped, read in batches); "
             "compressed .npz members are read into memory (see docs/data.md).")


@dataclass(frozen=True)
class DataOptions:
    """The data options as given on the command line (None: not given)."""

    dataset: str | None = None
    path: str | None = None
    targets: str | None = None
    input_scale: float | None = None
    input_offset: float | None = None
    image_size: tuple[int, int] | None = None
    groups: str | None = None
    val_data: str | None = None
    val_targets: str | None = None

    def spec(self) -> DataSpec:
        """The DataSpec these options name (--dataset defaults to mnist)."""
        npy = bool(self.path and self.path.lower().endswith(".npy"))
        for flag, value in (("--targets", self.targets), ("--groups", self.groups), ("--val-data", self.val_data),
                            ("--val-targets", self.val_targets)):
            if value and not npy:
                hint = ("give the inputs as --data X.npy" if flag == "--targets" else
                        "give the inputs as --data X.npy, or put groups_train or x_val/y_val in the .npz")
                raise UsageError(f"{flag} goes with --data X.npy", flag, hint)
        if self.val_targets and not self.val_data:
            raise UsageError("--val-targets goes with --val-data", "--val-targets", "give the inputs as --val-data XV.npy")
        return data_layer.spec_of_options(dataset=self.dataset or "mnist", path=self.path, targets=self.targets,
                               input_scale=self.input_scale, input_offset=self.input_offset,
                               image_size=self.image_size, groups=self.groups, val_data=self.val_data,
                               val_targets=self.val_targets)

    def over(self, recorded: DataSpec) -> DataSpec:
        """These options where given, else the `recorded` spec: --dataset or --data names other data
        (with these options); otherwise the recorded data, with any preprocessing option given replacing
        the recorded one."""
        if self.dataset is not None or self.path is not None:
            return self.spec()
        for flag, value in (("--targets", self.targets), ("--groups", self.groups), ("--val-data", self.val_data),
                            ("--val-targets", self.val_targets)):
            if value is not None:
                raise UsageError(f"{flag} goes with --data X.npy", flag, "give the inputs as --data X.npy")
        return replace(recorded,
                       input_scale=recorded.input_scale if self.input_scale is None else self.input_scale,
                       input_offset=recorded.input_offset if self.input_offset is None else self.input_offset,
                       image_size=recorded.image_size if self.image_size is None else self.image_size)


def _data_option_decorators(default_dataset: str | None,
                            dataset_help: str | None = None) -> list[Callable[[Callable[..., Any]], Callable[..., Any]]]:
    dataset_help = dataset_help or (
        "mnist: full MNIST if cached or online, else the bundled 5,000-digit sample (with a warning)."
        if default_dataset else "A built-in dataset  [default: the data the eval JSON records]")
    return [
        click.option("--dataset", type=click.Choice(DATASET_CHOICES), default=default_dataset,
                     show_default=default_dataset is not None, help=dataset_help),
        click.option("--data", "data_path", type=click.Path(dir_okay=True), default=None, metavar="PATH",
                     help=DATA_HELP),
        click.option("--targets", "targets_path", type=click.Path(), default=None, metavar="FILE.npy",
                     help="With --data X.npy: the labels (integers) or regression targets, one row per input row."),
        click.option("--input-scale", type=float, default=None, metavar="S",
                     help="Inputs become x * S + OFFSET  [default: 1/255 for uint8 data, else 1: used as given]"),
        click.option("--input-offset", type=float, default=None, metavar="OFFSET",
                     help="Added after --input-scale  [default: 0]"),
        click.option("--image-size", type=IMAGE_SIZE, default=None, metavar="HxW",
                     help="With an image directory: resize every image to H×W  [default: all images must be one size]"),
        click.option("--groups", "groups_path", type=click.Path(), default=None, metavar="FILE.npy",
                     help="With --data X.npy: one group id per row (subject, speaker, session, device). plan "
                          "validates on whole held-out groups, and bounds drops by group (an .npz carries "
                          "groups_train and groups_test instead), e.g. --groups subjects.npy"),
        click.option("--val-data", "val_data_path", type=click.Path(), default=None, metavar="FILE.npy",
                     help="With --data X.npy: plan's validation inputs, never fine-tuned on (an .npz carries "
                          "x_val and y_val instead), e.g. --val-data x_val.npy --val-targets y_val.npy"),
        click.option("--val-targets", "val_targets_path", type=click.Path(), default=None, metavar="FILE.npy",
                     help="With --val-data: the validation rows' labels or targets."),
    ]


def _options_of(kwargs: dict[str, Any]) -> DataOptions:
    return DataOptions(kwargs.pop("dataset"), kwargs.pop("data_path"), kwargs.pop("targets_path"),
                       kwargs.pop("input_scale"), kwargs.pop("input_offset"), kwargs.pop("image_size"),
                       kwargs.pop("groups_path"), kwargs.pop("val_data_path"), kwargs.pop("val_targets_path"))


def data_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--dataset / --data / --targets / --input-scale / --input-offset / --image-size.

    The command receives `data_spec`, the one DataSpec they name (parsed here, once); it opens the
    data with `tinycomp.data.open_dataset`, which records the spec and the preprocessing in the
    data's description, so in every sidecar.
    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, data_spec=_options_of(kwargs).spec(), **kwargs)
    for decorate in reversed(_data_option_decorators("mnist")):
        wrapper = decorate(wrapper)
    return wrapper


def recorded_data_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The same options for commands that read a record (report): the command receives `data_options`,
    a DataOptions to lay `over` the DataSpec the record holds."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, data_options=_options_of(kwargs), **kwargs)
    for decorate in reversed(_data_option_decorators(None)):
        wrapper = decorate(wrapper)
    return wrapper


def optional_data_options(dataset_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The same options for commands that use data only when given (palettize): the command receives
    `data_spec`, the DataSpec they name, or None when neither --dataset nor --data is given (a
    preprocessing option alone is then a UsageError)."""
    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            options = _options_of(kwargs)
            if options.dataset is None and options.path is None:
                given = [flag for flag, value in (("--targets", options.targets), ("--input-scale", options.input_scale),
                                                  ("--input-offset", options.input_offset),
                                                  ("--image-size", options.image_size)) if value is not None]
                if given:
                    raise UsageError(f"{given[0]} goes with data", given[0], "give --data or --dataset too")
                return fn(*args, data_spec=None, **kwargs)
            return fn(*args, data_spec=options.spec(), **kwargs)
        for decorate in reversed(_data_option_decorators(None, dataset_help)):
            wrapper = decorate(wrapper)
        return wrapper
    return decorator


class ImageSizeType(click.ParamType):
    """HxW, e.g. 96x96."""

    name = "HxW"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        parts = str(value).lower().replace("×", "x").split("x")
        if len(parts) == 2 and all(p.strip().isdigit() and int(p) > 0 for p in parts):
            return int(parts[0]), int(parts[1])
        self.fail(f"cannot read image size {value!r}: write HEIGHTxWIDTH, e.g. 96x96", param, ctx)


IMAGE_SIZE = ImageSizeType()


def _task_named(ctx: click.Context, param: click.Parameter, name: str | None) -> Task | None:
    """--task NAME as the Task object the commands pass on (the name stays at this edge)."""
    return get_task(name) if name is not None else None


def task_option(fn: Callable) -> Callable:
    return click.option("--task", type=click.Choice(tuple(TASKS)), default=None, callback=_task_named,
                        help="What the model does: classify (top-1 accuracy) or regress (MSE and SNR; also "
                             "reconstruction)  [default: regress when the data has no labels or y has the "
                             "output's shape, else classify]")(fn)


def trust_option(fn: Callable) -> Callable:
    return click.option("--trust-model", "trust", is_flag=True,
                        help="Load models whose loading runs Python code (Lambda layers, custom objects). "
                             "Refused by default: only for files you trust.")(fn)


def output_option(fn: Callable) -> Callable:
    return click.option("-o", "--output", required=True, type=click.Path(), help="File to write.")(fn)


def seed_option(fn: Callable) -> Callable:
    return click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")(fn)


def open_data(spec: DataSpec, *, splits: tuple[str, ...] = ("train", "test")) -> Dataset:
    """The data `spec` names, with warnings rendered; only `splits` are read."""

    return open_dataset(spec, splits=splits, warn=render.warn)


def load_model_and_data(model_path: str, data_spec: DataSpec, *, trust: bool = False,
                        task: Task | None = None, for_conversion: bool = False) -> tuple[Any, Dataset]:
    """The Keras model at `model_path` (.h5, .keras or a SavedModel directory) and the data, checked
    to fit each other for the task (`task`, or chosen from the data and the model's output).
    `for_conversion`: see models.load_keras_model (Keras 3 and plain SavedModels as they are)."""

    import_tensorflow_quietly()
    check_keras_model_path(model_path)
    data = open_data(data_spec)
    model = load_keras_model(model_path, trust=trust, for_conversion=for_conversion)
    input_shape, output_shape = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    data = data.fit_to(input_shape)
    chosen = choose_task(data.y_test[:1] if data.labels else None, output_shape, task)
    check_fits_model(data, input_shape, int(output_shape[-1]), str(model_path), task=chosen,
                     output_shape=output_shape)
    return model, data


def load_model(model_path: str, *, trust: bool = False, for_conversion: bool = False) -> Any:
    """The Keras model at `model_path` (.h5, .keras or a SavedModel directory), loaded safely unless trusted."""

    check_keras_model_path(model_path)
    import_tensorflow_quietly()
    return load_keras_model(model_path, trust=trust, for_conversion=for_conversion)


def strip_summary(result: Any) -> str:
    """One line: bytes before → after and what `strip` removed."""
    removed = ", ".join(f"{kind} ({n})" for kind, n in result.removed.items()) or "nothing"
    return (f"{result.bytes_before:,} → {result.bytes_after:,} bytes ({result.bytes_saved:,} saved); "
            f"removed {removed}")


def parse_learning_rate(text: str) -> float | None:
    """'auto' → None; a number above 0 → that number; UsageError otherwise."""
    if text.strip().lower() == "auto":
        return None
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not rate > 0:
        raise UsageError(f"cannot read --learning-rate {text!r}", "--learning-rate", "give a number above 0, e.g. "
                         "1e-4, or auto")
    return rate


def parse_counts(text: str) -> tuple[int, ...]:
    """'2,4,8' → (2, 4, 8); UsageError when unreadable (the range is checked by Measurement)."""
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise UsageError(f"cannot read --clusters {text!r}", "--clusters", "write e.g. 2,4,8,16") from None


def capped_jobs(jobs: int) -> int:
    """--jobs, at most the number of cores (more processes only compete for them)."""
    cores = os.cpu_count() or 1
    if jobs > cores:
        render.warn(f"--jobs {jobs} is more than the {cores} cores; using {cores}")
    return min(jobs, cores)


def is_tflite(path: str) -> bool:
    """The model argument is a .tflite: by its content, or by its name when it does not exist yet."""
    return is_tflite_file(path) or path.lower().endswith(".tflite")


def options_given(ctx: click.Context, names: Iterable[str]) -> list[str]:
    """The flags (e.g. --epochs) of the named parameters that were given on the command line."""
    wanted = set(names)
    return [max(p.opts, key=len) for p in ctx.command.params if p.name in wanted
            and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
