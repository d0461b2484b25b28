"""The unit a plan measures drops in, per task (pure).

- classify: a candidate's score is its top-1 accuracy in [0, 1]; drops are ×100, in percentage
  points (pp). One accuracy measured on n rows is ±100·sqrt(p(1−p)/n) pp (binomial).
- regress (regression, reconstruction): a candidate's score is its output SNR against the targets
  in dB (`metrics.snr_db`), stored as dB; drops are reference − candidate SNR, in dB (×1). One SNR
  measured on n rows is ±10/ln(10)·sqrt(2/n) dB: the error energy is a mean over n rows, and with
  Gaussian errors its relative standard error is sqrt(2/n) (a χ² with n degrees of freedom); the
  signal energy is fixed by the targets. Rows, not elements, count as independent (elements of one
  row are correlated), which keeps the estimate on the safe (larger) side.

The drop machinery (`candidates`, `choose`) works in "drop units": `scale` × (reference − score).
"""

from __future__ import annotations

import math

TASKS = ("classify", "regress")
UNIT = {"classify": "pp", "regress": "dB"}
SCALE = {"classify": 100.0, "regress": 1.0}  # drop units per unit of score
METRIC = {"classify": "accuracy", "regress": "SNR"}
BUDGET_OPTION = {"classify": "--max-accuracy-drop", "regress": "--max-snr-drop"}


def scale_of(task: str) -> float:
    return SCALE[task]


def unit_of(task: str) -> str:
    return UNIT[task]


def noise_of(task: str, score: float, samples: int) -> float:
    """The standard error of one score measured on `samples` validation rows, in drop units."""
    n = max(samples, 1)
    if task == "regress":
        return 10.0 / math.log(10.0) * math.sqrt(2.0 / n)
    return 100.0 * (score * (1 - score) / n) ** 0.5


def score_text(task: str, score: float, digits: int = 2) -> str:
    """'97.10%' (classify) or 'SNR 20.30 dB' (regress)."""
    return f"SNR {score:.{digits}f} dB" if task == "regress" else f"{100 * score:.{digits}f}%"
