#!/usr/bin/env python3
"""onnxruntime's side of the scoring benchmark (interference-user/benches/scoring.rs).

Runs an ONNX model on the batch the Rust benchmark wrote (raw little-endian float32,
already normalised), one batched run per iteration, single-threaded and sequential
like the agent's tract run, and reports the timings (wall clock, and this thread's CPU
time) as one JSON line on stdout; the outputs go to --output (raw float32) so the
benchmark can compare them with tract's.
The benchmark starts this under `taskset -c 0`.

  python bench_onnxruntime.py --model M.onnx --input in.f32 --shape 4950,6,49 \
      --output out.f32 [--warmup 3] [--iterations 30]
"""

import argparse
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True, help="raw float32, row-major")
    ap.add_argument("--shape", required=True, help="n,t,f")
    ap.add_argument("--output", required=True, help="where to write the outputs (float32)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=30)
    args = ap.parse_args()

    shape = tuple(int(d) for d in args.shape.split(","))
    x = np.fromfile(args.input, dtype="<f4")
    if x.size != int(np.prod(shape)):
        sys.exit(f"{args.input}: {x.size} values, expected {shape}")
    x = x.reshape(shape)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(args.model, sess_options=opts,
                                providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    out_name = sess.get_outputs()[0].name

    for _ in range(args.warmup):
        out = sess.run([out_name], feed)[0]
    wall, cpu = [], []
    for _ in range(args.iterations):
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        out = sess.run([out_name], feed)[0]
        cpu.append((time.thread_time_ns() - c0) / 1e6)
        wall.append((time.perf_counter_ns() - t0) / 1e6)
    np.asarray(out, dtype="<f4").ravel().tofile(args.output)
    wall.sort()
    cpu.sort()
    print(json.dumps({
        "median_ms": wall[len(wall) // 2],
        "p90_ms": wall[min(len(wall) - 1, (len(wall) * 9) // 10)],
        # With one intra-op thread onnxruntime runs on the calling thread, so this is
        # all of its CPU time, whatever else shares the core.
        "cpu_median_ms": cpu[len(cpu) // 2],
        "iterations": args.iterations,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }))


if __name__ == "__main__":
    main()
