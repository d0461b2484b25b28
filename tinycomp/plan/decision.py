"""The one rule by which a plan accepts or refuses a measured drop against a drop budget (pure).

Every comparison of a measured drop with the budget goes through `DECISION`, for both backends:
the joint check (`choose.checked_plan`), each refinement step (`make.refined_plan`, the Keras step
measurer's "fine-tune this step?"), and the budget's pruning of candidates (`Pruning`: a tensor's
fewer bits are not measured, or not fine-tuned, once more bits of it measured a drop the budget
cannot take). Today the rule is a point estimate with one standard error of slack: `Measured.drop`
(the task's unit) and its paired standard error `Measured.noise`. A rule on a confidence bound
replaces `Decision`'s three methods and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measured:
    """One measured drop vs the given model (the task's unit) and its standard error (0: not known)."""

    drop: float
    noise: float = 0.0


class Decision:
    """Accept or refuse a measured drop against a drop budget."""

    def accepts(self, measured: Measured, budget: float) -> bool:
        """A checked plan is within the budget: its drop is at most the budget plus its noise."""
        return measured.drop <= budget + measured.noise

    def keeps_step(self, measured: Measured, budget: float) -> bool:
        """A refinement step is kept only when its drop stays within the budget minus its noise (the
        final check still decides; a step must leave room for it)."""
        return measured.drop <= budget - measured.noise

    def may_fit(self, measured: Measured, budget: float) -> bool:
        """A candidate (one tensor at some bits) could still be part of a plan within the budget; when it
        cannot, the same tensor's fewer bits are not worth measuring."""
        return measured.drop <= budget + measured.noise


DECISION = Decision()


@dataclass(frozen=True)
class Limit:
    """A drop budget with the noise of the candidates measured against it: `exceeded_by(drop)` when a
    candidate measuring `drop` cannot be part of a plan within `budget` (`Decision.may_fit`)."""

    budget: float
    noise: float

    def exceeded_by(self, drop: float) -> bool:
        return not DECISION.may_fit(Measured(drop, self.noise), self.budget)
