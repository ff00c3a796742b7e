"""Scorers, their alignment to 1 s labels, external files and the whole protocol on a
synthetic run whose answers are known (scorers.py, evaluate.py)."""

import json
import math

import numpy as np
import pytest

import evaluate
import runs as rn
import scorers as sc

START = 1_000_000


def sample(ts, vm, run=0.5, wait=0.5, by=(), preempted=None):
    pre = sum(s for _, s in by) if preempted is None else preempted
    return {"timestamp_ms": ts, "vm": vm, "interval_seconds": 1.0, "cpu": {"usage_seconds": run},
            "runqueue": {"wait_seconds": wait, "preempted_seconds": pre},
            "preempted_by": [{"by": b, "count": 1, "seconds": s} for b, s in by]}


def synthetic_run(taken, labels, season=None, family="steps", sample_offset_ms=200):
    """A victim v and aggressor a; in second k (1-based) a takes taken[k-1] of v's 1 s
    of runnable time; the pair label of second k is labels[k-1]."""
    n = len(taken)
    samples = []
    for k in range(1, n + 1):
        ts = START + 1000 * k + sample_offset_ms
        x = taken[k - 1]
        samples.append(sample(ts, "v", run=1.0 - x, wait=x, by=[("a", x)] if x else []))
        samples.append(sample(ts, "a", run=1.0, wait=0.0))
    t = np.arange(1, n + 1)
    pair = rn.Pair("v", "a", t, START + 1000 * t, np.array(labels, dtype=float),
                   np.array(labels, dtype=float), ["sole"] * n)
    meta = {"family": family, "victim": "v", "victim_kind": "cpu", "victim_threads": 1,
            "start_ms": START, "end_ms": START + 1000 * (n + 2), "tick_seconds": 1,
            "season_seconds": season, "layout": "shared-one",
            "workloads": [{"vm": "v", "role": "victim", "kind": "cpu", "threads": 1},
                          {"vm": "a", "role": "neighbour", "kind": "cpu", "threads": 1}]}
    return rn.Run("e000", "/nonexistent", meta, samples, [pair])


def test_align_as_of_with_tolerance_and_staleness():
    pair = rn.Pair("v", "a", np.array([1, 2, 3, 20]), START + 1000 * np.array([1, 2, 3, 20]),
                   np.zeros(4), np.zeros(4), [""] * 4)
    raw = {("v", "a"): (np.array([START + 1400, START + 1600, START + 3000]), np.array([10.0, 20.0, 30.0]))}
    got = sc.align(pair, raw)
    # second 1 ends at START+1000: the score of START+1400 (within 500 ms) counts
    # second 2 ends at START+2000: latest <= START+2500 is START+1600
    # second 20: last score 17 s old -> NaN
    assert got[:3].tolist() == [10.0, 20.0, 30.0] and math.isnan(got[3])


def test_nowcast_follows_what_the_aggressor_took():
    run = synthetic_run([0, 0.5, 0.5, 0, 0, 0, 0], [0] * 7)
    tick = sc.scores_for(run, "nowcast_tick", sc.BUILTIN["nowcast_tick"])[("v", "a")]
    smooth = sc.scores_for(run, "nowcast", sc.BUILTIN["nowcast"])[("v", "a")]
    assert tick.tolist() == [0, 50, 50, 0, 0, 0, 0]
    assert smooth.tolist() == pytest.approx([0, 25, 100 / 3, 25, 20, 20, 10])


def test_persistence_is_one_tick_late():
    run = synthetic_run([0, 0.5, 0.5, 0, 0], [0] * 5)
    p = sc.scores_for(run, "persistence", sc.persistence)[("v", "a")]
    assert math.isnan(p[0])
    assert p[1:].tolist() == pytest.approx([0, 25, 100 / 3, 25])


def test_seasonal_naive_one_season_back():
    taken = [0.0] * 20
    taken[2] = 1.0  # a burst in second 3
    run = synthetic_run(taken, [0] * 20, season=10)
    s = sc.scores_for(run, "seasonal_naive", sc.seasonal_naive)[("v", "a")]
    now = sc.scores_for(run, "nowcast", sc.BUILTIN["nowcast"])[("v", "a")]
    assert all(math.isnan(x) for x in s[:10])
    assert s[10:].tolist() == pytest.approx(now[:10].tolist())
    assert sc.seasonal_naive(synthetic_run(taken, [0] * 20, season=None)) is None


def test_heuristic_steal_times_share():
    # wait 0.4 of runnable 1.0 (steal 0.4); a caused 0.3 of 0.4 preempted (share 0.75)
    run = synthetic_run([0], [0])
    run.samples = [sample(START + 1200, "v", run=0.6, wait=0.4, by=[("a", 0.3), ("host", 0.1)]),
                   sample(START + 1200, "a", run=1.0, wait=0.0)]
    h = sc.scores_for(run, "heuristic", sc.heuristic)[("v", "a")]
    assert h.tolist() == pytest.approx([30.0])


def test_external_file_by_time_and_by_experiment(tmp_path):
    run = synthetic_run([0, 0.5], [0, 50])
    f = tmp_path / "ext.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in [
        {"timestamp_ms": START + 1200, "victim": "v", "aggressor": "a", "score": 1.0},
        {"timestamp_ms": START + 2200, "victim": "v", "aggressor": "a", "score": 2.0},
        {"timestamp_ms": START + 2200, "victim": "a", "aggressor": "v", "score": 9.0},
        {"timestamp_ms": START - 99_000, "victim": "v", "aggressor": "a", "score": 7.0},  # another run
        {"experiment": "e999", "timestamp_ms": START + 1300, "victim": "v", "aggressor": "a", "score": 8.0},
    ]) + "\n")
    ext = sc.External(str(f))
    assert sc.scores_for(run, "x", ext)[("v", "a")].tolist() == [1.0, 2.0]
    assert ext.matched == 2


@pytest.mark.parametrize("line,msg", [
    ('{"timestamp_ms": 1, "victim": "v", "aggressor": "a"}', "ext.jsonl:2"),
    ('{"timestamp_ms": 1, "victim": "v", "aggressor": "a", "score": "high"}', "ext.jsonl:2"),
    ("not json", "ext.jsonl:2"),
])
def test_external_bad_line_is_named(tmp_path, line, msg):
    f = tmp_path / "ext.jsonl"
    f.write_text('{"timestamp_ms": 1, "victim": "v", "aggressor": "a", "score": 1}\n' + line + "\n")
    with pytest.raises(ValueError, match=msg):
        sc.External(str(f))


def test_protocol_on_a_known_run():
    # a takes half the victim's runnable time from second 11 to 30; the labels say the
    # same, so the tick nowcast is exact: Spearman 1, MAE 0, one episode at 25, on time
    taken = [0.0] * 10 + [0.5] * 20 + [0.0] * 20
    labels = [0.0] * 10 + [50.0] * 20 + [0.0] * 20
    run = synthetic_run(taken, labels)
    fns = {"nowcast_tick": sc.BUILTIN["nowcast_tick"], "nowcast": sc.BUILTIN["nowcast"],
           "persistence": sc.persistence, "present_1s": None}
    res = evaluate.evaluate([run], fns, thresholds=(25.0,), b=200)
    g = {x["name"]: x for x in res["groups"]}["cpu victims, all families"]
    tick = g["scorers"]["nowcast_tick"]
    assert tick["spearman"]["mean"] == pytest.approx(1.0)
    assert tick["mae"]["mean"] == pytest.approx(0.0)
    e = tick["events"]["25"]
    assert (e["episodes"], e["missed"], e["lead_median_s"], e["false_alarms"]) == (1, 0, 0.0, 0)
    # smoothed: 5 s window, 0.5 taken -> crosses 25 at its 3rd second (30 % > 25): 2 s late
    assert g["scorers"]["nowcast"]["events"]["25"]["lead_median_s"] == -2.0
    # persistence of the smoothed nowcast: one more second late
    assert g["scorers"]["persistence"]["events"]["25"]["lead_median_s"] == -3.0
    assert {t["target"] for t in res["targets"]} >= {"Spearman >= 0.85", "MAE <= 8", "steps @25 detection median <= 2 s"}
    md = evaluate.markdown({**res, "data": "synthetic", "bootstrap": 200}, 25.0)
    assert "| nowcast_tick | 1 | 100% | 1.00 | 0.0 | 1 (0) | 0.0 / 0.0 |" in md


def test_unobservable_classes_are_reported_apart():
    run = synthetic_run([0.5] * 10, [50] * 10)
    run.meta["victim_kind"] = "membw"
    res = evaluate.evaluate([run], {"nowcast": sc.BUILTIN["nowcast"]}, thresholds=(25.0,), b=10)
    names = [g["name"] for g in res["groups"]]
    assert names == ["membw victims"]
    g = res["groups"][0]
    assert g["observable"] is False and "unobservable" in g["note"]
    md = evaluate.markdown({**res, "data": "synthetic", "bootstrap": 10}, 25.0)
    assert "**unobservable on this host (no PMU)" in md
    assert res["targets"] == []  # nothing folded into the cpu targets


def test_alignment_lag_finds_a_shifted_label():
    rng = np.random.default_rng(4)
    taken = list(rng.uniform(0, 0.8, 60))
    labels = [0.0, 0.0] + [100 * x for x in taken[:-2]]  # labels trail by 2 s
    assert sc.alignment_lag(synthetic_run(taken, labels)) == 2
    assert sc.alignment_lag(synthetic_run(taken, [100 * x for x in taken])) == 0
