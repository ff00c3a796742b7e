"""A contention dataset as arrays: windows, labels, baselines (docs/dataset.md).

    ds = load_dataset("/var/cache/interference-dataset/full", t=6, tick_seconds=5, horizon=1)
    ds.x          # [N, T, F] float64, raw (un-normalised) features
    ds.y          # [N] victim slowdown over the next horizon, 0-100 (NaN: no label)
    ds.persistence, ds.heuristic   # [N] the two baselines' scores, 0-100
    ds.present    # [N] measured slowdown over the last collector tick (a reference)
    ds.experiment # [N] index into ds.experiments
    ds.held_out   # [N] bool, the window's experiment is held out (cache / ctxsw)

`python3 scripts/model/dataset.py DIR` prints a summary of a dataset.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import features as fx  # noqa: E402

IDLE_BUSY_PER_SECOND = 0.05  # below this the victim was idle: no label


# --------------------------------------------------------------------------------------
# Progress rates and labels


@dataclass
class Rates:
    """One workload's rates.jsonl lines, with prefix sums for range queries."""

    ts: np.ndarray  # int64 timestamp_ms, sorted
    cum_ops: np.ndarray  # float64, cum_ops[i] = sum of ops of lines [0, i)
    cum_busy: np.ndarray

    @classmethod
    def from_lines(cls, lines: list[dict]) -> "Rates":
        lines = sorted(lines, key=lambda r: r["timestamp_ms"])
        ts = np.array([int(r["timestamp_ms"]) for r in lines], dtype=np.int64)
        ops = np.array([float(r.get("ops") or 0.0) for r in lines])
        busy = np.array([float(r.get("busy_seconds") or 0.0) for r in lines])
        return cls(ts, np.concatenate([[0.0], np.cumsum(ops)]), np.concatenate([[0.0], np.cumsum(busy)]))

    def sums(self, start_ms, end_ms):
        """(ops, busy) summed over lines with start_ms < timestamp_ms <= end_ms;
        vectorised over numpy arrays of bounds."""
        lo = np.searchsorted(self.ts, start_ms, side="right")
        hi = np.searchsorted(self.ts, end_ms, side="right")
        return self.cum_ops[hi] - self.cum_ops[lo], self.cum_busy[hi] - self.cum_busy[lo]


def read_rates(path: str) -> dict[str, Rates]:
    by_vm: dict[str, list[dict]] = {}
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"{path}:{n}: skipping undecodable line ({e})", file=sys.stderr)
                continue
            by_vm.setdefault(r["vm"], []).append(r)
    return {vm: Rates.from_lines(lines) for vm, lines in by_vm.items()}


def solo_speed(rates: Rates | None, windows: list[list[int]]) -> float | None:
    """Mean speed (Σ ops / Σ busy_seconds) over the lines inside the solo windows
    (start_ms < timestamp_ms <= end_ms); None without a busy second in them."""
    if rates is None or not windows:
        return None
    ops = busy = 0.0
    for start, end in windows:
        o, b = rates.sums(start, end)
        ops += float(o)
        busy += float(b)
    if busy <= 0 or ops <= 0:
        return None
    return ops / busy


def slowdown(rates: Rates | None, solo: float | None, start_ms, end_ms, seconds: float):
    """100 * clamp(1 - (Σ ops / Σ busy) / solo, 0, 1) over start_ms < ts <= end_ms,
    NaN where the victim was idle (< 0.05 busy seconds per second) or has no solo speed.
    Vectorised over arrays of bounds."""
    start_ms = np.asarray(start_ms, dtype=np.int64)
    end_ms = np.asarray(end_ms, dtype=np.int64)
    out = np.full(start_ms.shape, np.nan)
    if rates is None or solo is None:
        return out
    ops, busy = rates.sums(start_ms, end_ms)
    ok = busy >= IDLE_BUSY_PER_SECOND * seconds
    speed = np.where(ok, ops / np.where(ok, busy, 1.0), 0.0)
    out[ok] = 100.0 * np.clip(1.0 - speed[ok] / solo, 0.0, 1.0)
    return out


# --------------------------------------------------------------------------------------
# Baselines


def run_queue_steal(tick: np.ndarray) -> np.ndarray:
    """The victim's share of its runnable time spent waiting, from raw features
    ([..., F] -> [...]): wait / (cores + wait), 0 when both are 0."""
    cores = tick[..., fx.IDX["v_cpu_cores"]]
    wait = tick[..., fx.IDX["v_rq_wait_ratio"]]
    denom = cores + wait
    return np.where(denom > 0, wait / np.where(denom > 0, denom, 1.0), 0.0)


def heuristic_score(last_tick: np.ndarray) -> np.ndarray:
    """The threshold heuristic from the raw features of the window's last model tick
    ([..., F] -> [...]): 100 * steal * share, clamped to 0-100 (as the agent's
    `--scorer heuristic`)."""
    preempted = last_tick[..., fx.IDX["v_preempted_ratio"]]
    by = last_tick[..., fx.IDX["pair_preempted_by_ratio"]]
    share = np.where(preempted > 0, np.minimum(1.0, by / np.where(preempted > 0, preempted, 1.0)), 0.0)
    return np.clip(100.0 * run_queue_steal(last_tick) * share, 0.0, 100.0)


# --------------------------------------------------------------------------------------
# Dataset


def list_experiments(root: str) -> list[str]:
    """Experiment directories (those with an experiment.json, i.e. complete), sorted."""
    out = []
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if os.path.isdir(d) and os.path.isfile(os.path.join(d, "experiment.json")):
            out.append(d)
    return out


def data_sha256(root: str, experiments: list[str] | None = None) -> str:
    """SHA-256 over the files of the dataset's complete experiments: for each file, in
    order of its path relative to the dataset root ('/'-separated, sorted as strings):
    the path's UTF-8 bytes, a NUL, the file's length in decimal, a NUL, its bytes."""
    if experiments is None:
        experiments = list_experiments(root)
    files = []
    for d in experiments:
        for dirpath, _dirs, names in os.walk(d):
            for n in names:
                p = os.path.join(dirpath, n)
                files.append(os.path.relpath(p, root).replace(os.sep, "/"))
    h = hashlib.sha256()
    for rel in sorted(files):
        with open(os.path.join(root, rel), "rb") as f:
            data = f.read()
        h.update(rel.encode("utf-8") + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


@dataclass
class Dataset:
    root: str
    t: int
    tick_seconds: float
    horizon: int
    k: int
    experiments: list[dict]  # experiment.json contents, plus "dir"
    x: np.ndarray
    y: np.ndarray
    persistence: np.ndarray
    heuristic: np.ndarray
    present: np.ndarray
    experiment: np.ndarray
    held_out: np.ndarray
    end_ms: np.ndarray
    end_index: np.ndarray  # collector tick index of the window's newest sample
    victim: list[str]
    aggressor: list[str]
    solo: list[dict] = field(default_factory=list)  # per experiment: vm -> solo speed

    @property
    def labelled(self) -> np.ndarray:
        return ~np.isnan(self.y)

    def victim_kind(self) -> np.ndarray:
        """The workload kind (experiment.json) of each window's victim ("" if unknown)."""
        kinds = [{w["vm"]: w.get("kind", "") for w in e.get("workloads", [])} for e in self.experiments]
        return np.array([kinds[int(e)].get(v, "") for e, v in zip(self.experiment, self.victim)], dtype=object)

    def subset(self, mask: np.ndarray) -> "Dataset":
        idx = np.nonzero(mask)[0]
        return Dataset(
            self.root, self.t, self.tick_seconds, self.horizon, self.k, self.experiments,
            self.x[idx], self.y[idx], self.persistence[idx], self.heuristic[idx], self.present[idx],
            self.experiment[idx], self.held_out[idx], self.end_ms[idx], self.end_index[idx],
            [self.victim[i] for i in idx], [self.aggressor[i] for i in idx], self.solo,
        )

    def __len__(self) -> int:
        return len(self.y)


def experiment_windows(d: str, t: int, tick_seconds: float, horizon: int):
    """(meta, windows, label, persistence, present, solo speeds, k) of one experiment
    directory."""
    with open(os.path.join(d, "experiment.json"), "r", encoding="utf-8") as f:
        meta = json.load(f)
    meta["dir"] = d
    timeline = fx.Timeline.from_samples(fx.read_samples(os.path.join(d, "samples.jsonl")))
    k = timeline.k_for(tick_seconds)
    rates = read_rates(os.path.join(d, "rates.jsonl"))
    vms = [w["vm"] for w in meta.get("workloads", [])] or None
    solo_windows = meta.get("solo") or {}
    solo = {vm: solo_speed(rates.get(vm), solo_windows.get(vm, [])) for vm in (vms or timeline.by_vm)}
    wins = list(fx.iter_windows(timeline, t, tick_seconds, vms))
    tick_ms = int(round(tick_seconds * 1000))
    end = np.array([w.end_timestamp_ms for w in wins], dtype=np.int64)
    label = np.full(len(wins), np.nan)
    persist = np.full(len(wins), np.nan)
    present = np.full(len(wins), np.nan)
    interval_ms = tick_ms // k
    for vm in set(w.victim for w in wins):
        m = np.array([w.victim == vm for w in wins])
        label[m] = slowdown(rates.get(vm), solo.get(vm), end[m], end[m] + horizon * tick_ms, horizon * tick_seconds)
        persist[m] = slowdown(rates.get(vm), solo.get(vm), end[m] - tick_ms, end[m], tick_seconds)
        present[m] = slowdown(rates.get(vm), solo.get(vm), end[m] - interval_ms, end[m], interval_ms / 1000)
    return meta, wins, label, persist, present, solo, k


def load_dataset(root: str, t: int = 6, tick_seconds: float = 5, horizon: int = 1,
                 experiments: list[str] | None = None, verbose: bool = False) -> Dataset:
    dirs = experiments if experiments is not None else list_experiments(root)
    metas, solos = [], []
    xs, ys, ps, prs, es, ends, idxs, vs, ags = [], [], [], [], [], [], [], [], []
    k_all = None
    for ei, d in enumerate(dirs):
        meta, wins, label, persist, present, solo, k = experiment_windows(d, t, tick_seconds, horizon)
        k_all = k if k_all is None else k_all
        if k != k_all:
            raise ValueError(f"{d}: collector interval differs from the other experiments'")
        metas.append(meta)
        solos.append(solo)
        if verbose:
            n_lab = int(np.sum(~np.isnan(label)))
            print(f"  {os.path.basename(d)}: {len(wins)} windows, {n_lab} labelled, "
                  f"held_out={bool(meta.get('held_out'))}, solo={solo}", file=sys.stderr)
        if not wins:
            continue
        xs.append(np.array([w.features for w in wins], dtype=np.float64))
        ys.append(label)
        ps.append(persist)
        prs.append(present)
        es.append(np.full(len(wins), ei, dtype=np.int64))
        ends.append(np.array([w.end_timestamp_ms for w in wins], dtype=np.int64))
        idxs.append(np.array([w.end_index for w in wins], dtype=np.int64))
        vs += [w.victim for w in wins]
        ags += [w.aggressor for w in wins]
    if xs:
        x = np.concatenate(xs)
        y = np.concatenate(ys)
        pers = np.concatenate(ps)
        pres = np.concatenate(prs)
        exp = np.concatenate(es)
        end = np.concatenate(ends)
        end_index = np.concatenate(idxs)
    else:
        x = np.zeros((0, t, fx.F))
        y = pers = pres = np.zeros(0)
        exp = end = end_index = np.zeros(0, dtype=np.int64)
    held = np.array([bool(metas[e].get("held_out")) for e in exp], dtype=bool)
    # Persistence has a score for every window: an idle last tick measured no slowdown.
    pers = np.nan_to_num(pers, nan=0.0)
    pres = np.nan_to_num(pres, nan=0.0)
    heur = heuristic_score(x[:, -1, :]) if len(x) else np.zeros(0)
    return Dataset(root, t, tick_seconds, horizon, k_all or 0, metas, x, y, pers, heur, pres,
                   exp, held, end, end_index, vs, ags, solos)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--window", type=int, default=6)
    ap.add_argument("--tick-seconds", type=float, default=5)
    ap.add_argument("--horizon", type=int, default=1)
    a = ap.parse_args()
    ds = load_dataset(a.data, a.window, a.tick_seconds, a.horizon, verbose=True)
    lab = ds.labelled
    print(f"{len(ds.experiments)} experiments, {len(ds)} windows, {int(lab.sum())} labelled "
          f"({int((lab & ds.held_out).sum())} held out), k = {ds.k}")
    if lab.any():
        y = ds.y[lab]
        print("label percentiles 10/50/90/99: " + " ".join(f"{np.percentile(y, q):.1f}" for q in (10, 50, 90, 99)))
        print(f"share of labels >= 25: {np.mean(y >= 25):.3f}")
    print("data sha256:", data_sha256(a.data))


if __name__ == "__main__":
    main()
