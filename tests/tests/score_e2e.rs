//! `interference score` end to end, against a measured oracle: three cgroup "VMs" run
//! the dataset's workload, which reports its own speed. A victim computes on CPU 1 from
//! the start, an aggressor joins it there after a few seconds, a bystander runs on
//! CPU 0. The victim's own progress gives its real slowdown: the default score (the
//! nowcast) must agree with it within 10 points and score the bystander pairs near 0,
//! and the LSTM must rank the contended pair above the others. The metrics file must
//! carry the scores.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use interference_tests::{
    dataset_workload, interference_bin as bin, mean_rate, require_root, start_cpu_workload,
    TestCgroup,
};

fn vm_toml(cg: &TestCgroup, workload: &str) -> String {
    let paths: Vec<String> = cg.paths().iter().map(|p| format!("{p:?}")).collect();
    format!(
        "[[vm]]\nname = \"{}\"\ncgroups = [{}]\nworkload = \"{workload}\"\n\n",
        cg.name,
        paths.join(", ")
    )
}

#[test]
fn scores_track_the_victims_measured_slowdown() {
    if !require_root("scores_track_the_victims_measured_slowdown") {
        return;
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    if ncpu < 2 {
        eprintln!(
            "SKIP scores_track_the_victims_measured_slowdown: needs 2 CPUs, this host has {ncpu}"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dataset_workload(dir.path());
    let mut victim = TestCgroup::new("victim").expect("cgroup");
    let mut aggressor = TestCgroup::new("aggressor").expect("cgroup");
    let mut bystander = TestCgroup::new("bystander").expect("cgroup");
    let cfg = dir.path().join("score.toml");
    std::fs::write(
        &cfg,
        vm_toml(&victim, "cpu") + &vm_toml(&aggressor, "cpu") + &vm_toml(&bystander, "cpu"),
    )
    .expect("config");
    let metrics = dir.path().join("m.prom");
    let run_for = 70u64;
    // Both scorers watch the same VMs at once: the nowcast is exact for CPU contention
    // and is held to the measured slowdown; the LSTM is held to ranking the contended
    // pair first and to the outputs it must produce.
    let lstm = spawn_score(&cfg, "lstm", run_for, Some(&metrics));
    let nowcast = spawn_score(&cfg, "nowcast", run_for, None);
    let started = Instant::now();
    // The aggressor joins at 10 s and stays; the victim's speed before that is its solo.
    let join = 10.0;
    let v_rates = start_cpu_workload(&mut victim, &exe, 1, "0:1", run_for, started);
    start_cpu_workload(
        &mut aggressor,
        &exe,
        1,
        &format!("0:0,{join}:0,{join}:1"),
        run_for,
        started,
    );
    start_cpu_workload(&mut bystander, &exe, 0, "0:0.5", run_for, started);
    let lstm_rounds = finish(lstm);
    let nowcast_rounds = finish(nowcast);
    assert!(started.elapsed() < Duration::from_secs(run_for + 40));

    let solo = mean_rate(&v_rates, 1.0, join - 1.0);
    let contended = mean_rate(&v_rates, join + 30.0, run_for as f64 - 2.0);
    let measured = 100.0 * (1.0 - contended / solo).clamp(0.0, 1.0);
    assert!(measured > 25.0, "the set-up did not contend: {measured:.1}");
    let (v, a, b) = (
        victim.name.clone(),
        aggressor.name.clone(),
        bystander.name.clone(),
    );

    // The last rounds: their windows lie wholly in the contended phase.
    let last = |rounds: &[Round], zero: bool| -> Vec<(f64, Vec<f64>)> {
        rounds
            .iter()
            .rev()
            .take(2)
            .map(|r| {
                let by = [&v, &a]
                    .iter()
                    .map(|o| pair_score(r, o, &b, zero))
                    .collect();
                (pair_score(r, &v, &a, zero), by)
            })
            .collect()
    };
    let (n, l) = (last(&nowcast_rounds, true), last(&lstm_rounds, false));
    eprintln!("measured slowdown {measured:.1}; nowcast (pair, bystander pairs) {n:?}; lstm {l:?}");
    for (score, by) in &n {
        // The share of the victim's runnable time the neighbour took: its slowdown.
        assert!(
            (*score - measured).abs() <= 10.0,
            "nowcast {score:.1} vs measured {measured:.1} points"
        );
        assert!(
            by.iter().all(|s| *s < 10.0),
            "nowcast: bystander pairs scored {by:?}"
        );
    }
    for (score, by) in &l {
        assert!((0.0..=100.0).contains(score));
        assert!(
            by.iter().all(|s| s < score),
            "lstm ranks a bystander pair ({by:?}) above the contended pair ({score:.1})"
        );
    }

    let text = std::fs::read_to_string(&metrics).expect("metrics file");
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("interference_pair_contention_score{")
                && l.contains(&format!("vm=\"{v}\""))
                && l.contains(&format!("neighbor=\"{a}\""))
        })
        .unwrap_or_else(|| panic!("no contention score for {v}/{a} in:\n{text}"));
    let value: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|x| x.parse().ok())
        .expect("value");
    assert!((0.0..=100.0).contains(&value), "{line}");
    assert!(
        text.contains("interference_pair_predicted_slowdown_ratio{victim="),
        "{text}"
    );
    assert!(
        text.contains("interference_scorer_info{scorer=\"lstm\""),
        "{text}"
    );
}

/// One scoring round: (vm, neighbor) -> its JSONL object.
type Round = HashMap<(String, String), serde_json::Value>;

fn spawn_score(
    cfg: &Path,
    scorer: &str,
    seconds: u64,
    metrics: Option<&Path>,
) -> std::process::Child {
    let mut cmd = Command::new(bin());
    cmd.args([
        "score",
        "--format",
        "jsonl",
        "--interval",
        "1s",
        "--every",
        "5s",
    ])
    .args([
        "--scorer",
        scorer,
        "--duration",
        &format!("{seconds}s"),
        "--config",
    ])
    .arg(cfg);
    if let Some(m) = metrics {
        cmd.arg("--metrics-file").arg(m);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("interference score starts")
}

/// Waits for `interference score` and groups its JSONL lines into rounds.
fn finish(child: std::process::Child) -> Vec<Round> {
    let out = child
        .wait_with_output()
        .expect("interference score finishes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "interference score failed: {stderr}");
    let mut rounds: Vec<(u64, Round)> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSONL line");
        let ts = v["timestamp_ms"].as_u64().expect("timestamp_ms");
        let key = (
            v["vm"].as_str().unwrap_or_default().to_string(),
            v["neighbor"].as_str().unwrap_or_default().to_string(),
        );
        match rounds.last_mut() {
            Some((t, m)) if *t == ts => {
                m.insert(key, v);
            }
            _ => rounds.push((ts, HashMap::from([(key, v)]))),
        }
    }
    assert!(
        rounds.len() >= 3,
        "only {} scoring rounds: {stderr}",
        rounds.len()
    );
    rounds.into_iter().map(|(_, m)| m).collect()
}

/// The pair's score. The nowcast leaves out a pair where neither VM took anything
/// from the other (`missing_is_zero`); a model scores every pair with a full window.
fn pair_score(round: &Round, a: &str, b: &str, missing_is_zero: bool) -> f64 {
    let (x, y) = if a < b { (a, b) } else { (b, a) };
    match round.get(&(x.to_string(), y.to_string())) {
        Some(p) => p["score"].as_f64().expect("a score"),
        None if missing_is_zero => 0.0,
        None => panic!("pair {x}/{y} not scored"),
    }
}

#[test]
fn a_truncated_model_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let onnx = std::fs::read(models.join("contention-lstm.onnx")).expect("shipped model");
    let bad = dir.path().join("contention-lstm.onnx");
    std::fs::write(&bad, &onnx[..onnx.len() / 2]).expect("write");
    std::fs::copy(
        models.join("contention-lstm.json"),
        dir.path().join("contention-lstm.json"),
    )
    .expect("sidecar");
    let out = Command::new(bin())
        .args(["score", "--duration", "1s", "--scorer", "lstm", "--model"])
        .arg(&bad)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("contention-lstm.onnx"),
        "names the file: {stderr}"
    );
    assert!(
        stderr.contains("sha256") || stderr.contains("truncated"),
        "says what is wrong: {stderr}"
    );
}
