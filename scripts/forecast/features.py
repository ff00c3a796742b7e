"""The demand forecaster's inputs, exactly as docs/forecast.md defines them.

One implementation serves training (vectorised over many (VM, origin) samples gathered
from a whole trace) and the replay (one row per VM, read from each VM's rollup ring, as
the agent does): both call `inputs()` with a `get(lags)` accessor that returns the
values `lags` steps before the origin, NaN where the VM has no value (the accessor is
the only thing that differs). Everything is in steps and fractions of the day and week:
nothing here knows a wall-clock constant.

Notation (docs/forecast.md): d[k] is the VM's demand at step k (mean over the step,
percent of its allocated cores), t the origin step (the last complete step), `age` the
number of steps the VM has values for up to and including t (lag l is available iff
l < age), t_abs the origin's step on the clock (steps since a Monday 00:00).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------------------
# Constants of model version 1 (the sidecar repeats them; the agent reads them there).

DAY_STEPS = 288  # steps per day (300 s steps on a 24 h day; the lab: 1 s steps, 288 s day)
WEEK_STEPS = 7 * DAY_STEPS
PAST = 24  # E: positions of known steps (the origin is the last of them)
HORIZONS = tuple(range(1, 13))  # output k is the forecast k+1 steps ahead
H_MAX = max(HORIZONS)
LEVEL_STEPS = 12  # L: median of the last 12 values
SCALE_STEPS = 288  # S: mean |first difference| over the last 288 values; day median too
SCALE_FLOOR = 0.1  # percentage points: S is at least this

FEATURES = [
    "value", "day", "week",
    "value_mask", "day_mask", "week_mask", "ahead",
    "day_sin", "day_cos", "week_sin", "week_cos",
    "day_median",
]
F = len(FEATURES)
IDX = {n: i for i, n in enumerate(FEATURES)}
# Not standardised by the sidecar's normalisation (mean 0, std 1): masks and time.
UNSCALED = ["value_mask", "day_mask", "week_mask", "ahead", "day_sin", "day_cos", "week_sin", "week_cos"]
UNSCALED_IDX = [IDX[n] for n in UNSCALED]


@dataclass(frozen=True)
class Config:
    """The step geometry (docs/forecast.md, "Clock"). Model version 1 was trained with
    day_steps 288; the agent may use any step whose day is 288 steps."""

    day_steps: int = DAY_STEPS
    past: int = PAST
    h_max: int = H_MAX
    level_steps: int = LEVEL_STEPS
    scale_steps: int = SCALE_STEPS
    scale_floor: float = SCALE_FLOOR

    @property
    def week_steps(self) -> int:
        return 7 * self.day_steps

    @property
    def window(self) -> int:
        """T: E known steps, then H_max steps to forecast."""
        return self.past + self.h_max

    def lags(self) -> np.ndarray:
        """Lag (origin step - position's step) of each position j = 0..T-1: E-1 down to
        -H_max; position E-1 is the origin, E-1+h the step h ahead."""
        return np.arange(self.past - 1, -self.h_max - 1, -1)

    @property
    def history_steps(self) -> int:
        """Values per VM the agent must keep (the origin included): the oldest lag read
        plus one."""
        return int(max(self.lags().max() + self.week_steps, self.scale_steps - 1, self.level_steps - 1)) + 1


DEFAULT = Config()


def median_available(v: np.ndarray) -> np.ndarray:
    """Row-wise median of the non-NaN values (mean of the two middle ones for an even
    count); NaN for a row without any."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(v, axis=1)


def level_scale(get, cfg: Config = DEFAULT):
    """(L, S, day median) per row. L: median of the available values among lags
    0..level_steps-1. S: mean |d[l] - d[l+1]| over the pairs l, l+1 < scale_steps with
    both available, at least scale_floor (scale_floor when there is no pair). Day
    median: median of the available values among lags 0..scale_steps-1."""
    last = get(np.arange(cfg.scale_steps))  # [n, scale_steps], lag 0 first
    lvl = median_available(last[:, : cfg.level_steps])
    diffs = np.abs(last[:, :-1] - last[:, 1:])
    ok = np.isfinite(diffs)
    cnt = ok.sum(axis=1)
    tot = np.where(ok, diffs, 0.0).sum(axis=1)
    s = np.where(cnt > 0, tot / np.maximum(cnt, 1), cfg.scale_floor)
    s = np.maximum(s, cfg.scale_floor)
    return lvl, s, median_available(last)


def time_features(t_abs: np.ndarray, cfg: Config = DEFAULT) -> np.ndarray:
    """[n, T, 4]: sin and cos of 2 pi x the phase of the day and of the week of each
    position's step (tau_abs = t_abs - lag_j; phase = (tau_abs mod day) / day, in
    integers first, then float64)."""
    tau = np.asarray(t_abs, dtype=np.int64)[:, None] - cfg.lags()[None, :].astype(np.int64)
    pd = np.mod(tau, cfg.day_steps).astype(np.float64) / cfg.day_steps
    pw = np.mod(tau, cfg.week_steps).astype(np.float64) / cfg.week_steps
    a, b = 2 * np.pi * pd, 2 * np.pi * pw
    return np.stack([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], axis=-1)


def inputs(get, t_abs: np.ndarray, cfg: Config = DEFAULT):
    """Raw (not yet normalised) model inputs for n rows.

    get(lags) -> float64 [n, len(lags)]: the value `lag` steps before each row's origin
    (lags >= 0 only), NaN where the VM has none (before its first value). Lag 0 must be
    available. Returns (x float32 [n, T, F], level float64 [n], scale float64 [n])."""
    t_abs = np.asarray(t_abs, dtype=np.int64)
    n = len(t_abs)
    lvl, s, dmed = level_scale(get, cfg)
    if np.any(~np.isfinite(lvl)):
        raise ValueError("a row has no value at lag 0")
    lags = cfg.lags()
    e = cfg.past
    past = get(lags[:e])  # the E known steps, oldest first
    day = get(lags + cfg.day_steps)
    week = get(lags + cfg.week_steps)
    m_past, m_day, m_week = np.isfinite(past), np.isfinite(day), np.isfinite(week)
    # Fills: a known step before the VM's first value takes its earliest value (the
    # first available position's: availability is contiguous up to the origin); an
    # unavailable day value the level L (scaled 0); an unavailable week value the
    # (filled) day value. Steps ahead have no value: scaled 0, mask 0.
    first_pos = np.argmax(m_past, axis=1)
    earliest = past[np.arange(n), first_pos]
    past = np.where(m_past, past, earliest[:, None])
    day = np.where(m_day, day, lvl[:, None])
    week = np.where(m_week, week, day)

    def scaled(v):
        return np.arcsinh((v - lvl[:, None]) / s[:, None])

    t = cfg.window
    x = np.zeros((n, t, F), dtype=np.float64)
    x[:, :e, IDX["value"]] = scaled(past)
    x[:, :, IDX["day"]] = scaled(day)
    x[:, :, IDX["week"]] = scaled(week)
    x[:, :e, IDX["value_mask"]] = m_past
    x[:, :, IDX["day_mask"]] = m_day
    x[:, :, IDX["week_mask"]] = m_week
    x[:, :, IDX["ahead"]] = np.maximum(0, -lags)[None, :] / cfg.h_max
    x[:, :, IDX["day_sin"] : IDX["week_cos"] + 1] = time_features(t_abs, cfg)
    x[:, :, IDX["day_median"]] = np.arcsinh((dmed - lvl) / s)[:, None]
    return x.astype(np.float32), lvl, s


def forecast_from_output(out: np.ndarray, level: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The forecast of each horizon from the model's output [n, K]:
    max(0, L + S x out), in float64."""
    return np.maximum(0.0, level[:, None] + scale[:, None] * np.asarray(out, dtype=np.float64))


def scaled_target(y_future: np.ndarray, level: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Training target of each horizon: (d[t+h] - L) / S (not squashed: the loss is
    the MAE of the forecast)."""
    return (y_future - level[:, None]) / scale[:, None]


# --------------------------------------------------------------------------------------
# Accessors


def trace_accessor(values: np.ndarray, t: np.ndarray, v: np.ndarray, first: np.ndarray):
    """get() over a whole trace: values [K, V] as stored (float32 numbers), rows
    (origin t[i], VM v[i]) whose VM's first value is at index first[i] (an earlier
    index reads as missing: how training simulates young VMs). NaN cells of the trace
    are forward-filled first (`ffill`), as the agent's rollup does."""
    t = np.asarray(t, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    first = np.asarray(first, dtype=np.int64)

    def get(lags):
        idx = t[:, None] - np.asarray(lags, dtype=np.int64)[None, :]
        ok = idx >= first[:, None]
        vals = values[np.clip(idx, 0, None), v[:, None]].astype(np.float64)
        return np.where(ok, vals, np.nan)

    return get


def ring_accessor(rings: np.ndarray, ages: np.ndarray):
    """get() over rollup rings: rings [n, R] float32, column R-1 the origin's value,
    column R-1-l the value l steps before; ages [n] how many of the newest columns hold
    values (the rest is unavailable)."""
    r = rings.shape[1]
    ages = np.asarray(ages, dtype=np.int64)

    def get(lags):
        lags = np.asarray(lags, dtype=np.int64)
        if lags.max() >= r:
            raise ValueError(f"lag {lags.max()} needs a ring of more than {r} values")
        vals = rings[:, r - 1 - lags].astype(np.float64)
        return np.where(lags[None, :] < ages[:, None], vals, np.nan)

    return get


def ffill(values: np.ndarray) -> np.ndarray:
    """Forward-fills NaN along axis 0 (a missing step takes the previous value; NaN
    before a VM's first value stays NaN)."""
    out = np.array(values, dtype=np.float64, copy=True)
    for k in range(1, len(out)):
        m = np.isnan(out[k])
        out[k, m] = out[k - 1, m]
    return out
