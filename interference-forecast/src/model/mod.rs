//! The demand model: its sidecar checked against the contract, its ONNX bytes checked
//! against the sidecar's sha256, then handed to a runtime that prepares it once.
//!
//! Inference hides behind two small traits, [`ModelRuntime`] (prepare, at start-up:
//! the expensive and risky stage) and [`PreparedModel`] (run, every round), so tests
//! fake the model and another runtime could replace tract. [`TractRuntime`] is the
//! agent's. The built-in model (`models/demand-forecast.{onnx,json}`) is compiled into
//! the binary so the agent forecasts with no file to install.

pub mod error;
pub mod sidecar;
mod tract;

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

pub use error::{ModelError, RunError, SidecarError};
pub use sidecar::ForecastSidecar;
pub use tract::TractRuntime;

use crate::contract::{FEATURE_COUNT, HORIZON_STEPS, WINDOW};

const BUILTIN_ONNX: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/demand-forecast.onnx"
));
const BUILTIN_SIDECAR: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/demand-forecast.json"
));
/// How the built-in model is named in errors and status.
pub const BUILTIN_ORIGIN: &str = "built-in models/demand-forecast.onnx";

/// Turns checked ONNX bytes into something that runs (the prepare stage).
pub trait ModelRuntime {
    /// Parses, checks and plans the graph once. `sidecar` is already validated and the
    /// bytes' sha256 already matches it; `origin` names the model in errors.
    fn prepare(
        &self,
        onnx: &[u8],
        sidecar: &ForecastSidecar,
        origin: &str,
    ) -> Result<Box<dyn PreparedModel>, ModelError>;
}

/// A model ready to run batches (the run stage).
pub trait PreparedModel: Send + Sync {
    /// Runs `n` normalised rows (`[n, 36, 12]`, row-major) and returns the `[n, 12]`
    /// scaled forecasts, unclamped.
    fn run(&self, normalised: &[f32], n: usize) -> Result<Vec<f32>, RunError>;
}

/// A loaded, checked and prepared demand model.
pub struct DemandModel {
    sidecar: ForecastSidecar,
    origin: String,
    prepared: Box<dyn PreparedModel>,
}

impl fmt::Debug for DemandModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemandModel")
            .field("name", &self.sidecar.name)
            .field("version", &self.sidecar.version)
            .field("origin", &self.origin)
            .finish()
    }
}

impl DemandModel {
    /// The model built into the binary, through the same checks as a model file.
    pub fn builtin() -> Result<Self, ModelError> {
        Self::from_bytes(BUILTIN_ONNX, BUILTIN_SIDECAR, BUILTIN_ORIGIN)
    }

    /// The model a sidecar file describes: its `model_file` next to it.
    pub fn open(sidecar_path: &Path) -> Result<Self, ModelError> {
        let sidecar = ForecastSidecar::load(sidecar_path)?;
        let dir = sidecar_path.parent().unwrap_or(Path::new("."));
        let onnx_path = dir.join(&sidecar.model_file);
        let origin = onnx_path.display().to_string();
        let onnx = std::fs::read(&onnx_path).map_err(|source| ModelError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::prepare(&onnx, sidecar, &origin, &TractRuntime)
    }

    /// ONNX and sidecar held in memory; `origin` names them in errors.
    pub fn from_bytes(onnx: &[u8], sidecar_json: &[u8], origin: &str) -> Result<Self, ModelError> {
        Self::from_bytes_with(onnx, sidecar_json, origin, &TractRuntime)
    }

    /// As [`DemandModel::from_bytes`], prepared by another runtime.
    pub fn from_bytes_with(
        onnx: &[u8],
        sidecar_json: &[u8],
        origin: &str,
        runtime: &dyn ModelRuntime,
    ) -> Result<Self, ModelError> {
        let sidecar = ForecastSidecar::from_slice(sidecar_json, &format!("{origin} (sidecar)"))?;
        Self::prepare(onnx, sidecar, origin, runtime)
    }

    fn prepare(
        onnx: &[u8],
        sidecar: ForecastSidecar,
        origin: &str,
        runtime: &dyn ModelRuntime,
    ) -> Result<Self, ModelError> {
        check_sha256(onnx, &sidecar, origin)?;
        let prepared = runtime.prepare(onnx, &sidecar, origin)?;
        Ok(Self {
            sidecar,
            origin: origin.to_string(),
            prepared,
        })
    }

    /// A model from an already prepared runtime object (tests, other runtimes); the
    /// sidecar must be valid JSON for this crate.
    pub fn from_prepared(
        sidecar_json: &[u8],
        origin: &str,
        prepared: Box<dyn PreparedModel>,
    ) -> Result<Self, ModelError> {
        let sidecar = ForecastSidecar::from_slice(sidecar_json, origin)?;
        Ok(Self {
            sidecar,
            origin: origin.to_string(),
            prepared,
        })
    }

    pub fn sidecar(&self) -> &ForecastSidecar {
        &self.sidecar
    }

    /// Where the model came from (a path, or [`BUILTIN_ORIGIN`]).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Runs `n` normalised rows; checks the output's length.
    pub fn run_normalised(&self, normalised: &[f32], n: usize) -> Result<Vec<f32>, RunError> {
        let run_error = |reason: String| RunError {
            origin: self.origin.clone(),
            rows: n,
            reason,
        };
        if normalised.len() != n * WINDOW * FEATURE_COUNT {
            return Err(run_error(format!(
                "{} input values for {n} rows of [{WINDOW}, {FEATURE_COUNT}]",
                normalised.len()
            )));
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let out = self.prepared.run(normalised, n)?;
        if out.len() != n * HORIZON_STEPS {
            return Err(run_error(format!(
                "{} outputs, expected [{n}, {HORIZON_STEPS}]",
                out.len()
            )));
        }
        Ok(out)
    }
}

fn check_sha256(onnx: &[u8], sidecar: &ForecastSidecar, origin: &str) -> Result<(), ModelError> {
    let actual: String = Sha256::digest(onnx)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != sidecar.onnx_sha256 {
        return Err(ModelError::Checksum {
            origin: origin.to_string(),
            len: onnx.len(),
            expected: sidecar.onnx_sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// The built-in sidecar's JSON (tests make fixtures from it).
pub fn builtin_sidecar_json() -> &'static [u8] {
    BUILTIN_SIDECAR
}

/// The built-in ONNX bytes (tests make fixtures from them).
pub fn builtin_onnx() -> &'static [u8] {
    BUILTIN_ONNX
}
