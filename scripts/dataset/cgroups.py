"""The recorder's cgroups: one directory per workload in every hierarchy of the host,
under `interference-dataset/`, with its cpuset, so the collector tracks each workload as
a static VM and the recorder controls which CPUs it may use.

Also reads CPU time of a cgroup (the host monitor's "ours"), from the unified
hierarchy's cpu.stat, present on pure v2 and on hybrid hosts alike. Standard library
only; everything here needs root.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PARENT = "interference-dataset"


class CgroupError(RuntimeError):
    pass


def mounts() -> dict[str, Path]:
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
        raise CgroupError(f"cannot write {value!r} to {path}: {e}") from e


class Cgroups:
    """The cgroup directories of one workload, in every hierarchy the host has."""

    def __init__(self, mnts: dict[str, Path], name: str, cpus: str):
        self.dirs: list[Path] = []
        self.cpus = cpus
        v2_only = "unified" in mnts and len(mnts) == 1
        for ctrl, mnt in sorted(mnts.items()):
            parent = mnt / PARENT
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

    def effective_cpus(self) -> str | None:
        """The CPUs the kernel lets the workload use, read back (v2
        cpuset.cpus.effective, v1 cpuset.effective_cpus)."""
        for d in self.dirs:
            for f in ("cpuset.cpus.effective", "cpuset.effective_cpus"):
                p = d / f
                if p.exists():
                    return p.read_text().strip()
        return None

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


def usage_seconds(unified_dir: Path) -> float | None:
    """CPU time of a cgroup of the unified hierarchy (cpu.stat usage_usec), None when
    unreadable."""
    try:
        for line in (unified_dir / "cpu.stat").read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == "usage_usec":
                return int(v) / 1e6
    except (OSError, ValueError):
        return None
    return None


def parse_cpus(spec: str) -> list[int]:
    """A kernel CPU list ("0-2,5") as CPU ids."""
    out: list[int] = []
    for part in spec.strip().split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out
