//! Why a demand model was refused or a run failed. Each error names the file (or the
//! built-in model) and says what is wrong in terms the operator can act on.

use std::io;

use thiserror::Error;

/// A sidecar that cannot be read, does not hold together, or describes inputs other
/// than the ones this crate computes.
#[derive(Debug, Error)]
pub enum SidecarError {
    #[error("cannot read demand-forecast sidecar {origin}: {source}")]
    Read {
        origin: String,
        #[source]
        source: io::Error,
    },
    #[error("demand-forecast sidecar {origin} is not valid sidecar JSON: {source}")]
    Parse {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("demand-forecast sidecar {origin}: {what}")]
    Invalid { origin: String, what: String },
    #[error(
        "demand-forecast sidecar {origin}: {field} is {sidecar}, but this agent computes the \
         inputs with {implemented} (docs/forecast.md): the model was trained on other inputs"
    )]
    Contract {
        origin: String,
        field: &'static str,
        sidecar: String,
        implemented: String,
    },
}

/// An ONNX file that is not the model its sidecar describes, or that tract cannot run.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    #[error("cannot read demand model {origin}: {source}")]
    Read {
        origin: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "demand model {origin} ({len} bytes) has sha256 {actual}, its sidecar says {expected}: \
         the file is truncated, corrupt or not the one the sidecar describes"
    )]
    Checksum {
        origin: String,
        len: usize,
        expected: String,
        actual: String,
    },
    #[error("demand model {origin}: not an ONNX model or truncated ({reason})")]
    NotOnnx { origin: String, reason: String },
    #[error("demand model {origin}: input {what}")]
    Input { origin: String, what: String },
    #[error("demand model {origin}: output {what}")]
    Output { origin: String, what: String },
    /// tract refused the graph at one of its load stages.
    #[error("demand model {origin}: tract cannot {stage}: {reason}")]
    Tract {
        origin: String,
        stage: &'static str,
        reason: String,
    },
}

/// A prepared model that failed on one batch.
#[derive(Debug, Error)]
#[error("demand model {origin}: run of {rows} rows failed: {reason}")]
pub struct RunError {
    pub origin: String,
    pub rows: usize,
    pub reason: String,
}
