"""Reads a utilisation trace in the format of ../shared/traces/ (docs/forecast.md, "Traces").

A trace is a CSV file, optionally gzip-compressed (a name ending in .gz): a header row
`minute,<vm>,<vm>,...`, then one row per point: the point's minute from the start of
the trace (a Monday 00:00 of the trace's own clock), then each VM's value (percent of
its allocated cores). The minutes must increase by one constant step. An empty cell is
a missing value (NaN); the Azure file has none.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from dataclasses import dataclass

import numpy as np


@dataclass
class Trace:
    path: str
    minutes: np.ndarray  # int64 [K]
    vms: list[str]  # V column names
    values: np.ndarray  # float64 [K, V], NaN where missing
    sha256: str  # of the file's bytes

    @property
    def step_minutes(self) -> int:
        return int(self.minutes[1] - self.minutes[0]) if len(self.minutes) > 1 else 0

    @property
    def origin_step(self) -> int:
        """The first row's index on the clock of docs/forecast.md (steps since a Monday
        00:00), i.e. minutes[0] / step."""
        return int(self.minutes[0] // self.step_minutes) if self.step_minutes else 0


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    return raw


def parse(raw: bytes, path: str = "<bytes>") -> Trace:
    sha = hashlib.sha256(raw).hexdigest()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = io.StringIO(raw.decode("utf-8"))
    header = text.readline().strip().split(",")
    if not header or header[0] != "minute":
        raise ValueError(f"{path}: the first column must be `minute`, not {header[:1]}")
    vms = header[1:]
    if not vms:
        raise ValueError(f"{path}: no VM columns")
    if len(set(vms)) != len(vms):
        raise ValueError(f"{path}: a VM column is named twice")
    minutes, rows = [], []
    for n, line in enumerate(text, start=2):
        line = line.strip()
        if not line:
            continue
        cells = line.split(",")
        if len(cells) != len(header):
            raise ValueError(f"{path}:{n}: {len(cells)} cells, the header has {len(header)}")
        minutes.append(int(float(cells[0])))
        rows.append([float(c) if c.strip() != "" else np.nan for c in cells[1:]])
    m = np.asarray(minutes, dtype=np.int64)
    if len(m) >= 2:
        d = np.diff(m)
        if d.min() <= 0 or d.min() != d.max():
            raise ValueError(f"{path}: minutes must increase by a constant step "
                             f"(steps from {d.min()} to {d.max()})")
        if m[0] % d[0] != 0:
            raise ValueError(f"{path}: the first minute {m[0]} is not a multiple of the step {d[0]}")
    return Trace(path, m, vms, np.asarray(rows, dtype=np.float64).reshape(len(m), len(vms)), sha)


def load(path: str) -> Trace:
    return parse(read_bytes(path), path)
