"""Exact 1-D k-means of integer values, by dynamic programming over their histogram.

An int8 weight channel has at most 256 distinct values, so the optimal clustering into k levels is
cheap to find exactly. In one dimension the points nearest each of k centroids form contiguous runs
of the sorted distinct values, and the best integer centroid of a run is its mean rounded to the
nearest integer (the squared error is a parabola in the centroid). So the optimum over every
partition into at most k runs is a shortest path: `best[k][i]` = the least squared error of the
first i+1 distinct values in k runs, `best[k][i] = min_j best[k-1][j-1] + cost(j, i)`. Costs are
integers held exactly in float64, and ties go to the first (smallest) split, so the result is
deterministic. This is the optimum, not Lloyd's local search from random starts.

`optimal_levels(values, k, weights=...)` weighs each value's squared error (e.g. by the second
moment of the input it multiplies, so the error minimized is the layer's output error, not the
weights'): the cost of a run is Σ weight·(value − centroid)², still a parabola in the centroid, so
the best integer centroid is the run's weighted mean rounded, and the same DP is exact.

Nothing here knows about .tflite files: values in, levels and a value map out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

FLOAT_HALF = 1e-9  # integer counts put a mean at least 1/(2·count) from a half; float sums err far less


@dataclass(frozen=True)
class Clustering:
    """The optimal levels of one set of integer values.

    `levels`: the integer centroids, ascending. `mapping`: distinct input value → its level.
    `sse`: Σ (value − level)² over every input value (counted with multiplicity; times its weight
    when weighted: then a float).
    """

    levels: np.ndarray
    mapping: dict[int, int]
    sse: int | float

    def apply(self, values: np.ndarray) -> np.ndarray:
        """`values` with each replaced by its level (same shape and dtype)."""
        distinct, inverse = np.unique(values, return_inverse=True)
        mapped = np.array([self.mapping[int(v)] for v in distinct], dtype=values.dtype)
        return mapped[inverse].reshape(values.shape)


def round_half_up(x: np.ndarray) -> np.ndarray:
    """Nearest integer, halves up (numpy's `round` goes to even, which is as exact but less obvious)."""
    return np.floor(x + 0.5)


def segment_costs(values: np.ndarray, counts: np.ndarray, half: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(cost[j, i], centroid[j, i]) of one run of sorted distinct values j..i (inf/0 where j > i).

    The centroid is the run's weighted mean rounded to an integer; the cost is Σ count·(value − centroid)².
    `half`: means within it below a half still round up (float weights make a tie's mean 10.4999…; both
    neighbours cost the same, and this keeps the choice the one equal integer counts make).
    """
    v = values.astype(np.float64)
    w = counts.astype(np.float64)
    zero = np.zeros(1)
    cw, c1, c2 = (np.concatenate([zero, np.cumsum(a)]) for a in (w, w * v, w * v * v))
    n = len(values)
    j, i = np.triu_indices(n)
    sw, s1, s2 = cw[i + 1] - cw[j], c1[i + 1] - c1[j], c2[i + 1] - c2[j]
    centroid = round_half_up(s1 / sw + half)
    cost = np.full((n, n), np.inf)
    centroids = np.zeros((n, n))
    cost[j, i] = s2 - 2 * centroid * s1 + centroid * centroid * sw
    centroids[j, i] = centroid
    return cost, centroids


def optimal_levels(values: np.ndarray, k: int, weights: np.ndarray | None = None) -> Clustering:
    """The at most `k` integer levels with the least total squared error to `values` (any integer array).

    `weights` (same shape as `values`, each > 0): the least Σ weight·(value − level)² instead.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    flat = np.asarray(values).ravel()
    distinct, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    if len(distinct) == 0:
        return Clustering(np.zeros(0, np.int64), {}, 0)
    if len(distinct) <= k:  # every value is its own level
        return Clustering(distinct.astype(np.int64), {int(v): int(v) for v in distinct}, 0)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.shape != flat.shape or not np.all(w > 0) or not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite, positive and one per value")
        scale = float(w.mean())  # the same optimum on weights of mean 1: costs of the order of unweighted ones
        found = _levels(distinct, np.bincount(inverse.ravel(), weights=w / scale, minlength=len(distinct)), k,
                        exact=False)
        return replace(found, sse=found.sse * scale)
    return _levels(distinct, counts, k, exact=True)


def _levels(distinct: np.ndarray, counts: np.ndarray, k: int, exact: bool) -> Clustering:
    """The DP over sorted `distinct` values of weight `counts` (integer counts: `exact` integer sse)."""
    cost, centroids = segment_costs(distinct, counts, 0.0 if exact else FLOAT_HALF)
    n = len(distinct)
    best = cost[0].copy()  # one run: values 0..i
    splits = []  # splits[r][i]: where the last run starts in the best (r+2)-run partition of 0..i
    for _ in range(1, k):
        # candidate[j, i]: the best of 0..j-1 in one run fewer, then one run j..i (j ≥ 1)
        candidate = best[:-1, None] + cost[1:, :]
        start = np.argmin(candidate, axis=0)  # first minimum: deterministic ties
        best = candidate[start, np.arange(n)]
        splits.append(start + 1)
    runs = _backtrack(splits, n)
    levels = np.array([int(centroids[j, i]) for j, i in runs], dtype=np.int64)
    mapping = {int(distinct[m]): int(level) for (j, i), level in zip(runs, levels) for m in range(j, i + 1)}
    sse = float(best[n - 1])
    return Clustering(levels, mapping, int(round(sse)) if exact else sse)


def _backtrack(splits: list[np.ndarray], n: int) -> list[tuple[int, int]]:
    """The runs (first, last index) of the best partition of 0..n-1 into len(splits)+1 runs, ascending."""
    runs, end = [], n - 1
    for start_of in reversed(splits):
        start = int(start_of[end])
        runs.append((start, end))
        end = start - 1
    runs.append((0, end))
    return runs[::-1]
