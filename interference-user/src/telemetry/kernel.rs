//! The seam between telemetry and the kernel: everything the collector asks of the eBPF
//! maps goes through [`KernelMaps`], so the collector's logic is unit-tested with a fake
//! and only `ebpf.rs` talks to the kernel.

use interference_common::{PreemptRow, ThreadStats, TidChunk, VmIoStats};
use thiserror::Error;

#[derive(Debug, Error)]
#[error("eBPF map `{map}`: {op} failed")]
pub struct MapError {
    pub map: &'static str,
    pub op: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

pub trait KernelMaps {
    /// Replaces the tid-map entries for thread ids `chunk * TID_CHUNK ..`.
    fn set_tid_chunk(&mut self, chunk: u32, entries: &TidChunk) -> Result<(), MapError>;
    /// Attributes I/O from threads in cgroup v2 `cgroup_id` to `vm_index` (None: forget).
    fn set_cgroup_vm(&mut self, cgroup_id: u64, vm_index: Option<u32>) -> Result<(), MapError>;
    /// Zeroes a thread slot before it is handed to a new thread.
    fn reset_slot(&mut self, slot: u32) -> Result<(), MapError>;
    fn thread_stats(&self, slot: u32) -> Result<ThreadStats, MapError>;
    fn preempt_row(&self, victim_vm: u32) -> Result<Box<PreemptRow>, MapError>;
    fn vm_io(&self, vm_index: u32) -> Result<VmIoStats, MapError>;
    /// Starts a new tick epoch: per-thread `max_ns` restarts from the next wait.
    fn set_epoch(&mut self, epoch: u32) -> Result<(), MapError>;
}
