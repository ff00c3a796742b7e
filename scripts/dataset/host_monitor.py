"""What else the host was doing while an experiment ran: one line per second.

Why: the build machine has 2 cores shared with engineers who compile, and its vCPUs are
themselves time-shared by the hypervisor. A slowdown recorded under someone's compile
is not a neighbour's, so every experiment keeps `host.jsonl`

    {"timestamp_ms", "busy_cores", "steal_cores", "ours_cores", "foreign_cores"}

busy and steal from /proc/stat (all CPUs, in cores over the second), ours = the CPU
time of the experiment's cgroups (workloads, and the lab VM's QEMU), foreign = busy -
ours (the collector itself is in it, about 0.01-0.03 cores). experiment.json summarises
it (`host.load`), and the recorder can wait for an idle machine before each experiment.
Standard library only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import cgroups as cg

USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_stat() -> tuple[float, float]:
    """(busy, steal) CPU seconds since boot over all CPUs, from /proc/stat's `cpu` line
    (busy = user + nice + system + irq + softirq; guest time is inside user)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    v = [int(x) for x in fields[1:9]] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq) / USER_HZ, steal / USER_HZ


def ours_seconds(dirs: Sequence[Path]) -> float:
    return sum(cg.usage_seconds(d) or 0.0 for d in dirs)


def measure_foreign(dirs: Sequence[Path], seconds: float = 3.0) -> float:
    """Mean foreign load (cores) over the next `seconds`."""
    b0, _ = proc_stat()
    o0 = ours_seconds(dirs)
    t0 = time.monotonic()
    time.sleep(seconds)
    b1, _ = proc_stat()
    o1 = ours_seconds(dirs)
    dt = time.monotonic() - t0
    return max(0.0, ((b1 - b0) - (o1 - o0)) / dt)


class HostMonitor:
    """A thread that appends one line per second to `path` until stop()."""

    def __init__(self, path: Path, dirs: Callable[[], Sequence[Path]]):
        self.path = path
        self.dirs = dirs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "HostMonitor":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with open(self.path, "w") as out:
            b0, s0 = proc_stat()
            o0 = ours_seconds(self.dirs())
            t0 = time.monotonic()
            while not self._stop.wait(1.0 - ((time.monotonic() - t0) % 1.0)):
                b1, s1 = proc_stat()
                o1 = ours_seconds(self.dirs())
                t1 = time.monotonic()
                dt = t1 - t0
                if dt <= 0:
                    continue
                busy, steal, ours = (b1 - b0) / dt, (s1 - s0) / dt, max(0.0, (o1 - o0) / dt)
                out.write(json.dumps({
                    "timestamp_ms": int(time.time() * 1000), "busy_cores": round(busy, 4),
                    "steal_cores": round(steal, 4), "ours_cores": round(ours, 4),
                    "foreign_cores": round(max(0.0, busy - ours), 4)}) + "\n")
                out.flush()
                b0, s0, o0, t0 = b1, s1, o1, t1


def summary(lines: Sequence[dict]) -> dict:
    """Mean and 95th percentile of foreign load, mean steal, over a run's host lines."""
    if not lines:
        return {"seconds": 0}
    f = sorted(x["foreign_cores"] for x in lines)
    return {
        "seconds": len(lines),
        "foreign_cores_mean": round(sum(f) / len(f), 3),
        "foreign_cores_p95": round(f[min(len(f) - 1, int(0.95 * len(f)))], 3),
        "steal_cores_mean": round(sum(x["steal_cores"] for x in lines) / len(lines), 3),
        "busy_cores_mean": round(sum(x["busy_cores"] for x in lines) / len(lines), 3),
    }
