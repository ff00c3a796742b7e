#!/usr/bin/env python3
"""Record co-location experiments for the Contention Score model (docs/dataset.md).

Each experiment puts two or three real workloads (scripts/dataset/workload.c) in cgroups
of their own, registers them as static VMs of `interference collect` at a 1 s tick, and
drives their intensity on schedules: each runs alone first (solo speed), then all of
them ramp, step and hold their duty cycles at random, then each runs alone again.
Everything the collector writes and every progress line of every workload is kept.

With --lab-vms N, N more experiments put a lab VM (scripts/lab.sh, QEMU running the
lab's cpu workload) beside host workloads; the VM is the victim whose slowdown is
labelled (the host workloads get no solo window there, so no label of their own).

Needs root (cgroups, eBPF). Only the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CGROUP_PARENT = "interference-dataset"

# kind -> (coarse workload label written to the inventory, held out for evaluation)
KINDS = {
    "cpu": ("cpu", False),
    "membw": ("membw", False),
    "fsync": ("fsync", False),
    "cache": ("cache", True),
    "ctxsw": ("ctxsw", True),
}
TRAIN_KINDS = [k for k, (_, held) in KINDS.items() if not held]
HELD_KINDS = [k for k, (_, held) in KINDS.items() if held]
SOLO_SECONDS = 8
END_SOLO_SECONDS = 6
DUTIES = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]
DUTY_WEIGHTS = [1, 1, 2, 2, 2, 3]


def die(msg: str) -> None:
    print(f"record: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- cgroups


def cgroup_mounts() -> dict[str, Path]:
    """Controller (or "unified") -> mount point, from /proc/self/mountinfo."""
    out: dict[str, Path] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _src, opts = (right.split() + ["", "", ""])[:3]
            mnt = Path(left.split()[4])
            if fstype == "cgroup2":
                out["unified"] = mnt
            elif fstype == "cgroup":
                for o in opts.split(","):
                    if o in ("cpu", "cpuacct", "cpuset", "memory", "blkio"):
                        out[o] = mnt
    return out


def write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as e:
        die(f"cannot write {value!r} to {path}: {e}")


class Cgroups:
    """The cgroup directories of one workload, in every hierarchy the host has."""

    def __init__(self, mounts: dict[str, Path], name: str, cpus: str):
        self.dirs: list[Path] = []
        v2_only = "unified" in mounts and len(mounts) == 1
        for ctrl, mnt in sorted(mounts.items()):
            parent = mnt / CGROUP_PARENT
            d = parent / name
            if d in self.dirs:
                continue  # cpu and cpuacct co-mounted
            parent.mkdir(exist_ok=True)
            if v2_only:
                write(mnt / "cgroup.subtree_control", "+cpu +cpuset +memory +io")
                write(parent / "cgroup.subtree_control", "+cpu +cpuset +memory +io")
            d.mkdir(exist_ok=True)
            if ctrl == "cpuset" or v2_only:
                mems = (mnt / "cpuset.mems.effective") if v2_only else (mnt / "cpuset.mems")
                if not v2_only:
                    write(parent / "cpuset.cpus", (mnt / "cpuset.cpus").read_text().strip())
                    write(parent / "cpuset.mems", mems.read_text().strip())
                    write(d / "cpuset.mems", mems.read_text().strip())
                write(d / "cpuset.cpus", cpus)
            self.dirs.append(d)

    def enter(self) -> None:
        """Runs in the child between fork and exec."""
        pid = str(os.getpid())
        for d in self.dirs:
            with open(d / "cgroup.procs", "w") as f:
                f.write(pid)

    def remove(self) -> None:
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


# ---------------------------------------------------------------- plans


def schedule_for(rng: random.Random, start: float, length: float) -> list[tuple[float, float]]:
    """Random ramps, steps and holds of the duty cycle from `start` for `length` s."""
    pts: list[tuple[float, float]] = []
    t, duty = start, rng.choices(DUTIES, DUTY_WEIGHTS)[0]
    pts.append((t, duty))
    while t < start + length:
        hold = rng.uniform(6, 20)
        t = min(t + hold, start + length)
        pts.append((t, duty))
        if t >= start + length:
            break
        new = rng.choices(DUTIES, DUTY_WEIGHTS)[0]
        if rng.random() < 0.5:  # ramp
            t = min(t + rng.uniform(8, 25), start + length)
        pts.append((t, new))
        duty = new
    return pts


LAB_PROGRESS = re.compile(r"progress t=(\S+) workload=(\S+) phase=(\S+) rate=(\S+)")
LAB_VM = "dsvm-1"


def plan_lab_experiment(rng: random.Random, idx: int, seconds: float) -> dict:
    """A lab VM (victim, full speed throughout) beside one or two host workloads."""
    n_host = 2 if rng.random() < 0.3 else 1
    kinds = [rng.choice(TRAIN_KINDS) for _ in range(n_host)]
    ncpu = os.cpu_count() or 1
    last = str(ncpu - 1)
    layout = rng.choice(["shared-one", "shared-all"]) if ncpu > 1 else "shared-one"
    cpus = last if layout == "shared-one" else f"0-{last}"
    body = seconds - SOLO_SECONDS - END_SOLO_SECONDS
    workloads = [{
        "vm": LAB_VM, "kind": "vm", "threads": 1, "cpus": cpus,
        "schedule": [[0.0, 1.0]],
        "solo_seconds": [[0, SOLO_SECONDS], [SOLO_SECONDS + body, seconds]],
    }]
    for i, kind in enumerate(kinds):
        pts = [(0.0, 0.0), (SOLO_SECONDS, 0.0)]
        body_pts = schedule_for(rng, float(SOLO_SECONDS), body)
        pts += [(SOLO_SECONDS, body_pts[0][1])] + body_pts[1:]
        pts += [(SOLO_SECONDS + body, 0.0)]
        workloads.append({
            "vm": f"w{i}-{kind}", "kind": kind,
            "threads": 2 if kind == "cpu" and rng.random() < 0.4 else 1,
            "cpus": cpus, "schedule": dedupe(pts), "solo_seconds": [],
        })
    return {"id": f"e{idx:03d}", "layout": layout, "tick_seconds": 1, "seconds": seconds,
            "workloads": workloads, "held_out": False}


class LabVm:
    """A lab VM of scripts/lab.sh, in its own run directory so the tests' lab is untouched."""

    def __init__(self, cpus: str):
        self.run = Path("/run/interference-dataset-lab")
        self.env = dict(os.environ, INTERFERENCE_LAB_RUN=str(self.run))
        self.lab = ROOT / "scripts" / "lab.sh"
        subprocess.run([str(self.lab), "down"], env=self.env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([str(self.lab), "up", "1", "--workload", "cpu", "--vcpus", "1",
                        "--name-prefix", "dsvm"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        state = dict(line.split("=", 1) for line in
                     (self.run / "vms" / LAB_VM / "state").read_text().splitlines() if "=" in line)
        self.serial = Path(state["serial"])
        self.pin(cpus)

    def pin(self, cpus: str) -> None:
        """Restricts the VM's cpuset cgroups (children first, as the kernel requires)."""
        listing = self.run / "vms" / LAB_VM / "cgroups"
        dirs = [Path(d) for d in listing.read_text().split() if "cpuset" in d]
        for d in sorted(dirs, key=lambda d: -len(d.parts)):
            if (d / "cpuset.cpus").exists():
                write(d / "cpuset.cpus", cpus)

    def tail(self, vm: str, out: list, lock: threading.Lock, stop: threading.Event) -> None:
        with open(self.serial, errors="replace") as f:
            f.seek(0, os.SEEK_END)
            buf = ""
            while not stop.is_set():
                chunk = f.read()
                if not chunk:
                    time.sleep(0.05)
                    continue
                buf += chunk
                *lines, buf = buf.split("\n")
                ts = int(time.time() * 1000)
                for line in lines:
                    m = LAB_PROGRESS.search(line)
                    if m:
                        rec = {"timestamp_ms": ts, "vm": vm, "t": float(m.group(1)),
                               "ops": float(m.group(4)), "busy_seconds": 1.0, "duty": 1.0}
                        with lock:
                            out.append(rec)

    def down(self) -> None:
        subprocess.run([str(self.lab), "down"], env=self.env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def plan_experiment(rng: random.Random, idx: int, seconds: float, held_out: bool) -> dict:
    n = 3 if rng.random() < 0.3 else 2
    if held_out:
        kinds = [rng.choice(HELD_KINDS)] + [rng.choice(KINDS_ALL) for _ in range(n - 1)]
    else:
        kinds = [rng.choice(TRAIN_KINDS) for _ in range(n)]
    rng.shuffle(kinds)
    ncpu = os.cpu_count() or 1
    layout = rng.choice(["shared-one", "shared-one", "shared-all", "disjoint"]) if ncpu > 1 else "shared-one"
    last = str(ncpu - 1)
    workloads = []
    solo_total = SOLO_SECONDS * n
    body = seconds - solo_total - END_SOLO_SECONDS * n
    for i, kind in enumerate(kinds):
        if layout == "shared-one":
            cpus = last
        elif layout == "shared-all":
            cpus = f"0-{last}"
        else:
            cpus = "0" if i == 0 else last
        threads = 1
        if kind in ("cpu", "fsync") and rng.random() < 0.4:
            threads = 2
        # Solo windows: alone at full duty, everyone else idle.
        pts: list[tuple[float, float]] = [(0.0, 0.0)]
        s0 = SOLO_SECONDS * i
        pts += [(s0, 0.0), (s0, 1.0), (s0 + SOLO_SECONDS, 1.0), (s0 + SOLO_SECONDS, 0.0)]
        body_pts = schedule_for(rng, float(solo_total), body)
        pts += [(solo_total, 0.0), (solo_total, body_pts[0][1])] + body_pts[1:]
        e0 = solo_total + body + END_SOLO_SECONDS * i
        pts += [(solo_total + body, 0.0), (e0, 0.0), (e0, 1.0), (e0 + END_SOLO_SECONDS, 1.0),
                (e0 + END_SOLO_SECONDS, 0.0)]
        workloads.append({
            "vm": f"w{i}-{kind}",
            "kind": kind,
            "threads": threads,
            "cpus": cpus,
            "schedule": dedupe(pts),
            "solo_seconds": [[s0, s0 + SOLO_SECONDS], [e0, e0 + END_SOLO_SECONDS]],
        })
    return {
        "id": f"e{idx:03d}",
        "layout": layout,
        "tick_seconds": 1,
        "seconds": seconds,
        "workloads": workloads,
        "held_out": held_out,
    }


KINDS_ALL = list(KINDS)


def dedupe(pts: list[tuple[float, float]]) -> list[list[float]]:
    out: list[list[float]] = []
    for t, d in pts:
        p = [round(t, 2), round(d, 3)]
        if out and out[-1] == p:
            continue
        if out and p[0] < out[-1][0]:
            p[0] = out[-1][0]
        out.append(p)
    return out


# ---------------------------------------------------------------- fsync's disk


@contextlib.contextmanager
def ram_disk(cache: Path, mib: int = 512):
    """An ext4 filesystem on a loop device over a file in /dev/shm, mounted under
    `cache`, for the fsync workload: every fdatasync still goes through ext4's journal,
    the block layer and the loop driver's kernel thread, but faster and steadier. The
    build machine's own disk is rate-limited with a burst budget, which made fsync's
    solo speed swing from 265 to 11400 ops/s across and within experiments: labels of
    the disk's budget, not of a neighbour."""
    img = Path("/dev/shm/interference-dataset-io.img")
    mnt = cache / "ram-disk"
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["umount", str(mnt)], stderr=subprocess.DEVNULL, check=False)
    with open(img, "wb") as f:
        f.truncate(mib * 1024 * 1024)
    dev = None
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
        dev = subprocess.run(["losetup", "--find", "--show", str(img)], check=True,
                             capture_output=True, text=True).stdout.strip()
        subprocess.run(["mount", dev, str(mnt)], check=True)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], stderr=subprocess.DEVNULL, check=False)
        if dev:
            subprocess.run(["losetup", "-d", dev], stderr=subprocess.DEVNULL, check=False)
        img.unlink(missing_ok=True)


# ---------------------------------------------------------------- running


def build_workload(cache: Path) -> Path:
    exe = cache / "bin" / "dataset-workload"
    src = HERE / "workload.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        exe.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", str(exe), str(src)], check=True)
    return exe


def collector_config(path: Path, samples: Path, vms: list[tuple[dict, Cgroups]], lab: bool) -> None:
    lines = [
        "[collect]",
        'interval = "1s"',
        f'samples = "{samples}"',
        'host = "dataset"',
        "",
        "[discovery]",
        f"qemu = {'true' if lab else 'false'}",
        f"libvirt = {'true' if lab else 'false'}",
    ]
    for w, cg in vms:
        lines += [
            "",
            "[[vm]]",
            f'name = "{w["vm"]}"',
            "cgroups = [" + ", ".join(f'"{d}"' for d in cg.dirs) + "]",
            f'workload = "{KINDS[w["kind"]][0]}"',
            'customer = "lab"',
        ]
    path.write_text("\n".join(lines) + "\n")


def run_experiment(plan: dict, out: Path, exe: Path, agent: Path, mounts: dict, scratch: Path) -> None:
    exp_dir = out / plan["id"]
    tmp_dir = out / (plan["id"] + ".partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    lab_vm = None
    stop_tail = threading.Event()
    host = [w for w in plan["workloads"] if w["kind"] != "vm"]
    vms = [(w, Cgroups(mounts, w["vm"], w["cpus"])) for w in host]
    collector = None
    procs: list[subprocess.Popen] = []
    lines: list[dict] = []
    lock = threading.Lock()
    try:
        cfg = tmp_dir / "collect.toml"
        samples = tmp_dir / "samples.jsonl"
        lab = len(host) < len(plan["workloads"])
        if lab:
            lab_vm = LabVm(plan["workloads"][0]["cpus"])
        collector_config(cfg, samples, vms, lab)
        collector = subprocess.Popen([str(agent), "collect", "--config", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=open(tmp_dir / "collect.log", "w"))
        time.sleep(2.5)  # the collector loads its probes and takes its first reading
        if collector.poll() is not None:
            die(f"interference collect exited with {collector.returncode}: see {tmp_dir}/collect.log")
        start_at = time.time() + 1.5
        if lab_vm is not None:
            threading.Thread(target=lab_vm.tail, args=(LAB_VM, lines, lock, stop_tail),
                             daemon=True).start()
        for w, cg in vms:
            sched = ",".join(f"{t}:{d}" for t, d in w["schedule"])
            argv = [str(exe), w["kind"], "--threads", str(w["threads"]), "--schedule", sched,
                    "--start-at", f"{start_at:.3f}", "--duration", str(plan["seconds"]),
                    "--dir", str(scratch)]
            if w["kind"] == "cache":
                argv += ["--mib", "16"]
            elif w["kind"] == "membw":
                argv += ["--mib", "256"]
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, preexec_fn=cg.enter)
            procs.append(p)
            threading.Thread(target=read_rates, args=(p, w["vm"], lines, lock), daemon=True).start()
        for p in procs:
            p.wait(timeout=plan["seconds"] + 60)
            if p.returncode != 0:
                die(f"a workload of {plan['id']} exited with {p.returncode}")
        time.sleep(1.5)  # one more collector tick
    finally:
        stop_tail.set()
        if lab_vm is not None:
            lab_vm.down()
        for p in procs:
            if p.poll() is None:
                p.kill()
        if collector is not None and collector.poll() is None:
            collector.send_signal(signal.SIGTERM)
            collector.wait(timeout=30)
        for _, cg in vms:
            cg.remove()
    with lock:
        lines.sort(key=lambda r: (r["timestamp_ms"], r["vm"]))
    with open(tmp_dir / "rates.jsonl", "w") as f:
        for r in lines:
            f.write(json.dumps(r) + "\n")
    start_ms = int(start_at * 1000)
    meta = dict(plan)
    meta["start_ms"] = start_ms
    meta["end_ms"] = int(time.time() * 1000)
    # Solo windows in wall-clock ms, trimmed by a second at each end for the transitions.
    meta["solo"] = {
        w["vm"]: [[start_ms + int((a + 1) * 1000), start_ms + int((b - 0.5) * 1000)]
                  for a, b in w["solo_seconds"]]
        for w in plan["workloads"] if w["solo_seconds"]
    }
    meta["host"] = {"kernel": platform.release(), "cpus": os.cpu_count()}
    (tmp_dir / "experiment.json").write_text(json.dumps(meta, indent=1) + "\n")
    (tmp_dir / "collect.toml").unlink()
    shutil.rmtree(exp_dir, ignore_errors=True)
    tmp_dir.rename(exp_dir)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="dataset directory")
    ap.add_argument("--experiments", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=170, help="length of one experiment")
    ap.add_argument("--held-out-share", type=float, default=0.3)
    ap.add_argument("--lab-vms", type=int, default=0,
                    help="experiments with a lab VM, after the others")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--first", type=int, default=0, help="index of the first experiment")
    ap.add_argument("--agent", type=Path, default=ROOT / "target" / "release" / "interference")
    ap.add_argument("--cache", type=Path, default=Path("/var/cache/interference-dataset"))
    ap.add_argument("--disk", choices=["ram", "host"], default="ram",
                    help="where the fsync workload writes: ext4 on a RAM-backed loop device "
                         "(steadier), or the host's disk under --cache")
    args = ap.parse_args()
    if os.geteuid() != 0:
        die("needs root (cgroups and eBPF)")
    if not args.agent.exists():
        die(f"{args.agent} not found: run ./scripts/setup.sh first")
    mounts = cgroup_mounts()
    if not mounts:
        die("no cgroup hierarchy mounted")
    exe = build_workload(args.cache)
    with contextlib.ExitStack() as stack:
        if args.disk == "ram":
            scratch = stack.enter_context(ram_disk(args.cache))
        else:
            scratch = args.cache / "scratch"
            scratch.mkdir(parents=True, exist_ok=True)
        record_all(args, exe, mounts, scratch)


def record_all(args, exe: Path, mounts: dict, scratch: Path) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    plans = []
    for i in range(args.experiments):
        held = rng.random() < args.held_out_share
        plans.append(plan_experiment(rng, i, args.seconds, held))
    for i in range(args.lab_vms):
        plans.append(plan_lab_experiment(rng, args.experiments + i, args.seconds))
    for plan in plans[args.first:]:
        if (args.out / plan["id"] / "experiment.json").exists():
            print(f"record: {plan['id']} already recorded")
            continue
        kinds = "+".join(w["kind"] for w in plan["workloads"])
        print(f"record: {plan['id']} {kinds} {plan['layout']}"
              f"{' (held out)' if plan['held_out'] else ''}", flush=True)
        plan["seed"] = args.seed
        plan["disk"] = args.disk
        run_experiment(plan, args.out, exe, args.agent, mounts, scratch)
    (args.out / "DONE").write_text(f"{len(plans)} experiments\n")


if __name__ == "__main__":
    main()
