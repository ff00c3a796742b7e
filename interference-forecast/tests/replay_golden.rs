//! docs/forecast.md, section 9, point 4: the replay of the synthetic golden trace
//! (`data/forecast/replay-golden.csv.gz`: daily and weekly rhythms, bursts, a VM born at
//! row 1500, a 30-row gap) prints the lines of `replay-golden.jsonl.gz`, line for line:
//! same keys in the same order, same VMs, minutes and horizons, forecasts within 1e-3.

mod common;

use interference_forecast::{horizon, replay_file, DemandModel, Forecaster};

/// The line's keys in the order they are written (serde_json's map sorts them, so
/// the order is read from the text).
fn key_order(line: &str) -> Vec<&str> {
    line.split('"')
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[1].starts_with(": "))
        .map(|w| w[0])
        .collect()
}

#[test]
fn replay_golden_line_for_line() {
    let trace = common::repo_file("data/forecast/replay-golden.csv.gz");
    let expected = common::read_text(&common::repo_file("data/forecast/replay-golden.jsonl.gz"));
    let horizons = horizon::parse_list("5m,1h").expect("horizons");
    let mut forecaster = Forecaster::new(DemandModel::builtin().expect("built-in model"));
    let mut out = Vec::new();
    let summary = replay_file(&trace, &horizons, &mut forecaster, &mut out).expect("replay");
    let ours = String::from_utf8(out).expect("utf-8");
    let (ours, theirs): (Vec<&str>, Vec<&str>) =
        (ours.lines().collect(), expected.lines().collect());
    assert_eq!(summary.rows, 2100);
    assert_eq!(summary.lines as usize, ours.len());
    assert_eq!(ours.len(), theirs.len(), "line count");
    assert_eq!(
        key_order(theirs[0]),
        ["vm", "minute", "horizon_min", "forecast"]
    );
    let (mut identical, mut worst) = (0usize, 0.0f64);
    for (n, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        if a == b {
            identical += 1;
            continue;
        }
        let pa: serde_json::Value = serde_json::from_str(a).expect("our line is JSON");
        let pb: serde_json::Value = serde_json::from_str(b).expect("golden line is JSON");
        assert_eq!(key_order(a), key_order(b), "line {}: keys", n + 1);
        for k in ["vm", "minute", "horizon_min"] {
            assert_eq!(pa[k], pb[k], "line {}: {k}", n + 1);
        }
        let (fa, fb) = (pa["forecast"].as_f64(), pb["forecast"].as_f64());
        let (Some(fa), Some(fb)) = (fa, fb) else {
            panic!("line {}: forecast {a} vs {b}", n + 1);
        };
        worst = worst.max((fa - fb).abs());
        assert!((fa - fb).abs() <= 1e-3, "line {}: {a} vs {b}", n + 1);
    }
    eprintln!(
        "{} lines, {identical} byte-identical, largest forecast difference {worst:.1e}",
        ours.len()
    );
}
