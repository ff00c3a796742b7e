//! `interference-core`: what the host agent and the fleet controller share, with no
//! eBPF, model runtime or async runtime in it, so `cargo build -p interference-core`
//! needs neither root, nor nightly, nor LLVM.
//!
//! | module            | what                                                          |
//! |-------------------|---------------------------------------------------------------|
//! | `action`          | the policy's actions, their outcomes, typed settings          |
//! | `policy`          | `[policy]`: config and its checks                             |
//! | `billing`         | prices, ledger lines and files, invoices, explanations, aliases |
//! | `sidecar`         | model sidecars: parse and check                               |
//! | `toml_file`       | TOML documents with file:line:field errors                    |
//! | `cpu_list`        | CPU lists (`0-3,8`)                                           |
//! | `cpu_weight`      | cgroup v1 shares <-> v2 weight                                |
//! | `vm`              | what every stage knows about a VM (its priority)              |
//! | `durable`         | crash-safe append-only files: locks, torn tails               |
//! | `clock`           | the wall clock, in one place                                  |
//! | `humantime_serde` | durations as "5s" in config files                             |
//! | `cli`             | (feature `cli`) the binaries' shared edge: log format and set-up, manual pages, completions |

pub mod action;
pub mod billing;
#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
pub mod cpu_list;
pub mod cpu_weight;
pub mod durable;
pub mod humantime_serde;
pub mod policy;
pub mod sidecar;
pub mod toml_file;
pub mod vm;
