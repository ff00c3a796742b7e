"""Oracles for the baselines, the error measures and the splits."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baselines as bl  # noqa: E402
import splits as sp  # noqa: E402


def series():
    # One VM over 3 "days" of 2 steps: 1, 2, 3, 4, 5, 6
    return np.arange(1.0, 7.0)[:, None]


def test_persistence_and_seasonal():
    y = series()
    p = bl.persistence(y, 2)
    assert np.isnan(p[:2, 0]).all() and p[2:, 0].tolist() == [1, 2, 3, 4]
    d = bl.same_time_yesterday(y, 1, day_steps=2)
    assert np.isnan(d[:2, 0]).all() and d[2:, 0].tolist() == [1, 2, 3, 4]
    w = bl.same_time_last_week(np.arange(20.0)[:, None], 1, day_steps=2)  # week of 14
    assert np.isnan(w[:14, 0]).all() and w[14:, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_recent_median():
    y = np.array([5.0, 1.0, 3.0, 10.0, 2.0])[:, None]
    m = bl.recent_median(y, 1, steps=3)
    # target 1: median(5); 2: median(5, 1) = 3; 3: median(5, 1, 3) = 3; 4: median(1, 3, 10) = 3
    assert np.isnan(m[0, 0]) and m[1:, 0].tolist() == [5, 3, 3, 3]


def test_seasonal_blend_is_the_median_of_three():
    y = np.arange(40.0)[:, None]
    b = bl.seasonal_blend(y, 1, day_steps=2, steps=1)
    # target 20: recent (lag 1) 19, yesterday 18, last week 6: median 18
    assert b[20, 0] == 18
    # target 3: recent 2, yesterday 1, no last week: median of two = 1.5
    assert b[3, 0] == 1.5


def test_per_vm_mae_and_best_of():
    actual = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    pred = np.array([[np.nan, 11.0], [3.0, 18.0], [3.0, 30.0]])
    rows = np.array([True, True, True])
    m = bl.per_vm_mae(pred, actual, rows)
    assert m.tolist() == [0.5, 1.0]  # VM 0: (1 + 0) / 2 (the NaN cell is not scored)
    assert bl.best_of([np.array([1.0, 5.0]), np.array([2.0, 4.0])]).tolist() == [1.0, 4.0]


def test_bootstrap_ci_brackets_the_mean():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    lo, hi = bl.bootstrap_ci(x)
    assert 1.0 <= lo <= 2.5 <= hi <= 4.0
    assert bl.bootstrap_ci(np.array([2.0, 2.0])) == (2.0, 2.0)
    assert bl.bootstrap_ratio_ci(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx((0.5, 0.5))


def test_vm_folds_partition():
    folds = sp.vm_folds(70, 5, seed=1)
    allv = np.concatenate(folds)
    assert sorted(allv.tolist()) == list(range(70))
    assert [len(f) for f in folds] == [14] * 5
    assert [f.tolist() for f in sp.vm_folds(70, 5, seed=1)] == [f.tolist() for f in folds]


def test_time_blocks_and_purge():
    b = sp.TimeBlocks.halves(100, start=20, purge=5)
    assert (b.start, b.split, b.end) == (20, 60, 100)
    assert b.test_rows(0) == (20, 60) and b.test_rows(1) == (60, 100)
    # Block 0's models train on origins whose every target (t+1 .. t+3) is >= 65, < 100.
    o0 = b.train_origins(0, 1, 3)
    assert o0[0] == 64 and o0[-1] == 96
    # Block 1's: targets < 55.
    o1 = b.train_origins(1, 1, 3)
    assert o1[0] == 0 and o1[-1] == 51
    assert b.block_of(np.array([0, 20, 59, 60, 99, 100])).tolist() == [-1, 0, 0, 1, 1, -1]
