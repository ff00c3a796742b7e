//! Per-VM telemetry: eBPF maps and cgroup files -> [`VmSample`] per VM per tick.

pub mod btf;
pub mod cgroup;
pub mod ebpf;
pub mod kernel;
pub mod sample;

pub use sample::*;
