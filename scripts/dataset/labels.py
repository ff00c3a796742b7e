#!/usr/bin/env python3
"""1 s labels of a recorded experiment: what the Contention Score claims to measure.

    python3 scripts/dataset/labels.py DATASET_DIR   # (re)writes labels.jsonl and the
                                                    # label summary of every experiment

Why these rules (the first recorder's labels failed each of them, docs/dataset.md):

- **Solo speed per duty level and thread count, before and after.** The victim's
  speed (ops per busy second) alone at duty d is measured in the calibration segments
  before and after the body (the first `settle` s of each not counted). A 2-thread
  victim on one CPU runs at half speed alone: that is its reference, not a slowdown.
  The reference is the mean of before and after; the drift (after - before) / before is
  reported per level, and a run whose drift exceeds 5% at any level is flagged (kept).
- **Signed slowdown, no clamp.** Second k covers (k - 1, k] of the schedule; the
  victim's label is 100 * (1 - speed_k / solo(duty, threads)). Negative values (faster
  than the reference) stay negative: clamping them to 0 hid 40% of windows' noise.
- **Pair labels only where one neighbour is responsible.** For neighbour a at second k,
  over the span [k - 1 - SETTLE, k]: if every other neighbour is idle (duty 0), the
  pair label is the victim's slowdown (attribution `sole`); if a is idle and another is
  not, it is 0 by construction (`idle`: a neighbour that did not run took nothing); if a
  and another are both active, there is no pair label (`shared`, slowdown null).
- Only body seconds where the victim's duty is constant over the same span, and the
  victim was busy (>= 0.05 busy seconds), are labelled.

Each labels.jsonl line: {"t", "timestamp_ms" (end of the second), "victim", "aggressor",
"slowdown" (pair label or null), "attribution", "victim_slowdown", "duty", "threads",
"aggressor_duty" (at mid-second), "speed", "solo_speed", "foreign_cores" (the host's
load outside the experiment in that second, host.jsonl; null if unknown)}. Standard
library only.
"""

from __future__ import annotations

import bisect
import json
import os
import sys
from typing import Iterable, Sequence

import schedules as sc

DRIFT_FLAG = 0.05
SETTLE = 1.0
MIN_BUSY = 0.05


def per_second(rates: Iterable[dict], vm: str, start_ms: int, by_arrival: bool) -> dict[int, tuple[float, float]]:
    """Second k -> (ops, busy) of one workload. A host workload's line carries its own
    schedule time `t` (k = round(t)); a lab VM's line is placed by its arrival
    (k = round((timestamp_ms - start_ms) / 1000)). Two lines in one second add up."""
    out: dict[int, tuple[float, float]] = {}
    for r in rates:
        if r.get("vm") != vm:
            continue
        if by_arrival:
            k = round((int(r["timestamp_ms"]) - start_ms) / 1000.0)
        else:
            k = round(float(r["t"]))
        o, b = out.get(k, (0.0, 0.0))
        out[k] = (o + float(r.get("ops") or 0.0), b + float(r.get("busy_seconds") or 0.0))
    return out


def calibration_speed(seconds: dict[int, tuple[float, float]], seg: dict) -> float | None:
    """Σ ops / Σ busy over the seconds fully inside a calibration segment after its
    settle time; None without a busy second."""
    ops = busy = 0.0
    lo = seg["start"] + seg.get("settle", SETTLE)
    for k, (o, b) in seconds.items():
        if k - 1 >= lo - 1e-9 and k <= seg["end"] + 1e-9:
            ops += o
            busy += b
    return ops / busy if busy >= MIN_BUSY and ops > 0 else None


def solo_speeds(seconds: dict[int, tuple[float, float]], calibration: Sequence[dict], threads: int) -> list[dict]:
    """Per duty level: before, after, reference (their mean, or the one measured) and
    drift ((after - before) / before, None unless both were measured)."""
    out = []
    for d in sorted({seg["duty"] for seg in calibration}):
        got = {}
        for phase in ("before", "after"):
            sp = [calibration_speed(seconds, s) for s in calibration if s["duty"] == d and s["phase"] == phase]
            sp = [x for x in sp if x is not None]
            got[phase] = sum(sp) / len(sp) if sp else None
        b, a = got["before"], got["after"]
        ref = (b + a) / 2 if b is not None and a is not None else (b if b is not None else a)
        drift = (a - b) / b if b is not None and a is not None else None
        out.append({"duty": d, "threads": threads, "before": b, "after": a, "reference": ref, "drift": drift})
    return out


def constant_duty(schedule: Sequence[Sequence[float]], t0: float, t1: float) -> float | None:
    """The duty if it is the same over all of [t0, t1], else None."""
    d = sc.duty_at(schedule, t0)
    if sc.max_duty(schedule, t0, t1) != d:
        return None
    ts = [t1] + [p[0] for p in schedule if t0 <= p[0] <= t1]
    if any(sc.duty_at(schedule, t) != d for t in ts):
        return None
    for i in range(1, len(schedule)):  # the value just before a step inside the span
        if t0 < schedule[i][0] <= t1 and schedule[i][0] == schedule[i - 1][0] and schedule[i - 1][1] != d:
            return None
    return d


def attribution(neighbours: dict[str, Sequence], a: str, t0: float, t1: float) -> str:
    active = {n: sc.max_duty(s, t0, t1) > 0 for n, s in neighbours.items()}
    if not any(v for n, v in active.items() if n != a):
        return "sole"
    return "shared" if active[a] else "idle"


def foreign_at(host: Sequence[dict]):
    """A lookup: wall-clock ms -> the host's foreign load (cores) of the host.jsonl line
    nearest to it within 600 ms, or None (host_monitor.py; a line covers the second
    before its timestamp)."""
    ts = sorted((int(h["timestamp_ms"]), h.get("foreign_cores")) for h in host)
    keys = [t for t, _ in ts]

    def at(ms: int):
        i = bisect.bisect_left(keys, ms)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(keys) and abs(keys[j] - ms) <= 600:
                if best is None or abs(keys[j] - ms) < abs(keys[best] - ms):
                    best = j
        return None if best is None else ts[best][1]
    return at


def label_lines(meta: dict, rates: Sequence[dict], host: Sequence[dict] = ()) -> tuple[list[dict], list[dict]]:
    """(labels.jsonl lines, solo speeds) of one experiment (experiment.json format 2);
    `host` (host.jsonl lines) adds each second's foreign load."""
    victim = meta["victim"]
    w_by = {w["vm"]: w for w in meta["workloads"]}
    if victim not in w_by:
        raise ValueError(f"{meta.get('id')}: victim {victim!r} is not among the workloads")
    vw = w_by[victim]
    threads = int(vw.get("threads", 1))
    secs = per_second(rates, victim, int(meta["start_ms"]), by_arrival=vw["kind"] == "vm")
    solo = solo_speeds(secs, meta["calibration"], threads)
    ref = {s["duty"]: s["reference"] for s in solo}
    neighbours = {w["vm"]: w["schedule"] for w in meta["workloads"] if w.get("role") == "neighbour"}
    b0, b1 = meta["body"]
    foreign = foreign_at(host)
    out = []
    for k in sorted(secs):
        if k - 1 < b0 - 1e-9 or k > b1 + 1e-9:
            continue
        ops, busy = secs[k]
        d = constant_duty(vw["schedule"], k - 1 - SETTLE, k) if vw["kind"] != "vm" else 1.0
        if d is None or d <= 0 or ref.get(d) is None or busy < MIN_BUSY:
            continue
        speed = ops / busy
        v_slow = 100.0 * (1.0 - speed / ref[d])
        for a, sched in neighbours.items():
            att = attribution(neighbours, a, k - 1 - SETTLE, k)
            slow = v_slow if att == "sole" else (0.0 if att == "idle" else None)
            out.append({"t": k, "timestamp_ms": int(meta["start_ms"]) + 1000 * k, "victim": victim,
                        "aggressor": a, "slowdown": slow, "attribution": att, "victim_slowdown": v_slow,
                        "duty": d, "threads": threads, "aggressor_duty": round(sc.duty_at(sched, k - 0.5), 4),
                        "speed": speed, "solo_speed": ref[d],
                        "foreign_cores": foreign(int(meta["start_ms"]) + 1000 * k)})
    return out, solo


def summary(lines: Sequence[dict], solo: Sequence[dict]) -> dict:
    drifts = [abs(s["drift"]) for s in solo if s["drift"] is not None]
    complete = all(s["before"] is not None and s["after"] is not None for s in solo)
    pair = sorted(x["slowdown"] for x in lines if x["slowdown"] is not None)
    count = {a: sum(1 for x in lines if x["attribution"] == a) for a in ("sole", "idle", "shared")}

    def pct(q):
        return round(pair[min(len(pair) - 1, int(q * len(pair)))], 2) if pair else None

    return {
        "solo_speeds": list(solo),
        "drift_max": round(max(drifts), 4) if drifts else None,
        "drift_flagged": (not complete) or (bool(drifts) and max(drifts) > DRIFT_FLAG),
        "labels": {"seconds": len({x["t"] for x in lines}), "pair_lines": len(lines), **count,
                   "pair_slowdown_p5_p50_p95": [pct(0.05), pct(0.5), pct(0.95)],
                   "negative_share": round(sum(1 for x in pair if x < 0) / len(pair), 3) if pair else None},
    }


def read_jsonl(path: str) -> list[dict]:
    out = []
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not JSON ({e})") from e
    return out


def label_experiment(exp_dir: str) -> dict:
    """Writes <exp_dir>/labels.jsonl and the label summary into experiment.json;
    returns the summary."""
    meta_path = os.path.join(exp_dir, "experiment.json")
    with open(meta_path, "r", encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != 2:
        raise ValueError(f"{meta_path}: not a format-2 experiment (recorded before the 1 s labels)")
    host_path = os.path.join(exp_dir, "host.jsonl")
    host = read_jsonl(host_path) if os.path.isfile(host_path) else []
    lines, solo = label_lines(meta, read_jsonl(os.path.join(exp_dir, "rates.jsonl")), host)
    with open(os.path.join(exp_dir, "labels.jsonl"), "w", encoding="utf-8") as f:
        for x in lines:
            f.write(json.dumps(x) + "\n")
    s = summary(lines, solo)
    meta.update(s)
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return s


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: labels.py DATASET_DIR")
    root = sys.argv[1]
    if not os.path.isdir(root):
        sys.exit(f"labels: {root}: not a directory")
    for d in sorted(os.listdir(root)):
        p = os.path.join(root, d)
        if os.path.isfile(os.path.join(p, "experiment.json")):
            try:
                s = label_experiment(p)
            except (ValueError, KeyError, OSError) as e:
                sys.exit(f"labels: {p}: {e}")
            print(f"{d}: {s['labels']['pair_lines']} pair lines, drift max {s['drift_max']}"
                  f"{' FLAGGED' if s['drift_flagged'] else ''}")


if __name__ == "__main__":
    main()
