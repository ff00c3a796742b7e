//! `interference`: the host agent's library. One module per pipeline stage, in the order
//! data flows through a tick (DESIGN.md, "Layout"):
//!
//! | module      | input                      | output                         |
//! |-------------|----------------------------|--------------------------------|
//! | `inventory` | /proc, cgroupfs, config    | `Vm` list                      |
//! | `telemetry` | eBPF maps, cgroup files    | `VmSample` per VM per tick     |
//! | `features`  | `VmSample`s                | `PairWindows` (raw features)   |
//! | `predict`   | `PairWindows`              | `DirectedScore`, `ContentionScore` |
//! | `policy`    | scores, VM facts           | `Action`s                      |
//! | `enforce`   | `Action`s                  | cgroup writes, QMP, journal, `Outcome`s |
//! | `export`    | samples, scores            | Prometheus textfile, JSONL     |
//!
//! `config` parses the TOML file; `collect` is the tick loop that wires the stages; `qmp`
//! is the QEMU Machine Protocol client that `inventory` and `enforce` share.

pub mod agent;
pub mod billing;
pub mod config;
pub mod enforce;
pub mod export;
pub mod features;
pub mod host;
pub mod inventory;
pub mod policy;
pub mod predict;
pub mod qmp;
pub mod telemetry;

/// The shared crate's modules every stage uses, under their old names.
pub use interference_core::{clock, durable};
