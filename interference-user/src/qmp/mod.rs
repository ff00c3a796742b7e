//! A client for the QEMU Machine Protocol (QMP) over a VM's unix socket.
//!
//! Not a pipeline stage: a transport that three stages share, beside the `host` layer.
//! The inventory asks it which host thread runs each vCPU; the telemetry reads the
//! guests' memory; the enforcement stage inflates the balloon and migrates. Every QMP
//! command is here, so that no stage depends on another's (docs/architecture.md).
//!
//! Blocking, with every call bounded by one deadline (see `framing`): the agent asks
//! a few questions per VM per tick, and a QEMU whose monitor hangs must cost a tick
//! a timeout, never the agent.
//!
//! | module      | job                                                       |
//! |-------------|-----------------------------------------------------------|
//! | `connect`   | unix connect with a time limit (a busy monitor blocks it) |
//! | `framing`   | newline-framed JSON with a per-call deadline              |
//! | `client`    | greeting, capabilities, `execute`, ids, events            |
//! | `types`     | replies decoded into plain types (pure)                   |
//! | `queries`   | typed read-only commands, and `quit`                      |
//! | `commands`  | commands that change a VM: balloon, stats polling, migrate |
//! | `error`     | `QmpError`                                                |

mod client;
mod commands;
mod connect;
mod error;
mod framing;
mod queries;
mod types;

#[cfg(test)]
mod real_qemu_tests;

pub use client::{QmpClient, MAX_EVENTS};
pub use error::QmpError;
pub use queries::DEFAULT_BALLOON_PATH;
pub use types::{BalloonStats, CpuInfo, MigrationStatus, QmpEvent, QmpGreeting, VmRunState};
