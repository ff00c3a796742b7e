"""Real tenants' CPU demand for the `trace` schedule family.

Why: random steps and ramps are our guesses at how neighbours behave; the Azure
Public Dataset V1 traces in /work/shared/traces/ (../shared/traces/ of the repository,
README there) are how 70 real VMs behaved, 5-minute CPU utilisation over about four
weeks. A neighbour replays one VM's column with time compressed (several trace points
per second), so the scorers meet real shapes: diurnal swells, plateaus, bursts.

Only spans that would contend are replayed: over the replayed points, mean utilisation
at least MIN_MEAN % and population standard deviation at least MIN_STDEV points. Most
of the 70 VMs idle near a constant few percent and would never make a neighbour felt;
for a 2-day span, 9 VMs qualify. The replay starts at a trace midnight, so its daily
season starts at its first point. Standard library only.
"""

from __future__ import annotations

import csv
import gzip
import os
import random
import statistics
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TRACE = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "traces",
                                              "azure-v1-cpu-avg-5min-train.csv.gz"))
MIN_STDEV = 10.0
MIN_MEAN = 20.0
POINTS_PER_DAY = 288  # 5-minute points


@dataclass(frozen=True)
class Trace:
    path: str
    columns: dict  # VM column name -> list of CPU % values, one per 5 minutes

    def spans(self, points: int) -> dict[str, list[int]]:
        """Column -> the first rows (trace midnights) of the `points`-long spans that
        would contend (mean >= MIN_MEAN %, stdev >= MIN_STDEV points)."""
        out: dict[str, list[int]] = {}
        for c, v in sorted(self.columns.items()):
            for first in range(0, len(v) - points + 1, POINTS_PER_DAY):
                x = v[first : first + points]
                if statistics.fmean(x) >= MIN_MEAN and statistics.pstdev(x) >= MIN_STDEV:
                    out.setdefault(c, []).append(first)
        return out


def load(path: str | None = None) -> Trace:
    """The trace file: a gzipped CSV with a `minute` column and one column per VM."""
    path = path or DEFAULT_TRACE
    try:
        with gzip.open(path, "rt", newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise ValueError(f"{path}: cannot read the trace ({e})") from e
    if len(rows) < 2 or "minute" not in rows[0]:
        raise ValueError(f"{path}: not a trace (want a header with `minute` and VM columns)")
    head = rows[0]
    cols: dict[str, list[float]] = {h: [] for h in head if h != "minute"}
    for n, row in enumerate(rows[1:], 2):
        if len(row) != len(head):
            raise ValueError(f"{path}:{n}: {len(row)} fields, the header has {len(head)}")
        for h, v in zip(head, row):
            if h != "minute":
                try:
                    cols[h].append(float(v))
                except ValueError as e:
                    raise ValueError(f"{path}:{n}: column {h}: {v!r} is not a number") from e
    return Trace(path, cols)


@dataclass(frozen=True)
class Excerpt:
    column: str
    first_row: int
    values: list


def excerpt(trace: Trace, rng: random.Random, points: int, slot: int = 0) -> Excerpt:
    """`points` consecutive 5-minute values of one VM: the column `slot` places after a
    drawn one (so the trace experiments of one recording replay different VMs), among
    those with a span that would contend; then one of its spans, drawn."""
    spans = trace.spans(points)
    if not spans:
        raise ValueError(f"{trace.path}: no span of {points} points with mean >= {MIN_MEAN} % "
                         f"and stdev >= {MIN_STDEV}")
    cols = sorted(spans)
    column = cols[(rng.randrange(len(cols)) + slot) % len(cols)]
    first = rng.choice(spans[column])
    return Excerpt(column, first, trace.columns[column][first : first + points])
