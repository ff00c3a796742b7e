"""The LSTM's own held-out evaluation on 5 s windows (legacy: it fills the sidecar).

    evaluate_windows.py --data DIR [--model models/contention-lstm.onnx] [--threshold 25]
                        [--update-sidecar]

Superseded for comparing scorers by scripts/model/evaluate.py (1 s labels, events,
lead times, per-run metrics with bootstrap intervals; models/README.md, "Evaluation
protocol"). This file stays because the trainer (train_lstm.py, export_onnx.py) and
sweep.py write and read the sidecar's `evaluation` with it, on datasets of the first
recorder (5 s windows, clamped labels). It also holds the onnxruntime helpers
(onnx_scores, normalise) that evaluate.py's `lstm` scorer reuses.

Runs the shipped ONNX model (onnxruntime) on every labelled window of the held-out
experiments (those with a cache or ctxsw workload), computes the threshold heuristic
and persistence baselines on the same windows, and prints one table. The definitions
(the same for every predictor; models/README.md repeats them):

- MAE: mean |score - label|, in slowdown points (0-100).
- Spearman: rank correlation (average ranks for ties) of score and label.
- A window's predecessor / successor: the window of the same (victim, aggressor) pair
  in the same experiment ending one model tick (k collector ticks) earlier / later.
  Windows without a label (idle victim) are left out, so a window whose predecessor
  is unlabelled has none.
- Crossing (threshold th): a window with label >= th whose predecessor's label is < th.
  Anticipated: the predictor's score for that window, computed from data up to the
  window's end (before the horizon its label measures), is >= th.
  Detected within one tick (context only): score >= th at the crossing window or its
  successor.
- present_1s (a reference, not a predictor the agent could run): the victim's slowdown
  measured from its own progress over the last collector tick (1 s) before the window's
  end: what a predictor that knew the present exactly, and nothing of the future, would
  say. Crossings it does not anticipate started after the window ended.
- Alarm onset: a window with score >= th whose predecessor's score is < th. It is a
  false alarm when neither its own label nor its successor's is >= th, i.e. the
  measured slowdown does not reach th within the next 2 model ticks (10 s).
  False-alarm rate = false alarms / alarm onsets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset as dsm  # noqa: E402

THRESHOLDS = (15.0, 25.0, 40.0)
HELD_OUT_CLASSES = ("cache", "ctxsw")
PREDICTORS = ("lstm", "heuristic", "persistence", "present_1s")


def rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties get the average of their ranks."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    sa = a[order]
    ranks = np.empty(len(a))
    i = 0
    n = len(a)
    while i < n:
        j = i
        while j + 1 < n and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    d = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / d) if d > 0 else float("nan")


def neighbours(experiment, victim, aggressor, end_index, k: int):
    """prev[i], next[i]: index of the window one model tick earlier / later of the same
    pair and experiment, -1 when there is none (among the windows given)."""
    key = {}
    for i, (e, v, a, t) in enumerate(zip(experiment, victim, aggressor, end_index)):
        key[(int(e), v, a, int(t))] = i
    prev = np.full(len(end_index), -1, dtype=np.int64)
    nxt = np.full(len(end_index), -1, dtype=np.int64)
    for (e, v, a, t), i in key.items():
        prev[i] = key.get((e, v, a, t - k), -1)
        nxt[i] = key.get((e, v, a, t + k), -1)
    return prev, nxt


def threshold_metrics(score, label, prev, nxt, th: float) -> dict:
    has_prev = prev >= 0
    p = np.where(has_prev, prev, 0)
    n = np.where(nxt >= 0, nxt, 0)
    crossing = has_prev & (label >= th) & (label[p] < th)
    anticipated = crossing & (score >= th)
    detected = crossing & ((score >= th) | ((nxt >= 0) & (score[n] >= th)))
    onset = has_prev & (score >= th) & (score[p] < th)
    reached = (label >= th) | ((nxt >= 0) & (label[n] >= th))
    false_alarm = onset & ~reached
    nc, no = int(crossing.sum()), int(onset.sum())
    return {
        "threshold": th,
        "crossings": nc,
        "anticipated": int(anticipated.sum()),
        "anticipated_ratio": float(anticipated.sum() / nc) if nc else None,
        "detected_within_1_tick_ratio": float(detected.sum() / nc) if nc else None,
        "alarm_onsets": no,
        "false_alarms": int(false_alarm.sum()),
        "false_alarm_ratio": float(false_alarm.sum() / no) if no else None,
    }


def metrics(scores: dict[str, np.ndarray], ds: "dsm.Dataset", thresholds=THRESHOLDS) -> dict:
    """Metrics of each predictor's scores on the labelled windows of ds (a subset)."""
    lab = ds.labelled
    sub = ds.subset(lab)
    prev, nxt = neighbours(sub.experiment, sub.victim, sub.aggressor, sub.end_index, ds.k)
    y = sub.y
    out = {
        "experiments": int(len(set(sub.experiment.tolist()))),
        "windows": int(len(y)),
        "label_mean": float(y.mean()) if len(y) else None,
        "predictors": {},
    }
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)[lab]
        out["predictors"][name] = {
            "mae": float(np.mean(np.abs(s - y))) if len(y) else None,
            "spearman": spearman(s, y),
            "thresholds": {f"{th:g}": threshold_metrics(s, y, prev, nxt, th) for th in thresholds},
        }
    return out


def _fmt(x, pct=False):
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return f"{100 * x:.0f}%" if pct else f"{x:.2f}"


def table(m: dict, thresholds=THRESHOLDS) -> str:
    """Markdown table, one row per predictor."""
    head = "| predictor | MAE (points) | Spearman |"
    sep = "|---|---:|---:|"
    for th in thresholds:
        head += f" anticipated @{th:g} | ≤1 tick late @{th:g} | false alarms @{th:g} |"
        sep += "---:|---:|---:|"
    rows = [head, sep]
    for name, p in m["predictors"].items():
        r = f"| {name} | {_fmt(p['mae'])} | {_fmt(p['spearman'])} |"
        for th in thresholds:
            t = p["thresholds"][f"{th:g}"]
            r += (f" {_fmt(t['anticipated_ratio'], True)} ({t['anticipated']}/{t['crossings']}) |"
                  f" {_fmt(t['detected_within_1_tick_ratio'], True)} |"
                  f" {_fmt(t['false_alarm_ratio'], True)} ({t['false_alarms']}/{t['alarm_onsets']}) |")
        rows.append(r)
    return "\n".join(rows)


def onnx_scores(model_path: str, x_norm: np.ndarray, batch: int = 4096) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    outs = []
    for i in range(0, len(x_norm), batch):
        outs.append(sess.run(["slowdown"], {"window": x_norm[i : i + batch].astype(np.float32)})[0][:, 0])
    return np.concatenate(outs) if outs else np.zeros(0, dtype=np.float32)


def normalise(x: np.ndarray, mean, std) -> np.ndarray:
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    return ((x.astype(np.float32) - mean) / std).astype(np.float32)


def evaluate_model(model_path: str, sidecar: dict, ds: "dsm.Dataset", thresholds=THRESHOLDS):
    held = ds.subset(ds.held_out)
    xn = normalise(held.x, sidecar["normalisation"]["mean"], sidecar["normalisation"]["std"])
    s = onnx_scores(model_path, xn)
    return metrics({"lstm": s, "heuristic": held.heuristic, "persistence": held.persistence,
                    "present_1s": held.present}, held, thresholds)


def by_class(model_path: str, sidecar: dict, ds: "dsm.Dataset", classes=HELD_OUT_CLASSES, thresholds=THRESHOLDS):
    """The same metrics per held-out class (experiments with a workload of that kind)."""
    out = {}
    for c in classes:
        exps = [i for i, e in enumerate(ds.experiments)
                if e.get("held_out") and any(w.get("kind") == c for w in e.get("workloads", []))]
        sub = ds.subset(np.isin(ds.experiment, exps) & ds.held_out)
        if len(sub):
            out[c] = evaluate_model(model_path, sidecar, sub, thresholds)
    return out


def full_evaluation(model_path: str, sidecar: dict, ds: "dsm.Dataset", threshold: float = 25.0) -> dict:
    """The sidecar's `evaluation`: held-out metrics of the model and both baselines,
    overall and per held-out class."""
    thresholds = tuple(sorted(set(THRESHOLDS) | {threshold}))
    m = evaluate_model(model_path, sidecar, ds, thresholds)
    m["threshold"] = threshold
    m["held_out_classes"] = list(HELD_OUT_CLASSES)
    m["by_class"] = {c: {"experiments": mc["experiments"], "windows": mc["windows"],
                         "predictors": mc["predictors"]}
                     for c, mc in by_class(model_path, sidecar, ds, thresholds=thresholds).items()}
    # Diagnostic, not the contract's metric: the same without fsync victims, whose
    # labels in the lab dataset follow the disk's throughput swings (models/README.md).
    held = ds.held_out & (ds.victim_kind() != "fsync")
    if held.any():
        sub = evaluate_model(model_path, sidecar, ds.subset(held), thresholds)
        m["without_fsync_victims"] = {"experiments": sub["experiments"], "windows": sub["windows"],
                                      "predictors": sub["predictors"]}
    m["definitions"] = "scripts/model/evaluate_windows.py, models/README.md"
    return m


def print_evaluation(m: dict) -> None:
    thresholds = tuple(float(t) for t in next(iter(m["predictors"].values()))["thresholds"])
    print(f"held-out: {m['experiments']} experiments, {m['windows']} labelled windows")
    print(table(m, thresholds))
    for c, mc in m.get("by_class", {}).items():
        print(f"\n{c}: {mc['experiments']} experiments, {mc['windows']} windows")
        print(table(mc, thresholds))
    if "without_fsync_victims" in m:
        mc = m["without_fsync_victims"]
        print(f"\nwithout fsync victims (diagnostic): {mc['experiments']} experiments, {mc['windows']} windows")
        print(table(mc, thresholds))


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    models = os.path.normpath(os.path.join(here, "..", "..", "models"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset directory")
    ap.add_argument("--model", default=os.path.join(models, "contention-lstm.onnx"))
    ap.add_argument("--threshold", type=float, default=25.0,
                    help="main threshold (15 and 40 are reported too)")
    ap.add_argument("--update-sidecar", action="store_true",
                    help="write the metrics into the sidecar's evaluation")
    a = ap.parse_args()
    sidecar_path = os.path.splitext(a.model)[0] + ".json"
    with open(sidecar_path) as f:
        sidecar = json.load(f)
    ds = dsm.load_dataset(a.data, sidecar["window"], sidecar["tick_seconds"], sidecar["horizon"])
    m = full_evaluation(a.model, sidecar, ds, a.threshold)
    print_evaluation(m)
    if a.update_sidecar:
        from jsonsafe import finite

        old = sidecar.get("evaluation") or {}
        if "export_check" in old:
            m["export_check"] = old["export_check"]
        sidecar["evaluation"] = finite(m)
        with open(sidecar_path, "w") as f:
            json.dump(sidecar, f, indent=1, allow_nan=False)
            f.write("\n")
        print("updated", sidecar_path)


if __name__ == "__main__":
    main()
