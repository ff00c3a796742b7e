"""Per-run accuracy and its uncertainty: Spearman, MAE, bootstrap over whole runs.

Why per run: seconds of one run are strongly correlated (a neighbour holds a level for
many seconds), so pooling them overstates the evidence and lets one long run dominate.
Each run gives one Spearman and one MAE; the evaluation reports their mean over runs,
with a percentile bootstrap interval that resamples whole runs (never seconds).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def rankdata(a) -> np.ndarray:
    """Ranks 1..n, ties get the average of their ranks."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    sa = a[order]
    ranks = np.empty(len(a))
    i, n = 0, len(a)
    while i < n:
        j = i
        while j + 1 < n and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(x, y) -> float:
    """Rank correlation of x and y (NaN with fewer than 3 points or a constant side)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 3:
        return math.nan
    rx, ry = rankdata(x), rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    d = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / d) if d > 0 else math.nan


def mae(x, y) -> float:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.mean(np.abs(x - y))) if len(x) else math.nan


def bootstrap_mean_ci(values: Sequence[float], b: int = 2000, seed: int = 1, level: float = 0.95):
    """(mean, low, high) of the per-run values (NaN ones left out); the interval is the
    percentile bootstrap of the mean over runs drawn with replacement. With fewer than 2
    runs the interval is (NaN, NaN)."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(b, len(v)))
    means = v[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return m, float(lo), float(hi)
