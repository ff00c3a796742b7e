//! The real agent with `[forecast]` on (issue 16): two cgroup VMs contend for CPU 0;
//! the agent forecasts their demand every step, maps it onto the CPUs, calibrates the
//! mapping on the nowcast and exports the forecast pair scores; its rollups and
//! calibration survive a restart. Oracles: the metrics textfile, the state directory,
//! the agent's log.
//!
//! Settings besides the embedded defaults, and why: `[forecast] enabled` (off by
//! default) with the lab's compressed day (1 s steps, 288 s days) so that steps close
//! within the test, a 5 s horizon, and a 1 s tick.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interference_tests::{interference_bin, require_root, TestCgroup};

fn start(config: &Path, journal: &Path, metrics: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log");
    Command::new(interference_bin())
        .args(["agent", "--no-ledger", "--config"])
        .arg(config)
        .arg("--journal")
        .arg(journal)
        .arg("--metrics-file")
        .arg(metrics)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the agent")
}

fn stop(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "agent did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the first sample of `family` (with `labels` in its label set).
fn sample(text: &str, family: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .find(|l| l.contains(labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
#[ignore = "needs root/QEMU"]
fn the_agent_forecasts_pairs_and_keeps_its_rollups() {
    require_root("the_agent_forecasts_pairs_and_keeps_its_rollups");
    let mut web = TestCgroup::new("fca-web").expect("cgroup");
    let mut batch = TestCgroup::new("fca-batch").expect("cgroup");
    web.spin(Some(0)).expect("spin");
    batch.spin(Some(0)).expect("spin");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("forecast");
    let mut toml = String::new();
    for cg in [&web, &batch] {
        toml += &format!(
            "[[vm]]\nname = {:?}\ncgroups = {:?}\nvcpus = 1\n\n",
            cg.name,
            cg.paths()
        );
    }
    toml += &format!(
        "[collect]\ninterval = \"1s\"\n\n[forecast]\nenabled = true\nstep = \"1s\"\nday = \"288s\"\nhorizon = \"5s\"\nstate_dir = {:?}\n",
        state.display().to_string()
    );
    let config = dir.path().join("host.toml");
    std::fs::write(&config, toml).expect("config");
    let (journal, metrics) = (dir.path().join("journal.jsonl"), dir.path().join("m.prom"));

    let log1 = dir.path().join("agent-1.log");
    let mut a = start(&config, &journal, &metrics, &log1);
    std::thread::sleep(Duration::from_secs(12));
    let text = std::fs::read_to_string(&metrics).expect("metrics textfile");
    stop(&mut a);
    let log = std::fs::read_to_string(&log1).unwrap_or_default();
    assert!(log.contains("forecasting demand: 1s steps"), "{log}");
    let rounds = sample(&text, "interference_forecast_rounds_total", "").unwrap_or(0.0);
    assert!(
        rounds >= 5.0,
        "{rounds} forecast rounds in 12 s of 1 s steps:\n{text}"
    );
    let vms = sample(&text, "interference_forecast_vms", "source=\"model\"").unwrap_or(0.0)
        + sample(&text, "interference_forecast_vms", "source=\"level\"").unwrap_or(0.0);
    assert!(vms >= 2.0, "{text}");
    let calibrated = sample(&text, "interference_forecast_calibration_rounds", "").unwrap_or(0.0);
    assert!(calibrated >= 5.0, "{text}");
    // The two share CPU 0 and both want all of it: each is forecast to take from the
    // other.
    let pair = format!("victim=\"{}\",aggressor=\"{}\"", web.name, batch.name);
    let forecast = sample(&text, "interference_pair_forecast_slowdown_ratio", &pair)
        .unwrap_or_else(|| panic!("no forecast for {pair}:\n{text}"));
    assert!(
        forecast > 0.2,
        "forecast slowdown {forecast} for {pair}:\n{text}"
    );
    for f in ["demand-rollups.bin", "pair-calibration.json"] {
        assert!(
            state.join(f).exists(),
            "{f} not saved in {}",
            state.display()
        );
    }

    // A restart reads them back (a problem with them would be logged).
    let log2 = dir.path().join("agent-2.log");
    let mut a = start(&config, &journal, &metrics, &log2);
    std::thread::sleep(Duration::from_secs(4));
    stop(&mut a);
    let log = std::fs::read_to_string(&log2).unwrap_or_default();
    assert!(!log.contains("demand rollups:"), "{log}");
    assert!(!log.contains("starts afresh"), "{log}");
}
