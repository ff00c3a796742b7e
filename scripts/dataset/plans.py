"""What the recorder runs: the experiment matrix and the timeline of one experiment.

Why one victim per experiment: a label is the victim's speed against its solo speed
at the same duty level and thread count, measured alone before and after the run. That
needs the victim to hold a few known duty levels; its neighbours (the aggressors) are
free to follow their family's schedule. Every neighbour is an aggressor of the victim,
never labelled itself.

Timeline of one experiment, in seconds from its start (all workloads share second 0):

    [0, C)            calibration before: the victim alone at each of its duty levels
                      in turn (CAL s each: settle, then measured), neighbours idle
    [C, C + body)     the body: neighbours follow the family's schedule, the victim
                      holds its levels (cpu victims: 1.0 then 0.5, switching once, away
                      from any neighbour's change)
    [C + body, end)   calibration after: the same as before, in the same order

Layouts (CPU ids on an n-CPU host, last = n - 1): `shared-one` everything on the last
CPU; `shared-all` everything on all CPUs; `disjoint` the victim on CPU 0, neighbours on
the last; `partial` the victim on all CPUs, neighbours on the last. Standard library
only; pure given the random generator, so a seed replans the same experiments.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import schedules as sc
import traces as tr

# kind -> coarse workload label written to the collector's inventory
KINDS = {"cpu": "cpu", "cache": "cache", "membw": "membw", "fsync": "fsync", "ctxsw": "ctxsw", "vm": "cpu"}
VICTIM_LEVELS = {"cpu": [1.0, 0.5]}  # the rest: [1.0]
CAL_SECONDS = 5.0  # one calibration segment: SETTLE_SECONDS not measured, then measured
SETTLE_SECONDS = 1.0
CAL_SECONDS_VM = 8.0  # a TCG guest's progress lines are coarser: longer segments
SETTLE_SECONDS_VM = 2.0
TRACE_POINTS_PER_SECOND = 4.0  # a trace day (288 points) in 72 s
VICTIM_CHANGE_CLEARANCE = 3.0  # s between the victim's level change and a neighbour's
OVERHEAD_SECONDS = 10.0  # idle check, collector start, start delay, teardown (measured 9-10 s)
OVERHEAD_SECONDS_VM = 20.0  # the same with a lab guest's boot and shutdown (measured 20 s; its first build downloads a kernel)
LAB_VM = "dsvm-1"


@dataclass(frozen=True)
class Spec:
    family: str
    victim: str  # workload kind, or "vm" for a lab VM
    threads: int
    neighbours: tuple  # ((kind, threads), ...)
    layout: str
    body: float  # seconds


def _s(family, victim, threads, neighbours, layout, body):
    return Spec(family, victim, threads, tuple(neighbours), layout, float(body))


# The full recording: all four families, cpu victims with 1-4 threads, cache, membw and
# fsync victims, three lab VMs; about 37 minutes (estimate_seconds).
FULL = [
    _s("steps", "cpu", 1, [("cpu", 1)], "shared-one", 100),
    _s("steps", "cpu", 2, [("cpu", 1), ("cpu", 2)], "shared-one", 100),
    _s("steps", "cpu", 4, [("cpu", 2)], "shared-all", 100),
    _s("steps", "cache", 1, [("cpu", 1), ("membw", 1)], "shared-one", 100),
    _s("steps", "fsync", 1, [("cpu", 2)], "shared-one", 100),
    _s("ramps", "cpu", 3, [("cpu", 2)], "shared-all", 110),
    _s("ramps", "membw", 1, [("cpu", 1)], "shared-one", 110),
    _s("recurring", "cpu", 1, [("cpu", 1), ("cpu", 1)], "shared-one", 180),
    _s("recurring", "cpu", 2, [("cpu", 2)], "partial", 180),
    _s("trace", "cpu", 1, [("cpu", 1)], "shared-one", 144),
    _s("trace", "cpu", 2, [("cpu", 2)], "shared-all", 144),
    _s("trace", "cpu", 1, [("cpu", 1)], "disjoint", 144),
    _s("steps", "vm", 1, [("cpu", 1)], "shared-one", 90),
    _s("steps", "vm", 1, [("cpu", 1), ("cpu", 1)], "shared-one", 90),
    _s("steps", "vm", 1, [("cpu", 2)], "shared-all", 90),
]

# A few minutes that exercise every family and label path, for validating the recorder.
SMOKE = [
    _s("steps", "cpu", 2, [("cpu", 1), ("membw", 1)], "shared-one", 50),
    _s("ramps", "cpu", 1, [("cpu", 1)], "shared-one", 50),
    _s("recurring", "cpu", 1, [("cpu", 1)], "shared-one", 130),
    _s("trace", "cpu", 1, [("cpu", 1)], "shared-one", 80),
    _s("steps", "fsync", 1, [("cpu", 1)], "shared-one", 40),
    _s("steps", "cache", 1, [("cpu", 1)], "shared-one", 40),
]

PRESETS = {"full": FULL, "smoke": SMOKE}


def layout_cpus(layout: str, ncpu: int) -> tuple[str, str]:
    """(victim's CPUs, neighbours' CPUs) as kernel CPU lists."""
    last = str(ncpu - 1)
    every = "0" if ncpu == 1 else f"0-{last}"
    if ncpu == 1:
        return "0", "0"
    if layout == "shared-one":
        return last, last
    if layout == "shared-all":
        return every, every
    if layout == "disjoint":
        return "0", last
    if layout == "partial":
        return every, last
    raise ValueError(f"unknown layout {layout!r} (shared-one, shared-all, disjoint, partial)")


def cal_seconds(kind: str) -> tuple[float, float]:
    return (CAL_SECONDS_VM, SETTLE_SECONDS_VM) if kind == "vm" else (CAL_SECONDS, SETTLE_SECONDS)


def victim_levels(kind: str) -> list[float]:
    return list(VICTIM_LEVELS.get(kind, [1.0]))


def plan_all(specs: list, seed: int, ncpu: int, trace: tr.Trace | None) -> list[dict]:
    """Plans of a preset, in order; trace experiments replay different VMs."""
    out, slot = [], 0
    for i, s in enumerate(specs):
        out.append(plan(s, i, seed, ncpu, trace, slot))
        slot += s.family == "trace"
    return out


def estimate_seconds(spec: Spec) -> float:
    cal, _ = cal_seconds(spec.victim)
    over = OVERHEAD_SECONDS_VM if spec.victim == "vm" else OVERHEAD_SECONDS
    return spec.body + 2 * cal * len(victim_levels(spec.victim)) + over


@dataclass
class Neighbours:
    schedules: list  # per neighbour, body-relative
    season_seconds: float | None = None
    trace: dict | None = None
    notes: dict = field(default_factory=dict)


def neighbour_schedules(spec: Spec, rng: random.Random, trace: tr.Trace | None, slot: int = 0) -> Neighbours:
    n, body = len(spec.neighbours), spec.body
    if spec.family == "steps":
        return Neighbours(sc.staggered_steps(rng, body, n))
    if spec.family in ("ramps", "trace") and n != 1:
        raise ValueError(f"{spec.family}: one neighbour only (a second one would change at the same "
                         f"time, and pair labels need one change at a time)")
    if spec.family == "ramps":
        return Neighbours([sc.ramps(rng, body)])
    if spec.family == "recurring":
        if n > 2:
            raise ValueError("recurring: at most 2 neighbours (their bursts interleave)")
        return Neighbours(sc.recurring_group(rng, body, n), season_seconds=sc.RECURRING_PERIOD)
    if spec.family == "trace":
        if trace is None:
            raise ValueError("trace: no trace loaded")
        points = int(body * TRACE_POINTS_PER_SECOND) + 1
        ex = tr.excerpt(trace, random.Random(f"trace-{rng.random()}"), points, slot)
        return Neighbours([sc.from_trace(ex.values, TRACE_POINTS_PER_SECOND)],
                          season_seconds=tr.POINTS_PER_DAY / TRACE_POINTS_PER_SECOND,
                          trace={"file": trace.path.split("/")[-1], "column": ex.column,
                                 "first_row": ex.first_row, "points": points,
                                 "points_per_second": TRACE_POINTS_PER_SECOND})
    raise ValueError(f"unknown family {spec.family!r} ({', '.join(sc.FAMILIES)})")


def victim_change_time(body_start: float, body: float, changes: list[float]) -> float:
    """The victim's one level change: the time nearest the middle of the body that is
    at least VICTIM_CHANGE_CLEARANCE s from every neighbour change (the middle itself
    when the neighbours change continuously and no time is clear)."""
    mid = body_start + body / 2
    clear = VICTIM_CHANGE_CLEARANCE
    for off in [x / 2 for x in range(0, int(body))]:
        for t in (mid + off, mid - off):
            if body_start + 10 <= t <= body_start + body - 10 and all(abs(t - c) >= clear for c in changes):
                return round(t, 2)
    return round(mid, 2)


def plan(spec: Spec, idx: int, seed: int, ncpu: int, trace: tr.Trace | None = None, slot: int = 0) -> dict:
    """The experiment.json of one experiment before it runs; `slot` numbers the trace
    experiments of a preset, so that each replays another VM."""
    rng = random.Random(f"{seed}-{idx}")
    levels = victim_levels(spec.victim)
    cal, settle = cal_seconds(spec.victim)
    c0 = cal * len(levels)
    body_end = c0 + spec.body
    end = body_end + cal * len(levels)
    v_cpus, n_cpus = layout_cpus(spec.layout, ncpu)
    nb = neighbour_schedules(spec, rng, trace, slot)

    calibration = []
    for phase, t0 in (("before", 0.0), ("after", body_end)):
        for i, d in enumerate(levels):
            calibration.append({"phase": phase, "duty": d, "start": t0 + i * cal,
                                "end": t0 + (i + 1) * cal, "settle": settle})

    n_scheds, changes = [], {}
    names = [f"n{i}-{k}" for i, (k, _) in enumerate(spec.neighbours)]
    for name, body_sched in zip(names, nb.schedules):
        s = sc.shift(body_sched, c0)
        pts = [(0.0, 0.0), (c0, 0.0)] + s + [(body_end, s[-1][1]), (body_end, 0.0)]
        n_scheds.append(sc.dedupe(pts))
        changes[name] = [round(t + c0, 2) for t in sc.change_times(body_sched)]

    # The victim: its levels in calibration, first level then the second in the body.
    v_pts = []
    for seg in calibration:
        if seg["phase"] == "before":
            v_pts += [(seg["start"], seg["duty"]), (seg["end"], seg["duty"])]
    body_levels = [(c0, levels[0])]
    if len(levels) > 1:
        t_switch = victim_change_time(c0, spec.body, [t for ts in changes.values() for t in ts])
        body_levels.append((t_switch, levels[1]))
    for i, (t, d) in enumerate(body_levels):
        t_next = body_levels[i + 1][0] if i + 1 < len(body_levels) else body_end
        v_pts += [(t, d), (t_next, d)]
    for seg in calibration:
        if seg["phase"] == "after":
            v_pts += [(seg["start"], seg["duty"]), (seg["end"], seg["duty"])]
    v_pts.append((end, 0.0))

    victim_name = LAB_VM if spec.victim == "vm" else f"v-{spec.victim}"
    workloads = [{"vm": victim_name, "role": "victim", "kind": spec.victim, "threads": spec.threads,
                  "cpus": v_cpus, "duty_levels": levels,
                  "schedule": [list(p) for p in sc.dedupe(v_pts)]}]
    for name, (kind, threads), sched in zip(names, spec.neighbours, n_scheds):
        workloads.append({"vm": name, "role": "neighbour", "kind": kind, "threads": threads,
                          "cpus": n_cpus, "schedule": [list(p) for p in sched]})
    return {
        "id": f"e{idx:03d}",
        "format": 2,
        "seed": seed,
        "family": spec.family,
        "layout": spec.layout,
        "tick_seconds": 1,
        "seconds": end,
        "victim": victim_name,
        "victim_kind": spec.victim,
        "victim_threads": spec.threads,
        "body": [c0, body_end],
        "calibration": calibration,
        "changes": changes,
        "season_seconds": nb.season_seconds,
        "trace": nb.trace,
        "workloads": workloads,
        "disk": "ram",
        # Legacy (scripts/model/dataset.py, train_lstm.py): the victim's solo windows at
        # full duty, and the old held-out rule.
        "held_out": spec.victim in ("cache", "ctxsw"),
    }
