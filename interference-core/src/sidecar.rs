//! The model's sidecar (`models/<name>.json`): what the ONNX file expects as input and
//! what it was trained on. The agent trusts the ONNX graph only as far as the sidecar
//! vouches for it, so the sidecar is parsed strictly (unknown top-level fields are an
//! error: a newer trainer's format must not be half-understood) and validated as a whole
//! before any model is loaded. `training` and `evaluation` are free-form: they are for
//! people (models/README.md), not for the agent.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use std::io;

use thiserror::Error;

/// A model sidecar (`models/<name>.json`) that cannot be read or does not hold together.
#[derive(Debug, Error)]
pub enum SidecarError {
    #[error("cannot read model sidecar {origin}: {source}")]
    Read {
        origin: String,
        #[source]
        source: io::Error,
    },
    #[error("model sidecar {origin} is not valid sidecar JSON: {source}")]
    Parse {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("model sidecar {origin}: {what}")]
    Invalid { origin: String, what: String },
    #[error(
        "model sidecar {origin} lists {sidecar} features but the agent computes {computed}: \
         the model was trained on a different feature set"
    )]
    FeatureCount {
        origin: String,
        sidecar: usize,
        computed: usize,
    },
    #[error(
        "model sidecar {origin}: feature {position} is {sidecar:?} but the agent computes \
         {computed:?} there: the model was trained on a different feature set"
    )]
    FeatureMismatch {
        origin: String,
        /// 0-based position in the feature vector.
        position: usize,
        sidecar: String,
        computed: String,
    },
}

/// The sidecar format this agent reads.
pub const SIDECAR_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    pub format: u32,
    pub name: String,
    pub version: String,
    /// The ONNX file, relative to the sidecar's directory.
    pub model_file: String,
    /// Lower-case hex sha256 of the ONNX file's bytes.
    pub onnx_sha256: String,
    pub architecture: Architecture,
    pub input: TensorSpec,
    pub output: TensorSpec,
    /// T: model ticks per window.
    pub window: usize,
    pub tick_seconds: u64,
    /// Model ticks ahead that the prediction covers.
    pub horizon: usize,
    /// The feature order of the model's last input axis.
    pub features: Vec<String>,
    pub normalisation: Normalisation,
    #[serde(default)]
    pub training: serde_json::Value,
    #[serde(default)]
    pub evaluation: serde_json::Value,
    /// Where the sidecar came from, for error messages (a path, or "embedded ...").
    #[serde(skip)]
    origin: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    #[serde(rename = "type")]
    pub kind: String,
    pub hidden: usize,
    pub layers: usize,
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

/// `(x - mean[i]) / std[i]` per feature, applied by the caller: it is not in the graph.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Normalisation {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Sidecar {
    /// Reads, parses and validates a sidecar file.
    pub fn load(path: &Path) -> Result<Self, SidecarError> {
        let origin = path.display().to_string();
        let bytes = fs::read(path).map_err(|source| SidecarError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::from_slice(&bytes, &origin)
    }

    /// Parses and validates sidecar JSON; `origin` names it in errors.
    pub fn from_slice(json: &[u8], origin: &str) -> Result<Self, SidecarError> {
        let mut sidecar: Sidecar =
            serde_json::from_slice(json).map_err(|source| SidecarError::Parse {
                origin: origin.to_string(),
                source,
            })?;
        sidecar.origin = origin.to_string();
        sidecar.validate()?;
        Ok(sidecar)
    }

    /// Where this sidecar was read from.
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

    /// Everything that can be checked without the ONNX file or the agent's features.
    pub fn validate(&self) -> Result<(), SidecarError> {
        if self.format != SIDECAR_FORMAT {
            return Err(self.invalid(format!(
                "format is {}, this agent reads format {SIDECAR_FORMAT}",
                self.format
            )));
        }
        if self.name.is_empty() {
            return Err(self.invalid("name is empty"));
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
        if self.architecture.kind != "lstm" {
            return Err(self.invalid(format!(
                "architecture.type is {:?}, this agent runs \"lstm\"",
                self.architecture.kind
            )));
        }
        if self.architecture.hidden == 0 || self.architecture.layers == 0 {
            return Err(self.invalid("architecture.hidden and architecture.layers must be > 0"));
        }
        for (field, value) in [
            ("window", self.window as u64),
            ("tick_seconds", self.tick_seconds),
            ("horizon", self.horizon as u64),
        ] {
            if value == 0 {
                return Err(self.invalid(format!("{field} is 0")));
            }
        }
        self.validate_features()?;
        self.validate_shapes()
    }

    fn validate_features(&self) -> Result<(), SidecarError> {
        let f = self.features.len();
        if f == 0 {
            return Err(self.invalid("features is empty"));
        }
        if let Some((i, name)) = self
            .features
            .iter()
            .enumerate()
            .find(|(i, name)| self.features[..*i].contains(name))
        {
            return Err(self.invalid(format!("feature {i} ({name:?}) is listed twice")));
        }
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
                    "normalisation.std of {name:?} is {} (must be finite and > 0; \
                     a constant feature's std is stored as 1)",
                    std[i]
                )));
            }
        }
        Ok(())
    }

    fn validate_shapes(&self) -> Result<(), SidecarError> {
        let describe = |shape: &[Dim]| {
            let dims: Vec<String> = shape
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => n.to_string(),
                    Dim::Symbol(s) => format!("{s:?}"),
                })
                .collect();
            format!("[{}]", dims.join(", "))
        };
        let input_ok = match self.input.shape.as_slice() {
            [Dim::Symbol(s), Dim::Fixed(t), Dim::Fixed(f)] => {
                !s.is_empty() && *t == self.window && *f == self.features.len()
            }
            _ => false,
        };
        if !input_ok {
            return Err(self.invalid(format!(
                "input.shape is {}, expected [\"N\", {}, {}] (window, number of features)",
                describe(&self.input.shape),
                self.window,
                self.features.len()
            )));
        }
        let output_ok = matches!(
            self.output.shape.as_slice(),
            [Dim::Symbol(s), Dim::Fixed(1)] if s == self.batch_symbol()
        );
        if !output_ok {
            return Err(self.invalid(format!(
                "output.shape is {}, expected [{:?}, 1]",
                describe(&self.output.shape),
                self.batch_symbol()
            )));
        }
        if self.input.name.is_empty() || self.output.name.is_empty() {
            return Err(self.invalid("input.name and output.name must not be empty"));
        }
        Ok(())
    }

    /// Refuses a model trained on features other than the ones the agent computes, in
    /// another order, or a different number of them.
    pub fn check_features(&self, computed: &[&str]) -> Result<(), SidecarError> {
        for (position, (sidecar, computed)) in self.features.iter().zip(computed).enumerate() {
            if sidecar != computed {
                return Err(SidecarError::FeatureMismatch {
                    origin: self.origin.clone(),
                    position,
                    sidecar: sidecar.clone(),
                    computed: computed.to_string(),
                });
            }
        }
        if self.features.len() != computed.len() {
            return Err(SidecarError::FeatureCount {
                origin: self.origin.clone(),
                sidecar: self.features.len(),
                computed: computed.len(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped contention model's sidecar (the one the agent embeds).
    const FIXTURE: &[u8] = include_bytes!("../../models/contention-lstm.json");

    fn fixture_value() -> serde_json::Value {
        serde_json::from_slice(FIXTURE).expect("fixture sidecar is JSON")
    }

    fn load(v: &serde_json::Value) -> Result<Sidecar, SidecarError> {
        Sidecar::from_slice(v.to_string().as_bytes(), "test.json")
    }

    fn err(v: &serde_json::Value) -> String {
        load(v).expect_err("sidecar must be refused").to_string()
    }

    #[test]
    fn fixture_loads() {
        let s = Sidecar::from_slice(FIXTURE, "lstm.json").expect("fixture is valid");
        assert_eq!(s.window, 6);
        assert_eq!(s.features.len(), 49);
        assert_eq!(s.batch_symbol(), "N");
        assert_eq!(s.origin(), "lstm.json");
    }

    #[test]
    fn load_names_a_missing_file() {
        let e = Sidecar::load(Path::new("/nonexistent/model.json")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/model.json"), "{e}");
    }

    #[test]
    fn unknown_top_level_field_refused_but_training_is_free_form() {
        let mut v = fixture_value();
        v["training"] = serde_json::json!({"anything": [1, 2, {"goes": true}]});
        assert!(load(&v).is_ok());
        v["thresholds"] = serde_json::json!(50);
        let e = err(&v);
        assert!(e.contains("test.json") && e.contains("thresholds"), "{e}");
    }

    #[test]
    fn wrong_format_refused() {
        let mut v = fixture_value();
        v["format"] = 2.into();
        assert!(err(&v).contains("format is 2"), "{}", err(&v));
    }

    #[test]
    fn zero_window_tick_horizon_refused() {
        for field in ["window", "tick_seconds", "horizon"] {
            let mut v = fixture_value();
            v[field] = 0.into();
            let e = err(&v);
            assert!(e.contains(&format!("{field} is 0")), "{e}");
        }
    }

    #[test]
    fn normalisation_length_mismatch_refused() {
        let mut v = fixture_value();
        v["normalisation"]["std"]
            .as_array_mut()
            .expect("std is an array")
            .pop();
        let e = err(&v);
        assert!(
            e.contains("49 features but normalisation has 49 means and 48 stds"),
            "{e}"
        );
    }

    #[test]
    fn non_positive_std_refused_naming_the_feature() {
        let mut v = fixture_value();
        v["normalisation"]["std"][2] = 0.0.into();
        let e = err(&v);
        assert!(
            e.contains("\"v_rq_wait_ratio\"") && e.contains("std"),
            "{e}"
        );
        v["normalisation"]["std"][2] = (-1.0).into();
        assert!(err(&v).contains("is -1"), "{}", err(&v));
    }

    #[test]
    fn input_shape_must_match_window_and_features() {
        let mut v = fixture_value();
        v["input"]["shape"] = serde_json::json!(["N", 5, 49]);
        let e = err(&v);
        assert!(
            e.contains("input.shape is [\"N\", 5, 49], expected [\"N\", 6, 49]"),
            "{e}"
        );
        let mut v = fixture_value();
        v["input"]["shape"] = serde_json::json!([1, 6, 49]);
        assert!(err(&v).contains("input.shape is [1, 6, 49]"));
        let mut v = fixture_value();
        v["output"]["shape"] = serde_json::json!(["N", 2]);
        assert!(err(&v).contains("output.shape"));
    }

    #[test]
    fn duplicate_feature_refused() {
        let mut v = fixture_value();
        v["features"][5] = "v_cpu_cores".into();
        assert!(err(&v).contains("listed twice"), "{}", err(&v));
    }

    #[test]
    fn bad_sha_refused() {
        let mut v = fixture_value();
        v["onnx_sha256"] = "ABC".into();
        assert!(err(&v).contains("onnx_sha256"));
    }

    #[test]
    fn check_features_names_first_difference_and_length() {
        let s = Sidecar::from_slice(FIXTURE, "m.json").expect("fixture is valid");
        let names: Vec<&str> = s.features.iter().map(String::as_str).collect();
        assert!(s.check_features(&names).is_ok());

        let mut swapped = names.clone();
        swapped.swap(3, 4);
        let e = s.check_features(&swapped).unwrap_err().to_string();
        assert!(
            e.contains("m.json")
                && e.contains("feature 3 is \"v_rq_mean_wait_log\"")
                && e.contains("computes \"v_rq_max_wait_log\""),
            "{e}"
        );

        let shorter = &names[..48];
        let e = s.check_features(shorter).unwrap_err().to_string();
        assert!(
            e.contains("lists 49 features but the agent computes 48"),
            "{e}"
        );
        let mut longer = names.clone();
        longer.push("extra");
        assert!(matches!(
            s.check_features(&longer),
            Err(SidecarError::FeatureCount { computed: 50, .. })
        ));
    }
}
