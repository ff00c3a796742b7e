//! A client for the QEMU Machine Protocol (QMP) over a VM's unix socket.
//!
//! Not a pipeline stage: a transport that two stages share. The inventory asks it
//! which host thread runs each vCPU; the enforcement stage inflates the balloon and
//! migrates. It lives apart from both so that the inventory does not depend on a
//! later stage (DESIGN.md, "Layout").
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
//! | `error`     | `QmpError`                                                |

mod client;
mod connect;
mod error;
mod framing;
mod queries;
mod types;

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod real_qemu_tests;

pub use client::{QmpClient, MAX_EVENTS};
pub use error::QmpError;
pub use queries::DEFAULT_BALLOON_PATH;
pub use types::{BalloonStats, CpuInfo, MigrationStatus, QmpEvent, QmpGreeting, VmRunState};
