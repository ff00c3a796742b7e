"""1 s labels against hand-computed values (scripts/dataset/labels.py)."""

import pytest

import labels as lb


def rate(t, ops, busy, vm="v"):
    return {"timestamp_ms": 0, "vm": vm, "t": t + 0.001, "ops": ops, "busy_seconds": busy}


CAL = [{"phase": "before", "duty": 1.0, "start": 0, "end": 4, "settle": 1},
       {"phase": "after", "duty": 1.0, "start": 14, "end": 18, "settle": 1}]


def meta(neighbours):
    return {"id": "e", "victim": "v", "start_ms": 1_000_000, "body": [4, 14], "calibration": CAL,
            "workloads": [{"vm": "v", "kind": "cpu", "role": "victim", "threads": 1,
                           "schedule": [(0, 1.0), (18, 1.0), (18, 0.0)]}]
            + [{"vm": n, "kind": "cpu", "role": "neighbour", "threads": 1, "schedule": s}
               for n, s in neighbours.items()]}


def test_solo_speed_before_after_and_drift():
    # before: seconds 2-4 (second 1 is the settle) at 100 ops/s; after: 15-18... at 110
    rs = [rate(k, 50 if k == 1 else 100, 1.0) for k in range(1, 5)]
    rs += [rate(k, 110, 1.0) for k in range(15, 19)]
    secs = lb.per_second(rs, "v", 0, by_arrival=False)
    (s,) = lb.solo_speeds(secs, CAL, 1)
    assert s["before"] == pytest.approx(100.0)
    assert s["after"] == pytest.approx(110.0)
    assert s["reference"] == pytest.approx(105.0)
    assert s["drift"] == pytest.approx(0.10)


def test_signed_slowdown_and_attribution():
    # a runs from 6 to 10; b from 9 to 12 (overlap 9-10); solo speed 100
    a = [(0, 0.0), (6, 0.0), (6, 1.0), (10, 1.0), (10, 0.0)]
    b = [(0, 0.0), (9, 0.0), (9, 1.0), (12, 1.0), (12, 0.0)]
    rs = [rate(k, 100, 1.0) for k in list(range(1, 5)) + list(range(15, 19))]
    speeds = {5: 100, 6: 100, 7: 60, 8: 60, 9: 50, 10: 40, 11: 70, 12: 70, 13: 104, 14: 100}
    rs += [rate(k, v, 1.0) for k, v in speeds.items()]
    lines, solo = lb.label_lines(meta({"a": a, "b": b}), rs)
    got = {(x["t"], x["aggressor"]): x for x in lines}
    # body seconds 5..14 labelled (second k covers (k-1, k])
    assert sorted({x["t"] for x in lines}) == list(range(5, 15))
    # t=7: a alone active over [5, 7] -> sole, slowdown 40; b idle -> 0
    assert got[(7, "a")]["attribution"] == "sole" and got[(7, "a")]["slowdown"] == pytest.approx(40.0)
    assert got[(7, "b")]["attribution"] == "idle" and got[(7, "b")]["slowdown"] == 0.0
    # t=10 spans [8, 10]: both active -> no pair label, victim label kept
    assert got[(10, "a")]["attribution"] == "shared" and got[(10, "a")]["slowdown"] is None
    assert got[(10, "a")]["victim_slowdown"] == pytest.approx(60.0)
    # t=11 spans [9, 11]: a ran until 10 -> shared; t=12 spans [10, 12]: a stopped at
    # 10, so b alone -> sole
    assert got[(11, "b")]["attribution"] == "shared"
    assert got[(12, "b")]["attribution"] == "sole" and got[(12, "b")]["slowdown"] == pytest.approx(30.0)
    assert got[(12, "a")]["attribution"] == "idle"
    assert got[(13, "b")]["attribution"] == "sole"
    # faster than solo stays negative (no clamp)
    assert got[(13, "b")]["slowdown"] == pytest.approx(-4.0)


def test_victim_duty_change_is_not_labelled():
    m = meta({"a": [(0, 0.0)]})
    m["workloads"][0]["schedule"] = [(0, 1.0), (9, 1.0), (9, 0.5), (18, 0.5), (18, 0.0)]
    m["calibration"] = CAL + [{"phase": "before", "duty": 0.5, "start": 0, "end": 4, "settle": 1}]
    rs = [rate(k, 100, 1.0) for k in range(1, 19)]
    lines, _ = lb.label_lines(m, rs)
    ts = {x["t"] for x in lines}
    # seconds 9, 10 (their spans [7, 9] and [8, 10] contain the switch at 9) are left out
    assert 8 in ts and 9 not in ts and 10 not in ts and 11 in ts


def test_idle_victim_second_not_labelled():
    rs = [rate(k, 100, 1.0) for k in list(range(1, 5)) + list(range(15, 19))]
    rs += [rate(7, 0, 0.01)]
    lines, _ = lb.label_lines(meta({"a": [(0, 0.0)]}), rs)
    assert lines == []


def test_summary_flags_drift_over_5_percent():
    solo = [{"duty": 1.0, "threads": 1, "before": 100.0, "after": 106.0, "reference": 103.0, "drift": 0.06}]
    s = lb.summary([], solo)
    assert s["drift_flagged"] and s["drift_max"] == 0.06
    solo[0].update(after=104.0, drift=0.04)
    assert not lb.summary([], solo)["drift_flagged"]
    solo[0].update(after=None, drift=None)  # an incomplete calibration is flagged too
    assert lb.summary([], solo)["drift_flagged"]


def test_lab_vm_lines_placed_by_arrival():
    rs = [{"timestamp_ms": 1_000_000 + 3_020, "vm": "dsvm-1", "t": 57.3, "ops": 10, "busy_seconds": 1.0}]
    assert lb.per_second(rs, "dsvm-1", 1_000_000, by_arrival=True) == {3: (10.0, 1.0)}


def test_foreign_load_joined_per_second():
    at = lb.foreign_at([{"timestamp_ms": 2_000, "foreign_cores": 0.5},
                        {"timestamp_ms": 3_100, "foreign_cores": 1.5}])
    assert at(2_000) == 0.5 and at(3_000) == 1.5 and at(5_000) is None


def test_every_planned_experiment_labels():
    """Each experiment of the full preset, fed constant progress at its solo speed, gets
    labels near 0 for most of its body, and one-neighbour runs only `sole` ones."""
    import plans
    import schedules as sc
    import traces as tr

    trace = tr.Trace("mem", {f"vm{i}": [20.0, 60.0] * 2000 for i in range(3)})
    for p in plans.plan_all(plans.FULL, 14, 2, trace):
        p = dict(p, start_ms=1_000_000)
        v = p["workloads"][0]
        rates = []
        for k in range(1, int(p["seconds"]) + 1):
            d = sc.duty_at(v["schedule"], k - 0.5)
            if v["kind"] == "vm":
                rates.append({"timestamp_ms": 1_000_000 + 1000 * k + 30, "vm": v["vm"], "t": 100 + k,
                              "ops": 1000.0, "busy_seconds": 1.0})
            else:
                rates.append(rate(k, 1000.0 * d, d, vm=v["vm"]))
        lines, solo = lb.label_lines(p, rates)
        body = p["body"][1] - p["body"][0]
        seconds = {x["t"] for x in lines}
        assert len(seconds) >= 0.8 * body, p["id"]
        assert all(s["drift"] == pytest.approx(0.0) for s in solo), p["id"]
        assert all(abs(x["victim_slowdown"]) < 1e-9 for x in lines), p["id"]
        if len(p["workloads"]) == 2:
            assert {x["attribution"] for x in lines} == {"sole"}, p["id"]
        else:
            assert {"sole", "idle"} <= {x["attribution"] for x in lines}, p["id"]
