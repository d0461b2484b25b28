"""Budget gates on an eval record, for CI: does each chosen model fit flash, RAM and accuracy?

Pure: takes the `EvalRecord` that `eval --json` wrote and the limits, returns one verdict per
model. The edge prints them and exits 1 when one fails. An accuracy limit applies to classifiers
only (a regression model has no accuracy: asking for one is an `InvalidValue` naming the model);
the output-SNR limit applies to every task.

The accuracy limit is checked on the measured Δ (`on="estimate"`, the default), or on the low end
of eval's paired 95% interval of Δ (`on="bound"`): the model passes only when the test rows (or
test groups) show, at that confidence, that it lost no more than the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tinycomp.bounds import Interval
from tinycomp.errors import InvalidValue, TinycompError


@dataclass(frozen=True)
class GateLimits:
    """What a model must meet; None means no limit of that kind."""

    max_accuracy_drop_pp: float | None = None  # classifiers: top-1 accuracy vs the eval's baseline
    min_agreement_snr_db: float | None = None  # every task: output SNR against the baseline's outputs
    on: str = "estimate"  # the accuracy limit on the measured Δ, or on the low end of its paired 95% interval ("bound")


@dataclass
class Verdict:
    """One model's result: `failures` is empty when it passes."""

    path: str
    failures: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def gate(record: Any, models: list[str] | None, limits: GateLimits) -> list[Verdict]:
    """A verdict for each of `models` (default: every model but the baseline) in the eval record."""
    by_path = {m.path: m for m in record.models}
    chosen = models or [p for p in by_path if p != record.baseline] or list(by_path)
    missing = [p for p in chosen if p not in by_path]
    if missing:
        raise InvalidValue(f"{missing[0]} is not in the eval record (it has {', '.join(by_path)})", "models",
                           "name a model that eval measured")
    return [_verdict(by_path[p], record, limits) for p in chosen]


def _verdict(result: Any, record: Any, limits: GateLimits) -> Verdict:
    verdict = Verdict(result.path)
    _check_size(verdict, result, record)
    if limits.max_accuracy_drop_pp is not None:
        _check_accuracy(verdict, result, limits.max_accuracy_drop_pp, record.source, limits.on)
    if limits.min_agreement_snr_db is not None:
        _check_agreement(verdict, result, limits.min_agreement_snr_db, record.source)
    return verdict


def _check_size(verdict: Verdict, result: Any, record: Any) -> None:
    if result.fits is False:
        verdict.failures.append("TOO BIG (" + "; ".join(result.budget_notes) + ")")
    elif result.fits:
        limits = [f"flash {result.flash_bytes:,} ≤ {record.flash_budget:,} B" if record.flash_budget else "",
                  f"arena {result.arena_bytes:,} ≤ {record.ram_budget:,} B" if record.ram_budget else ""]
        verdict.checked.append(", ".join(part for part in limits if part))


def _check_accuracy(verdict: Verdict, result: Any, max_drop_pp: float, source: str, on: str = "estimate") -> None:
    if not result.task.has_accuracy:
        raise InvalidValue(f"{result.path} is a regression model (task {result.task.name}): it has no accuracy to "
                           "compare with the baseline's", "max_accuracy_drop",
                           "gate regression models on their output SNR against the baseline (--min-agreement-snr DB)")
    delta = result.accuracy_delta_pp
    if delta is None:
        raise TinycompError(f"{result.path} has no accuracy against a baseline", source,
                            "run eval with --baseline on a classifier, or drop --max-accuracy-drop")
    if on == "bound":
        _check_accuracy_bound(verdict, result, max_drop_pp, source)
    elif delta < -max_drop_pp:
        verdict.failures.append(f"accuracy {delta:+.2f} pp vs the baseline, more than {max_drop_pp:g} pp below it")
    else:
        verdict.checked.append(f"accuracy {delta:+.2f} pp ≥ −{max_drop_pp:g} pp")


def _check_accuracy_bound(verdict: Verdict, result: Any, max_drop_pp: float, source: str) -> None:
    paired = getattr(result, "paired", None)
    if not paired or not paired.get("delta"):
        raise TinycompError(f"{result.path} has no paired interval of its accuracy against the baseline", source,
                            "run eval --baseline with this tinycomp (older eval JSON has none), or gate --on estimate")
    delta = Interval.from_json(paired["delta"], source)
    level = f"{100 * delta.confidence:g}%"
    if delta.low < -max_drop_pp:
        verdict.failures.append(f"accuracy {delta.estimate:+.2f} pp vs the baseline, but the low end of its {level} "
                                f"interval, {delta.low:+.2f} pp ({delta.resting_on}), is more than {max_drop_pp:g} pp "
                                "below it")
    else:
        verdict.checked.append(f"accuracy {delta.estimate:+.2f} pp, {level} interval low end {delta.low:+.2f} pp ≥ "
                               f"−{max_drop_pp:g} pp ({delta.resting_on})")


def _check_agreement(verdict: Verdict, result: Any, min_snr_db: float, source: str) -> None:
    snr = getattr(result, "agreement_snr_db", None)
    if snr is None:
        raise TinycompError(f"{result.path} has no output SNR against a baseline", source,
                            "run eval with --baseline (eval JSON from before tinycomp measured agreement has none), "
                            "or drop --min-agreement-snr")
    if snr < min_snr_db:
        verdict.failures.append(f"output SNR {snr:.1f} dB against the baseline, below {min_snr_db:g} dB")
    else:
        verdict.checked.append(f"output SNR {snr:.1f} dB ≥ {min_snr_db:g} dB")
