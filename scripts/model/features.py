"""Features of the Contention Score model, computed from VmSample lines.

This is the Python side of the contract in docs/dataset.md ("Model tick and window",
"Features, in order"); the agent's Rust feature stage computes the same numbers and
data/contention-small/features.golden.json (scripts/model/golden_features.py) checks
that they agree. Standard library only (numpy is used when present, for arrays).

Terms:
- collector tick: one `timestamp_ms` of the samples file; every VM tracked in that tick
  has one VmSample with that timestamp. The ticks of an experiment are the sorted
  distinct timestamps of its samples file.
- model tick: the aggregate of the k = tick_seconds / interval_seconds collector
  samples of one VM that end at it.
- window ending at collector tick i for the ordered pair (victim, aggressor): T model
  ticks, the last one ending at i, the previous ones at i - k, i - 2k, ...; it exists
  only when both VMs have a sample in each of the ticks i - T*k + 1 .. i.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

PER_VM = [
    "cpu_cores",
    "throttled_ratio",
    "rq_wait_ratio",
    "rq_mean_wait_log",
    "rq_max_wait_log",
    "preempt_rate_log",
    "preempted_ratio",
    "wakeup_rate_log",
    "psi_cpu_ratio",
    "psi_memory_ratio",
    "psi_io_ratio",
    "io_ops_log",
    "io_bytes_log",
    "io_latency_log",
    "major_faults_log",
    "memory_log",
    "class_cpu",
    "class_memory",
    "class_io",
    "class_other",
]
PAIR = [
    "pair_preempted_by_ratio",
    "pair_preempted_by_rate_log",
    "pair_preempts_ratio",
    "pair_host_preempted_ratio",
    "pair_shared_cpus",
]
TIME = ["time_day_sin", "time_day_cos", "time_week_sin", "time_week_cos"]

FEATURE_NAMES = ["v_" + n for n in PER_VM] + ["a_" + n for n in PER_VM] + PAIR + TIME
F = len(FEATURE_NAMES)
assert F == 49

IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}
# Features that are not normalised from data: mean 0, std 1 (docs/dataset.md).
ONE_HOT_IDX = [IDX[p + n] for p in ("v_", "a_") for n in PER_VM[16:20]]
TIME_IDX = [IDX[n] for n in TIME]
UNSCALED_IDX = sorted(ONE_HOT_IDX + TIME_IDX)

CLASSES = {
    "cpu": 0, "compute": 0, "batch": 0, "web": 0, "ctxsw": 0,
    "memory": 1, "mem": 1, "cache": 1, "membw": 1, "database": 1, "db": 1, "analytics": 1,
    "io": 2, "disk": 2, "fsync": 2, "storage": 2,
}  # anything else (or no label): 3 = other

MS_PER_DAY = 86_400_000
# 1970-01-01 was a Thursday: days since the epoch + 3 = days since a Monday 00:00 UTC.
EPOCH_WEEKDAY = 3


def workload_class(label: str | None) -> int:
    if label is None:
        return 3
    return CLASSES.get(label.lower(), 3)


def ln1p(x: float) -> float:
    return math.log1p(x)


def _num(x) -> float:
    """A nullable number: null counts as 0."""
    return 0.0 if x is None else float(x)


def _get(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p)
    return d


# --------------------------------------------------------------------------------------
# Reading samples


def read_samples(path: str, warn=sys.stderr) -> list[dict]:
    """VmSample lines of a samples.jsonl; an undecodable line (cut by a crash) is
    reported with its line number and skipped."""
    out = []
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                s = json.loads(line)
            except json.JSONDecodeError as e:
                if warn:
                    print(f"{path}:{n}: skipping undecodable line ({e})", file=warn)
                continue
            out.append(s)
    return out


@dataclass
class Timeline:
    """Samples of one experiment indexed by collector tick."""

    ticks: list[int]  # sorted distinct timestamp_ms
    by_vm: dict[str, list[dict | None]]  # vm -> sample per tick index (None: absent)
    interval_seconds: float

    @classmethod
    def from_samples(cls, samples: Iterable[dict]) -> "Timeline":
        samples = list(samples)
        ticks = sorted({int(s["timestamp_ms"]) for s in samples})
        index = {t: i for i, t in enumerate(ticks)}
        by_vm: dict[str, list[dict | None]] = {}
        intervals = []
        for s in samples:
            row = by_vm.setdefault(s["vm"], [None] * len(ticks))
            row[index[int(s["timestamp_ms"])]] = s  # a duplicate: the later line wins
            intervals.append(float(s["interval_seconds"]))
        intervals.sort()
        interval = intervals[len(intervals) // 2] if intervals else 1.0
        return cls(ticks, by_vm, interval)

    def k_for(self, tick_seconds: float) -> int:
        # interval_seconds is the measured tick length (1.0035 s for a 1 s collector):
        # the configured interval must divide tick_seconds, so round.
        k = round(tick_seconds / self.interval_seconds)
        if k < 1 or abs(k * self.interval_seconds - tick_seconds) > 0.1 * tick_seconds:
            raise ValueError(
                f"collector interval {self.interval_seconds} s does not divide "
                f"tick_seconds {tick_seconds}"
            )
        return k

    def complete_until(self, vm: str) -> list[int]:
        """run[i] = number of consecutive ticks ending at i in which vm has a sample."""
        row = self.by_vm.get(vm, [None] * len(self.ticks))
        run, n = [], 0
        for s in row:
            n = n + 1 if s is not None else 0
            run.append(n)
        return run


# --------------------------------------------------------------------------------------
# Aggregation into model ticks


@dataclass
class Agg:
    vm: str
    dt: float
    cpu_s: float
    throttled_s: float
    waits: float
    wait_s: float
    max_wait_s: float
    preempts: float
    preempted_s: float
    by_count: dict[str, float]
    by_seconds: dict[str, float]
    psi_cpu_s: float
    psi_memory_s: float
    psi_io_s: float
    io_ops: float
    io_bytes: float
    io_lat_s: float
    major_faults: float
    memory_bytes: float
    cpus: list[int] | None
    workload: str | None
    timestamp_ms: int


def aggregate(samples: Sequence[dict]) -> Agg:
    """k consecutive samples of one VM (oldest first) -> one model tick."""
    last = samples[-1]
    dt = cpu_s = thr = waits = wait_s = max_wait = pre = pre_s = 0.0
    psi_c = psi_m = psi_i = io_ops = io_bytes = io_lat = majf = 0.0
    by_count: dict[str, float] = {}
    by_seconds: dict[str, float] = {}
    for s in samples:
        dt += _num(s.get("interval_seconds"))
        cpu = s.get("cpu")
        cpu_s += _num(_get(cpu, "usage_seconds"))
        thr += _num(_get(cpu, "throttled_seconds"))
        rq = s.get("runqueue") or {}
        waits += _num(rq.get("waits"))
        wait_s += _num(rq.get("wait_seconds"))
        max_wait = max(max_wait, _num(rq.get("max_seconds")))
        pre += _num(rq.get("preemptions"))
        pre_s += _num(rq.get("preempted_seconds"))
        for p in s.get("preempted_by") or []:
            by = p["by"]
            by_count[by] = by_count.get(by, 0.0) + _num(p.get("count"))
            by_seconds[by] = by_seconds.get(by, 0.0) + _num(p.get("seconds"))
        psi = s.get("psi")
        psi_c += _num(_get(psi, "cpu", "some_seconds"))
        psi_m += _num(_get(psi, "memory", "some_seconds"))
        psi_i += _num(_get(psi, "io", "some_seconds"))
        bio = s.get("block_io")
        if bio is not None:
            io_ops += _num(bio.get("read_ops")) + _num(bio.get("write_ops")) + _num(bio.get("other_ops"))
            io_bytes += (
                _num(bio.get("read_bytes")) + _num(bio.get("write_bytes")) + _num(bio.get("other_bytes"))
            )
            io_lat += _num(bio.get("latency_seconds"))
        majf += _num(_get(s.get("memory"), "major_faults"))
    cpus = last.get("cpus")
    return Agg(
        vm=last["vm"],
        dt=dt,
        cpu_s=cpu_s,
        throttled_s=thr,
        waits=waits,
        wait_s=wait_s,
        max_wait_s=max_wait,
        preempts=pre,
        preempted_s=pre_s,
        by_count=by_count,
        by_seconds=by_seconds,
        psi_cpu_s=psi_c,
        psi_memory_s=psi_m,
        psi_io_s=psi_i,
        io_ops=io_ops,
        io_bytes=io_bytes,
        io_lat_s=io_lat,
        major_faults=majf,
        memory_bytes=_num(_get(last.get("memory"), "usage_bytes")),
        cpus=None if cpus is None else [int(c) for c in cpus],
        workload=last.get("workload"),
        timestamp_ms=int(last["timestamp_ms"]),
    )


# --------------------------------------------------------------------------------------
# Features of one model tick


def _per_dt(x: float, dt: float) -> float:
    # dt is a sum of positive intervals; guard a malformed 0 rather than divide by it.
    return x / dt if dt > 0 else 0.0


def vm_features(a: Agg) -> list[float]:
    dt = a.dt
    cls = workload_class(a.workload)
    one_hot = [1.0 if i == cls else 0.0 for i in range(4)]
    return [
        _per_dt(a.cpu_s, dt),
        _per_dt(a.throttled_s, dt),
        _per_dt(a.wait_s, dt),
        ln1p(1e6 * a.wait_s / max(a.waits, 1.0)),
        ln1p(1e6 * a.max_wait_s),
        ln1p(_per_dt(a.preempts, dt)),
        _per_dt(a.preempted_s, dt),
        ln1p(_per_dt(a.waits, dt)),
        _per_dt(a.psi_cpu_s, dt),
        _per_dt(a.psi_memory_s, dt),
        _per_dt(a.psi_io_s, dt),
        ln1p(_per_dt(a.io_ops, dt)),
        ln1p(_per_dt(a.io_bytes, dt)),
        ln1p(1e6 * a.io_lat_s / max(a.io_ops, 1.0)),
        ln1p(_per_dt(a.major_faults, dt)),
        ln1p(a.memory_bytes / 2.0**30),
    ] + one_hot


def shared_cpus(cpus_v: list[int] | None, cpus_a: list[int] | None) -> float:
    if cpus_v is None or cpus_a is None or len(cpus_v) == 0:
        return 1.0
    sv = set(cpus_v)
    return len(sv & set(cpus_a)) / len(sv)


def pair_features(v: Agg, a: Agg) -> list[float]:
    return [
        _per_dt(v.by_seconds.get(a.vm, 0.0), v.dt),
        ln1p(_per_dt(v.by_count.get(a.vm, 0.0), v.dt)),
        _per_dt(a.by_seconds.get(v.vm, 0.0), a.dt),
        _per_dt(v.by_seconds.get("host", 0.0), v.dt),
        shared_cpus(v.cpus, a.cpus),
    ]


def time_features(timestamp_ms: float) -> list[float]:
    s = (timestamp_ms % MS_PER_DAY) / 1000.0
    d = ((timestamp_ms / MS_PER_DAY) + EPOCH_WEEKDAY) % 7.0
    return [
        math.sin(2 * math.pi * s / 86400.0),
        math.cos(2 * math.pi * s / 86400.0),
        math.sin(2 * math.pi * d / 7.0),
        math.cos(2 * math.pi * d / 7.0),
    ]


def tick_features(v: Agg, a: Agg) -> list[float]:
    return vm_features(v) + vm_features(a) + pair_features(v, a) + time_features(v.timestamp_ms)


# --------------------------------------------------------------------------------------
# Windows


@dataclass
class Window:
    end_index: int  # collector tick index of the newest sample
    end_timestamp_ms: int
    victim: str
    aggressor: str
    features: list[list[float]]  # [T][F], raw (un-normalised)


def iter_windows(
    timeline: Timeline,
    t: int,
    tick_seconds: float,
    vms: Sequence[str] | None = None,
) -> Iterator[Window]:
    """Every window of every ordered pair of `vms` (default: all VMs of the samples,
    sorted), in order of end tick, then victim, then aggressor (in the order of `vms`).
    """
    k = timeline.k_for(tick_seconds)
    if vms is None:
        vms = sorted(timeline.by_vm)
    vms = [v for v in vms if v in timeline.by_vm]
    need = t * k
    runs = {vm: timeline.complete_until(vm) for vm in vms}
    agg_cache: dict[tuple[str, int], Agg] = {}

    def agg(vm: str, i: int) -> Agg:
        key = (vm, i)
        a = agg_cache.get(key)
        if a is None:
            row = timeline.by_vm[vm]
            a = aggregate(row[i - k + 1 : i + 1])
            agg_cache[key] = a
        return a

    for i in range(need - 1, len(timeline.ticks)):
        present = [vm for vm in vms if runs[vm][i] >= need]
        for v in present:
            for a in present:
                if a == v:
                    continue
                rows = []
                for j in range(t):
                    e = i - (t - 1 - j) * k
                    rows.append(tick_features(agg(v, e), agg(a, e)))
                yield Window(i, timeline.ticks[i], v, a, rows)
        # model ticks older than the oldest one a later window can use
        old = i - need + 1
        for vm in vms:
            agg_cache.pop((vm, old), None)
