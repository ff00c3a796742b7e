//! The agent's feature stage computes the trainer's features: windows that
//! scripts/model/golden_features.py computed in Python from the small shipped dataset
//! (data/contention-small/features.golden.json) come out of `FeatureWindows` fed with
//! the same samples, feature for feature, within 1e-4 relative or 1e-5 absolute.
//!
//! `FEATURES_GOLDEN=<path>` checks another golden file against the same samples.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use interference::export::jsonl::{SampleFileError, SampleReader};
use interference::features::{FeatureWindows, PairWindows, FEATURES, FEATURE_NAMES};
use interference::telemetry::VmSample;

#[derive(serde::Deserialize)]
struct Golden {
    t: usize,
    k: usize,
    #[serde(default)]
    feature_names: Option<Vec<String>>,
    windows: Vec<GoldenWindow>,
}

#[derive(serde::Deserialize)]
struct GoldenWindow {
    end_timestamp_ms: u64,
    victim: String,
    aggressor: String,
    features: Vec<f64>,
}

fn dataset() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/contention-small")
}

/// Every experiment's samples, by collector tick (sorted timestamps, file order within
/// one); a line cut short by a crash is skipped, as the trainer does.
fn experiments(dir: &Path) -> Vec<(String, BTreeMap<u64, Vec<VmSample>>)> {
    let mut out = vec![];
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("samples.jsonl").is_file())
        .collect();
    dirs.sort();
    for d in dirs {
        let path = d.join("samples.jsonl");
        let mut ticks: BTreeMap<u64, Vec<VmSample>> = BTreeMap::new();
        let reader = SampleReader::open(&path).unwrap_or_else(|e| panic!("{e}"));
        for s in reader {
            match s {
                Ok(s) => ticks.entry(s.timestamp_ms).or_default().push(s),
                Err(e @ SampleFileError::Decode { .. }) => eprintln!("skipping: {e}"),
                Err(e) => panic!("{e}"),
            }
        }
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((name, ticks));
    }
    out
}

fn close(got: f32, want: f64) -> bool {
    let d = (got as f64 - want).abs();
    d <= 1e-5 || d <= 1e-4 * want.abs()
}

#[test]
fn rust_features_match_the_python_trainer() {
    let path = std::env::var_os("FEATURES_GOLDEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| dataset().join("features.golden.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the golden feature windows are missing; generate them with \
             `python3 scripts/model/golden_features.py` (docs/dataset.md)",
            path.display()
        )
    });
    let golden: Golden = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not golden feature windows: {e}", path.display()));
    if let Some(names) = &golden.feature_names {
        assert_eq!(names, &FEATURE_NAMES, "the golden file's feature names");
    }
    assert!(!golden.windows.is_empty(), "{}: no windows", path.display());
    let mut by_end: HashMap<u64, Vec<&GoldenWindow>> = HashMap::new();
    for w in &golden.windows {
        assert_eq!(
            w.features.len(),
            golden.t * FEATURES,
            "golden window {} <- {} at {}",
            w.victim,
            w.aggressor,
            w.end_timestamp_ms
        );
        by_end.entry(w.end_timestamp_ms).or_default().push(w);
    }

    let mut checked = 0;
    let mut failures = vec![];
    let mut worst = 0f64;
    let mut out = PairWindows::default();
    for (experiment, ticks) in experiments(&dataset()) {
        let mut windows = FeatureWindows::new(golden.t, golden.k);
        for (ts, samples) in &ticks {
            windows.push_tick(samples);
            let Some(wanted) = by_end.get(ts) else {
                continue;
            };
            windows.pairs_into(&mut out);
            for g in wanted {
                let Some(i) = out.position(&g.victim, &g.aggressor) else {
                    failures.push(format!(
                        "{experiment} {ts} {} <- {}: no window (ready: {:?})",
                        g.victim,
                        g.aggressor,
                        windows.ready_vms()
                    ));
                    continue;
                };
                checked += 1;
                let got = out.window(i).expect("window i of pairs_into");
                for (c, (x, want)) in got.iter().zip(&g.features).enumerate() {
                    worst = worst.max((*x as f64 - want).abs() / want.abs().max(1.0));
                    if !close(*x, *want) {
                        failures.push(format!(
                            "{experiment} {ts} {} <- {}, model tick {}: {} = {x}, Python {want}",
                            g.victim,
                            g.aggressor,
                            c / FEATURES,
                            FEATURE_NAMES[c % FEATURES]
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches, first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    assert_eq!(
        checked,
        golden.windows.len(),
        "every golden window is found once in the dataset's samples"
    );
    eprintln!(
        "{checked} golden windows of {} x {FEATURES} features agree (worst |diff| / max(|value|, 1): {worst:e})",
        golden.t
    );
}
