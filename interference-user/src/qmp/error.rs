//! The QMP client's error type. Every variant names the socket, so a message in the
//! agent's log says which VM's monitor misbehaved without more context.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use humantime::format_duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum QmpError {
    /// The socket could not be opened: no such file (VM gone), refused (QEMU exited
    /// and left the file behind), permission denied, path too long.
    #[error("cannot connect to QMP socket {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Nothing complete arrived before the call's deadline. `what` is ready to print:
    /// "`query-balloon`", or the greeting with a hint about a second client.
    #[error("QMP socket {} did not answer {what} within {}", path.display(), format_duration(*after))]
    Timeout {
        path: PathBuf,
        what: String,
        after: Duration,
    },
    /// QEMU closed the connection: it exited, or it quit on our `quit`.
    #[error("QMP socket {} closed the connection during {what}", path.display())]
    Closed { path: PathBuf, what: String },
    /// Bytes that are not QMP: a bad greeting, invalid JSON, an unexpected message;
    /// or a call on a client abandoned after an earlier failure.
    #[error("QMP socket {}: {detail}", path.display())]
    Protocol { path: PathBuf, detail: String },
    /// Reading or writing the socket failed for another reason than a timeout.
    #[error("QMP socket {}: I/O error during {what}", path.display())]
    Io {
        path: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },
    /// QEMU answered `{"error": {"class": ..., "desc": ...}}`.
    #[error("QMP socket {}: `{command}` failed: {desc} ({class})", path.display())]
    Command {
        path: PathBuf,
        command: String,
        class: String,
        desc: String,
    },
}

impl QmpError {
    /// QEMU's error class (`GenericError`, `CommandNotFound`, `DeviceNotActive`,
    /// ...) when QEMU itself refused the command.
    pub fn class(&self) -> Option<&str> {
        match self {
            Self::Command { class, .. } => Some(class),
            _ => None,
        }
    }

    /// True when the error only says the VM is gone (socket missing or refused,
    /// connection closed): the caller drops the VM quietly, as the inventory does.
    pub fn vanished(&self) -> bool {
        match self {
            Self::Connect { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ),
            Self::Closed { .. } => true,
            _ => false,
        }
    }

    /// True when the connection can no longer be trusted to carry replies in order;
    /// only a `Command` error leaves it usable.
    pub(crate) fn breaks_connection(&self) -> bool {
        !matches!(self, Self::Command { .. })
    }
}
