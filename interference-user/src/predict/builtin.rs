//! The model built into the binary (models/contention-lstm.onnx and its sidecar), so
//! the agent scores with no file to install; `--model` or `[score] model` replace it.

use super::{LstmScorer, PredictError};

const ONNX: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/contention-lstm.onnx"
));
const SIDECAR: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../models/contention-lstm.json"
));

impl LstmScorer {
    /// Loads the built-in model; it goes through the same checks as a model file.
    pub fn builtin() -> Result<Self, PredictError> {
        Self::from_bytes(ONNX, SIDECAR, "built-in models/contention-lstm.onnx")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FEATURE_NAMES;

    #[test]
    fn the_builtin_model_loads_and_takes_our_features() {
        let m = LstmScorer::builtin().expect("built-in model");
        m.sidecar()
            .check_features(&FEATURE_NAMES)
            .expect("the agent computes the model's features");
    }
}
