//! Which VMs exist on this host, and which threads and cgroups belong to each.
//!
//! Three sources, merged each tick: QEMU processes found in /proc, libvirt's machine
//! cgroups (v1 and v2, systemd and non-systemd layouts), and the static `[[vm]]`
//! inventory of the TOML config. The output is a plain list of [`Vm`]; nothing here
//! knows about eBPF or what later stages do with it.

pub mod types;

pub use types::*;
