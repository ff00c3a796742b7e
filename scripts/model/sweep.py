#!/usr/bin/env python3
"""Compares training variants of the Contention Score model by cross-validation.

    /var/cache/interference-model/venv/bin/python scripts/model/sweep.py \
        --data /var/cache/interference-dataset/full \
        --variants '[{}, {"hidden": 16, "class_dropout": 0.5, "noise": 0.3}]' [--ridge]

For each variant (keyword arguments of train_lstm.train, plus "exclude": [victim
kinds]): 4-fold cross-validation over whole training experiments picks the epoch count
and gives the CV MAE (the number to choose a variant by), then one fit on every
training experiment is scored on the held-out experiments, with both baselines on the
same windows (the numbers to report, never to choose by). --ridge adds ridge
regressions on the last model tick's features, a linear reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset as dsm  # noqa: E402
import evaluate_windows as ev  # noqa: E402
import features as fx  # noqa: E402
import train_lstm as tl  # noqa: E402

DEFAULTS = dict(hidden=32, seed=20260601, batch=256, lr=2e-3, weight_decay=1e-4, loss="mse",
                noise=0.0, class_dropout=0.0)


def held_out_line(ds, held, scores: np.ndarray) -> str:
    m = ev.metrics({"s": scores}, held, (25.0,))["predictors"]["s"]
    t = m["thresholds"]["25"]
    return (f"held-out MAE {m['mae']:.2f} Spearman {m['spearman']:.3f} anticipated@25 "
            f"{t['anticipated']}/{t['crossings']} false alarms {t['false_alarms']}/{t['alarm_onsets']}")


def lstm_variant(ds, folds, held, variant: dict, epochs: int, tick_seconds: float) -> str:
    v = dict(variant)
    exclude = v.pop("exclude", [])
    opts = {**DEFAULTS, **v}
    usable = ds.labelled & ~np.isin(ds.victim_kind(), exclude) & ~ds.held_out
    quiet = open(os.devnull, "w")
    cv = tl.cross_validate(ds, usable, folds, epochs=epochs, log=quiet, tick_seconds=tick_seconds, **opts)
    best = cv["epochs"]
    mean, std = tl.normalisation(ds.x[usable])
    params, _ = tl.train(tl.normalise(ds.x[usable], mean, std), ds.y[usable],
                         np.zeros((0,) + ds.x.shape[1:], np.float32), np.zeros(0), epochs=best,
                         patience=best, keep_last=True, log=quiet, tick_seconds=tick_seconds, **opts)
    s = tl.forward_numpy(params, tl.normalise(held.x, mean, std))
    return f"CV epochs {best}, CV MAE {cv['val_mae']:.2f}; " + held_out_line(ds, held, s)


def ridge_features(x: np.ndarray) -> np.ndarray:
    """The last model tick's data features (no time features) and the heuristic's terms."""
    last = x[:, -1, :]
    return np.c_[last[:, : fx.IDX["time_day_sin"]], dsm.run_queue_steal(last), dsm.heuristic_score(last) / 100.0]


def ridge_variant(ds, folds, held, lam: float) -> str:
    usable = ds.labelled & ~ds.held_out
    x = ridge_features(ds.x)
    mu, sd = x[usable].mean(0), x[usable].std(0) + 1e-9
    xn = np.c_[(x - mu) / sd, np.ones(len(x))]

    def fit(m):
        return np.linalg.solve(xn[m].T @ xn[m] + lam * np.eye(xn.shape[1]), xn[m].T @ ds.y[m])

    errs = []
    for fold in folds:
        in_fold = np.isin(ds.experiment, fold)
        w = fit(usable & ~in_fold)
        va = usable & in_fold
        errs.append(np.mean(np.abs(np.clip(xn[va] @ w, 0, 100) - ds.y[va])))
    s = np.clip(xn[ds.held_out & ds.labelled] @ fit(usable), 0, 100)
    return f"CV MAE {np.mean(errs):.2f}; " + held_out_line(ds, held, s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=tl.DEFAULT_DATA)
    ap.add_argument("--variants", default="[{}]", help="JSON list of variants")
    ap.add_argument("--epochs", type=int, default=60, help="epochs of each fold")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--ridge", action="store_true", help="add ridge regressions (λ 1, 10, 100)")
    ap.add_argument("--window", type=int, default=6)
    ap.add_argument("--tick-seconds", type=int, default=5)
    ap.add_argument("--horizon", type=int, default=1)
    a = ap.parse_args()
    try:
        variants = json.loads(a.variants)
        if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
            raise ValueError("not a list of objects")
    except ValueError as e:
        sys.exit(f"--variants: {e}")
    import jax

    jax.config.update("jax_platforms", "cpu")
    ds = dsm.load_dataset(a.data, a.window, a.tick_seconds, a.horizon)
    train_exps = sorted({int(e) for e in ds.experiment[ds.labelled & ~ds.held_out]})
    folds = tl.experiment_folds(train_exps, a.folds, DEFAULTS["seed"])
    held = ds.subset(ds.held_out & ds.labelled)
    for name in ("heuristic", "persistence", "present"):
        print(f"{name}: {held_out_line(ds, held, getattr(held, name))}")
    for v in variants:
        t0 = time.time()
        print(f"{json.dumps(v)}: {lstm_variant(ds, folds, held, v, a.epochs, a.tick_seconds)} "
              f"({time.time() - t0:.0f} s)", flush=True)
    if a.ridge:
        for lam in (1.0, 10.0, 100.0):
            print(f"ridge λ {lam:g}: {ridge_variant(ds, folds, held, lam)}", flush=True)


if __name__ == "__main__":
    main()
