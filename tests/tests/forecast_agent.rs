//! The real agent with `[forecast]` on (issue 16): two cgroup VMs contend for CPU 0;
//! the agent forecasts their demand every step, maps it onto the CPUs, calibrates the
//! mapping on the nowcast and exports the forecast pair scores; its rollups and
//! calibration survive a restart; history imported with `interference forecast
//! --import` is what the agent continues from. Oracles: the metrics textfile, the
//! state directory (read back by the agent's own rollup store), the agent's log.
//!
//! Settings besides the embedded defaults, and why: `[forecast] enabled` (off by
//! default) with the lab's compressed day (1 s steps, 288 s days) so that steps close
//! within the test, a 5 s horizon, and a 1 s tick.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use interference_forecast::{contract::DAY_STEPS, Clock, RollupStore};
use interference_tests::agent::{log_text, metric, Agent, Log};
use interference_tests::{interference_bin, require_root, TestCgroup};

/// The real agent on `config`, billing off (this test is about forecasts), its metrics
/// into `metrics`.
fn start(config: &Path, journal: &Path, metrics: &Path, log: &Log) -> Agent {
    let args = [
        OsStr::new("--no-ledger"),
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--journal"),
        journal.as_os_str(),
        OsStr::new("--metrics-file"),
        metrics.as_os_str(),
    ];
    Agent::start(&args, Instant::now(), log.clone())
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

    let log1 = Log::default();
    let a = start(&config, &journal, &metrics, &log1);
    std::thread::sleep(Duration::from_secs(12));
    let text = std::fs::read_to_string(&metrics).expect("metrics textfile");
    let sample = |series: &str| metric(&metrics, series);
    let rounds = sample("interference_forecast_rounds_total").unwrap_or(0.0);
    let vms = sample("interference_forecast_vms{source=\"model\"}").unwrap_or(0.0)
        + sample("interference_forecast_vms{source=\"level\"}").unwrap_or(0.0);
    let calibrated = sample("interference_forecast_calibration_rounds").unwrap_or(0.0);
    let pair = format!("victim=\"{}\",aggressor=\"{}\"", web.name, batch.name);
    let forecast = sample(&format!(
        "interference_pair_forecast_slowdown_ratio{{{pair},horizon=\"5s\"}}"
    ));
    assert!(a.stop().success(), "{}", log_text(&log1));
    let log = log_text(&log1);
    assert!(log.contains("forecasting demand: 1s steps"), "{log}");
    assert!(
        rounds >= 5.0,
        "{rounds} forecast rounds in 12 s of 1 s steps:\n{text}"
    );
    assert!(vms >= 2.0, "{text}");
    assert!(calibrated >= 5.0, "{text}");
    // The two share CPU 0 and both want all of it: each is forecast to take from the
    // other.
    let forecast = forecast.unwrap_or_else(|| panic!("no forecast for {pair}:\n{text}"));
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
    let log2 = Log::default();
    let a = start(&config, &journal, &metrics, &log2);
    std::thread::sleep(Duration::from_secs(4));
    assert!(a.stop().success(), "{}", log_text(&log2));
    let log = log_text(&log2);
    assert!(!log.contains("demand rollups:"), "{log}");
    assert!(!log.contains("starts afresh"), "{log}");
}

#[test]
#[ignore = "needs root/QEMU"]
fn the_agent_continues_the_history_an_import_gave_it() {
    require_root("the_agent_continues_the_history_an_import_gave_it");
    let mut web = TestCgroup::new("fci-web").expect("cgroup");
    web.spin(Some(0)).expect("spin");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("forecast");
    let toml = format!(
        "[[vm]]\nname = {:?}\ncgroups = {:?}\nvcpus = 1\n\n[collect]\ninterval = \"1s\"\n\n[forecast]\nenabled = true\nstep = \"1s\"\nday = \"288s\"\nhorizon = \"5s\"\nstate_dir = {:?}\n",
        web.name,
        web.paths(),
        state.display().to_string()
    );
    let config = dir.path().join("host.toml");
    std::fs::write(&config, toml).expect("config");
    // 600 steps of history, a daily-looking swell between 5 and 35 %.
    let history: Vec<f32> = (0..600)
        .map(|i| 20.0 + 15.0 * ((i as f32) / 45.0).sin())
        .collect();
    let mut csv = format!("minute,{}\n", web.name);
    for (i, v) in history.iter().enumerate() {
        csv += &format!("{},{v}\n", i * 5);
    }
    let trace = dir.path().join("history.csv");
    std::fs::write(&trace, csv).expect("trace");
    let out = std::process::Command::new(interference_bin())
        .args(["forecast", "--import"])
        .arg(&trace)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run the import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (journal, metrics) = (dir.path().join("journal.jsonl"), dir.path().join("m.prom"));
    let log = Log::default();
    let a = start(&config, &journal, &metrics, &log);
    std::thread::sleep(Duration::from_secs(8));
    let model_vms = metric(&metrics, "interference_forecast_vms{source=\"model\"}");
    assert!(a.stop().success(), "{}", log_text(&log));
    let text = log_text(&log);
    assert!(!text.contains("starts afresh"), "{text}");
    assert!(
        model_vms.unwrap_or(0.0) >= 1.0,
        "no model forecast:\n{text}"
    );

    let clock = Clock::host(
        Duration::from_secs(1),
        Duration::from_secs(288),
        0,
        DAY_STEPS,
    )
    .expect("clock");
    let (store, problems) = RollupStore::open(&state, &clock);
    assert!(problems.is_empty(), "{problems:?}");
    let r = store.get(&web.name).expect("the VM's rollup");
    let values: Vec<f32> = r.available().collect();
    assert!(
        r.age() >= 600 + 4,
        "age {}: the agent's own steps follow the 600 imported ones",
        r.age()
    );
    assert_eq!(
        &values[..600],
        &history[..],
        "the imported history is kept as it was"
    );
    // The spinning VM's own steps: about 100 % of its one vCPU.
    let own = &values[values.len() - 3..];
    assert!(
        own.iter().all(|v| (70.0..=130.0).contains(v)),
        "the agent's own steps {own:?}"
    );
}
