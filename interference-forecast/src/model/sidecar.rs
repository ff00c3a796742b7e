//! The demand forecaster's sidecar (`models/demand-forecast.json`, docs/forecast.md
//! section 7): what the ONNX file expects and what it was trained on.
//!
//! Parsed strictly (an unknown top-level field is an error: a newer trainer's format
//! must not be half-understood) and checked against [`crate::contract`]: a model whose
//! features, lags, clock, level or scale constants differ from what this crate computes
//! would be fed inputs it was not trained on, so it is refused with the field named.
//! `training` and `evaluation` are free-form: they are for people.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::SidecarError;
use crate::contract;

/// The sidecar format this crate reads.
pub const SIDECAR_FORMAT: u32 = 1;
/// The sidecar's `kind`.
pub const KIND: &str = "demand-forecast";
/// Graph architectures this crate runs. The contract's `lstm` graph is refused: tract
/// needs the agent's zero-state rewrite for it and runs it in about 6 ms per 100 VMs,
/// over the round's 5 ms budget (models/README.md, "Forecaster: timing").
pub const RUNS_ARCHITECTURES: [&str; 1] = ["mlp"];

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastSidecar {
    pub format: u32,
    pub kind: String,
    pub name: String,
    pub version: String,
    /// The ONNX file, relative to the sidecar's directory.
    pub model_file: String,
    /// Lower-case hex sha256 of the ONNX file's bytes.
    pub onnx_sha256: String,
    pub architecture: Architecture,
    pub input: TensorSpec,
    pub output: TensorSpec,
    pub demand: serde_json::Value,
    pub clock: ClockSpec,
    /// T.
    pub window: usize,
    /// E.
    pub past: usize,
    /// Output column k is `horizons_steps[k]` steps ahead.
    pub horizons_steps: Vec<usize>,
    pub history_steps: usize,
    pub level_steps: usize,
    pub scale_steps: usize,
    pub scale_floor: f64,
    pub lags: Vec<i64>,
    pub features: Vec<String>,
    pub normalisation: Normalisation,
    /// `null` in format 1: no workload class input.
    pub workload_class: Option<serde_json::Value>,
    #[serde(default)]
    pub postprocess: Option<String>,
    #[serde(default)]
    pub contract: Option<String>,
    #[serde(default)]
    pub training: serde_json::Value,
    #[serde(default)]
    pub evaluation: serde_json::Value,
    /// Where the sidecar came from, for error messages.
    #[serde(skip)]
    origin: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Architecture {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub hidden: Option<usize>,
    #[serde(default)]
    pub layers: Option<usize>,
    #[serde(default)]
    pub members: Option<usize>,
    /// Free-form text (`head`, `ensemble`) is kept as is.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<Dim>,
}

/// One dimension of a tensor shape: a symbol (the batch, "N") or a fixed size.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Symbol(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ClockSpec {
    pub train_step_seconds: u64,
    pub day_steps: usize,
    pub week_steps: usize,
    #[serde(default)]
    pub origin: Option<String>,
}

/// `(x - mean[i]) / std[i]` per feature, applied before the run: not in the graph.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Normalisation {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

fn describe(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => n.to_string(),
            Dim::Symbol(s) => format!("{s:?}"),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

impl ForecastSidecar {
    /// Reads, parses and validates a sidecar file.
    pub fn load(path: &Path) -> Result<Self, SidecarError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SidecarError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::from_slice(&bytes, &origin)
    }

    /// Parses and validates sidecar JSON; `origin` names it in errors.
    pub fn from_slice(json: &[u8], origin: &str) -> Result<Self, SidecarError> {
        let mut s: Self = serde_json::from_slice(json).map_err(|source| SidecarError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        s.origin = origin.to_string();
        s.validate()?;
        Ok(s)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The batch symbol of `input.shape` (validated to exist).
    pub fn batch_symbol(&self) -> &str {
        match self.input.shape.first() {
            Some(Dim::Symbol(s)) => s,
            _ => "N",
        }
    }

    fn invalid(&self, what: impl Into<String>) -> SidecarError {
        SidecarError::Invalid {
            origin: self.origin.clone(),
            what: what.into(),
        }
    }

    /// A sidecar field that differs from what this crate implements.
    fn differs(&self, field: &'static str, sidecar: String, implemented: String) -> SidecarError {
        SidecarError::Contract {
            origin: self.origin.clone(),
            field,
            sidecar,
            implemented,
        }
    }

    fn validate(&self) -> Result<(), SidecarError> {
        if self.format != SIDECAR_FORMAT {
            return Err(self.invalid(format!(
                "format is {}, this agent reads format {SIDECAR_FORMAT}",
                self.format
            )));
        }
        if self.kind != KIND {
            return Err(self.invalid(format!(
                "kind is {:?}, expected {KIND:?} (is this the contention model's sidecar?)",
                self.kind
            )));
        }
        if self.onnx_sha256.len() != 64
            || !self
                .onnx_sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(self.invalid(format!(
                "onnx_sha256 {:?} is not 64 lower-case hex digits",
                self.onnx_sha256
            )));
        }
        if !RUNS_ARCHITECTURES.contains(&self.architecture.kind.as_str()) {
            return Err(self.invalid(format!(
                "architecture.type is {:?}, this agent runs {RUNS_ARCHITECTURES:?}",
                self.architecture.kind
            )));
        }
        if let Some(class) = &self.workload_class {
            return Err(self.invalid(format!(
                "workload_class is {class}, this agent computes no workload class input (format 1: null)"
            )));
        }
        self.validate_contract()?;
        self.validate_normalisation()?;
        self.validate_shapes()
    }

    /// Every constant the inputs are built with must be the contract's.
    fn validate_contract(&self) -> Result<(), SidecarError> {
        let dbg = |v: &dyn std::fmt::Debug| format!("{v:?}");
        let names: Vec<&str> = self.features.iter().map(String::as_str).collect();
        if names != contract::FEATURES {
            return Err(self.differs("features", dbg(&names), dbg(&contract::FEATURES)));
        }
        if self.lags != contract::lags() {
            return Err(self.differs("lags", dbg(&self.lags), dbg(&contract::lags())));
        }
        let usize_fields: [(&'static str, usize, usize); 8] = [
            ("clock.day_steps", self.clock.day_steps, contract::DAY_STEPS),
            (
                "clock.week_steps",
                self.clock.week_steps,
                contract::WEEK_STEPS,
            ),
            ("window", self.window, contract::WINDOW),
            ("past", self.past, contract::PAST),
            ("history_steps", self.history_steps, contract::HISTORY_STEPS),
            ("level_steps", self.level_steps, contract::LEVEL_STEPS),
            ("scale_steps", self.scale_steps, contract::SCALE_STEPS),
            (
                "horizons",
                self.horizons_steps.len(),
                contract::HORIZON_STEPS,
            ),
        ];
        for (field, sidecar, implemented) in usize_fields {
            if sidecar != implemented {
                return Err(self.differs(field, sidecar.to_string(), implemented.to_string()));
            }
        }
        if self.scale_floor != contract::SCALE_FLOOR {
            return Err(self.differs(
                "scale_floor",
                self.scale_floor.to_string(),
                contract::SCALE_FLOOR.to_string(),
            ));
        }
        if self.horizons_steps != contract::horizons_steps() {
            return Err(self.differs(
                "horizons_steps",
                dbg(&self.horizons_steps),
                dbg(&contract::horizons_steps()),
            ));
        }
        Ok(())
    }

    fn validate_normalisation(&self) -> Result<(), SidecarError> {
        let f = self.features.len();
        let (mean, std) = (&self.normalisation.mean, &self.normalisation.std);
        if mean.len() != f || std.len() != f {
            return Err(self.invalid(format!(
                "{f} features but normalisation has {} means and {} stds",
                mean.len(),
                std.len()
            )));
        }
        for (i, name) in self.features.iter().enumerate() {
            if !mean[i].is_finite() {
                return Err(self.invalid(format!(
                    "normalisation.mean of {name:?} is {} (not finite)",
                    mean[i]
                )));
            }
            if !(std[i].is_finite() && std[i] > 0.0) {
                return Err(self.invalid(format!(
                    "normalisation.std of {name:?} is {} (must be finite and > 0)",
                    std[i]
                )));
            }
        }
        Ok(())
    }

    fn validate_shapes(&self) -> Result<(), SidecarError> {
        let input_ok = matches!(
            self.input.shape.as_slice(),
            [Dim::Symbol(s), Dim::Fixed(t), Dim::Fixed(f)]
                if !s.is_empty() && *t == contract::WINDOW && *f == contract::FEATURE_COUNT
        );
        if !input_ok {
            return Err(self.invalid(format!(
                "input.shape is {}, expected [\"N\", {}, {}] (symbolic batch, window, features)",
                describe(&self.input.shape),
                contract::WINDOW,
                contract::FEATURE_COUNT
            )));
        }
        let output_ok = matches!(
            self.output.shape.as_slice(),
            [Dim::Symbol(s), Dim::Fixed(k)] if s == self.batch_symbol() && *k == contract::HORIZON_STEPS
        );
        if !output_ok {
            return Err(self.invalid(format!(
                "output.shape is {}, expected [{:?}, {}]",
                describe(&self.output.shape),
                self.batch_symbol(),
                contract::HORIZON_STEPS
            )));
        }
        if self.input.name.is_empty() || self.output.name.is_empty() {
            return Err(self.invalid("input.name and output.name must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/demand-forecast.json"
    ));

    fn shipped() -> serde_json::Value {
        serde_json::from_slice(SHIPPED).expect("shipped sidecar is JSON")
    }

    fn err(v: &serde_json::Value) -> String {
        ForecastSidecar::from_slice(v.to_string().as_bytes(), "test.json")
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn the_shipped_sidecar_is_accepted() {
        let s = ForecastSidecar::from_slice(SHIPPED, "demand-forecast.json").expect("valid");
        assert_eq!(s.batch_symbol(), "N");
        assert_eq!(s.input.name, "inputs");
        assert_eq!(s.output.name, "scaled_forecast");
        assert_eq!(s.origin(), "demand-forecast.json");
    }

    #[test]
    fn features_in_another_order_are_refused_naming_the_field() {
        let mut v = shipped();
        v["features"].as_array_mut().expect("array").swap(1, 2);
        let e = err(&v);
        assert!(
            e.contains("test.json") && e.contains("features") && e.contains("\"week\", \"day\""),
            "{e}"
        );
    }

    #[test]
    fn every_contract_constant_is_checked() {
        for (pointer, value, field) in [
            (
                "/clock/day_steps",
                serde_json::json!(1440),
                "clock.day_steps",
            ),
            ("/level_steps", serde_json::json!(6), "level_steps"),
            ("/scale_steps", serde_json::json!(144), "scale_steps"),
            ("/scale_floor", serde_json::json!(0.5), "scale_floor"),
            ("/history_steps", serde_json::json!(2016), "history_steps"),
            ("/lags/0", serde_json::json!(24), "lags"),
            ("/horizons_steps/0", serde_json::json!(2), "horizons_steps"),
        ] {
            let mut v = shipped();
            *v.pointer_mut(pointer).expect("field exists") = value;
            let e = err(&v);
            assert!(
                e.contains(field) && e.contains("test.json"),
                "{pointer}: {e}"
            );
        }
    }

    #[test]
    fn shapes_kind_format_and_workload_class_are_checked() {
        let mut v = shipped();
        v["input"]["shape"] = serde_json::json!([1, 36, 12]);
        assert!(
            err(&v).contains("input.shape is [1, 36, 12]"),
            "{}",
            err(&v)
        );
        let mut v = shipped();
        v["output"]["shape"] = serde_json::json!(["N", 1]);
        assert!(err(&v).contains("output.shape"), "{}", err(&v));
        let mut v = shipped();
        v["kind"] = "contention".into();
        assert!(err(&v).contains("kind"), "{}", err(&v));
        let mut v = shipped();
        v["format"] = 2.into();
        assert!(err(&v).contains("format is 2"), "{}", err(&v));
        let mut v = shipped();
        v["workload_class"] = serde_json::json!(["cpu", "io"]);
        assert!(err(&v).contains("workload_class"), "{}", err(&v));
        let mut v = shipped();
        v["architecture"]["type"] = "lstm".into();
        assert!(err(&v).contains("architecture.type"), "{}", err(&v));
        let mut v = shipped();
        v["thresholds"] = 3.into();
        assert!(err(&v).contains("thresholds"), "{}", err(&v));
        let mut v = shipped();
        v["normalisation"]["std"][0] = 0.0.into();
        assert!(err(&v).contains("\"value\""), "{}", err(&v));
    }
}
