"""Real tenants' CPU demand for the `trace` schedule family.

Why: random steps and ramps are our guesses at how neighbours behave; the Azure
Public Dataset V1 traces in /work/shared/traces/ (../shared/traces/ of the repository,
README there) are how 70 real VMs behaved, 5-minute CPU utilisation over about four
weeks. A neighbour replays one VM's column with time compressed (several trace points
per second), so the scorers meet real shapes: diurnal swells, plateaus, bursts.

Only trace columns that move are replayed (population standard deviation of at least
MIN_STDEV utilisation points): most of the 70 VMs idle near a constant few percent and
would never contend. Standard library only.
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
POINTS_PER_DAY = 288  # 5-minute points


@dataclass(frozen=True)
class Trace:
    path: str
    columns: dict  # VM column name -> list of CPU % values, one per 5 minutes

    def lively(self) -> list[str]:
        """Columns whose utilisation moves (stdev >= MIN_STDEV points), sorted."""
        return sorted(c for c, v in self.columns.items() if statistics.pstdev(v) >= MIN_STDEV)


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


def excerpt(trace: Trace, rng: random.Random, points: int, column: str | None = None) -> Excerpt:
    """`points` consecutive 5-minute values of one lively column (drawn unless given),
    starting at a random midnight of the trace (row multiple of 288), so the replay's
    daily season starts at its first point."""
    cols = trace.lively()
    if column is None:
        if not cols:
            raise ValueError(f"{trace.path}: no column with stdev >= {MIN_STDEV}")
        column = rng.choice(cols)
    if column not in trace.columns:
        raise ValueError(f"{trace.path}: no column {column!r}")
    values = trace.columns[column]
    if points > len(values):
        raise ValueError(f"{trace.path}: {points} points wanted, the trace has {len(values)}")
    days = (len(values) - points) // POINTS_PER_DAY
    first = rng.randint(0, days) * POINTS_PER_DAY if days >= 0 else 0
    return Excerpt(column, first, values[first : first + points])
