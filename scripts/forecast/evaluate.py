#!/usr/bin/env python3
"""Scores demand forecasts against a trace: the one script behind every accuracy figure
of the demand forecaster (models/README.md, "Demand forecaster").

    V=/var/cache/interference-model/venv/bin/python
    $V scripts/forecast/evaluate.py --pred model=FORECASTS.jsonl[.gz] [--pred other=...]
        [--trace FILE.csv[.gz]] [--horizons 5,60] [--from-minute 10080] [--json OUT]
        [--folds models/demand-forecast.json]

Forecast files are in the format `interference forecast --replay --format jsonl` prints
(docs/forecast.md): one JSON object per line, {"vm", "minute", "horizon_min",
"forecast"}, `minute` being the minute of the trace row forecast (the target). The
baselines (persistence, same time yesterday, same time last week, their per-VM best,
the recent median and the seasonal blend; baselines.py) are computed here from the
trace. Every predictor is scored on the same cells: the (VM, target row) cells from
--from-minute on (default: day 8, the first with a last-week value) where every given
forecast file has a forecast. The figure is the mean over VMs of each VM's MAE, with a
95% percentile bootstrap interval over VMs (2000 resamples, seed 16), and the ratio to
the best baseline (best of persistence, yesterday and last week, chosen per VM) with a
paired bootstrap interval. With --folds SIDECAR, the same per fold of VMs and block of
time of the sidecar's cross-validation.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baselines as bl  # noqa: E402
import dataset as dsm  # noqa: E402
import trace as tr  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TRACE = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "traces",
                                              "azure-v1-cpu-avg-5min-train.csv.gz"))


def read_jsonl(path: str, trace: "tr.Trace", horizons_min) -> dict:
    """{horizon_min: float64 [K, V]} forecasts by target row; lines of other horizons,
    unknown VMs or minutes outside the trace are ignored (they are counted)."""
    vm_idx = {n: i for i, n in enumerate(trace.vms)}
    row_of = {int(m): i for i, m in enumerate(trace.minutes)}
    out = {h: np.full(trace.values.shape, np.nan) for h in horizons_min}
    skipped = 0
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            o = json.loads(line)
            h = o["horizon_min"]
            i = row_of.get(int(o["minute"]))
            j = vm_idx.get(o["vm"])
            if h not in out or i is None or j is None or o["forecast"] is None:
                skipped += 1
                continue
            if np.isfinite(out[h][i, j]):
                raise ValueError(f"{path}:{n}: a second forecast for {o['vm']} at minute {o['minute']}, "
                                 f"horizon {h} min")
            out[h][i, j] = float(o["forecast"])
    if skipped:
        print(f"{path}: {skipped} lines outside the scored horizons, VMs or minutes", file=sys.stderr)
    return out


def baseline_forecasts(values: np.ndarray, h_steps: int) -> dict:
    return {name: fn(values, h_steps) for name, fn in bl.BASELINES.items()}


def score(trace: "tr.Trace", preds: dict, horizons_min, from_minute: int, vm_subset=None,
          row_range=None) -> dict:
    """{horizon_min: {predictor: {"mae", "ci", "per_vm", ...}}} on the common cells."""
    values = dsm.stored_values(trace).astype(np.float64)
    step = trace.step_minutes
    result = {}
    for hm in horizons_min:
        if hm % step:
            raise ValueError(f"horizon {hm} min is not a multiple of the trace's step ({step} min)")
        h = hm // step
        cand = baseline_forecasts(values, h)
        for name, p in preds.items():
            cand[name] = p[hm]
        cells = (trace.minutes >= from_minute)[:, None] & np.isfinite(values)
        if row_range is not None:
            r = np.zeros(len(values), dtype=bool)
            r[row_range[0] : row_range[1]] = True
            cells &= r[:, None]
        if vm_subset is not None:
            cols = np.zeros(values.shape[1], dtype=bool)
            cols[vm_subset] = True
            cells &= cols[None, :]
        for p in cand.values():
            cells &= np.isfinite(p)
        scored_vms = cells.any(axis=0)
        per_vm = {name: bl.per_vm_mae(p, values, cells)[scored_vms] for name, p in cand.items()}
        per_vm["best_of_three"] = bl.best_of([per_vm[n] for n in bl.BEST_OF_THREE])
        ref = per_vm["best_of_three"]
        rows = {}
        for name, m in per_vm.items():
            rows[name] = {"mae": float(m.mean()), "ci95": bl.bootstrap_ci(m),
                          "ratio_to_best_of_three": float(m.mean() / ref.mean()),
                          "ratio_ci95": bl.bootstrap_ratio_ci(m, ref),
                          "per_vm": {trace.vms[j]: round(float(x), 4)
                                     for j, x in zip(np.nonzero(scored_vms)[0], m)}}
        result[hm] = {"cells": int(cells.sum()), "vms": int(scored_vms.sum()), "predictors": rows}
    return result


ORDER = ["persistence", "yesterday", "last_week", "best_of_three", "recent_median", "seasonal_blend"]


def print_table(res: dict, title: str = "", out=sys.stdout) -> None:
    if title:
        print(f"\n{title}", file=out)
    for hm, r in res.items():
        print(f"\nhorizon {hm} min ({r['vms']} VMs, {r['cells']} cells)\n", file=out)
        print("| predictor | mean per-VM MAE | 95% CI (VMs) | ratio to best of three | 95% CI |", file=out)
        print("|---|---:|---:|---:|---:|", file=out)
        names = [n for n in ORDER if n in r["predictors"]] + [n for n in r["predictors"] if n not in ORDER]
        for n in names:
            p = r["predictors"][n]
            print(f"| {n} | {p['mae']:.3f} | {p['ci95'][0]:.3f}-{p['ci95'][1]:.3f} | "
                  f"{p['ratio_to_best_of_three']:.3f} | {p['ratio_ci95'][0]:.3f}-{p['ratio_ci95'][1]:.3f} |", file=out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", default=DEFAULT_TRACE)
    ap.add_argument("--pred", action="append", default=[], metavar="NAME=FILE",
                    help="a forecaster's JSONL forecasts (repeatable)")
    ap.add_argument("--horizons", default="5,60", help="minutes, comma-separated")
    ap.add_argument("--from-minute", type=int, default=7 * 1440,
                    help="score targets from this minute on (default: day 8)")
    ap.add_argument("--folds", default=None, metavar="SIDECAR",
                    help="also score each cross-validation fold and time block of this sidecar")
    ap.add_argument("--json", default=None, help="write the full results (per-VM MAEs too) here")
    a = ap.parse_args()

    trace = tr.load(a.trace)
    horizons = [int(h) for h in a.horizons.split(",")]
    preds = {}
    for spec in a.pred:
        name, _, path = spec.partition("=")
        if not path:
            name, path = os.path.basename(spec).split(".")[0], spec
        preds[name] = read_jsonl(path, trace, horizons)
    res = score(trace, preds, horizons, a.from_minute)
    print_table(res, f"{os.path.basename(a.trace)} (sha256 {trace.sha256[:16]}...), "
                     f"targets from minute {a.from_minute}")
    full = {"trace": a.trace, "trace_sha256": trace.sha256, "from_minute": a.from_minute,
            "predictions": {n: s.partition("=")[2] or s for n, s in zip(preds, a.pred)},
            "overall": {str(k): v for k, v in res.items()}}
    if a.folds:
        sc = json.load(open(a.folds))
        cv = sc["training"]["cross_validation"]
        b = cv["blocks"]
        per_fold = []
        for fi, names in enumerate(cv["folds"]):
            idx = [trace.vms.index(n) for n in names]
            for bi, rr in enumerate(((b["start"], b["split"]), (b["split"], b["end"]))):
                r = score(trace, preds, horizons, a.from_minute, vm_subset=idx, row_range=rr)
                per_fold.append({"fold": fi, "block": bi, "rows": list(rr),
                                 "result": {str(k): {n: {"mae": p["mae"]} for n, p in v["predictors"].items()}
                                            for k, v in r.items()}})
        full["folds"] = per_fold
        print("\nper cross-validation fold (mean per-VM MAE)\n")
        names = list(preds) + ["best_of_three"]
        for hm in horizons:
            print(f"horizon {hm} min: | fold | block | " + " | ".join(names) + " | ratio |")
            for pf in per_fold:
                r = pf["result"][str(hm)]
                first = names[0]
                print(f"| {pf['fold'] + 1} | {pf['block']} | " + " | ".join(f"{r[n]['mae']:.3f}" for n in names)
                      + f" | {r[first]['mae'] / r['best_of_three']['mae']:.3f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(full, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
