"""Training samples from a trace: (VM, origin) rows with their raw inputs, level,
scale and the values to forecast (docs/forecast.md; features.py does the inputs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import features as fx
import trace as tr


def stored_values(t: "tr.Trace") -> np.ndarray:
    """The trace's values as the agent's rollup holds them: float32, gaps forward-filled
    (NaN before a VM's first value)."""
    return fx.ffill(t.values).astype(np.float32)


@dataclass
class Samples:
    x: np.ndarray  # float32 [n, T, F] raw inputs
    level: np.ndarray  # float64 [n]
    scale: np.ndarray  # float64 [n]
    future: np.ndarray  # float64 [n, K] d[t+h] for the model's horizons (NaN past the end)
    vm: np.ndarray  # int [n]
    origin: np.ndarray  # int [n] trace row of the origin

    def __len__(self) -> int:
        return len(self.vm)

    def subset(self, m) -> "Samples":
        return Samples(self.x[m], self.level[m], self.scale[m], self.future[m], self.vm[m], self.origin[m])


def first_values(values: np.ndarray) -> np.ndarray:
    """Row index of each VM's first value (its birth in the trace)."""
    ok = np.isfinite(values)
    return np.where(ok.any(axis=0), np.argmax(ok, axis=0), len(values))


def build(values: np.ndarray, vms: np.ndarray, origins: np.ndarray, origin_step: int = 0, *,
          young_fraction: float = 0.0, seed: int = 0, horizons=fx.HORIZONS,
          cfg: fx.Config = fx.DEFAULT, chunk: int = 20000) -> Samples:
    """Every (vm, origin) pair of the given VMs and origins whose origin has a value.
    With young_fraction > 0 a seeded share of the rows pretends the VM's history began
    `age` steps before the origin (age uniform in 1..history_steps), so the model sees
    the fills and masks of young VMs."""
    vv, tt = np.meshgrid(np.asarray(vms, dtype=np.int64), np.asarray(origins, dtype=np.int64), indexing="ij")
    vv, tt = vv.ravel(), tt.ravel()
    birth = first_values(values)
    keep = tt >= birth[vv]
    vv, tt = vv[keep], tt[keep]
    first = birth[vv].copy()
    if young_fraction > 0:
        rng = np.random.default_rng(seed)
        young = rng.random(len(vv)) < young_fraction
        age = rng.integers(1, cfg.history_steps + 1, size=len(vv))
        first = np.where(young, np.maximum(first, tt - age + 1), first)
    xs, ls, ss = [], [], []
    for i in range(0, len(vv), chunk):
        s = slice(i, i + chunk)
        get = fx.trace_accessor(values, tt[s], vv[s], first[s])
        x, lvl, sc = fx.inputs(get, origin_step + tt[s], cfg)
        xs.append(x), ls.append(lvl), ss.append(sc)
    hz = np.asarray(horizons, dtype=np.int64)
    tgt = tt[:, None] + hz[None, :]
    fut = np.where(tgt < len(values), values[np.clip(tgt, 0, len(values) - 1), vv[:, None]].astype(np.float64), np.nan)
    if not xs:
        return Samples(np.zeros((0, cfg.window, fx.F), np.float32), np.zeros(0), np.zeros(0),
                       np.zeros((0, len(hz))), vv, tt)
    return Samples(np.concatenate(xs), np.concatenate(ls), np.concatenate(ss), fut, vv, tt)
