"""The file edge of each subcommand: read inputs, call the library, write outputs atomically, report.

`cli.py` declares options and calls these; the library modules (`train`, `cluster`, `convert`,
`find_tensors`, `compress`, `evaluate`) work on in-memory objects only.
"""

from __future__ import annotations

import time
from pathlib import Path

from tinycomp import render
from tinycomp.errors import UsageError
from tinycomp.native_output import import_tensorflow_quietly
from tinycomp.fileio import (check_h5_file, check_output_path, read_text, sidecar_path, write_bytes_atomic,
                             write_json_atomic, write_text_atomic)


def _load_model_and_data(model_path, load_data):
    import_tensorflow_quietly()
    from tinycomp.data import check_fits_model
    from tinycomp.models import load_keras_model

    check_h5_file(model_path)
    data = load_data()
    model = load_keras_model(model_path)
    check_fits_model(data, tuple(model.input_shape[1:]), int(model.output_shape[-1]), str(model_path))
    return model, data


# ---------------------------------------------------------------- train / cluster

def train(output, epochs, batch_size, validation_split, seed, load_data):
    from tinycomp.models import save_keras_model
    from tinycomp.train import train_model

    check_output_path(output)
    data = load_data()
    import_tensorflow_quietly()
    render.info(f"Training the tutorial CNN on {data.name} ({len(data.x_train):,} images, {epochs} epochs)")
    with render.progress("training", epochs) as advance:
        result = train_model(data, epochs=epochs, batch_size=batch_size, validation_split=validation_split,
                             seed=seed, on_epoch=render.epoch_callback(advance))
    save_keras_model(result.model, output)
    write_json_atomic(sidecar_path(output, ".json"), {
        "step": "train", "dataset": data.describe(), "test_accuracy": result.test_accuracy,
        "epochs": epochs, "batch_size": batch_size, "validation_split": validation_split, "seed": seed,
        "seconds": result.seconds, "history": result.history})
    render.out.print(f"Wrote {output} ({Path(output).stat().st_size:,} bytes): test accuracy "
                     f"{100 * result.test_accuracy:.2f}% on {data.name} ({len(data.x_test):,} images), "
                     f"{result.seconds:.1f} s")


def cluster(model_path, output, spec_path, layers, all_layers, init, epochs, batch_size, seed, load_data):
    from tinycomp.cluster import cluster_all_spec, cluster_model, validate_spec
    from tinycomp.models import save_keras_model
    from tinycomp.specs import dump_clustering_spec, parse_clustering_spec, parse_layer_options

    given = [name for name, value in (("--spec", spec_path), ("--layer", layers), ("--all", all_layers)) if value]
    if len(given) != 1:
        raise UsageError("choose the layers with exactly one of --spec, --layer or --all", "cluster",
                         "e.g. --spec specs/clustering.yaml")
    spec = parse_clustering_spec(read_text(spec_path, "clustering spec"), spec_path) if spec_path else None
    if layers:
        spec = parse_layer_options(layers, init)
    check_output_path(output, model_path)
    model, data = _load_model_and_data(model_path, load_data)
    if all_layers:
        spec = cluster_all_spec(model, all_layers, init)
    validate_spec(model, spec)
    render.info(f"Clustering {', '.join(f'{l.name}→{l.clusters}' for l in spec.layers)}; "
                f"fine-tuning {epochs} epochs on {data.name}")
    with render.progress("fine-tuning", max(epochs, 1)) as advance:
        result = cluster_model(model, spec, data, epochs=epochs, batch_size=batch_size, seed=seed,
                               on_epoch=render.epoch_callback(advance))
    save_keras_model(result.model, output)
    write_text_atomic(sidecar_path(output, ".yaml"),
                      dump_clustering_spec(spec, f"Effective clustering of {output} (from {model_path})"))
    write_json_atomic(sidecar_path(output, ".json"), {
        "step": "cluster", "source": str(model_path), "dataset": data.describe(),
        "test_accuracy": result.test_accuracy, "unique_values": result.unique_values,
        "epochs": epochs, "seed": seed, "seconds": result.seconds})
    for name, count in result.unique_values.items():
        render.out.print(f"  {name}: {count} unique kernel values")
    render.out.print(f"Wrote {output} and {sidecar_path(output, '.yaml')}: test accuracy "
                     f"{100 * result.test_accuracy:.2f}% on {data.name}, {result.seconds:.1f} s")


# ---------------------------------------------------------------- convert / quantize

def convert(model_path, output):
    from tinycomp.convert import convert_float32
    from tinycomp.models import load_keras_model

    check_h5_file(model_path)
    check_output_path(output, model_path)
    import_tensorflow_quietly()
    start = time.perf_counter()
    data = convert_float32(load_keras_model(model_path))
    write_bytes_atomic(output, data)
    render.out.print(f"Wrote {output}: float32, {len(data):,} bytes ({time.perf_counter() - start:.1f} s)")


def quantize(model_path, output, method, io_type, calibration_samples, per_tensor_dense, seed, load_data):
    from tinycomp.convert import quantize as quantize_model
    from tinycomp.data import calibration_samples as pick_calibration

    if method == "int8" and calibration_samples < 1:
        raise UsageError("int8 quantization needs at least 1 calibration sample", "--calibration-samples",
                         "use e.g. --calibration-samples 100")
    check_h5_file(model_path)
    check_output_path(output, model_path)
    start = time.perf_counter()
    if method == "int8":
        model, data = _load_model_and_data(model_path, load_data)
        calibration = pick_calibration(data, calibration_samples, seed)
    else:
        from tinycomp.models import load_keras_model

        import_tensorflow_quietly()
        model, calibration = load_keras_model(model_path), None
    result = quantize_model(model, method=method, io=io_type, calibration=calibration,
                            per_tensor_dense=per_tensor_dense)
    write_bytes_atomic(output, result)
    detail = f"{method}, {io_type} I/O, {len(calibration)} calibration samples" if method == "int8" else method
    if per_tensor_dense and method == "int8":
        detail += ", per-tensor Dense weights"
    render.out.print(f"Wrote {output}: {detail}, {len(result):,} bytes ({time.perf_counter() - start:.1f} s)")


# ---------------------------------------------------------------- find-tensors / compress

def find_tensors(model_path, output, clustering, layers, all_layers, skip_incompressible):
    from tinycomp.find_tensors import find_tensors as find
    from tinycomp.specs import dump_compression_spec, parse_clustering_spec
    from tinycomp.tflite_model import read_tflite

    given = [name for name, value in (("--clustering", clustering), ("--layer", layers), ("--all", all_layers)) if value]
    if len(given) != 1:
        raise UsageError("choose the tensors with exactly one of --clustering, --layer or --all", "find-tensors",
                         "e.g. --clustering build/clustered.yaml")
    names = None
    if clustering:
        names = parse_clustering_spec(read_text(clustering, "clustering spec"), clustering).layer_names()
    elif layers:
        names = list(dict.fromkeys(layers))
    check_output_path(output, model_path)
    model = read_tflite(model_path)
    result = find(model.model, names, str(model_path), skip_incompressible)
    for layer, reason in result.skipped:
        render.warn(f"skipped {layer}: {reason}")
    for choice in result.choices:
        if choice.bytes_after >= choice.bytes_before:
            render.warn(f"{choice.layer}: LUT compression makes tensor {choice.weight.index} larger "
                        f"({choice.bytes_before:,} → {choice.bytes_after:,} bytes); was the layer clustered?")
    if not result.choices:
        from tinycomp.errors import ModelError

        raise ModelError("no tensor to compress", str(model_path), "cluster layers first, then name them")
    header = f"Compression spec for {model_path}, written by tinycomp find-tensors"
    write_text_atomic(output, dump_compression_spec(result.spec(), header))
    render.out.print(render.find_tensors_table(result))
    before = sum(c.bytes_before for c in result.choices)
    after = sum(c.bytes_after for c in result.choices)
    render.out.print(f"Wrote {output}: {len(result.choices)} tensors, {before:,} → {after:,} bytes predicted")


def compress(model_path, output, spec_path, verify, verify_samples, strip=False):
    from tinycomp.compress import compress_model, verify_identical
    from tinycomp.fileio import read_bytes
    from tinycomp.specs import parse_compression_spec

    spec = parse_compression_spec(read_text(spec_path, "compression spec"), spec_path)
    check_output_path(output, model_path, spec_path)
    data = read_bytes(model_path, ".tflite model")
    if spec.upgraded:
        render.warn(f"{spec_path} uses the tutorial's older spec form; layouts are taken from the tensors' "
                    "quantization (write the current form with `tinycomp find-tensors`)")
    result = compress_model(data, spec, str(model_path), spec_path)
    stripped = None
    if strip:  # verification below then compares the original with the final, stripped output
        from tinycomp.strip import strip_model

        stripped = strip_model(result.data, "compressed model")
        result.data = stripped.data
    if verify:
        with render.progress("verifying in TFLM", 1) as advance:
            result.verified_samples = verify_identical(data, result.data, verify_samples)
            advance()
    write_bytes_atomic(output, result.data)
    render.out.print(render.compress_table(result))
    for t in result.tensors:
        if t.bytes_after >= t.bytes_before:
            render.warn(f"tensor {t.tensor} ({t.name}) takes {t.bytes_after:,} bytes compressed against "
                        f"{t.bytes_before:,} uncompressed: its value table and LUT header cost more than the "
                        f"indices save; leave it out of {spec_path}")
    if stripped:
        from tinycomp.commands_extra import strip_summary

        render.out.print(f"Stripped: {strip_summary(stripped)}")
    note = (f"TFLM outputs identical to the original on {result.verified_samples} random inputs"
            if verify else "not verified (--no-verify)")
    change = (f"{result.bytes_before / len(result.data):.2f}× smaller" if len(result.data) < result.bytes_before
              else f"{len(result.data) - result.bytes_before:,} bytes larger")
    render.out.print(f"Wrote {output}: {result.bytes_before:,} → {len(result.data):,} bytes ({change}); {note}")


# ---------------------------------------------------------------- eval

def evaluate(models, baseline, limit, jobs, json_path, flash_budget, ram_budget, load_data):
    from tinycomp import tflm
    from tinycomp.evaluate import (apply_budgets, compare_to_baseline, evaluate_keras, evaluate_tflite, parse_size,
                                   require_one_fits)

    flash, ram = parse_size(flash_budget, "--flash-budget"), parse_size(ram_budget, "--ram-budget")
    if json_path:
        check_output_path(json_path, *models)
    jobs = jobs or tflm.default_jobs()
    data = load_data()
    paths = list(dict.fromkeys([*models, *([baseline] if baseline else [])]))
    results = {}
    count = len(data.x_test) if limit is None else min(max(limit, 1), len(data.x_test))
    with render.progress("evaluating", count * len(paths)) as advance:
        for path in paths:
            if str(path).endswith(".h5"):
                import_tensorflow_quietly()
                results[path] = evaluate_keras(path, data, limit)
                advance(count)
            else:
                results[path] = evaluate_tflite(path, data, limit, jobs, on_progress=advance)
    shown = [results[p] for p in models]
    if baseline:
        compare_to_baseline(shown, results[baseline])
    apply_budgets(shown, flash, ram)
    render.out.print(render.eval_table(shown, data.name))
    for r in shown:
        if r.alt_decompression_bytes is not None:
            decoding = r.arena_bytes - r.arena_bytes_with_alt_decompression
            render.out.print(f"{r.path}: decoding LUT weights costs {decoding:,} of its {r.arena_bytes:,} arena bytes. "
                             "TFLM can decode into an alternate decompression memory instead (e.g. another RAM bank): "
                             f"with {r.alt_decompression_bytes:,} bytes there, the arena is "
                             f"{r.arena_bytes_with_alt_decompression:,}.")
    if json_path:
        write_json_atomic(json_path, {"dataset": data.describe(), "baseline": baseline,
                                      "flash_budget": flash, "ram_budget": ram,
                                      "models": [r.to_json() for r in shown]})
    require_one_fits(shown)
