//! Plain data at the telemetry stage's boundary: one [`VmSample`] per VM per tick.
//!
//! Every counter in a sample is a *delta over the tick* (`interval_seconds` long), so a
//! sample means the same thing whatever happened before it; exporters that need
//! cumulative counters add them up. Fields are `Option` where a source may not exist on
//! this host (no PMU, no cgroup v1 cpuacct, no PSI...), and `None` means "not
//! available", never zero. This is also the JSONL schema of `interference collect
//! --samples` (docs/samples.md).

use serde::{Deserialize, Serialize};

use crate::inventory::Priority;

/// Schema version of [`VmSample`] in JSONL files.
pub const SAMPLE_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSample {
    pub schema: u32,
    /// End of the tick, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub interval_seconds: f64,
    pub host: String,
    pub vm: String,
    pub uuid: Option<String>,
    pub customer: Option<String>,
    pub workload: Option<String>,
    pub priority: Priority,
    /// Run-queue latency of all tracked threads of the VM together.
    pub runqueue: Latency,
    /// Per vCPU thread (threads that are not vCPUs are in `other_threads`).
    pub vcpus: Vec<VcpuSample>,
    /// Non-vCPU threads (emulator, I/O threads, or all threads of a cgroup-only VM).
    pub other_threads: Latency,
    /// Who took the CPU from this VM's runnable threads: VM name, or "host".
    pub preempted_by: Vec<Preemption>,
    pub block_io: Option<BlockIo>,
    pub cpu: Option<CpuUsage>,
    pub memory: Option<Memory>,
    pub psi: Option<Psi>,
    pub llc: Option<Llc>,
    /// Threads tracked at the end of the tick.
    pub threads: u32,
    /// CPUs the VM's cgroup may run on at the end of the tick (its effective cpuset);
    /// None without a cpuset controller. Absent in files written before it existed.
    #[serde(default)]
    pub cpus: Option<Vec<u32>>,
}

/// Run-queue waits completed in the tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub waits: u64,
    pub wait_seconds: f64,
    /// Longest single wait in the tick (0 when none).
    pub max_seconds: f64,
    /// Involuntary switch-outs while runnable, and the waits that followed them.
    pub preemptions: u64,
    pub preempted_seconds: f64,
    /// log2 buckets in nanoseconds, see `interference_common::hist_bucket`.
    pub histogram: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VcpuSample {
    pub vcpu: u32,
    pub tid: u32,
    pub latency: Latency,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preemption {
    /// The aggressor: another VM's name, this VM's own name, or "host".
    pub by: String,
    pub count: u64,
    pub seconds: f64,
}

/// Block I/O completed in the tick, attributed to the VM that issued it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockIo {
    pub read_ops: u64,
    pub write_ops: u64,
    pub other_ops: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub other_bytes: u64,
    pub latency_seconds: f64,
    /// log2 buckets in nanoseconds, issue to completion.
    pub latency_histogram: Vec<u64>,
}

/// From cpu.stat (v2) or cpuacct.usage + cpu.stat (v1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    pub usage_seconds: f64,
    pub user_seconds: Option<f64>,
    pub system_seconds: Option<f64>,
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_seconds: Option<f64>,
}

/// Gauges at the end of the tick, from memory.current/memory.max (v2) or
/// memory.usage_in_bytes/memory.limit_in_bytes (v1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub usage_bytes: u64,
    /// None when unlimited.
    pub limit_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
    pub anon_bytes: Option<u64>,
    pub file_bytes: Option<u64>,
    pub major_faults: Option<u64>,
}

/// Pressure stall information from the cgroup v2 files (present even on a hybrid host).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Psi {
    pub cpu: Option<PsiResource>,
    pub memory: Option<PsiResource>,
    pub io: Option<PsiResource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiResource {
    /// Stall time in the tick, seconds (delta of `total`).
    pub some_seconds: f64,
    pub full_seconds: Option<f64>,
    /// The kernel's own 10 s averages, percent.
    pub some_avg10: f64,
    pub full_avg10: Option<f64>,
}

/// Hardware counters of the VM's threads over the tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Llc {
    pub llc_misses: u64,
    pub instructions: u64,
}
