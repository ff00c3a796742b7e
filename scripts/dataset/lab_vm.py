"""A lab VM (scripts/lab.sh, QEMU) as an experiment's victim.

Why: the agent's real subjects are QEMU guests, whose vCPU threads, emulator threads
and TCG translation behave unlike a process in a cgroup; a few experiments put one
beside host workloads. The VM runs the lab's `cpu` workload from boot (duty 1
throughout); its progress lines on the serial console give its speed, one per second.
It lives in its own lab run directory so the tests' lab is untouched. Standard library
only; needs root and the lab's guest (./scripts/lab.sh build).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import cgroups as cg

HERE = Path(__file__).resolve().parent
LAB = HERE.parent / "lab.sh"
NAME = "dsvm-1"
PROGRESS = re.compile(r"progress t=(\S+) workload=(\S+) phase=(\S+) rate=(\S+)")


class LabVm:
    def __init__(self, cpus: str):
        self.run = Path("/run/interference-dataset-lab")
        self.env = dict(os.environ, INTERFERENCE_LAB_RUN=str(self.run))
        self.down()
        subprocess.run([str(LAB), "up", "1", "--workload", "cpu", "--vcpus", "1",
                        "--name-prefix", "dsvm"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        state = dict(line.split("=", 1) for line in
                     (self.run / "vms" / NAME / "state").read_text().splitlines() if "=" in line)
        self.serial = Path(state["serial"])
        self.pin(cpus)

    def cgroup_dirs(self) -> list[Path]:
        listing = self.run / "vms" / NAME / "cgroups"
        try:
            return [Path(d) for d in listing.read_text().split()]
        except OSError:
            return []

    def unified_dirs(self) -> list[Path]:
        """The VM's top cgroup in the unified hierarchy (its CPU time for the host
        monitor), or nothing."""
        dirs = [d for d in self.cgroup_dirs() if (d / "cpu.stat").exists()]
        return sorted(dirs, key=lambda d: len(d.parts))[:1]

    def pin(self, cpus: str) -> None:
        """Restricts the VM's cpuset cgroups (children first, as the kernel requires)."""
        dirs = [d for d in self.cgroup_dirs() if "cpuset" in str(d)]
        for d in sorted(dirs, key=lambda d: -len(d.parts)):
            if (d / "cpuset.cpus").exists():
                cg.write(d / "cpuset.cpus", cpus)

    def effective_cpus(self) -> str | None:
        """The CPUs the kernel lets the VM's vCPU thread use (its deepest cpuset)."""
        for d in sorted(self.cgroup_dirs(), key=lambda d: -len(d.parts)):
            for f in ("cpuset.effective_cpus", "cpuset.cpus.effective"):
                if (d / f).exists():
                    return (d / f).read_text().strip()
        return None

    def tail(self, out: list, lock: threading.Lock, stop: threading.Event) -> None:
        """Appends {"timestamp_ms", "vm", "t", "ops", "busy_seconds", "duty"} per progress
        line (ops = the line's rate, busy 1 s), stamped on arrival."""
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
                    m = PROGRESS.search(line)
                    if m:
                        rec = {"timestamp_ms": ts, "vm": NAME, "t": float(m.group(1)),
                               "ops": float(m.group(4)), "busy_seconds": 1.0, "duty": 1.0}
                        with lock:
                            out.append(rec)

    def down(self) -> None:
        subprocess.run([str(LAB), "down"], env=self.env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
