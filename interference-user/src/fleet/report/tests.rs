use std::collections::BTreeMap;

use interference_fleet::wire::{Capacity, Item, Phase};

use super::*;
use crate::features::extract::testutil::sample;
use crate::policy::{Rung, Trigger};

fn action(id: &str, vm: &str, change: Change) -> Action {
    Action {
        payer: Default::default(),
        not_donors: Vec::new(),
        id: id.into(),
        decided_ms: 1,
        rung: Rung::Weight,
        change,
        vm: vm.into(),
        protects: "web".into(),
        victim: "web".into(),
        aggressor: vm.into(),
        score: 80.0,
        vm_is_aggressor: true,
        unobservable: Vec::new(),
        cause: None,
        customers: [(vm.to_owned(), "batch-co".to_owned())].into(),
        vcpus: None,
        simulated: false,
        reason: "test".into(),
        trigger: Trigger::Now,
    }
}

fn applied(id: &str, at_ms: u64) -> Outcome {
    Outcome {
        action_id: id.into(),
        result: ActionResult::Applied,
        at_ms,
        effects: Vec::new(),
        error: None,
    }
}

fn pair(score: f32) -> ContentionScore {
    ContentionScore {
        vm: "web".into(),
        neighbor: "batch".into(),
        score,
        victim: "web".into(),
        aggressor: "batch".into(),
        unobservable: Vec::new(),
        forecast: None,
    }
}

/// One tick at `ts` (ms) with a 1 s sample of both VMs.
fn tick(
    r: &mut Reporter,
    ts: u64,
    pairs: &[ContentionScore],
    actions: &[(Action, Outcome)],
) -> Vec<Item> {
    let samples = [
        sample("web", ts, &[("batch", 3, 0.2)]),
        sample("batch", ts, &[]),
    ];
    r.tick(&ReportInput {
        now_ms: ts,
        samples: &samples,
        pairs,
        off_threshold: Some(25.0),
        actions,
        capacity: Capacity::default(),
        model_sha: None,
        shadow: None,
        forecast_errors: None,
    })
}

#[test]
fn rollups_sum_each_window_and_runs_never_share_an_id() {
    let mut r = Reporter::new(10_000);
    let mut out = Vec::new();
    // A run that starts inside a window (at 3 s) and goes on past the next one.
    for s in 4..=25u64 {
        out.extend(tick(&mut r, s * 1000, &[], &[]));
    }
    out.extend(r.flush());
    let rollups: Vec<&Rollup> = out
        .iter()
        .filter_map(|i| match i {
            Item::Rollup(r) => Some(r),
            _ => None,
        })
        .filter(|r| r.vm == "web")
        .collect();
    let spans: Vec<(u64, u64)> = rollups
        .iter()
        .map(|r| (r.window_start_ms, r.window_ms))
        .collect();
    // Ticks ending at 4..=10 s, 11..=20 s, 21..=25 s.
    assert_eq!(spans, [(3_000, 7_000), (10_000, 10_000), (20_000, 5_000)]);
    let w = rollups[1];
    assert!((w.cpu_usage_cores - 0.5).abs() < 1e-9, "{w:?}");
    assert!((w.run_queue_wait_ms - 10.0).abs() < 1e-9, "{w:?}");
    assert!((w.preempted_ms - 200.0).abs() < 1e-9, "{w:?}");
    assert_eq!(w.io_ops, 10 * 10);
    assert_eq!(w.io_bytes, 10 * 12_288);
    assert_eq!(w.memory_mib, 1024);
    let ids: std::collections::BTreeSet<String> = out.iter().filter_map(Item::id).collect();
    assert_eq!(ids.len(), out.len(), "an id repeats");
}

#[test]
fn hot_pairs_are_reported_once_a_minute_at_their_highest_and_quiet_ones_never() {
    let mut r = Reporter::new(300_000);
    let mut out = Vec::new();
    out.extend(tick(&mut r, 60_000 * 10 + 1_000, &[pair(30.0)], &[]));
    out.extend(tick(&mut r, 60_000 * 10 + 2_000, &[pair(55.0)], &[]));
    out.extend(tick(&mut r, 60_000 * 10 + 3_000, &[pair(40.0)], &[]));
    out.extend(tick(&mut r, 60_000 * 10 + 4_000, &[pair(10.0)], &[]));
    let scores = |out: &[Item]| -> Vec<(u64, f32)> {
        out.iter()
            .filter_map(|i| match i {
                Item::Score(e) => Some((e.at_ms, e.score)),
                _ => None,
            })
            .collect()
    };
    assert!(scores(&out).is_empty(), "reported before the minute ended");
    out.extend(tick(&mut r, 60_000 * 11 + 1_000, &[pair(12.0)], &[]));
    assert_eq!(scores(&out), [(60_000 * 10 + 2_000, 55.0)]);
    out.extend(r.flush());
    assert_eq!(scores(&out).len(), 1, "a quiet minute reports nothing");
    let web = out
        .iter()
        .find_map(|i| match i {
            Item::Rollup(r) if r.vm == "web" => Some(r),
            _ => None,
        })
        .expect("rollup");
    assert_eq!(web.max_score, 55.0);
}

#[test]
fn actions_give_phases_and_an_outcome_a_minute_later() {
    let mut r = Reporter::new(300_000);
    let a = action("h-1-3-0", "batch", Change::CpuWeight { weight: 20 });
    let mut out = tick(&mut r, 1_000, &[], &[(a.clone(), applied(&a.id, 1_100))]);
    let mut dry = a.clone();
    dry.id = "h-1-3-1".into();
    let dry_outcome = Outcome {
        result: ActionResult::Simulated,
        ..applied(&dry.id, 1_100)
    };
    out.extend(tick(&mut r, 2_000, &[], &[(dry, dry_outcome)]));
    for s in 3..=61u64 {
        out.extend(tick(&mut r, s * 1000, &[], &[]));
    }
    let rb = action(
        "h-1-62-0",
        "batch",
        Change::Rollback {
            action_id: a.id.clone(),
        },
    );
    out.extend(tick(
        &mut r,
        62_000,
        &[],
        &[(rb.clone(), applied(&rb.id, 62_100))],
    ));
    let phases: Vec<&ActionPhase> = out
        .iter()
        .filter_map(|i| match i {
            Item::ActionPhase(p) => Some(p),
            _ => None,
        })
        .collect();
    let got: Vec<(&str, Phase, u64)> = phases
        .iter()
        .map(|p| (p.id.as_str(), p.phase, p.at_ms))
        .collect();
    assert_eq!(
        got,
        [
            ("h-1-3-0/done", Phase::Done, 1_100),
            ("h-1-3-0/outcome", Phase::Outcome, 62_000),
            ("h-1-3-0/rollback", Phase::Rollback, 62_100),
        ]
    );
    assert_eq!(phases[0].customer.as_deref(), Some("batch-co"));
    assert_eq!(phases[0].rung.as_deref(), Some("cpu_weight"));
    assert_eq!(phases[2].action_id, "h-1-3-0");
    assert_eq!(phases[2].rung, None);
    // web waits 10 ms per second in every sample.
    let wait = phases[1].victim_wait_after_ms.expect("measured");
    assert!((wait - 10.0).abs() < 1e-9, "{wait}");
    let capacity = out
        .iter()
        .filter(|i| matches!(i, Item::Capacity(_)))
        .count();
    assert_eq!(capacity, 2, "one capacity sample a minute");
}

#[test]
fn a_journal_gives_its_phases_again_and_a_restore_its_rollbacks() {
    let a = action("h-1-3-0", "batch", Change::CpuWeight { weight: 20 });
    let b = action(
        "h-1-4-0",
        "batch",
        Change::Cpuset {
            cpus: "1".parse().unwrap(),
        },
    );
    let history = vec![
        (a.clone(), applied(&a.id, 1_100)),
        (b.clone(), applied(&b.id, 2_100)),
    ];
    let restored = vec![
        applied("restore:h-1-4-0", 9_000),
        Outcome {
            result: ActionResult::Failed,
            ..applied("restore:h-1-3-0", 9_000)
        },
    ];
    let got: Vec<(String, String, Option<String>)> = journal_phases(&history, &restored)
        .into_iter()
        .map(|i| match i {
            Item::ActionPhase(p) => (p.id, p.action_id, p.customer),
            other => panic!("not a phase: {other:?}"),
        })
        .collect();
    let co = Some("batch-co".to_owned());
    assert_eq!(
        got,
        [
            ("h-1-3-0/done".into(), "h-1-3-0".into(), co.clone()),
            ("h-1-4-0/done".into(), "h-1-4-0".into(), co.clone()),
            ("h-1-4-0/rollback".into(), "h-1-4-0".into(), co),
        ],
        "a failed restore is no rollback"
    );
}

#[test]
fn shadow_scores_travel_apart_from_the_acting_models() {
    let mut r = Reporter::new(300_000);
    let samples = [sample("web", 1_000, &[]), sample("batch", 1_000, &[])];
    let live = [pair(30.0)];
    let shadow = [pair(70.0)];
    let mut out = r.tick(&ReportInput {
        now_ms: 1_000,
        samples: &samples,
        pairs: &live,
        off_threshold: Some(25.0),
        actions: &[],
        capacity: Capacity::default(),
        model_sha: Some("acting"),
        shadow: Some(("candidate", &shadow)),
        forecast_errors: None,
    });
    out.extend(r.flush());
    let mut events: Vec<(Option<String>, bool, f32)> = out
        .iter()
        .filter_map(|i| match i {
            Item::Score(e) => Some((e.model_sha.clone(), e.shadow, e.score)),
            _ => None,
        })
        .collect();
    events.sort_by_key(|a| a.1);
    assert_eq!(
        events,
        [
            (Some("acting".into()), false, 30.0),
            (Some("candidate".into()), true, 70.0)
        ]
    );
    let rollup = out
        .iter()
        .find_map(|i| match i {
            Item::Rollup(r) => Some(r),
            _ => None,
        })
        .expect("rollup");
    assert_eq!(rollup.model_sha.as_deref(), Some("acting"));
    assert_eq!(
        rollup.max_score, 30.0,
        "the shadow's scores are not the VM's"
    );
}

#[test]
fn rollups_average_the_forecast_errors_of_their_window_once_per_round() {
    let mut r = Reporter::new(10_000);
    let samples = |ts| [sample("web", ts, &[])];
    let errors: BTreeMap<String, f64> = [("web".to_owned(), 4.0)].into();
    let later: BTreeMap<String, f64> = [("web".to_owned(), 8.0)].into();
    let mut out = Vec::new();
    for (ts, errs) in [
        (1_000, Some((1, &errors))),
        (2_000, Some((1, &errors))),
        (3_000, Some((2, &later))),
        (4_000, None),
    ] {
        let s = samples(ts);
        out.extend(r.tick(&ReportInput {
            now_ms: ts,
            samples: &s,
            pairs: &[],
            off_threshold: None,
            actions: &[],
            capacity: Capacity::default(),
            model_sha: None,
            shadow: None,
            forecast_errors: errs,
        }));
    }
    out.extend(r.flush());
    let e = out
        .iter()
        .find_map(|i| match i {
            Item::Rollup(r) => Some(r.forecast_abs_error),
            _ => None,
        })
        .expect("rollup");
    assert_eq!(e, Some(6.0), "round 1 counted once, then round 2");
}
