#!/usr/bin/env python3
"""Record co-location experiments with 1 s labels (docs/dataset.md).

    record.py --out DIR [--preset full|smoke] [--only FAMILY|ID,...] [--seed S]
              [--binary PATH] [--skip-lab] [--max-foreign-cores X] [--wait-idle S]
              [--dry-run]

Each experiment has one victim (a workload in cgroups, or a lab VM) and one or two
neighbours on a CPU layout, runs `interference collect` at a 1 s tick over them as
static VMs, and keeps:

- samples.jsonl: the collector's VmSample lines, verbatim;
- rates.jsonl: every workload's progress line, one per second;
- host.jsonl: the host's load per second (scripts/dataset/host_monitor.py);
- labels.jsonl: 1 s pair labels (scripts/dataset/labels.py);
- experiment.json: the plan (family, layout and CPUs, thread counts, duty levels,
  schedules, calibration), solo speeds before and after with their drift, the host's
  load, label counts.

The matrix (scripts/dataset/plans.py) covers four schedule families (steps, ramps,
recurring, trace replays), cpu victims with 1-4 threads, cache, membw and fsync
victims, and lab VMs. fsync writes only to ext4 on a RAM-backed loop device. An
interrupted run resumes: finished experiments are kept. The machine should be idle:
before each experiment the recorder measures the host's load outside its cgroups,
warns above --max-foreign-cores, and with --wait-idle waits up to that long for it
to drop; the load is recorded either way.

Needs root (cgroups, eBPF). Only the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cgroups as cg  # noqa: E402
import host_monitor as hm  # noqa: E402
import labels as lb  # noqa: E402
import plans  # noqa: E402
import traces as tr  # noqa: E402
from lab_vm import LabVm  # noqa: E402
from ram_disk import ram_disk  # noqa: E402

ROOT = HERE.parent.parent
MIB = {"cache": 16, "membw": 256}


def die(msg: str) -> None:
    print(f"record: {msg}", file=sys.stderr)
    sys.exit(1)


def build_workload(cache: Path) -> Path:
    exe = cache / "bin" / "dataset-workload"
    src = HERE / "workload.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        exe.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", str(exe), str(src)], check=True)
    return exe


def collector_config(path: Path, samples: Path, vms: list, lab: bool) -> None:
    lines = ["[collect]", 'interval = "1s"', f'samples = "{samples}"', 'host = "dataset"', "",
             "[discovery]", f"qemu = {'true' if lab else 'false'}", f"libvirt = {'true' if lab else 'false'}"]
    for w, cgs in vms:
        lines += ["", "[[vm]]", f'name = "{w["vm"]}"',
                  "cgroups = [" + ", ".join(f'"{d}"' for d in cgs.dirs) + "]",
                  f'workload = "{plans.KINDS[w["kind"]]}"', 'customer = "lab"']
    path.write_text("\n".join(lines) + "\n")


def read_rates(p: subprocess.Popen, vm: str, out: list, lock: threading.Lock) -> None:
    assert p.stdout is not None
    for line in p.stdout:
        ts = int(time.time() * 1000)
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        rec = {"timestamp_ms": ts, "vm": vm, "t": r["t"], "ops": r["ops"],
               "busy_seconds": r["busy"], "duty": r["duty"]}
        with lock:
            out.append(rec)


def wait_for_idle(limit: float, wait: float) -> float:
    """The host's load outside our cgroups (cores, over 3 s); with `wait` > 0, measured
    again until it is below `limit` or `wait` s have passed."""
    deadline = time.monotonic() + wait
    while True:
        load = hm.measure_foreign([], 3.0)
        if load <= limit:
            return load
        if time.monotonic() >= deadline:
            print(f"record: warning: {load:.2f} cores busy outside the experiment (limit {limit}); "
                  f"the labels will carry that noise", file=sys.stderr)
            return load
        print(f"record: {load:.2f} cores busy outside the experiment, waiting", flush=True)
        time.sleep(10)


def run_experiment(plan: dict, out: Path, exe: Path, agent: Path, mounts: dict, scratch: Path, args) -> dict:
    tmp_dir = out / (plan["id"] + ".partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    host_work = [w for w in plan["workloads"] if w["kind"] != "vm"]
    lab = len(host_work) < len(plan["workloads"])
    load_before = wait_for_idle(args.max_foreign_cores, args.wait_idle)
    vms = [(w, cg.Cgroups(mounts, w["vm"], w["cpus"])) for w in host_work]
    lab_vm = collector = monitor = None
    stop_tail = threading.Event()
    procs: list[subprocess.Popen] = []
    lines: list[dict] = []
    lock = threading.Lock()
    start_at = 0.0
    try:
        if lab:
            lab_vm = LabVm(plan["workloads"][0]["cpus"])
        samples = tmp_dir / "samples.jsonl"
        collector_config(tmp_dir / "collect.toml", samples, vms, lab)
        collector = subprocess.Popen([str(agent), "collect", "--config", str(tmp_dir / "collect.toml")],
                                     stdout=subprocess.DEVNULL, stderr=open(tmp_dir / "collect.log", "w"))
        time.sleep(2.5)  # the collector loads its probes and takes its first reading
        if collector.poll() is not None:
            die(f"interference collect exited with {collector.returncode}: see {tmp_dir}/collect.log")
        uni = mounts.get("unified")
        ours_parent = [uni / cg.PARENT] if uni is not None else []
        monitor = hm.HostMonitor(tmp_dir / "host.jsonl",
                                 lambda: ours_parent + (lab_vm.unified_dirs() if lab_vm else [])).start()
        start_at = time.time() + 1.5
        if lab_vm is not None:
            threading.Thread(target=lab_vm.tail, args=(lines, lock, stop_tail), daemon=True).start()
        for w, cgs in vms:
            sched = ",".join(f"{t}:{d}" for t, d in w["schedule"])
            argv = [str(exe), w["kind"], "--threads", str(w["threads"]), "--schedule", sched,
                    "--start-at", f"{start_at:.3f}", "--duration", str(plan["seconds"]), "--dir", str(scratch)]
            if w["kind"] in MIB:
                argv += ["--mib", str(MIB[w["kind"]])]
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, preexec_fn=cgs.enter)
            procs.append(p)
            threading.Thread(target=read_rates, args=(p, w["vm"], lines, lock), daemon=True).start()
        if lab_vm is not None and not procs:
            time.sleep(plan["seconds"] + 1.5)
        for p in procs:
            p.wait(timeout=plan["seconds"] + 60)
            if p.returncode != 0:
                die(f"a workload of {plan['id']} exited with {p.returncode}")
        time.sleep(1.5)  # one more collector tick
        cpu_layout = {"name": plan["layout"], "online": Path("/sys/devices/system/cpu/online").read_text().strip(),
                      "workloads": {w["vm"]: {"cpus": w["cpus"], "effective": c.effective_cpus()} for w, c in vms}}
        if lab_vm is not None:
            cpu_layout["workloads"][plans.LAB_VM] = {"cpus": plan["workloads"][0]["cpus"],
                                                     "effective": lab_vm.effective_cpus()}
    finally:
        stop_tail.set()
        if monitor is not None:
            monitor.stop()
        if lab_vm is not None:
            lab_vm.down()
        for p in procs:
            if p.poll() is None:
                p.kill()
        if collector is not None and collector.poll() is None:
            collector.send_signal(signal.SIGTERM)
            collector.wait(timeout=30)
        for _, c in vms:
            c.remove()
    with lock:
        lines.sort(key=lambda r: (r["timestamp_ms"], r["vm"]))
    with open(tmp_dir / "rates.jsonl", "w") as f:
        for r in lines:
            f.write(json.dumps(r) + "\n")
    start_ms = int(start_at * 1000)
    meta = dict(plan)
    meta["start_ms"] = start_ms
    meta["end_ms"] = int(time.time() * 1000)
    meta["cpu_layout"] = cpu_layout
    victim = plan["victim"]
    cpus_of = {w["vm"]: set(cg.parse_cpus(w["cpus"])) for w in plan["workloads"]}
    cpu_layout["victim_shares_cpus_with"] = sorted(
        w["vm"] for w in plan["workloads"] if w["vm"] != victim and cpus_of[w["vm"]] & cpus_of[victim])
    # Legacy solo windows (scripts/model/dataset.py): the victim's full-duty calibration.
    meta["solo"] = {victim: [[start_ms + int((s["start"] + s["settle"]) * 1000), start_ms + int(s["end"] * 1000)]
                             for s in plan["calibration"] if s["duty"] == 1.0]}
    host_lines = lb.read_jsonl(str(tmp_dir / "host.jsonl")) if (tmp_dir / "host.jsonl").exists() else []
    meta["host"] = {"kernel": platform.release(), "cpus": os.cpu_count(),
                    "foreign_cores_before": round(load_before, 3), "load": hm.summary(host_lines)}
    (tmp_dir / "experiment.json").write_text(json.dumps(meta, indent=1) + "\n")
    (tmp_dir / "collect.toml").unlink()
    summary = lb.label_experiment(str(tmp_dir))
    exp_dir = out / plan["id"]
    shutil.rmtree(exp_dir, ignore_errors=True)
    tmp_dir.rename(exp_dir)
    return {**summary, "host": meta["host"]}


def selected(all_plans: list[dict], only: str | None) -> list[dict]:
    if not only:
        return all_plans
    keys = {k.strip() for k in only.split(",") if k.strip()}
    known = {p["id"] for p in all_plans} | {p["family"] for p in all_plans} | {"lab"}
    bad = keys - known
    if bad:
        die(f"--only {','.join(sorted(bad))}: not an experiment id, a family of the preset, or `lab`")
    return [p for p in all_plans if p["id"] in keys or p["family"] in keys
            or ("lab" in keys and p["victim_kind"] == "vm")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="dataset directory")
    ap.add_argument("--preset", choices=sorted(plans.PRESETS), default="full")
    ap.add_argument("--only", default=None, help="comma-separated experiment ids, families, or `lab`")
    ap.add_argument("--skip-lab", action="store_true", help="leave out the lab VM experiments")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--binary", "--agent", dest="binary", type=Path,
                    default=ROOT / "target" / "release" / "interference", help="the interference binary")
    ap.add_argument("--cache", type=Path, default=Path("/var/cache/interference-dataset"))
    ap.add_argument("--trace", default=None, help=f"trace file (default {tr.DEFAULT_TRACE})")
    ap.add_argument("--max-foreign-cores", type=float, default=0.25,
                    help="warn when the host is busier than this outside the experiment")
    ap.add_argument("--wait-idle", type=float, default=0.0,
                    help="seconds to wait, before each experiment, for the host to be idle")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and its estimated time")
    args = ap.parse_args()

    ncpu = os.cpu_count() or 1
    specs = plans.PRESETS[args.preset]
    needs_trace = any(s.family == "trace" for s in specs)
    try:
        trace = tr.load(args.trace) if needs_trace else None
        all_plans = plans.plan_all(specs, args.seed, ncpu, trace)
    except ValueError as e:
        die(str(e))
    todo = selected(all_plans, args.only)
    if args.skip_lab:
        todo = [p for p in todo if p["victim_kind"] != "vm"]
    est = sum(plans.estimate_seconds(specs[int(p["id"][1:])]) for p in todo)
    for p in todo:
        nb = "+".join(f"{w['kind']}x{w['threads']}" for w in p["workloads"][1:])
        print(f"record: {p['id']} {p['family']:9} victim {p['victim_kind']}x{p['victim_threads']} "
              f"vs {nb} {p['layout']} ({p['seconds']:.0f} s)")
    print(f"record: {len(todo)} experiments, about {est / 60:.0f} minutes", flush=True)
    if args.dry_run:
        return
    if os.geteuid() != 0:
        die("needs root (cgroups and eBPF)")
    if not args.binary.exists():
        die(f"{args.binary} not found: run ./scripts/setup.sh, or pass --binary")
    mounts = cg.mounts()
    if not mounts:
        die("no cgroup hierarchy mounted")
    exe = build_workload(args.cache)
    args.out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(ram_disk(args.cache))
        for p in todo:
            if (args.out / p["id"] / "experiment.json").exists():
                print(f"record: {p['id']} already recorded")
                continue
            t0 = time.monotonic()
            try:
                s = run_experiment(p, args.out, exe, args.binary, mounts, scratch, args)
            except (cg.CgroupError, subprocess.CalledProcessError) as e:
                die(f"{p['id']}: {e}")
            lab = s["labels"]
            print(f"record: {p['id']} done in {time.monotonic() - t0:.0f} s: {lab['pair_lines']} pair lines "
                  f"(sole {lab['sole']}, idle {lab['idle']}, shared {lab['shared']}), drift max "
                  f"{s['drift_max']}{' FLAGGED' if s['drift_flagged'] else ''}, foreign load "
                  f"{s['host']['load'].get('foreign_cores_mean')} cores", flush=True)
    (args.out / "DONE").write_text(f"{len(todo)} experiments, preset {args.preset}, seed {args.seed}\n")


if __name__ == "__main__":
    main()
