"""`tinycomp bench-summary`: bytes vs the ideal bound, and where each model's bytes go."""

from __future__ import annotations

import click

from tinycomp import render
from tinycomp.commands.common import CONTEXT
from tinycomp.fileio import check_output_path, read_text, write_json_atomic
from tinycomp.records import EvalRecord
from tinycomp.tflite.breakdown import byte_breakdown
from tinycomp.tflite.model import read_tflite


@click.command("bench-summary", context_settings=CONTEXT)
@click.argument("bench_json", type=click.Path())
@click.option("--json", "json_path", type=click.Path(), help="Also write the summary with byte breakdowns as JSON.")
def command(bench_json: str, json_path: str | None) -> None:
    """Bytes vs the ideal bound, and where each compressed model's bytes go, from `eval --json`.

    The ideal bound of the weights is Σ weights × bits / 8 + value tables (raw bytes for
    uncompressed weights; the stored bytes for Huffman and pruning); the rest of a file is biases,
    quantization parameters, names and flatbuffer structure, listed per part. One line per model
    gives its weight bytes by decoder (raw, lut, huffman, pruning).

    \b
    Example:
      tinycomp eval build/model.tflite build/planned.tflite --baseline build/model.tflite --json build/bench.json
      tinycomp bench-summary build/bench.json
    """
    run(bench_json=bench_json, json_path=json_path)


def run(*, bench_json: str, json_path: str | None) -> None:
    """Read `eval --json`, break each .tflite's bytes down, print the tables and (with json_path) write them."""

    record = EvalRecord.from_json(read_text(bench_json, "eval JSON"), str(bench_json))
    if json_path:
        check_output_path(json_path, bench_json)
    base = next((m for m in record.models if m.path == record.baseline), None)
    rows = []
    for m in record.models:
        if not str(m.path).endswith(".tflite"):
            continue
        f = read_tflite(m.path)
        rows.append((m, byte_breakdown(f.model, len(f.data))))
    render.out.print(bench_table(rows, base))
    for m, b in rows:
        render.out.print(f"Weight bytes by method, {m.path}: {by_method(b)}")
    for m, b in rows:
        if any(w.compressed for w in b.weights):
            render.out.print(breakdown_table(m.path, b))
    if json_path:
        write_json_atomic(json_path, {"source": str(bench_json), "baseline": record.baseline,
                                      "models": [{**m.to_json(), "breakdown": b.to_json()} for m, b in rows]})


def _metric(m) -> str:
    """The task's metric: top-1 accuracy for classifiers, output SNR against the targets for regression."""
    if m.accuracy is not None:
        return f"{100 * m.accuracy:.2f}%"
    return f"SNR {m.snr_db:.1f} dB" if m.snr_db is not None else "–"


def _delta(m, base) -> str:
    """Accuracy in pp against the baseline for classifiers; output SNR against the baseline's for regression."""
    if base is None:
        return "–"
    if m.accuracy is not None and base.accuracy is not None:
        return f"{100 * (m.accuracy - base.accuracy):+.2f}"
    return f"{m.agreement_snr_db:.1f} dB" if m.agreement_snr_db is not None else "–"


def bench_table(rows: list, base):
    from rich.table import Table

    t = Table(title="Bytes, the task's metric and the ideal bound" + (f" (vs {base.path})" if base else ""))
    for column in ("model", "bytes", "× smaller", "metric", "Δ pp / SNR vs base", "arena bytes", "ideal bound",
                   "bytes / ideal", "… + biases", "non-weight bytes"):
        t.add_column(column, justify="left" if column == "model" else "right", overflow="fold")
    for m, b in rows:
        ratio = base.flash_bytes / m.flash_bytes if base else None
        t.add_row(m.path, f"{m.flash_bytes:,}", f"{ratio:.2f}" if ratio else "–", _metric(m), _delta(m, base),
                  f"{m.arena_bytes:,}" if m.arena_bytes is not None else "–",
                  f"{b.ideal_bytes:,}", f"{b.file_bytes / b.ideal_bytes:.3f}",
                  f"{b.file_bytes / b.ideal_with_constants:.3f}", f"{b.non_weight_bytes:,}")
    return t


def by_method(b) -> str:
    """`lut 3: 12,345 · raw 2: 1,024`: weight tensors and their stored bytes per decoder (raw: uncompressed)."""
    return " · ".join(f"{method} {n}: {stored:,}" for method, (n, stored) in sorted(b.bytes_by_method().items()))


def breakdown_table(path: str, b):
    from rich.table import Table

    t = Table(title=f"Where the {b.file_bytes:,} bytes of {path} go")
    for column in ("part", "method", "shape", "bits", "encoded / raw", "tables / values", "header", "bytes", "ideal"):
        t.add_column(column, justify="left" if column in ("part", "shape") else "right")
    for w in b.weights:
        t.add_row(f"{w.layer} weights", w.method, "×".join(map(str, w.shape)), str(w.bits), f"{w.index_bytes:,}",
                  f"{w.table_bytes:,}", f"{w.header_bytes:,}", f"{w.stored_bytes:,}", f"{w.ideal_bytes:,}")
    for label, value in (("biases and other constants", b.other_constants),
                         ("quantization scales + zero points", b.quantization), ("tensor names", b.names),
                         ("operators, tensor tables, metadata, alignment", b.structure)):
        t.add_row(label, "", "", "", "", "", "", f"{value:,}", "")
    t.add_row("total", "", "", "", "", "", "", f"{b.file_bytes:,}", f"{b.ideal_bytes:,}")
    return t
