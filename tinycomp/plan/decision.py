"""The one rule by which a plan accepts or refuses a measured drop against a drop budget (pure).

Every comparison of a measured drop with the budget goes through `DECISION`, for both backends:
the joint check (`choose.checked_plan`), each refinement step (`make.refined_plan`, the Keras step
measurer's "fine-tune this step?"), and the budget's pruning of candidates (`Limit`, used by
`candidates.ruled_out` and `candidates.fine_tune_limit`: a tensor's fewer bits are not measured, or
not fine-tuned, once more bits of it measured a drop the budget cannot take).

The rule is on a confidence bound: a measurement that carries its paired bounds (`Measured.checked`:
the one-sided 95% upper bound of the drop, and of top-1 agreement the lower bound, over validation rows
or groups; `tinycomp.bounds`) is accepted, and a step kept, only when the upper bound is within the
budget (and the agreement's lower bound at least `min_agreement`, when given). A measurement without
bounds (a table recorded before they existed) falls back to the point estimate with one standard error
of slack (`Measured.noise`). Candidates are pruned only when the one-sided 95% lower bound of their
drop (the drop less PRUNE_Z standard errors) is beyond the budget: being sure a candidate cannot fit is
the other side of the same bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

from tinycomp.bounds import CONFIDENCE, Checked

PRUNE_Z = NormalDist().inv_cdf(CONFIDENCE)  # 1.64: a candidate's drop is beyond the budget at 95% one-sided


@dataclass(frozen=True)
class Measured:
    """One measured drop vs the given model (the task's unit) and its standard error (0: not known)."""

    drop: float
    noise: float = 0.0
    checked: Checked | None = None  # the paired bounds of the drop and agreement (None: not measured)


class Decision:
    """Accept or refuse a measured drop against a drop budget."""

    def accepts(self, measured: Measured, budget: float, min_agreement: float | None = None) -> bool:
        """A checked plan is within the budget: the upper bound of its drop is at most the budget (and the
        lower bound of its agreement at least `min_agreement`). Without bounds: the drop is at most the
        budget plus its noise."""
        if measured.checked is not None:
            return measured.checked.within(budget, min_agreement)
        return measured.drop <= budget + PRUNE_Z * measured.noise

    def keeps_step(self, measured: Measured, budget: float, min_agreement: float | None = None) -> bool:
        """A refinement step is kept only when its bounds are within the budget, as for `accepts` (without
        bounds: its drop within the budget minus its noise, so that the final check has room)."""
        if measured.checked is not None:
            return measured.checked.within(budget, min_agreement)
        return measured.drop <= budget - measured.noise

    def may_fit(self, measured: Measured, budget: float) -> bool:
        """A candidate (one tensor at some bits) could still be part of a plan within the budget; when it
        cannot, the same tensor's fewer bits are not worth measuring."""
        return measured.drop <= budget + PRUNE_Z * measured.noise


DECISION = Decision()


@dataclass(frozen=True)
class Limit:
    """A drop budget with the noise of the candidates measured against it: `exceeded_by(drop)` when a
    candidate measuring `drop` cannot be part of a plan within `budget` (`Decision.may_fit`)."""

    budget: float
    noise: float

    def exceeded_by(self, drop: float) -> bool:
        return not DECISION.may_fit(Measured(drop, self.noise), self.budget)
