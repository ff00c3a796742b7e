"""Schedule families and experiment plans (scripts/dataset/schedules.py, plans.py)."""

import random

import pytest

import plans
import schedules as sc


def test_duty_at_matches_the_workload():
    s = [(0, 0.0), (10, 0.0), (10, 1.0), (20, 0.5)]
    assert sc.duty_at(s, 5) == 0.0
    assert sc.duty_at(s, 10) == 1.0  # the step's later point from its second on
    assert sc.duty_at(s, 15) == pytest.approx(0.75)
    assert sc.duty_at(s, 99) == 0.5


def test_max_duty_sees_the_value_before_a_step():
    s = [(0, 1.0), (10, 1.0), (10, 0.0)]
    assert sc.max_duty(s, 9.5, 12) == 1.0
    assert sc.max_duty(s, 10.5, 12) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_staggered_steps_change_one_neighbour_at_a_time(seed):
    rng = random.Random(seed)
    ss = sc.staggered_steps(rng, 100, 2)
    changes = sorted((t, i) for i, s in enumerate(ss) for t in sc.change_times(s))
    for (t0, _), (t1, _) in zip(changes, changes[1:]):
        assert t1 - t0 >= sc.MIN_CHANGE_GAP - 0.01
    for s in ss:  # steps only, no ramps
        for (t0, d0), (t1, d1) in zip(s, s[1:]):
            assert d0 == d1 or t0 == t1


@pytest.mark.parametrize("seed", range(5))
def test_ramps_last_10_to_60_s(seed):
    s = sc.ramps(random.Random(seed), 300)
    for (t0, d0), (t1, d1) in zip(s, s[1:]):
        if d0 != d1 and t1 < 300:
            assert 10 - 0.01 <= t1 - t0 <= 60 + 0.01


@pytest.mark.parametrize("seed", range(5))
def test_recurring_bursts_every_60_plus_minus_5(seed):
    ss = sc.recurring_group(random.Random(seed), 400, 2)
    for s in ss:
        starts = [t1 for (t0, d0), (t1, d1) in zip(s, s[1:]) if d0 == 0 and d1 > 0 and t0 == t1]
        assert len(starts) >= 6
        for a, b in zip(starts, starts[1:]):
            assert 50 - 0.01 <= b - a <= 70 + 0.01
    # interleaved: never both active at once
    for t in range(0, 400):
        assert not (sc.duty_at(ss[0], t + 0.5) > 0 and sc.duty_at(ss[1], t + 0.5) > 0)


def test_trace_replay_one_point_per_quarter_second():
    s = sc.from_trace([10.0, 50.0, 120.0, -1.0], 4.0)
    assert s == [(0.0, 0.1), (0.25, 0.5), (0.5, 1.0), (0.75, 0.0)]


def test_plan_timeline_and_victim_levels():
    spec = plans.Spec("steps", "cpu", 2, (("cpu", 1), ("membw", 1)), "shared-one", 60)
    p = plans.plan(spec, 3, 7, 2)
    assert p["id"] == "e003" and p["family"] == "steps"
    assert p["body"] == [10.0, 70.0] and p["seconds"] == 80.0
    v = p["workloads"][0]
    assert v["role"] == "victim" and v["threads"] == 2 and v["cpus"] == "1"
    # calibration: alone at 1.0 then 0.5, before and after
    assert [(c["phase"], c["duty"], c["start"], c["end"]) for c in p["calibration"]] == [
        ("before", 1.0, 0.0, 5.0), ("before", 0.5, 5.0, 10.0),
        ("after", 1.0, 70.0, 75.0), ("after", 0.5, 75.0, 80.0)]
    for w in p["workloads"][1:]:
        assert sc.max_duty(w["schedule"], 0, 10) == 0 and sc.max_duty(w["schedule"], 70, 80) == 0
    assert sc.duty_at(v["schedule"], 2) == 1.0 and sc.duty_at(v["schedule"], 7) == 0.5
    assert sc.duty_at(v["schedule"], 11) == 1.0 and sc.duty_at(v["schedule"], 69) == 0.5
    # the victim's switch is clear of every neighbour change
    switch = [t for (t, d0), (_, d1) in zip(v["schedule"], v["schedule"][1:]) if 10 < t < 70 and d0 != d1]
    assert len(switch) == 1
    for ts in p["changes"].values():
        assert all(abs(switch[0] - t) >= plans.VICTIM_CHANGE_CLEARANCE for t in ts)


def test_plan_is_reproducible_per_experiment():
    spec = plans.FULL[0]
    assert plans.plan(spec, 0, 14, 2) == plans.plan(spec, 0, 14, 2)
    assert plans.plan(spec, 0, 14, 2) != plans.plan(spec, 0, 15, 2)


def test_layouts():
    assert plans.layout_cpus("shared-one", 2) == ("1", "1")
    assert plans.layout_cpus("disjoint", 2) == ("0", "1")
    assert plans.layout_cpus("partial", 4) == ("0-3", "3")
    with pytest.raises(ValueError, match="unknown layout"):
        plans.layout_cpus("diagonal", 2)


def test_full_preset_covers_the_issue():
    fams = {s.family for s in plans.FULL}
    assert fams == {"steps", "ramps", "recurring", "trace"}
    assert {s.threads for s in plans.FULL if s.victim == "cpu"} == {1, 2, 3, 4}
    assert {"cache", "membw", "fsync", "vm"} <= {s.victim for s in plans.FULL}
    assert sum(plans.estimate_seconds(s) for s in plans.FULL) <= 40 * 60


def test_trace_spans_that_contend_and_distinct_columns():
    import statistics

    import traces as tr

    cols = {"flat": [5.0] * 600, "busy": [20.0, 60.0] * 300}
    t = tr.Trace("mem", cols)
    assert t.spans(289) == {"busy": [0, 288]}
    ex = tr.excerpt(t, random.Random(1), 289)
    assert ex.column == "busy" and ex.first_row in (0, 288) and len(ex.values) == 289
    assert statistics.fmean(ex.values) >= tr.MIN_MEAN
    with pytest.raises(ValueError, match="no span"):
        tr.excerpt(tr.Trace("mem", {"flat": [5.0] * 600}), random.Random(1), 289)


def test_trace_experiments_of_a_preset_replay_different_vms():
    import traces as tr

    cols = {f"vm{i}": [20.0, 60.0] * 600 for i in range(5)}
    specs = [plans.Spec("trace", "cpu", 1, (("cpu", 1),), "shared-one", 30)] * 3
    ps = plans.plan_all(specs, 14, 2, tr.Trace("mem", cols))
    assert len({p["trace"]["column"] for p in ps}) == 3
    assert all(p["season_seconds"] == 72 for p in ps)
