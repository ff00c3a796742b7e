//! `interference forecast --replay` (issue 16, item 5), the real binary: the synthetic
//! golden trace prints the reference's lines (scripts/forecast/replay.py, stored as
//! `data/forecast/replay-golden.jsonl.gz`) line for line, and bad input is refused
//! with an error that names it. `interference forecast --import`: a trace becomes the
//! rollup file the agent reads (oracle: that file, read back by the agent's own store,
//! against the trace's values and the host clock's steps). `interference score
//! --replay` with `[forecast]` on: each pair's score is the larger of its measured part,
//! which is the plain replay's score, and its forecast.

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

/// The agent's config for an import: the lab's 2 s steps, a state dir of its own.
fn import_config(dir: &Path, offset: i64) -> PathBuf {
    let config = dir.join("host.toml");
    std::fs::write(
        &config,
        format!(
            "[forecast]\nenabled = true\nstep = \"2s\"\nday = \"576s\"\nhorizon = \"10s\"\norigin_offset_seconds = {offset}\nstate_dir = {:?}\n",
            dir.join("state").display().to_string()
        ),
    )
    .expect("config");
    config
}

fn import(trace: &Path, config: &Path, until: &str) -> std::process::Output {
    Command::new(interference_bin())
        .args(["forecast", "--import"])
        .arg(trace)
        .arg("--config")
        .arg(config)
        .args(["--until", until])
        .output()
        .expect("run interference forecast --import")
}

#[test]
fn import_writes_the_rollups_the_agent_reads_on_the_host_clock() {
    use interference_forecast::{contract::DAY_STEPS, Clock, RollupStore};
    use std::time::{Duration, UNIX_EPOCH};

    let dir = tempfile::tempdir().expect("tempdir");
    // A VM with 300 rows and one born later with an empty cell; minute 0 is a Monday.
    let mut text = String::from("minute,web,batch\n");
    for i in 0..300 {
        let batch = match i {
            0..=199 => String::new(),
            250 => String::new(),
            _ => format!("{}", 50 + i % 7),
        };
        text += &format!("{},{},{batch}\n", i * 5, i % 100);
    }
    let trace = dir.path().join("history.csv");
    std::fs::write(&trace, &text).expect("trace");
    // The host clock is placed so that the last row (row 299) keeps its time of week.
    let until: u64 = 1_800_000_000;
    let week_s = 2016 * 2;
    let offset = (until as i64 - 4 * 86_400 - 300 * 2).rem_euclid(week_s);
    let config = import_config(dir.path(), offset);
    let out = import(&trace, &config, &until.to_string());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("imported 2 VM(s)"), "{log}");
    assert!(!log.contains("differ by"), "aligned, yet: {log}");

    let clock = Clock::host(
        Duration::from_secs(2),
        Duration::from_secs(576),
        offset,
        DAY_STEPS,
    )
    .expect("clock");
    let last = clock.step_of(UNIX_EPOCH + Duration::from_secs(until)) - 1;
    assert_eq!(
        last.rem_euclid(2016),
        299,
        "the host's step of week is the row's"
    );
    let (store, problems) = RollupStore::open(&dir.path().join("state"), &clock);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(store.last_closed(), Some(last));
    let web = store.get("web").expect("web imported");
    assert_eq!((web.age(), web.newest_step()), (300, last));
    let expected: Vec<f32> = (0..300).map(|i| (i % 100) as f32).collect();
    assert_eq!(web.available().collect::<Vec<_>>(), expected);
    let batch = store.get("batch").expect("batch imported");
    assert_eq!(batch.age(), 100, "born at row 200");
    assert_eq!(
        batch.value(299 - 250),
        batch.value(299 - 249),
        "empty cell filled forward"
    );
    assert_eq!(batch.value(0), Some(50.0 + (299 % 7) as f32));

    // Misaligned: the import says by how much and what would align it.
    let config = import_config(dir.path(), offset + 10);
    let out = import(&trace, &config, &until.to_string());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("differ by 5 steps")
            && log.contains(&format!("origin_offset_seconds = {offset}")),
        "{log}"
    );
}

#[test]
fn import_refuses_uneven_minutes_by_line_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("bad.csv");
    std::fs::write(&trace, "minute,web\n0,1\n5,2\n7,3\n").expect("trace");
    let config = import_config(dir.path(), 0);
    let out = import(&trace, &config, "now");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains(&format!("{}:4: minute 7", trace.display())),
        "the error names the file and line: {log}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "nothing written on a refused import"
    );
}

fn score_replay(samples: &Path, config: Option<&Path>) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(interference_bin());
    cmd.args(["score", "--replay"])
        .arg(samples)
        .args(["--format", "jsonl", "--quiet"]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().expect("run interference score --replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn score_replay_with_forecasts_acts_on_the_larger_of_measured_and_forecast() {
    let samples = repo("data/contention-1s-small/e000/samples.jsonl");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("fc.toml");
    std::fs::write(
        &config,
        format!(
            "[forecast]\nenabled = true\nstep = \"1s\"\nday = \"288s\"\nhorizon = \"5s\"\nstate_dir = {:?}\n",
            dir.path().join("state").display().to_string()
        ),
    )
    .expect("config");
    let plain = score_replay(&samples, None);
    let with = score_replay(&samples, Some(&config));
    assert_eq!(
        plain.len(),
        with.len(),
        "one line per ordered pair per round either way"
    );
    let mut forecast_led = 0;
    for (p, w) in plain.iter().zip(&with) {
        for k in ["timestamp_ms", "victim", "aggressor"] {
            assert_eq!(p[k], w[k], "{w}");
        }
        assert!(p.get("forecast").is_none(), "{p}");
        let (now, forecast, score) = (
            w["now"].as_f64().expect("now"),
            w["forecast"].as_f64().expect("forecast"),
            w["score"].as_f64().expect("score"),
        );
        let measured = p["score"].as_f64().expect("plain score");
        assert!(
            (now - measured).abs() < 1e-4,
            "measured part {now} != plain {measured}: {w}"
        );
        assert!((score - now.max(forecast)).abs() < 1e-4, "{w}");
        forecast_led += usize::from(forecast > now + 1.0);
    }
    assert!(
        forecast_led > 0,
        "the forecast never led: {} lines",
        with.len()
    );
    assert!(
        dir.path().join("state/demand-rollups.bin").exists(),
        "the replay's rollups are saved in its state_dir"
    );
}
