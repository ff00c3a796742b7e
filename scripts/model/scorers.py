"""Every scorer the evaluation compares, as raw outputs on one run's samples.

Why in one place: the protocol is only fair if every scorer sees the same samples and
is aligned to the labels the same way. A scorer maps a run to, per ordered pair
(victim, aggressor), the scores it would have published and when:
{(victim, aggressor): (timestamp_ms array, score array)}, or None where it does not
apply (seasonal-naive without a season). `align` then gives each labelled second the
latest score published by its end (half a second of tolerance: the collector's tick
that overlaps the second most), or NaN when the last one is older than MAX_STALE_MS.

Scorers (models/README.md, "Evaluation protocol"):
- `nowcast`: the attributed nowcast, smoothed over 5 s (nowcast.py), the agent's default;
- `nowcast_tick`: the same over the last collector tick alone;
- `heuristic`: docs/dataset.md's threshold heuristic (run-queue steal x preemption
  share) over the victim's last 5 s of samples;
- `persistence`: the smoothed nowcast one collector tick earlier (persistence of the
  signal the agent can see);
- `seasonal_naive`: the smoothed nowcast one season earlier (recurring: 60 s; trace:
  one trace day, compressed), for the families that have a season;
- `present_1s`: the victim's measured slowdown of the same second, unattributed (a
  reference from the workload's own progress, which the agent cannot read);
- `nowcast_all`: the smoothed nowcast with every taker counted, "host" too (a
  diagnostic reference: does the telemetry explain the victim's whole slowdown?);
- `lstm`: the shipped ONNX model (onnxruntime) on its 30 s windows;
- external scorers: JSONL files of {"timestamp_ms", "victim", "aggressor", "score"}
  (optionally "experiment"), such as `interference score --replay` prints.
"""

from __future__ import annotations

import json
import math
import os
from typing import Callable

import numpy as np

import features as fx
import nowcast as nc
import runs as rn

MAX_STALE_MS = 10_000
ALIGN_TOLERANCE_MS = 500
WINDOW_SECONDS = 5.0

Raw = dict  # (victim, aggressor) -> (np.ndarray int64 ts, np.ndarray float scores)


def _raw(pairs: dict) -> Raw:
    out = {}
    for k, rows in pairs.items():
        rows.sort()
        out[k] = (np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.float64))
    return out


def _wanted(run: rn.Run) -> set:
    return {(p.victim, p.aggressor) for p in run.pairs}


def _nowcast_rows(run: rn.Run) -> list:
    cache = run.__dict__.setdefault("_nowcast", None)
    if cache is None:
        cache = nc.all_scores(run.samples, run.interval, WINDOW_SECONDS)
        run.__dict__["_nowcast"] = cache
    return cache


def nowcast_scorer(which: str) -> Callable[[rn.Run], Raw]:
    def score(run: rn.Run) -> Raw:
        want = _wanted(run)
        rows: dict = {}
        for s in _nowcast_rows(run):
            if (s.victim, s.aggressor) in want:
                rows.setdefault((s.victim, s.aggressor), []).append(
                    (s.timestamp_ms, s.smoothed if which == "smoothed" else s.tick))
        return _raw(rows)
    return score


def nowcast_all(run: rn.Run) -> Raw:
    """Diagnostic reference: the smoothed nowcast's share with every taker counted (all
    other VMs and "host"), per victim, given to each of its pairs. What the victim's
    whole slowdown would be if the telemetry explained it; not attributable, so never a
    pair score."""
    n = nc.window_count(WINDOW_SECONDS, run.interval)
    rows_by_vm = nc.by_vm(run.samples)
    rows: dict = {}
    for v, a in _wanted(run):
        ss = rows_by_vm.get(v, [])
        for i in range(len(ss)):
            t = nc.window_terms(ss[max(0, i - n + 1) : i + 1], v)
            rows.setdefault((v, a), []).append(
                (int(ss[i]["timestamp_ms"]), min(100.0, sum(t.score(x) for x in t.by))))
    return _raw(rows)


def host_share(run: rn.Run) -> float:
    """Mean share (%) of the victim's runnable time that non-VM tasks ("host") took,
    smoothed nowcast terms, over the run's labelled seconds: how much of the label is
    the machine rather than a neighbour."""
    n = nc.window_count(WINDOW_SECONDS, run.interval)
    v = run.meta["victim"]
    ss = nc.by_vm(run.samples).get(v, [])
    if not ss or not run.pairs:
        return math.nan
    ts = np.array([int(s["timestamp_ms"]) for s in ss], dtype=np.int64)
    sh = np.array([nc.window_terms(ss[max(0, i - n + 1) : i + 1], v).score("host") for i in range(len(ss))])
    vals = align(run.pairs[0], {(run.pairs[0].victim, run.pairs[0].aggressor): (ts, sh)})
    vals = vals[~np.isnan(vals)]
    return float(vals.mean()) if len(vals) else math.nan


def alignment_lag(run: rn.Run, max_lag: int = 5) -> int | None:
    """The shift (s) of the labels against the tick nowcast at which they agree best
    (Spearman over the run's sole seconds, label at t + lag against score at t):
    0 when the recorder's clocks line up; positive when the labels trail the samples.
    A check of the recording, not a metric; None without enough sole seconds."""
    import stats

    raw = nowcast_scorer("tick")(run)
    best, best_r = None, -2.0
    for lag in range(-max_lag, max_lag + 1):
        xs, ys = [], []
        for p in run.pairs:
            s = align(p, raw)
            pos = {int(t): i for i, t in enumerate(p.t)}
            for i, t in enumerate(p.t):
                j = pos.get(int(t) + lag)
                if j is not None and p.attribution[i] == "sole" and not math.isnan(s[i]):
                    xs.append(s[i])
                    ys.append(p.y[j])
        r = stats.spearman(xs, ys) if len(xs) >= 20 else math.nan
        if not math.isnan(r) and r > best_r:
            best, best_r = lag, r
    return best


def persistence(run: rn.Run) -> Raw:
    """The smoothed nowcast published one collector tick before."""
    out = {}
    for k, (ts, sc) in nowcast_scorer("smoothed")(run).items():
        out[k] = (ts[1:], sc[:-1])
    return out


def seasonal_naive(run: rn.Run) -> Raw | None:
    """The smoothed nowcast published one season before (as of that instant)."""
    season = run.season_seconds
    if not season:
        return None
    out = {}
    for k, (ts, sc) in nowcast_scorer("smoothed")(run).items():
        back = ts - int(round(season * 1000)) + ALIGN_TOLERANCE_MS
        idx = np.searchsorted(ts, back, side="right") - 1
        ok = idx >= 0
        out[k] = (ts[ok], sc[idx[ok]])
    return out


def heuristic(run: rn.Run) -> Raw:
    """100 x steal x share over the victim's last ceil(5 / interval) samples:
    steal = wait / (cpu + wait), share = min(1, by[a] / preempted) (docs/dataset.md)."""
    n = nc.window_count(WINDOW_SECONDS, run.interval)
    rows_by_vm = nc.by_vm(run.samples)
    rows: dict = {}
    want = _wanted(run)
    for v, a in want:
        ss = rows_by_vm.get(v, [])
        for i in range(len(ss)):
            g = fx.aggregate(ss[max(0, i - n + 1) : i + 1])
            denom = g.cpu_s + g.wait_s
            steal = g.wait_s / denom if denom > 0 else 0.0
            share = min(1.0, g.by_seconds.get(a, 0.0) / g.preempted_s) if g.preempted_s > 0 else 0.0
            rows.setdefault((v, a), []).append((int(ss[i]["timestamp_ms"]), min(100.0, max(0.0, 100 * steal * share))))
    return _raw(rows)


def lstm_scorer(model_path: str) -> Callable[[rn.Run], Raw]:
    """The shipped LSTM on its own windows (T model ticks of tick_seconds, from the
    sidecar), run by onnxruntime as the old evaluation did."""
    import evaluate_windows as ew

    with open(os.path.splitext(model_path)[0] + ".json", "r", encoding="utf-8") as f:
        sidecar = json.load(f)

    def score(run: rn.Run) -> Raw:
        want = _wanted(run)
        timeline = fx.Timeline.from_samples(run.samples)
        wins = [w for w in fx.iter_windows(timeline, sidecar["window"], sidecar["tick_seconds"])
                if (w.victim, w.aggressor) in want]
        if not wins:
            return {}
        x = np.array([w.features for w in wins], dtype=np.float64)
        xn = ew.normalise(x, sidecar["normalisation"]["mean"], sidecar["normalisation"]["std"])
        s = ew.onnx_scores(model_path, xn)
        rows: dict = {}
        for w, v in zip(wins, s):
            rows.setdefault((w.victim, w.aggressor), []).append((w.end_timestamp_ms, float(v)))
        return _raw(rows)
    return score


class External:
    """Scores read from a JSONL file, assigned to runs by their `experiment` field or,
    without it, by time (the line's timestamp falls within a run, which has that
    victim): one file can hold the replay of a whole dataset."""

    def __init__(self, path: str):
        self.path = path
        self.lines: list[tuple] = []
        try:
            f = open(path, "r", encoding="utf-8")
        except OSError as e:
            raise ValueError(f"external scorer {path}: {e}") from e
        with f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    r = json.loads(line)
                    ts, v, a, s = int(r["timestamp_ms"]), str(r["victim"]), str(r["aggressor"]), float(r["score"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                    raise ValueError(f"{path}:{n}: want {{\"timestamp_ms\", \"victim\", \"aggressor\", "
                                     f"\"score\"}}: {e.__class__.__name__} {e}") from e
                if math.isnan(s):
                    raise ValueError(f"{path}:{n}: score is NaN")
                self.lines.append((r.get("experiment"), ts, v, a, s))
        if not self.lines:
            raise ValueError(f"external scorer {path}: no lines")
        self.matched = 0

    def __call__(self, run: rn.Run) -> Raw:
        want = _wanted(run)
        lo = int(run.meta["start_ms"]) - 5_000  # the collector starts 4 s before second 0
        hi = int(run.meta.get("end_ms") or 2**62)
        rows: dict = {}
        for exp, ts, v, a, s in self.lines:
            if (v, a) not in want:
                continue
            if exp is not None and exp != run.id:
                continue
            if exp is None and not lo <= ts <= hi:
                continue
            rows.setdefault((v, a), []).append((ts, s))
            self.matched += 1
        return _raw(rows)


def present_1s(run: rn.Run):
    """Not a Raw scorer: the victim's own slowdown per labelled second, per pair."""
    return {(p.victim, p.aggressor): p.victim_y for p in run.pairs}


def align(pair: rn.Pair, raw: Raw) -> np.ndarray:
    """The score each labelled second of `pair` had: the latest published at or before
    the second's end + ALIGN_TOLERANCE_MS, NaN if none or older than MAX_STALE_MS."""
    out = np.full(len(pair.t), np.nan)
    got = raw.get((pair.victim, pair.aggressor))
    if got is None or len(got[0]) == 0:
        return out
    ts, sc = got
    at = pair.end_ms + ALIGN_TOLERANCE_MS
    idx = np.searchsorted(ts, at, side="right") - 1
    ok = (idx >= 0) & (at - ts[np.maximum(idx, 0)] <= MAX_STALE_MS)
    out[ok] = sc[idx[ok]]
    return out


BUILTIN = {
    "nowcast": nowcast_scorer("smoothed"),
    "nowcast_tick": nowcast_scorer("tick"),
    "heuristic": heuristic,
    "persistence": persistence,
    "seasonal_naive": seasonal_naive,
    "nowcast_all": nowcast_all,
}
REFERENCES = ("present_1s", "nowcast_all")
DEFAULT = ("nowcast", "nowcast_tick", "heuristic", "persistence", "seasonal_naive", "lstm", "present_1s",
           "nowcast_all")


def scores_for(run: rn.Run, name: str, fn) -> dict | None:
    """{(victim, aggressor): aligned score array} of one scorer on one run, or None
    where it does not apply."""
    if name == "present_1s":
        return present_1s(run)
    raw = fn(run)
    if raw is None:
        return None
    return {(p.victim, p.aggressor): align(p, raw) for p in run.pairs}
