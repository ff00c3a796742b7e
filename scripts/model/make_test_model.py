#!/usr/bin/env python3
"""Test fixtures for the agent's `predict` stage (interference-user/src/predict/testdata).

Builds, with the `onnx` helpers and random weights from a fixed seed, models shaped like
the shipped Contention Score model (docs/dataset.md; the graph the trainer exports):

  window [N, T, F] -> Transpose -> LSTM (layout 0, forward) -> Y_h -> Squeeze -> [N, H]
                   -> Gemm -> [N, 1] -> Sigmoid -> Mul 100 -> slowdown [N, 1]

and writes:

  lstm.onnx, lstm.json     a valid model (T = 6, F = 49, H = 32) and its sidecar
  lstm.golden.json         normalised input, onnxruntime's output (the golden-vector
                           format of models/), plus the raw input it was normalised from
  gemm.onnx                a model with the right input and output but no LSTM node
  lstm_fixed_batch.onnx    a tiny LSTM whose batch dimension is fixed at 1
  lstm_two_outputs.onnx    a tiny LSTM whose output is [N, 2]
  lstm_reverse.onnx        a tiny LSTM with direction="reverse" (tract would run it forward)

The tests patch the sidecar's onnx_sha256 for the other models themselves, so only one
sidecar is stored. Run with the model venv (scripts/model/setup-venv.sh):

  /var/cache/interference-model/venv/bin/python scripts/model/make_test_model.py

Deterministic: the same seed gives the same weights, windows and hashes.
"""

import argparse
import hashlib
import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SEED = 20260601
T = 6
H = 32
GOLDEN_WINDOWS = 4
# LSTM needs opset >= 14 for `layout`; tract is tested against opsets 9 to 18.
OPSET = 17
# Every onnxruntime since 1.15 reads IR 9; newer `onnx` packages default to newer IRs.
IR_VERSION = 9

PER_VM = [
    "cpu_cores", "throttled_ratio", "rq_wait_ratio", "rq_mean_wait_log", "rq_max_wait_log",
    "preempt_rate_log", "preempted_ratio", "wakeup_rate_log", "psi_cpu_ratio",
    "psi_memory_ratio", "psi_io_ratio", "io_ops_log", "io_bytes_log", "io_latency_log",
    "major_faults_log", "memory_log", "class_cpu", "class_memory", "class_io", "class_other",
]
PAIR_TIME = [
    "pair_preempted_by_ratio", "pair_preempted_by_rate_log", "pair_preempts_ratio",
    "pair_host_preempted_ratio", "pair_shared_cpus",
    "time_day_sin", "time_day_cos", "time_week_sin", "time_week_cos",
]
FEATURES = [f"v_{n}" for n in PER_VM] + [f"a_{n}" for n in PER_VM] + PAIR_TIME
assert len(FEATURES) == 49
F = len(FEATURES)


def f32_list(a):
    """Shortest decimal strings that read back as the same float32 (keeps files small)."""
    return [float(str(np.float32(x))) for x in np.asarray(a, dtype=np.float32).ravel()]


def raw_windows(rng, n):
    """Plausible raw feature windows: ratios in 0..2, logs in 0..12, one-hot classes,
    shared-CPU fractions, unit-circle time features."""
    x = np.zeros((n, T, F), dtype=np.float32)
    for i, name in enumerate(FEATURES):
        base = name[2:] if name[:2] in ("v_", "a_") else name
        if base.startswith("class_"):
            continue
        if base.endswith("_log"):
            x[:, :, i] = rng.uniform(0.0, 12.0, (n, T))
        elif base == "pair_shared_cpus":
            x[:, :, i] = rng.choice([0.0, 0.5, 1.0], (n, 1))
        elif base.startswith("time_"):
            continue
        else:
            x[:, :, i] = rng.uniform(0.0, 1.0, (n, T)) * rng.uniform(0.0, 2.0, (n, 1))
    for prefix in ("v_", "a_"):
        cls = rng.integers(0, 4, n)
        first = FEATURES.index(prefix + "class_cpu")
        x[np.arange(n), :, first + cls] = 1.0
    angle = rng.uniform(0, 2 * np.pi, (n, 2))
    for j, name in enumerate(["time_day", "time_week"]):
        x[:, :, FEATURES.index(name + "_sin")] = np.sin(angle[:, j])[:, None]
        x[:, :, FEATURES.index(name + "_cos")] = np.cos(angle[:, j])[:, None]
    return x


def lstm_graph(rng, name, batch, hidden, outputs, direction="forward"):
    """The trainer's graph shape with random weights (ONNX gate order i, o, f, c)."""
    scale = 1.0 / np.sqrt(hidden)
    w = rng.normal(0, scale, (1, 4 * hidden, F)).astype(np.float32)
    r = rng.normal(0, scale, (1, 4 * hidden, hidden)).astype(np.float32)
    b = rng.normal(0, 0.1, (1, 8 * hidden)).astype(np.float32)
    head_w = rng.normal(0, 1.0, (hidden, outputs)).astype(np.float32)
    head_b = rng.normal(0, 0.1, (outputs,)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["window"], ["x_tnf"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["x_tnf", "W", "R", "B"], ["", "y_h"],
                         hidden_size=hidden, layout=0, direction=direction),
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
        nodes, name,
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, [batch, T, F])],
        [helper.make_tensor_value_info("slowdown", TensorProto.FLOAT, [batch, outputs])],
        inits,
    )
    return finish(graph)


def gemm_graph(rng):
    """Right input and output, no recurrence: what a mistaken export might ship."""
    w = rng.normal(0, 0.05, (T * F, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["window"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p"]),
        helper.make_node("Mul", ["p", "hundred"], ["slowdown"]),
    ]
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.zeros((1,), dtype=np.float32), "b"),
        numpy_helper.from_array(np.array(100.0, dtype=np.float32), "hundred"),
    ]
    graph = helper.make_graph(
        nodes, "gemm",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["N", T, F])],
        [helper.make_tensor_value_info("slowdown", TensorProto.FLOAT, ["N", 1])],
        inits,
    )
    return finish(graph)


def finish(graph):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="make_test_model.py")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def sidecar(onnx_bytes, mean, std):
    return {
        "format": 1,
        "name": "contention-lstm-fixture",
        "version": "0.0.1",
        "model_file": "lstm.onnx",
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "architecture": {"type": "lstm", "hidden": H, "layers": 1},
        "input": {"name": "window", "shape": ["N", T, F]},
        "output": {"name": "slowdown", "shape": ["N", 1]},
        "window": T,
        "tick_seconds": 5,
        "horizon": 1,
        "features": FEATURES,
        "normalisation": {"mean": f32_list(mean), "std": f32_list(std)},
        "training": {"note": "random weights, seed %d: a test fixture, not a model" % SEED},
        "evaluation": {},
    }


def main():
    here = pathlib.Path(__file__).resolve().parent
    default_out = here.parent.parent / "interference-user/src/predict/testdata"
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=default_out)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)

    lstm = lstm_graph(rng, "contention-lstm-fixture", "N", H, 1)
    gemm = gemm_graph(rng)
    fixed = lstm_graph(rng, "fixed-batch", 1, 2, 1)
    two = lstm_graph(rng, "two-outputs", "N", 2, 2)
    reverse = lstm_graph(rng, "reverse", "N", 2, 1, direction="reverse")

    # Normalisation as the trainer computes it, from a sample of raw windows; one-hot and
    # time features keep mean 0, std 1 (docs/dataset.md, "Normalisation").
    sample = raw_windows(rng, 256).reshape(-1, F)
    mean = sample.mean(axis=0).astype(np.float32)
    std = sample.std(axis=0).astype(np.float32)
    for i, name in enumerate(FEATURES):
        if "class_" in name or name.startswith("time_"):
            mean[i], std[i] = 0.0, 1.0
        elif std[i] == 0:
            std[i] = 1.0
    mean = np.array(f32_list(mean), dtype=np.float32)
    std = np.array(f32_list(std), dtype=np.float32)

    raw = raw_windows(rng, GOLDEN_WINDOWS)
    # Exactly the agent's arithmetic: f32 subtract, then f32 divide.
    norm = ((raw - mean) / std).astype(np.float32)
    sess = ort.InferenceSession(lstm, providers=["CPUExecutionProvider"])
    out = sess.run(["slowdown"], {"window": norm})[0]

    files = {
        "lstm.onnx": lstm,
        "gemm.onnx": gemm,
        "lstm_fixed_batch.onnx": fixed,
        "lstm_two_outputs.onnx": two,
        "lstm_reverse.onnx": reverse,
        "lstm.json": (json.dumps(sidecar(lstm, mean, std), indent=1) + "\n").encode(),
        "lstm.golden.json": (json.dumps({
            "input_shape": list(norm.shape),
            "input": f32_list(norm),
            "output": f32_list(out[:, 0]),
            "raw_input": f32_list(raw),
        }) + "\n").encode(),
    }
    total = 0
    for name, data in files.items():
        (args.out / name).write_bytes(data)
        total += len(data)
        print(f"{args.out / name}: {len(data)} bytes")
    print(f"total {total} bytes; onnx {onnx.__version__}, onnxruntime {ort.__version__}, "
          f"numpy {np.__version__}; golden output {f32_list(out[:, 0])}")


if __name__ == "__main__":
    main()
