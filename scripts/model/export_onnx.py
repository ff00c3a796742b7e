#!/usr/bin/env python3
"""Exports the trained Contention Score model to ONNX, checks it, evaluates it, and
writes its sidecar and golden vectors.

    export_onnx.py [--weights /var/cache/interference-model/work/contention-lstm.weights.npz]
                   [--data DIR] [--out models/]

(train_lstm.py runs this at its end.) The graph, built with the `onnx` helpers from the
trained weights, is the one the agent's tests were written against
(scripts/model/make_test_model.py), opset 17, IR 9:

  window [N, T, F] -> Transpose [T, N, F] -> LSTM (layout 0, forward, default
  activations; W [1, 4H, F], R [1, 4H, H], B [1, 8H] = Wb then Rb; gates i, o, f, c)
  -> Y_h [1, N, H] -> Squeeze -> [N, H] -> Gemm -> [N, 1] -> Sigmoid -> Mul 100
  -> slowdown [N, 1]

Check: onnxruntime's outputs must equal the JAX model's within 1e-4 (points) on every
held-out window, or the export fails. Outputs: <out>/<name>.onnx, <name>.json (the
sidecar), <name>.golden.json (normalised input of ~16 real held-out windows, with
onnxruntime's output; also their raw input and measured labels).
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
import evaluate_windows as ev  # noqa: E402
import features as fx  # noqa: E402
import lstm_model as tl  # noqa: E402
from jsonsafe import f32_list, finite  # noqa: E402,F401

OPSET = 17
IR_VERSION = 9
TOLERANCE = 1e-4
GOLDEN_WINDOWS = 16


def load_weights(path: str):
    z = np.load(path, allow_pickle=False)
    params = {k: z[k] for k in ("W", "R", "Wb", "Rb", "head_w", "head_b")}
    return params, z["mean"], z["std"], json.loads(str(z["meta"]))


def build_onnx(params: dict, t: int, f: int):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h = params["R"].shape[1]
    assert params["W"].shape == (4 * h, f), params["W"].shape
    w = params["W"].astype(np.float32)[None]
    r = params["R"].astype(np.float32)[None]
    b = np.concatenate([params["Wb"], params["Rb"]]).astype(np.float32)[None]
    head_w = params["head_w"].astype(np.float32).reshape(h, 1)
    head_b = np.asarray(params["head_b"], dtype=np.float32).reshape(1)
    nodes = [
        helper.make_node("Transpose", ["window"], ["x_tnf"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["x_tnf", "W", "R", "B"], ["", "y_h"],
                         hidden_size=h, layout=0, direction="forward"),
        helper.make_node("Squeeze", ["y_h", "axis0"], ["h"]),
        helper.make_node("Gemm", ["h", "head_w", "head_b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p"]),
        helper.make_node("Mul", ["p", "hundred"], ["slowdown"]),
    ]
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(r, "R"),
        numpy_helper.from_array(b, "B"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
        numpy_helper.from_array(head_w, "head_w"),
        numpy_helper.from_array(head_b, "head_b"),
        numpy_helper.from_array(np.array(100.0, dtype=np.float32), "hundred"),
    ]
    graph = helper.make_graph(
        nodes, "contention-lstm",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["N", t, f])],
        [helper.make_tensor_value_info("slowdown", TensorProto.FLOAT, ["N", 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="interference-train_lstm")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def check_export(onnx_path: str, params: dict, x_norm: np.ndarray) -> dict:
    """onnxruntime vs the JAX model (and a float64 numpy reference) on x_norm."""
    s_ort = ev.onnx_scores(onnx_path, x_norm).astype(np.float64)
    s_jax = tl.predict(params, x_norm).astype(np.float64)
    s_ref = tl.forward_numpy(params, x_norm)
    d_jax = float(np.max(np.abs(s_ort - s_jax))) if len(x_norm) else 0.0
    d_ref = float(np.max(np.abs(s_ort - s_ref))) if len(x_norm) else 0.0
    print(f"export check on {len(x_norm)} windows: max |onnxruntime - JAX| = {d_jax:.2e}, "
          f"max |onnxruntime - float64 reference| = {d_ref:.2e} (tolerance {TOLERANCE:g})", file=sys.stderr)
    if not d_jax <= TOLERANCE:
        i = int(np.argmax(np.abs(s_ort - s_jax)))
        raise SystemExit(f"EXPORT CHECK FAILED: onnxruntime and JAX differ by {d_jax:.3e} points "
                         f"(window {i}: {s_ort[i]} vs {s_jax[i]}), more than {TOLERANCE:g}")
    return {"windows": int(len(x_norm)), "max_abs_diff_jax": d_jax, "max_abs_diff_float64": d_ref}


def golden_indices(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n windows: half the highest labels (spread over distinct labels), half at random."""
    rng = np.random.default_rng(seed)
    order = np.argsort(-y, kind="mergesort")
    high = order[: max(1, n // 2) * 20 : 20][: n // 2] if len(order) >= n * 10 else order[: n // 2]
    rest = np.setdiff1d(np.arange(len(y)), high)
    pick = rng.choice(rest, size=min(n - len(high), len(rest)), replace=False)
    return np.sort(np.concatenate([high, pick]))


def recorded_on(ds: "dsm.Dataset") -> dict:
    hosts = [e.get("host") or {} for e in ds.experiments]
    kernels = sorted({str(h.get("kernel")) for h in hosts if h.get("kernel") is not None})
    cpus = sorted({h.get("cpus") for h in hosts if h.get("cpus") is not None})
    layouts = {}
    for e in ds.experiments:
        layouts[str(e.get("layout"))] = layouts.get(str(e.get("layout")), 0) + 1
    out = {"kernel": kernels[0] if len(kernels) == 1 else kernels,
           "cpus": cpus[0] if len(cpus) == 1 else cpus,
           "layouts": dict(sorted(layouts.items())),
           "pmu": False}
    return out


def versions() -> dict:
    import jax
    import onnx
    import onnxruntime
    import optax

    return {"python": platform.python_version(), "jax": jax.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def export_all(weights: str, out_dir: str, ds: "dsm.Dataset | None" = None, data: str | None = None) -> dict:
    params, mean, std, meta = load_weights(weights)
    name = meta["name"]
    t, tick, horizon = meta["window"], meta["tick_seconds"], meta["horizon"]
    if ds is None:
        ds = dsm.load_dataset(data or meta["data"], t, tick, horizon)
    os.makedirs(out_dir, exist_ok=True)

    model = build_onnx(params, t, fx.F)
    onnx_path = os.path.join(out_dir, f"{name}.onnx")
    data_bytes = model.SerializeToString()
    with open(onnx_path, "wb") as f:
        f.write(data_bytes)
    onnx_sha = hashlib.sha256(data_bytes).hexdigest()

    held = ds.subset(ds.held_out & ds.labelled)
    xn = tl.normalise(held.x, mean, std)
    check = check_export(onnx_path, params, xn)

    sidecar = {
        "format": 1,
        "name": name,
        "version": meta["version"],
        "model_file": os.path.basename(onnx_path),
        "onnx_sha256": onnx_sha,
        "architecture": {"type": "lstm", "hidden": int(params["R"].shape[1]), "layers": 1},
        "input": {"name": "window", "shape": ["N", t, fx.F]},
        "output": {"name": "slowdown", "shape": ["N", 1]},
        "window": t,
        "tick_seconds": int(tick),
        "horizon": horizon,
        "features": fx.FEATURE_NAMES,
        "normalisation": {"mean": f32_list(mean), "std": f32_list(std)},
    }
    sidecar_path = os.path.join(out_dir, f"{name}.json")
    m = ev.full_evaluation(onnx_path, sidecar, ds, 25.0)
    m["export_check"] = check
    v = versions()
    hist = meta["history"]
    sidecar["training"] = {
        "data_sha256": dsm.data_sha256(ds.root, [e["dir"] for e in ds.experiments]),
        "data": meta["data"],
        "experiments": len(ds.experiments),
        "train_experiments": meta["train_experiments"],
        "validation_experiments": meta["validation_experiments"],
        "held_out_experiments": meta["held_out_experiments"],
        "windows": int(meta["train_windows"] + meta["validation_windows"]),
        "train_windows": meta["train_windows"],
        "validation_windows": meta["validation_windows"],
        "held_out_windows": int(len(held)),
        "held_out_classes": tl.HELD_OUT_CLASSES,
        "seed": meta["seed"],
        "epochs": hist["epochs"],
        "best_epoch": hist["best_epoch"],
        "validation_mae": hist["best_val_mae"],
        "cross_validation": meta.get("cross_validation"),
        "train_seconds": round(hist["seconds"], 1),
        "loss": meta["loss"],
        "optimizer": f"adamw lr {meta['lr']} weight decay {meta['weight_decay']}, batch {meta['batch']}, "
                     "global-norm clip 1",
        "input_noise": meta.get("noise", 0.0),
        "class_dropout": meta.get("class_dropout", 0.0),
        "excluded_victim_kinds": meta.get("excluded_victim_kinds", []),
        "time_features": "randomised per training window (uniform time of the week)",
        "python": v["python"],
        "jax": v["jax"],
        "versions": v,
        "recorded_on": recorded_on(ds),
    }
    sidecar["evaluation"] = finite(m)
    with open(sidecar_path, "w") as f:
        json.dump(sidecar, f, indent=1, allow_nan=False)
        f.write("\n")

    # Golden vectors: real held-out windows, normalised, with onnxruntime's output.
    gi = golden_indices(held.y, GOLDEN_WINDOWS, meta["seed"])
    gx = np.asarray(f32_list(xn[gi]), dtype=np.float32).reshape(len(gi), t, fx.F)
    gy = ev.onnx_scores(onnx_path, gx)
    golden = {"input_shape": [len(gi), t, fx.F], "input": f32_list(gx), "output": f32_list(gy),
              "raw_input": f32_list(held.x[gi]),
              "labels": [round(float(y), 3) for y in held.y[gi]]}
    golden_path = os.path.join(out_dir, f"{name}.golden.json")
    with open(golden_path, "w") as f:
        json.dump(golden, f, allow_nan=False)
        f.write("\n")

    print(f"wrote {onnx_path} (sha256 {onnx_sha}), {sidecar_path}, {golden_path}", file=sys.stderr)
    ev.print_evaluation(m)
    return sidecar


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=os.path.join(tl.DEFAULT_WORK, "contention-lstm.weights.npz"))
    ap.add_argument("--data", default=None, help="dataset (default: the one the weights were trained on)")
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "..", "models")))
    a = ap.parse_args()
    import jax

    jax.config.update("jax_platforms", "cpu")
    export_all(a.weights, a.out, data=a.data)


if __name__ == "__main__":
    main()
