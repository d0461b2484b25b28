"""`tinycomp strip`: remove what TFLM does not read at run time from a .tflite."""

from __future__ import annotations

import click

from tinycomp import render
from tinycomp.commands.common import CONTEXT, output_option, strip_summary
from tinycomp.fileio import check_output_path, write_bytes_atomic
from tinycomp.tflite.model import read_tflite
from tinycomp.tflite.strip import strip_model, verify_stripped


@click.command("strip", context_settings=CONTEXT)
@click.argument("model", type=click.Path())
@output_option
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check TFLM outputs of stripped and original models are identical on random inputs.")
@click.option("--verify-samples", type=click.IntRange(min=1), default=32, show_default=True)
def command(model: str, output: str, verify: bool, verify_samples: int) -> None:
    """Remove what TFLM does not read at run time from a .tflite.

    Drops tensor and subgraph names, signature defs, the description, shape signatures,
    quantization min/max and metadata TFLM does not look up (min_runtime_version,
    CONVERSION_METADATA); keeps OfflineMemoryAllocation and everything compressed models'
    DECODE operators read. Also available as `tinycomp compress --strip`.

    \b
    Example:
      tinycomp strip build/compressed.tflite -o build/compressed_stripped.tflite
    """
    run(model_path=model, output=output, verify=verify, verify_samples=verify_samples)


def run(*, model_path: str, output: str, verify: bool, verify_samples: int) -> None:

    check_output_path(output, model_path)
    model = read_tflite(model_path)
    result = strip_model(model.data, str(model_path))
    if verify:
        with render.progress("verifying in TFLM", 1) as advance:
            result.verified_samples = verify_stripped(model.data, result.data, verify_samples)
            advance()
    write_bytes_atomic(output, result.data)
    note = (f"TFLM outputs identical to the original on {result.verified_samples} random inputs"
            if verify else "not verified (--no-verify)")
    render.out.print(f"Wrote {output}: {strip_summary(result)}; {note}")
