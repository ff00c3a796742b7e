//! The prediction stage against real ONNX files: the fixtures of
//! scripts/model/make_test_model.py (random weights, golden output from onnxruntime),
//! and the shipped models/contention-lstm.* when they exist. No root needed.
//!
//! Wrapped in `mod predict` so that `cargo test predict` selects these tests.

mod predict {
    use std::path::{Path, PathBuf};

    use interference::predict::{
        LstmScorer, ModelError, PairScorer, PredictError, Scorer, ScorerKind, SidecarError,
    };
    use serde::Deserialize;
    use sha2::{Digest, Sha256};

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/predict/testdata")
            .join(name)
    }

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(testdata(name)).expect("fixture exists")
    }

    fn sidecar_json() -> serde_json::Value {
        serde_json::from_slice(&read("lstm.json")).expect("fixture sidecar is JSON")
    }

    /// The fixture sidecar, re-pointed at `onnx` by its sha256 and edited by `edit`.
    fn sidecar_for(onnx: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v = sidecar_json();
        v["onnx_sha256"] = hex_sha256(onnx).into();
        edit(&mut v);
        v.to_string().into_bytes()
    }

    fn hex_sha256(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn fixture() -> LstmScorer {
        LstmScorer::load(&testdata("lstm.onnx"), &testdata("lstm.json")).expect("fixture loads")
    }

    fn names(s: &LstmScorer) -> Vec<&str> {
        s.sidecar().features.iter().map(String::as_str).collect()
    }

    #[derive(Deserialize)]
    struct Golden {
        input_shape: [usize; 3],
        input: Vec<f32>,
        output: Vec<f32>,
        #[serde(default)]
        raw_input: Option<Vec<f32>>,
    }

    fn golden(path: &Path) -> Golden {
        serde_json::from_slice(&std::fs::read(path).expect("golden file")).expect("golden JSON")
    }

    fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        let worst = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= tol,
            "{what}: max |diff| {worst} > {tol}\n got {got:?}\nwant {want:?}"
        );
    }

    /// Deterministic raw windows in the fixture's ranges (not the model's business what
    /// they mean; the same generator feeds every comparison).
    fn raw_windows(n: usize, t: usize, f: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n * t * f)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (state >> 40) as f32 / (1u64 << 24) as f32;
                if i % f < 16 {
                    u * 8.0
                } else {
                    u
                }
            })
            .collect()
    }

    #[test]
    fn golden_matches_onnxruntime() {
        let scorer = fixture();
        let g = golden(&testdata("lstm.golden.json"));
        let [n, t, f] = g.input_shape;
        assert_eq!((t, f), (6, 49));
        let out = scorer.run_normalised(&g.input, n).expect("runs");
        assert_close(
            &out,
            &g.output,
            1e-4,
            "tract vs onnxruntime, normalised input",
        );
        // The same windows raw, through the agent's own normalisation.
        let raw = g.raw_input.expect("the fixture carries raw_input");
        let out = scorer
            .score(&names(&scorer), &raw, n, t, f)
            .expect("scores");
        assert_close(&out, &g.output, 1e-4, "tract vs onnxruntime, raw input");
        // Outputs spread over the range, so the comparison means something.
        assert!(g.output.iter().any(|&o| o < 50.0) && g.output.iter().any(|&o| o > 50.0));
    }

    #[test]
    fn shipped_model_matches_its_golden_vectors() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let sidecar = models.join("contention-lstm.json");
        let golden_path = models.join("contention-lstm.golden.json");
        if !sidecar.exists() || !golden_path.exists() {
            eprintln!(
                "shipped_model_matches_its_golden_vectors: SKIPPED: {} or {} not present yet",
                sidecar.display(),
                golden_path.display()
            );
            return;
        }
        let scorer = LstmScorer::open(&sidecar).expect("shipped model loads");
        let g = golden(&golden_path);
        let out = scorer
            .run_normalised(&g.input, g.input_shape[0])
            .expect("runs");
        assert_close(&out, &g.output, 1e-4, "shipped model vs its golden vectors");
    }

    #[test]
    fn symbolic_batch_one_run_equals_separate_runs() {
        // One tract run for all 500 windows, whatever the default chunk size.
        let scorer = fixture().with_max_batch(usize::MAX);
        let names = names(&scorer);
        let (t, f) = (6, 49);
        let n = 500;
        let raw = raw_windows(n, t, f, 7);
        let batched = scorer.score(&names, &raw, n, t, f).expect("batch of 500");
        assert_eq!(batched.len(), n);
        let window = t * f;
        let single: Vec<f32> = raw
            .chunks_exact(window)
            .map(|w| scorer.score(&names, w, 1, t, f).expect("batch of 1")[0])
            .collect();
        assert_close(&batched, &single, 1e-4, "500 at once vs 1 at a time");
        // Other batch sizes through the same plan, and the reused buffers after a change.
        for m in [3, 500, 17, 500] {
            let out = scorer
                .score(&names, &raw[..m * window], m, t, f)
                .expect("scores");
            assert_close(&out, &batched[..m], 1e-4, &format!("batch of {m}"));
        }
        let distinct: std::collections::HashSet<u32> =
            batched.iter().map(|x| x.to_bits()).collect();
        assert!(distinct.len() > n / 2, "outputs barely depend on the input");
        assert!(batched.iter().all(|s| (0.0..=100.0).contains(s)));
        // Chunked runs (64 windows, then a last one of 52) give the same outputs.
        let chunked = fixture().with_max_batch(64);
        let out = chunked.score(&names, &raw, n, t, f).expect("chunked");
        assert_close(&out, &batched, 1e-4, "chunks of 64 vs one run");
        let out = chunked
            .run_normalised(&raw, n)
            .expect("chunked, normalised");
        let whole = scorer.run_normalised(&raw, n).expect("one run, normalised");
        assert_close(&out, &whole, 1e-4, "run_normalised in chunks vs one run");
    }

    #[test]
    fn empty_batch_returns_nothing() {
        let scorer = fixture();
        assert!(scorer
            .score(&names(&scorer), &[], 0, 6, 49)
            .expect("empty")
            .is_empty());
        assert!(scorer.run_normalised(&[], 0).expect("empty").is_empty());
    }

    #[test]
    fn truncated_model_refused() {
        let onnx = read("lstm.onnx");
        let sidecar = read("lstm.json");
        for cut in [onnx.len() / 2, onnx.len() - 1, 100] {
            let e = LstmScorer::from_bytes(&onnx[..cut], &sidecar, "truncated.onnx").unwrap_err();
            let msg = e.to_string();
            assert!(
                matches!(e, PredictError::Model(ModelError::Checksum { .. }))
                    && msg.contains("truncated.onnx")
                    && msg.contains(&format!("({cut} bytes)"))
                    && msg.contains("truncated"),
                "{msg}"
            );
            // Even when the sidecar vouches for the truncated bytes, they do not parse.
            let vouching = sidecar_for(&onnx[..cut], |_| {});
            let e = LstmScorer::from_bytes(&onnx[..cut], &vouching, "truncated.onnx").unwrap_err();
            let msg = e.to_string();
            assert!(
                matches!(
                    e,
                    PredictError::Model(ModelError::NotOnnx { .. } | ModelError::Tract { .. })
                ),
                "cut at {cut}: {msg}"
            );
            if matches!(e, PredictError::Model(ModelError::NotOnnx { .. })) {
                assert!(msg.contains("not an ONNX model or truncated"), "{msg}");
            }
        }
        // Half a file cuts through the weights: protobuf decoding itself fails.
        let half = &onnx[..onnx.len() / 2];
        let e = LstmScorer::from_bytes(half, &sidecar_for(half, |_| {}), "half.onnx").unwrap_err();
        assert!(
            e.to_string()
                .contains("half.onnx: not an ONNX model or truncated"),
            "{e}"
        );
    }

    #[test]
    fn non_lstm_model_refused_listing_its_ops() {
        let gemm = read("gemm.onnx");
        let e =
            LstmScorer::from_bytes(&gemm, &sidecar_for(&gemm, |_| {}), "gemm.onnx").unwrap_err();
        assert_eq!(
            e.to_string(),
            "model gemm.onnx: not an LSTM model: ops found: Flatten, Gemm, Sigmoid, Mul"
        );
    }

    #[test]
    fn reverse_lstm_refused() {
        let onnx = read("lstm_reverse.onnx");
        let sidecar = sidecar_for(&onnx, |v| v["architecture"]["hidden"] = 2.into());
        let e = LstmScorer::from_bytes(&onnx, &sidecar, "reverse.onnx").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("direction is \"reverse\""), "{msg}");
    }

    #[test]
    fn hidden_size_must_match_sidecar() {
        let onnx = read("lstm.onnx");
        let sidecar = sidecar_for(&onnx, |v| v["architecture"]["hidden"] = 64.into());
        let e = LstmScorer::from_bytes(&onnx, &sidecar, "m.onnx").unwrap_err();
        assert!(
            e.to_string()
                .contains("hidden_size is 32 (the sidecar says hidden 64)"),
            "{e}"
        );
    }

    #[test]
    fn fixed_batch_refused() {
        let onnx = read("lstm_fixed_batch.onnx");
        let sidecar = sidecar_for(&onnx, |v| v["architecture"]["hidden"] = 2.into());
        let e = LstmScorer::from_bytes(&onnx, &sidecar, "fixed.onnx").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("input shape is [1, 6, 49], expected [N, 6, 49]")
                && msg.contains("fixed batch"),
            "{msg}"
        );
    }

    #[test]
    fn wrong_output_shape_refused() {
        let onnx = read("lstm_two_outputs.onnx");
        let sidecar = sidecar_for(&onnx, |v| v["architecture"]["hidden"] = 2.into());
        let e = LstmScorer::from_bytes(&onnx, &sidecar, "two.onnx").unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, PredictError::Model(ModelError::Output { .. })) && msg.contains("[N, 1]"),
            "{msg}"
        );
    }

    #[test]
    fn sidecar_window_must_match_model() {
        let onnx = read("lstm.onnx");
        let sidecar = sidecar_for(&onnx, |v| {
            v["window"] = 5.into();
            v["input"]["shape"] = serde_json::json!(["N", 5, 49]);
        });
        let e = LstmScorer::from_bytes(&onnx, &sidecar, "m.onnx").unwrap_err();
        assert!(
            e.to_string()
                .contains("input shape is [?, 6, 49], expected [N, 5, 49]"),
            "{e}"
        );
        let sidecar = sidecar_for(&onnx, |v| v["input"]["name"] = "x".into());
        let e = LstmScorer::from_bytes(&onnx, &sidecar, "m.onnx").unwrap_err();
        assert!(
            e.to_string()
                .contains("is named \"window\", the sidecar says \"x\""),
            "{e}"
        );
    }

    #[test]
    fn feature_list_mismatch_refused() {
        let scorer = fixture();
        let mut names = names(&scorer);
        let raw = raw_windows(2, 6, 49, 1);
        names[45] = "time_of_day_sin";
        let e = scorer.score(&names, &raw, 2, 6, 49).unwrap_err();
        assert!(matches!(
            &e,
            PredictError::Sidecar(SidecarError::FeatureMismatch { position: 45, .. })
        ));
        let msg = e.to_string();
        assert!(
            msg.contains("\"time_day_sin\"") && msg.contains("\"time_of_day_sin\""),
            "{msg}"
        );
        names[45] = "time_day_sin";
        let e = scorer
            .score(&names[..48], &raw[..2 * 6 * 48], 2, 6, 48)
            .unwrap_err();
        assert!(
            matches!(e, PredictError::Sidecar(SidecarError::FeatureCount { .. })),
            "{e}"
        );
    }

    #[test]
    fn non_finite_input_names_the_feature() {
        let scorer = fixture();
        let names = names(&scorer);
        let mut raw = raw_windows(3, 6, 49, 2);
        raw[2 * 294 + 4 * 49 + 40] = f32::INFINITY;
        let msg = scorer
            .score(&names, &raw, 3, 6, 49)
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "window 2, tick 4: feature \"pair_preempted_by_ratio\" is inf (not finite)"
        );
    }

    #[test]
    fn wrong_window_length_refused() {
        let scorer = fixture();
        let names = names(&scorer);
        let raw = raw_windows(2, 5, 49, 3);
        let e = scorer.score(&names, &raw, 2, 5, 49).unwrap_err();
        assert!(e.to_string().contains("windows of 5 ticks"), "{e}");
        assert!(scorer.score(&names, &raw[1..], 2, 5, 49).is_err());
    }

    #[test]
    fn scorer_enum_runs_the_model() {
        let scorer = Scorer::from(fixture());
        assert_eq!(scorer.kind(), ScorerKind::Lstm);
        assert_eq!((scorer.window(), scorer.tick_seconds()), (6, Some(5)));
        assert!(
            scorer.describe().contains("contention-lstm-fixture"),
            "{}",
            scorer.describe()
        );
        let Scorer::Lstm(m) = &scorer else {
            unreachable!()
        };
        let names = names(m);
        let pairs = vec![
            ("a".to_string(), "b".to_string()),
            ("b".to_string(), "a".to_string()),
        ];
        let raw = raw_windows(2, 6, 49, 4);
        let ds = scorer
            .score_pairs(&pairs, &names, &raw, 6, 49)
            .expect("scores");
        assert_eq!(
            (ds[1].victim.as_str(), ds[1].aggressor.as_str()),
            ("b", "a")
        );
    }

    #[test]
    fn builtin_model_is_the_shipped_one() {
        let builtin = LstmScorer::builtin().expect("the embedded model loads");
        assert_eq!(builtin.sidecar().name, "contention-lstm");
        assert!(
            builtin.origin().starts_with("built-in"),
            "{}",
            builtin.origin()
        );
        let on_disk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/contention-lstm.json");
        let on_disk = LstmScorer::open(&on_disk).expect("models/ loads");
        assert_eq!(builtin.sidecar().onnx_sha256, on_disk.sidecar().onnx_sha256);
        assert!(builtin.sidecar().features == on_disk.sidecar().features);
    }

    #[test]
    fn missing_files_are_named() {
        let e =
            LstmScorer::load(Path::new("/nonexistent.onnx"), &testdata("lstm.json")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent.onnx"), "{e}");
        let e = LstmScorer::open(&testdata("nonexistent.json")).unwrap_err();
        assert!(e.to_string().contains("nonexistent.json"), "{e}");
    }
}
