"""`tinycomp makefile`: print the path of the Make fragment installed with tinycomp.

Imports nothing heavy: it runs in every `make` that includes the fragment.
"""

from __future__ import annotations

from pathlib import Path

import click

from tinycomp.commands import CONTEXT

FRAGMENT = Path(__file__).resolve().parent.parent / "make" / "tinycomp.mk"


def makefile() -> None:
    """Print the path of tinycomp's Make fragment, for `include` in your Makefile.

    The fragment has pattern rules that take every TINYCOMP_MODELS/NAME.h5 through
    plan → cluster → quantize → find-tensors → compress --strip → eval → report → export
    into TINYCOMP_BUILD/NAME.*, and a gate that fails when the compressed model misses the
    flash, RAM or accuracy budget. Set the variables before the include line; the
    fragment's comments list them all.

    \b
    Example Makefile:
      TINYCOMP_DATA = --data data/kws.npz
      TINYCOMP_FLASH_BUDGET = 64KiB
      TINYCOMP_RAM_BUDGET = 100KiB
      TINYCOMP_ACCURACY_DROP = 0.5
      include $(shell tinycomp makefile)
      all: build/kws.budgets.ok
    Then `make build/kws.compressed.tflite` builds the compressed model of models/kws.h5, and
    `make -k tinycomp-all` every model's artifacts and budget gate.
    """
    if not FRAGMENT.is_file():
        raise click.ClickException(f"the Make fragment is not installed ({FRAGMENT}) — reinstall tinycomp")
    click.echo(str(FRAGMENT))


command = click.command("makefile", context_settings=CONTEXT)(makefile)
