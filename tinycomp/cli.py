"""The tinycomp command line: the group, its commands (one module each under tinycomp/commands/)
and the one place where errors are rendered.

Every error, ours (the TinycompError family) or click's usage errors, reaches the user as one line
`Error: <what> (<where>) — <what to do>` with a non-zero exit code; tracebacks only with --debug.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any, NoReturn

import click

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's C++ start-up chatter out of the output

from tinycomp import __version__  # noqa: E402
from tinycomp.commands.common import CONTEXT  # noqa: E402
from tinycomp.errors import FieldError, TinycompError  # noqa: E402

# The order of `tinycomp --help`: the tutorial's pipeline first, then the tools beyond it.
COMMAND_MODULES = ("train", "prune", "cluster", "convert", "quantize", "palettize", "find_tensors", "compress", "evaluate",
                   "strip", "export", "report", "plan", "bench_summary", "gate", "makefile")


class TinycompGroup(click.Group):
    """A group that renders every error as one `Error:` line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # declaration order, not alphabetical

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.exceptions.Abort:
            click.echo("Error: interrupted — no output was written", err=True)
            sys.exit(130)
        except click.ClickException as e:  # usage errors: one line, not click's usage block
            click.echo(f"Error: {_usage_message(e)}", err=True)
            sys.exit(e.exit_code)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FieldError as e:  # the library names a parameter; show the option that sets it (else the command)
            if _debug(ctx):
                raise
            e.where = (_option_for(ctx, e.field) if e.field else None) or e.where or ctx.invoked_subcommand
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except TinycompError as e:
            if _debug(ctx):
                raise
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("Error: interrupted — no output was written", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as e:  # a bug, not a user error: still one line unless --debug
            if _debug(ctx):
                raise
            where = traceback.extract_tb(e.__traceback__)[-1]
            click.echo(f"Error: internal error: {type(e).__name__}: {e} ({os.path.basename(where.filename)}:"
                       f"{where.lineno}) — re-run with --debug and report it", err=True)
            ctx.exit(1)


def _usage_message(error: click.ClickException) -> str:
    """click's message with the command it concerns and where to look: `what (tinycomp x) — see --help`."""
    message = error.format_message().rstrip(".")
    context = getattr(error, "ctx", None)
    if context is None:
        return message
    return f"{message} ({context.command_path}) — see '{context.command_path} --help'"


def _option_for(ctx: click.Context, field: str) -> str | None:
    """The option of the invoked subcommand that sets the library parameter `field`, e.g. --symbol."""
    command = ctx.command
    if isinstance(command, click.Group) and ctx.invoked_subcommand:
        command = command.commands.get(ctx.invoked_subcommand, command)
    for param in command.params:
        if param.name == field and isinstance(param, click.Option):
            return max(param.opts, key=len)
    return None


def _debug(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("debug")) or os.environ.get("TINYCOMP_DEBUG") == "1"


@click.group(cls=TinycompGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="tinycomp")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Make Keras models small enough for microcontrollers, and prove they still work.

    \b
    The TFLM compression tutorial as steps that read and write files:
      train → cluster → convert / quantize → find-tensors → compress → eval
    \b
    Example (the whole pipeline on the bundled MNIST sample):
      tinycomp train -o build/model.h5 --dataset mnist-sample
      tinycomp cluster build/model.h5 --spec specs/clustering.yaml -o build/clustered.h5 --dataset mnist-sample
      tinycomp quantize build/clustered.h5 -o build/clustered_int8.tflite --dataset mnist-sample
      tinycomp find-tensors build/clustered_int8.tflite --clustering build/clustered.yaml -o build/compression.yaml
      tinycomp compress build/clustered_int8.tflite --spec build/compression.yaml -o build/compressed.tflite
      tinycomp eval build/*.tflite --baseline build/model.tflite --dataset mnist-sample
    """
    ctx.obj = {"debug": debug}


for _module in COMMAND_MODULES:
    cli.add_command(importlib.import_module(f"tinycomp.commands.{_module}").command)


def main() -> None:
    cli(prog_name="tinycomp")


if __name__ == "__main__":
    main()
