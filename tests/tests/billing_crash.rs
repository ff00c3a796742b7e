//! kill -9 at random moments while the agent's mitigation loop applies, rolls back and
//! bills actions: after every restart, each action the journal says was applied has
//! exactly its ledger lines, and no action that was not applied has any.
//!
//! A child process (this test binary re-invoked with `INTERFERENCE_BILLING_CHILD` set,
//! running `billing_child`) does what the agent does: opens the journal (kept whole,
//! so it is the oracle) and the ledger (1 s charge interval), bills and restores what
//! the previous run left in effect (`Mitigation::recover`), says "recovered", then
//! applies weight changes, pins and rollbacks on a real cgroup VM through
//! `Mitigation::apply`, ticking the meter, until it is SIGKILLed. Most kills wait for
//! "recovered" and land at a random moment after it; one in four lands at a random
//! moment right after the start (possibly mid-recovery).
//!
//! After each recovered restart, for every action of the earlier runs:
//! - applied (an `applied` outcome in the journal): its charge lines tile
//!   `[applied, end)` without gap or overlap, starting at the moment it was applied,
//!   and each has its credit line for the same segment;
//! - not applied (failed, or killed before its outcome): no line at all;
//!
//! and no record id appears twice in the ledger. At the end, a clean stop restores
//! every cgroup file.

use interference_core::cpu_list::CpuList;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use interference::agent::Mitigation;
use interference::billing::period::rfc3339;
use interference::billing::{ledger, Billing, BillingConfig, LedgerRecord, LineKind};
use interference::enforce::{Enforcer, EnforcerOptions, Journal};
use interference::inventory::{Mounts, Vm};
use interference::policy::{Action, ActionResult, Change, Policy, PolicyConfig, Rung};
use interference_tests::{require_root, snapshot_files, vm_for, Rng, TestCgroup, TestChildren};

const RUNS: u64 = 40;
const FILES: &[&str] = &["cpu.shares", "cpuset.cpus"];
const CHILD_ENV: &str = "INTERFERENCE_BILLING_CHILD";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn action(id: String, vm: &str, change: Change) -> Action {
    Action {
        payer: Default::default(),
        not_donors: Vec::new(),
        id,
        decided_ms: now_ms(),
        rung: match change {
            Change::Cpuset { .. } => Rung::Pin,
            _ => Rung::Weight,
        },
        change,
        vm: vm.into(),
        protects: "web".into(),
        victim: "web".into(),
        aggressor: vm.into(),
        score: 70.0,
        vm_is_aggressor: true,
        unobservable: Vec::new(),
        simulated: false,
        reason: "billing crash test".into(),
        cause: None,
        customers: [
            ("web".to_string(), "acme".to_string()),
            (vm.to_string(), "globex".to_string()),
        ]
        .into_iter()
        .collect(),
        vcpus: Some(2),
        trigger: Default::default(),
    }
}

fn billing_config(ledger: &Path) -> BillingConfig {
    BillingConfig {
        ledger_dir: ledger.to_path_buf(),
        charge_interval: Duration::from_secs(1),
        // A visible credit on every action.
        aggressor_credit_ratio: 0.5,
        ..BillingConfig::default()
    }
}

fn mitigation(journal: &Path, ledger: &Path) -> Mitigation {
    let enforcer = Enforcer::open(
        EnforcerOptions {
            journal: journal.to_path_buf(),
            keep_history: true,
            ..EnforcerOptions::default()
        },
        Mounts::read(Path::new("/proc")).unwrap(),
    )
    .unwrap();
    let billing = Billing::open(billing_config(ledger), "crash-host", false).unwrap();
    Mitigation::new(
        Policy::new(PolicyConfig::default(), "crash-host").unwrap(),
        enforcer,
        vec![0, 1],
    )
    .with_billing(billing)
}

/// The child's side: runs only when re-invoked by the test below.
#[test]
fn billing_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(4, '\n');
    let journal = PathBuf::from(parts.next().unwrap());
    let ledger = PathBuf::from(parts.next().unwrap());
    let run: u64 = parts.next().unwrap().parse().unwrap();
    let vm: Vm = serde_json::from_str(parts.next().unwrap()).unwrap();
    let vms = std::slice::from_ref(&vm);
    let mut m = mitigation(&journal, &ledger);
    m.tick(vms, &[], None);
    m.recover();
    if run == u64::MAX {
        // The clean stop at the end.
        m.restore_all();
        return;
    }
    println!("recovered");
    let mut rng = Rng::new(run.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef);
    let mut in_effect: Vec<String> = Vec::new();
    for n in 0.. {
        let id = format!("r{run}-{n}");
        let change = match rng.below(5) {
            0 | 1 => Change::CpuWeight {
                weight: 1 + rng.below(10_000),
            },
            2 => Change::Cpuset {
                cpus: CpuList::new([0]),
            },
            3 => Change::Cpuset {
                cpus: CpuList::new([1]),
            },
            _ => match in_effect.pop() {
                Some(earlier) => Change::Rollback { action_id: earlier },
                None => Change::Cpuset {
                    cpus: CpuList::new([0, 1]),
                },
            },
        };
        let is_rollback = matches!(change, Change::Rollback { .. });
        let out = m.apply(vec![action(id.clone(), &vm.name, change)], vms, now_ms());
        if !is_rollback {
            in_effect.push(id);
        }
        assert_ne!(out[0].1.result, ActionResult::Failed, "{:?}", out[0].1);
        m.tick(vms, &[], None);
        std::thread::sleep(Duration::from_millis(rng.below(60)));
    }
}

/// What the journal says of each action (non-rollback): its applied time, if applied.
fn journal_actions(journal: &Path) -> BTreeMap<String, Option<u64>> {
    let j = Journal::read(journal).unwrap_or_else(|e| panic!("journal unreadable: {e}"));
    let applied: BTreeMap<String, u64> = j
        .history()
        .into_iter()
        .filter(|(_, o)| o.result == ActionResult::Applied)
        .map(|(a, o)| (a.id, o.at_ms))
        .collect();
    j.entries()
        .map(|e| e.intent.action_id.clone())
        .chain(applied.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|id| {
            j.action(id)
                .is_some_and(|a| !matches!(a.change, Change::Rollback { .. }))
        })
        .map(|id| {
            let at = applied.get(&id).copied();
            (id, at)
        })
        .collect()
}

/// The invariant, for the actions of runs before `upto_run`. Returns (applied
/// actions checked, lines checked).
fn check_ledger(journal: &Path, ledger_dir: &Path, upto_run: u64) -> (usize, usize) {
    let contents = ledger::read(ledger_dir, None).unwrap();
    assert!(contents.bad.is_empty(), "{:?}", contents.bad);
    let mut ids = BTreeSet::new();
    for r in &contents.records {
        assert!(ids.insert(&r.record_id), "{} written twice", r.record_id);
    }
    let mut by_action: BTreeMap<&str, Vec<&LedgerRecord>> = BTreeMap::new();
    for r in &contents.records {
        if let Some(a) = &r.action_id {
            by_action.entry(a).or_default().push(r);
        }
    }
    let run_of = |id: &str| -> u64 {
        id.trim_start_matches('r')
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (mut checked, mut lines) = (0, 0);
    for (id, applied) in journal_actions(journal) {
        if run_of(&id) >= upto_run {
            continue;
        }
        let recs = by_action.remove(id.as_str()).unwrap_or_default();
        let Some(at) = applied else {
            assert!(
                recs.is_empty(),
                "{id} was not applied but has {} ledger lines",
                recs.len()
            );
            continue;
        };
        let mut charges: Vec<&&LedgerRecord> =
            recs.iter().filter(|r| r.kind == LineKind::Charge).collect();
        let credits: BTreeSet<String> = recs
            .iter()
            .filter(|r| r.kind == LineKind::Credit)
            .map(|r| r.record_id.trim_end_matches("/credit").to_owned())
            .collect();
        assert!(
            !charges.is_empty(),
            "{id} was applied at {} and has no ledger line",
            rfc3339(at)
        );
        charges.sort_by(|a, b| a.charge_period_start.cmp(&b.charge_period_start));
        assert_eq!(
            charges[0].charge_period_start,
            rfc3339(at),
            "{id}: billing starts when it was applied"
        );
        for w in charges.windows(2) {
            assert_eq!(
                w[0].charge_period_end, w[1].charge_period_start,
                "{id}: a gap or an overlap between segments"
            );
        }
        let stems: BTreeSet<String> = charges
            .iter()
            .map(|r| r.record_id.trim_end_matches("/charge").to_owned())
            .collect();
        assert_eq!(
            stems, credits,
            "{id}: each segment has its charge and its credit"
        );
        checked += 1;
        lines += recs.len();
    }
    (checked, lines)
}

#[test]
#[ignore = "needs root/QEMU"]
fn kill_9_never_loses_or_doubles_a_ledger_line() {
    require_root("kill_9_never_loses_or_doubles_a_ledger_line");
    assert!(
        Path::new("/sys/fs/cgroup/cpuset/cpuset.cpus").exists(),
        "kill_9_never_loses_or_doubles_a_ledger_line needs the cgroup v1 cpuset, missing on kernel {}",
        interference_tests::kernel_release()
    );
    let cg = TestCgroup::new("billcrash").unwrap();
    let children = TestChildren::new(&cg, &["libvirt/vcpu0", "libvirt/emulator"]).unwrap();
    fs::write(cg.dir("cpu").unwrap().join("cpu.shares"), "1000").unwrap();
    let original = snapshot_files(&cg.dirs, FILES);
    let vm = vm_for(&cg, &[]);
    let vm_json = serde_json::to_string(&vm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let ledger_dir = dir.path().join("ledger");
    let exe = std::env::current_exe().unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng::new(seed);
    eprintln!("seed {seed}");
    let spawn = |run: u64| {
        Command::new(&exe)
            .args([
                "--exact",
                "billing_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                CHILD_ENV,
                format!(
                    "{}\n{}\n{run}\n{vm_json}",
                    journal.display(),
                    ledger_dir.display()
                ),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let started = Instant::now();
    let (mut early, mut checks, mut max_lines) = (0, 0, 0);
    for run in 0..RUNS {
        let mut child = spawn(run);
        let early_kill = rng.below(4) == 0;
        if early_kill {
            std::thread::sleep(Duration::from_millis(rng.below(30)));
            early += 1;
        } else {
            let mut line = String::new();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            // libtest prints its own lines first; wait for ours.
            while !line.contains("recovered") {
                line.clear();
                if out.read_line(&mut line).unwrap() == 0 {
                    panic!(
                        "run {run}: the child exited before recovering: {:?}",
                        child.wait()
                    );
                }
            }
            // Every action of the earlier runs is now ended and billed.
            let (actions, lines) = check_ledger(&journal, &ledger_dir, run);
            checks += 1;
            max_lines = max_lines.max(lines);
            if run > 0 {
                assert!(actions > 0 || run < 3, "run {run}: nothing applied so far");
            }
            std::thread::sleep(Duration::from_millis(20 + rng.below(700)));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // The clean stop: recover the last run, restore, exit.
    let status = spawn(u64::MAX).wait().unwrap();
    assert!(status.success(), "the final clean stop failed: {status}");
    let (actions, lines) = check_ledger(&journal, &ledger_dir, u64::MAX);
    eprintln!(
        "{RUNS} kills ({early} right after the start) in {:.1?}: {checks} checks after recovery; \
         finally {actions} applied actions with {lines} ledger lines, each exactly once",
        started.elapsed()
    );
    assert!(actions > 20, "too few actions were exercised: {actions}");
    assert_eq!(
        snapshot_files(&cg.dirs, FILES),
        original,
        "every file back to its original"
    );
    drop(children);
}
