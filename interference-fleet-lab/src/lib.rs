//! Test harness for the fleet, reusable by the controller's tests, its benchmarks and
//! (later) end-to-end tests with real agents:
//!
//! - [`postgres`]: a throwaway PostgreSQL cluster from Debian's packages
//!   (`scripts/postgres.sh`), a fresh database per test, immediate-mode stops.
//! - [`process`]: a controller as a child process (optionally inside a network
//!   namespace), ready when `/healthz` answers, killable with SIGKILL.
//! - [`proxy`]: a TCP proxy that drops responses after the server sent them (the
//!   acknowledgement lost after the commit).
//! - [`sim`]: simulated agents that send deterministic, idempotent batches until
//!   acknowledged, and remember what they sent (the union the controller must equal).
//! - [`netns`]: hosts as network namespaces on a bridge (veth pairs), links that can be
//!   cut and restored, and running async code inside a namespace.
//!
//! A helper that cannot get its prerequisite fails with a message saying what to
//! install; it never skips.

pub mod netns;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod sim;

use std::path::PathBuf;

/// The workspace root (for scripts/).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}
