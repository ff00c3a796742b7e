//! Test fakes shared by this crate's unit tests, the integration suite (`tests/`) and
//! the benches, so no test rebuilds them: compiled for `cargo test` and behind the
//! `testing` feature, never into the agent's binary.
//!
//! | module      | fake                                                              |
//! |-------------|-------------------------------------------------------------------|
//! | `cgroup_fs` | a hybrid cgroupfs (v1 cpu, cpuset; v2 unified) with its mount table |
//! | `proc_fs`   | /proc and cgroupfs trees for discovery (processes, threads, mounts) |
//! | `qmp`       | a scripted QMP server, and a real paused QEMU when the host has one |

pub mod cgroup_fs;
pub mod proc_fs;
pub mod qmp;
