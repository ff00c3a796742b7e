#!/usr/bin/env python3
"""Trains the demand forecaster (JAX + optax on CPU), cross-validates it over VMs and
time, and ships it. The defaults are the shipped model's recipe (the mean of 3 MLPs of 2 x 256
ReLU units; `--ensemble 1` is one of them, `--arch lstm --hidden 32 --lr 3e-3
--ensemble 1` the LSTM alternative of models/README.md).

    V=/var/cache/interference-model/venv/bin/python
    nice -n 10 $V scripts/forecast/train.py                # CV, final fit, export (models/)
    nice -n 10 $V scripts/forecast/train.py --no-export    # CV only
    nice -n 10 $V scripts/forecast/train.py --no-cv        # final fit and export only

Cross-validation (splits.py): 5 folds of whole VMs x 2 blocks of time; each of the 10
models is trained on the other folds' VMs and the other block's targets (a day of purge
between), and forecasts its test cells. Their forecasts are written as replay JSONL
(--cv-out, default /var/cache/interference-model/work/demand-forecast.cv.jsonl.gz),
which scripts/forecast/evaluate.py scores like any other forecaster's. Then one model is
trained on every VM and every sample of the trace with the same recipe, saved to --work,
and export.py writes models/demand-forecast.{onnx,json,golden.json}.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset as dsm  # noqa: E402
import features as fx  # noqa: E402
import model as mdl  # noqa: E402
import splits as sp  # noqa: E402
import trace as tr  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_TRACE = os.path.normpath(os.path.join(REPO, "..", "shared", "traces", "azure-v1-cpu-avg-5min-train.csv.gz"))
DEFAULT_WORK = "/var/cache/interference-model/work"
NAME = "demand-forecast"


# --------------------------------------------------------------------------------------
# Normalisation


def normalisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over every position of the training rows, float32. A
    constant feature's std is 1; masks and time features have mean 0 and std 1."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std = np.where(std > 1e-6 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    mean[fx.UNSCALED_IDX] = 0.0
    std[fx.UNSCALED_IDX] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std in float32, subtract then divide (the agent does the same)."""
    return ((x.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)


# --------------------------------------------------------------------------------------
# Training


def targets(s: "dsm.Samples") -> np.ndarray:
    return fx.scaled_target(s.future, s.level, s.scale).astype(np.float32)


def fit(s: "dsm.Samples", *, hidden: int, epochs: int, lr: float, batch: int, weight_decay: float,
        seed: int, weighting: str = "scale", arch: str = "lstm", log=sys.stderr, tag: str = ""):
    """Trains on samples s (all of whose futures are known). Loss: mean over rows and
    horizons of w x |out - target|, w = the row's scale S (so the loss is the MAE in
    percentage points, the metric) or 1 (weighting "none"); AdamW with a cosine decay
    of the learning rate to 0 over `epochs`, global-norm clip 1.
    Returns (params as numpy, mean, std, history)."""
    import jax
    import jax.numpy as jnp
    import optax

    mean, std = normalisation(s.x)
    x = normalise(s.x, mean, std)
    y = targets(s)
    w = (s.scale if weighting == "scale" else np.ones(len(s))).astype(np.float32)
    w = w / w.mean()
    n, k = len(x), y.shape[1]
    steps = max(1, n // batch)
    key = jax.random.PRNGKey(seed)
    if arch == "mlp":
        params = mdl.init_mlp(key, x.shape[1], x.shape[2], hidden, k)
        fwd = mdl.forward_mlp
    else:
        params = mdl.init_params(key, x.shape[-1], hidden, k)
        fwd = mdl.forward
    sched = optax.cosine_decay_schedule(lr, epochs * steps)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=weight_decay))
    state = opt.init(params)

    def loss_fn(p, xb, yb, wb):
        out = fwd(p, xb)
        return jnp.mean(wb[:, None] * jnp.abs(out - yb))

    @jax.jit
    def step(p, st, xb, yb, wb):
        l, g = jax.value_and_grad(loss_fn)(p, xb, yb, wb)
        u, st = opt.update(g, st, p)
        return optax.apply_updates(p, u), st, l

    rng = np.random.default_rng(seed)
    t0 = time.time()
    hist = []
    for epoch in range(1, epochs + 1):
        perm = rng.permutation(n)
        tot = 0.0
        for b in range(steps):
            idx = perm[b * batch : (b + 1) * batch]
            params, state, l = step(params, state, x[idx], y[idx], w[idx])
            tot += float(l)
        hist.append(tot / steps)
        print(f"{tag}epoch {epoch:3d}  train loss {tot / steps:.4f}  {time.time() - t0:.0f} s", file=log)
    return jax.tree_util.tree_map(np.asarray, params), mean, std, {"train_loss": hist, "seconds": time.time() - t0}


def fit_ensemble(s: "dsm.Samples", a, seed: int, log=sys.stderr, tag: str = ""):
    """a.ensemble fits on the same rows, member i with seed + 1000 i (initial weights and
    batch order); the model's output is the mean of theirs."""
    fits = [fit(s, hidden=a.hidden, epochs=a.epochs, lr=a.lr, batch=a.batch, weight_decay=a.weight_decay,
                seed=seed + 1000 * i, weighting=a.weighting, arch=a.arch, log=log,
                tag=tag + (f"member {i + 1}/{a.ensemble}: " if a.ensemble > 1 else ""))
            for i in range(a.ensemble)]
    hist = {"train_loss": fits[0][3]["train_loss"], "seconds": sum(f[3]["seconds"] for f in fits)}
    return mdl.ensemble([f[0] for f in fits]), fits[0][1], fits[0][2], hist


def forecast(params, mean, std, s: "dsm.Samples") -> np.ndarray:
    """Forecasts [n, K] of samples s, as the agent computes them (JAX forward)."""
    out = mdl.predict(params, normalise(s.x, mean, std))
    return fx.forecast_from_output(out, s.level, s.scale)


# --------------------------------------------------------------------------------------
# Cross-validation


def training_samples(values, vms, origins, a, seed) -> "dsm.Samples":
    origins = origins[(origins % a.stride) == 0]
    return dsm.build(values, vms, origins, young_fraction=a.young, seed=seed)


def cross_validate(trace: "tr.Trace", a, log=sys.stderr) -> dict:
    """The 10 fits; returns {"pred": {h: [K, V] forecasts}, "folds": ..., "seconds"}."""
    values = dsm.stored_values(trace)
    kk, v = values.shape
    cfg = fx.DEFAULT
    folds = sp.vm_folds(v, a.folds, a.seed)
    # Scored: targets from the start of day 8 (the first row with a last-week value).
    blocks = sp.TimeBlocks.halves(kk, cfg.week_steps, a.purge)
    pred = {h: np.full((kk, v), np.nan) for h in fx.HORIZONS}
    t0 = time.time()
    for fi, test_vms in enumerate(folds):
        train_vms = np.setdiff1d(np.arange(v), test_vms)
        for b in (0, 1):
            if a.only_fold is not None and (fi, b) != (a.only_fold, 0):
                continue
            seed = a.seed + 100 * fi + b
            org = blocks.train_origins(b, min(fx.HORIZONS), max(fx.HORIZONS))
            s = training_samples(values, train_vms, org, a, seed)
            tag = f"fold {fi + 1}/{len(folds)} block {b}: "
            print(f"{tag}{len(s)} training rows ({len(train_vms)} VMs, origins {org[0]}..{org[-1]})", file=log)
            params, mean, std, _ = fit_ensemble(s, a, seed, log=log, tag=tag)
            lo, hi = blocks.test_rows(b)
            # Every origin whose target (at some horizon) falls in the test block.
            origins = np.arange(max(0, lo - max(fx.HORIZONS)), hi - 1)
            ts = dsm.build(values, test_vms, origins)
            f = forecast(params, mean, std, ts)
            for j, h in enumerate(fx.HORIZONS):
                rows = ts.origin + h
                ok = (rows >= lo) & (rows < hi)
                pred[h][rows[ok], ts.vm[ok]] = f[ok, j]
            done = {h: np.abs(pred[h][lo:hi][:, test_vms] - values[lo:hi][:, test_vms]).mean() for h in (1, 12)}
            print(f"{tag}test MAE h1 {done[1]:.3f} h12 {done[12]:.3f} ({time.time() - t0:.0f} s)", file=log)
    return {"pred": pred, "folds": [[trace.vms[i] for i in f] for f in folds],
            "blocks": {"start": blocks.start, "split": blocks.split, "end": blocks.end, "purge": blocks.purge},
            "seconds": time.time() - t0}


def write_jsonl(path: str, trace: "tr.Trace", pred: dict, horizons) -> None:
    """Forecast arrays in the replay's JSONL format (docs/forecast.md): one line per
    scored cell, `minute` the target's."""
    step = trace.step_minutes
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wt") as f:
        for h in horizons:
            p = pred[h]
            rows, cols = np.nonzero(np.isfinite(p))
            order = np.lexsort((cols, rows))
            for i, j in zip(rows[order], cols[order]):
                f.write(json.dumps({"vm": trace.vms[j], "minute": int(trace.minutes[i]),
                                    "horizon_min": int(h * step), "forecast": round(float(p[i, j]), 4)}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", default=DEFAULT_TRACE)
    ap.add_argument("--out", default=os.path.join(REPO, "models"))
    ap.add_argument("--work", default=DEFAULT_WORK)
    ap.add_argument("--cv-out", default=None, help="CV forecasts as JSONL (default <work>/demand-forecast.cv.jsonl.gz)")
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--arch", choices=["lstm", "mlp"], default="mlp")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--ensemble", type=int, default=3, help="members whose outputs are averaged")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--weighting", choices=["scale", "none"], default="scale")
    ap.add_argument("--young", type=float, default=0.2, help="share of rows with a simulated young VM")
    ap.add_argument("--stride", type=int, default=2, help="every stride-th origin is a training row")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--purge", type=int, default=fx.DAY_STEPS)
    ap.add_argument("--seed", type=int, default=20261216)
    ap.add_argument("--no-cv", action="store_true")
    ap.add_argument("--cv-from", default=None, metavar="JSONL",
                    help="skip the CV: use the forecasts an earlier --no-export run of the same recipe wrote")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--only-fold", type=int, default=None, help="debug: one CV fit (fold index, block 0)")
    a = ap.parse_args()

    if a.arch == "lstm" and a.ensemble > 1:
        sys.exit("--arch lstm exports one member only: add --ensemble 1")
    import jax

    jax.config.update("jax_platforms", "cpu")
    t_start = time.time()
    trace = tr.load(a.trace)
    os.makedirs(a.work, exist_ok=True)
    recipe = {k: getattr(a, k) for k in ("arch", "ensemble", "hidden", "epochs", "lr", "batch", "weight_decay", "weighting",
                                         "young", "stride", "folds", "purge", "seed")}
    cv_meta = None
    if a.cv_from:
        # CV forecasts of an earlier `--no-export` run of the same recipe (deterministic:
        # the same folds and forecasts); only the final fit runs here.
        kk, v = trace.values.shape
        folds = sp.vm_folds(v, a.folds, a.seed)
        b = sp.TimeBlocks.halves(kk, fx.DEFAULT.week_steps, a.purge)
        cv_meta = {"folds": [[trace.vms[i] for i in f] for f in folds],
                   "blocks": {"start": b.start, "split": b.split, "end": b.end, "purge": b.purge},
                   "seconds": None, "jsonl": a.cv_from}
    elif not a.no_cv:
        cv = cross_validate(trace, a)
        cv_path = a.cv_out or os.path.join(a.work, f"{NAME}.cv.jsonl.gz")
        write_jsonl(cv_path, trace, cv["pred"], (1, 12))
        cv_meta = {"folds": cv["folds"], "blocks": cv["blocks"], "seconds": round(cv["seconds"], 1),
                   "jsonl": cv_path}
        print(f"cross-validation forecasts: {cv_path} ({cv['seconds']:.0f} s)", file=sys.stderr)
    if a.no_export:
        return
    values = dsm.stored_values(trace)
    kk, v = values.shape
    org = np.arange(0, kk - max(fx.HORIZONS))
    s = training_samples(values, np.arange(v), org, a, a.seed)
    print(f"final fit: {len(s)} rows, {v} VMs", file=sys.stderr)
    params, mean, std, hist = fit_ensemble(s, a, a.seed)
    meta = {"name": NAME, "version": a.version, "trace": os.path.abspath(a.trace), "trace_sha256": trace.sha256,
            "recipe": recipe, "train_rows": len(s), "train_seconds": round(hist["seconds"], 1),
            "train_loss": hist["train_loss"], "cross_validation": cv_meta}
    weights = os.path.join(a.work, f"{NAME}.weights.npz")
    np.savez(weights, mean=mean, std=std, meta=json.dumps(meta),
             **{k: np.asarray(val, dtype=np.float32) for k, val in params.items()})
    print(f"weights: {weights}", file=sys.stderr)
    import export

    export.export_all(weights, a.out, trace=trace)
    print(f"done in {time.time() - t_start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
