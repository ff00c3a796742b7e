#!/usr/bin/env python3
"""Golden attributed-nowcast scores of the shipped small dataset, for the Rust agent.

    python3 scripts/model/golden_nowcast.py [--data data/contention-small] [--out FILE]

Why: the agent's default score (Rust, predict stage) and the evaluation's
(scripts/model/nowcast.py) must be one definition; a Rust test reads this file and
compares. Writes <data>/nowcast.golden.json:

  {"window_seconds": 5, "scores": [{"experiment": "e000", "timestamp_ms": 123,
    "victim": "x", "aggressor": "y", "tick": 12.5, "smoothed": 10.25}, ...]}

for every experiment of the dataset (sorted by directory name), every ordered pair of
its VMs, at every timestamp where the victim has a sample; scores are Python floats at
full precision (shortest repr that round-trips), ordered by experiment, timestamp,
victim, aggressor. The smoothed window counts ceil(5 / tick_seconds) samples, with
each experiment's tick_seconds (1 s here, so 5 samples). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nowcast as nc  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "data", "contention-small"))
WINDOW_SECONDS = 5


def golden(data: str) -> dict:
    scores = []
    for d in nc.experiment_dirs(data):
        exp = os.path.basename(d)
        interval = nc.experiment_interval(d)
        for s in nc.all_scores(nc.read_jsonl(os.path.join(d, "samples.jsonl")), interval, WINDOW_SECONDS):
            scores.append({"experiment": exp, "timestamp_ms": s.timestamp_ms, "victim": s.victim,
                           "aggressor": s.aggressor, "tick": float(s.tick), "smoothed": float(s.smoothed)})
    if not scores:
        raise ValueError(f"{data}: no experiment with samples")
    return {"window_seconds": WINDOW_SECONDS, "scores": scores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--out", default=None, help="default <data>/nowcast.golden.json")
    a = ap.parse_args()
    try:
        out = golden(a.data)
    except (ValueError, OSError) as e:
        sys.exit(f"golden_nowcast: {e}")
    path = a.out or os.path.join(a.data, "nowcast.golden.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=None, allow_nan=False)
        f.write("\n")
    nonzero = sum(1 for s in out["scores"] if s["smoothed"] > 0)
    print(f"wrote {path}: {len(out['scores'])} scores ({nonzero} smoothed > 0)")


if __name__ == "__main__":
    main()
