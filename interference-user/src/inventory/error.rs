//! The inventory's error type, and the one question callers ask of it: did the VM (or
//! thread, or cgroup) simply go away while we looked?

use std::io;
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum InventoryError {
    #[error("cannot list {path}: {source}")]
    ListDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: cannot read {path}: {source}")]
    Proc {
        pid: u32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read cgroup file {path}: {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: not a thread id: {text:?}")]
    BadTid {
        path: PathBuf,
        line: usize,
        text: String,
    },
}

impl InventoryError {
    /// True when the error only says the process, thread or cgroup is gone (exited,
    /// removed between listing and reading): such a VM is skipped without a warning.
    pub fn vanished(&self) -> bool {
        match self {
            Self::ListDir { source, .. }
            | Self::Proc { source, .. }
            | Self::Cgroup { source, .. } => is_vanished(source),
            Self::BadTid { .. } => false,
        }
    }
}

pub use crate::host::vanished::is_vanished;
