#!/usr/bin/env python3
"""onnxruntime's time for one forecasting round of N VMs (default 100): one batched run
of the shipped model, single-threaded and sequential like the agent's tract run.
Inputs are real rows of the Azure trace (VMs cycled), normalised. Prints one JSON line.

    V=/var/cache/interference-model/venv/bin/python
    taskset -c 0 $V scripts/forecast/bench.py [--vms 100] [--model models/demand-forecast.json]
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
import replay as rp  # noqa: E402
import trace as tr  # noqa: E402
import train as trn  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=rp.DEFAULT_MODEL)
    ap.add_argument("--trace", default=trn.DEFAULT_TRACE)
    ap.add_argument("--vms", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=200)
    a = ap.parse_args()
    m = rp.Model(a.model)
    trace = tr.load(a.trace)
    values = dsm.stored_values(trace)
    v = values.shape[1]
    vms = np.arange(a.vms) % v
    t = np.full(a.vms, 6000)
    t0 = time.perf_counter_ns()
    x, lvl, s = fx.inputs(fx.trace_accessor(values, t, vms, np.zeros(a.vms, dtype=np.int64)), t, m.cfg)
    feat_ms = (time.perf_counter_ns() - t0) / 1e6
    xn = ((x - m.mean) / m.std).astype(np.float32)
    for _ in range(10):
        m.sess.run([m.out], {m.inp: xn})
    wall, cpu = [], []
    for _ in range(a.iterations):
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        m.sess.run([m.out], {m.inp: xn})
        cpu.append((time.thread_time_ns() - c0) / 1e6)
        wall.append((time.perf_counter_ns() - w0) / 1e6)
    wall.sort(), cpu.sort()
    import onnxruntime

    print(json.dumps({"vms": a.vms, "median_ms": round(wall[len(wall) // 2], 4),
                      "p90_ms": round(wall[(len(wall) * 9) // 10], 4),
                      "cpu_median_ms": round(cpu[len(cpu) // 2], 4), "iterations": a.iterations,
                      "python_features_ms": round(feat_ms, 2), "architecture": m.sidecar["architecture"],
                      "onnxruntime": onnxruntime.__version__}))


if __name__ == "__main__":
    main()
