//! The engine's rules, tick by tick: a small simulated host feeds scores to
//! [`Policy::decide`] and answers every action with an outcome, as the agent would.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::inventory::Priority;
use crate::predict::{ContentionScore, DirectedScore};
use interference_core::cpu_list::CpuList;

const TICK_MS: u64 = 5_000;
const MIB: u64 = 1 << 20;

struct Sim {
    policy: Policy,
    vms: Vec<VmInput>,
    host_cpus: Vec<u32>,
    tick: u64,
    now_ms: u64,
    outcomes: Vec<Outcome>,
    /// How the enforcement stage answers the next decision's actions.
    result: ActionResult,
    directed: Vec<DirectedScore>,
    /// Customers the fleet's per-tenant cap blocks.
    blocked: Vec<String>,
    /// Customers at their monthly charge cap.
    capped: Vec<String>,
    /// `[billing] payer`.
    payer: interference_core::billing::Payer,
    /// `[billing.payer_tiers]`.
    payer_tiers: std::collections::BTreeMap<String, interference_core::billing::Payer>,
    /// Where migration targets come from.
    placement: Placement,
}

/// A VM that gets the CPU it wants: its demand is its usage. A test that expects a
/// rollback after quiet ticks calms the aggressor down too ([`Sim::calm`]): a low score
/// alone no longer rolls a mitigation back while the aggressor is as busy as when it
/// started (`quiet_demand_ratio`).
fn vm(name: &str, cores: f64) -> VmInput {
    VmInput {
        name: name.into(),
        cpu_cores: cores,
        cpu_demand_cores: cores,
        cpu_weight: Some(100),
        cpuset: Some(vec![0, 1, 2, 3]),
        memory_bytes: Some(4096 * MIB),
        memory_floor_bytes: None,
        has_qmp: true,
        vcpus: None,
        ..VmInput::default()
    }
}

/// A policy without cooldown (so the ladder's own timing shows) unless a test sets one.
/// The engine's logic at fixed thresholds (40 on, 25 off; the scores below are
/// written for them), whatever the defaults are.
fn config() -> PolicyConfig {
    PolicyConfig {
        cooldown: Duration::ZERO,
        on_threshold: 40.0,
        off_threshold: 25.0,
        ..PolicyConfig::default()
    }
}

impl Sim {
    fn new(config: PolicyConfig, vms: Vec<VmInput>) -> Self {
        Self {
            policy: Policy::new(config, "h").expect("valid config"),
            vms,
            host_cpus: vec![0, 1, 2, 3],
            tick: 1,
            now_ms: 1_000_000,
            outcomes: Vec::new(),
            result: ActionResult::Applied,
            directed: Vec::new(),
            blocked: Vec::new(),
            capped: Vec::new(),
            payer: Default::default(),
            payer_tiers: Default::default(),
            placement: Placement::Static,
        }
    }

    fn two() -> Self {
        Self::new(config(), vec![vm("web", 0.5), vm("batch", 1.5)])
    }

    /// One tick with these (victim, aggressor, score) pairs.
    fn step(&mut self, scores: &[(&str, &str, f32)]) -> Decision {
        self.step_scores(scores.iter().map(|&(v, a, s)| cs(v, a, s)).collect())
    }

    fn hot(&mut self, score: f32) -> Decision {
        self.step(&[("web", "batch", score)])
    }

    /// `name`'s workload winds down: its usage and demand drop to a tenth of a core.
    fn calm(&mut self, name: &str) {
        let v = self
            .vms
            .iter_mut()
            .find(|v| v.name == name)
            .expect("a VM of the sim");
        v.cpu_cores = 0.1;
        v.cpu_demand_cores = 0.1;
    }
}

fn cs(victim: &str, aggressor: &str, score: f32) -> ContentionScore {
    let (vm, neighbor) = if victim < aggressor {
        (victim, aggressor)
    } else {
        (aggressor, victim)
    };
    ContentionScore {
        vm: vm.into(),
        neighbor: neighbor.into(),
        score,
        victim: victim.into(),
        aggressor: aggressor.into(),
        ..ContentionScore::default()
    }
}

/// (vm, change) of each action.
fn changes(d: &Decision) -> Vec<(String, Change)> {
    d.actions
        .iter()
        .map(|a| (a.vm.clone(), a.change.clone()))
        .collect()
}

fn rungs(d: &Decision) -> Vec<Rung> {
    d.actions.iter().map(|a| a.rung).collect()
}

fn skipped_with(d: &Decision, text: &str) -> bool {
    d.skipped.iter().any(|(_, why)| why.contains(text))
}

#[test]
fn first_tick_above_boosts_the_victim_and_cuts_the_aggressor() {
    let mut sim = Sim::two();
    let d = sim.hot(63.2);
    assert_eq!(
        changes(&d),
        vec![
            ("web".into(), Change::CpuWeight { weight: 1000 }),
            ("batch".into(), Change::CpuWeight { weight: 10 }),
        ]
    );
    let ids: Vec<&str> = d.actions.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, vec!["h-1-0", "h-1-1"]);
    let cut = &d.actions[1];
    assert_eq!(
        cut.reason,
        "score 63 >= 40, batch demands 1.50 cores: web (victim) slowed by batch; cut batch cpu.weight 100 -> 10"
    );
    assert_eq!(cut.protects, "web");
    assert!(cut.vm_is_aggressor);
    assert!(!d.actions[0].vm_is_aggressor);
    assert!(d.actions.iter().all(|a| !a.simulated && a.score == 63.2));
    assert_eq!(
        (cut.victim.as_str(), cut.aggressor.as_str()),
        ("web", "batch")
    );
    assert!(d.skipped.is_empty(), "{:?}", d.skipped);
}

#[test]
fn a_tenant_over_the_fleet_cap_gets_no_new_action_but_its_rollbacks_run() {
    let mut sim = Sim::two();
    sim.vms[1].customer = Some("batch-co".into());
    sim.blocked = vec!["batch-co".into()];
    let d = sim.hot(63.2);
    assert!(d.actions.is_empty(), "{:?}", changes(&d));
    assert!(
        skipped_with(&d, "tenant cap: batch-co, the customer of batch"),
        "{:?}",
        d.skipped
    );
    // Acted on before the cap was reached: the rollback still comes.
    sim.blocked.clear();
    assert_eq!(sim.hot(63.2).actions.len(), 2);
    sim.blocked = vec!["batch-co".into()];
    sim.calm("batch");
    let mut rolled_back = 0;
    for _ in 0..20 {
        rolled_back += sim
            .hot(5.0)
            .actions
            .iter()
            .filter(|a| matches!(a.change, Change::Rollback { .. }))
            .count();
    }
    assert_eq!(rolled_back, 2);
}

#[test]
fn a_customer_at_its_charge_cap_is_not_protected_by_a_charged_mitigation() {
    let mut sim = Sim::two();
    sim.vms[0].customer = Some("web-co".into());
    sim.capped = vec!["web-co".into()];
    let d = sim.hot(63.2);
    assert!(d.actions.is_empty(), "{:?}", changes(&d));
    assert!(
        skipped_with(&d, "charge cap: web-co, the customer of web"),
        "{:?}",
        d.skipped
    );
    sim.capped.clear();
    assert_eq!(
        sim.hot(63.2).actions.len(),
        2,
        "protected again once uncapped"
    );
}

#[test]
fn under_the_reduced_pays_rule_the_cap_holds_back_the_reduced_vms_customer() {
    let mut sim = Sim::two();
    sim.vms[0].customer = Some("web-co".into());
    sim.vms[1].customer = Some("batch-co".into());
    sim.payer = interference_core::billing::Payer::Reduced;
    sim.capped = vec!["web-co".into()];
    assert_eq!(
        sim.hot(63.2).actions.len(),
        2,
        "web-co would not pay: protected"
    );
    let mut sim = Sim::two();
    sim.vms[0].customer = Some("web-co".into());
    sim.vms[1].customer = Some("batch-co".into());
    sim.payer = interference_core::billing::Payer::Reduced;
    sim.capped = vec!["batch-co".into()];
    let d = sim.hot(63.2);
    assert!(d.actions.is_empty(), "{:?}", changes(&d));
    assert!(
        skipped_with(&d, "charge cap: batch-co, the customer of batch"),
        "{:?}",
        d.skipped
    );
}

#[test]
fn each_action_carries_the_billing_rule_of_its_protected_vms_tier() {
    use interference_core::billing::Payer;
    let mut sim = Sim::two();
    sim.vms[0].sla_tier = Some("bronze".into());
    sim.payer = Payer::Protected;
    sim.payer_tiers = [("bronze".to_owned(), Payer::Reduced)]
        .into_iter()
        .collect();
    let d = sim.hot(63.2);
    assert!(!d.actions.is_empty());
    assert!(
        d.actions.iter().all(|a| a.payer == Payer::Reduced),
        "web is bronze"
    );
    let mut sim = Sim::two();
    sim.payer = Payer::Reduced;
    sim.payer_tiers = [("gold".to_owned(), Payer::Protected)]
        .into_iter()
        .collect();
    sim.vms[0].sla_tier = Some("gold".into());
    assert!(
        sim.hot(63.2)
            .actions
            .iter()
            .all(|a| a.payer == Payer::Protected),
        "gold keeps the default rule"
    );
}

/// batch is the victim of web; `web` is a priority VM as `set` makes it.
fn priority_aggressor(set: impl Fn(&mut VmInput), batch_no_donor: bool) -> Decision {
    let mut web = vm("web", 2.0);
    set(&mut web);
    let mut batch = vm("batch", 0.5);
    batch.no_donor = batch_no_donor;
    let mut sim = Sim::new(config(), vec![web, batch]);
    sim.step(&[("batch", "web", 55.0)])
}

#[test]
fn a_priority_request_makes_a_priority_vm_until_it_ends() {
    let d = priority_aggressor(|web| web.priority_until_ms = Some(4_102_444_800_000), false);
    assert_eq!(
        changes(&d),
        vec![
            ("web".into(), Change::CpuWeight { weight: 1000 }),
            ("batch".into(), Change::CpuWeight { weight: 10 }),
        ]
    );
    assert!(
        d.actions[1]
            .reason
            .contains("priority request until 2100-01-01"),
        "{}",
        d.actions[1].reason
    );
    // Without the request, the victim is protected and the aggressor web reduced.
    let d = priority_aggressor(|_| {}, false);
    assert_eq!(d.actions[0].protects, "batch");
}

#[test]
fn a_mitigation_owed_to_a_priority_request_ends_with_it() {
    let mut web = vm("web", 2.0);
    web.priority_until_ms = Some(1_000_000 + 3 * TICK_MS);
    let mut sim = Sim::new(config(), vec![web, vm("batch", 0.5)]);
    let d = sim.step(&[("batch", "web", 55.0)]);
    assert_eq!(d.actions[0].protects, "web", "protected by its request");
    let mut rolled_back = Vec::new();
    let mut after = Vec::new();
    for i in 0..6 {
        if i == 3 {
            // The agent stops naming the request once it has ended.
            sim.vms[0].priority_until_ms = None;
        }
        let d = sim.step(&[("batch", "web", 55.0)]);
        for a in d.actions {
            if matches!(a.change, Change::Rollback { .. }) {
                rolled_back.push(a);
            } else if i >= 3 {
                after.push(a);
            }
        }
    }
    // Two rungs (weight, pin) of two halves each: all undone when the request ends.
    assert_eq!(rolled_back.len(), 4);
    assert!(
        rolled_back.iter().all(|a| a
            .reason
            .contains("the priority request that protected web ended")),
        "{:?}",
        rolled_back.iter().map(|a| &a.reason).collect::<Vec<_>>()
    );
    assert!(
        !after.is_empty() && after.iter().all(|a| a.protects == "batch"),
        "then the victim is protected: {:?}",
        after
            .iter()
            .map(|a| (&a.vm, &a.protects))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_vm_opted_out_of_donating_is_not_reduced_unless_it_is_the_aggressor() {
    let d = priority_aggressor(|web| web.priority = Priority::High, true);
    // Only the priority VM's own boost: the opted-out victim keeps its weight.
    assert_eq!(
        changes(&d),
        vec![("web".into(), Change::CpuWeight { weight: 1000 })]
    );
    let boost = &d.actions[0];
    assert_eq!(boost.not_donors, vec!["batch".to_owned()]);
    assert!(
        boost.reason.contains("batch opted out of being a donor"),
        "{}",
        boost.reason
    );
    // As the aggressor it is reduced all the same.
    let mut sim = Sim::two();
    sim.vms[1].no_donor = true;
    let d = sim.hot(63.2);
    assert!(
        changes(&d).contains(&("batch".into(), Change::CpuWeight { weight: 10 })),
        "{:?}",
        changes(&d)
    );
}

#[test]
fn below_the_on_threshold_nothing_happens() {
    let mut sim = Sim::two();
    for s in [39.9, 30.0, 0.0] {
        assert!(sim.hot(s).actions.is_empty());
    }
    assert!(sim.policy.state().pairs.is_empty());
}

#[test]
fn escalation_climbs_one_rung_every_escalate_after_ticks() {
    let mut sim = Sim::two();
    let mut by_tick = Vec::new();
    for _ in 0..8 {
        by_tick.push(rungs(&sim.hot(70.0)));
    }
    assert_eq!(
        by_tick,
        vec![
            vec![Rung::Weight, Rung::Weight],
            vec![],
            vec![Rung::Pin, Rung::Pin],
            vec![],
            vec![Rung::Balloon],
            vec![],
            vec![],
            vec![],
        ]
    );
    let pair = &sim.policy.state().pairs["batch/web"];
    assert_eq!(pair.last_escalation_tick, Some(5));
    assert!(pair.rungs.iter().all(|r| r.complete));
}

#[test]
fn escalation_needs_consecutive_ticks_above_on() {
    let mut sim = Sim::two();
    assert_eq!(sim.hot(70.0).actions.len(), 2);
    assert!(sim.hot(70.0).actions.is_empty());
    // Between off and on: the pair stays active but the count starts over.
    assert!(sim.hot(30.0).actions.is_empty());
    assert!(sim.hot(70.0).actions.is_empty());
    assert_eq!(rungs(&sim.hot(70.0)), vec![Rung::Pin, Rung::Pin]);
}

#[test]
fn escalation_messages_name_the_previous_rung() {
    let mut sim = Sim::two();
    sim.hot(70.0);
    sim.hot(70.0);
    let d = sim.hot(70.0);
    assert_eq!(
        d.actions[0].reason,
        "score 70 >= 40 for 2 ticks after weight: web (victim) slowed by batch; pin web to CPUs 2-3 (was 0-3)"
    );
    assert_eq!(
        d.actions[1].change,
        Change::Cpuset {
            cpus: CpuList::new([0, 1])
        }
    );
}

#[test]
fn hysteresis_does_not_flap_around_either_threshold() {
    let mut sim = Sim::two();
    let mut total = 0;
    // Around on: active from the first 41, never rolled back, never re-applied.
    for i in 0..20 {
        total += sim.hot(if i % 2 == 0 { 41.0 } else { 39.0 }).actions.len();
    }
    assert_eq!(total, 2);
    // Around off: dips below 25 never last K = 6 ticks.
    for i in 0..20 {
        let d = sim.hot(if i % 2 == 0 { 24.0 } else { 26.0 });
        assert!(d.actions.is_empty(), "tick {i}: {:?}", d.actions);
    }
    assert!(sim.policy.state().pairs.contains_key("batch/web"));
}

#[test]
fn rollback_after_k_quiet_ticks_most_recent_first() {
    let mut sim = Sim::two();
    let mut applied = Vec::new();
    for _ in 0..3 {
        applied.extend(sim.hot(70.0).actions.into_iter().map(|a| a.id));
    }
    assert_eq!(applied, vec!["h-1-0", "h-1-1", "h-3-0", "h-3-1"]);
    // The aggressor winds down (a low score alone would not do: see `vm`).
    sim.calm("batch");
    for i in 0..5 {
        assert!(sim.hot(10.0).actions.is_empty(), "quiet tick {i}");
    }
    let d = sim.hot(10.0);
    let undone: Vec<String> = d
        .actions
        .iter()
        .map(|a| match &a.change {
            Change::Rollback { action_id } => action_id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(undone, vec!["h-3-1", "h-3-0", "h-1-1", "h-1-0"]);
    assert_eq!(
        d.actions[0].reason,
        "score 10 < 25 for 6 ticks and batch demands 0.10 cores (peak 1.50 while mitigated): roll back h-3-1 (pin batch to CPUs 0-1 (was 0-3))"
    );
    assert_eq!(d.actions[0].vm, "batch");
    assert!(d.actions[0].vm_is_aggressor);
    assert_eq!(d.actions[0].rung, Rung::Pin);
    // Once the rollbacks are applied nothing is left.
    sim.hot(10.0);
    let s = sim.policy.state();
    assert!(s.pairs.is_empty());
    assert!(s.vms.values().all(|v| v.holdings.is_empty()));
}

#[test]
fn rollbacks_share_the_cap_and_wait_for_the_next_tick() {
    let mut sim = Sim::new(
        PolicyConfig {
            max_actions_per_tick: 2,
            rollback_after_quiet_ticks: 1,
            ..config()
        },
        vec![vm("web", 0.5), vm("batch", 1.5)],
    );
    for _ in 0..3 {
        sim.hot(70.0);
    }
    sim.calm("batch");
    let first = sim.hot(0.0);
    assert_eq!(first.actions.len(), 2);
    assert!(
        skipped_with(&first, "cap: rollback of h-1-1 waits"),
        "{:?}",
        first.skipped
    );
    let second = sim.hot(0.0);
    let undone: Vec<_> = second.actions.iter().map(|a| a.change.clone()).collect();
    assert_eq!(
        undone,
        vec![
            Change::Rollback {
                action_id: "h-1-1".into()
            },
            Change::Rollback {
                action_id: "h-1-0".into()
            },
        ]
    );
}

#[test]
fn pair_without_a_score_counts_as_quiet() {
    let mut sim = Sim::new(
        PolicyConfig {
            rollback_after_quiet_ticks: 2,
            ..config()
        },
        vec![vm("web", 0.5), vm("batch", 1.5)],
    );
    sim.hot(70.0);
    sim.calm("batch");
    assert!(sim.step(&[]).actions.is_empty());
    let d = sim.step(&[]);
    assert_eq!(d.actions.len(), 2);
    assert!(
        d.actions[0]
            .reason
            .starts_with("no score for 2 ticks and batch demands 0.10 cores"),
        "{}",
        d.actions[0].reason
    );
}

#[test]
fn cooldown_holds_back_the_next_rung() {
    let mut sim = Sim::new(
        PolicyConfig {
            cooldown: Duration::from_secs(30),
            ..PolicyConfig::default()
        },
        vec![vm("web", 0.5), vm("batch", 1.5)],
    );
    let mut acted = Vec::new();
    for tick in 1..=8 {
        let d = sim.hot(70.0);
        if !d.actions.is_empty() {
            acted.push((tick, rungs(&d)[0]));
        }
        if (3..=6).contains(&tick) {
            assert!(
                skipped_with(&d, "cooldown: web changed"),
                "tick {tick}: {:?}",
                d.skipped
            );
        }
    }
    // Weight at tick 1 (t = 0), pin as soon as 30 s have passed (tick 7).
    assert_eq!(acted, vec![(1, Rung::Weight), (7, Rung::Pin)]);
}

#[test]
fn rollback_ignores_the_cooldown_but_restarts_it() {
    let mut sim = Sim::new(
        PolicyConfig {
            cooldown: Duration::from_secs(30),
            rollback_after_quiet_ticks: 1,
            ..PolicyConfig::default()
        },
        vec![vm("web", 0.5), vm("batch", 1.5)],
    );
    sim.hot(70.0);
    sim.calm("batch");
    let d = sim.hot(0.0);
    assert_eq!(d.actions.len(), 2, "{:?}", d.skipped);
    // Hot again right away: the rollback restarted the cooldown.
    let d = sim.hot(70.0);
    assert!(d.actions.is_empty());
    assert!(skipped_with(&d, "cooldown"), "{:?}", d.skipped);
}

#[test]
fn cap_goes_to_the_highest_scores() {
    let names = ["a1", "a2", "b1", "b2", "c1", "c2"];
    let mut sim = Sim::new(config(), names.iter().map(|n| vm(n, 1.0)).collect());
    let d = sim.step(&[("a1", "a2", 50.0), ("b1", "b2", 90.0), ("c1", "c2", 70.0)]);
    let vms: Vec<&str> = d.actions.iter().map(|a| a.vm.as_str()).collect();
    assert_eq!(vms, vec!["b1", "b2", "c1", "c2"]);
    assert_eq!(d.skipped.len(), 1);
    assert_eq!(d.skipped[0].0, "a1/a2");
    assert!(d.skipped[0].1.starts_with("cap:"), "{:?}", d.skipped);
    // The skipped pair goes first once the others hold.
    let d = sim.step(&[("a1", "a2", 50.0), ("b1", "b2", 90.0), ("c1", "c2", 70.0)]);
    let vms: Vec<&str> = d.actions.iter().map(|a| a.vm.as_str()).collect();
    assert_eq!(vms, vec!["a1", "a2"]);
}

#[test]
fn cap_fills_with_a_smaller_rung_but_never_splits_one() {
    let names = ["a1", "a2", "b1", "b2"];
    let mut sim = Sim::new(
        PolicyConfig {
            max_actions_per_tick: 3,
            ..config()
        },
        names.iter().map(|n| vm(n, 1.0)).collect(),
    );
    let d = sim.step(&[("a1", "a2", 90.0), ("b1", "b2", 80.0)]);
    assert_eq!(d.actions.len(), 2);
    assert!(
        skipped_with(&d, "cap: weight needs 2 actions, 1 left of 3"),
        "{:?}",
        d.skipped
    );
}

#[test]
fn a_vm_in_two_hot_pairs_is_changed_by_the_higher_one_only() {
    let mut sim = Sim::new(
        config(),
        vec![vm("web", 0.5), vm("batch", 1.5), vm("db", 1.0)],
    );
    let d = sim.step(&[("web", "batch", 80.0), ("web", "db", 60.0)]);
    assert_eq!(
        changes(&d),
        vec![
            ("web".into(), Change::CpuWeight { weight: 1000 }),
            ("batch".into(), Change::CpuWeight { weight: 10 }),
        ]
    );
    assert!(
        d.skipped
            .iter()
            .any(|(p, why)| p == "db/web" && why.contains("conflict: web was already changed")),
        "{:?}",
        d.skipped
    );
    // Next tick the lower pair shares web's boost and cuts db only.
    let d = sim.step(&[("web", "batch", 80.0), ("web", "db", 60.0)]);
    assert_eq!(
        changes(&d),
        vec![("db".into(), Change::CpuWeight { weight: 10 })]
    );
    let s = sim.policy.state();
    let boost = &s.vms["web"].holdings[&Rung::Weight];
    assert_eq!(boost.holders.len(), 2);
    // No VM is the target of two actions in one tick, ever.
    for _ in 0..10 {
        let d = sim.step(&[("web", "batch", 80.0), ("web", "db", 60.0)]);
        let mut seen = HashSet::new();
        for a in &d.actions {
            assert!(seen.insert(a.vm.clone()), "{:?}", d.actions);
        }
    }
}

#[test]
fn a_shared_change_is_rolled_back_only_when_its_last_pair_calms_down() {
    let mut sim = Sim::new(
        PolicyConfig {
            rollback_after_quiet_ticks: 1,
            rungs: vec![Rung::Weight],
            ..config()
        },
        vec![vm("web", 0.5), vm("batch", 1.5), vm("db", 1.0)],
    );
    sim.step(&[("web", "batch", 80.0), ("web", "db", 60.0)]);
    sim.step(&[("web", "batch", 80.0), ("web", "db", 60.0)]);
    // batch calms down: its cut goes, web's boost stays for db's pair.
    sim.calm("batch");
    let d = sim.step(&[("web", "batch", 0.0), ("web", "db", 60.0)]);
    assert_eq!(
        changes(&d),
        vec![(
            "batch".into(),
            Change::Rollback {
                action_id: "h-1-1".into()
            }
        )]
    );
    sim.calm("db");
    let d = sim.step(&[("web", "batch", 0.0), ("web", "db", 0.0)]);
    assert_eq!(
        changes(&d),
        vec![
            (
                "db".into(),
                Change::Rollback {
                    action_id: "h-2-0".into()
                }
            ),
            (
                "web".into(),
                Change::Rollback {
                    action_id: "h-1-0".into()
                }
            ),
        ]
    );
}

#[test]
fn dry_run_marks_everything_simulated_and_still_climbs() {
    let mut sim = Sim::new(
        PolicyConfig {
            dry_run: true,
            rollback_after_quiet_ticks: 1,
            ..config()
        },
        vec![vm("web", 0.5), vm("batch", 1.5)],
    );
    sim.result = ActionResult::Simulated;
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(sim.hot(70.0).actions);
    }
    sim.calm("batch");
    all.extend(sim.hot(0.0).actions);
    assert_eq!(all.len(), 8);
    assert!(all.iter().all(|a| a.simulated));
    assert_eq!(all[2].rung, Rung::Pin);
    assert!(matches!(all[7].change, Change::Rollback { .. }));
}

#[test]
fn priority_vm_is_protected_even_as_the_aggressor() {
    let mut web = vm("web", 2.0);
    web.priority = Priority::High;
    let mut sim = Sim::new(config(), vec![web, vm("batch", 0.5)]);
    sim.directed = vec![
        DirectedScore {
            victim: "batch".into(),
            aggressor: "web".into(),
            slowdown: 55.0,
            ..DirectedScore::default()
        },
        DirectedScore {
            victim: "web".into(),
            aggressor: "batch".into(),
            slowdown: 18.0,
            ..DirectedScore::default()
        },
    ];
    // batch is the victim, web the aggressor.
    let d = sim.step(&[("batch", "web", 55.0)]);
    assert_eq!(
        changes(&d),
        vec![
            ("web".into(), Change::CpuWeight { weight: 1000 }),
            ("batch".into(), Change::CpuWeight { weight: 10 }),
        ]
    );
    let cut = &d.actions[1];
    assert_eq!(cut.protects, "web");
    assert!(
        !cut.vm_is_aggressor,
        "batch is the victim: the good-neighbour credit applies"
    );
    assert!(cut.reason.contains("priority high"), "{}", cut.reason);
    assert!(
        cut.reason.contains("predicted slowdown from batch is 18"),
        "{}",
        cut.reason
    );
}

#[test]
fn sla_tier_makes_a_priority_vm_and_picks_the_thresholds() {
    let mut c = config();
    c.tiers.insert(
        "gold".into(),
        TierThresholds {
            on_threshold: Some(30.0),
            off_threshold: Some(10.0),
        },
    );
    let mut web = vm("web", 0.5);
    web.sla_tier = Some("gold".into());
    let mut sim = Sim::new(c, vec![web, vm("batch", 1.5), vm("x", 1.0), vm("y", 1.0)]);
    // 35 is above gold's 30 (web is protected), below the default 40 (x/y).
    let d = sim.step(&[("web", "batch", 35.0), ("x", "y", 35.0)]);
    let vms: Vec<&str> = d.actions.iter().map(|a| a.vm.as_str()).collect();
    assert_eq!(vms, vec!["web", "batch"]);
    assert!(
        d.actions[0].reason.contains("SLA tier gold"),
        "{}",
        d.actions[0].reason
    );
}

#[test]
fn pair_thresholds_beat_the_tier() {
    let mut c = config();
    c.tiers.insert(
        "gold".into(),
        TierThresholds {
            on_threshold: Some(30.0),
            off_threshold: Some(10.0),
        },
    );
    c.pairs.push(PairThresholds {
        vms: vec!["web".into(), "batch".into()],
        on_threshold: Some(60.0),
        off_threshold: None,
    });
    let mut web = vm("web", 0.5);
    web.sla_tier = Some("gold".into());
    let mut sim = Sim::new(c, vec![web, vm("batch", 1.5)]);
    assert!(sim.hot(50.0).actions.is_empty());
    assert_eq!(sim.hot(60.0).actions.len(), 2);
}

#[test]
fn heavier_victim_still_reduces_the_aggressor_and_says_why() {
    let mut sim = Sim::new(config(), vec![vm("web", 1.8), vm("batch", 0.4)]);
    let d = sim.hot(50.0);
    assert_eq!(d.actions[1].vm, "batch");
    assert!(d.actions[1].vm_is_aggressor);
    assert!(
        d.actions[1]
            .reason
            .contains("web uses more CPU (1.80 vs 0.40 cores) but is the one slowed"),
        "{}",
        d.actions[1].reason
    );
}

#[test]
fn failed_outcome_is_not_counted_as_escalated() {
    let mut sim = Sim::two();
    sim.result = ActionResult::Failed;
    assert_eq!(sim.hot(70.0).actions.len(), 2);
    sim.result = ActionResult::Applied;
    // The failure is reported; the weight rung is tried again, not the pin rung.
    let d = sim.hot(70.0);
    assert!(
        skipped_with(&d, "action h-1-0 (boost web cpu.weight 100 -> 1000) failed"),
        "{:?}",
        d.skipped
    );
    assert_eq!(rungs(&d), vec![Rung::Weight, Rung::Weight]);
    assert!(
        d.actions[0].reason.contains("retrying weight"),
        "{}",
        d.actions[0].reason
    );
    // Pin comes escalate_after_ticks after the retry took effect, not after the failure.
    assert!(sim.hot(70.0).actions.is_empty());
    assert_eq!(rungs(&sim.hot(70.0)), vec![Rung::Pin, Rung::Pin]);
}

#[test]
fn half_failed_rung_retries_only_the_failed_half() {
    let mut sim = Sim::two();
    let d = sim.hot(70.0);
    // The boost applied, the cut failed.
    sim.outcomes = vec![
        d.outcomes_as(ActionResult::Applied, 0).remove(0),
        d.outcomes_as(ActionResult::Failed, 0).remove(1),
    ];
    let d = sim.hot(70.0);
    assert_eq!(
        changes(&d),
        vec![("batch".into(), Change::CpuWeight { weight: 10 })]
    );
    sim.hot(70.0);
    assert_eq!(rungs(&sim.hot(70.0)), vec![Rung::Pin, Rung::Pin]);
}

#[test]
fn failed_attempt_waits_for_the_cooldown_before_retrying() {
    let mut sim = Sim::new(
        PolicyConfig {
            cooldown: Duration::from_secs(30),
            ..PolicyConfig::default()
        },
        vec![vm("web", 0.5), vm("batch", 1.5)],
    );
    sim.result = ActionResult::Failed;
    sim.hot(70.0);
    sim.result = ActionResult::Applied;
    let retried: Vec<usize> = (2..=8)
        .filter(|_| !sim.hot(70.0).actions.is_empty())
        .collect();
    assert_eq!(retried.len(), 1);
}

#[test]
fn missing_outcomes_count_as_failed() {
    let mut sim = Sim::two();
    sim.hot(70.0);
    sim.outcomes.clear();
    let d = sim.hot(70.0);
    assert!(skipped_with(&d, "got no outcome"), "{:?}", d.skipped);
    assert_eq!(rungs(&d), vec![Rung::Weight, Rung::Weight]);
}

#[test]
fn single_cpu_host_passes_over_pin() {
    let mut sim = Sim::two();
    sim.host_cpus = vec![0];
    sim.hot(70.0);
    sim.hot(70.0);
    let d = sim.hot(70.0);
    assert_eq!(
        changes(&d),
        vec![(
            "batch".into(),
            Change::Balloon {
                target_bytes: 3072 * MIB
            }
        )]
    );
    assert!(
        skipped_with(
            &d,
            "pin: the host has 1 CPU; there is nothing to split; passed over"
        ),
        "{:?}",
        d.skipped
    );
    // Reported once, not every tick.
    assert!(!skipped_with(&sim.hot(70.0), "pin"));
}

#[test]
fn balloon_respects_the_floor() {
    let mut batch = vm("batch", 1.5);
    batch.memory_bytes = Some(600 * MIB);
    let mut sim = Sim::new(
        PolicyConfig {
            rungs: vec![Rung::Weight, Rung::Balloon],
            ..config()
        },
        vec![vm("web", 0.5), batch],
    );
    sim.hot(70.0);
    sim.hot(70.0);
    let d = sim.hot(70.0);
    assert_eq!(
        changes(&d),
        vec![(
            "batch".into(),
            Change::Balloon {
                target_bytes: 512 * MIB
            }
        )]
    );
    assert!(d.actions[0]
        .reason
        .ends_with("balloon batch 600 MiB -> 512 MiB (floor 512 MiB)"));

    // Already at the floor: nothing to balloon, the rung is passed over.
    let mut batch = vm("batch", 1.5);
    batch.memory_bytes = Some(512 * MIB);
    let mut sim = Sim::new(
        PolicyConfig {
            rungs: vec![Rung::Weight, Rung::Balloon],
            ..config()
        },
        vec![vm("web", 0.5), batch],
    );
    sim.hot(70.0);
    sim.hot(70.0);
    let d = sim.hot(70.0);
    assert!(d.actions.is_empty());
    assert!(
        skipped_with(&d, "at or below its floor of 512 MiB"),
        "{:?}",
        d.skipped
    );
}

/// Enables migration to these (uri, free vCPUs, free MiB) targets, in this order.
fn migrate_to(c: &mut PolicyConfig, targets: &[(&str, u32, u64)]) {
    c.migration.enabled = true;
    c.migration.targets = targets
        .iter()
        .map(|&(uri, vcpus, mib)| MigrationTarget {
            name: None,
            uri: uri.into(),
            free_vcpus: Some(vcpus),
            free_memory_mib: Some(mib),
        })
        .collect();
}

/// A VM of 2 vCPUs and 4096 MiB.
fn sized(name: &str, cores: f64) -> VmInput {
    VmInput {
        vcpus: Some(2),
        ..vm(name, cores)
    }
}

/// Two hot pairs, web <- batch and db <- batch2 (both 2 vCPUs, 4096 MiB), climbing
/// from weight straight to migrate.
fn two_pairs_migrating(targets: &[(&str, u32, u64)]) -> Sim {
    let mut c = config();
    c.rungs = vec![Rung::Weight];
    migrate_to(&mut c, targets);
    Sim::new(
        c,
        vec![
            vm("web", 0.5),
            sized("batch", 1.5),
            vm("db", 0.5),
            sized("batch2", 1.5),
        ],
    )
}

fn both_hot(sim: &mut Sim) -> Decision {
    sim.step(&[("web", "batch", 80.0), ("db", "batch2", 70.0)])
}

#[test]
fn migrations_use_up_a_targets_room_and_go_on_to_the_next() {
    // a has room for one 2-vCPU VM, b for several.
    let mut sim = two_pairs_migrating(&[("tcp:a:1", 3, 16384), ("tcp:b:1", 8, 16384)]);
    both_hot(&mut sim);
    both_hot(&mut sim);
    let d = both_hot(&mut sim);
    let uri = |u: &str| Change::Migrate {
        uri: u.into(),
        vcpus: Some(2),
        memory_mib: Some(4096),
    };
    // The higher score goes first and takes a; the other pair finds 1 vCPU left there.
    assert_eq!(
        changes(&d),
        vec![
            ("batch".into(), uri("tcp:a:1")),
            ("batch2".into(), uri("tcp:b:1"))
        ]
    );
    assert!(
        d.actions[0].reason.ends_with(
            "migrate batch (2 vCPUs, 4096 MiB) to tcp:a:1, leaving 1 vCPU, 12288 MiB free there"
        ),
        "{}",
        d.actions[0].reason
    );
    // Applied: the room stays taken.
    both_hot(&mut sim);
    let state = sim.policy.state();
    assert_eq!(state.migrated_to("tcp:a:1"), (2, 4096));
    assert_eq!(state.migrated_to("tcp:b:1"), (2, 4096));
    // And survives persistence.
    let text = serde_json::to_string(state).expect("serialise");
    let back: PolicyState = serde_json::from_str(&text).expect("parse");
    assert_eq!(back.migrated, state.migrated);
}

#[test]
fn with_placement_on_the_controller_places_every_migration_and_static_room_stays_free() {
    // The static target has room for one VM only: with placement it is not used.
    let mut sim = two_pairs_migrating(&[("tcp:a:1", 2, 4096)]);
    sim.placement = Placement::Controller;
    both_hot(&mut sim);
    both_hot(&mut sim);
    let d = both_hot(&mut sim);
    let placed = Change::Migrate {
        uri: CONTROLLER_PLACEMENT.into(),
        vcpus: Some(2),
        memory_mib: Some(4096),
    };
    assert_eq!(
        changes(&d),
        vec![("batch".into(), placed.clone()), ("batch2".into(), placed)]
    );
    assert!(
        d.actions[0]
            .reason
            .ends_with("migrate batch (2 vCPUs, 4096 MiB) to the host the controller places it on"),
        "{}",
        d.actions[0].reason
    );
    both_hot(&mut sim);
    assert_eq!(sim.policy.state().migrated_to("tcp:a:1"), (0, 0));
}

#[test]
fn a_refused_placement_falls_back_to_the_static_targets_next_round() {
    let mut sim = two_pairs_migrating(&[("tcp:a:1", 8, 16384)]);
    sim.placement = Placement::Controller;
    sim.step(&[("web", "batch", 80.0)]);
    sim.step(&[("web", "batch", 80.0)]);
    sim.result = ActionResult::Failed;
    let d = sim.step(&[("web", "batch", 80.0)]);
    assert!(
        matches!(&changes(&d)[..], [(_, Change::Migrate { uri, .. })] if uri == CONTROLLER_PLACEMENT),
        "{:?}",
        d.actions
    );
    // The agent pauses placement after a refusal; the rung is tried again.
    sim.result = ActionResult::Applied;
    sim.placement = Placement::ControllerPaused;
    let d = sim.step(&[("web", "batch", 80.0)]);
    assert!(
        matches!(&changes(&d)[..], [(_, Change::Migrate { uri, .. })] if uri == "tcp:a:1"),
        "{:?}",
        d.actions
    );
}

#[test]
fn while_placement_is_paused_a_full_static_target_makes_the_rung_wait_not_pass_over() {
    let mut sim = two_pairs_migrating(&[("tcp:a:1", 0, 0)]);
    sim.placement = Placement::ControllerPaused;
    sim.step(&[("web", "batch", 80.0)]);
    sim.step(&[("web", "batch", 80.0)]);
    let d = sim.step(&[("web", "batch", 80.0)]);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(
        skipped_with(
            &d,
            "the controller is asked again once its refusal is a minute old"
        ),
        "{:?}",
        d.skipped
    );
    // The fleet's migrations at their cap: the rung waits too, static target or not.
    sim.placement = Placement::Busy;
    let d = sim.step(&[("web", "batch", 80.0)]);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(
        skipped_with(&d, "the fleet's concurrent migrations are at their cap"),
        "{:?}",
        d.skipped
    );
    // The pause over, the same pair is placed.
    sim.placement = Placement::Controller;
    let d = sim.step(&[("web", "batch", 80.0)]);
    assert!(
        matches!(&changes(&d)[..], [(_, Change::Migrate { uri, .. })] if uri == CONTROLLER_PLACEMENT),
        "{:?} {:?}",
        d.actions,
        d.skipped
    );
}

#[test]
fn no_target_with_room_passes_migrate_over_and_says_what_is_free() {
    let mut sim = two_pairs_migrating(&[("tcp:a:1", 2, 4096)]);
    both_hot(&mut sim);
    both_hot(&mut sim);
    let d = both_hot(&mut sim);
    assert_eq!(changes(&d).len(), 1, "{:?}", d.actions);
    assert!(
        skipped_with(
            &d,
            "migrate: no target has room for batch2 (2 vCPUs, 4096 MiB): tcp:a:1 has 0 vCPUs, 0 MiB free; passed over"
        ),
        "{:?}",
        d.skipped
    );
}

#[test]
fn a_failed_migration_gives_the_room_back() {
    // Room for one VM only: the retry fits only if the failure returned it.
    let mut c = config();
    c.rungs = vec![Rung::Weight];
    migrate_to(&mut c, &[("tcp:a:1", 2, 4096)]);
    let mut sim = Sim::new(c, vec![vm("web", 0.5), sized("batch", 1.5)]);
    sim.hot(70.0);
    sim.hot(70.0);
    sim.result = ActionResult::Failed;
    let d = sim.hot(70.0);
    assert_eq!(rungs(&d), vec![Rung::Migrate]);
    assert_eq!(sim.policy.state().migrated_to("tcp:a:1"), (2, 4096));
    sim.result = ActionResult::Applied;
    let d = sim.hot(70.0);
    assert!(skipped_with(&d, "failed"), "{:?}", d.skipped);
    assert_eq!(rungs(&d), vec![Rung::Migrate], "{:?}", d.skipped);
    let state = sim.policy.state();
    assert_eq!(state.migrated.len(), 1, "{:?}", state.migrated);
    assert_eq!(state.migrated[0].action_id, d.actions[0].id);
    // Applied this time: the room stays taken.
    let d = sim.hot(70.0);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(sim.policy.state().migrated_to("tcp:a:1"), (2, 4096));
}

#[test]
fn no_qmp_socket_passes_over_balloon_to_migrate() {
    let mut c = config();
    c.rungs = vec![Rung::Weight, Rung::Balloon];
    migrate_to(&mut c, &[("tcp:10.0.0.7:4444", 8, 16384)]);
    let mut sim = Sim::new(c, vec![vm("web", 0.5), sized("batch", 1.5)]);
    sim.vms[1].has_qmp = false;
    sim.hot(70.0);
    sim.hot(70.0);
    let d = sim.hot(70.0);
    assert!(d.actions.is_empty());
    assert!(skipped_with(&d, "balloon: batch has no QMP socket"));
    assert!(skipped_with(&d, "migrate: batch has no QMP socket"));
    sim.vms[1].has_qmp = true;
    assert!(
        sim.hot(70.0).actions.is_empty(),
        "passed-over rungs stay passed"
    );
}

#[test]
fn migration_is_the_last_rung_and_is_not_rolled_back() {
    let mut c = config();
    c.rungs = vec![Rung::Weight];
    c.rollback_after_quiet_ticks = 1;
    migrate_to(&mut c, &[("tcp:10.0.0.7:4444", 8, 16384)]);
    let mut sim = Sim::new(c, vec![vm("web", 0.5), sized("batch", 1.5)]);
    sim.hot(70.0);
    sim.hot(70.0);
    let d = sim.hot(70.0);
    assert_eq!(
        changes(&d),
        vec![(
            "batch".into(),
            Change::Migrate {
                uri: "tcp:10.0.0.7:4444".into(),
                vcpus: Some(2),
                memory_mib: Some(4096)
            }
        )]
    );
    // Quiet for K = 1 tick (this one also takes the migration's outcome; batch is
    // still on the host until the migration completes, idle as far as it shows).
    sim.calm("batch");
    let d = sim.hot(0.0);
    let undone: Vec<_> = d.actions.iter().map(|a| a.change.clone()).collect();
    assert_eq!(
        undone,
        vec![
            Change::Rollback {
                action_id: "h-1-1".into()
            },
            Change::Rollback {
                action_id: "h-1-0".into()
            },
        ],
        "only the weight rung: {:?}",
        d.actions
    );
    // The rollbacks' outcomes leave nothing in force; the migration was dropped.
    sim.hot(0.0);
    assert!(sim
        .policy
        .state()
        .vms
        .values()
        .all(|v| v.holdings.is_empty()));
}

#[test]
fn a_vm_that_left_is_forgotten_and_its_partner_restored() {
    let mut sim = Sim::new(
        PolicyConfig {
            rollback_after_quiet_ticks: 1,
            ..config()
        },
        vec![vm("web", 0.5), vm("batch", 1.5)],
    );
    sim.hot(70.0);
    sim.vms.retain(|v| v.name != "batch");
    let d = sim.step(&[]);
    assert!(skipped_with(&d, "batch is gone"), "{:?}", d.skipped);
    assert_eq!(
        changes(&d),
        vec![(
            "web".into(),
            Change::Rollback {
                action_id: "h-1-0".into()
            }
        )]
    );
}

#[test]
fn scores_for_unknown_vms_are_reported() {
    let mut sim = Sim::two();
    let d = sim.step(&[("web", "ghost", 90.0)]);
    assert!(d.actions.is_empty());
    assert!(skipped_with(&d, "not in this tick's inventory"));
}

#[test]
fn invalid_config_is_refused_with_field_paths() {
    let e = Policy::new(
        PolicyConfig {
            off_threshold: 50.0,
            ..PolicyConfig::default()
        },
        "h",
    )
    .expect_err("off above on");
    assert_eq!(e.problems[0].0, "policy.off_threshold");
    assert!(
        e.to_string()
            .contains("policy.off_threshold: 50 must be below on_threshold (20)"),
        "{e}"
    );
}

#[test]
fn operator_pinned_vm_is_not_repinned() {
    let mut sim = Sim::two();
    sim.vms[1].cpuset = Some(vec![3]);
    sim.hot(70.0);
    sim.hot(70.0);
    let d = sim.hot(70.0);
    assert_eq!(rungs(&d), vec![Rung::Balloon]);
    assert!(
        skipped_with(&d, "batch is restricted to CPUs 3 by someone else"),
        "{:?}",
        d.skipped
    );
}

/// 64 VMs, every one of the 2016 pairs hot: the cap holds, no VM is changed twice in a
/// tick, and every action id is unique across ticks.
#[test]
fn all_pairs_hot_at_scale() {
    let names: Vec<String> = (0..64).map(|i| format!("vm-{i:02}")).collect();
    let mut sim = Sim::new(config(), names.iter().map(|n| vm(n, 1.0)).collect());
    let mut scores = Vec::new();
    for i in 0..64 {
        for j in i + 1..64 {
            scores.push((
                names[i].as_str(),
                names[j].as_str(),
                40.0 + ((i * 7 + j * 13) % 60) as f32,
            ));
        }
    }
    assert_eq!(scores.len(), 2016);
    let mut ids = HashSet::new();
    for _ in 0..20 {
        let d = sim.step(&scores);
        assert!(d.actions.len() <= 4);
        let mut seen = HashSet::new();
        for a in &d.actions {
            assert!(seen.insert(a.vm.clone()), "{:?}", d.actions);
            assert!(ids.insert(a.id.clone()), "duplicate id {}", a.id);
        }
    }
}

#[test]
fn a_tick_that_goes_back_never_reuses_action_ids() {
    let mut sim = Sim::two();
    sim.tick = 7;
    assert_eq!(sim.hot(70.0).actions[0].id, "h-7-0");
    // The agent restarted with its state but counts ticks from 1 again.
    sim.tick = 1;
    let d = sim.hot(70.0);
    assert!(
        skipped_with(
            &d,
            "tick 1 is not after the last decided tick 7; deciding as tick 8"
        ),
        "{:?}",
        d.skipped
    );
    let d = sim.hot(70.0);
    assert_eq!(rungs(&d), vec![Rung::Pin, Rung::Pin]);
    assert_eq!(d.actions[0].id, "h-9-0");
}

#[test]
fn failed_rollback_is_retried_next_tick() {
    let mut sim = Sim::new(
        PolicyConfig {
            rollback_after_quiet_ticks: 1,
            rungs: vec![Rung::Weight],
            ..config()
        },
        vec![vm("web", 0.5), vm("batch", 1.5)],
    );
    sim.hot(70.0);
    sim.calm("batch");
    sim.result = ActionResult::Failed;
    assert_eq!(sim.hot(0.0).actions.len(), 2);
    sim.result = ActionResult::Applied;
    let d = sim.hot(0.0);
    assert!(skipped_with(&d, "failed"), "{:?}", d.skipped);
    let undone: Vec<_> = d.actions.iter().map(|a| a.change.clone()).collect();
    assert_eq!(
        undone,
        vec![
            Change::Rollback {
                action_id: "h-1-1".into()
            },
            Change::Rollback {
                action_id: "h-1-0".into()
            },
        ]
    );
    assert!(
        d.actions[0]
            .reason
            .starts_with("mitigation of batch/web has ended"),
        "{}",
        d.actions[0].reason
    );
    sim.hot(0.0);
    assert!(sim
        .policy
        .state()
        .vms
        .values()
        .all(|v| v.holdings.is_empty()));
}

/// The oscillation seen on a 2-core host with the pin rung: the pin works, the score
/// falls below off while the aggressor is as busy as ever, and rolling the pin back
/// after K quiet ticks only brought the contention back. The rollback now waits for the
/// aggressor's demand to fall, and then takes exactly K quiet ticks.
fn pinned_pair(demand: f64) -> Sim {
    let mut batch = vm("batch", 1.0);
    batch.cpu_demand_cores = demand;
    let mut sim = Sim::new(
        PolicyConfig {
            rungs: vec![Rung::Pin],
            ..config()
        },
        vec![vm("web", 0.5), batch],
    );
    sim.host_cpus = vec![0, 1];
    for v in &mut sim.vms {
        v.cpuset = Some(vec![0, 1]);
    }
    let d = sim.hot(70.0);
    assert_eq!(rungs(&d), vec![Rung::Pin, Rung::Pin]);
    sim
}

/// Sets batch's usage and demand for the next ticks.
fn batch_uses(sim: &mut Sim, usage: f64, demand: f64) {
    let batch = sim
        .vms
        .iter_mut()
        .find(|v| v.name == "batch")
        .expect("batch");
    batch.cpu_cores = usage;
    batch.cpu_demand_cores = demand;
}

fn rollbacks(d: &Decision) -> Vec<&str> {
    d.actions
        .iter()
        .filter_map(|a| match &a.change {
            Change::Rollback { action_id } => Some(action_id.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_working_pin_is_not_rolled_back_while_the_aggressor_still_wants_the_cpu() {
    let mut sim = pinned_pair(1.0);
    let k = sim.policy.config().rollback_after_quiet_ticks;
    assert_eq!(
        sim.policy.state().pairs["batch/web"].cause,
        Some(Cause {
            vm: "batch".into(),
            demand_cores: 1.0
        })
    );
    // Pinned: batch runs alone on its CPU (usage down a little, it no longer waits for
    // web), the score falls below off and stays there. The old policy rolled back after
    // K ticks; now nothing happens, and the hold is reported once.
    batch_uses(&mut sim, 0.9, 0.98);
    let mut waits = Vec::new();
    for i in 0..5 * k {
        let d = sim.hot(10.0);
        assert!(d.actions.is_empty(), "quiet tick {i}: {:?}", d.actions);
        waits.extend(d.skipped);
    }
    assert_eq!(
        waits,
        vec![(
            "batch/web".to_owned(),
            "rollback of batch/web waits: score 10 < 25, but batch still demands 0.98 cores (peak 1.00 while mitigated; quiet ticks count from 0.50 down)".to_owned()
        )]
    );
    // Demand above the ratio still holds; the report does not repeat.
    batch_uses(&mut sim, 0.55, 0.55);
    let d = sim.hot(10.0);
    assert!(d.actions.is_empty() && d.skipped.is_empty(), "{d:?}");

    // The aggressor winds down: K quiet ticks from here, not one less, not one more.
    batch_uses(&mut sim, 0.1, 0.1);
    for i in 1..k {
        assert!(sim.hot(10.0).actions.is_empty(), "quiet tick {i}");
    }
    assert_eq!(sim.policy.state().pairs["batch/web"].ticks_quiet, k - 1);
    let d = sim.hot(10.0);
    assert_eq!(rollbacks(&d), vec!["h-1-1", "h-1-0"]);
    assert_eq!(
        d.actions[0].reason,
        "score 10 < 25 for 6 ticks and batch demands 0.10 cores (peak 1.00 while mitigated): roll back h-1-1 (pin batch to CPUs 0 (was 0-1))"
    );
}

#[test]
fn a_busy_aggressor_again_restarts_the_quiet_count_and_the_report() {
    let mut sim = pinned_pair(1.0);
    let k = sim.policy.config().rollback_after_quiet_ticks;
    batch_uses(&mut sim, 0.1, 0.1);
    for _ in 1..k {
        assert!(sim.hot(10.0).actions.is_empty());
    }
    // One tick short of the rollback batch is busy again: held, reported again.
    batch_uses(&mut sim, 0.9, 1.0);
    let d = sim.hot(10.0);
    assert!(d.actions.is_empty());
    assert!(
        skipped_with(&d, "batch still demands 1.00 cores"),
        "{:?}",
        d.skipped
    );
    // Above off ends the hold; below off again with a busy aggressor reports again.
    assert!(sim.hot(30.0).skipped.is_empty());
    assert!(skipped_with(&sim.hot(10.0), "rollback of batch/web waits"));
    // The count starts over once batch calms down: K more ticks. Exactly half the
    // recorded demand is calm enough.
    batch_uses(&mut sim, 0.5, 0.5);
    for i in 1..k {
        assert!(sim.hot(10.0).actions.is_empty(), "quiet tick {i}");
    }
    assert_eq!(rollbacks(&sim.hot(10.0)).len(), 2);
}

#[test]
fn unknown_demand_falls_back_to_the_score_alone() {
    // No demand measured when the pair was mitigated: nothing recorded, the pin goes
    // after K ticks below off whatever batch does afterwards (the old behaviour).
    let mut sim = pinned_pair(0.0);
    let k = sim.policy.config().rollback_after_quiet_ticks;
    assert_eq!(sim.policy.state().pairs["batch/web"].cause, None);
    assert!(sim
        .policy
        .state()
        .pending
        .iter()
        .all(|p| !p.action.reason.contains("demands")));
    batch_uses(&mut sim, 1.0, 1.0);
    for i in 1..k {
        let d = sim.hot(10.0);
        assert!(
            d.actions.is_empty() && d.skipped.is_empty(),
            "quiet tick {i}: {d:?}"
        );
    }
    let d = sim.hot(10.0);
    assert_eq!(rollbacks(&d), vec!["h-1-1", "h-1-0"]);
    assert!(
        d.actions[0]
            .reason
            .starts_with("score 10 < 25 for 6 ticks: "),
        "{}",
        d.actions[0].reason
    );

    // Recorded, but not measured this tick (a missed sample): the tick counts as quiet.
    let mut sim = pinned_pair(1.0);
    batch_uses(&mut sim, 0.0, 0.0);
    for _ in 1..k {
        assert!(sim.hot(10.0).actions.is_empty());
    }
    assert_eq!(rollbacks(&sim.hot(10.0)).len(), 2);
}

#[test]
fn a_pair_with_nothing_in_force_is_not_held() {
    let mut sim = Sim::two();
    let k = sim.policy.config().rollback_after_quiet_ticks;
    sim.result = ActionResult::Failed;
    assert_eq!(sim.hot(70.0).actions.len(), 2);
    // The weight rung failed; batch stays busy, the score falls: nothing waits, and
    // the pair is forgotten after K quiet ticks, as before.
    for i in 1..=k {
        let d = sim.hot(10.0);
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert!(!skipped_with(&d, "waits"), "tick {i}: {:?}", d.skipped);
    }
    assert!(sim.policy.state().pairs.is_empty());
}

#[test]
fn an_aggressor_that_left_releases_the_hold() {
    let mut sim = pinned_pair(1.0);
    let k = sim.policy.config().rollback_after_quiet_ticks;
    assert!(skipped_with(&sim.hot(10.0), "waits"));
    // batch leaves still busy: its pin is forgotten, web's goes after K quiet ticks.
    sim.vms.retain(|v| v.name != "batch");
    let d = sim.step(&[]);
    assert!(skipped_with(&d, "batch is gone"), "{:?}", d.skipped);
    for _ in 2..k {
        assert!(sim.step(&[]).actions.is_empty());
    }
    let d = sim.step(&[]);
    assert_eq!(rollbacks(&d), vec!["h-1-0"]);
    assert!(
        d.actions[0]
            .reason
            .starts_with("no score for 6 ticks and batch is gone: roll back h-1-0"),
        "{}",
        d.actions[0].reason
    );
}

#[test]
fn quiet_demand_ratio_must_be_a_fraction() {
    for bad in [0.0, 1.0, 1.5, -0.5, f64::NAN] {
        let e = Policy::new(
            PolicyConfig {
                quiet_demand_ratio: bad,
                ..PolicyConfig::default()
            },
            "h",
        )
        .expect_err("not a fraction");
        assert_eq!(e.problems.len(), 1, "{bad}: {e}");
        assert_eq!(e.problems[0].0, "policy.quiet_demand_ratio");
        assert!(
            e.to_string().contains(&format!(
                "policy.quiet_demand_ratio: {bad} is not a fraction between 0 and 1 (0.5 rolls a mitigation back once the aggressor's CPU demand has halved)"
            )),
            "{e}"
        );
    }
    let c: PolicyConfig = toml::from_str("quiet_demand_ratio = 0.3").expect("parses");
    assert_eq!(c.quiet_demand_ratio, 0.3);
    assert!(Policy::new(c, "h").is_ok());
    assert_eq!(PolicyConfig::default().quiet_demand_ratio, 0.5);
}

/// The first rung can be decided on the aggressor's first busy tick, its demand only
/// partly measured: the rollback is measured against the peak demand while mitigated,
/// so a VM that settles at a third of a core is not held forever because its first
/// reading was a fifth.
#[test]
fn the_rollback_measures_against_the_peak_demand_while_mitigated() {
    let mut sim = pinned_pair(0.2);
    let k = sim.policy.config().rollback_after_quiet_ticks;
    // Then batch is busy at full demand: the reference rises to it.
    batch_uses(&mut sim, 1.0, 1.0);
    assert!(sim.hot(10.0).actions.is_empty());
    assert_eq!(
        sim.policy.state().pairs["batch/web"]
            .cause
            .as_ref()
            .map(|c| c.demand_cores),
        Some(1.0)
    );
    // More than half the peak: held.
    batch_uses(&mut sim, 0.6, 0.6);
    for _ in 0..2 * k {
        assert!(sim.hot(10.0).actions.is_empty());
    }
    // A third of a core: calm against the peak (it would not be against 0.2).
    batch_uses(&mut sim, 0.3, 0.3);
    let mut rolled = Vec::new();
    for _ in 0..k {
        let d = sim.hot(10.0);
        rolled.extend(rollbacks(&d).into_iter().map(str::to_owned));
    }
    assert_eq!(rolled, vec!["h-1-1", "h-1-0"]);
}

/// A customer's SLA tier comes from `[policy.customer_tiers]`; an empty tier name is
/// refused with its field path.
#[test]
fn customer_tiers_name_each_customers_tier() {
    let c: PolicyConfig =
        toml::from_str("[customer_tiers]\nacme = \"gold\"\nglobex = \"\"\n").expect("parses");
    assert_eq!(c.tier_of(Some("acme")), Some("gold"));
    assert_eq!(c.tier_of(Some("initech")), None);
    assert_eq!(c.tier_of(None), None);
    assert!(c.is_priority(crate::inventory::Priority::Normal, c.tier_of(Some("acme"))));
    let problems = c.check();
    assert!(
        problems
            .iter()
            .any(|(f, m)| f == "policy.customer_tiers.globex" && m.contains("must not be empty")),
        "{problems:?}"
    );
}

/// A pair's score with forecasting on: the measured part, the forecast (30 s ahead,
/// six ticks) and the realised score; the pair's score is the larger of the first two.
fn fcs(victim: &str, aggressor: &str, now: f32, forecast: f32, realised: f32) -> ContentionScore {
    ContentionScore {
        score: now.max(forecast),
        forecast: Some(crate::predict::ForecastPart {
            now,
            forecast,
            horizon_ms: 30_000,
            realised,
            now_direction: None,
        }),
        ..cs(victim, aggressor, now.max(forecast))
    }
}

impl Sim {
    fn step_scores(&mut self, scores: Vec<ContentionScore>) -> Decision {
        let input = PolicyInput {
            tick: self.tick,
            now_ms: self.now_ms,
            host_cpus: &self.host_cpus,
            vms: &self.vms,
            scores: &scores,
            directed: &self.directed,
            outcomes: &self.outcomes,
            hold_new: None,
            blocked_customers: &self.blocked,
            capped_customers: &self.capped,
            payer: self.payer,
            payer_tiers: &self.payer_tiers,
            placement: self.placement,
        };
        let d = self.policy.decide(&input);
        self.outcomes = d.outcomes_as(self.result, self.now_ms + 10);
        self.tick += 1;
        self.now_ms += TICK_MS;
        d
    }

    fn forecast(&mut self, now: f32, forecast: f32, realised: f32) -> Decision {
        self.step_scores(vec![fcs("web", "batch", now, forecast, realised)])
    }
}

fn triggers(d: &Decision) -> Vec<Trigger> {
    d.actions.iter().map(|a| a.trigger).collect()
}

#[test]
fn a_forecast_alone_takes_only_the_weight_rung_and_says_so() {
    let mut sim = Sim::two();
    let d = sim.forecast(10.0, 70.0, 10.0);
    assert_eq!(rungs(&d), vec![Rung::Weight, Rung::Weight]);
    assert_eq!(triggers(&d), vec![Trigger::Forecast, Trigger::Forecast]);
    assert!(
        d.actions[1]
            .reason
            .starts_with("forecast 70 >= 40 within 30s (measured 10), batch demands 1.50 cores"),
        "{}",
        d.actions[1].reason
    );
    // The forecast stays: the ladder would climb, but pin waits for measured contention.
    for _ in 0..4 {
        let d = sim.forecast(10.0, 70.0, 10.0);
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        if !d.skipped.is_empty() {
            assert!(skipped_with(&d, "a forecast alarm"), "{:?}", d.skipped);
        }
    }
    assert!(sim.policy.state().pairs["batch/web"]
        .forecast_watch
        .is_some());
}

#[test]
fn pin_waits_for_two_measured_ticks_and_a_measurement_confirms_the_forecast() {
    let mut sim = Sim::two();
    assert_eq!(
        rungs(&sim.forecast(10.0, 70.0, 10.0)),
        vec![Rung::Weight; 2]
    );
    assert!(sim.forecast(10.0, 70.0, 10.0).actions.is_empty());
    // Measured at last: the forecast is confirmed; pin is due by the ladder's count but
    // has one measured tick only.
    let d = sim.forecast(70.0, 70.0, 60.0);
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert!(
        skipped_with(&d, "for 2 ticks (1 so far)"),
        "{:?}",
        d.skipped
    );
    assert_eq!(
        d.forecast_outcomes,
        vec![("batch/web".to_owned(), ForecastResult::Confirmed)]
    );
    let d = sim.forecast(70.0, 70.0, 60.0);
    assert_eq!(rungs(&d), vec![Rung::Pin, Rung::Pin]);
    assert_eq!(triggers(&d), vec![Trigger::Now, Trigger::Now]);
    assert!(sim.policy.state().pairs["batch/web"]
        .forecast_watch
        .is_none());
}

#[test]
fn the_realised_score_confirms_a_forecast_the_weight_change_hides() {
    let mut sim = Sim::two();
    sim.forecast(10.0, 70.0, 10.0);
    // The weight change keeps the measured score down; the demands say the contention
    // came.
    let d = sim.forecast(15.0, 70.0, 55.0);
    assert_eq!(
        d.forecast_outcomes,
        vec![("batch/web".to_owned(), ForecastResult::Confirmed)]
    );
    assert!(d.actions.is_empty());
}

#[test]
fn a_forecast_that_does_not_come_true_is_rolled_back_counted_and_muted() {
    let mut sim = Sim::two();
    let first = sim.forecast(10.0, 70.0, 10.0);
    let ids: Vec<String> = first.actions.iter().map(|a| a.id.clone()).collect();
    // Five more ticks of 5 s: still within the 30 s horizon.
    for _ in 0..5 {
        let d = sim.forecast(10.0, 70.0, 10.0);
        assert!(d.forecast_outcomes.is_empty());
        assert!(d.actions.is_empty());
    }
    let d = sim.forecast(10.0, 70.0, 10.0);
    assert_eq!(
        d.forecast_outcomes,
        vec![("batch/web".to_owned(), ForecastResult::Missed)]
    );
    let undone: Vec<String> = d
        .actions
        .iter()
        .filter_map(|a| match &a.change {
            Change::Rollback { action_id } => Some(action_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(undone.len(), 2, "{:?}", d.actions);
    assert!(ids.iter().all(|id| undone.contains(id)));
    assert!(
        d.actions[0].reason.starts_with(
            "forecast 70 did not come true within 30s (measured 10, realised 10 < 40)"
        ),
        "{}",
        d.actions[0].reason
    );
    // Muted for one horizon: the same forecast starts nothing; a measurement would.
    for _ in 0..5 {
        assert!(sim.forecast(10.0, 70.0, 10.0).actions.is_empty());
    }
    assert!(!sim.policy.state().forecast_muted.is_empty());
    let d = sim.forecast(70.0, 70.0, 70.0);
    assert_eq!(triggers(&d), vec![Trigger::Now, Trigger::Now]);
}

#[test]
fn without_forecasts_the_ladder_is_unchanged() {
    // A measured alarm with forecasting on: trigger now, and pin after two measured
    // ticks as before.
    let mut sim = Sim::two();
    let d = sim.forecast(70.0, 20.0, 70.0);
    assert_eq!(triggers(&d), vec![Trigger::Now, Trigger::Now]);
    assert!(sim.forecast(70.0, 20.0, 70.0).actions.is_empty());
    assert_eq!(
        rungs(&sim.forecast(70.0, 20.0, 70.0)),
        vec![Rung::Pin, Rung::Pin]
    );
}

#[test]
fn a_new_configuration_keeps_what_is_in_force_and_decides_by_its_thresholds() {
    let mut sim = Sim::two();
    assert_eq!(rungs(&sim.hot(70.0)), vec![Rung::Weight, Rung::Weight]);
    sim.policy
        .reconfigure(PolicyConfig {
            on_threshold: 95.0,
            off_threshold: 90.0,
            ..config()
        })
        .expect("valid");
    // The weights stay in force (held by the pair); no new rung at 70 < 95.
    for _ in 0..3 {
        assert!(sim.hot(70.0).actions.is_empty());
    }
    assert!(!sim.policy.state().vms.is_empty());
    // A bad configuration changes nothing.
    assert!(sim
        .policy
        .reconfigure(PolicyConfig {
            on_threshold: 10.0,
            off_threshold: 50.0,
            ..config()
        })
        .is_err());
    assert_eq!(sim.policy.config().on_threshold, 95.0);
}
