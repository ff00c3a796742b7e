//! `interference`: the host agent's library. One module per pipeline stage, in the order
//! data flows through a tick (DESIGN.md, "Layout"):
//!
//! | module      | input                      | output                         |
//! |-------------|----------------------------|--------------------------------|
//! | `inventory` | /proc, cgroupfs, config    | `Vm` list                      |
//! | `telemetry` | eBPF maps, cgroup files    | `VmSample` per VM per tick     |
//! | `export`    | `VmSample`s                | Prometheus textfile, JSONL     |
//!
//! `config` parses the TOML file; `collect` is the tick loop that wires the stages.

pub mod collect;
pub mod config;
pub mod export;
pub mod inventory;
pub mod telemetry;
