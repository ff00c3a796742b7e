//! The shipped model (models/contention-lstm.onnx) run by tract gives onnxruntime's
//! outputs on the golden vectors the trainer wrote, within 1e-4: the export, the
//! sidecar and tract's LSTM agree.

use std::path::PathBuf;

use interference::predict::LstmScorer;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

#[derive(serde::Deserialize)]
struct Golden {
    input_shape: [usize; 3],
    input: Vec<f32>,
    output: Vec<f32>,
}

#[test]
fn tract_matches_onnxruntime_on_the_golden_vectors() {
    let dir = models();
    let scorer =
        LstmScorer::open(&dir.join("contention-lstm.json")).expect("the shipped model loads");
    let text = std::fs::read_to_string(dir.join("contention-lstm.golden.json"))
        .expect("models/contention-lstm.golden.json");
    let golden: Golden = serde_json::from_str(&text).expect("golden vectors parse");
    let [n, t, f] = golden.input_shape;
    assert_eq!(t, scorer.sidecar().window);
    assert_eq!(f, scorer.sidecar().features.len());
    assert_eq!(golden.input.len(), n * t * f);
    assert_eq!(golden.output.len(), n);
    let got = scorer
        .run_normalised(&golden.input, n)
        .expect("tract runs the golden batch");
    let mut worst = 0f32;
    for (i, (a, b)) in got.iter().zip(&golden.output).enumerate() {
        let d = (a - b).abs();
        worst = worst.max(d);
        assert!(
            d <= 1e-4,
            "window {i}: tract {a} vs onnxruntime {b} (|diff| {d})"
        );
    }
    // The golden set must exercise the model, not only its floor.
    let spread = golden.output.iter().cloned().fold(f32::MIN, f32::max)
        - golden.output.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 5.0, "golden outputs span only {spread} points");
    eprintln!("{n} golden windows, worst |tract - onnxruntime| = {worst:e}");
}
