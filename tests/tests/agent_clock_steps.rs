//! The wall clock steps while the real agent has a mitigation in effect (issue 20,
//! clocks): an hour forward, then an hour back. Billing must neither bill the hour
//! that did not pass nor lose the time in effect between the two steps, nor bill any
//! stretch of UTC twice.
//!
//! The host's clock is not touched: the agent runs under libfaketime (Debian's
//! `faketime`), which offsets CLOCK_REALTIME by what a file says, read again every
//! second, and leaves CLOCK_MONOTONIC alone (`FAKETIME_DONT_FAKE_MONOTONIC`), which
//! is exactly what NTP or `date -s` does to a process. The oracle is the test's own
//! monotonic clock: when each action was applied (the agent's log, stamped as it
//! comes) and when the agent exited.
//!
//! Settings: the embedded defaults (hourly charge interval included), with the ledger
//! and journal in the test's directory.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use interference::billing::{ledger, LedgerRecord, LineKind};
use interference_tests::agent::{log_text, metric, mitigations, vm_toml, Agent, Log};
use interference_tests::{
    dataset_workload, require_root, snapshot_files, start_cpu_workload, TestCgroup,
};

const FILES: &[&str] = &["cpu.shares", "cpuset.cpus", "cpu.weight"];
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const HOUR_S: f64 = 3600.0;

/// Wait until `ok` or `until` seconds after `t0`.
fn wait_for(t0: Instant, until: f64, mut ok: impl FnMut() -> bool) -> bool {
    while t0.elapsed().as_secs_f64() < until {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    ok()
}

fn set_offset(file: &Path, offset: &str) {
    std::fs::write(file, format!("{offset}\n")).expect("faketime offset file");
}

#[test]
#[ignore = "needs root/QEMU"]
fn clock_steps_during_a_mitigation_bill_only_the_time_that_passed() {
    require_root("clock_steps_during_a_mitigation_bill_only_the_time_that_passed");
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: ./scripts/setup.sh installs Debian's faketime"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dataset_workload(dir.path());
    let mut victim = TestCgroup::new("prio").expect("cgroup");
    let mut noisy = TestCgroup::new("noisy").expect("cgroup");
    let mut dirs = victim.dirs.clone();
    dirs.extend(noisy.dirs.iter().cloned());
    let original = snapshot_files(&dirs, FILES);
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        vm_toml(&victim, "high", "acme") + &vm_toml(&noisy, "normal", "globex"),
    )
    .expect("config");
    let journal = dir.path().join("journal.jsonl");
    let ledger_dir = dir.path().join("ledger");
    let metrics = dir.path().join("m.prom");
    let offset = dir.path().join("faketime");
    set_offset(&offset, "+0");
    let args: Vec<&OsStr> = vec![
        OsStr::new("--config"),
        cfg.as_os_str(),
        OsStr::new("--journal"),
        journal.as_os_str(),
        OsStr::new("--ledger"),
        ledger_dir.as_os_str(),
        OsStr::new("--metrics-file"),
        metrics.as_os_str(),
    ];
    let env: Vec<(&str, &OsStr)> = vec![
        ("LD_PRELOAD", OsStr::new(LIBFAKETIME)),
        ("FAKETIME_TIMESTAMP_FILE", offset.as_os_str()),
        ("FAKETIME_CACHE_DURATION", OsStr::new("1")),
        ("FAKETIME_DONT_FAKE_MONOTONIC", OsStr::new("1")),
    ];
    let t0 = Instant::now();
    start_cpu_workload(&mut victim, &exe, 1, "0:1", 120, t0);
    start_cpu_workload(&mut noisy, &exe, 1, "0:0,4:0,4:1", 120, t0);
    let log: Log = Default::default();
    let agent = Agent::start_with_env(&env, &args, t0, log.clone());

    assert!(
        wait_for(t0, 60.0, || !mitigations(&log).is_empty()),
        "no mitigation within 60 s:\n{}",
        log_text(&log)
    );
    let (applied_at, first) = mitigations(&log)[0].clone();

    // An hour forward, ten seconds later an hour back.
    std::thread::sleep(Duration::from_secs(5));
    set_offset(&offset, "+3600");
    let forward_at = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(10));
    set_offset(&offset, "+0");
    let back_at = t0.elapsed().as_secs_f64();
    let steps_seen = wait_for(t0, back_at + 6.0, || {
        metric(
            &metrics,
            "interference_clock_steps_total{direction=\"forward\"}",
        ) >= Some(1.0)
            && metric(
                &metrics,
                "interference_clock_steps_total{direction=\"back\"}",
            ) >= Some(1.0)
    });
    let status = agent.stop();
    let exited_at = t0.elapsed().as_secs_f64();
    victim.stop_all();
    noisy.stop_all();
    assert!(status.success(), "the agent failed:\n{}", log_text(&log));
    assert!(
        steps_seen,
        "the metrics never counted both steps:\n{}",
        log_text(&log)
    );
    let text = log_text(&log);
    assert!(
        text.contains("the wall clock stepped forward by 36"),
        "the forward step is not in the log:\n{text}"
    );
    assert!(
        text.contains("the wall clock stepped back by 36"),
        "the step back is not in the log:\n{text}"
    );
    assert_eq!(
        snapshot_files(&dirs, FILES),
        original,
        "a cgroup value was left changed"
    );

    let contents = ledger::read(&ledger_dir, None).expect("ledger");
    assert!(contents.bad.is_empty(), "{:?}", contents.bad);
    let lines = contents.records;
    let mut ids = std::collections::BTreeSet::new();
    for l in &lines {
        assert!(ids.insert(&l.record_id), "{} twice", l.record_id);
        assert!(
            l.duration_seconds >= 0.0 && l.pricing_quantity >= 0.0,
            "{l:?}"
        );
    }
    let charged = |id: &str| -> (f64, Vec<&LedgerRecord>) {
        let c: Vec<&LedgerRecord> = lines
            .iter()
            .filter(|l| l.kind == LineKind::Charge && l.action_id.as_deref() == Some(id))
            .collect();
        (c.iter().map(|l| l.duration_seconds).sum(), c)
    };
    for (at, id) in mitigations(&log) {
        let (seconds, c) = charged(&id);
        // Never more than the time that passed (a tick of slack for the log).
        assert!(
            seconds <= exited_at - at + 1.5,
            "{id} was billed {seconds:.1} s, in effect at most {:.1} s: {c:#?}\n{text}",
            exited_at - at
        );
        // Its lines never cover the same stretch of UTC twice.
        let mut spans: Vec<(String, String)> = c
            .iter()
            .map(|l| (l.charge_period_start.clone(), l.charge_period_end.clone()))
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "{id}: {w:?} overlap");
        }
    }
    // The first action, in effect from before the forward step until after the step
    // back unless the policy rolled it back: the ten seconds between the steps are
    // billed (the hour is not).
    let rolled_back_early = text
        .lines()
        .any(|l| l.contains("roll back") && l.contains(&first));
    let (seconds, c) = charged(&first);
    eprintln!(
        "first action {first}: applied at {applied_at:.1} s, clock +1 h at {forward_at:.1} s, \
         back at {back_at:.1} s, exit at {exited_at:.1} s; billed {seconds:.1} s in {} lines",
        c.len()
    );
    assert!(seconds < HOUR_S / 2.0, "the hour was billed: {seconds} s");
    if !rolled_back_early {
        assert!(
            seconds >= back_at - applied_at - 3.0,
            "{first} was billed {seconds:.1} s, in effect {:.1} s up to the step back: {c:#?}\n{text}",
            back_at - applied_at
        );
    }
}
