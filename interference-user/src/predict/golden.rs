//! Golden vectors: normalised input windows and the outputs the trainer's runtime
//! (onnxruntime) gave for them, shipped beside a model. A model bundle from the
//! controller is used only once this build's runtime (tract) reproduces them: the
//! sha256 proves the bytes are the ones uploaded, the golden vectors that this host
//! computes with them what the trainer did.

use serde::Deserialize;
use thiserror::Error;

use super::{LstmScorer, PredictError};

/// The largest |tract - onnxruntime| accepted, in score points (0-100); the shipped
/// model's worst difference is about 1e-5.
pub const GOLDEN_TOLERANCE: f32 = 1e-3;

#[derive(Debug, Deserialize)]
struct Golden {
    input_shape: [usize; 3],
    input: Vec<f32>,
    output: Vec<f32>,
}

#[derive(Debug, Error)]
pub enum GoldenError {
    #[error("golden vectors {origin}: not readable: {source}")]
    Parse {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("golden vectors {origin}: {what}")]
    Shape { origin: String, what: String },
    #[error("golden vectors {origin}: the model does not run them")]
    Run {
        origin: String,
        #[source]
        source: PredictError,
    },
    #[error("golden vectors {origin}: window {window} scores {got}, the trainer's runtime gave {want} (|diff| {diff} > {GOLDEN_TOLERANCE})")]
    Mismatch {
        origin: String,
        window: usize,
        got: f32,
        want: f32,
        diff: f32,
    },
}

/// Runs the golden windows of `json` (named `origin` in errors) through `scorer`;
/// the worst difference when every output matches.
pub fn check_golden(scorer: &LstmScorer, json: &[u8], origin: &str) -> Result<f32, GoldenError> {
    let golden: Golden = serde_json::from_slice(json).map_err(|source| GoldenError::Parse {
        origin: origin.to_owned(),
        source,
    })?;
    let shape_err = |what: String| GoldenError::Shape {
        origin: origin.to_owned(),
        what,
    };
    let [n, t, f] = golden.input_shape;
    let sidecar = scorer.sidecar();
    if t != sidecar.window || f != sidecar.features.len() {
        return Err(shape_err(format!(
            "input_shape [{n}, {t}, {f}], the model reads windows of {} ticks of {} features",
            sidecar.window,
            sidecar.features.len()
        )));
    }
    if n == 0 || golden.input.len() != n * t * f || golden.output.len() != n {
        return Err(shape_err(format!(
            "{} inputs and {} outputs for input_shape [{n}, {t}, {f}]",
            golden.input.len(),
            golden.output.len()
        )));
    }
    let got = scorer
        .run_normalised(&golden.input, n)
        .map_err(|source| GoldenError::Run {
            origin: origin.to_owned(),
            source,
        })?;
    let mut worst = 0f32;
    for (window, (&got, &want)) in got.iter().zip(&golden.output).enumerate() {
        let diff = (got - want).abs();
        if diff.is_nan() || diff > GOLDEN_TOLERANCE {
            return Err(GoldenError::Mismatch {
                origin: origin.to_owned(),
                window,
                got,
                want,
                diff,
            });
        }
        worst = worst.max(diff);
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> (LstmScorer, Vec<u8>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let scorer = LstmScorer::open(&dir.join("contention-lstm.json")).unwrap();
        let golden = std::fs::read(dir.join("contention-lstm.golden.json")).unwrap();
        (scorer, golden)
    }

    #[test]
    fn the_shipped_model_reproduces_its_golden_vectors_and_a_changed_output_is_refused() {
        let (scorer, golden) = shipped();
        let worst = check_golden(&scorer, &golden, "shipped").unwrap();
        assert!(worst <= GOLDEN_TOLERANCE);
        let mut v: serde_json::Value = serde_json::from_slice(&golden).unwrap();
        let first = v["output"][0].as_f64().unwrap();
        v["output"][0] = serde_json::json!(first + 1.0);
        let bad = serde_json::to_vec(&v).unwrap();
        let e = check_golden(&scorer, &bad, "bad.golden.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.golden.json: window 0 scores"), "{e}");
        v["output"] = serde_json::json!([1.0]);
        let short = serde_json::to_vec(&v).unwrap();
        let e = check_golden(&scorer, &short, "short")
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 outputs for input_shape"), "{e}");
        let e = check_golden(&scorer, b"{", "torn").unwrap_err().to_string();
        assert!(e.contains("torn: not readable"), "{e}");
    }
}
