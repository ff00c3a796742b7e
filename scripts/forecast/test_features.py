"""Hand-computed oracles for the forecaster's inputs (docs/forecast.md).

    /var/cache/interference-model/venv/bin/python -m pytest scripts/forecast
"""

import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import features as fx  # noqa: E402

# A small geometry so that oracles fit on a page: a day of 4 steps, a week of 28,
# 3 known positions, horizons 1 and 2, level over 3 values, scale over 4.
SMALL = fx.Config(day_steps=4, past=3, h_max=2, level_steps=3, scale_steps=4, scale_floor=0.1)


def const_get(vals_by_lag: dict):
    def get(lags):
        return np.array([[vals_by_lag.get(int(l), np.nan) for l in lags]], dtype=np.float64)
    return get


def test_geometry_of_the_shipped_model():
    c = fx.DEFAULT
    assert c.week_steps == 2016
    assert c.window == 24 + 12
    lags = c.lags()
    assert lags[0] == 23 and lags[23] == 0 and lags[24] == -1 and lags[-1] == -12
    # The oldest value read: the week value of the oldest position, 23 + 2016 steps back.
    assert c.history_steps == 2016 + 23 + 1


def test_small_geometry_lags():
    assert SMALL.lags().tolist() == [2, 1, 0, -1, -2]
    assert SMALL.history_steps == 2 + 28 + 1


def test_level_scale_full_history():
    # lag 0..3 values 4, 2, 8, 5: L = median(4, 2, 8) = 4; S = mean(|4-2|, |2-8|, |8-5|) = 11/3
    lvl, s, dmed = fx.level_scale(const_get({0: 4.0, 1: 2.0, 2: 8.0, 3: 5.0}), SMALL)
    assert lvl[0] == 4.0
    assert s[0] == pytest.approx(11 / 3)
    assert dmed[0] == pytest.approx(4.5)  # median(4, 2, 8, 5)


def test_level_scale_young_vm_and_floor():
    # Only lags 0 and 1: L = (3 + 3) / 2, no change: S = the floor.
    lvl, s, dmed = fx.level_scale(const_get({0: 3.0, 1: 3.0}), SMALL)
    assert lvl[0] == 3.0 and s[0] == 0.1 and dmed[0] == 3.0
    # Only lag 0: no pair at all.
    lvl, s, _ = fx.level_scale(const_get({0: 7.0}), SMALL)
    assert lvl[0] == 7.0 and s[0] == 0.1


def test_time_features_are_fractions_of_day_and_week():
    # Origin at absolute step 5 (day 1, step 1 of a 4-step day): position 0 is step 3.
    tf = fx.time_features(np.array([5]), SMALL)[0]
    taus = [3, 4, 5, 6, 7]
    for j, tau in enumerate(taus):
        pd, pw = (tau % 4) / 4, (tau % 28) / 28
        assert tf[j, 0] == pytest.approx(math.sin(2 * math.pi * pd))
        assert tf[j, 1] == pytest.approx(math.cos(2 * math.pi * pd))
        assert tf[j, 2] == pytest.approx(math.sin(2 * math.pi * pw))
        assert tf[j, 3] == pytest.approx(math.cos(2 * math.pi * pw))


def test_inputs_full_history_oracle():
    # Values by lag: recent 0..3, the day values at lags 4 + (2, 1, 0, -1, -2) = 6..2
    # overlap recent ones; week values at lags 28 + lag = 30..26.
    vals = {0: 4.0, 1: 2.0, 2: 8.0, 3: 5.0, 4: 6.0, 5: 1.0, 6: 9.0,
            26: 10.0, 27: 11.0, 28: 12.0, 29: 13.0, 30: 14.0}
    x, lvl, s = fx.inputs(const_get(vals), np.array([28]), SMALL)
    L, S = 4.0, 11 / 3
    assert lvl[0] == L and s[0] == pytest.approx(S)
    a = lambda v: math.asinh((v - L) / S)  # noqa: E731
    I = fx.IDX
    x = x[0].astype(np.float64)
    # value: lags 2, 1, 0 then the two steps ahead (0)
    assert x[:, I["value"]] == pytest.approx([a(8), a(2), a(4), 0, 0], abs=1e-6)
    assert x[:, I["value_mask"]].tolist() == [1, 1, 1, 0, 0]
    # day: lags 6, 5, 4, 3, 2
    assert x[:, I["day"]] == pytest.approx([a(9), a(1), a(6), a(5), a(8)], abs=1e-6)
    # week: lags 30, 29, 28, 27, 26
    assert x[:, I["week"]] == pytest.approx([a(14), a(13), a(12), a(11), a(10)], abs=1e-6)
    assert x[:, I["day_mask"]].tolist() == [1] * 5 and x[:, I["week_mask"]].tolist() == [1] * 5
    assert x[:, I["ahead"]] == pytest.approx([0, 0, 0, 0.5, 1.0])
    assert x[:, I["day_median"]] == pytest.approx([a(4.5)] * 5, abs=1e-6)


def test_inputs_young_vm_fills():
    # A VM with values at lags 0, 1 only (age 2): position lag 2 takes the earliest
    # value (lag 1); day values (lags >= 2) are the level; week values the day's.
    x, lvl, s = fx.inputs(const_get({0: 6.0, 1: 2.0}), np.array([100]), SMALL)
    L, S = 4.0, 4.0
    assert lvl[0] == L and s[0] == S
    a = lambda v: math.asinh((v - L) / S)  # noqa: E731
    I = fx.IDX
    x = x[0].astype(np.float64)
    assert x[:, I["value"]] == pytest.approx([a(2), a(2), a(6), 0, 0], abs=1e-6)
    assert x[:, I["value_mask"]].tolist() == [0, 1, 1, 0, 0]
    assert x[:, I["day"]].tolist() == [0] * 5 and x[:, I["day_mask"]].tolist() == [0] * 5
    assert x[:, I["week"]].tolist() == [0] * 5 and x[:, I["week_mask"]].tolist() == [0] * 5


def test_inputs_week_missing_takes_the_day_value():
    # Two days of history, no week: week = day, week_mask 0.
    vals = {l: float(l % 5) for l in range(0, 9)}
    x, lvl, s = fx.inputs(const_get(vals), np.array([8]), SMALL)
    I = fx.IDX
    assert np.array_equal(x[0, :, I["week"]], x[0, :, I["day"]])
    assert x[0, :, I["week_mask"]].tolist() == [0] * 5
    assert x[0, :, I["day_mask"]].tolist() == [1] * 5


def test_trace_and_ring_accessors_agree():
    rng = np.random.default_rng(3)
    k, v = 60, 3
    values = rng.uniform(0, 100, (k, v)).astype(np.float32)
    values[:10, 2] = np.nan  # VM 2 is born at row 10
    stored = fx.ffill(values).astype(np.float32)
    r = SMALL.history_steps
    for t in (12, 35, 59):
        rows = np.array([t, t, t]), np.arange(3)
        first = np.array([0, 0, 10])
        xa, la, sa = fx.inputs(fx.trace_accessor(stored, rows[0], rows[1], first), rows[0], SMALL)
        ring = np.full((3, r), np.nan, dtype=np.float32)
        lo = max(0, t - r + 1)
        ring[:, r - (t - lo + 1):] = stored[lo : t + 1].T
        ages = np.minimum(t + 1 - first, r)
        xb, lb, sb = fx.inputs(fx.ring_accessor(ring, ages), rows[0], SMALL)
        assert np.array_equal(xa, xb) and np.array_equal(la, lb) and np.array_equal(sa, sb)


def test_ffill():
    a = np.array([[np.nan, 1.0], [2.0, np.nan], [np.nan, np.nan], [5.0, 6.0]])
    f = fx.ffill(a)
    assert np.isnan(f[0, 0]) and f[1, 0] == 2 and f[2, 0] == 2 and f[3, 0] == 5
    assert f[:, 1].tolist() == [1, 1, 1, 6]


def test_forecast_from_output_clamps_at_zero():
    f = fx.forecast_from_output(np.array([[0.0, 1.0, -10.0]]), np.array([2.0]), np.array([0.5]))
    assert f.tolist() == [[2.0, 2.5, 0.0]]


def test_scaled_target():
    assert fx.scaled_target(np.array([[6.0, 2.0]]), np.array([4.0]), np.array([2.0])).tolist() == [[1.0, -1.0]]
