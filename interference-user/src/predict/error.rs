//! The prediction stage's errors. Each names the file (or the embedded model) and says
//! what is wrong in terms the operator can act on: a model that does not match what the
//! agent computes is refused at start-up, never run on the wrong inputs.

use std::io;

use thiserror::Error;

pub use interference_core::sidecar::SidecarError;

/// An ONNX file that is not the model its sidecar describes, or that tract cannot run.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("cannot read model {origin}: {source}")]
    Read {
        origin: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "model {origin} ({len} bytes) has sha256 {actual}, its sidecar says {expected}: \
         the file is truncated, corrupt or not the one the sidecar describes"
    )]
    Checksum {
        origin: String,
        len: usize,
        expected: String,
        actual: String,
    },
    #[error("model {origin}: not an ONNX model or truncated ({reason})")]
    NotOnnx { origin: String, reason: String },
    #[error("model {origin}: not an LSTM model: ops found: {ops}")]
    NotLstm { origin: String, ops: String },
    /// An LSTM in a form tract would run differently from ONNX's definition, or one
    /// that does not match the sidecar's architecture.
    #[error("model {origin}: unsupported LSTM: {what}")]
    Unsupported { origin: String, what: String },
    #[error("model {origin}: input {what}")]
    Input { origin: String, what: String },
    #[error("model {origin}: output {what}")]
    Output { origin: String, what: String },
    /// tract refused the graph at one of its load stages (typing, optimising, planning).
    #[error("model {origin}: tract cannot {stage}: {reason}")]
    Tract {
        origin: String,
        stage: &'static str,
        reason: String,
    },
}

/// Why a batch of windows could not be scored.
#[derive(Debug, Error)]
pub enum PredictError {
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("windows: {what}")]
    Shape { what: String },
    #[error("the {scorer} scorer needs feature {name:?}, which the agent does not compute")]
    MissingFeature {
        scorer: &'static str,
        name: &'static str,
    },
    #[error("window {window}, tick {tick}: feature {feature:?} is {value} (not finite)")]
    NonFinite {
        window: usize,
        tick: usize,
        feature: String,
        value: f32,
    },
    #[error("model {origin}: run failed: {reason}")]
    Run { origin: String, reason: String },
    #[error("model {origin}: {what}")]
    BadOutput { origin: String, what: String },
    #[error("the nowcast scores from each VM's CPU accounts, not from feature windows")]
    NotAWindowScorer,
}
