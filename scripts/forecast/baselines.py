"""Baseline forecasters and the per-VM error measures (docs/forecast.md, "Accuracy").

A forecast array P[h] is float64 [K, V]: P[h][i, v] is the forecast of VM v's value at
trace row i made h steps earlier (NaN where there is none). Every predictor, the
model's replay output included, is turned into this form before it is scored.
"""

from __future__ import annotations

import numpy as np

import features as fx


def lagged(values: np.ndarray, lag: int) -> np.ndarray:
    """P[i] = values[i - lag] (NaN for i < lag)."""
    out = np.full(values.shape, np.nan)
    if lag < len(values):
        out[lag:] = values[: len(values) - lag]
    return out


def persistence(values: np.ndarray, h: int) -> np.ndarray:
    """The last value before the horizon: d[t] for the target t + h."""
    return lagged(values, h)


def same_time_yesterday(values: np.ndarray, h: int, day_steps: int = fx.DAY_STEPS) -> np.ndarray:
    """d[i - day] for target i (needs h <= day)."""
    assert h <= day_steps
    return lagged(values, day_steps)


def same_time_last_week(values: np.ndarray, h: int, day_steps: int = fx.DAY_STEPS) -> np.ndarray:
    assert h <= 7 * day_steps
    return lagged(values, 7 * day_steps)


def recent_median(values: np.ndarray, h: int, steps: int = fx.LEVEL_STEPS) -> np.ndarray:
    """The model's level L at the origin: median of the last `steps` values before the
    horizon (fewer at the start of the trace)."""
    k = len(values)
    out = np.full(values.shape, np.nan)
    for i in range(h, k):
        t = i - h
        out[i] = np.nanmedian(values[max(0, t - steps + 1) : t + 1], axis=0)
    return out


def seasonal_blend(values: np.ndarray, h: int, day_steps: int = fx.DAY_STEPS,
                   steps: int = fx.LEVEL_STEPS) -> np.ndarray:
    """Median of {recent median L, same time yesterday, same time last week}: a robust
    seasonal-naive blend with no fitted weight. Where a seasonal value is missing the
    median is over those present."""
    stack = np.stack([recent_median(values, h, steps), same_time_yesterday(values, h, day_steps),
                      same_time_last_week(values, h, day_steps)])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(stack, axis=0)


BASELINES = {
    "persistence": persistence,
    "yesterday": same_time_yesterday,
    "last_week": same_time_last_week,
    "recent_median": recent_median,
    "seasonal_blend": seasonal_blend,
}
BEST_OF_THREE = ("persistence", "yesterday", "last_week")


def per_vm_mae(pred: np.ndarray, actual: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """MAE of each VM over the given rows (a boolean mask over rows, or [K, V] cells);
    NaN for a VM without a scored cell."""
    cells = rows if rows.ndim == 2 else np.broadcast_to(rows[:, None], actual.shape)
    err = np.abs(pred - actual)
    ok = cells & np.isfinite(err)
    cnt = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.where(ok, err, 0.0).sum(axis=0) / cnt, np.nan)


def best_of(maes: list[np.ndarray]) -> np.ndarray:
    """Per VM, the smallest of the given per-VM MAEs (an oracle: it picks, for each VM,
    the baseline that did best on the very cells being scored)."""
    return np.min(np.stack(maes), axis=0)


def bootstrap_ci(per_vm: np.ndarray, reps: int = 2000, seed: int = 16, level: float = 0.95):
    """Percentile bootstrap over VMs of the mean of per-VM values: (lo, hi)."""
    x = np.asarray(per_vm, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(reps, len(x)))
    means = x[idx].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def bootstrap_ratio_ci(num: np.ndarray, den: np.ndarray, reps: int = 2000, seed: int = 16,
                       level: float = 0.95):
    """Paired percentile bootstrap over VMs of mean(num) / mean(den)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), size=(reps, len(num)))
    r = num[idx].mean(axis=1) / den[idx].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(r, a)), float(np.quantile(r, 1 - a))
