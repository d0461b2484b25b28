"""`tinycomp gate`: fail CI when a model in an eval JSON misses its flash, RAM or accuracy budget."""

from __future__ import annotations

import click

from tinycomp import render
from tinycomp.commands.common import CONTEXT
from tinycomp.errors import BudgetExceeded
from tinycomp.fileio import read_text
from tinycomp.gate import GateLimits, gate
from tinycomp.records import EvalRecord


@click.command("gate", context_settings=CONTEXT)
@click.argument("eval_json", type=click.Path())
@click.option("--model", "models", multiple=True, type=click.Path(),
              help="A model in the eval JSON to check; repeatable  [default: every model but the baseline]")
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0), metavar="PP",
              help="Classifiers: top-1 accuracy at most PP percentage points below the eval's --baseline "
                   "(an error for a regression model, which has no accuracy). Checked on the measured Δ, or "
                   "with --on bound on the low end of its paired 95% interval.")
@click.option("--on", "on", type=click.Choice(["estimate", "bound"]), default="estimate", show_default=True,
              help="Check --max-accuracy-drop on the measured Δ (estimate) or on the low end of eval's paired 95% "
                   "interval of Δ (bound: passes only when the test rows, or test groups, show the drop is within "
                   "PP), e.g. --max-accuracy-drop 1 --on bound")
@click.option("--min-agreement-snr", type=float, metavar="DB",
              help="Any task: output SNR against the baseline's outputs of at least DB decibels.")
def command(eval_json: str, models: tuple[str, ...], max_accuracy_drop: float | None,
            min_agreement_snr: float | None, on: str) -> None:
    """Check the models of `eval --json` against their budgets; exit 1 if one fails.

    Flash and RAM are the budgets eval was given (--flash-budget, --ram-budget: a model marked
    TOO BIG fails); accuracy and agreement are checked against the eval's --baseline. Prints one
    line per model and writes nothing, so it can run after the JSON, report and artifacts exist.
    Regression models (MSE/SNR, e.g. an autoencoder) are gated with --min-agreement-snr.
    --max-accuracy-drop is checked on the measured Δ unless --on bound: then on the low end of
    the paired 95% interval eval records (by test group when the data has groups_test).

    \b
    Example:
      tinycomp eval build/model.tflite build/compressed.tflite --baseline build/model.tflite \\
        --flash-budget 64KiB --ram-budget 100KiB --json build/eval.json || test -f build/eval.json
      tinycomp report build/eval.json -o build/report
      tinycomp gate build/eval.json --model build/compressed.tflite --max-accuracy-drop 0.5
      tinycomp gate build/ae.eval.json --min-agreement-snr 30
      tinycomp gate build/eval.json --max-accuracy-drop 1 --on bound
    """
    run(eval_json=eval_json, models=list(models), max_accuracy_drop=max_accuracy_drop,
        min_agreement_snr=min_agreement_snr, on=on)


def run(*, eval_json: str, models: list[str], max_accuracy_drop: float | None,
        min_agreement_snr: float | None, on: str = "estimate") -> None:

    record = EvalRecord.from_json(read_text(eval_json, "eval JSON"), str(eval_json))
    verdicts = gate(record, models or None, GateLimits(max_accuracy_drop, min_agreement_snr, on))
    for v in verdicts:
        if v.passed:
            render.out.print(f"PASS {v.path}: " + ("; ".join(c for c in v.checked if c) or "no budget given"))
    failed = [v for v in verdicts if not v.passed]
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise BudgetExceeded(f"{first.path} fails its budget: {', '.join(first.failures)}{more}", str(eval_json),
                             "see the eval JSON and report; shrink the model or relax the budget")
