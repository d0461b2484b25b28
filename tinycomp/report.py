"""A report for people and CI from `tinycomp eval --json`: two figures and a markdown summary.

- `size_vs_accuracy_png`: flash bytes (log scale) against the task's metric, one labelled point per
  model: top-1 accuracy for classifiers, output SNR against the targets for regression models
  (`plot_metric`). The file keeps its name for both.
- `predictions_png`: test images with the true label and two models' TFLM predictions, as the
  TFLM tutorial shows; mistakes are highlighted (classifiers only).
- `summary_markdown`: the eval results as a markdown table (for CI artifacts and PR comments), with
  the metric columns of the models' tasks and a verdict per model: the accuracy drop for
  classifiers, the output SNR against the baseline for every task.

Figures are drawn with matplotlib's Agg canvas straight into PNG bytes (no pyplot, no display,
no global state); the caller writes them. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from dataclasses import dataclass

import numpy as np

from tinycomp import tflm
from tinycomp.evaluate import ModelResult
from tinycomp.metrics import CLASSIFY, REGRESS
from tinycomp.records import EvalRecord

MISTAKE = "#d62728"
AGREE = "#2ca02c"


def display_names(paths: list[str]) -> dict[str, str]:
    """File names where they are unique, else the paths as given."""
    names = [os.path.basename(p) for p in paths]
    return {p: (n if names.count(n) == 1 else p) for p, n in zip(paths, names)}


# ---------------------------------------------------------------- figures

def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, facecolor="white")
    return buffer.getvalue()


@dataclass(frozen=True)
class PlotMetric:
    """The metric on the y axis of size_vs_accuracy.png: a ModelResult attribute and how to show it."""

    attr: str
    name: str  # in titles: "accuracy", "output SNR"
    axis_label: str
    scale: float  # shown value = stored value × scale
    fmt: str  # of a shown value, e.g. "{:.2f}%"
    min_span: float  # smallest y range, in shown units

    def value(self, result: ModelResult) -> float | None:
        stored = getattr(result, self.attr, None)
        return None if stored is None else self.scale * float(stored)


PLOT_METRICS = {
    CLASSIFY: PlotMetric("accuracy", "accuracy", "top-1 accuracy (%)", 100.0, "{:.2f}%", 2.0),
    REGRESS: PlotMetric("snr_db", "output SNR", "output SNR against the test targets (dB)", 1.0, "{:.1f} dB", 2.0),
}


def plot_metric(report: EvalRecord) -> PlotMetric:
    """The metric of the baseline's task (else the first model's): accuracy, or SNR for regression."""
    by_path = {m.path: m for m in report.models}
    reference = by_path.get(report.baseline or "", report.models[0])
    return PLOT_METRICS[reference.task]


def plotted(report: EvalRecord) -> list[ModelResult]:
    """The models that have the plotted metric (in a record of mixed tasks, those of the metric's task)."""
    metric = plot_metric(report)
    return [m for m in report.models if metric.value(m) is not None]


def size_vs_accuracy_png(report: EvalRecord) -> bytes:
    """Flash bytes (log x) against the task's metric (`plot_metric`), one labelled point per model."""
    metric, models = plot_metric(report), plotted(report)
    figure = _figure(8.0, 5.2)
    ax = figure.add_subplot()
    names = display_names([m.path for m in report.models])
    groups: dict[tuple[int, float], list[ModelResult]] = {}
    for m in models:  # models of equal size and metric share one point and one label
        groups.setdefault((m.flash_bytes, round(metric.value(m) or 0.0, 6)), []).append(m)
    points = []
    for (flash, shown), members in sorted(groups.items()):
        is_baseline = any(m.path == report.baseline for m in members)
        keras = all(m.kind == "keras" for m in members)
        ax.scatter([flash], [shown], s=110 if is_baseline else 70, marker="*" if is_baseline else "o",
                   facecolors="none" if keras else "#1f77b4", edgecolors="#1f77b4", zorder=3)
        label = "\n".join(names[m.path] + (" (baseline)" if m.path == report.baseline else "") for m in members)
        points.append((flash, shown, f"{label}\n{flash:,} B · {metric.fmt.format(shown)}"))
    _set_limits(ax, models, metric)
    if report.flash_budget:
        ax.axvline(report.flash_budget, color=MISTAKE, linestyle="--", linewidth=1)
        ax.annotate(f"flash budget {report.flash_budget:,} B", (report.flash_budget, 0.02),
                    xycoords=("data", "axes fraction"), xytext=(-4, 0), textcoords="offset points",
                    rotation=90, ha="right", va="bottom", fontsize=8, color=MISTAKE)
    ax.set_xlabel("flash bytes (file size, log scale)")
    ax.set_ylabel(metric.axis_label)
    kinds = {m.kind for m in models}
    runs_in = "TFLM" if kinds == {"tflm"} else "TFLM/TFLite (filled) / Keras (hollow)"
    ax.set_title(f"Size vs {metric.name} on {report.dataset_name} ({report.samples:,} test samples, {runs_in})",
                 fontsize=10.5)
    ax.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    _place_labels(figure, ax, points)  # after the layout: placement measures the labels on the final axes
    return _png(figure)


def _set_limits(ax, models: list[ModelResult], metric: PlotMetric) -> None:
    ax.set_xscale("log")
    flashes = [m.flash_bytes for m in models]
    ax.set_xlim(min(flashes) / 1.6, max(flashes) * 3.0)
    values = [metric.value(m) or 0.0 for m in models]
    span = max(max(values) - min(values), metric.min_span)
    ax.set_ylim(min(values) - 0.4 * span, max(values) + 0.6 * span)


# Label positions tried in turn (offset in points, alignment); the first that overlaps no other label wins.
_LABEL_SPOTS = [((8, 7), "left", "bottom"), ((8, -7), "left", "top"), ((-8, 7), "right", "bottom"),
                ((-8, -7), "right", "top")]


def _place_labels(figure, ax, points) -> None:
    renderer = figure.canvas.get_renderer()
    placed: list = []
    for x, y, text in points:
        for offset, ha, va in _LABEL_SPOTS:
            annotation = ax.annotate(text, (x, y), xytext=offset, textcoords="offset points", fontsize=8.5,
                                     ha=ha, va=va)
            box = annotation.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed) and _inside(box, ax.get_window_extent(renderer)):
                break
            annotation.remove()
        else:
            annotation = ax.annotate(text, (x, y), xytext=_LABEL_SPOTS[0][0], textcoords="offset points",
                                     fontsize=8.5, ha="left", va="bottom")
            box = annotation.get_window_extent(renderer)
        placed.append(box)


def _inside(box, frame) -> bool:
    return box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1


def pick_examples(y: np.ndarray, first: np.ndarray, second: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Up to `count` indices: at most half where a model errs or the two disagree (first), the rest random."""
    rng = np.random.default_rng(seed)
    notable = np.flatnonzero((first != y) | (second != y) | (first != second))
    plain = np.setdiff1d(np.arange(len(y)), notable)
    take_notable = min(len(notable), max(count // 2, count - len(plain)))
    chosen_notable = np.sort(rng.choice(notable, size=take_notable, replace=False)) if take_notable else notable[:0]
    take_plain = min(len(plain), count - take_notable)
    chosen_plain = np.sort(rng.choice(plain, size=take_plain, replace=False)) if take_plain else plain[:0]
    return np.concatenate([chosen_notable, chosen_plain]).astype(np.int64)


def can_show_images(x: np.ndarray) -> bool:
    """Rows that are grey (H, W, 1) or colour (H, W, 3) images."""
    return x.ndim == 4 and x.shape[-1] in (1, 3) and min(x.shape[1:3]) >= 4


def predictions_png(images: np.ndarray, y: np.ndarray, first: np.ndarray, second: np.ndarray,
                    first_name: str, second_name: str, subtitle: str = "") -> bytes:
    """A grid of images, each with the true label and both models' predictions; mistakes in red."""
    n = len(images)
    columns = min(4, max(n, 1))
    rows = max(1, math.ceil(n / columns))
    figure = _figure(2.3 * columns, 2.6 * rows + 0.8)
    for i in range(n):
        ax = figure.add_subplot(rows, columns, i + 1)
        image = images[i]
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="binary", vmin=0.0, vmax=max(1.0, float(image.max())))
        else:
            ax.imshow(np.clip(image, 0.0, 1.0))
        ax.set_xticks([])
        ax.set_yticks([])
        wrong = first[i] != y[i] or second[i] != y[i]
        for spine in ax.spines.values():
            spine.set_edgecolor(MISTAKE if wrong else "#bbbbbb")
            spine.set_linewidth(3 if wrong else 1)
        ax.set_title(f"true {y[i]}", fontsize=10.5, fontweight="bold", pad=17)
        ax.text(0.47, 1.03, f"base {first[i]}", transform=ax.transAxes, ha="right", va="bottom", fontsize=10,
                color=MISTAKE if first[i] != y[i] else AGREE)
        ax.text(0.53, 1.03, f"comp {second[i]}", transform=ax.transAxes, ha="left", va="bottom", fontsize=10,
                color=MISTAKE if second[i] != y[i] else AGREE)
    width = 25 * columns  # characters per title line at this font size
    title = textwrap.fill(f"TFLM predictions — base: {first_name}, comp: {second_name}", width)
    if subtitle:
        title += "\n" + textwrap.fill(subtitle, width)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(h_pad=1.2)
    return _png(figure)


# ---------------------------------------------------------------- TFLM predictions

def predict_tflm(models: list[bytes], x: np.ndarray, jobs: int, sources: list[str]) -> list[np.ndarray]:
    """Argmax predictions of each model on `x`, in TFLM worker processes."""

    chunks = np.array_split(np.arange(len(x)), max(1, min(jobs, len(x))))
    args, owners = [], []
    for m, model in enumerate(models):
        for idx in chunks:
            args.append((model, x[idx], False))
            owners.append(m)
    results = tflm.run_parallel(tflm.predict_chunk, args, workers=jobs, source=", ".join(dict.fromkeys(sources)))
    return [np.concatenate([r.predictions for r, owner in zip(results, owners) if owner == m])
            for m in range(len(models))]


# ---------------------------------------------------------------- markdown

RUNS_IN = {"tflm": "TFLM", "tflite": "TFLite", "keras": "Keras"}


def runs_in(result: ModelResult) -> str:
    """Where eval ran the model (older eval JSON has no `runs_in`: from its kind)."""
    return result.runs_in or RUNS_IN.get(result.kind, result.kind)


def verdict(result: ModelResult, baseline: str | None, max_drop_pp: float | None,
            min_snr_db: float | None = None) -> str:
    """FITS / TOO BIG from eval's budgets; against the baseline: the accuracy drop (classifiers,
    `max_drop_pp`) and the output SNR (every task, `min_snr_db`)."""
    parts = []
    if result.fits is not None:
        parts.append("FITS" if result.fits else f"TOO BIG ({'; '.join(result.budget_notes)})")
    if result.path == baseline:
        return ", ".join([*parts, "baseline"])
    if result.task.has_accuracy and max_drop_pp is not None and result.accuracy_delta_pp is not None:
        parts.append("accuracy OK" if result.accuracy_delta_pp >= -max_drop_pp
                     else f"ACCURACY DROP > {max_drop_pp:g} pp")
    if min_snr_db is not None and result.agreement_snr_db is not None:
        parts.append("SNR OK" if result.agreement_snr_db >= min_snr_db else f"SNR < {min_snr_db:g} dB")
    return ", ".join(parts) or "–"


def _columns(report: EvalRecord) -> list[str]:
    """The summary's columns: the metrics of the models' tasks, agreement when there is a baseline."""
    tasks, baseline = report.tasks, report.baseline is not None
    columns = ["model", "runs in", "flash bytes"]
    columns += ["gzip bytes"] if any(m.gzip_bytes is not None for m in report.models) else []
    columns += ["× smaller", "arena bytes"]
    if CLASSIFY in tasks:
        columns += ["accuracy", "Δ accuracy (pp)"] + (["top-1 agreement"] if baseline else [])
    if REGRESS in tasks:
        columns += ["MSE", "SNR vs targets (dB)"]
    columns += ["SNR vs baseline (dB)"] if baseline else []
    return columns + ["ms/inference", "verdict"]


def _cells(m: ModelResult, name: str, verdict_text: str) -> dict[str, str]:
    def shown(value, fmt: str) -> str:
        return "–" if value is None else fmt.format(value)

    return {
        "model": f"`{name}`", "runs in": runs_in(m), "flash bytes": f"{m.flash_bytes:,}",
        "gzip bytes": shown(m.gzip_bytes, "{:,}"), "× smaller": shown(m.ratio_vs_baseline, "{:.2f}"),
        "arena bytes": shown(m.arena_bytes, "{:,}"),
        "accuracy": shown(m.accuracy if m.task.has_accuracy else None, "{:.2%}"),
        "Δ accuracy (pp)": shown(m.accuracy_delta_pp, "{:+.2f}"),
        "top-1 agreement": shown(m.agreement_top1, "{:.2%}"),
        "MSE": shown(m.mse, "{:.4g}"), "SNR vs targets (dB)": shown(m.snr_db, "{:.1f}"),
        "SNR vs baseline (dB)": shown(m.agreement_snr_db, "{:.1f}"),
        "ms/inference": shown(m.ms_per_inference, "{:.3f}"), "verdict": verdict_text,
    }


def _verdict_legend(report: EvalRecord, max_drop_pp: float | None, min_snr_db: float | None) -> list[str]:
    if not report.baseline:
        return []
    lines = []
    if CLASSIFY in report.tasks and max_drop_pp is not None:
        lines.append(f"Verdict \"accuracy OK\": at most {max_drop_pp:g} pp (percentage points) below the baseline.")
    if min_snr_db is not None:
        lines.append(f"Verdict \"SNR OK\": output SNR against the baseline's outputs of at least {min_snr_db:g} dB.")
    elif REGRESS in report.tasks:
        lines.append("Regression models get no output verdict: no minimum SNR against the baseline was given.")
    return [" ".join(lines), ""] if lines else []


def _metric_legend(report: EvalRecord) -> str:
    parts = []
    if REGRESS in report.tasks:
        parts.append("SNR vs targets is 10·log10(Σtarget² / Σ(target − output)²) on the test set")
    if report.baseline:
        parts.append("SNR vs baseline is the same measure against the baseline's outputs (200 dB: identical)")
    return ("; ".join(parts) + ".") if parts else ""


def summary_markdown(report: EvalRecord, figures: list[tuple[str, str]], max_drop_pp: float | None = None,
                     notes: list[str] | None = None, *, min_snr_db: float | None = None) -> str:
    """The eval results as a markdown table with the task's metrics, the figures linked below it."""
    names = display_names([m.path for m in report.models])
    base = f"; baseline `{os.path.basename(report.baseline)}`" if report.baseline else ""
    lines = ["# tinycomp report", "",
             f"Evaluated on **{report.dataset_name}** ({report.samples:,} test samples){base}; "
             f"from `{os.path.basename(report.source)}`.", ""]
    budgets = [f"flash ≤ {report.flash_budget:,} B" for _ in [0] if report.flash_budget]
    budgets += [f"arena ≤ {report.ram_budget:,} B" for _ in [0] if report.ram_budget]
    if budgets:
        lines += [f"Budget: {', '.join(budgets)}.", ""]
    lines += _verdict_legend(report, max_drop_pp, min_snr_db)
    columns = _columns(report)
    lines += ["| " + " | ".join(columns) + " |",
              "|" + "|".join("---" if c in ("model", "runs in", "verdict") else "--:" for c in columns) + "|"]
    for m in report.models:
        cells = _cells(m, names[m.path], verdict(m, report.baseline, max_drop_pp, min_snr_db))
        lines.append("| " + " | ".join(cells[c].replace("|", "\\|") for c in columns) + " |")
    lines.append("")
    lines.append("Flash is the file size; arena is the TFLM tensor arena the model allocates (LUT-compressed "
                 "weights are decoded into it at run time, so compression can trade flash for RAM).")
    if _metric_legend(report):
        lines.append(_metric_legend(report))
    alternate = [m for m in report.models if m.alt_decompression_bytes is not None]
    if alternate:
        lines += ["", "With the decoded weights in TFLM's alternate decompression memory (outside the arena):", ""]
        lines += [f"- `{names[m.path]}`: {m.alt_decompression_bytes:,} bytes there, "
                  f"a {m.arena_bytes_with_alt_decompression:,}-byte arena" for m in alternate]
    model_notes = [f"`{names[m.path]}`: {note}" for m in report.models for note in m.notes]
    for note in [*(report.dataset.get("notes") or []), *model_notes, *(notes or [])]:
        lines += ["", f"> Note: {note}"]
    for title, file_name in figures:
        lines += ["", f"## {title}", "", f"![{title}]({file_name})"]
    return "\n".join(lines) + "\n"
