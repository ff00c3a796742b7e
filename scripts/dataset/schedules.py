"""Duty-cycle schedules of the recorder's neighbours, one generator per schedule family.

Why families: a scorer that only ever sees random steps can look good at detection and
say nothing about gradual onsets or recurring load, and vice versa; the evaluation
reports each family on its own (docs/dataset.md, "Schedule families"):

- `steps`: the duty jumps between levels and holds 6-20 s (the old recorder's steps,
  without ramps).
- `ramps`: linear ramps of 10-60 s between levels, with holds of 5-15 s between them.
- `recurring`: idle, then a burst every 60 ± 5 s (each burst 10-20 s at one duty).
- `trace`: the duty follows a real VM's CPU utilisation (scripts/dataset/traces.py),
  time compressed to several trace points per second.

A schedule is a list of (second, duty) points, seconds ascending, duty linear between
points and held after the last (two points at one second make a step): the format of
`dataset-workload --schedule`. Times here are relative to the start of the body; the
plan shifts them. Several neighbours of one experiment never change at the same moment
(`staggered_steps`, `recurring` offsets), so a change of the victim's slowdown belongs to
one neighbour. Standard library only; every function is pure given its `random.Random`.
"""

from __future__ import annotations

import random
from typing import Sequence

Schedule = list  # [(t, duty), ...]

DUTIES = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]
# Idle is drawn often, so multi-neighbour experiments have stretches with one neighbour.
DUTY_WEIGHTS = [3, 1, 2, 2, 2, 3]
FAMILIES = ("steps", "ramps", "recurring", "trace")
RECURRING_PERIOD = 60.0
RECURRING_JITTER = 5.0
MIN_CHANGE_GAP = 4.0  # seconds between two neighbours' changes (staggered steps)


def _draw(rng: random.Random, exclude: float | None = None) -> float:
    while True:
        d = rng.choices(DUTIES, DUTY_WEIGHTS)[0]
        if d != exclude:
            return d


def duty_at(schedule: Sequence[Sequence[float]], t: float) -> float:
    """The duty at second t, as dataset-workload computes it (linear between points,
    the later point of a step from the step's second on, held after the last)."""
    if not schedule:
        return 1.0
    if t < schedule[0][0]:
        return float(schedule[0][1])
    for i in range(1, len(schedule)):
        t1, d1 = schedule[i]
        if t < t1:
            t0, d0 = schedule[i - 1]
            span = t1 - t0
            f = (t - t0) / span if span > 0 else 1.0
            return d0 + f * (d1 - d0)
    return float(schedule[-1][1])


def max_duty(schedule: Sequence[Sequence[float]], t0: float, t1: float) -> float:
    """The largest duty over [t0, t1]: a piecewise-linear function peaks at an end or
    at a point of the schedule."""
    ts = [t0, t1] + [p[0] for p in schedule if t0 <= p[0] <= t1]
    best = max(duty_at(schedule, t) for t in ts)
    # a step at t inside the span: the value just before it counts too
    for i in range(1, len(schedule)):
        if t0 < schedule[i][0] <= t1 and schedule[i][0] == schedule[i - 1][0]:
            best = max(best, float(schedule[i - 1][1]))
    return best


def change_times(schedule: Sequence[Sequence[float]]) -> list[float]:
    """Seconds at which the duty starts to change (steps, and starts of ramps)."""
    out = []
    for i in range(1, len(schedule)):
        (t0, d0), (t1, d1) = schedule[i - 1], schedule[i]
        if d1 != d0 and (not out or out[-1] != t0):
            out.append(float(t0))
    return out


def steps(rng: random.Random, length: float) -> Schedule:
    """One neighbour's random steps over [0, length]."""
    return staggered_steps(rng, length, 1)[0]


def staggered_steps(rng: random.Random, length: float, n: int) -> list[Schedule]:
    """Random steps of n neighbours where only one changes at a time: each change
    picks one neighbour and a new duty for it; changes are 6-20 s apart for a single
    neighbour, and at least MIN_CHANGE_GAP s apart across neighbours."""
    duty = [_draw(rng) for _ in range(n)]
    pts: list[Schedule] = [[(0.0, d)] for d in duty]
    t = 0.0
    while True:
        hold = rng.uniform(6, 20) if n == 1 else rng.uniform(MIN_CHANGE_GAP, 12)
        t = round(t + hold, 2)
        if t >= length:
            break
        i = rng.randrange(n)
        new = _draw(rng, exclude=duty[i])
        pts[i] += [(t, duty[i]), (t, new)]
        duty[i] = new
    for i in range(n):
        pts[i].append((float(length), duty[i]))
    return [dedupe(p) for p in pts]


def ramps(rng: random.Random, length: float) -> Schedule:
    """Holds of 5-15 s joined by linear ramps of 10-60 s to a new level."""
    duty = _draw(rng)
    pts = [(0.0, duty)]
    t = 0.0
    while t < length:
        t = min(round(t + rng.uniform(5, 15), 2), length)
        pts.append((t, duty))
        if t >= length:
            break
        new = _draw(rng, exclude=duty)
        ramp = rng.uniform(10, 60)
        t_end = round(t + ramp, 2)
        if t_end > length:  # cut the ramp where the body ends, at its interpolated duty
            new = duty + (new - duty) * (length - t) / ramp
            t_end = length
        pts.append((t_end, new))
        duty, t = new, t_end
    return dedupe(pts)


def recurring(rng: random.Random, length: float, offset: float | None = None,
              duty: float | None = None) -> Schedule:
    """Idle, with a burst every RECURRING_PERIOD ± RECURRING_JITTER s: each burst
    lasts 10-20 s at `duty` (drawn once per neighbour from 0.5-1 unless given). The
    first burst starts at `offset` (drawn 5-15 s unless given)."""
    if duty is None:
        duty = rng.choice([0.5, 0.75, 1.0])
    if offset is None:
        offset = rng.uniform(5, 15)
    base_len = rng.uniform(10, 20)
    pts = [(0.0, 0.0)]
    k = 0
    while True:
        start = round(offset + k * RECURRING_PERIOD + (rng.uniform(-RECURRING_JITTER, RECURRING_JITTER) if k else 0.0), 2)
        end = round(start + base_len + rng.uniform(-1.5, 1.5), 2)
        if start >= length:
            break
        end = min(end, length)
        pts += [(start, 0.0), (start, duty), (end, duty), (end, 0.0)]
        k += 1
    pts.append((float(length), 0.0))
    return dedupe(pts)


def recurring_group(rng: random.Random, length: float, n: int) -> list[Schedule]:
    """n recurring neighbours whose bursts interleave: neighbour i starts i / n of a
    period later, so bursts (at most 21.5 s, 60 ± 5 s apart) never overlap for n <= 2."""
    first = rng.uniform(5, 12)
    return [recurring(rng, length, offset=first + i * RECURRING_PERIOD / n) for i in range(n)]


def from_trace(values: Sequence[float], points_per_second: float) -> Schedule:
    """A replay: trace point j (CPU % of allocated cores) becomes duty values[j] / 100
    at second j / points_per_second, clamped to 0-1."""
    if points_per_second <= 0:
        raise ValueError(f"points_per_second must be > 0, got {points_per_second}")
    return dedupe([(j / points_per_second, min(1.0, max(0.0, v / 100.0))) for j, v in enumerate(values)])


def shift(schedule: Sequence[Sequence[float]], by: float) -> Schedule:
    return [(round(t + by, 3), d) for t, d in schedule]


def dedupe(pts: Sequence[Sequence[float]]) -> Schedule:
    """Rounded (2 decimals for time, 4 for duty), ascending times, no repeated point and
    no run of three points at one second (a step needs two)."""
    out: Schedule = []
    for t, d in pts:
        p = (round(float(t), 2), round(float(d), 4))
        if out and p == out[-1]:
            continue
        if out and p[0] < out[-1][0]:
            p = (out[-1][0], p[1])
        if len(out) >= 2 and out[-1][0] == out[-2][0] == p[0]:
            out[-1] = p
            continue
        out.append(p)
    return out
