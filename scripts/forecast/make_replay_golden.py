#!/usr/bin/env python3
"""Writes the replay golden files of docs/forecast.md, section 9:
data/forecast/replay-golden.csv.gz (a synthetic trace: 4 VMs, 2100 rows of 5 minutes)
and data/forecast/replay-golden.jsonl.gz (what `replay.py --horizon 5m,1h` prints for
it with the shipped model).

    V=/var/cache/interference-model/venv/bin/python
    $V scripts/forecast/make_replay_golden.py

The VMs: `daily` (a daily and weekly rhythm with noise), `bursty` (a low base with
bursts), `young` (born at row 1500: young-VM fills), `gappy` (a gap of 30 empty rows,
forward-filled). Seeded: the same files every time (gzip without a timestamp).
"""

from __future__ import annotations

import gzip
import io
import os
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import replay as rp  # noqa: E402
import trace as tr  # noqa: E402

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(REPO, "data", "forecast")
ROWS = 2100


def synthetic() -> str:
    rng = np.random.default_rng(16)
    k = np.arange(ROWS)
    day = 2 * np.pi * (k % 288) / 288
    week = (k // 288) % 7
    daily = 20 + 12 * np.sin(day - 1.0) + np.where(week >= 5, -8, 0) + rng.normal(0, 2, ROWS)
    bursty = 3 + rng.exponential(0.5, ROWS) + np.where(rng.random(ROWS) < 0.05, rng.uniform(10, 60, ROWS), 0)
    young = 35 + 10 * np.sin(day) + rng.normal(0, 3, ROWS)
    gappy = 50 + 5 * np.sin(day * 2) + rng.normal(0, 1.5, ROWS)
    cols = {"daily": daily, "bursty": bursty, "young": young, "gappy": gappy}
    cols = {n: np.clip(v, 0, 100) for n, v in cols.items()}
    lines = ["minute," + ",".join(cols)]
    for i in range(ROWS):
        cells = []
        for n, v in cols.items():
            missing = (n == "young" and i < 1500) or (n == "gappy" and 1000 <= i < 1030)
            cells.append("" if missing else f"{v[i]:.3f}")
        lines.append(f"{5 * i}," + ",".join(cells))
    return "\n".join(lines) + "\n"


def gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as f:
        f.write(data)
    return buf.getvalue()


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    csv = synthetic().encode()
    csv_path = os.path.join(OUT, "replay-golden.csv.gz")
    with open(csv_path, "wb") as f:
        f.write(gz(csv))
    trace = tr.parse(csv, csv_path)
    model = rp.Model(os.path.join(REPO, "models", "demand-forecast.json"))
    out = io.StringIO()
    n = rp.replay(trace, model, rp.parse_horizons("5m,1h"), out.write)
    with open(os.path.join(OUT, "replay-golden.jsonl.gz"), "wb") as f:
        f.write(gz(out.getvalue().encode()))
    print(f"wrote {csv_path} and replay-golden.jsonl.gz ({n} lines)", file=sys.stderr)


if __name__ == "__main__":
    main()
