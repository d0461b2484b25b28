"""`tinycomp export`: a .tflite as a C array and header for firmware."""

from __future__ import annotations

import click

from tinycomp import render
from tinycomp.commands.common import CONTEXT
from tinycomp.errors import UsageError
from tinycomp.export import check_symbol, to_c_source
from tinycomp.fileio import check_output_path, write_text_atomic
from tinycomp.tflite.model import read_tflite


@click.command("export", context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="C++ source file to write, e.g. model_data.cc.")
@click.option("--header", type=click.Path(), help="Header to write  [default: OUTPUT with .h]")
@click.option("--symbol", default="g_model", show_default=True,
              help="C name of the array; its length is SYMBOL_len.")
def command(model: str, output: str, header: str | None, symbol: str) -> None:
    """Write a .tflite as a C array to compile into firmware (as the TFLM examples do).

    The .cc holds `alignas(16) const unsigned char SYMBOL[] = {...};` and
    `const unsigned int SYMBOL_len`; the header declares both.

    \b
    Example:
      tinycomp export build/compressed.tflite -o firmware/model_data.cc --symbol g_model
    """
    run(model_path=model, output=output, header=header, symbol=symbol)


def run(*, model_path: str, output: str, header: str | None, symbol: str) -> None:
    import os
    from pathlib import Path


    check_symbol(symbol)
    header_path = Path(header) if header else Path(output).with_suffix(".h")
    if Path(output).suffix.lower() in (".h", ".hpp") or Path(output).suffix == "":
        raise UsageError("the output is the C++ source file", str(output), "give e.g. -o model_data.cc")
    check_output_path(output, model_path)
    check_output_path(header_path, model_path, output)
    model = read_tflite(model_path)
    include = os.path.relpath(str(header_path), str(Path(output).parent)).replace(os.sep, "/")
    cc_text, h_text = to_c_source(model.data, symbol, include, os.path.basename(model_path))
    write_text_atomic(header_path, h_text)
    write_text_atomic(output, cc_text)
    render.out.print(f"Wrote {output} and {header_path}: {symbol}[{len(model.data):,}] (16-byte aligned) and "
                     f"{symbol}_len")
