#!/usr/bin/env python3
"""A gradient-boosted reference for the demand forecaster (LightGBM, L1 objective, one
model per horizon), cross-validated with exactly the model's splits (splits.py). Not
shipped: it tells what hand-made robust features reach, for comparison.

    V=/var/cache/interference-model/venv/bin/python
    nice -n 10 $V scripts/forecast/gbm_reference.py --out /var/cache/interference-model/work/gbm.cv.jsonl.gz
    $V scripts/forecast/evaluate.py --pred gbm=/var/cache/interference-model/work/gbm.cv.jsonl.gz

Features, for the target t + h (all values as asinh((v - L) / S), NaN where the VM has
no value): the last 12 values; medians of the last 3, 6, 24, 48 and 288; the same time
yesterday and last week at t+h-3 .. t+h+3, their medians over those 7 and over the
12 steps before t one day / one week earlier; the phase of the day and of the week of
the target; ln S and L / 100.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset as dsm  # noqa: E402
import features as fx  # noqa: E402
import splits as sp  # noqa: E402
import trace as tr  # noqa: E402
import train as trn  # noqa: E402


def gbm_features(values, vv, tt, first, h: int, cfg: fx.Config = fx.DEFAULT):
    get = fx.trace_accessor(values, tt, vv, first)
    lvl, s, _ = fx.level_scale(get, cfg)
    rel = lambda v: np.arcsinh((v - lvl[:, None]) / s[:, None])  # noqa: E731
    med = fx.median_available
    cols = [rel(get(np.arange(12)))]
    for k in (3, 6, 24, 48, 288):
        cols.append(rel(med(get(np.arange(k)))[:, None]))
    for period in (cfg.day_steps, cfg.week_steps):
        around = get(period - h + np.arange(-3, 4))  # d[t + h - period + k], k = 3..-3
        cols.append(rel(around))
        cols.append(rel(med(around)[:, None]))
        cols.append(rel(med(get(period + np.arange(12)))[:, None]))
    tgt = tt + h
    cols.append(((tgt % cfg.day_steps) / cfg.day_steps)[:, None])
    cols.append(((tgt % cfg.week_steps) / cfg.week_steps)[:, None])
    cols.append(np.log(s)[:, None])
    cols.append((lvl / 100.0)[:, None])
    return np.concatenate(cols, axis=1), lvl, s


def rows(values, vms, origins, young, seed, cfg=fx.DEFAULT):
    vv, tt = np.meshgrid(vms, origins, indexing="ij")
    vv, tt = vv.ravel(), tt.ravel()
    first = np.zeros(len(vv), dtype=np.int64)
    if young > 0:
        rng = np.random.default_rng(seed)
        y = rng.random(len(vv)) < young
        age = rng.integers(1, cfg.history_steps + 1, size=len(vv))
        first = np.where(y, np.maximum(0, tt - age + 1), 0)
    return vv, tt, first


def main() -> None:
    import lightgbm as lgb

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", default=trn.DEFAULT_TRACE)
    ap.add_argument("--out", required=True)
    ap.add_argument("--horizons", default="1,12", help="steps")
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--young", type=float, default=0.2)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=20261216)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    trace = tr.load(a.trace)
    values = dsm.stored_values(trace)
    kk, v = values.shape
    folds = sp.vm_folds(v, a.folds, a.seed)
    blocks = sp.TimeBlocks.halves(kk, fx.DEFAULT.week_steps, fx.DAY_STEPS)
    hs = [int(x) for x in a.horizons.split(",")]
    pred = {h: np.full((kk, v), np.nan) for h in hs}
    t0 = time.time()
    for fi, test_vms in enumerate(folds):
        train_vms = np.setdiff1d(np.arange(v), test_vms)
        for b in (0, 1):
            org = blocks.train_origins(b, min(fx.HORIZONS), max(fx.HORIZONS))
            org = org[org % a.stride == 0]
            vv, tt, first = rows(values, train_vms, org, a.young, a.seed + 100 * fi + b)
            lo, hi = blocks.test_rows(b)
            for h in hs:
                x, lvl, s = gbm_features(values, vv, tt, first, h)
                y = (values[tt + h, vv] - lvl) / s
                params = dict(objective="l1", learning_rate=0.05, num_leaves=31, min_data_in_leaf=200,
                              feature_fraction=0.8, bagging_fraction=0.5, bagging_freq=1, seed=a.seed,
                              deterministic=True, force_row_wise=True, num_threads=a.threads, verbose=-1)
                m = lgb.train(params, lgb.Dataset(x, y, weight=s / s.mean()), num_boost_round=a.rounds)
                tv, tt2 = np.meshgrid(test_vms, np.arange(lo - h, hi - h), indexing="ij")
                tv, tt2 = tv.ravel(), tt2.ravel()
                xt, lt, st = gbm_features(values, tv, tt2, np.zeros(len(tv), dtype=np.int64), h)
                pred[h][tt2 + h, tv] = np.maximum(0.0, lt + st * m.predict(xt))
                err = np.abs(pred[h][lo:hi][:, test_vms] - values[lo:hi][:, test_vms]).mean()
                print(f"fold {fi + 1} block {b} h {h}: test MAE {err:.3f} ({time.time() - t0:.0f} s)", file=sys.stderr)
    trn.write_jsonl(a.out, trace, pred, hs)


if __name__ == "__main__":
    main()
