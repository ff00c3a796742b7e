"""Spearman, MAE and the run bootstrap against hand-computed values (stats.py)."""

import math

import numpy as np
import pytest

import stats


def test_rankdata_ties():
    assert list(stats.rankdata([10, 20, 20, 5])) == [2.0, 3.5, 3.5, 1.0]


def test_spearman():
    assert stats.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x 1 2 3 4, y 1 3 2 4: 1 - 6*2/(4*15) = 0.8
    assert stats.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert math.isnan(stats.spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(stats.spearman([1, 2], [1, 2]))


def test_mae_signed_labels_no_clamp():
    # a score of 0 against a label of -10 is 10 points off
    assert stats.mae([0, 50], [-10, 40]) == pytest.approx(10.0)


def test_bootstrap_over_runs():
    m, lo, hi = stats.bootstrap_mean_ci([0.9, 0.9, 0.9])
    assert (m, lo, hi) == (pytest.approx(0.9), pytest.approx(0.9), pytest.approx(0.9))
    m, lo, hi = stats.bootstrap_mean_ci([0.0, 1.0], b=4000, seed=3)
    assert m == 0.5
    # resampling two runs: the mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4
    assert lo == 0.0 and hi == 1.0
    m, lo, hi = stats.bootstrap_mean_ci([0.7, math.nan])
    assert m == pytest.approx(0.7) and math.isnan(lo) and math.isnan(hi)
    values = list(np.linspace(0, 1, 30))
    m, lo, hi = stats.bootstrap_mean_ci(values, seed=5)
    assert lo < m < hi and hi - lo < 0.3
