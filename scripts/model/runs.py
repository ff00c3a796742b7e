"""A recorded dataset as runs: their plan, samples and 1 s pair labels.

Why a run is the unit: the evaluation never splits a run (held-out runs, never windows
of one run on both sides), reports per-run metrics, and bootstraps over whole runs.
A run is one experiment directory of the recorder (docs/dataset.md, format 2):
experiment.json, samples.jsonl, labels.jsonl (written by scripts/dataset/labels.py).

Victim classes and what this host can observe of them:
- `cpu` (a workload in cgroups), `vm` (a lab VM running a cpu workload), `ctxsw`:
  CPU contention, which the preemption matrix sees;
- `fsync`: I/O latency, of which the scorers see only the CPU part;
- `cache`, `membw`: LLC and memory-bandwidth contention, unobservable without a PMU:
  reported on their own, stated as unobservable, never folded into the CPU figures.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

import nowcast as nc

CPU_CLASSES = ("cpu", "vm", "ctxsw")
PMU_CLASSES = ("cache", "membw")


@dataclass
class Pair:
    victim: str
    aggressor: str
    t: np.ndarray  # int, label seconds (second t covers (t - 1, t] of the schedule)
    end_ms: np.ndarray  # int, wall-clock end of each second
    y: np.ndarray  # pair label (signed slowdown, points)
    victim_y: np.ndarray  # the victim's own slowdown, unattributed
    attribution: list
    foreign: np.ndarray | None = None  # host load outside the experiment (cores), NaN unknown

    def keep(self, mask: np.ndarray) -> "Pair":
        return Pair(self.victim, self.aggressor, self.t[mask], self.end_ms[mask], self.y[mask],
                    self.victim_y[mask], [a for a, k in zip(self.attribution, mask) if k],
                    None if self.foreign is None else self.foreign[mask])


@dataclass
class Run:
    id: str
    dir: str
    meta: dict
    samples: list
    pairs: list = field(default_factory=list)

    @property
    def family(self) -> str:
        return self.meta["family"]

    @property
    def victim_kind(self) -> str:
        return self.meta["victim_kind"]

    @property
    def threads(self) -> int:
        return int(self.meta.get("victim_threads", 1))

    @property
    def interval(self) -> float:
        return float(self.meta.get("tick_seconds", 1))

    @property
    def season_seconds(self) -> float | None:
        s = self.meta.get("season_seconds")
        return float(s) if s else None

    @property
    def drift_flagged(self) -> bool:
        return bool(self.meta.get("drift_flagged"))

    @property
    def pmu(self) -> bool:
        """Whether the collector read hardware counters in this run (any sample with
        instructions > 0)."""
        for s in self.samples:
            llc = s.get("llc")
            if llc and (llc.get("instructions") or 0) > 0:
                return True
        return False

    @property
    def observable(self) -> bool:
        return self.victim_kind not in PMU_CLASSES or self.pmu

    @property
    def labelled_seconds(self) -> int:
        return int(sum(len(p.t) for p in self.pairs))


def read_labels(path: str) -> list[dict]:
    out = []
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON ({e})") from e
            for k in ("t", "timestamp_ms", "victim", "aggressor", "slowdown", "victim_slowdown"):
                if k not in r:
                    raise ValueError(f"{path}:{n}: no `{k}`")
            out.append(r)
    return out


def pairs_from_labels(lines: list[dict]) -> list[Pair]:
    """Pairs with their labelled seconds (lines whose pair label is not null)."""
    by: dict[tuple, list] = {}
    for r in lines:
        if r["slowdown"] is None:
            continue
        by.setdefault((r["victim"], r["aggressor"]), []).append(r)
    out = []
    for (v, a), rs in sorted(by.items()):
        rs.sort(key=lambda r: r["t"])
        out.append(Pair(v, a, np.array([r["t"] for r in rs], dtype=np.int64),
                        np.array([r["timestamp_ms"] for r in rs], dtype=np.int64),
                        np.array([float(r["slowdown"]) for r in rs]),
                        np.array([float(r["victim_slowdown"]) for r in rs]),
                        [r.get("attribution", "") for r in rs],
                        np.array([np.nan if r.get("foreign_cores") is None else float(r["foreign_cores"])
                                  for r in rs])))
    return out


def load_run(d: str) -> Run:
    meta_path = os.path.join(d, "experiment.json")
    with open(meta_path, "r", encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != 2:
        raise ValueError(f"{meta_path}: not a format-2 experiment (1 s labels); record it with "
                         f"scripts/dataset/record.py")
    for k in ("family", "victim", "victim_kind", "start_ms"):
        if k not in meta:
            raise ValueError(f"{meta_path}: no `{k}`")
    labels = os.path.join(d, "labels.jsonl")
    if not os.path.isfile(labels):
        raise ValueError(f"{labels}: missing; run scripts/dataset/labels.py on the dataset")
    run = Run(os.path.basename(d), d, meta, nc.read_jsonl(os.path.join(d, "samples.jsonl")))
    run.pairs = pairs_from_labels(read_labels(labels))
    return run


def drop_busy_seconds(run: Run, max_foreign: float) -> int:
    """Leaves out the labelled seconds in which the host was busier than `max_foreign`
    cores outside the experiment (unknown load is kept); returns how many."""
    dropped = 0
    for i, p in enumerate(run.pairs):
        if p.foreign is None:
            continue
        busy = p.foreign > max_foreign  # NaN compares False: kept
        dropped += int(busy.sum())
        run.pairs[i] = p.keep(~busy)
    return dropped


def load_dataset(root: str, exclude_drifted: bool = False, max_foreign: float | None = None) -> tuple[list[Run], list[str]]:
    """The runs of a dataset, and notes on what was left out."""
    runs = [load_run(d) for d in nc.experiment_dirs(root)]
    if not runs:
        raise ValueError(f"{root}: no experiment (directories with an experiment.json)")
    notes = []
    if exclude_drifted:
        out = [r.id for r in runs if r.drift_flagged]
        runs = [r for r in runs if not r.drift_flagged]
        notes.append(f"runs with more than 5% drift left out (--exclude-drifted): {', '.join(out) or 'none'}")
    if max_foreign is not None:
        total = sum(r.labelled_seconds for r in runs)
        dropped = sum(drop_busy_seconds(r, max_foreign) for r in runs)
        notes.append(f"labelled seconds with more than {max_foreign:g} cores busy outside the experiment left "
                     f"out (--max-foreign-cores): {dropped} of {total}")
    return runs, notes
