#!/usr/bin/env python3
"""Golden raw feature windows of the shipped small dataset, for the Rust feature stage.

    python3 scripts/model/golden_features.py [--data data/contention-small] [--n 40]

Writes <data>/features.golden.json:

  {"t": 6, "k": 5, "tick_seconds": 5, "experiments": ["<id>", ...],
   "feature_names": [49 names],
   "windows": [{"experiment", "end_timestamp_ms", "victim", "aggressor",
                "features": [T*F floats]}]}

for every experiment of the dataset (sorted by directory name), n / experiments
windows each: the first half of them are the experiment's first windows, the rest are
spread evenly over the rest of it (so that co-located, contended ticks are covered, not
only the opening solo phase). Features are
raw (un-normalised), row-major [T][F], float64 as Python computes them
(scripts/model/features.py, docs/dataset.md); windows of one end tick are in the order
of the experiment's workloads (victim, then aggressor). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import features as fx  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "data", "contention-small"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--experiment", default=None, help="experiment id (default: the first)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--window", type=int, default=6)
    ap.add_argument("--tick-seconds", type=int, default=5)
    ap.add_argument("--out", default=None, help="default <data>/features.golden.json")
    a = ap.parse_args()

    exps = sorted(d for d in os.listdir(a.data)
                  if os.path.isfile(os.path.join(a.data, d, "experiment.json")))
    if a.experiment:
        exps = [a.experiment]
    if not exps:
        sys.exit(f"{a.data}: no experiment")
    per = max(2, a.n // len(exps))
    chosen, k, total = [], None, 0
    for exp in exps:
        d = os.path.join(a.data, exp)
        with open(os.path.join(d, "experiment.json")) as f:
            meta = json.load(f)
        timeline = fx.Timeline.from_samples(fx.read_samples(os.path.join(d, "samples.jsonl")))
        k = timeline.k_for(a.tick_seconds)
        vms = [w["vm"] for w in meta.get("workloads", [])] or None
        wins = list(fx.iter_windows(timeline, a.window, a.tick_seconds, vms))
        total += len(wins)
        first = per // 2
        pick = wins[:first]
        rest = wins[first:]
        m = per - len(pick)
        if rest and m > 0:
            step = len(rest) / m
            pick += [rest[int(i * step)] for i in range(m) if int(i * step) < len(rest)]
        chosen += [(exp, w) for w in pick]
    out = {
        "t": a.window,
        "k": k,
        "tick_seconds": a.tick_seconds,
        "experiments": exps,
        "feature_names": fx.FEATURE_NAMES,
        "windows": [
            {"experiment": exp, "end_timestamp_ms": w.end_timestamp_ms, "victim": w.victim,
             "aggressor": w.aggressor, "features": [v for row in w.features for v in row]}
            for exp, w in chosen
        ],
    }
    path = a.out or os.path.join(a.data, "features.golden.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=None)
        f.write("\n")
    print(f"wrote {path}: {len(chosen)} windows of {', '.join(exps)} ({total} in all)")


if __name__ == "__main__":
    main()
