"""The replay's semantics (docs/forecast.md, section 8) with a baseline forecaster."""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import replay as rp  # noqa: E402
import trace as tr  # noqa: E402


def test_parse_horizons():
    assert rp.parse_horizons("5m,1h") == [5, 60]
    assert rp.parse_horizons("300s, 10, 2h") == [5, 10, 120]
    with pytest.raises(ValueError):
        rp.parse_horizons("5 minutes")
    assert rp.horizon_steps([5, 60], 5, list(range(1, 13))) == [1, 12]
    with pytest.raises(ValueError):
        rp.horizon_steps([65], 5, list(range(1, 13)))
    with pytest.raises(ValueError):
        rp.horizon_steps([7], 5, list(range(1, 13)))


def test_trace_parse_missing_cells_and_step():
    t = tr.parse(b"minute,a,b\n0,1.5,\n5,,2\n10,3,4\n")
    assert t.vms == ["a", "b"] and t.step_minutes == 5 and t.minutes.tolist() == [0, 5, 10]
    assert np.isnan(t.values[0, 1]) and np.isnan(t.values[1, 0]) and t.values[2].tolist() == [3, 4]
    with pytest.raises(ValueError):
        tr.parse(b"minute,a\n0,1\n5,1\n15,1\n")


def lines(csv: bytes, predictor: str, horizons: str):
    out = []
    rp.replay(tr.parse(csv), rp.Baseline(predictor), rp.parse_horizons(horizons), out.append)
    return [json.loads(x) for x in out]


def test_replay_persistence_lines():
    # VM b is born at minute 5 and has a gap at minute 10 (filled with its last value).
    got = lines(b"minute,a,b\n0,1,\n5,2,7\n10,3,\n", "persistence", "5m,10m")
    assert got == [
        {"vm": "a", "minute": 5, "horizon_min": 5, "forecast": 1.0},
        {"vm": "a", "minute": 10, "horizon_min": 10, "forecast": 1.0},
        {"vm": "a", "minute": 10, "horizon_min": 5, "forecast": 2.0},
        {"vm": "a", "minute": 15, "horizon_min": 10, "forecast": 2.0},
        {"vm": "b", "minute": 10, "horizon_min": 5, "forecast": 7.0},
        {"vm": "b", "minute": 15, "horizon_min": 10, "forecast": 7.0},
        {"vm": "a", "minute": 15, "horizon_min": 5, "forecast": 3.0},
        {"vm": "a", "minute": 20, "horizon_min": 10, "forecast": 3.0},
        {"vm": "b", "minute": 15, "horizon_min": 5, "forecast": 7.0},
        {"vm": "b", "minute": 20, "horizon_min": 10, "forecast": 7.0},
    ]


def test_replay_recent_median():
    got = lines(b"minute,a\n0,4\n5,1\n10,9\n15,2\n", "recent_median", "5m")
    assert [g["forecast"] for g in got] == [4.0, 2.5, 4.0, 3.0]


def test_replay_refuses_a_trace_whose_day_is_not_288_steps():
    with pytest.raises(ValueError):
        lines(b"minute,a\n0,1\n10,2\n", "persistence", "10m")
