//! Per-VM telemetry: eBPF maps and cgroup files -> [`VmSample`] per VM per tick.

pub mod cgroup;
pub mod sample;

pub use sample::*;
