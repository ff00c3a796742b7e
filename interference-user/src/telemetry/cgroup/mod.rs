//! Per-VM cgroup counters, for cgroup v1, v2 and hybrid hosts.
//!
//! A VM can live in several hierarchies at once: on a hybrid host it has a directory in
//! the unified (v2) hierarchy, which has no controllers but still carries `cpu.stat` and
//! the PSI files, and one directory per v1 controller (cpu, cpuacct, memory, blkio).
//! [`read_counters`] reads every one of them into a single cumulative
//! [`CgroupCounters`], preferring v2 values and falling back to v1 where the unified
//! hierarchy lacks the controller. [`cgroup_delta`] turns two readings into the
//! per-tick sample types; it is pure, so replay and tests need no cgroupfs.
//!
//! Layout: `parse` decodes file contents (pure), `read` knows file names and
//! hierarchies, `delta` does the arithmetic.

mod delta;
#[cfg(test)]
mod host_tests;
mod parse;
mod read;

pub use delta::{cgroup_delta, cgroup_io_delta};
pub use parse::{
    parse_blkio_throttle, parse_cpu_list, parse_flat_keyed, parse_io_stat, parse_limit, parse_psi,
    parse_u64, BlkioTotals, IoStatTotals, ParseError,
};
pub use read::{read_counters, CgroupError};

use serde::{Deserialize, Serialize};

/// A cumulative reading of one VM's cgroups at one instant. `None` means "not available
/// on this host" (no such file or controller), never zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupCounters {
    pub cpu: CpuCounters,
    pub memory: MemoryCounters,
    pub psi: PsiCounters,
    pub io: IoCounters,
    /// CPUs the cgroup may run on (a gauge): v2 `cpuset.cpus.effective`, v1
    /// `cpuset.effective_cpus`. None without a cpuset controller.
    pub cpus: Option<Vec<u32>>,
}

/// Cumulative CPU time and CFS bandwidth throttling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuCounters {
    pub usage_ns: Option<u64>,
    pub user_ns: Option<u64>,
    pub system_ns: Option<u64>,
    /// CFS bandwidth periods elapsed, and those in which the group was throttled.
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_ns: Option<u64>,
}

/// Memory gauges, plus the cumulative major fault counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryCounters {
    pub usage_bytes: Option<u64>,
    /// None when unlimited (v2 "max", v1 the page counter's maximum) or not available.
    pub limit_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    pub anon_bytes: Option<u64>,
    pub file_bytes: Option<u64>,
    pub major_faults: Option<u64>,
}

/// Pressure stall information of the cgroup, per resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiCounters {
    pub cpu: Option<PsiTotals>,
    pub memory: Option<PsiTotals>,
    pub io: Option<PsiTotals>,
}

/// One `*.pressure` file: cumulative stall time and the kernel's 10 s average.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiTotals {
    pub some_total_us: u64,
    /// Percent.
    pub some_avg10: f64,
    /// Absent from cpu.pressure on kernels before 5.13.
    pub full_total_us: Option<u64>,
    pub full_avg10: Option<f64>,
}

/// Cumulative block I/O charged to the cgroup, summed over devices: the oracle for, and
/// fallback to, the eBPF block I/O counters. Discards are counted apart (v2 `dbytes`,
/// v1 `Discard`); v1 counts them in neither read nor write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoCounters {
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
    pub read_ops: Option<u64>,
    pub write_ops: Option<u64>,
    pub discard_bytes: Option<u64>,
    pub discard_ops: Option<u64>,
}

impl CgroupCounters {
    /// Fills what `self` lacks from `lower` (a lower-preference source).
    ///
    /// CPU fields and PSI resources merge one by one: a hybrid host's v2 cgroup has
    /// usage but no throttling, which comes from the v1 cpu controller. Memory and I/O
    /// are taken as a whole from one source, so that e.g. an unlimited v2 `memory.max`
    /// (None) is never replaced by a v1 limit; a controller lives in one hierarchy only.
    pub(crate) fn or(self, lower: CgroupCounters) -> CgroupCounters {
        let c = self.cpu;
        let l = lower.cpu;
        CgroupCounters {
            cpu: CpuCounters {
                usage_ns: c.usage_ns.or(l.usage_ns),
                user_ns: c.user_ns.or(l.user_ns),
                system_ns: c.system_ns.or(l.system_ns),
                periods: c.periods.or(l.periods),
                throttled_periods: c.throttled_periods.or(l.throttled_periods),
                throttled_ns: c.throttled_ns.or(l.throttled_ns),
            },
            memory: if self.memory == MemoryCounters::default() {
                lower.memory
            } else {
                self.memory
            },
            psi: PsiCounters {
                cpu: self.psi.cpu.or(lower.psi.cpu),
                memory: self.psi.memory.or(lower.psi.memory),
                io: self.psi.io.or(lower.psi.io),
            },
            io: if self.io == IoCounters::default() {
                lower.io
            } else {
                self.io
            },
            cpus: self.cpus.or(lower.cpus),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_prefers_the_first_source_per_cpu_field_and_whole_memory() {
        let v2 = CgroupCounters {
            cpu: CpuCounters {
                usage_ns: Some(1),
                ..Default::default()
            },
            memory: MemoryCounters {
                usage_bytes: Some(10),
                limit_bytes: None,
                ..Default::default()
            },
            ..Default::default()
        };
        let v1 = CgroupCounters {
            cpu: CpuCounters {
                usage_ns: Some(2),
                throttled_ns: Some(5),
                ..Default::default()
            },
            memory: MemoryCounters {
                usage_bytes: Some(20),
                limit_bytes: Some(30),
                ..Default::default()
            },
            io: IoCounters {
                read_bytes: Some(7),
                ..Default::default()
            },
            ..Default::default()
        };
        let m = v2.or(v1);
        assert_eq!(m.cpu.usage_ns, Some(1));
        assert_eq!(m.cpu.throttled_ns, Some(5));
        assert_eq!(m.memory.usage_bytes, Some(10));
        assert_eq!(
            m.memory.limit_bytes, None,
            "unlimited in v2 stays unlimited"
        );
        assert_eq!(m.io.read_bytes, Some(7));
    }
}
