"""The file edge of `strip`, `export` and `report` (as commands.py is for the pipeline steps).

Read inputs, call the library (`strip`, `export`, `report`), write outputs atomically, report.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinycomp import render
from tinycomp.errors import DataError, OutputFileError, UsageError
from tinycomp.fileio import check_output_path, read_text, write_bytes_atomic, write_text_atomic


# ---------------------------------------------------------------- strip

def strip_summary(result) -> str:
    removed = ", ".join(f"{kind} ({n})" for kind, n in result.removed.items()) or "nothing"
    return (f"{result.bytes_before:,} → {result.bytes_after:,} bytes ({result.bytes_saved:,} saved); "
            f"removed {removed}")


def strip(model_path, output, verify, verify_samples):
    from tinycomp.strip import strip_model, verify_stripped
    from tinycomp.tflite_model import read_tflite

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


# ---------------------------------------------------------------- export

def export(model_path, output, header, symbol):
    from tinycomp.export import check_symbol, to_c_source
    from tinycomp.tflite_model import read_tflite

    check_symbol(symbol)
    header = Path(header) if header else Path(output).with_suffix(".h")
    if Path(output).suffix.lower() in (".h", ".hpp") or Path(output).suffix == "":
        raise UsageError("the output is the C++ source file", str(output), "give e.g. -o model_data.cc")
    check_output_path(output, model_path)
    check_output_path(header, model_path, output)
    model = read_tflite(model_path)
    include = os.path.relpath(header, Path(output).parent or Path(".")).replace(os.sep, "/")
    cc_text, h_text = to_c_source(model.data, symbol, include, os.path.basename(model_path))
    write_text_atomic(header, h_text)
    write_text_atomic(output, cc_text)
    render.out.print(f"Wrote {output} and {header}: {symbol}[{len(model.data):,}] (16-byte aligned) and "
                     f"{symbol}_len")


# ---------------------------------------------------------------- report

def _report_dir(output) -> Path:
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise OutputFileError("the report output is a file, not a directory", str(out), "give a directory, e.g. -o report/")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputFileError("output directory's parent does not exist", str(parent), "create it first (mkdir -p)")
    try:
        out.mkdir(exist_ok=True)
    except OSError as e:
        raise OutputFileError(f"cannot create the report directory: {e.strerror}", str(out)) from e
    if not os.access(out, os.W_OK):
        raise OutputFileError("report directory is not writable", str(out), "choose another -o/--output")
    return out


def _report_dataset(dataset, npz, report):
    from tinycomp.data import DATASETS, load_dataset

    if npz:
        return load_dataset(npz=npz, warn=render.warn)
    name = dataset or report.dataset_name
    if name not in DATASETS:
        raise DataError(f"the eval JSON was measured on {name!r}, which is not a built-in dataset", report.source,
                        "give the same data with --data FILE.npz (or --images 0 for no predictions.png)")
    return load_dataset(name, warn=render.warn)


def _pick_models(report, baseline, model):
    """Baseline and compared .tflite: the options, else the eval's baseline and its last TFLM model."""
    tflite = [m.path for m in report.models if m.kind == "tflm"]
    first = baseline or (report.baseline if report.baseline and not str(report.baseline).endswith(".h5") else None)
    first = first or (tflite[0] if tflite else None)
    second = model or next((p for p in reversed(tflite) if p != first), None)
    return first, second


def report(eval_json, output, dataset, npz, baseline, model, images, seed, jobs, max_drop):
    import numpy as np

    from tinycomp import report as rep
    from tinycomp import tflm
    from tinycomp.data import check_fits_model
    from tinycomp.tflite_model import read_tflite

    parsed = rep.parse_eval_json(read_text(eval_json, "eval JSON"), str(eval_json))
    out = _report_dir(output)
    figures, notes = [("Size vs accuracy", "size_vs_accuracy.png")], []
    write_bytes_atomic(out / "size_vs_accuracy.png", rep.size_vs_accuracy_png(parsed))

    first, second = _pick_models(parsed, baseline, model)
    if images and (first is None or second is None):
        render.warn("predictions.png needs two TFLM models (the eval JSON has fewer); give --baseline and --model")
    elif images:
        paths = [rep.resolve_model_path(p, eval_json) for p in (first, second)]
        models = [read_tflite(p) for p in paths]
        data = _report_dataset(dataset, npz, parsed)
        for m in models:
            check_fits_model(data, tuple(m.model.subgraphs[0].inputs[0].shape[1:]),
                             int(m.model.subgraphs[0].outputs[0].shape[-1]), m.source)
        if not rep.can_show_images(data.x_test):
            render.warn(f"the rows of {data.name} are not images {data.input_shape}; predictions.png skipped")
        else:
            n = min(parsed.samples, len(data.x_test))
            x, y = data.x_test[:n], data.y_test[:n]
            with render.progress("predicting in TFLM", 1) as advance:
                predicted = rep.predict_tflm([m.data for m in models], x, jobs or tflm.default_jobs(), paths)
                advance()
            notes += _check_accuracy(parsed, (first, second), predicted, y, data.name)
            chosen = rep.pick_examples(y, predicted[0], predicted[1], images, seed)
            notable = int(np.sum((predicted[0][chosen] != y[chosen]) | (predicted[1][chosen] != y[chosen])
                                 | (predicted[0][chosen] != predicted[1][chosen])))
            subtitle = (f"{len(chosen)} of the first {n:,} {data.name} test images: {notable} where a model errs or "
                        f"they disagree (shown first, red frame = a mistake), {len(chosen) - notable} at random")
            names = rep.display_names([first, second]) if first != second else {first: os.path.basename(first)}
            write_bytes_atomic(out / "predictions.png", rep.predictions_png(
                x[chosen], y[chosen], predicted[0][chosen], predicted[1][chosen], names[first], names[second],
                subtitle))
            figures.append(("TFLM predictions", "predictions.png"))
    write_text_atomic(out / "summary.md", rep.summary_markdown(parsed, figures, max_drop, notes))
    written = ", ".join(name for _, name in figures)
    render.out.print(f"Wrote {out}/: summary.md, {written} ({len(parsed.models)} models from {eval_json})")


def _check_accuracy(parsed, paths, predicted, y, dataset_name) -> list[str]:
    """Warn when the predictions do not reproduce eval's accuracy (different data or models)."""
    import numpy as np

    notes = []
    recorded = {m.path: m.accuracy for m in parsed.models}
    for path, p in zip(paths, predicted):
        if path in recorded and abs(float(np.mean(p == y)) - recorded[path]) > 1e-9:
            note = (f"{os.path.basename(path)} scores {100 * float(np.mean(p == y)):.2f}% on these {dataset_name} "
                    f"images but {100 * recorded[path]:.2f}% in the eval JSON: different data or a changed model")
            render.warn(note)
            notes.append(note)
    return notes
