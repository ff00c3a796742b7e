//! A ledger that cannot be written must not cost a customer's bill (issue 13). The real
//! agent protects a priority VM from a CPU neighbour while its ledger lives on a small
//! tmpfs that the test fills to the last byte (a full disk) and empties again:
//! - while full, the metrics show the failed writes and the backlog, and once the
//!   backlog is over `[billing] max_unbilled_lines` no new mitigation is applied (a
//!   second neighbour arrives in that time, so one is due), while the one in effect
//!   stays;
//! - emptied, the backlog is written and mitigation resumes;
//! - full again, the agent is SIGKILLed while lines are owed, the disk is emptied, and
//!   a restarted agent bills what the journal still owes before it stops.
//!
//! The final ledger holds every segment of every applied action, contiguous, exactly
//! once, with the credits paired (`ledger_oracle::check_ledger`), and every cgroup
//! value is back.
//!
//! Settings, and why: a 1 s tick (`--interval 1s`) and a 2 s charge interval so that
//! segments pile up within seconds; `max_unbilled_lines = 4` so that the limit is
//! reached a few ticks into the outage. Everything else is the embedded default.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use interference_tests::agent::{log_text, metric, mitigations, vm_toml, Agent, Log};
use interference_tests::ledger_oracle::check_ledger;
use interference_tests::{
    dataset_workload, require_root, snapshot_files, start_cpu_workload, TestCgroup,
};

const FILES: &[&str] = &["cpu.shares", "cpuset.cpus", "cpu.weight"];

/// A 4 MiB tmpfs mounted at `dir`, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(st.success(), "mounting a tmpfs at {}", dir.display());
        Self(dir.to_path_buf())
    }

    /// Fill it to the last byte.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).expect("filler");
        let chunk = vec![0u8; 64 << 10];
        loop {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        while f.write_all(&small[..1]).is_ok() {}
    }

    fn empty(&self) {
        std::fs::remove_file(self.0.join("filler")).expect("filler removed");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// (seconds since t0, write errors, backlog) of the metrics file, polled.
fn poll(metrics: &Path, t0: Instant, until: f64, seen: &mut Vec<(f64, f64, f64)>) {
    while t0.elapsed().as_secs_f64() < until {
        let errors = metric(metrics, "interference_ledger_write_errors_total").unwrap_or(0.0);
        let backlog = metric(metrics, "interference_ledger_backlog_lines").unwrap_or(0.0);
        seen.push((t0.elapsed().as_secs_f64(), errors, backlog));
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs root/QEMU"]
fn a_full_ledger_disk_delays_lines_never_loses_them_and_holds_new_mitigation() {
    require_root("a_full_ledger_disk_delays_lines_never_loses_them_and_holds_new_mitigation");
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dataset_workload(dir.path());
    let mut victim = TestCgroup::new("prio").expect("cgroup");
    let mut noisy = TestCgroup::new("noisy").expect("cgroup");
    let mut late = TestCgroup::new("late").expect("cgroup");
    let mut dirs = victim.dirs.clone();
    dirs.extend(noisy.dirs.iter().cloned());
    dirs.extend(late.dirs.iter().cloned());
    let original = snapshot_files(&dirs, FILES);
    let disk = SmallDisk::mount(&dir.path().join("ledger"));
    let ledger = disk.0.clone();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        vm_toml(&victim, "high", "acme")
            + &vm_toml(&noisy, "normal", "globex")
            + &vm_toml(&late, "normal", "initech")
            + "[billing]\ncharge_interval = \"2s\"\nmax_unbilled_lines = 4\n",
    )
    .expect("config");
    let journal = dir.path().join("journal.jsonl");
    let metrics = dir.path().join("m.prom");
    let args: Vec<&OsStr> = vec![
        OsStr::new("--config"),
        cfg.as_os_str(),
        OsStr::new("--interval"),
        OsStr::new("1s"),
        OsStr::new("--journal"),
        journal.as_os_str(),
        OsStr::new("--ledger"),
        ledger.as_os_str(),
        OsStr::new("--metrics-file"),
        metrics.as_os_str(),
    ];
    let t0 = Instant::now();
    // The neighbour computes from 4 s on, a second one from 30 s on (the disk is full
    // then: its mitigation is due and must wait).
    start_cpu_workload(&mut victim, &exe, 1, "0:1", 120, t0);
    start_cpu_workload(&mut noisy, &exe, 1, "0:0,4:0,4:1", 120, t0);
    start_cpu_workload(&mut late, &exe, 1, "0:0,30:0,30:1", 120, t0);
    let log: Log = Default::default();
    let agent = Agent::start(&args, t0, log.clone());
    let mut seen = Vec::new();
    poll(&metrics, t0, 14.0, &mut seen);
    assert!(
        !mitigations(&log).is_empty(),
        "no mitigation before the disk fills:\n{}",
        log_text(&log)
    );

    // Full from 14 s to 44 s.
    disk.fill();
    let full_at = t0.elapsed().as_secs_f64();
    poll(&metrics, t0, 44.0, &mut seen);
    disk.empty();
    let emptied_at = t0.elapsed().as_secs_f64();
    poll(&metrics, t0, 60.0, &mut seen);

    let during: Vec<&(f64, f64, f64)> = seen
        .iter()
        .filter(|(t, _, _)| *t > full_at && *t < emptied_at)
        .collect();
    let max_backlog = during.iter().map(|s| s.2).fold(0.0, f64::max);
    let errors = during.iter().map(|s| s.1).fold(0.0, f64::max);
    eprintln!("full {full_at:.1}-{emptied_at:.1} s: {errors} failed writes, backlog up to {max_backlog} lines");
    assert!(errors >= 2.0, "no failed write seen:\n{}", log_text(&log));
    assert!(
        max_backlog > 4.0,
        "the backlog never passed the limit: {during:?}"
    );
    let over_at = during
        .iter()
        .find(|s| s.2 > 4.0)
        .map(|s| s.0)
        .expect("over the limit");
    // Over the limit, nothing new until the disk is back (a metrics file is up to a
    // tick old, hence the second of slack).
    let held: Vec<(f64, String)> = mitigations(&log)
        .into_iter()
        .filter(|(t, _)| *t > over_at + 1.0 && *t < emptied_at)
        .collect();
    assert!(
        held.is_empty(),
        "mitigations applied with the ledger over its backlog limit: {held:?}\n{}",
        log_text(&log)
    );
    // The retry backs off to 8 ticks at most.
    let after = seen
        .iter()
        .rfind(|s| s.0 > emptied_at + 10.0)
        .expect("polled");
    assert_eq!(
        after.2, 0.0,
        "the backlog was not written after the disk came back"
    );
    assert!(
        mitigations(&log).iter().any(|(t, _)| *t > emptied_at),
        "mitigation did not resume once the ledger could be written:\n{}",
        log_text(&log)
    );

    // Full again, killed with lines owed, restarted on an empty disk, stopped.
    disk.fill();
    let full_again = t0.elapsed().as_secs_f64();
    poll(&metrics, t0, full_again + 5.0, &mut seen);
    let backlog = metric(&metrics, "interference_ledger_backlog_lines").unwrap_or(0.0);
    assert!(backlog > 0.0, "no backlog before the kill");
    agent.kill9();
    disk.empty();
    let mut again = args.clone();
    again.extend([OsStr::new("--duration"), OsStr::new("4s")]);
    let status = Agent::start(&again, t0, log.clone()).wait();
    assert!(status.success(), "restart failed:\n{}", log_text(&log));
    victim.stop_all();
    noisy.stop_all();
    late.stop_all();

    assert_eq!(
        snapshot_files(&dirs, FILES),
        original,
        "a cgroup value was left changed"
    );
    let facts = check_ledger(&ledger).unwrap_or_else(|e| panic!("{e}\n{}", log_text(&log)));
    for (_, id) in mitigations(&log) {
        assert!(
            facts.actions.contains(&id),
            "applied action {id} has no lines in the ledger:\n{}",
            log_text(&log)
        );
    }
    eprintln!(
        "{} ledger lines, {} actions, every one billed to its end once",
        facts.records,
        facts.actions.len()
    );
}
