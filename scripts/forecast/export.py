#!/usr/bin/env python3
"""Exports the trained demand forecaster to ONNX, checks it against onnxruntime, and
writes its sidecar and golden vectors.

    V=/var/cache/interference-model/venv/bin/python
    $V scripts/forecast/export.py [--weights /var/cache/interference-model/work/demand-forecast.weights.npz]
                                  [--trace FILE] [--out models/]

(train.py runs this at its end.) The graph, built with the `onnx` helpers, opset 17,
IR 9 (the contention model's, which tract-onnx 0.23 runs):

  inputs [N, T, F] -> Transpose [T, N, F] -> LSTM (layout 0, forward, default
  activations, no clip; W [1, 4H, F], R [1, 4H, H], B [1, 8H] = Wb then Rb; gates
  i, o, f, c) -> Y_h [1, N, H] -> Squeeze -> [N, H] -> Gemm (H -> K) -> scaled_forecast [N, K]

Check: onnxruntime's outputs equal the JAX model's within 1e-4 (scaled units) on the
golden rows and on every VM's rows at 200 origins spread over the trace, or the export
fails. Outputs: <out>/demand-forecast.onnx, .json (the sidecar: inputs, horizons,
normalisation, training, the cross-validated accuracy), .golden.json (rows of real
inputs, raw and normalised, with onnxruntime's outputs and the resulting forecasts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset as dsm  # noqa: E402
import features as fx  # noqa: E402
import model as mdl  # noqa: E402
import trace as tr  # noqa: E402

OPSET = 17
IR_VERSION = 9
TOLERANCE = 1e-4
INPUT_NAME = "inputs"
OUTPUT_NAME = "scaled_forecast"
SIDECAR_FORMAT = 1
REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def f32_list(a) -> list[float]:
    """Shortest decimal strings that read back as the same float32."""
    return [float(str(np.float32(x))) for x in np.asarray(a, dtype=np.float32).ravel()]


def finite(o):
    if isinstance(o, float):
        return o if np.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    if isinstance(o, np.generic):
        return finite(o.item())
    return o


def load_weights(path: str):
    z = np.load(path, allow_pickle=False)
    params = {k: z[k] for k in z.files if k not in ("mean", "std", "meta")}
    return params, z["mean"], z["std"], json.loads(str(z["meta"]))


def build_onnx(params: dict, t: int, f: int, name: str = "demand-forecast"):
    """The ONNX graph of either architecture (see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ms = mdl.members(params)
    k = ms[0]["head_b"].shape[0]
    if "w0" in ms[0]:
        # One branch per member on the flattened input; an ensemble's outputs are
        # summed (Add) and multiplied by 1 / members.
        nodes = [helper.make_node("Flatten", [INPUT_NAME], ["z_in"], axis=1)]
        inits = []
        outs = []
        for j, p in enumerate(ms):
            pre = f"m{j}." if len(ms) > 1 else ""
            prev, i = "z_in", 0
            while f"w{i}" in p:
                nodes.append(helper.make_node("Gemm", [prev, f"{pre}w{i}", f"{pre}b{i}"], [f"{pre}a{i}"]))
                nodes.append(helper.make_node("Relu", [f"{pre}a{i}"], [f"{pre}z{i}"]))
                inits += [numpy_helper.from_array(p[f"w{i}"].astype(np.float32), f"{pre}w{i}"),
                          numpy_helper.from_array(p[f"b{i}"].astype(np.float32), f"{pre}b{i}")]
                prev, i = f"{pre}z{i}", i + 1
            out = OUTPUT_NAME if len(ms) == 1 else f"{pre}out"
            nodes.append(helper.make_node("Gemm", [prev, f"{pre}head_w", f"{pre}head_b"], [out]))
            inits += [numpy_helper.from_array(p["head_w"].astype(np.float32), f"{pre}head_w"),
                      numpy_helper.from_array(p["head_b"].astype(np.float32).reshape(k), f"{pre}head_b")]
            outs.append(out)
        if len(ms) > 1:
            acc = outs[0]
            for j, o in enumerate(outs[1:], start=1):
                nodes.append(helper.make_node("Add", [acc, o], [f"sum{j}"]))
                acc = f"sum{j}"
            nodes.append(helper.make_node("Mul", [acc, "inv_members"], [OUTPUT_NAME]))
            inits.append(numpy_helper.from_array(np.array(1.0 / len(ms), dtype=np.float32), "inv_members"))
    else:
        h = params["R"].shape[1]
        assert params["W"].shape == (4 * h, f), params["W"].shape
        w = params["W"].astype(np.float32)[None]
        r = params["R"].astype(np.float32)[None]
        b = np.concatenate([params["Wb"], params["Rb"]]).astype(np.float32)[None]
        nodes = [
            helper.make_node("Transpose", [INPUT_NAME], ["x_tnf"], perm=[1, 0, 2]),
            helper.make_node("LSTM", ["x_tnf", "W", "R", "B"], ["y"],
                             hidden_size=h, layout=0, direction="forward"),
            helper.make_node("Slice", ["y", "ahead_start", "ahead_end", "axis0"], ["y_ahead"]),
            helper.make_node("Squeeze", ["y_ahead", "axis1"], ["h_ahead"]),
            helper.make_node("MatMul", ["h_ahead", "head_w"], ["o_kn1"]),
            helper.make_node("Squeeze", ["o_kn1", "axis2"], ["o_kn"]),
            helper.make_node("Transpose", ["o_kn"], ["o_nk"], perm=[1, 0]),
            helper.make_node("Add", ["o_nk", "head_b"], [OUTPUT_NAME]),
        ]
        inits = [
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(r, "R"),
            numpy_helper.from_array(b, "B"),
            numpy_helper.from_array(np.array([t - k], dtype=np.int64), "ahead_start"),
            numpy_helper.from_array(np.array([t], dtype=np.int64), "ahead_end"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
            numpy_helper.from_array(params["head_w"].astype(np.float32).reshape(h, 1), "head_w"),
            numpy_helper.from_array(params["head_b"].astype(np.float32).reshape(k), "head_b"),
        ]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", t, f])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", k])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="interference-forecast-train")
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m, full_check=True)
    return m


def session(onnx_path_or_bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(onnx_path_or_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def run_onnx(sess, x_norm: np.ndarray) -> np.ndarray:
    if len(x_norm) == 0:
        return np.zeros((0, sess.get_outputs()[0].shape[1]), dtype=np.float32)
    return sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x_norm, dtype=np.float32)})[0]


def normalise(x, mean, std):
    return ((x.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)


def check_export(sess, params: dict, x_norm: np.ndarray) -> dict:
    s_ort = run_onnx(sess, x_norm).astype(np.float64)
    s_jax = mdl.predict(params, x_norm).astype(np.float64)
    s_ref = mdl.reference(params, x_norm)
    d_jax = float(np.max(np.abs(s_ort - s_jax)))
    d_ref = float(np.max(np.abs(s_ort - s_ref)))
    print(f"export check on {len(x_norm)} rows: max |onnxruntime - JAX| = {d_jax:.2e}, "
          f"max |onnxruntime - float64 reference| = {d_ref:.2e} (tolerance {TOLERANCE:g})", file=sys.stderr)
    if not d_jax <= TOLERANCE:
        raise SystemExit(f"EXPORT CHECK FAILED: onnxruntime and JAX differ by {d_jax:.3e}")
    return {"rows": int(len(x_norm)), "max_abs_diff_jax": d_jax, "max_abs_diff_float64": d_ref}


def golden_rows(values: np.ndarray, seed: int) -> "dsm.Samples":
    """32 rows: 16 VMs at random origins with their whole history, and 16 with a
    simulated young VM (every fill and mask case: no week, no day, a few steps)."""
    rng = np.random.default_rng(seed)
    kk, v = values.shape
    vms = rng.choice(v, size=16, replace=v < 16)
    org = rng.integers(fx.DEFAULT.history_steps, kk - max(fx.HORIZONS), size=16)
    ages = np.array([1, 2, 3, 5, 12, 13, 30, 100, 287, 288, 289, 300, 1000, 2015, 2016, 2020])
    rows = []
    for i in range(16):
        rows.append((vms[i], org[i], 0))
    for i, age in enumerate(ages):
        rows.append((vms[i], org[i], org[i] - age + 1))
    vv = np.array([r[0] for r in rows])
    tt = np.array([r[1] for r in rows])
    first = np.array([r[2] for r in rows])
    get = fx.trace_accessor(values, tt, vv, first)
    x, lvl, sc = fx.inputs(get, tt)
    return dsm.Samples(x, lvl, sc, np.zeros((len(vv), len(fx.HORIZONS))), vv, tt), first


def versions() -> dict:
    import jax
    import onnx
    import onnxruntime
    import optax

    return {"python": platform.python_version(), "jax": jax.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def accuracy_summary(trace: "tr.Trace", cv_jsonl: str | None) -> dict | None:
    """The cross-validated accuracy table (evaluate.py) of the CV forecasts, without
    the per-VM values."""
    if not cv_jsonl or not os.path.exists(cv_jsonl):
        return None
    import evaluate as ev

    preds = {"model": ev.read_jsonl(cv_jsonl, trace, [5, 60])}
    res = ev.score(trace, preds, [5, 60], 7 * 1440)
    out = {}
    for hm, r in res.items():
        out[f"{hm}min"] = {"vms": r["vms"], "cells": r["cells"],
                           "mean_per_vm_mae": {n: round(p["mae"], 4) for n, p in r["predictors"].items()},
                           "ci95": {n: [round(c, 4) for c in p["ci95"]] for n, p in r["predictors"].items()},
                           "ratio_to_best_of_three": {n: round(p["ratio_to_best_of_three"], 4)
                                                      for n, p in r["predictors"].items()},
                           "model_ratio_ci95": [round(c, 4) for c in r["predictors"]["model"]["ratio_ci95"]]}
    return out


def export_all(weights: str, out_dir: str, trace: "tr.Trace | None" = None, trace_path: str | None = None) -> dict:
    params, mean, std, meta = load_weights(weights)
    name = meta["name"]
    if trace is None:
        trace = tr.load(trace_path or meta["trace"])
    values = dsm.stored_values(trace)
    cfg = fx.DEFAULT
    os.makedirs(out_dir, exist_ok=True)
    m = build_onnx(params, cfg.window, fx.F, name)
    data = m.SerializeToString()
    onnx_path = os.path.join(out_dir, f"{name}.onnx")
    with open(onnx_path, "wb") as f:
        f.write(data)
    sha = hashlib.sha256(data).hexdigest()
    sess = session(data)

    gs, gfirst = golden_rows(values, meta["recipe"]["seed"])
    kk, v = values.shape
    chk = dsm.build(values, np.arange(v), np.linspace(0, kk - 1, 200).astype(np.int64))
    check = check_export(sess, params, normalise(np.concatenate([gs.x, chk.x]), mean, std))

    ms = mdl.members(params)
    if "w0" in ms[0]:
        layers = len([p for p in ms[0] if p.startswith("w")])
        arch = {"type": "mlp", "hidden": int(ms[0]["w0"].shape[1]), "layers": layers,
                "head": "linear, one output per horizon", "members": len(ms)}
        if len(ms) > 1:
            arch["ensemble"] = "the mean of the members' outputs (Add, then Mul by 1 / members)"
    else:
        arch = {"type": "lstm", "hidden": int(params["R"].shape[1]), "layers": 1,
                "head": "linear on the hidden state of each position ahead, shared weights, one bias per horizon"}
    sidecar = {
        "format": SIDECAR_FORMAT,
        "kind": "demand-forecast",
        "name": name,
        "version": meta["version"],
        "model_file": os.path.basename(onnx_path),
        "onnx_sha256": sha,
        "architecture": arch,
        "input": {"name": INPUT_NAME, "shape": ["N", cfg.window, fx.F]},
        "output": {"name": OUTPUT_NAME, "shape": ["N", len(fx.HORIZONS)]},
        "demand": {"unit": "percent of the VM's allocated cores (100 = all its vCPUs busy)",
                   "signal": "CPU usage + run-queue wait of the VM's threads, mean over the step",
                   "min": 0.0},
        "clock": {"train_step_seconds": 300, "day_steps": cfg.day_steps, "week_steps": cfg.week_steps,
                  "origin": "step 0 starts on a Monday 00:00 of the clock"},
        "window": cfg.window,
        "horizons_steps": list(fx.HORIZONS),
        "history_steps": cfg.history_steps,
        "level_steps": cfg.level_steps,
        "scale_steps": cfg.scale_steps,
        "scale_floor": cfg.scale_floor,
        "past": cfg.past,
        "lags": cfg.lags().tolist(),
        "features": fx.FEATURES,
        "normalisation": {"mean": f32_list(mean), "std": f32_list(std)},
        "workload_class": None,
        "postprocess": "forecast[k] = max(0, level + scale * scaled_forecast[k]), horizon horizons_steps[k]",
        "contract": "docs/forecast.md",
    }
    v_ = versions()
    sidecar["training"] = {
        "trace": os.path.basename(meta["trace"]),
        "trace_sha256": meta["trace_sha256"],
        "vms": int(v), "rows": int(kk),
        "train_rows": meta["train_rows"],
        "recipe": meta["recipe"],
        "loss": "mean over rows and horizons of scale x |scaled_forecast - scaled target| (MAE in points)",
        "optimizer": f"adamw lr {meta['recipe']['lr']} cosine decay to 0, weight decay "
                     f"{meta['recipe']['weight_decay']}, batch {meta['recipe']['batch']}, global-norm clip 1",
        "train_seconds": meta["train_seconds"],
        "final_train_loss": meta["train_loss"][-1],
        "cross_validation": meta.get("cross_validation"),
        "versions": v_,
    }
    acc = accuracy_summary(trace, (meta.get("cross_validation") or {}).get("jsonl"))
    sidecar["evaluation"] = finite({
        "protocol": "cross-validation over VMs (5 folds) x time (2 blocks, a day of purge); targets from "
                    "day 8; mean over VMs of each VM's MAE (points), 95% bootstrap CI over VMs; "
                    "scripts/forecast/evaluate.py",
        "accuracy": acc,
        "export_check": check,
    })
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(sidecar, f, indent=1, allow_nan=False)
        f.write("\n")

    gx = np.asarray(f32_list(normalise(gs.x, mean, std)), dtype=np.float32).reshape(gs.x.shape)
    gy = run_onnx(sess, gx)
    gf = fx.forecast_from_output(gy, gs.level, gs.scale)
    golden = {
        "input_shape": list(gx.shape), "output_shape": list(gy.shape),
        "input": f32_list(gx), "output": f32_list(gy),
        "raw_input": f32_list(gs.x),
        "level": [float(x) for x in gs.level], "scale": [float(x) for x in gs.scale],
        "forecast": [[round(float(x), 6) for x in r] for r in gf],
        "rows": [{"vm": trace.vms[int(vv)], "origin_minute": int(trace.minutes[int(t)]),
                  "first_minute": int(trace.minutes[int(fi)])}
                 for vv, t, fi in zip(gs.vm, gs.origin, gfirst)],
        "tolerance": {"output": 1e-4, "forecast": 1e-3},
    }
    with open(os.path.join(out_dir, f"{name}.golden.json"), "w") as f:
        json.dump(golden, f, allow_nan=False)
        f.write("\n")
    print(f"wrote {onnx_path} (sha256 {sha}, {len(data)} bytes), its sidecar and golden vectors", file=sys.stderr)
    if acc:
        for hz, r in acc.items():
            print(f"{hz}: model {r['mean_per_vm_mae']['model']:.3f}, best of three "
                  f"{r['mean_per_vm_mae']['best_of_three']:.3f}, ratio {r['ratio_to_best_of_three']['model']:.3f}",
                  file=sys.stderr)
    return sidecar


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="/var/cache/interference-model/work/demand-forecast.weights.npz")
    ap.add_argument("--trace", default=None)
    ap.add_argument("--out", default=os.path.join(REPO, "models"))
    a = ap.parse_args()
    import jax

    jax.config.update("jax_platforms", "cpu")
    export_all(a.weights, a.out, trace_path=a.trace)


if __name__ == "__main__":
    main()
