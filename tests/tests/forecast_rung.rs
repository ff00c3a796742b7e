//! The forecast rung's safety rules and rollback on real cgroups (issue 16, item 3):
//! the policy, the enforcer and billing of the agent (`Mitigation`) meet scores whose
//! alarm comes from a forecast alone. Oracles: the cgroup files (written, then back to
//! what they were), the journal (`trigger: forecast`), the ledger (`x_Trigger`) and the
//! metrics textfile (`interference_forecast_outcomes_total`).
//!
//! Embedded defaults (`PolicyConfig::default()`, `BillingConfig::default()` but for the
//! ledger's directory); the forecast's horizon is 2 s so that a forecast can miss
//! within the test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interference::agent::{Mitigation, ScoreRound};
use interference::billing::{ledger, Billing, BillingConfig};
use interference::enforce::{Enforcer, EnforcerOptions};
use interference::export::prometheus::TextWriter;
use interference::inventory::{Mounts, Vm};
use interference::policy::{Change, Policy, PolicyConfig, Rung, Trigger};
use interference::predict::{ContentionScore, ForecastPart};
use interference_tests::{require_root, snapshot_files, vm_for, TestCgroup};

const FILES: &[&str] = &["cpu.weight", "cpu.shares", "cpuset.cpus"];
const HORIZON_MS: u64 = 2_000;

fn round(now: f32, forecast: f32, realised: f32) -> ScoreRound {
    let score = now.max(forecast);
    ScoreRound {
        timestamp_ms: 0,
        contention: vec![ContentionScore {
            vm: "batch".into(),
            neighbor: "web".into(),
            score,
            victim: "web".into(),
            aggressor: "batch".into(),
            unobservable: Vec::new(),
            forecast: Some(ForecastPart {
                now,
                forecast,
                horizon_ms: HORIZON_MS,
                realised,
                now_direction: None,
            }),
        }],
        directed: Vec::new(),
        shadow: Vec::new(),
        nowcast: Vec::new(),
        unobservable: Vec::new(),
        warming_up: Vec::new(),
        forecasts: Vec::new(),
        duration: Duration::ZERO,
    }
}

fn mitigation(journal: &Path, ledger_dir: &Path) -> Mitigation {
    let enforcer = Enforcer::open(
        EnforcerOptions {
            journal: journal.to_path_buf(),
            owes_ledger: true,
            ..EnforcerOptions::default()
        },
        Mounts::read(Path::new("/proc")).expect("mounts"),
    )
    .expect("journal");
    let billing = Billing::open(
        BillingConfig {
            ledger_dir: ledger_dir.to_path_buf(),
            ..BillingConfig::default()
        },
        "forecast-host",
        false,
    )
    .expect("ledger");
    Mitigation::new(
        Policy::new(PolicyConfig::default(), "forecast-host-1").expect("policy"),
        enforcer,
        vec![0, 1],
    )
    .with_billing(billing)
    .with_forecast_outcomes()
}

fn metrics(m: &Mitigation) -> String {
    let mut w = TextWriter::new();
    m.render_into(&mut w);
    w.finish()
}

fn dirs(cgs: &[&TestCgroup]) -> Vec<PathBuf> {
    cgs.iter().flat_map(|c| c.dirs.clone()).collect()
}

#[test]
#[ignore = "needs root/QEMU"]
fn a_forecast_alarm_weights_only_and_rolls_back_when_it_misses() {
    require_root("a_forecast_alarm_weights_only_and_rolls_back_when_it_misses");
    let web = TestCgroup::new("fc-web").expect("cgroup web");
    let batch = TestCgroup::new("fc-batch").expect("cgroup batch");
    let vms: Vec<Vm> = [&web, &batch]
        .iter()
        .map(|cg| {
            let mut vm = vm_for(cg, &[]);
            vm.name = cg.name.trim_start_matches("fc-").to_owned();
            vm
        })
        .collect();
    let all = dirs(&[&web, &batch]);
    let before = snapshot_files(&all, FILES);
    let dir = tempfile::tempdir().expect("tempdir");
    let (journal, ledger_dir) = (dir.path().join("journal.jsonl"), dir.path().join("ledger"));
    let mut m = mitigation(&journal, &ledger_dir);

    // Measured 5, forecast 90: the cpu.weight rung, marked as the forecast's.
    let report = m
        .tick(&vms, &[], Some(&round(5.0, 90.0, 5.0)))
        .expect("a scoring round decides");
    let decided = Instant::now();
    let rungs: Vec<(Rung, Trigger)> = report
        .actions
        .iter()
        .map(|(a, _)| (a.rung, a.trigger))
        .collect();
    assert_eq!(
        rungs,
        vec![(Rung::Weight, Trigger::Forecast); 2],
        "{:?}",
        report
    );
    let weights: Vec<&str> = report.actions.iter().map(|(a, _)| a.id.as_str()).collect();
    let mitigated = snapshot_files(&all, FILES);
    assert_ne!(mitigated, before, "the weight rung wrote no cgroup file");
    let cpusets = |s: &[(PathBuf, String)]| -> Vec<(PathBuf, String)> {
        s.iter()
            .filter(|(p, _)| p.ends_with("cpuset.cpus"))
            .cloned()
            .collect()
    };
    let journal_text = std::fs::read_to_string(&journal).expect("journal");
    assert!(
        journal_text.contains("\"trigger\":\"forecast\""),
        "{journal_text}"
    );

    // The forecast holds, the ladder would climb: no pin while nothing is measured.
    while decided.elapsed() < Duration::from_millis(HORIZON_MS - 500) {
        std::thread::sleep(Duration::from_millis(250));
        let r = m
            .tick(&vms, &[], Some(&round(5.0, 90.0, 5.0)))
            .expect("round");
        assert!(r.actions.is_empty(), "{:?}", r.actions);
        assert_eq!(cpusets(&snapshot_files(&all, FILES)), cpusets(&before));
    }

    // Past the horizon without the contention: rolled back, counted, files restored.
    std::thread::sleep(Duration::from_millis(HORIZON_MS + 200).saturating_sub(decided.elapsed()));
    let r = m
        .tick(&vms, &[], Some(&round(5.0, 90.0, 5.0)))
        .expect("round");
    let undone: Vec<&str> = r
        .actions
        .iter()
        .filter_map(|(a, _)| match &a.change {
            Change::Rollback { action_id } => Some(action_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(undone.len(), 2, "{:?}", r.actions);
    assert!(weights.iter().all(|w| undone.contains(w)));
    assert!(
        r.actions[0]
            .0
            .reason
            .contains("did not come true within 2s"),
        "{}",
        r.actions[0].0.reason
    );
    assert_eq!(
        snapshot_files(&all, FILES),
        before,
        "rollback left a change"
    );
    let text = metrics(&m);
    assert!(
        text.contains("interference_forecast_outcomes_total{result=\"missed\"} 1"),
        "{text}"
    );

    // Muted for one horizon: the same forecast changes nothing.
    let r = m
        .tick(&vms, &[], Some(&round(5.0, 90.0, 5.0)))
        .expect("round");
    assert!(r.actions.is_empty(), "{:?}", r.actions);
    assert_eq!(snapshot_files(&all, FILES), before);

    // The ledger bills the forecast's weights to their end, every line saying why.
    m.restore_all();
    let contents = ledger::read(&ledger_dir, None).expect("ledger");
    let lines: Vec<_> = contents
        .records
        .iter()
        .filter(|r| {
            r.action_id
                .as_deref()
                .is_some_and(|id| weights.contains(&id))
        })
        .collect();
    assert!(!lines.is_empty(), "no ledger line for {weights:?}");
    assert!(
        lines.iter().all(|r| r.trigger == Some(Trigger::Forecast)),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|r| r.last_segment),
        "not billed to the end"
    );
}
