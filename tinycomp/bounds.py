"""Paired confidence bounds of a model's drop and agreement against the given model, from per-row results.

Pure numpy (no TensorFlow). A drop is measured on the same rows for both models, so its uncertainty
comes from per-row differences (a paired comparison), and the unit whose results are exchangeable
sets the variance:

- rows (no groups): a normal bound from the rows' paired differences (accuracy drop; never inside
  Wilson's bound on the rows that changed, so that no change on n rows is not a bound of zero), the
  delta method on the per-row error energies (SNR drop, dB), or a Wilson bound (top-1 agreement);
- groups (one id per validation row: subject, speaker, session): the cluster-robust (CR1) variance
  of the pooled statistic over whole groups (each group's linearized residual), with Student's t
  quantile at G−1 degrees of freedom: with few groups the variance between them is itself
  uncertain, and t widens the bound accordingly (6.3 standard errors at 2 groups, 95% one-sided,
  against 1.64 for many). A group bound is never narrower than the same statistic's bound over
  rows: groups that happen to agree (likely with 2 or 3 of them) do not make a drop more certain
  than independent rows would. With one group there is no variation between groups to measure: the
  bound is infinite.

`Interval` holds the estimate, the bound(s), the rows and groups it rests on, and says when it is
too wide to resolve a budget even at zero drop (`units_needed`: how many rows or groups would).
Drops are in the task's unit: pp of top-1 accuracy, dB of output SNR; agreement is in percent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import numpy as np

from tinycomp.errors import DataError
from tinycomp.metrics import SNR_CAP_DB, predicted_classes

CONFIDENCE = 0.95  # one-sided, for decisions; eval's intervals are two-sided at this level
MIN_GROUPS = 2  # fewer show no variation between groups
MAX_GROUPS_NEEDED = 100_000  # units_needed's search stops here
SIDES = ("upper", "lower", "two")


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence bound(s): `high` is the one-sided upper bound (sided="upper"),
    `low` the one-sided lower bound (sided="lower"), both for a two-sided interval (sided="two")."""

    estimate: float
    low: float
    high: float
    rows: int
    groups: int | None  # None: the variance comes from rows
    confidence: float
    sided: str
    unit: str  # "pp", "dB" or "%"

    @property
    def resting_on(self) -> str:
        """'1,429 rows' or '2 groups (1,429 rows)'."""
        rows = f"{self.rows:,} row{'' if self.rows == 1 else 's'}"
        return rows if self.groups is None else f"{self.groups} group{'' if self.groups == 1 else 's'} ({rows})"

    @property
    def half_width(self) -> float:
        """How far the bound lies from the estimate (the wider side of a two-sided interval)."""
        return max(self.high - self.estimate if self.sided != "lower" else 0.0,
                   self.estimate - self.low if self.sided != "upper" else 0.0)

    def units_needed(self, budget: float) -> int | None:
        """None when the bound resolves `budget` at zero drop (half width ≤ budget); else how many
        rows (or groups) would, assuming the same spread per row (or group): the half width shrinks
        as 1/sqrt(count), and over groups Student's t shrinks too as the degrees of freedom grow."""
        if budget <= 0 or self.half_width <= budget:
            return None
        units = self.rows if self.groups is None else self.groups
        if not math.isfinite(self.half_width):
            return MIN_GROUPS if self.groups is not None else None
        if self.groups is None or self.groups < MIN_GROUPS:
            return max(units + 1, math.ceil(units * (self.half_width / budget) ** 2))
        # the spread between groups, then the fewest groups whose t bound at G−1 degrees of freedom is narrow enough
        level = _level(self.sided, self.confidence)
        spread = self.half_width * math.sqrt(units) / student_t(level, units - 1)
        count = units + 1
        while count < MAX_GROUPS_NEEDED and student_t(level, count - 1) * spread / math.sqrt(count) > budget:
            count += 1 if count < 100 else count // 10
        return count

    def text(self, digits: int = 2) -> str:
        """'+0.42 pp (95% upper bound +1.10 pp; 2 groups (812 rows))'."""
        fmt = f"{{:+.{digits}f}}" if self.unit != "%" else f"{{:.{digits}f}}"
        level = f"{100 * self.confidence:g}%"
        bound = {"upper": f"{level} upper bound {_number(fmt, self.high)} {self.unit}",
                 "lower": f"{level} lower bound {_number(fmt, self.low)} {self.unit}",
                 "two": f"{level} interval {_number(fmt, self.low)} to {_number(fmt, self.high)} {self.unit}"}[self.sided]
        return f"{fmt.format(self.estimate)} {self.unit} ({bound}; {self.resting_on})"

    def negated(self) -> Interval:
        """The interval of minus this quantity (a drop as a Δ): the bounds swap sides."""
        sided = {"upper": "lower", "lower": "upper", "two": "two"}[self.sided]
        return Interval(0.0 - self.estimate, 0.0 - self.high, 0.0 - self.low, self.rows, self.groups, self.confidence,
                        sided, self.unit)

    def to_json(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "low": _finite(self.low), "high": _finite(self.high), "rows": self.rows,
                "groups": self.groups, "confidence": self.confidence, "sided": self.sided, "unit": self.unit}

    @classmethod
    def from_json(cls, payload: object, where: str) -> Interval:
        if not isinstance(payload, dict):
            raise DataError("an interval is not a JSON object", where, "re-create the file with this tinycomp")
        try:
            low = -math.inf if payload["low"] is None else float(payload["low"])
            high = math.inf if payload["high"] is None else float(payload["high"])
            groups = payload.get("groups")
            return cls(float(payload["estimate"]), low, high, int(payload["rows"]),
                       None if groups is None else int(groups), float(payload["confidence"]), str(payload["sided"]),
                       str(payload["unit"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"an interval is malformed: {e}", where, "re-create the file with this tinycomp") from e


def _number(fmt: str, value: float) -> str:
    return fmt.format(value) if math.isfinite(value) else ("+∞" if value > 0 else "−∞")


def _finite(value: float) -> float | None:
    """JSON has no infinity: an unbounded side is null."""
    return value if math.isfinite(value) else None


def unresolved_note(bound: Interval, budget: float, what: str = "the validation set") -> str | None:
    """One line when `bound` cannot resolve `budget` even at zero drop (None when it can): how far the
    bound lies above the estimate, and how many rows or groups would resolve it."""
    needed = bound.units_needed(budget)
    if needed is None:
        return None
    unit = "groups" if bound.groups is not None else "rows"
    level = f"{100 * bound.confidence:g}%"
    spread = (f"its {level} bound lies {bound.half_width:.2f} {bound.unit} above the estimate"
              if math.isfinite(bound.half_width) else "one group shows no variation between groups")
    return (f"{what} cannot resolve a {budget:g} {bound.unit} budget even at zero drop: {spread} on "
            f"{bound.resting_on}; about {needed:,} {unit} would (give more {unit} for validation)")


def drop_within(drop: Interval, max_drop: float) -> bool:
    """The decision rule: a drop is within its budget when its upper confidence bound is."""
    return drop.high <= max_drop


def agreement_within(agree: Interval, min_agreement: float) -> bool:
    """Top-1 agreement meets its floor (percent) when its lower confidence bound does."""
    return agree.low >= min_agreement


@dataclass(frozen=True)
class Checked:
    """One checked model against the given one on the validation rows: the drop with its one-sided
    upper bound, and (classifiers) top-1 agreement with its one-sided lower bound."""

    drop: Interval
    agreement: Interval | None = None

    def within(self, max_drop: float | None, min_agreement: float | None = None) -> bool:
        """Both bounds within their budgets (None: no such budget)."""
        drop_ok = max_drop is None or drop_within(self.drop, max_drop)
        agreement_ok = min_agreement is None or (self.agreement is not None
                                                 and agreement_within(self.agreement, min_agreement))
        return drop_ok and agreement_ok

    def text(self) -> str:
        """'+0.42 pp (95% upper bound +0.80 pp; 12,000 rows), agreement 99.1 % (95% lower bound 98.9 %; …)'."""
        agreement = f", agreement {self.agreement.text()}" if self.agreement is not None else ""
        return self.drop.text() + agreement

    def to_json(self) -> dict[str, Any]:
        return {"drop": self.drop.to_json(), "agreement": None if self.agreement is None else self.agreement.to_json()}

    @classmethod
    def from_json(cls, payload: object, where: str) -> Checked:
        if not isinstance(payload, dict) or "drop" not in payload:
            raise DataError("a checked bound is not a JSON object with a drop", where,
                            "re-create the file with this tinycomp")
        agreement = payload.get("agreement")
        return cls(Interval.from_json(payload["drop"], where),
                   None if agreement is None else Interval.from_json(agreement, where))


def checked(has_accuracy: bool, targets: np.ndarray, reference_outputs: np.ndarray, outputs: np.ndarray,
            groups: np.ndarray | None = None, *, confidence: float = CONFIDENCE) -> Checked:
    """The paired bounds of one model against the reference on the same validation rows: accuracy drop
    and agreement for a classifier (`has_accuracy`), SNR drop for a regression model."""
    if has_accuracy:
        return Checked(accuracy_drop(targets, reference_outputs, outputs, groups, confidence=confidence),
                       agreement(reference_outputs, outputs, groups, confidence=confidence))
    return Checked(snr_drop(targets, reference_outputs, outputs, groups, confidence=confidence))


# ---------------------------------------------------------------- public bounds

def least_bound(has_accuracy: bool, targets: np.ndarray, reference_outputs: np.ndarray,
                options: list[tuple[np.ndarray, float]], groups: np.ndarray | None = None) -> tuple[int, Checked]:
    """Which of `options` ((outputs, score) of one model each, e.g. zero-shot then fine-tuned) to keep: the
    one whose drop against the reference has the lowest 95% upper bound (ties: the higher score, then the
    earlier option), with its bounds. `plan`'s check and `cluster` with a plan's validation rows decide alike."""
    measured = [(checked(has_accuracy, targets, reference_outputs, outputs, groups), score)
                for outputs, score in options]
    best = min(range(len(measured)), key=lambda i: (measured[i][0].drop.high, -measured[i][1], i))
    return best, measured[best][0]


def accuracy_drop(labels: np.ndarray, reference_outputs: np.ndarray, outputs: np.ndarray,
                  groups: np.ndarray | None = None, *, sided: str = "upper", confidence: float = CONFIDENCE) -> Interval:
    """The drop of top-1 accuracy (pp, reference − model) on the same rows, with its paired bound."""
    truth = np.asarray(labels).reshape(-1)
    right_ref = predicted_classes(reference_outputs) == truth
    right_new = predicted_classes(outputs) == truth
    differences = 100.0 * (right_ref.astype(np.float64) - right_new)
    rows = _with_discordant_floor(mean_difference(differences, sided=sided, confidence=confidence, unit="pp"),
                                  differences)
    if groups is None:
        return rows
    return _widest(mean_difference(differences, groups, sided=sided, confidence=confidence, unit="pp"), rows)


def _with_discordant_floor(interval: Interval, differences: np.ndarray) -> Interval:
    """The rows' normal bound, widened where it is degenerate: with few or no rows changing, the normal
    approximation gives a bound at the estimate (no row changed: +0.00), although on n rows a change rate
    up to Wilson's bound (about 2.7/n at 95%) is not ruled out. The drop's upper bound is at least that bound
    on the rows the model got wrong and the given model right, less the rows it newly got right (and the
    other way round for the lower bound)."""
    n = len(differences)
    lost, gained = int(np.count_nonzero(differences > 0)), int(np.count_nonzero(differences < 0))
    z = _z(interval.sided, interval.confidence)
    high = max(interval.high, 100.0 * (_wilson_high(lost, n, z) - gained / n)) if interval.sided != "lower" else interval.high
    low = min(interval.low, 100.0 * (lost / n - _wilson_high(gained, n, z))) if interval.sided != "upper" else interval.low
    return replace(interval, low=low, high=high)


def _wilson_high(count: int, n: int, z: float) -> float:
    """Wilson's upper score bound of a proportion count/n."""
    return _wilson_score(count / n, n, z)[1]


def _wilson_score(p: float, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval (low, high) of a proportion p observed on n rows, at z standard errors."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def agreement(reference_outputs: np.ndarray, outputs: np.ndarray, groups: np.ndarray | None = None, *,
              sided: str = "lower", confidence: float = CONFIDENCE) -> Interval:
    """Top-1 agreement with the reference model (percent of rows with its class), with its bound."""
    same = (predicted_classes(reference_outputs) == predicted_classes(outputs)).astype(np.float64)
    _check_sided(sided)
    if groups is None:
        return _wilson(same, sided, confidence)
    return _widest(_group_interval(100.0 * same, np.ones_like(same), _check_groups(groups, len(same)), sided=sided,
                                   confidence=confidence, unit="%", statistic="ratio"),
                   _wilson(same, sided, confidence))


def snr_drop(targets: np.ndarray, reference_outputs: np.ndarray, outputs: np.ndarray,
             groups: np.ndarray | None = None, *, sided: str = "upper", confidence: float = CONFIDENCE) -> Interval:
    """The drop of output SNR against the targets (dB, reference − model) on the same rows, with its
    paired bound. The targets' energy cancels: the drop is 10·log10(Σ new error² / Σ reference error²)."""
    y = _flat(targets)
    ref_err = np.sum((_flat(reference_outputs, len(y)) - y) ** 2, axis=1)
    new_err = np.sum((_flat(outputs, len(y)) - y) ** 2, axis=1)
    _check_sided(sided)
    if groups is None:
        return _delta_method_snr(ref_err, new_err, sided, confidence)
    return _widest(_group_interval(new_err, ref_err, _check_groups(groups, len(y)), sided=sided,
                                   confidence=confidence, unit="dB", statistic="db"),
                   _delta_method_snr(ref_err, new_err, sided, confidence))


def mean_difference(differences: np.ndarray, groups: np.ndarray | None = None, *, sided: str = "upper",
                    confidence: float = CONFIDENCE, unit: str = "pp") -> Interval:
    """The mean of per-row paired differences with its bound: normal over rows, or cluster-robust t over groups."""
    d = np.asarray(differences, np.float64).reshape(-1)
    _check_sided(sided)
    if len(d) == 0:
        raise DataError("no rows to compare", "validation rows", "give at least one validation row")
    if groups is not None:
        return _widest(_group_interval(d, np.ones_like(d), _check_groups(groups, len(d)), sided=sided,
                                       confidence=confidence, unit=unit, statistic="ratio"),
                       mean_difference(d, sided=sided, confidence=confidence, unit=unit))
    estimate = float(np.mean(d))
    se = float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.inf
    if len(d) > 1 and np.all(d == d[0]):
        se = 0.0
    return _normal(estimate, se, len(d), sided, confidence, unit)


# ---------------------------------------------------------------- over rows

def _level(sided: str, confidence: float) -> float:
    """The one-sided probability a quantile is taken at: `confidence`, or its two-sided equivalent."""
    return confidence if sided != "two" else (1 + confidence) / 2


def _z(sided: str, confidence: float) -> float:
    return NormalDist().inv_cdf(_level(sided, confidence))


def _normal(estimate: float, se: float, rows: int, sided: str, confidence: float, unit: str) -> Interval:
    half = _z(sided, confidence) * se if se > 0 else 0.0
    low = estimate - half if sided != "upper" else -math.inf
    high = estimate + half if sided != "lower" else math.inf
    return Interval(estimate, low, high, rows, None, confidence, sided, unit)


def _wilson(same: np.ndarray, sided: str, confidence: float) -> Interval:
    """Wilson's score bound of a proportion (stays inside 0..100%, and below 100% when every row agrees)."""
    n = len(same)
    if n == 0:
        raise DataError("no rows to compare", "validation rows", "give at least one validation row")
    p = float(np.mean(same))
    score_low, score_high = _wilson_score(p, n, _z(sided, confidence))
    low = 100.0 * max(0.0, score_low) if sided != "upper" else -math.inf
    high = 100.0 * min(1.0, score_high) if sided != "lower" else math.inf
    return Interval(100.0 * p, low, high, n, None, confidence, sided, "%")


def _delta_method_snr(ref_err: np.ndarray, new_err: np.ndarray, sided: str, confidence: float) -> Interval:
    """log(Σb/Σa) by the delta method: each row's influence is b_i/B − a_i/A (B, A: the means)."""
    n = len(ref_err)
    estimate = _db_ratio(np.sum(new_err), np.sum(ref_err))
    a, b = float(np.mean(ref_err)), float(np.mean(new_err))
    if a == 0.0 or b == 0.0 or n < 2:
        return _normal(estimate, 0.0 if n >= 2 else math.inf, n, sided, confidence, "dB")
    influence = new_err / b - ref_err / a
    se = 10.0 / math.log(10.0) * float(np.std(influence, ddof=1)) / math.sqrt(n)
    return _normal(estimate, se, n, sided, confidence, "dB")


# ---------------------------------------------------------------- over groups

def _ratio(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    return np.asarray(numerator, np.float64) / np.asarray(denominator, np.float64)


def _db_ratio(numerator: np.ndarray | float, denominator: np.ndarray | float) -> Any:
    """10·log10(numerator / denominator), capped at ±SNR_CAP_DB (0/0: 0 dB)."""
    num, den = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 10.0 * np.log10(num / den)
    value = np.where((num == 0) & (den == 0), 0.0, value)
    value = np.clip(np.nan_to_num(value, nan=0.0, posinf=SNR_CAP_DB, neginf=-SNR_CAP_DB), -SNR_CAP_DB, SNR_CAP_DB)
    return float(value) if value.ndim == 0 else value


def _check_groups(groups: np.ndarray, rows: int) -> np.ndarray:
    g = np.asarray(groups).reshape(-1)
    if len(g) != rows:
        raise DataError(f"{len(g)} group ids for {rows} rows", "groups", "give one group id per validation row")
    return g


def _group_interval(numerator: np.ndarray, denominator: np.ndarray, groups: np.ndarray, *, sided: str,
                    confidence: float, unit: str, statistic: str) -> Interval:
    """The pooled statistic over the rows (`ratio`: Σ numerator / Σ denominator; `db`: 10·log10 of it),
    bounded by its cluster-robust standard error over whole groups and Student's t at G−1 degrees of
    freedom. The statistic is linearized per group (the delta method): group g's influence on a ratio
    R = N/D is (n_g − R·d_g)/D, on log(N/D) it is n_g/N − d_g/D."""
    _, inverse = np.unique(groups, return_inverse=True)
    count = int(inverse.max()) + 1 if len(inverse) else 0
    num = np.bincount(inverse, weights=numerator, minlength=count)
    den = np.bincount(inverse, weights=denominator, minlength=count)
    total_num, total_den = float(num.sum()), float(den.sum())
    estimate = float(_db_ratio(total_num, total_den) if statistic == "db" else _ratio(total_num, total_den))
    if count < MIN_GROUPS:
        return Interval(estimate, -math.inf, math.inf, len(groups), count, confidence, sided, unit)
    if statistic == "db":
        if total_num == 0.0 or total_den == 0.0:
            influence = np.zeros(count)
        else:
            influence = 10.0 / math.log(10.0) * (num / total_num - den / total_den)
    else:
        influence = (num - estimate * den) / total_den
    se = math.sqrt(count / (count - 1) * float(np.sum(influence ** 2)))
    half = student_t(_level(sided, confidence), count - 1) * se
    low = estimate - half if sided != "upper" else -math.inf
    high = estimate + half if sided != "lower" else math.inf
    if unit == "%":
        low, high = max(low, 0.0), min(high, 100.0)
    return Interval(estimate, min(low, estimate), max(high, estimate), len(groups), count, confidence, sided, unit)


def _widest(by_groups: Interval, by_rows: Interval) -> Interval:
    """The group interval, widened to the rows' interval where that is wider (same estimate and sides)."""
    return replace(by_groups, low=min(by_groups.low, by_rows.low), high=max(by_groups.high, by_rows.high))


@lru_cache(maxsize=64)
def student_t(probability: float, df: int) -> float:
    """The `probability` quantile of Student's t with `df` degrees of freedom (probability in (0.5, 1)):
    exact for 1 and 2 degrees of freedom, else by bisection on the CDF, integrated with Simpson's rule
    (no SciPy in the dependencies)."""
    if not 0.5 < probability < 1 or df < 1:
        raise ValueError(f"need 0.5 < probability < 1 and df ≥ 1, got {probability}, {df}")
    if df == 1:
        return math.tan(math.pi * (probability - 0.5))
    if df == 2:
        return (2 * probability - 1) / math.sqrt(2 * probability * (1 - probability))
    low, high = 0.0, NormalDist().inv_cdf(probability) * 4 + 10
    for _ in range(60):
        mid = (low + high) / 2
        if _t_cdf(mid, df) < probability:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _t_cdf(t: float, df: int) -> float:
    """P(T ≤ t) for t ≥ 0: 1/2 plus Simpson's rule on the density from 0 to t (4,000 intervals)."""
    x = np.linspace(0.0, t, 4001)
    log_scale = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = np.exp(log_scale - (df + 1) / 2 * np.log1p(x * x / df))
    h = t / 4000
    return 0.5 + h / 3 * float(density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())


def _flat(a: np.ndarray, rows: int | None = None) -> np.ndarray:
    a = np.asarray(a, np.float64)
    a = a.reshape(len(a), -1)
    if rows is not None and len(a) != rows:
        raise DataError(f"outputs for {len(a)} rows, targets for {rows}", "outputs", "compare on the same rows")
    return a


def _check_sided(sided: str) -> None:
    if sided not in SIDES:
        raise ValueError(f"sided must be one of {SIDES}, not {sided!r}")
