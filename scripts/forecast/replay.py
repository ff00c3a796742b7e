#!/usr/bin/env python3
"""Reference of `interference forecast --replay`: feeds each VM of a trace through the
demand forecaster exactly as the agent runs it, and prints its forecasts as JSONL.

    V=/var/cache/interference-model/venv/bin/python
    $V scripts/forecast/replay.py FILE.csv[.gz] [--horizon 5m,1h] [--format jsonl]
        [--model models/demand-forecast.json] [--out FILE.jsonl[.gz]]
    $V scripts/forecast/replay.py FILE --predictor persistence|yesterday|last_week|recent_median|seasonal_blend

The trace's own clock: row k's step on the clock is minute_k / step (its minute 0 a
Monday 00:00) and a day is 1440 trace minutes, which must be the model's day_steps
steps. Each round (one trace row) does what the agent does at the end of a step
(docs/forecast.md): every VM's value goes into its rollup ring (a missing cell repeats
the VM's previous value; a VM without any value yet is not born and gets no line), then
every born VM's inputs are computed from its ring alone, the whole batch is normalised
and run once through the ONNX model (onnxruntime, one thread), and the forecasts are
printed: one line per born VM per row per horizon, in row order, then the trace's VM
order, then the order of --horizon:

  {"vm": "vm123", "minute": 10085, "horizon_min": 5, "forecast": 12.3456}

`minute` is the minute of the target (the row's minute + the horizon), so a line can be
checked against the trace row of that minute; forecasts past the trace's end are
printed too. `forecast` is rounded to 4 decimals.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import features as fx  # noqa: E402
import trace as tr  # noqa: E402

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_MODEL = os.path.join(REPO, "models", "demand-forecast.json")
UNITS = {"s": 1 / 60, "m": 1, "min": 1, "h": 60, "d": 1440}


def parse_horizons(spec: str) -> list[float]:
    """"5m,1h" -> [5, 60] (minutes). Units s, m (or min), h, d; a bare number is minutes."""
    out = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*", part)
        if not m:
            raise ValueError(f"horizon {part!r}: expected a number and a unit (s, m, h, d), e.g. 5m or 1h")
        out.append(float(m.group(1)) * UNITS[m.group(2) or "m"])
    return out


def horizon_steps(horizons_min: list[float], step_min: int, model_horizons) -> list[int]:
    steps = []
    for hm in horizons_min:
        s = hm / step_min
        if abs(s - round(s)) > 1e-9 or round(s) not in model_horizons:
            raise ValueError(f"horizon {hm:g} min is not one of the model's horizons: "
                             f"{[h * step_min for h in model_horizons]} min at the trace's "
                             f"step of {step_min} min")
        steps.append(int(round(s)))
    return steps


class Model:
    """The shipped model as its sidecar describes it: onnxruntime, one thread."""

    def __init__(self, sidecar_path: str):
        import hashlib

        import onnxruntime as ort

        self.sidecar = json.load(open(sidecar_path))
        sc = self.sidecar
        path = os.path.join(os.path.dirname(sidecar_path), sc["model_file"])
        data = open(path, "rb").read()
        if hashlib.sha256(data).hexdigest() != sc["onnx_sha256"]:
            raise SystemExit(f"{path}: sha256 differs from the sidecar's")
        if sc["features"] != fx.FEATURES:
            raise SystemExit(f"{sidecar_path}: features differ from this script's (features.py)")
        self.cfg = fx.Config(day_steps=sc["clock"]["day_steps"], past=sc["past"],
                             h_max=max(sc["horizons_steps"]), level_steps=sc["level_steps"],
                             scale_steps=sc["scale_steps"], scale_floor=sc["scale_floor"])
        self.horizons = sc["horizons_steps"]
        if self.cfg.window != sc["window"] or self.cfg.lags().tolist() != sc["lags"] \
                or self.cfg.history_steps != sc["history_steps"]:
            raise SystemExit(f"{sidecar_path}: window, lags or history_steps differ from features.py's")
        self.mean = np.asarray(sc["normalisation"]["mean"], dtype=np.float32)
        self.std = np.asarray(sc["normalisation"]["std"], dtype=np.float32)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sess = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        self.inp = sc["input"]["name"]
        self.out = sc["output"]["name"]

    def forecast(self, get, t_abs: np.ndarray) -> np.ndarray:
        """[n, K] forecasts (float64) of the rows `get` reads."""
        x, lvl, s = fx.inputs(get, t_abs, self.cfg)
        xn = ((x - self.mean) / self.std).astype(np.float32)
        out = self.sess.run([self.out], {self.inp: xn})[0]
        return fx.forecast_from_output(out, lvl, s)


class Baseline:
    """A baseline as a streaming forecaster over the same rollup (for comparison)."""

    def __init__(self, name: str, cfg: fx.Config = fx.DEFAULT):
        self.name, self.cfg = name, cfg
        self.horizons = list(fx.HORIZONS)

    def forecast(self, get, t_abs: np.ndarray) -> np.ndarray:
        hz = np.asarray(self.horizons)
        d = self.cfg.day_steps
        if self.name == "persistence":
            return np.repeat(get(np.array([0])), len(hz), axis=1)
        if self.name in ("yesterday", "last_week"):
            period = d if self.name == "yesterday" else 7 * d
            return get(period - hz)
        lvl = fx.median_available(get(np.arange(self.cfg.level_steps)))
        if self.name == "recent_median":
            return np.repeat(lvl[:, None], len(hz), axis=1)
        if self.name == "seasonal_blend":
            st = np.stack([np.repeat(lvl[:, None], len(hz), axis=1), get(d - hz), get(7 * d - hz)])
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmedian(st, axis=0)
        raise ValueError(f"unknown predictor {self.name}")


def replay(trace: "tr.Trace", forecaster, horizons_min: list[float], write) -> int:
    """Runs the rounds; write(line) gets each JSONL line. Returns the number of lines."""
    step = trace.step_minutes
    cfg = forecaster.cfg
    if step <= 0 or 1440 % step or 1440 // step != cfg.day_steps:
        raise ValueError(f"the trace's step is {step} min: a day of 1440 min is not the model's "
                         f"{cfg.day_steps} steps")
    hsteps = horizon_steps(horizons_min, step, forecaster.horizons)
    cols = [forecaster.horizons.index(h) for h in hsteps]
    hmin = [int(h * step) for h in hsteps]
    r = cfg.history_steps
    v = len(trace.vms)
    ring = np.full((v, r), np.nan, dtype=np.float32)
    age = np.zeros(v, dtype=np.int64)
    lines = 0
    for k in range(len(trace.minutes)):
        row = trace.values[k].astype(np.float32)
        new = np.where(np.isnan(row), ring[:, -1], row)  # a gap repeats the previous value
        ring[:, :-1] = ring[:, 1:]
        ring[:, -1] = new
        born = (age > 0) | ~np.isnan(row)
        age = np.where(born, np.minimum(age + 1, r), 0)
        idx = np.nonzero(born)[0]
        if len(idx) == 0:
            continue
        t_abs = np.full(len(idx), int(trace.minutes[k]) // step, dtype=np.int64)
        f = forecaster.forecast(fx.ring_accessor(ring[idx], age[idx]), t_abs)
        m = int(trace.minutes[k])
        for i, vi in enumerate(idx):
            name = trace.vms[vi]
            for c, hm in zip(cols, hmin):
                val = f[i, c]
                fc = None if not np.isfinite(val) else round(float(val), 4)
                write(json.dumps({"vm": name, "minute": m + hm, "horizon_min": hm, "forecast": fc}) + "\n")
                lines += 1
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--horizon", default="5m,1h")
    ap.add_argument("--format", default="jsonl", choices=["jsonl"])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="the model's sidecar")
    ap.add_argument("--predictor", default="model",
                    choices=["model", "persistence", "yesterday", "last_week", "recent_median", "seasonal_blend"])
    ap.add_argument("--out", default="-", help="output file (.gz: compressed); default stdout")
    a = ap.parse_args()
    trace = tr.load(a.trace)
    fc = Model(a.model) if a.predictor == "model" else Baseline(a.predictor)
    if a.out == "-":
        out = sys.stdout
    else:
        out = gzip.open(a.out, "wt") if a.out.endswith(".gz") else open(a.out, "w")
    n = replay(trace, fc, parse_horizons(a.horizon), out.write)
    if out is not sys.stdout:
        out.close()
    print(f"{n} forecasts", file=sys.stderr)


if __name__ == "__main__":
    main()
