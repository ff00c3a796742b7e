#!/usr/bin/env python3
"""Trains the Contention Score model (JAX + optax, CPU) and ships it.

    /var/cache/interference-model/venv/bin/python scripts/model/train_lstm.py \
        --data /var/cache/interference-dataset/full

One command does it all: loads the dataset (docs/dataset.md), trains a one-layer
forward LSTM on the windows of the non-held-out experiments (the number of epochs is
chosen by 4-fold cross-validation whose folds are whole experiments, then one fit on all
of them; --folds 1: one validation split of experiments and early stopping), saves the
weights to --work, then exports
models/contention-lstm.onnx, checks it against onnxruntime, evaluates it and both
baselines on the held-out experiments, and writes the sidecar and golden vectors
(export_onnx.py, which can also be rerun alone from the saved weights).

The model, in ONNX's terms so that the export is a copy: gates in the order i, o, f, c;
W [4H, F], R [4H, H], Wb and Rb [4H]; h_0 = c_0 = 0;
  i, o, f = sigmoid(x W_{i,o,f}^T + h R_{i,o,f}^T + Wb + Rb), g = tanh(... c ...),
  c' = f c + i g, h' = o tanh(c'); output 100 * sigmoid(h_T . head_w + head_b).
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
import features as fx  # noqa: E402
from lstm_model import (  # noqa: E402,F401
    DEFAULT_WORK, HELD_OUT_CLASSES, forward, forward_numpy, init_params, normalisation, normalise, predict,
)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_DATA = "/var/cache/interference-dataset/full"
DAY_MS = 86_400_000


# --------------------------------------------------------------------------------------
# Normalisation


def random_time_features(rng: np.random.Generator, n: int, t: int, tick_seconds: float) -> np.ndarray:
    """[n, t, 4] time features of windows ending at a uniformly random instant of the
    week (so a uniformly random time of day and day of week)."""
    end = rng.uniform(0.0, 7.0 * DAY_MS, n)
    ts = end[:, None] - (t - 1 - np.arange(t))[None, :] * tick_seconds * 1000.0
    ts = np.mod(ts, 7.0 * DAY_MS)
    s = np.mod(ts, DAY_MS) / 1000.0
    d = np.mod(ts / DAY_MS + fx.EPOCH_WEEKDAY, 7.0)
    return np.stack([np.sin(2 * np.pi * s / 86400.0), np.cos(2 * np.pi * s / 86400.0),
                     np.sin(2 * np.pi * d / 7.0), np.cos(2 * np.pi * d / 7.0)], axis=-1)


def unlabelled_classes(x: np.ndarray, drop: np.ndarray) -> None:
    """In place: where drop[n, 0] (victim) or drop[n, 1] (aggressor), the VM's class
    one-hot becomes `other`, what the agent computes for a VM without a workload label.
    A regulariser: the lab's few workload kinds make the class a shortcut that does
    not hold for kinds it never saw (a held-out `cache` victim is `memory` like
    `membw`, and suffers differently), so the model must also read the telemetry."""
    for side, prefix in enumerate(("v_", "a_")):
        cols = [fx.IDX[prefix + n] for n in fx.PER_VM[16:20]]
        rows = drop[:, side]
        x[np.ix_(rows, np.arange(x.shape[1]), cols)] = np.array([0, 0, 0, 1], dtype=x.dtype)


# --------------------------------------------------------------------------------------
# Model


def split_validation(ds: "dsm.Dataset", train_exps: list[int], fraction: float, seed: int) -> list[int]:
    """Validation experiments: a seeded random `fraction` of the training experiments
    (at least one when there are two or more)."""
    rng = np.random.default_rng(seed)
    exps = sorted(train_exps)
    if len(exps) < 2:
        return []
    n_val = max(1, int(round(fraction * len(exps))))
    return sorted(rng.choice(exps, size=n_val, replace=False).tolist())


def train(x_tr, y_tr, x_va, y_va, *, hidden, seed, epochs, patience, batch, lr, weight_decay,
          loss, tick_seconds, noise=0.0, class_dropout=0.0, keep_last=False, log=sys.stderr):
    """Returns (params as numpy, history dict). x_* normalised float32, y_* 0-100.
    With validation windows: the params of the epoch with the lowest validation MSE,
    stopping `patience` epochs after it; with keep_last (or no validation windows):
    the params after the last epoch."""
    import jax
    import jax.numpy as jnp
    import optax

    t, f = x_tr.shape[1], x_tr.shape[2]
    key = jax.random.PRNGKey(seed)
    params = init_params(key, f, hidden, float(np.mean(y_tr)))
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(lr, weight_decay=weight_decay))
    state = opt.init(params)

    def loss_fn(p, xb, yb):
        pred = forward(p, xb) / 100.0
        err = pred - yb / 100.0
        if loss == "huber":
            return jnp.mean(optax.losses.huber_loss(pred, yb / 100.0, delta=0.1))
        return jnp.mean(err * err)

    @jax.jit
    def step(p, s, xb, yb):
        l, g = jax.value_and_grad(loss_fn)(p, xb, yb)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, l

    @jax.jit
    def val_metrics(p, xb, yb):
        pred = forward(p, xb)
        return jnp.mean(jnp.abs(pred - yb)), jnp.mean(((pred - yb) / 100.0) ** 2)

    rng = np.random.default_rng(seed)
    n = len(x_tr)
    steps = max(1, n // batch)
    best = (np.inf, None, 0)
    history = []
    t0 = time.time()
    for epoch in range(1, epochs + 1):
        xe = x_tr.copy()
        if noise > 0:
            # Gaussian input noise on the normalised data features (not the one-hot
            # class or time features): a regulariser for a small dataset.
            scaled = np.setdiff1d(np.arange(f), fx.UNSCALED_IDX)
            xe[:, :, scaled] += rng.normal(0.0, noise, (n, t, len(scaled))).astype(np.float32)
        xe[:, :, fx.TIME_IDX] = random_time_features(rng, n, t, tick_seconds).astype(np.float32)
        if class_dropout > 0:
            unlabelled_classes(xe, rng.random((n, 2)) < class_dropout)
        perm = rng.permutation(n)
        tot = 0.0
        for b in range(steps):
            idx = perm[b * batch : (b + 1) * batch]
            params, state, l = step(params, state, xe[idx], y_tr[idx].astype(np.float32))
            tot += float(l)
        tr_loss = tot / steps
        if len(x_va):
            va_mae, va_mse = (float(v) for v in val_metrics(params, x_va, y_va.astype(np.float32)))
        else:
            va_mae, va_mse = float("nan"), tr_loss
        history.append({"epoch": epoch, "train_loss": tr_loss, "val_mae": va_mae, "val_mse": va_mse})
        if va_mse < best[0] and not keep_last:
            best = (va_mse, jax.tree_util.tree_map(np.asarray, params), epoch)
        if epoch == 1 or epoch % 10 == 0:
            print(f"epoch {epoch:4d}  train loss {tr_loss:.5f}  val MAE {va_mae:6.2f}  val MSE {va_mse:.5f}  "
                  f"best epoch {best[2]}  {time.time() - t0:.0f} s", file=log)
        if not keep_last and epoch - best[2] >= patience:
            break
    if keep_last:
        best = (history[-1]["val_mse"], jax.tree_util.tree_map(np.asarray, params), len(history))
    return best[1], {"epochs": len(history), "best_epoch": best[2], "best_val_mse": best[0],
                     "best_val_mae": history[best[2] - 1]["val_mae"], "seconds": time.time() - t0,
                     "val_mse_curve": [h["val_mse"] for h in history],
                     "val_mae_curve": [h["val_mae"] for h in history]}


def experiment_folds(train_exps: list[int], k: int, seed: int) -> list[list[int]]:
    """k folds of whole experiments, a seeded shuffle dealt round-robin."""
    order = np.random.default_rng(seed).permutation(train_exps).tolist()
    return [sorted(order[i::k]) for i in range(k)]


def cross_validate(ds: "dsm.Dataset", usable: np.ndarray, folds: list[list[int]], *, epochs: int,
                   select: str = "mse", log=sys.stderr, **common) -> dict:
    """Trains `epochs` epochs on the `usable` windows outside each fold, validating on
    those inside it; the epoch count is the minimum of the folds' mean validation
    `select` curve. Returns the sidecar's `cross_validation` (folds by name, epochs,
    mean validation MSE and MAE there); one line per fold goes to `log`."""
    curves, maes = [], []
    quiet = open(os.devnull, "w")
    for i, fold in enumerate(folds):
        in_fold = np.isin(ds.experiment, fold)
        tr, va = usable & ~in_fold, usable & in_fold
        if not tr.any() or not va.any():
            continue
        mean, std = normalisation(ds.x[tr])
        _, h = train(normalise(ds.x[tr], mean, std), ds.y[tr], normalise(ds.x[va], mean, std), ds.y[va],
                     epochs=epochs, patience=epochs, keep_last=True, log=quiet, **common)
        curves.append(h["val_mse_curve"])
        maes.append(h["val_mae_curve"])
        best_fold = int(np.argmin(h[f"val_{select}_curve"]))
        print(f"fold {i + 1}/{len(folds)} ({len(fold)} experiments): best epoch {best_fold + 1}, "
              f"validation MAE there {h['val_mae_curve'][best_fold]:.2f} ({h['seconds']:.0f} s)", file=log)
    # --select mae: on the 2026-11-26 dataset the lowest mean MSE across experiments
    # comes after 1-2 epochs from a nearly constant model; MAE picks later epochs.
    mean_curve = np.mean(maes if select == "mae" else curves, axis=0)
    best = int(np.argmin(mean_curve)) + 1
    return {"folds": [[os.path.basename(ds.experiments[e]["dir"]) for e in f] for f in folds],
            "selected_by": select, "epochs": best,
            "val_mse": float(np.mean([c[best - 1] for c in curves])),
            "val_mae": float(np.mean([m[best - 1] for m in maes]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA, help="dataset directory (default %(default)s)")
    ap.add_argument("--out", default=os.path.join(REPO, "models"), help="where the model ships")
    ap.add_argument("--work", default=DEFAULT_WORK, help="where the trained weights are kept")
    ap.add_argument("--name", default="contention-lstm")
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--window", type=int, default=6)
    ap.add_argument("--tick-seconds", type=int, default=5)
    ap.add_argument("--horizon", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seed", type=int, default=20260601)
    ap.add_argument("--epochs", type=int, default=150,
                    help="epochs of each cross-validation fold; at most, with --folds 1")
    ap.add_argument("--patience", type=int, default=30, help="epochs without a better validation MSE")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--loss", choices=["mse", "huber"], default="mse")
    ap.add_argument("--folds", type=int, default=4,
                    help="k-fold cross-validation by experiment picks the epoch count, then one fit "
                         "on every training experiment; 1: one validation split, early stopping")
    ap.add_argument("--select", choices=["mae", "mse"], default="mse",
                    help="the mean validation curve whose minimum sets the epoch count")
    ap.add_argument("--val-fraction", type=float, default=0.2, help="with --folds 1")
    ap.add_argument("--noise", type=float, default=0.0,
                    help="std of Gaussian noise added to the normalised data features in training")
    ap.add_argument("--class-dropout", type=float, default=0.0,
                    help="share of training windows whose victim's (and, independently, "
                         "aggressor's) workload class is replaced by `other` each epoch")
    ap.add_argument("--exclude-victim-kinds", default="",
                    help="comma-separated workload kinds whose victim windows are left out of "
                         "training and validation (not of the evaluation); default none, as "
                         "docs/dataset.md says")
    ap.add_argument("--no-export", action="store_true", help="only train and save the weights")
    a = ap.parse_args()

    import jax

    jax.config.update("jax_platforms", "cpu")
    t_start = time.time()
    print(f"loading {a.data}", file=sys.stderr)
    ds = dsm.load_dataset(a.data, a.window, a.tick_seconds, a.horizon, verbose=True)
    if len(ds) == 0:
        sys.exit(f"{a.data}: no windows")
    lab = ds.labelled
    excluded = [k for k in a.exclude_victim_kinds.split(",") if k]
    usable = lab & ~np.isin(ds.victim_kind(), excluded)
    train_exps = sorted({int(e) for e in ds.experiment[lab & ~ds.held_out]})
    held_exps = sorted(i for i, e in enumerate(ds.experiments) if e.get("held_out"))
    common = dict(hidden=a.hidden, seed=a.seed, batch=a.batch, lr=a.lr, weight_decay=a.weight_decay,
                  loss=a.loss, tick_seconds=a.tick_seconds, noise=a.noise, class_dropout=a.class_dropout)
    cv = None
    t_train = time.time()
    if a.folds >= 2:
        # Epoch count by k-fold cross-validation over the training experiments (each
        # fold's validation windows are whole experiments), then one fit on all of them.
        folds = experiment_folds(train_exps, a.folds, a.seed)
        cv = cross_validate(ds, usable & ~ds.held_out, folds, epochs=a.epochs, select=a.select,
                            log=sys.stderr, **common)
        print(f"cross-validation: {cv['epochs']} epochs (mean validation MAE {cv['val_mae']:.2f})", file=sys.stderr)
        val_exps = []
        m_tr = usable & ~ds.held_out
        m_va = np.zeros(len(ds), dtype=bool)
    else:
        val_exps = split_validation(ds, train_exps, a.val_fraction, a.seed)
        is_val = np.isin(ds.experiment, val_exps)
        m_tr = usable & ~ds.held_out & ~is_val
        m_va = usable & ~ds.held_out & is_val
    if not m_tr.any():
        sys.exit("no labelled training windows")
    mean, std = normalisation(ds.x[m_tr])
    x_tr, y_tr = normalise(ds.x[m_tr], mean, std), ds.y[m_tr]
    x_va, y_va = normalise(ds.x[m_va], mean, std), ds.y[m_va]
    print(f"train: {len(train_exps) - len(val_exps)} experiments, {len(y_tr)} windows; "
          f"validation: {len(val_exps)} experiments, {len(y_va)} windows; "
          f"held out: {len(held_exps)} experiments, {int((lab & ds.held_out).sum())} windows "
          f"({time.time() - t_start:.0f} s)", file=sys.stderr)

    if cv is not None:
        params, hist = train(x_tr, y_tr, x_va, y_va, epochs=cv["epochs"], patience=cv["epochs"],
                             keep_last=True, **common)
        hist["best_val_mae"] = cv["val_mae"]
    else:
        params, hist = train(x_tr, y_tr, x_va, y_va, epochs=a.epochs, patience=a.patience, **common)
    hist["seconds"] = time.time() - t_train
    for k in ("val_mse_curve", "val_mae_curve"):
        hist.pop(k, None)
    print(f"trained: {hist['epochs']} epochs, best {hist['best_epoch']} (validation MAE "
          f"{hist['best_val_mae']:.2f}), {hist['seconds']:.0f} s", file=sys.stderr)

    meta = {
        "name": a.name, "version": a.version, "data": os.path.abspath(a.data),
        "window": a.window, "tick_seconds": a.tick_seconds, "horizon": a.horizon, "hidden": a.hidden,
        "seed": a.seed, "loss": a.loss, "noise": a.noise, "class_dropout": a.class_dropout,
        "excluded_victim_kinds": excluded,
        "lr": a.lr, "batch": a.batch, "weight_decay": a.weight_decay,
        "experiments": [os.path.basename(e["dir"]) for e in ds.experiments],
        "train_experiments": [os.path.basename(ds.experiments[i]["dir"]) for i in train_exps if i not in val_exps],
        "validation_experiments": [os.path.basename(ds.experiments[i]["dir"]) for i in val_exps],
        "held_out_experiments": [os.path.basename(ds.experiments[i]["dir"]) for i in held_exps],
        "train_windows": int(len(y_tr)), "validation_windows": int(len(y_va)),
        "history": hist, "cross_validation": cv,
    }
    os.makedirs(a.work, exist_ok=True)
    weights = os.path.join(a.work, f"{a.name}.weights.npz")
    np.savez(weights, mean=mean, std=std, meta=json.dumps(meta),
             **{k: np.asarray(v, dtype=np.float32) for k, v in params.items()})
    print(f"weights: {weights}", file=sys.stderr)
    if a.no_export:
        return
    import export_onnx

    export_onnx.export_all(weights, a.out, ds=ds)
    print(f"done in {time.time() - t_start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
