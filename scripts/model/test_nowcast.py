"""The attributed nowcast against hand-computed values (scripts/model/nowcast.py)."""

import json
import math
import os

import pytest

import golden_nowcast
import nowcast as nc


def sample(ts, vm="v", run=None, wait=0.0, by=(), dt=1.0, cpu=True):
    s = {"timestamp_ms": ts, "vm": vm, "interval_seconds": dt,
         "runqueue": {"wait_seconds": wait},
         "preempted_by": [{"by": b, "count": 1, "seconds": sec} for b, sec in by]}
    s["cpu"] = {"usage_seconds": run} if cpu else None
    return s


def test_share_of_runnable_time_taken_by_the_aggressor():
    # run 0.6, wait 0.4, a took 0.3 of it: 0.3 / (0.6 + 0.4) = 30 %
    s = [sample(1000, run=0.6, wait=0.4, by=[("a", 0.3), ("host", 0.1)])]
    assert nc.pair_score(s, "v", "a") == pytest.approx(30.0)


def test_own_threads_leave_the_denominator():
    # 2 threads on one CPU, a neighbour: run 1.0, wait 1.2 of which 0.6 by itself,
    # 0.6 by a -> 0.6 / (1.0 + 1.2 - 0.6) = 37.5 %
    s = [sample(1000, run=1.0, wait=1.2, by=[("v", 0.6), ("a", 0.6)])]
    assert nc.pair_score(s, "v", "a") == pytest.approx(37.5)


def test_clamped_to_0_100():
    # preempted_by seconds larger than the denominator (accounting skew) -> 100
    s = [sample(1000, run=0.1, wait=0.05, by=[("a", 0.5)])]
    assert nc.pair_score(s, "v", "a") == 100.0
    # self larger than run + wait: denominator negative -> below 1 % of dt -> 0
    s = [sample(1000, run=0.1, wait=0.05, by=[("v", 0.5), ("a", 0.1)])]
    assert nc.pair_score(s, "v", "a") == 0.0


def test_idle_victim_scores_zero():
    # denom 0.009 < 0.01 * dt = 0.01 -> 0 even though a took all of it
    s = [sample(1000, run=0.004, wait=0.005, by=[("a", 0.005)])]
    assert nc.pair_score(s, "v", "a") == 0.0
    # exactly at the bound it counts: denom 0.01 = 0.01 * 1.0
    s = [sample(1000, run=0.005, wait=0.005, by=[("a", 0.005)])]
    assert nc.pair_score(s, "v", "a") == pytest.approx(50.0)


def test_missing_cpu_counts_zero_run():
    s = [sample(1000, run=None, wait=0.5, by=[("a", 0.25)], cpu=False)]
    assert nc.pair_score(s, "v", "a") == pytest.approx(50.0)


def test_host_and_self_are_not_aggressors():
    s = [sample(1000, run=0.5, wait=0.5)]
    for bad in ("host", "departed", "v"):
        with pytest.raises(ValueError):
            nc.pair_score(s, "v", bad)


def test_window_count():
    assert nc.window_count(5, 1) == 5
    assert nc.window_count(5, 1.0 + 1e-12) == 5
    assert nc.window_count(5, 2) == 3
    assert nc.window_count(5, 5) == 1
    assert nc.window_count(5, 10) == 1
    assert nc.window_count(5, 0.2) == 25


def test_tick_and_smoothed_windows():
    # seven 1 s samples; a takes 0.5 s in sample 3 only (run 0.5, wait 0.5 each)
    ss = [sample(1000 * i, run=0.5, wait=0.5, by=[("a", 0.5)] if i == 3 else [])
          for i in range(1, 8)]
    got = {(s.timestamp_ms, s.aggressor): s for s in nc.victim_scores(ss, "v", ["a"], 1.0)}
    assert got[(3000, "a")].tick == pytest.approx(50.0)
    assert got[(4000, "a")].tick == 0.0
    # smoothed at 3000: samples 1-3 present -> 0.5 / 3.0
    assert got[(3000, "a")].smoothed == pytest.approx(100 * 0.5 / 3.0)
    # at 7000: samples 3-7 -> 0.5 / 5.0 = 10 %; at 8000 it would have left
    assert got[(7000, "a")].smoothed == pytest.approx(10.0)


def test_smoothed_counts_only_samples_present():
    # a gap (no sample at 2000-4000): the last 5 samples reach back over it
    ts = [1000, 5000, 6000, 7000, 8000]
    ss = [sample(t, run=0.5, wait=0.5, by=[("a", 0.5)] if t == 1000 else []) for t in ts]
    last = [s for s in nc.victim_scores(ss, "v", ["a"], 1.0)][-1]
    assert last.smoothed == pytest.approx(10.0)


def test_all_scores_pairs_and_order():
    samples = [
        sample(2000, vm="b", run=1.0, wait=0.0),
        sample(1000, vm="a", run=0.5, wait=0.5, by=[("b", 0.25), ("host", 0.25)]),
        sample(2000, vm="a", run=0.5, wait=0.5, by=[("b", 0.5)]),
    ]
    out = nc.all_scores(samples, 1.0)
    assert [(s.timestamp_ms, s.victim, s.aggressor) for s in out] == [
        (1000, "a", "b"), (2000, "a", "b"), (2000, "b", "a")]
    assert out[0].tick == pytest.approx(25.0)
    assert out[1].tick == pytest.approx(50.0)
    assert out[1].smoothed == pytest.approx(100 * 0.75 / 2.0)
    assert out[2].tick == 0.0


def test_duplicate_timestamp_later_line_wins():
    samples = [sample(1000, run=0.5, wait=0.5, by=[("a", 0.5)]), sample(1000, run=1.0, wait=0.0),
               sample(1000, vm="a", run=1.0)]
    out = [s for s in nc.all_scores(samples, 1.0) if s.victim == "v"]
    assert len(out) == 1 and out[0].tick == 0.0


def test_bad_sample_names_the_problem():
    with pytest.raises(ValueError, match="sample 1"):
        nc.all_scores([{"vm": "v"}], 1.0)


def test_shipped_golden_file_is_current():
    """data/contention-small/nowcast.golden.json is what golden_nowcast writes now."""
    path = os.path.join(golden_nowcast.DEFAULT_DATA, "nowcast.golden.json")
    with open(path) as f:
        shipped = json.load(f)
    fresh = golden_nowcast.golden(golden_nowcast.DEFAULT_DATA)
    assert shipped["window_seconds"] == 5
    assert len(shipped["scores"]) == len(fresh["scores"])
    for a, b in zip(shipped["scores"], fresh["scores"]):
        assert a == b or all(math.isclose(a[k], b[k]) if isinstance(a[k], float) else a[k] == b[k] for k in a)
