#!/usr/bin/env python3
"""The agent against a neighbour that replays a real tenant, with and without forecasts
(issue 16, "agent with a trace-replaying neighbour").

    lab_compare.py [--binary PATH] [--column VM] [--start-row R] [--rows N] [--step S]
                   [--threads N] [--modes none,nowcast,forecast] [--repeats K]
                   [--out DIR] [--json FILE]

Per mode and repeat, on CPU 0 of this host:

- the victim, a priority "VM" (a cgroup, 1 vCPU), computes all the time and reports
  its progress every second (scripts/dataset/workload.c);
- the neighbour (a cgroup, --threads vCPUs) replays one VM of the Azure trace
  (../shared/traces/) from --start-row, one trace point (5 min) per --step seconds:
  a compressed day of 288 x step seconds (576 s at 2 s);
- the agent runs with its embedded defaults plus the inventory and a 1 s tick (the
  compressed steps need ticks shorter than a step), in one of three modes:
  `none` (no agent: how much the neighbour hurts), `nowcast` (the default score),
  `forecast` (`[forecast]` on, step = --step, day = 288 steps, horizon 5 steps, the
  clock's origin placed so that the host's time of day and week is the trace's, and
  the neighbour's last 2040 trace points before --start-row imported as its history
  with `interference forecast --import`, so it forecasts from yesterday and last
  week as an agent that has watched this tenant for a week would).

Measured: the victim's speed (ops per busy second) per second of the replay against
its solo speed measured just before (and after, for drift); the actions the agent
applied (mitigations and rollbacks, from its log; which a forecast triggered, from
the ledger's x_Trigger) and the forecast outcomes from its metrics; the neighbour's
work done (what the protection cost it). The default window (vm827636 from row 3948) holds a daily job:
the same burst (85-93 %) came at almost the same time the day before.

Needs root (cgroups, eBPF) and the release binary (./scripts/setup.sh). Standard
library only. The machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent / "dataset"))
import cgroups as cg  # noqa: E402
import schedules as sc  # noqa: E402
import traces as tr  # noqa: E402

MONDAY_EPOCH = 4 * 86400  # docs/forecast.md section 2: step 0 of a host clock
DAY_STEPS, WEEK_STEPS, HISTORY_STEPS = 288, 2016, 2040
TRACE_STEP_MIN = 5
HORIZON_STEPS = 5
SOLO_SECONDS = 12
AGENT_STARTUP = 10.0  # the agent loads its probes and the models before the replay


def die(msg: str) -> None:
    print(f"lab_compare: {msg}", file=sys.stderr)
    sys.exit(1)


def build_workload() -> Path:
    exe = Path("/var/cache/interference-dataset/bin/dataset-workload")
    src = HERE.parent / "dataset" / "workload.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        exe.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", str(exe), str(src)], check=True)
    return exe


class Workload:
    """One dataset-workload process in its cgroups; its progress lines with arrival time."""

    def __init__(self, exe: Path, cgs: cg.Cgroups, threads: int, schedule, start_at: float, duration: float):
        sched = ",".join(f"{t}:{d}" for t, d in schedule)
        argv = [str(exe), "cpu", "--threads", str(threads), "--schedule", sched,
                "--start-at", f"{start_at:.3f}", "--duration", str(duration)]
        self.lines: list[dict] = []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, preexec_fn=cgs.enter)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            r["at"] = time.time()
            self.lines.append(r)

    def speed(self, t0: float, t1: float) -> tuple[float, list[float]]:
        """Ops per busy second over the seconds that arrived in [t0, t1], and per second."""
        sel = [r for r in self.lines if t0 <= r["at"] <= t1 and r["busy"] > 0]
        ops = sum(r["ops"] for r in sel)
        busy = sum(r["busy"] for r in sel)
        return (ops / busy if busy else 0.0), [r["ops"] / r["busy"] for r in sel]

    def ops(self, t0: float, t1: float) -> float:
        return sum(r["ops"] for r in self.lines if t0 <= r["at"] <= t1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def config_text(victim: cg.Cgroups, noisy: cg.Cgroups, threads: int, mode: str, state: Path,
                step: int, offset: int) -> str:
    def vm(name, cgs, prio, customer, vcpus):
        dirs = ", ".join(f'"{d}"' for d in cgs.dirs)
        return (f'[[vm]]\nname = "{name}"\ncgroups = [{dirs}]\npriority = "{prio}"\n'
                f'customer = "{customer}"\nvcpus = {vcpus}\n\n')
    text = '[collect]\ninterval = "1s"\n\n'
    text += vm("lc-victim", victim, "high", "acme", 1) + vm("lc-noisy", noisy, "normal", "globex", threads)
    if mode == "forecast":
        text += (f'[forecast]\nenabled = true\nstep = "{step}s"\nday = "{step * DAY_STEPS}s"\n'
                 f'origin_offset_seconds = {offset}\nhorizon = "{step * HORIZON_STEPS}s"\n'
                 f'state_dir = "{state}"\n')
    return text


def aligned_offset(t0: int, row: int, step: int) -> int:
    """origin_offset_seconds that makes the step starting at t0 the trace row's step of
    the week: (t0 - MONDAY_EPOCH - offset) / step = row (mod WEEK_STEPS)."""
    return (t0 - MONDAY_EPOCH - row * step) % (WEEK_STEPS * step)


def write_history(path: Path, values: list, first_row: int) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["minute", "lc-noisy", "lc-victim"])
        for i, v in enumerate(values):
            w.writerow([(first_row + i) * TRACE_STEP_MIN, f"{v:.3f}", "100"])


def agent_actions(work: Path) -> dict:
    """The actions the agent applied, from its log (the journal is compacted at exit):
    mitigations and rollbacks; and which mitigations a forecast triggered, from the
    ledger's `x_Trigger`."""
    mitigations, rollbacks = [], []
    log = work / "agent.log"
    if log.exists():
        for line in log.read_text().splitlines():
            m = re.search(r" INFO (\S+) applied: (.*)$", line)
            if m:
                (rollbacks if "roll back" in m.group(2) else mitigations).append(m.group(1))
    forecast_ids = set()
    for f in sorted((work / "ledger").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if r.get("x_Trigger") == "forecast":
                forecast_ids.add(r.get("x_ActionId"))
    return {"mitigations": len(mitigations), "rollbacks": len(rollbacks),
            "forecast_triggered": sum(1 for a in mitigations if a in forecast_ids)}


def metric(path: Path, prefix: str) -> dict:
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith(prefix):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
    return out


def run_once(mode: str, args, exe: Path, mounts, values: list, history: list, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    victim = cg.Cgroups(mounts, "lc-victim", "0")
    noisy = cg.Cgroups(mounts, "lc-noisy", "0")
    body = args.rows * args.step
    agent = None
    procs: list[Workload] = []
    try:
        now = time.time()
        # The replay starts on a step boundary after the solo measurement and the
        # agent's start-up.
        t0 = int(now + SOLO_SECONDS + AGENT_STARTUP + 3)
        t0 += (-t0) % args.step
        offset = aligned_offset(t0, args.start_row, args.step)
        cfg = work / "agent.toml"
        cfg.write_text(config_text(victim, noisy, args.threads, mode, work / "forecast", args.step, offset))
        total = (t0 - now) + body + SOLO_SECONDS + 5
        v = Workload(exe, victim, 1, [(0, 1.0)], now + 0.5, total)
        procs.append(v)
        schedule = sc.shift(sc.from_trace(values, 1.0 / args.step), 0)
        n = Workload(exe, noisy, args.threads, schedule, t0, body)
        procs.append(n)
        time.sleep(2 + SOLO_SECONDS)
        solo_before, _ = v.speed(now + 2.5, now + 2 + SOLO_SECONDS)
        if mode == "forecast":
            hist = work / "history.csv"
            write_history(hist, history, args.start_row - len(history))
            imp = subprocess.run([str(args.binary), "forecast", "--import", str(hist), "--config", str(cfg),
                                  "--until", str(t0)], capture_output=True, text=True)
            (work / "import.log").write_text(imp.stderr)
            if imp.returncode != 0 or "time of day and week differ" in imp.stderr:
                die(f"import failed or misaligned ({imp.returncode}):\n{imp.stderr}")
        if mode != "none":
            agent = subprocess.Popen([str(args.binary), "agent", "--config", str(cfg), "--journal",
                                      str(work / "journal.jsonl"), "--ledger", str(work / "ledger"),
                                      "--metrics-file", str(work / "metrics.prom")],
                                     stdout=subprocess.DEVNULL, stderr=open(work / "agent.log", "w"))
        time.sleep(max(0.0, t0 - time.time()))
        if agent is not None and agent.poll() is not None:
            die(f"the agent exited with {agent.returncode}: see {work}/agent.log")
        time.sleep(body + 1)
        t1 = time.time()
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=60)
        # The neighbour has finished: the victim alone again.
        a0 = time.time()
        time.sleep(SOLO_SECONDS)
        solo_after, _ = v.speed(a0 + 1, a0 + SOLO_SECONDS)
        run_speed, per_second = v.speed(t0 + 1, t1)
        noisy_ops = n.ops(t0, t1 + 1)
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
        for p in procs:
            p.stop()
        victim.remove()
        noisy.remove()
    actions = agent_actions(work)
    ratios = sorted(s / solo_before for s in per_second) if solo_before else []
    outcomes = metric(work / "metrics.prom", "interference_forecast_outcomes_total")
    return {
        "mode": mode,
        "solo_before": round(solo_before, 1),
        "solo_after": round(solo_after, 1),
        "drift": round(abs(solo_after / solo_before - 1), 4) if solo_before else None,
        "speed_ratio": round(run_speed / solo_before, 4) if solo_before else None,
        "p10_second_ratio": round(ratios[len(ratios) // 10], 4) if ratios else None,
        "seconds_below_90": sum(r < 0.9 for r in ratios),
        "seconds": len(ratios),
        "actions": actions["mitigations"] + actions["rollbacks"],
        **actions,
        "forecast_outcomes": {k.split('"')[1]: v for k, v in outcomes.items() if '"' in k},
        "noisy_ops": round(noisy_ops),
        "work": str(work),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "interference")
    ap.add_argument("--trace", default=None, help="default: ../shared/traces/azure-v1-cpu-avg-5min-train.csv.gz")
    ap.add_argument("--column", default="vm827636")
    ap.add_argument("--start-row", type=int, default=3948)
    ap.add_argument("--rows", type=int, default=120)
    ap.add_argument("--step", type=int, default=2, help="seconds per trace point (a day is 288 of them)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="none,nowcast,forecast")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        die("needs root (cgroups, eBPF)")
    if not args.binary.exists():
        die(f"{args.binary} missing: run ./scripts/setup.sh or pass --binary")
    trace = tr.load(args.trace)
    if args.column not in trace.columns:
        die(f"--column {args.column}: not in {trace.path}")
    col = trace.columns[args.column]
    if not HISTORY_STEPS <= args.start_row <= len(col) - args.rows:
        die(f"--start-row {args.start_row}: needs {HISTORY_STEPS} rows of history before it and "
            f"{args.rows} after it (the trace has {len(col)})")
    values = col[args.start_row: args.start_row + args.rows]
    history = col[args.start_row - HISTORY_STEPS: args.start_row]
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in ("none", "nowcast", "forecast"):
            die(f"--modes: unknown mode {m!r} (none, nowcast, forecast)")
    exe = build_workload()
    mounts = cg.mounts()
    out = args.out or Path(tempfile.mkdtemp(prefix="lab-compare-"))
    results = []
    for k in range(args.repeats):
        for m in modes:
            r = run_once(m, args, exe, mounts, values, history, out / f"{m}-{k}")
            r["repeat"] = k
            print(json.dumps(r), flush=True)
            results.append(r)
    summary = {"trace": trace.path, "column": args.column, "start_row": args.start_row, "rows": args.rows,
               "step_seconds": args.step, "threads": args.threads, "runs": results}
    for m in modes:
        rs = [r for r in results if r["mode"] == m]
        summary[m] = {"speed_ratio_median": statistics.median(r["speed_ratio"] for r in rs),
                      "actions_median": statistics.median(r["actions"] for r in rs)}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({m: summary[m] for m in modes}))


if __name__ == "__main__":
    main()
