"""Slowdown episodes, alarms, lead times and false alarms on 1 s labels.

Why: a scorer exists to raise an alarm when a neighbour starts to hurt a victim, so the
evaluation judges it on events, not only on per-second error. The rules (the same for
every scorer; models/README.md, "Evaluation protocol"):

- The series of one (victim, aggressor) pair is its labelled seconds, split into
  stretches of consecutive seconds (a second without a pair label breaks a stretch).
- **Episode** at threshold θ: a run of at least MIN_EPISODE consecutive seconds with
  label >= θ; its **onset** is its first second. The second before it must be labelled
  and below θ (a stretch that opens above θ shows no onset).
- **Alarm**: a second with score >= θ; an alarm run is a maximal run of them.
- **Lead time** of an episode with onset o and last second e: if the score is >= θ at
  o, the alarm run holding o started at d <= o and the lead is o - d, capped at
  LEAD_CAP (anticipation); otherwise the first second d in (o, e] with score >= θ gives
  a negative lead o - d (late). No alarm in [o, e]: missed (lead -inf in percentiles).
- **False alarm**: an alarm run [a0, a1] with no label >= θ in [a0, a1 + LEAD_CAP]
  (seconds of the stretch): nothing it could have announced or covered. The false
  alarm rate is false alarm runs per hour of labelled seconds; the false alarm share is
  false runs / all alarm runs.

A score of NaN (the scorer had nothing for that second) is no alarm. Pure functions
over plain sequences; numpy only for NaN tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

MIN_EPISODE = 5
LEAD_CAP = 10


def stretches(t: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) index ranges of runs of consecutive seconds in t (ascending)."""
    out = []
    i0 = 0
    for i in range(1, len(t) + 1):
        if i == len(t) or t[i] != t[i - 1] + 1:
            if i > i0:
                out.append((i0, i))
            i0 = i
    return out


def _runs(flags: Sequence[bool], lo: int, hi: int) -> list[tuple[int, int]]:
    """[start, end] (inclusive) index ranges of runs of True in flags[lo:hi]."""
    out, start = [], None
    for i in range(lo, hi):
        if flags[i] and start is None:
            start = i
        if not flags[i] and start is not None:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, hi - 1))
    return out


def _above(x: Sequence[float], th: float) -> list[bool]:
    return [(not math.isnan(v)) and v >= th for v in x]


@dataclass(frozen=True)
class Episode:
    onset: int  # second
    end: int  # last second
    lead: float  # seconds, negative = late, -inf = missed


def episodes(t: Sequence[int], y: Sequence[float], th: float) -> list[tuple[int, int]]:
    """(onset index, last index) of every episode (see the module doc)."""
    hi_y = _above(y, th)
    out = []
    for lo, hi in stretches(t):
        for a, b in _runs(hi_y, lo, hi):
            if a == lo:  # no labelled second below θ just before
                continue
            if b - a + 1 >= MIN_EPISODE:
                out.append((a, b))
    return out


def alarm_runs(t: Sequence[int], s: Sequence[float], th: float) -> list[tuple[int, int]]:
    hi_s = _above(s, th)
    out = []
    for lo, hi in stretches(t):
        out += _runs(hi_s, lo, hi)
    return out


def lead_times(t: Sequence[int], y: Sequence[float], s: Sequence[float], th: float) -> list[Episode]:
    hi_s = _above(s, th)
    out = []
    for a, b in episodes(t, y, th):
        lo = next(lo for lo, hi in stretches(t) if lo <= a < hi)
        if hi_s[a]:
            d = a
            while d - 1 >= lo and hi_s[d - 1] and t[a] - t[d - 1] <= LEAD_CAP:
                d -= 1
            lead = float(t[a] - t[d])
        else:
            d = next((i for i in range(a + 1, b + 1) if hi_s[i]), None)
            lead = float(t[a] - t[d]) if d is not None else -math.inf
        out.append(Episode(t[a], t[b], lead))
    return out


def false_alarms(t: Sequence[int], y: Sequence[float], s: Sequence[float], th: float) -> tuple[int, int]:
    """(false alarm runs, all alarm runs)."""
    hi_y = _above(y, th)
    runs = alarm_runs(t, s, th)
    false = 0
    for a0, a1 in runs:
        lo, hi = next((lo, hi) for lo, hi in stretches(t) if lo <= a0 < hi)
        horizon = t[a1] + LEAD_CAP
        j = a0
        hit = False
        while j < hi and t[j] <= horizon:
            if hi_y[j]:
                hit = True
                break
            j += 1
        false += 0 if hit else 1
    return false, len(runs)


def percentile(xs: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; -inf values sort first
    (missed episodes); NaN for no values."""
    v = sorted(xs)
    if not v:
        return math.nan
    pos = (len(v) - 1) * q / 100.0
    i = int(math.floor(pos))
    j = min(i + 1, len(v) - 1)
    if math.isinf(v[i]):  # ascending: -inf (missed) first
        return v[i]
    return v[i] + (v[j] - v[i]) * (pos - i)


def summarise(leads: Sequence[float], false: int, runs: int, seconds: float) -> dict:
    """Pooled event metrics: lead median and p95 (the lead that 95% of episodes meet or
    beat, i.e. the 5th percentile of lead; negative = late), false alarms per hour."""
    n = len(leads)
    missed = sum(1 for x in leads if math.isinf(x))
    return {
        "episodes": n,
        "missed": missed,
        "lead_median_s": percentile(leads, 50) if n else None,
        "lead_p95_s": percentile(leads, 5) if n else None,
        "alarm_runs": runs,
        "false_alarms": false,
        "false_alarm_share": false / runs if runs else None,
        "false_alarms_per_hour": false / (seconds / 3600.0) if seconds > 0 else None,
        "hours": seconds / 3600.0,
    }
