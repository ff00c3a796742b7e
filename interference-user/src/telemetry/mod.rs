//! Per-VM telemetry: eBPF maps and cgroup files -> [`VmSample`] per VM per tick.

pub mod balloon;
pub mod btf;
pub mod cgroup;
pub mod collector;
pub mod ebpf;
pub mod kernel;
pub mod perf;
pub mod preflight;
pub mod registry;
pub mod sample;

pub use balloon::{BalloonProbe, GuestMemory};
pub use sample::*;
