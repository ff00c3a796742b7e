//! What can go wrong talking to the controller, and whether trying again can help.

use std::time::Duration;

use thiserror::Error;

use crate::wire::{FieldError, VersionError};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach the controller at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the controller answered {status} to {url}: {code}: {message}{}", fields_suffix(.fields))]
    Status {
        url: String,
        status: u16,
        code: String,
        message: String,
        fields: Vec<FieldError>,
        retry_after: Option<Duration>,
    },
    #[error("unreadable answer from {url}: {message}")]
    Decode { url: String, message: String },
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error("{what} {expected}: the controller sent bytes whose sha256 is {got}")]
    ShaMismatch {
        what: &'static str,
        expected: String,
        got: String,
    },
    #[error("invalid fleet client configuration: {0}")]
    Config(String),
    #[error("gave up on {what} after {attempts} attempts in {elapsed:?}: {last}")]
    GaveUp {
        what: &'static str,
        attempts: u32,
        elapsed: Duration,
        #[source]
        last: Box<ClientError>,
    },
}

fn fields_suffix(fields: &[FieldError]) -> String {
    fields.iter().map(|f| format!("\n  {f}")).collect()
}

impl ClientError {
    /// Whether the same request may succeed later: the network, a timeout, an answer
    /// cut short (a lost acknowledgement), the controller or its database unavailable,
    /// or being told to slow down. A refusal (4xx) is final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Decode { .. } => true,
            Self::Status { status, .. } => matches!(status, 408 | 425 | 429 | 500..=599),
            Self::ShaMismatch { .. } => true,
            Self::Version(_) | Self::Config(_) | Self::GaveUp { .. } => false,
        }
    }

    /// The controller's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The controller's error code (`no_target`, `invalid_policy`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Status { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
