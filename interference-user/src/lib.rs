//! `interference`: the host agent's library. A base layer, one module per pipeline
//! stage in the order data flows through a tick, and the agent that wires them
//! (docs/architecture.md has the whole picture and the dependency direction):
//!
//! | module      | input                      | output                         |
//! |-------------|----------------------------|--------------------------------|
//! | `host`      | mount table, cgroup files  | `Mounts`, the path guard, cgroup reads and writes |
//! | `qmp`       | QEMU's QMP socket          | typed queries and commands     |
//! | `inventory` | /proc, cgroupfs, config    | `Vm` list                      |
//! | `telemetry` | eBPF maps, cgroup files    | `VmSample` per VM per tick     |
//! | `features`  | `VmSample`s                | `PairWindows` (raw features)   |
//! | `predict`   | `PairWindows`              | `DirectedScore`, `ContentionScore` |
//! | `policy`    | scores, VM facts           | `Action`s                      |
//! | `enforce`   | `Action`s                  | cgroup writes, QMP, journal, `Outcome`s |
//! | `billing`   | `Outcome`s, usage          | FOCUS ledger lines (through `interference-core`) |
//! | `export`    | samples, scores, billing   | Prometheus textfile, JSONL     |
//!
//! `config` parses the TOML file; `agent` is the tick loop and its assembly
//! (`Agent::build`); `testing` holds the fakes tests share (the `testing` feature).

pub mod agent;
pub mod billing;
pub mod config;
pub mod enforce;
pub mod export;
pub mod features;
pub mod fleet;
pub mod host;
pub mod inventory;
pub mod policy;
pub mod predict;
pub mod qmp;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// The shared crate's modules every stage uses, under their old names.
pub use interference_core::{clock, durable};
