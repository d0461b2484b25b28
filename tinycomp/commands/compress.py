"""`tinycomp compress`: LUT, HUFFMAN and PRUNE compression with tflite_micro.compression, verified in TFLM."""

from __future__ import annotations

import click

from tinycomp import render
from tinycomp.commands.common import CONTEXT, SIZE, exactly_one_of, output_option, strip_summary, verbatim
from tinycomp.fileio import check_output_path, read_bytes, read_text, write_bytes_atomic
from tinycomp.specs import COMPRESSION_EXAMPLE, LEGACY_COMPRESSION_EXAMPLE, CompressionSpec, parse_compression_spec
from tinycomp.tflite.compress import (
    CompressResult,
    compress_choosing_slices,
    compress_model,
    verify_identical,
    with_merged_decodes,
)
from tinycomp.tflite.strip import strip_model


@click.command("compress", context_settings=CONTEXT,
               epilog=verbatim("Spec format (tflite-micro's current one):", COMPRESSION_EXAMPLE)
               + "\n\n" + verbatim("The tutorial's older form is accepted; each tensor's layout is then taken "
                                   "from its quantization:", LEGACY_COMPRESSION_EXAMPLE))
@click.argument("model", type=click.Path())
@output_option
@click.option("--spec", "spec_path", type=click.Path(), default=None,
              help="Compression spec YAML (lut, huffman or pruning per tensor).")
@click.option("--lossless", is_flag=True,
              help="No spec: give every CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and TRANSPOSE_CONV weight tensor "
                   "whichever of LUT (its existing values), Huffman, pruning (bitmask) or none makes the written file "
                   "smallest, each measured; with --decode-budget, measured on the sliced file by flash and TFLM arena "
                   "together; prints what each tensor got (docs/lossless.md).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Check TFLM outputs of compressed and original models are identical on random inputs.")
@click.option("--verify-samples", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--strip", "strip_", is_flag=True,
              help="Also remove what TFLM does not read (names, signatures, metadata), as `tinycomp strip`.")
@click.option("--decode-budget", type=SIZE, default=None, metavar="SIZE",
              help="Split every compressed FULLY_CONNECTED/CONV_2D kernel that decodes to more than SIZE bytes "
                   "along its output channels, so TFLM decodes one slice at a time into the arena; the slice count "
                   "is chosen by the TFLM arena, measured, and HUFFMAN/PRUNE DECODE operators are merged where that "
                   "lowers it (docs/slicing.md)  [default: the spec's decode_budget, "
                   "sliced into the fewest slices that fit, as `plan` measured them; else no slicing]")
def command(model: str, output: str, spec_path: str | None, lossless: bool, verify: bool, verify_samples: int,
            strip_: bool, decode_budget: int | None) -> None:
    """Compress tensors of a .tflite (LUT, Huffman, pruning) with tflite_micro.compression, decoded by TFLM.

    \b
    Example:
      tinycomp compress build/clustered_int8.tflite --spec build/compression.yaml -o build/compressed.tflite
      tinycomp compress build/clustered_int8.tflite --spec build/compression.yaml --decode-budget 16KiB -o build/sliced.tflite
      tinycomp compress build/model_int8.tflite --lossless --strip -o build/lossless.tflite
      tinycomp compress build/model_int8.tflite --lossless --strip --decode-budget 16KiB -o build/lossless_sliced.tflite
    """
    run(model_path=model, output=output, spec_path=spec_path, lossless=lossless, verify=verify,
        verify_samples=verify_samples, strip=strip_, decode_budget=decode_budget)


def run(*, model_path: str, output: str, spec_path: str | None, verify: bool, verify_samples: int, strip: bool,
        decode_budget: int | None = None, lossless: bool = False) -> None:

    exactly_one_of({"--spec": spec_path, "--lossless": lossless}, what="give", where="compress",
                   hint="--spec names each tensor's encoding; --lossless chooses every weight tensor's itself")
    if lossless:
        _run_lossless(model_path=model_path, output=output, verify=verify, verify_samples=verify_samples, strip=strip,
                      decode_budget=decode_budget)
        return
    assert spec_path is not None
    spec = parse_compression_spec(read_text(spec_path, "compression spec"), spec_path)
    check_output_path(output, model_path, spec_path)
    data = read_bytes(model_path, ".tflite model")
    if spec.upgraded:
        render.warn(f"{spec_path} uses the tutorial's older spec form; layouts are taken from the tensors' "
                    "quantization (write the current form with `tinycomp find-tensors`)")
    budget_from_spec = decode_budget is None and spec.decode_budget is not None
    # without --decode-budget: the spec's budget, sliced into the fewest slices that fit, as plan measured them
    result, stripped = _compressed(data, spec, model_path, spec_path, decode_budget, strip, spec.decode_budget)
    decode_budget = decode_budget if decode_budget is not None else spec.decode_budget
    if verify:
        with render.progress("verifying in TFLM", 1) as advance:
            if result.slicing_cost is None:
                result.verified_samples = verify_identical(data, result.data, verify_samples)
            else:
                result.verified_samples = verify_identical(data, result.data, verify_samples,
                                                           what="sliced and compressed model",
                                                           hint="report this: slicing should be exact")
            advance()
    write_bytes_atomic(output, result.data)
    render.out.print(render.compress_table(result))
    _report(result, output, verify, stripped, decode_budget, spec_path, budget_from_spec)


def _compressed(data: bytes, spec: CompressionSpec, model_path: str, spec_path: str, decode_budget: int | None,
                strip: bool, fewest_slices_budget: int | None = None) -> tuple[CompressResult, object | None]:
    """The compressed (and with `strip`, stripped) file: with `decode_budget`, each sliced kernel in the slice
    count whose measured arena is smallest for its flash; else sliced into the fewest slices that fit
    `fewest_slices_budget` (None: no slicing). Verification, after, compares the original with this file."""
    if decode_budget is not None:
        result = with_merged_decodes(compress_choosing_slices(data, spec, decode_budget, str(model_path), spec_path))
    else:
        result = compress_model(data, spec, str(model_path), spec_path, decode_budget=fewest_slices_budget)
    stripped = None
    if strip:
        stripped = strip_model(result.data, "compressed model")
        result.data = stripped.data
    return result, stripped


def _run_lossless(*, model_path: str, output: str, verify: bool, verify_samples: int, strip: bool,
                  decode_budget: int | None) -> None:
    from tinycomp.tflite.lossless import choose

    check_output_path(output, model_path)
    data = read_bytes(model_path, ".tflite model")
    with render.progress("measuring each weight tensor's encodings", 1) as advance:
        choice = choose(data, str(model_path), strip, decode_budget)
        advance()
    render.out.print(render.lossless_table(choice))
    result, stripped = _compressed(data, choice.spec, model_path, "--lossless", decode_budget, strip)
    baseline = strip_model(data, str(model_path)) if strip else None
    if len(result.data) >= (baseline.bytes_after if baseline else len(data)):  # none larger than without encodings
        render.warn(f"no encoding makes {model_path} smaller; writing it " + ("stripped only" if strip else "unchanged"))
        result, stripped = CompressResult(baseline.data if baseline else bytes(data), [], len(data)), baseline
    if verify and result.data != data:
        with render.progress("verifying in TFLM", 1) as advance:
            result.verified_samples = verify_identical(data, result.data, verify_samples)
            advance()
    write_bytes_atomic(output, result.data)
    render.out.print(render.lossless_summary(choice))
    _report(result, output, verify, stripped, decode_budget, "--lossless", False)


def _report(result: CompressResult, output: str, verify: bool, stripped, decode_budget: int | None,
            spec_path: str, budget_from_spec: bool) -> None:
    for t in result.tensors:
        if t.bytes_after >= t.bytes_before:
            cost = ("its value table and LUT header cost more than the indices save" if t.method == "lut" else
                    f"its {t.method} encoding costs more than it saves (`compress --lossless` chooses per tensor)")
            render.warn(f"tensor {t.tensor} ({t.name}) takes {t.bytes_after:,} bytes compressed against "
                        f"{t.bytes_before:,} uncompressed: {cost}; leave it out of {spec_path}")
    if result.slicing is not None:
        for line in render.slicing_lines(result, decode_budget) + render.slice_count_lines(
                result, spec_path if budget_from_spec else None):
            render.out.print(line)
        for whole in result.slicing.left_whole:
            render.warn(f"tensor {whole.tensor} ({whole.name}) decodes to {whole.decoded_bytes:,} bytes, over the "
                        f"decode budget, and stays whole: {whole.reason}")
    merge = result.decode_merge
    if merge is not None and merge.merged:
        render.out.print(f"Merged {merge.merged} TFLM_DECODE operator{'s' if merge.merged > 1 else ''} into the one "
                         f"before: TFLM arena {merge.arena_before:,} → {merge.arena_after:,} bytes")
    if stripped:
        render.out.print(f"Stripped: {strip_summary(stripped)}")
    note = (f"TFLM outputs identical to the original on {result.verified_samples} random inputs"
            if verify and result.verified_samples else "nothing compressed" if not result.tensors
            else "not verified (--no-verify)")
    change = (f"{result.bytes_before / len(result.data):.2f}× smaller" if len(result.data) < result.bytes_before
              else "the same size" if len(result.data) == result.bytes_before
              else f"{len(result.data) - result.bytes_before:,} bytes larger")
    render.out.print(f"Wrote {output}: {result.bytes_before:,} → {len(result.data):,} bytes ({change}); {note}")
