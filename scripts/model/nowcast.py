#!/usr/bin/env python3
"""The attributed nowcast: the agent's default Contention Score, in Python.

Why it exists: the redesigned Contention Score (models/README.md) replaced
the LSTM by a score read straight off the eBPF preemption matrix, and the evaluation
(scripts/model/evaluate_protocol.py) must score recorded runs with exactly what the Rust
agent computes. A golden file (scripts/model/golden_nowcast.py) pins the two together.

Definition (kept to the letter; the Rust side implements the same). For an ordered pair
(victim v, aggressor a), a != v, a a VM (never "host" or "departed"), over a window W
of v's VmSample lines, summed oldest first:

    run_v  = Σ cpu.usage_seconds              (a sample without `cpu` adds 0)
    wait_v = Σ runqueue.wait_seconds
    self_v = Σ seconds of preempted_by entries with by == v   (v's own threads)
    by_va  = Σ seconds of preempted_by entries with by == a
    dt     = Σ interval_seconds
    denom  = run_v + wait_v - self_v
    score  = 100 * min(1, max(0, by_va / denom))   if denom >= 0.01 * dt, else 0

Two windows: `tick` is v's last sample alone; `smoothed` is v's last
ceil(window_seconds / interval_seconds) samples (counting only samples present, so a
gap does not shorten the count). `interval_seconds` is the collector's configured
interval (experiment.json `tick_seconds`), not the measured `interval_seconds` of the
lines, which jitter around it (1.0035, 0.999) and would change the count. A VM's
samples are taken in order of `timestamp_ms`; of two lines with one timestamp the later
one in the file wins. The pair's Contention Score is the larger of its two directions.

    nowcast.py --replay DIR/e000/samples.jsonl [--interval 1] [--window 5] [--tick]
    nowcast.py --replay-dataset DIR [--tick]

print one JSON line per (timestamp of a victim's sample, ordered pair):
{"timestamp_ms", "victim", "aggressor", "score"} (with "experiment" for a dataset),
the format scripts/model/evaluate_protocol.py reads as an external scorer, as it will
read `interference score --replay`. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

NOT_AGGRESSORS = ("host", "departed")
DEFAULT_WINDOW_SECONDS = 5.0


def _num(x) -> float:
    return 0.0 if x is None else float(x)


def window_count(window_seconds: float, interval_seconds: float) -> int:
    """ceil(window / interval) samples, at least 1; a ratio within 1e-9 of an integer
    counts as that integer (5 / 1.0 is 5, never 6 through rounding)."""
    if interval_seconds <= 0:
        raise ValueError(f"interval_seconds must be > 0, got {interval_seconds}")
    r = window_seconds / interval_seconds
    n = round(r) if abs(r - round(r)) < 1e-9 else math.ceil(r)
    return max(1, int(n))


@dataclass(frozen=True)
class Terms:
    """The sums of one window of a victim's samples."""

    run: float
    wait: float
    self_: float
    by: dict
    dt: float

    def score(self, aggressor: str) -> float:
        denom = self.run + self.wait - self.self_
        if not denom >= 0.01 * self.dt:
            return 0.0
        return 100.0 * min(1.0, max(0.0, self.by.get(aggressor, 0.0) / denom))


def window_terms(samples: Sequence[dict], victim: str) -> Terms:
    """Sums over `samples` (one victim's, oldest first) in the order given."""
    run = wait = self_ = dt = 0.0
    by: dict[str, float] = {}
    for s in samples:
        cpu = s.get("cpu")
        if cpu is not None:
            run += _num(cpu.get("usage_seconds"))
        rq = s.get("runqueue") or {}
        wait += _num(rq.get("wait_seconds"))
        dt += _num(s.get("interval_seconds"))
        for p in s.get("preempted_by") or []:
            who = p.get("by")
            sec = _num(p.get("seconds"))
            if who == victim:
                self_ += sec
            else:
                by[who] = by.get(who, 0.0) + sec
    return Terms(run, wait, self_, by, dt)


def pair_score(samples: Sequence[dict], victim: str, aggressor: str) -> float:
    """The attributed nowcast of (victim, aggressor) over one window of the victim's
    samples (oldest first), 0-100."""
    if aggressor == victim or aggressor in NOT_AGGRESSORS:
        raise ValueError(f"aggressor must be another VM, got {aggressor!r} for victim {victim!r}")
    return window_terms(samples, victim).score(aggressor)


@dataclass(frozen=True)
class Score:
    timestamp_ms: int
    victim: str
    aggressor: str
    tick: float
    smoothed: float


def by_vm(samples: Iterable[dict]) -> dict[str, list[dict]]:
    """VM -> its samples in order of timestamp_ms; of two with one timestamp the later
    line wins."""
    rows: dict[str, dict[int, dict]] = {}
    for n, s in enumerate(samples, 1):
        if not isinstance(s, dict) or "vm" not in s or "timestamp_ms" not in s:
            raise ValueError(f"sample {n} has no `vm` or `timestamp_ms`: {str(s)[:80]}")
        rows.setdefault(s["vm"], {})[int(s["timestamp_ms"])] = s
    return {vm: [r[t] for t in sorted(r)] for vm, r in rows.items()}


def victim_scores(samples: Sequence[dict], victim: str, aggressors: Sequence[str],
                  interval_seconds: float,
                  window_seconds: float = DEFAULT_WINDOW_SECONDS) -> Iterator[Score]:
    """Scores of (victim, a) for every a in `aggressors` at each of the victim's
    samples (given oldest first, one per timestamp)."""
    n = window_count(window_seconds, interval_seconds)
    for i, s in enumerate(samples):
        tick = window_terms(samples[i : i + 1], victim)
        smooth = window_terms(samples[max(0, i - n + 1) : i + 1], victim)
        for a in aggressors:
            yield Score(int(s["timestamp_ms"]), victim, a, tick.score(a), smooth.score(a))


def all_scores(samples: Iterable[dict], interval_seconds: float,
               window_seconds: float = DEFAULT_WINDOW_SECONDS) -> list[Score]:
    """Every ordered pair of the VMs in `samples` (sorted by name) at every timestamp
    where the victim has a sample; ordered by timestamp, victim, aggressor."""
    rows = by_vm(samples)
    vms = sorted(v for v in rows if v not in NOT_AGGRESSORS)
    out: list[Score] = []
    for v in vms:
        out += victim_scores(rows[v], v, [a for a in vms if a != v], interval_seconds, window_seconds)
    out.sort(key=lambda s: (s.timestamp_ms, s.victim, s.aggressor))
    return out


# --------------------------------------------------------------------------------------
# Reading an experiment


def read_jsonl(path: str) -> list[dict]:
    """The JSON objects of a JSONL file; an undecodable line (a crash's torn tail) is
    reported with its line number and skipped, as docs/samples.md allows."""
    out = []
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                print(f"{path}:{n}: skipping undecodable line ({e})", file=sys.stderr)
    return out


def experiment_interval(exp_dir: str) -> float:
    """The collector's configured interval of an experiment (experiment.json
    `tick_seconds`)."""
    path = os.path.join(exp_dir, "experiment.json")
    try:
        with open(path, "r", encoding="utf-8") as f:
            meta = json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the experiment ({e}); pass --interval") from e
    t = meta.get("tick_seconds")
    if not isinstance(t, (int, float)) or t <= 0:
        raise ValueError(f"{path}: no positive `tick_seconds` (the collector interval)")
    return float(t)


def experiment_dirs(root: str) -> list[str]:
    """Complete experiments (with an experiment.json) of a dataset, sorted by name."""
    if not os.path.isdir(root):
        raise ValueError(f"{root}: not a dataset directory")
    return [os.path.join(root, d) for d in sorted(os.listdir(root))
            if os.path.isfile(os.path.join(root, d, "experiment.json"))]


def replay_lines(scores: Iterable[Score], use_tick: bool, experiment: str | None = None) -> Iterator[str]:
    for s in scores:
        rec = {"timestamp_ms": s.timestamp_ms, "victim": s.victim, "aggressor": s.aggressor,
               "score": s.tick if use_tick else s.smoothed}
        if experiment is not None:
            rec = {"experiment": experiment, **rec}
        yield json.dumps(rec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--replay", metavar="SAMPLES.jsonl", help="one samples file")
    src.add_argument("--replay-dataset", metavar="DIR", help="every experiment of a dataset")
    ap.add_argument("--interval", type=float, default=None,
                    help="collector interval in s (default: experiment.json's tick_seconds)")
    ap.add_argument("--window", type=float, default=DEFAULT_WINDOW_SECONDS, help="smoothed window, s")
    ap.add_argument("--tick", action="store_true", help="print the tick score, not the smoothed one")
    a = ap.parse_args()
    try:
        if a.replay:
            interval = a.interval or experiment_interval(os.path.dirname(os.path.abspath(a.replay)))
            for line in replay_lines(all_scores(read_jsonl(a.replay), interval, a.window), a.tick):
                print(line)
        else:
            for d in experiment_dirs(a.replay_dataset):
                interval = a.interval or experiment_interval(d)
                scores = all_scores(read_jsonl(os.path.join(d, "samples.jsonl")), interval, a.window)
                for line in replay_lines(scores, a.tick, os.path.basename(d)):
                    print(line)
    except BrokenPipeError:  # `| head` closed the pipe: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (ValueError, OSError, KeyError) as e:
        sys.exit(f"nowcast: {e}")


if __name__ == "__main__":
    main()
