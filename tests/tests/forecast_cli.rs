//! `interference forecast --replay` (issue 16, item 5), the real binary: the synthetic
//! golden trace prints the reference's lines (scripts/forecast/replay.py, stored as
//! `data/forecast/replay-golden.jsonl.gz`) line for line, and bad input is refused
//! with an error that names it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use interference_tests::interference_bin;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn gunzip(path: &Path) -> String {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text
}

#[test]
fn replay_prints_the_reference_lines() {
    let out = Command::new(interference_bin())
        .args(["forecast", "--replay"])
        .arg(repo("data/forecast/replay-golden.csv.gz"))
        .args(["--horizon", "5m,1h", "--format", "jsonl", "--quiet"])
        .output()
        .expect("run interference forecast");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = String::from_utf8(out.stdout).expect("utf-8");
    let golden = gunzip(&repo("data/forecast/replay-golden.jsonl.gz"));
    let (ours, theirs): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), golden.lines().collect());
    assert_eq!(ours.len(), theirs.len(), "line count");
    for (n, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        if a == b {
            continue;
        }
        let pa: serde_json::Value = serde_json::from_str(a).expect("our line is JSON");
        let pb: serde_json::Value = serde_json::from_str(b).expect("golden line is JSON");
        for k in ["vm", "minute", "horizon_min"] {
            assert_eq!(pa[k], pb[k], "line {}: {k}", n + 1);
        }
        let (Some(fa), Some(fb)) = (pa["forecast"].as_f64(), pb["forecast"].as_f64()) else {
            panic!("line {}: {a} vs {b}", n + 1);
        };
        assert!((fa - fb).abs() <= 1e-3, "line {}: {a} vs {b}", n + 1);
    }
}

/// Runs a command that must fail; (lines printed, error text).
fn refused(args: &[&str]) -> (usize, String) {
    let out = Command::new(interference_bin())
        .arg("forecast")
        .args(args)
        .output()
        .expect("run interference forecast");
    assert!(!out.status.success(), "{args:?} was accepted");
    (
        String::from_utf8_lossy(&out.stdout).lines().count(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_input_is_refused_by_name() {
    let (printed, missing) = refused(&["--replay", "/nonexistent/trace.csv"]);
    assert!(missing.contains("/nonexistent/trace.csv"), "{missing}");
    assert_eq!(printed, 0);

    let golden = repo("data/forecast/replay-golden.csv.gz");
    let golden = golden.to_str().expect("utf-8 path");
    let (printed, horizon) = refused(&["--replay", golden, "--horizon", "7m"]);
    assert!(
        horizon.contains("horizon 7m is not a whole number"),
        "{horizon}"
    );
    assert!(horizon.contains("replay-golden.csv.gz"), "{horizon}");
    assert_eq!(printed, 0);

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "minute,vm-a\n0,10\n5,abc\n").expect("write");
    // At most the row before the bad one is forecast (one line per horizon).
    let (printed, cell) = refused(&["--replay", bad.to_str().expect("utf-8 path")]);
    assert!(cell.contains("bad.csv:3"), "{cell}");
    assert!(cell.contains("vm-a"), "{cell}");
    assert!(printed <= 2, "{printed} lines");
}
